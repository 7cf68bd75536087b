//! The session API: routing and handlers as plain async functions over an
//! [`App`], so tests call them with the same events API Gateway's HTTP API and a
//! function URL send (payload 2.0).

pub mod problem;
pub mod routes;

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use lambda_http::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use lambda_support::metrics::{Document, FUNCTION, Metrics, Unit};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use session_store::{
    Clock, DataPatch, Device, DynamoStore, Handle, IdempotencyKey, Issued, NewSession, Session, SessionData, SessionId,
    StoreError, Subject, SystemClock, model::Successor, store::Lookup,
};
use tracing::{error, info, warn};

use crate::problem::Problem;
use crate::routes::Target;

/// Default page size of owner listings.
pub const DEFAULT_PAGE_SIZE: u32 = 20;
/// Largest page size of owner listings.
pub const MAX_PAGE_SIZE: u32 = 100;
/// Room a request body may take beyond the data limit (field names, timeouts, escapes).
const BODY_OVERHEAD_BYTES: usize = 16 * 1024;

/// What every request needs, built once per Lambda environment.
pub struct App {
    /// The session store.
    pub store: DynamoStore,
    /// Where "now" comes from.
    pub clock: Arc<dyn Clock>,
    /// Where each request's metrics go.
    pub metrics: Metrics,
}

impl App {
    /// An app on `store` with the system clock, writing metrics to standard output
    /// in the default namespace.
    pub fn new(store: DynamoStore) -> Self {
        Self {
            store,
            clock: Arc::new(SystemClock),
            metrics: Metrics::new(lambda_support::metrics::DEFAULT_NAMESPACE, "api"),
        }
    }
}

/// What a request did to sessions, for its metrics; set at most once, by the handler.
#[derive(Default)]
struct Tally(OnceLock<Counted>);

/// A session event a request's metrics count.
#[derive(Debug, Clone, Copy)]
enum Counted {
    /// A session was created (`SessionsCreated`); a retry answered from its
    /// `Idempotency-Key`'s record is not counted again. With the sessions it
    /// evicted to keep its subject within the cap (`SessionsRevoked`, cause `evicted`).
    Created { evicted: u32 },
    /// A session was rotated (`SessionsRotated`), with the sessions it evicted.
    Rotated { evicted: u32 },
    /// A read found the session expired (`ExpiredReads`).
    ExpiredRead,
    /// A session's stored data did not open with its id (`UnreadableSessions`): altered
    /// or moved at rest. Answered with a 500.
    Unreadable,
    /// Sessions were revoked (`SessionsRevoked`), by cause: `logout` (its holder
    /// deleted it), `revoke_one` (its owner revoked it by handle), `revoke_all`.
    Revoked(&'static str, u64),
}

impl Tally {
    fn count(&self, counted: Counted) {
        let _ = self.0.set(counted);
    }
}

/// A handler's outcome: a response, or a problem to send instead.
type Reply = Result<Response<Body>, Problem>;

/// Handles one API request. Never fails: every error becomes a problem response.
pub async fn handle(app: &App, request: Request) -> Result<Response<Body>, std::convert::Infallible> {
    let method = request.method().clone();
    let path = match request.raw_http_path() {
        "" => request.uri().path().to_owned(),
        raw => raw.to_owned(),
    };
    let started = Instant::now();
    let target = Target::parse(&path);
    let route = target.as_ref().map_or("-", Target::template);
    // A fingerprint, never the id itself: ids are bearer secrets.
    let session = target.as_ref().and_then(Target::session_id).map(SessionId::fingerprint);
    let tally = Tally::default();
    let reply = match target {
        None => Err(Problem::no_route()),
        Some(target) => route_to(app, &method, target, &request, &tally).await,
    };
    let response = reply.unwrap_or_else(problem_response);
    let status = response.status().as_u16();
    // The access log line, whichever the front door (API Gateway's HTTP API keeps one of its
    // own; a function URL does not): the route, never the path, and who asked from where.
    let from = Origin::of(&request);
    info!(
        method = %method,
        route,
        status,
        latency_ms = started.elapsed().as_millis() as u64,
        caller = from.caller,
        ip = from.source_ip,
        request_id = from.request_id,
        session = session.as_deref().unwrap_or("-"),
        "request"
    );
    emit_metrics(app, &method, route, status, started, &tally);
    Ok(response)
}

/// The request's metrics: `Requests`, `ClientErrors`, `ServerErrors` and `Latency` by
/// route and for the function; `PermanentFaults` (500) and `Unavailable` (503); and
/// what it did to sessions. `Route` is the route template ("GET /sessions/{id}"),
/// never the path, which holds a session id.
fn emit_metrics(app: &App, method: &Method, route: &str, status: u16, started: Instant, tally: &Tally) {
    const BY_ROUTE: &[&[&str]] = &[&["Route"], &[FUNCTION]];
    const BY_FUNCTION: &[&[&str]] = &[&[FUNCTION]];
    let mut document = app.metrics.document();
    // Known methods only, so that no request can make up dimension values.
    let route = match method.as_str() {
        _ if route == "-" => "-".to_owned(),
        "GET" | "POST" | "PUT" | "PATCH" | "DELETE" => format!("{method} {route}"),
        _ => format!("OTHER {route}"),
    };
    document
        .dimension("Route", &route)
        .count(BY_ROUTE, "Requests", 1)
        .count(BY_ROUTE, "ClientErrors", u64::from((400..500).contains(&status)))
        .count(BY_ROUTE, "ServerErrors", u64::from(status >= 500))
        .metric(
            BY_ROUTE,
            "Latency",
            started.elapsed().as_secs_f64() * 1000.0,
            Unit::Milliseconds,
        )
        .count(BY_FUNCTION, "PermanentFaults", u64::from(status == 500))
        .count(BY_FUNCTION, "Unavailable", u64::from(status == 503));
    if status >= 500 {
        // Alarms watch these: written at once, not at the end of the minute.
        document.urgent();
    }
    match tally.0.get() {
        None => {}
        Some(&Counted::Created { evicted }) => {
            document.count(BY_FUNCTION, "SessionsCreated", 1);
            count_evictions(&mut document, evicted);
        }
        Some(&Counted::Rotated { evicted }) => {
            document.count(BY_FUNCTION, "SessionsRotated", 1);
            count_evictions(&mut document, evicted);
        }
        Some(Counted::ExpiredRead) => {
            document.count(BY_FUNCTION, "ExpiredReads", 1);
        }
        Some(Counted::Unreadable) => {
            document.count(BY_FUNCTION, "UnreadableSessions", 1);
        }
        Some(Counted::Revoked(cause, revoked)) => {
            document
                .dimension("Cause", cause)
                .count(&[&["Cause"]], "SessionsRevoked", *revoked);
        }
    }
    app.metrics.emit(document);
}

/// Sessions a login evicted to keep its subject within the cap, if any.
fn count_evictions(document: &mut Document, evicted: u32) {
    if evicted > 0 {
        document
            .dimension("Cause", "evicted")
            .count(&[&["Cause"]], "SessionsRevoked", u64::from(evicted));
    }
}

async fn route_to(app: &App, method: &Method, target: Target, request: &Request, tally: &Tally) -> Reply {
    use Target::*;
    match (method.as_str(), target) {
        ("GET", Health) => json(StatusCode::OK, &serde_json::json!({"status": "ok"})),
        ("POST", Sessions) => create(app, request, tally).await,
        ("GET", Session(id)) => get(app, &known(id)?, request, tally).await,
        ("PUT", Session(id)) => replace(app, &known(id)?, request, tally).await,
        ("PATCH", Session(id)) => merge(app, &known(id)?, request, tally).await,
        ("DELETE", Session(id)) => delete(app, &known(id)?, tally).await,
        ("POST", Touch(id)) => touch(app, &known(id)?, tally).await,
        ("POST", Rotate(id)) => rotate(app, &known(id)?, request, tally).await,
        ("GET", SubjectSessions(subject)) => list(app, &subject_of(subject)?, request, tally).await,
        ("DELETE", SubjectSessions(subject)) => revoke(app, &subject_of(subject)?, request, tally).await,
        ("DELETE", SubjectSession(subject, handle)) => {
            let subject = subject_of(subject)?;
            revoke_one(app, &subject, &handle.ok_or_else(Problem::session_not_found)?, tally).await
        }
        (_, target) => Err(Problem::method_not_allowed(target.allowed_methods())),
    }
}

/// A malformed id is answered exactly like a missing session, without a DynamoDB call.
fn known(id: Option<SessionId>) -> Result<SessionId, Problem> {
    id.ok_or_else(Problem::session_not_found)
}

fn subject_of(subject: Option<Subject>) -> Result<Subject, Problem> {
    subject.ok_or_else(|| Problem::invalid_query(session_store::ValidationError::Subject.to_string()))
}

/// The problem for a store error, logged with DynamoDB's error code: a permanent
/// failure (500) at ERROR, so the errors alarm fires; an unavailable store (503) at WARN.
/// A session whose stored data does not open is counted (`UnreadableSessions`).
fn store_error(err: StoreError, tally: &Tally) -> Problem {
    if matches!(err, StoreError::Unreadable(_)) {
        tally.count(Counted::Unreadable);
    }
    let problem = Problem::from(&err);
    let code = err.code().unwrap_or("-");
    let source = std::error::Error::source(&err);
    if problem.status == StatusCode::INTERNAL_SERVER_ERROR.as_u16() {
        error!(code, error = ?err, source = ?source, "store request failed permanently");
    } else if problem.status >= 500 {
        warn!(code, error = ?err, source = ?source, "store unavailable; answered 503");
    }
    problem
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    subject: Option<String>,
    #[serde(default)]
    data: SessionData,
    #[serde(default, deserialize_with = "whole_seconds")]
    idle_timeout_seconds: Option<u32>,
    #[serde(default, deserialize_with = "whole_seconds")]
    absolute_timeout_seconds: Option<u32>,
    device: Option<DeviceBody>,
}

/// A device as a request names it; [`DeviceBody::checked`] bounds its parts.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceBody {
    user_agent: Option<String>,
    ip: Option<String>,
    label: Option<String>,
}

impl DeviceBody {
    fn checked(self) -> Result<Device, Problem> {
        Device::new(self.user_agent, self.ip, self.label).map_err(Problem::from)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplaceBody {
    data: SessionData,
    #[serde(default, deserialize_with = "whole_seconds")]
    idle_timeout_seconds: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MergeBody {
    /// Absent: no change to the data; `null`: remove it all (RFC 7396).
    #[serde(default, deserialize_with = "present")]
    data: Option<Option<DataPatch>>,
}

/// A member that is present, as `Some` (its `null` as `Some(None)`), so that an
/// absent member (`None`, by `default`) and a `null` one differ.
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Option<DataPatch>>, D::Error> {
    Option::<DataPatch>::deserialize(deserializer).map(Some)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateBody {
    #[serde(default = "keep_data_by_default")]
    keep_data: bool,
    /// The new session's owner (a login); the old owner when absent.
    subject: Option<String>,
    /// The new session's device; the old session's when absent.
    device: Option<DeviceBody>,
}

fn keep_data_by_default() -> bool {
    true
}

async fn create(app: &App, request: &Request, tally: &Tally) -> Reply {
    let body: CreateBody = parse_body(app, request, &["application/json"], Some("{}"))?;
    let subject = body.subject.as_deref().map(Subject::parse).transpose()?;
    // A key names a record only for the principal that sent it: another caller
    // reusing (or guessing) it gets a session of its own, never this one's id.
    let scope = format!("POST /sessions\0{}", caller(request));
    let idempotency = idempotency_key(request, &scope)?;
    let new = NewSession {
        subject,
        data: body.data,
        idle_timeout_seconds: body.idle_timeout_seconds,
        absolute_timeout_seconds: body.absolute_timeout_seconds,
        device: body.device.map(DeviceBody::checked).transpose()?,
    };
    let issued = app
        .store
        .create(new, idempotency.as_ref(), app.clock.now())
        .await
        .map_err(|e| store_error(e, tally))?;
    info!(session = %issued.session.handle.fingerprint(), "created");
    if !issued.replayed {
        tally.count(Counted::Created {
            evicted: issued.evicted,
        });
    }
    issued_response(&issued)
}

async fn get(app: &App, id: &SessionId, request: &Request, tally: &Tally) -> Reply {
    let touch = match request.query_string_parameters().first("touch") {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(Problem::invalid_query("touch must be true or false")),
    };
    let now = app.clock.now();
    let found = if touch {
        app.store.get_and_touch(id, now).await
    } else {
        app.store.lookup(id, now).await
    };
    match found.map_err(|e| store_error(e, tally))? {
        Lookup::Live(session) => session_response(StatusCode::OK, &session),
        Lookup::Expired => {
            tally.count(Counted::ExpiredRead);
            Err(Problem::session_not_found())
        }
    }
}

async fn replace(app: &App, id: &SessionId, request: &Request, tally: &Tally) -> Reply {
    // The body first: a request that is wrong in itself says so whatever its If-Match.
    let body: ReplaceBody = parse_body(app, request, &["application/json"], None)?;
    let if_match = if_match(request.headers())?;
    let session = app
        .store
        .replace(
            id,
            body.data,
            body.idle_timeout_seconds,
            if_match.as_deref(),
            app.clock.now(),
        )
        .await
        .map_err(|e| store_error(e, tally))?;
    session_response(StatusCode::OK, &session)
}

async fn merge(app: &App, id: &SessionId, request: &Request, tally: &Tally) -> Reply {
    let body: MergeBody = parse_body(app, request, &["application/merge-patch+json"], None)?;
    let if_match = if_match(request.headers())?;
    let (store, now) = (&app.store, app.clock.now());
    let session = match body.data {
        Some(None) => {
            store
                .replace(id, SessionData::default(), None, if_match.as_deref(), now)
                .await
        }
        Some(Some(patch)) => store.merge(id, patch, if_match.as_deref(), now).await,
        None => store.merge(id, DataPatch::default(), if_match.as_deref(), now).await,
    }
    .map_err(|e| store_error(e, tally))?;
    session_response(StatusCode::OK, &session)
}

async fn revoke_one(app: &App, subject: &Subject, handle: &Handle, tally: &Tally) -> Reply {
    app.store
        .revoke_one(subject, handle, app.clock.now())
        .await
        .map_err(|e| store_error(e, tally))?;
    info!(session = %handle.fingerprint(), "revoked by handle");
    tally.count(Counted::Revoked("revoke_one", 1));
    Ok(empty(StatusCode::NO_CONTENT))
}

async fn delete(app: &App, id: &SessionId, tally: &Tally) -> Reply {
    app.store.delete(id).await.map_err(|e| store_error(e, tally))?;
    info!(session = %id.fingerprint(), "deleted");
    tally.count(Counted::Revoked("logout", 1));
    Ok(empty(StatusCode::NO_CONTENT))
}

async fn touch(app: &App, id: &SessionId, tally: &Tally) -> Reply {
    let session = app
        .store
        .touch(id, app.clock.now())
        .await
        .map_err(|e| store_error(e, tally))?;
    session_response(StatusCode::OK, &session)
}

async fn rotate(app: &App, id: &SessionId, request: &Request, tally: &Tally) -> Reply {
    let body: RotateBody = parse_body(app, request, &["application/json"], Some("{}"))?;
    let successor = Successor {
        keep_data: body.keep_data,
        subject: body.subject.as_deref().map(Subject::parse).transpose()?,
        device: body.device.map(DeviceBody::checked).transpose()?,
    };
    // Scoped by the old id itself (only the digest of scope and key is stored):
    // a record answers only a caller that holds the session it rotated.
    let scope = format!("POST /sessions/{}/rotate", id.as_str());
    let idempotency = idempotency_key(request, &scope)?;
    let issued = app
        .store
        .rotate_to(id, successor, idempotency.as_ref(), app.clock.now())
        .await
        .map_err(|e| store_error(e, tally))?;
    info!(session = %id.fingerprint(), new_session = %issued.session.handle.fingerprint(), "rotated");
    if !issued.replayed {
        tally.count(Counted::Rotated {
            evicted: issued.evicted,
        });
    }
    issued_response(&issued)
}

/// Who signed `request`: the unique id of its IAM principal (a role's, whatever
/// its session name, so a caller's retries agree), or `""` where IAM authorization
/// did not run (a local run).
fn caller(request: &Request) -> &str {
    Origin::of(request).caller
}

/// Where a request came from, as the front door (the HTTP API or the function URL, both
/// payload 2.0) tells: empty strings where it does not (a local run).
struct Origin<'a> {
    /// The unique id of the IAM principal that signed it, without the role session's name.
    caller: &'a str,
    /// The client's address.
    source_ip: &'a str,
    /// The front door's id of the request.
    request_id: &'a str,
}

impl<'a> Origin<'a> {
    fn of(request: &'a Request) -> Self {
        let Some(RequestContext::ApiGatewayV2(context)) = request.request_context_ref() else {
            return Self {
                caller: "",
                source_ip: "",
                request_id: "",
            };
        };
        Self {
            caller: context
                .authorizer
                .as_ref()
                .and_then(|a| a.iam.as_ref())
                .and_then(|iam| iam.caller_id.as_deref())
                .and_then(|id| id.split(':').next())
                .unwrap_or_default(),
            source_ip: context.http.source_ip.as_deref().unwrap_or_default(),
            request_id: context.request_id.as_deref().unwrap_or_default(),
        }
    }
}

/// The request's `Idempotency-Key` for the operation `scope`, if it sent one. The
/// value is the key as sent (a structured-field string's quotes included), so
/// every retry that sends the same header names the same record.
fn idempotency_key(request: &Request, scope: &str) -> Result<Option<IdempotencyKey>, Problem> {
    let mut values = request.headers().get_all("idempotency-key").iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let invalid = |detail: String| Problem::invalid_header("Idempotency-Key", detail);
    if values.next().is_some() {
        return Err(invalid("send one Idempotency-Key".into()));
    }
    let raw = value
        .to_str()
        .map_err(|_| invalid(session_store::ValidationError::IdempotencyKey.to_string()))?
        .trim();
    let body: &[u8] = match request.body() {
        Body::Text(text) => text.as_bytes(),
        Body::Binary(bytes) => bytes,
        _ => b"",
    };
    IdempotencyKey::new(raw, scope, body)
        .map(Some)
        .map_err(|e| invalid(e.to_string()))
}

async fn list(app: &App, subject: &Subject, request: &Request, tally: &Tally) -> Reply {
    let query = request.query_string_parameters();
    let limit = match query.first("limit") {
        None => DEFAULT_PAGE_SIZE,
        Some(raw) => raw
            .parse()
            .ok()
            .filter(|n| (1..=MAX_PAGE_SIZE).contains(n))
            .ok_or_else(|| Problem::invalid_query(format!("limit must be an integer from 1 to {MAX_PAGE_SIZE}")))?,
    };
    let page = app
        .store
        .list_by_subject(
            subject,
            limit,
            query.first("cursor").filter(|c| !c.is_empty()),
            app.clock.now(),
        )
        .await
        .map_err(|e| store_error(e, tally))?;
    json(
        StatusCode::OK,
        &serde_json::json!({ "sessions": page.sessions, "next_cursor": page.next_cursor }),
    )
}

async fn revoke(app: &App, subject: &Subject, request: &Request, tally: &Tally) -> Reply {
    let query = request.query_string_parameters();
    let except = match query.first("except") {
        None => None,
        Some(raw) => Some(SessionId::parse(raw).ok_or_else(|| Problem::invalid_query("except must be a session id"))?),
    };
    let revoked = app
        .store
        .revoke_subject(subject, except.as_ref(), app.clock.now())
        .await
        .map_err(|e| store_error(e, tally))?;
    info!(revoked, "revoked an owner's sessions");
    tally.count(Counted::Revoked("revoke_all", revoked));
    json(StatusCode::OK, &serde_json::json!({ "revoked": revoked }))
}

/// Reads a JSON body of one of the `accepted` media types. An empty body is
/// `empty` when given, else an error. Syntax errors are 400, contract errors 422.
fn parse_body<T: DeserializeOwned>(
    app: &App,
    request: &Request,
    accepted: &[&str],
    empty: Option<&str>,
) -> Result<T, Problem> {
    let bytes: &[u8] = match request.body() {
        Body::Empty => b"",
        Body::Text(text) => text.as_bytes(),
        Body::Binary(bytes) => bytes,
        _ => b"",
    };
    let limit = app.store.config().limits.max_data_bytes + BODY_OVERHEAD_BYTES;
    if bytes.len() > limit {
        return Err(Problem::too_large(format!(
            "the body is {} bytes; the limit is {limit}",
            bytes.len()
        )));
    }
    let bytes = match (bytes.iter().all(u8::is_ascii_whitespace), empty) {
        (true, Some(default)) => default.as_bytes(),
        (true, None) => return Err(Problem::malformed("this request needs a JSON body")),
        (false, _) => {
            let media_type = request
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(';').next())
                .map(|v| v.trim().to_ascii_lowercase());
            if !media_type.is_some_and(|m| accepted.contains(&m.as_str())) {
                return Err(Problem::unsupported_media_type(&accepted.join(" or ")));
            }
            bytes
        }
    };
    let body = serde_json::from_slice(bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => Problem::invalid(e.to_string()),
        _ => Problem::malformed(e.to_string()),
    })?;
    // serde also reads a struct from an array of its fields (`[false]`); the API takes objects.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(Problem::invalid("the body must be a JSON object"));
    }
    Ok(body)
}

/// An optional number of seconds, written as JSON writes whole numbers: `60` or `60.0`.
fn whole_seconds<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<u32>, D::Error> {
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else {
        return Ok(None);
    };
    let whole = number.as_u64().or_else(|| {
        number
            .as_f64()
            .filter(|f| f.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(f))
            .map(|f| f as u64)
    });
    whole.and_then(|n| u32::try_from(n).ok()).map(Some).ok_or_else(|| {
        serde::de::Error::custom(format!("{number} is not a whole number of seconds up to {}", u32::MAX))
    })
}

/// The versions `If-Match` accepts: `None` when absent or `*`. Weak tags never
/// match (RFC 9110 uses the strong comparison), so a header with only those fails at once,
/// as does an empty one or one that is not visible ASCII: it names no version, and a
/// client that sent it never gets a write without a check.
fn if_match(headers: &HeaderMap) -> Result<Option<Vec<u64>>, Problem> {
    let no_version = || Problem::precondition_failed("If-Match names no version of this session");
    let raw = headers
        .get_all(header::IF_MATCH)
        .iter()
        .map(|v| v.to_str())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| no_version())?;
    if raw.is_empty() {
        return Ok(None);
    }
    let values: Vec<&str> = raw
        .into_iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    if values.contains(&"*") {
        return Ok(None);
    }
    let versions: Vec<u64> = values
        .iter()
        .filter_map(|v| v.strip_prefix('"')?.strip_suffix('"')?.parse().ok())
        .take(100)
        .collect();
    if versions.is_empty() {
        return Err(no_version());
    }
    Ok(Some(versions))
}

fn session_response(status: StatusCode, session: &Session) -> Reply {
    let mut response = json(status, session)?;
    etag(&mut response, session);
    Ok(response)
}

/// 201 with a new session and its id: the one response that carries an id.
fn issued_response(issued: &Issued) -> Reply {
    let mut response = json(StatusCode::CREATED, issued)?;
    etag(&mut response, &issued.session);
    if let Ok(location) = HeaderValue::from_str(&format!("/sessions/{}", issued.id.as_str())) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

fn etag(response: &mut Response<Body>, session: &Session) {
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", session.version)) {
        response.headers_mut().insert(header::ETAG, etag);
    }
}

fn json(status: StatusCode, body: &impl serde::Serialize) -> Reply {
    let text = serde_json::to_string(body).map_err(|e| Problem::invalid(e.to_string()))?;
    let mut response = Response::new(Body::Text(text));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

fn empty(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Body::Empty);
    *response.status_mut() = status;
    response
}

fn problem_response(problem: Problem) -> Response<Body> {
    let body = serde_json::to_string(&problem).unwrap_or_default();
    let mut response = Response::new(Body::Text(body));
    *response.status_mut() = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(seconds) = problem.retry_after {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    if let Some(allow) = problem.allow.as_deref().and_then(|a| HeaderValue::from_str(a).ok()) {
        headers.insert(header::ALLOW, allow);
    }
    response
}
