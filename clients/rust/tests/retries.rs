//! Faults the running service cannot be made to produce, from a scripted HTTP server:
//! 503s with `Retry-After`, a connection dropped before the answer, problems that must not
//! be retried, and what every attempt carries (one `Idempotency-Key`, a fresh signature).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use session_service_client::signing::sign;
use session_service_client::{Client, Error, NewSession, Precondition, ProblemKind, Replacement, RetryPolicy, Signing};

/// What the server does with one connection's request.
enum Reply {
    /// Answers with this status, extra headers and body.
    Answer(u16, &'static [(&'static str, &'static str)], String),
    /// Reads the request and closes the connection without answering.
    Hang,
}

/// A request as the server received it.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Serves `replies` in order, one a connection, on a free port; the requests it got.
fn scripted(replies: Vec<Reply>) -> (String, Arc<Mutex<Vec<Received>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/api", listener.local_addr().unwrap());
    let received = Arc::new(Mutex::new(Vec::new()));
    let log = received.clone();
    std::thread::spawn(move || {
        for reply in replies {
            let (mut stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let mut parts = line.split_whitespace();
            let (method, target) = (parts.next().unwrap().to_owned(), parts.next().unwrap().to_owned());
            let mut headers = Vec::new();
            loop {
                let mut header = String::new();
                reader.read_line(&mut header).unwrap();
                let header = header.trim_end();
                if header.is_empty() {
                    break;
                }
                let (name, value) = header.split_once(':').unwrap();
                headers.push((name.to_owned(), value.trim().to_owned()));
            }
            let length = headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                .map_or(0, |(_, v)| v.parse().unwrap());
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            log.lock().unwrap().push(Received {
                method,
                target,
                headers,
                body,
            });
            match reply {
                Reply::Hang => drop(stream),
                Reply::Answer(status, extra, body) => {
                    let content_type = if status < 300 {
                        "application/json"
                    } else {
                        "application/problem+json"
                    };
                    let mut head = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n",
                        body.len()
                    );
                    for (name, value) in extra {
                        head.push_str(&format!("{name}: {value}\r\n"));
                    }
                    stream.write_all(format!("{head}\r\n{body}").as_bytes()).unwrap();
                }
            }
        }
    });
    (url, received)
}

fn problem(kind: &str, status: u16) -> String {
    format!(r#"{{"type":"urn:session-service:problem:{kind}","title":"t","status":{status},"detail":"d"}}"#)
}

const ID: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

fn issued() -> String {
    let time = "2026-12-03T10:00:00Z";
    format!(
        r#"{{"id":"{ID}","handle":"{h}","data":{{"z":1,"a":2}},"created_at":"{time}","updated_at":"{time}","expires_at":"{time}","absolute_expires_at":"{time}","idle_timeout_seconds":1800,"version":1}}"#,
        h = "0".repeat(64)
    )
}

fn quick() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
        max_retry_after: Duration::from_secs(1),
    }
}

fn client(url: &str) -> Client {
    Client::builder(url).retry(quick()).build().unwrap()
}

#[tokio::test]
async fn a_create_answered_503_is_retried_with_the_same_idempotency_key() {
    let (url, received) = scripted(vec![
        Reply::Answer(503, &[("retry-after", "0")], problem("unavailable", 503)),
        Reply::Answer(201, &[], issued()),
    ]);
    let session = client(&url).create(&NewSession::default()).await.unwrap();
    assert_eq!(session.id.expose(), ID);
    assert_eq!(session.session.data.as_json(), r#"{"z":1,"a":2}"#);

    let received = received.lock().unwrap();
    assert_eq!(received.len(), 2);
    let keys: Vec<_> = received.iter().map(|r| r.header("idempotency-key").unwrap()).collect();
    assert_eq!(keys[0], keys[1]);
    assert!((16..=255).contains(&keys[0].len()) && keys[0].bytes().all(|b| (b'!'..=b'~').contains(&b)));
    assert_eq!(
        (received[0].method.as_str(), received[0].target.as_str()),
        ("POST", "/api/sessions")
    );
}

#[tokio::test]
async fn a_connection_dropped_before_the_answer_is_retried_and_each_call_has_its_own_key() {
    let (url, received) = scripted(vec![
        Reply::Hang,
        Reply::Answer(201, &[], issued()),
        Reply::Answer(201, &[], issued()),
    ]);
    let client = client(&url);
    client.create(&NewSession::default()).await.unwrap();
    client.create(&NewSession::default()).await.unwrap();
    let received = received.lock().unwrap();
    let keys: Vec<_> = received.iter().map(|r| r.header("idempotency-key").unwrap()).collect();
    assert_eq!(keys.len(), 3);
    assert_eq!(keys[0], keys[1], "the retry of a lost answer");
    assert_ne!(keys[1], keys[2], "another call");
}

#[tokio::test]
async fn permanent_problems_are_not_retried_and_keep_their_kind() {
    for (kind, status, expected) in [
        ("precondition-failed", 412, ProblemKind::PreconditionFailed),
        ("internal", 500, ProblemKind::Internal),
        ("session-cap-reached", 409, ProblemKind::SessionCapReached),
        ("not-found", 404, ProblemKind::NotFound),
    ] {
        let (url, received) = scripted(vec![Reply::Answer(status, &[], problem(kind, status))]);
        let error = client(&url)
            .replace(
                &session_service_client::SessionId::new(ID),
                &Replacement::new(session_service_client::Data::empty()),
                Precondition::Version(3),
            )
            .await
            .unwrap_err();
        assert_eq!(error.problem_kind(), Some(expected), "{kind}");
        let received = received.lock().unwrap();
        assert_eq!(received.len(), 1, "{kind} was retried");
        assert_eq!(received[0].header("if-match"), Some("\"3\""));
    }
}

#[tokio::test]
async fn retries_stop_at_the_policys_attempts_with_the_last_problem() {
    let replies = (0..4)
        .map(|_| Reply::Answer(503, &[("retry-after", "1")], problem("unavailable", 503)))
        .collect();
    let (url, received) = scripted(replies);
    let error = client(&url)
        .get(&session_service_client::SessionId::new(ID))
        .await
        .unwrap_err();
    let Error::Problem(problem) = &error else {
        panic!("{error:?}")
    };
    assert_eq!(
        (problem.kind(), problem.retry_after),
        (ProblemKind::Unavailable, Some(Duration::from_secs(1)))
    );
    assert_eq!(received.lock().unwrap().len(), 4);
}

#[tokio::test]
async fn every_attempt_is_signed_afresh_for_the_service_its_signing_names() {
    for service in ["lambda", "execute-api"] {
        let (url, received) = scripted(vec![
            Reply::Answer(503, &[("retry-after", "0")], problem("unavailable", 503)),
            Reply::Answer(201, &[], issued()),
        ]);
        let credentials = Credentials::new("AKIDEXAMPLE", "secret", Some("token".into()), None, "test");
        let client = Client::builder(&url)
            .signing(Signing::SigV4 {
                service: service.into(),
                region: "eu-west-1".into(),
            })
            .credentials(credentials.clone())
            .retry(quick())
            .build()
            .unwrap();
        client.create(&NewSession::default().subject("user-42")).await.unwrap();

        for request in received.lock().unwrap().iter() {
            let authorization = request.header("authorization").unwrap();
            assert!(
                authorization.contains(&format!("/eu-west-1/{service}/aws4_request")),
                "{authorization}"
            );
            assert_eq!(request.header("x-amz-security-token"), Some("token"));
            // The same request signed again at its own X-Amz-Date gives the same signature:
            // the signature covers what was sent, body included.
            let mut again = http::Request::new(request.body.clone());
            *again.method_mut() = request.method.parse().unwrap();
            *again.uri_mut() = format!("{}{}", url.trim_end_matches("/api"), request.target)
                .parse()
                .unwrap();
            for (name, value) in &request.headers {
                if ["host", "content-type", "idempotency-key", "accept"].contains(&name.to_ascii_lowercase().as_str()) {
                    again.headers_mut().append(
                        http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                        value.parse().unwrap(),
                    );
                }
            }
            let d = request.header("x-amz-date").unwrap(); // 20261203T101112Z
            let rfc3339 = format!(
                "{}-{}-{}T{}:{}:{}Z",
                &d[0..4],
                &d[4..6],
                &d[6..8],
                &d[9..11],
                &d[11..13],
                &d[13..15]
            );
            let date = time::OffsetDateTime::parse(&rfc3339, &time::format_description::well_known::Rfc3339).unwrap();
            sign(&mut again, &credentials, service, "eu-west-1", SystemTime::from(date)).unwrap();
            assert_eq!(again.headers()["authorization"], authorization);
        }
    }
}

#[tokio::test]
async fn a_signed_url_without_credentials_is_refused_when_built() {
    let error = Client::new("https://a1b2c3.lambda-url.eu-west-1.on.aws").unwrap_err();
    assert!(matches!(error, Error::Config(_)), "{error:?}");
}

#[tokio::test]
async fn a_lost_answer_leaves_no_session_id_in_the_error() {
    let id = session_service_client::SessionId::new(ID);
    let (url, received) = scripted((0..8).map(|_| Reply::Hang).collect());
    let client = client(&url);
    let errors = [
        client.get(&id).await.unwrap_err(),
        client.revoke_all("user-42", Some(&id)).await.unwrap_err(),
    ];
    assert_eq!(received.lock().unwrap().len(), 8, "4 attempts each");
    for error in errors {
        assert!(matches!(error, Error::Transport(_)), "{error:?}");
        let mut shown = format!("{error:?}");
        let mut source: Option<&dyn std::error::Error> = Some(&error);
        while let Some(e) = source {
            shown.push_str(&e.to_string());
            source = e.source();
        }
        assert!(!shown.contains(ID), "{shown}");
    }
}

#[tokio::test]
async fn empty_and_dot_segments_are_refused_before_any_request() {
    let (url, received) = scripted(Vec::new());
    let client = client(&url);
    for error in [
        client.revoke("user-42", "..").await.unwrap_err(),
        client.revoke("user-42", ".").await.unwrap_err(),
        client.list("..", None, None).await.unwrap_err(),
        client.revoke_all("", None).await.unwrap_err(),
        client
            .get(&session_service_client::SessionId::new(".."))
            .await
            .unwrap_err(),
    ] {
        assert!(matches!(error, Error::Config(_)), "{error:?}");
    }
    assert!(received.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_write_with_if_match_any_is_not_resent_after_a_lost_answer() {
    let (url, received) = scripted(vec![Reply::Hang, Reply::Answer(200, &[], issued())]);
    let error = client(&url)
        .replace(
            &session_service_client::SessionId::new(ID),
            &Replacement::new(session_service_client::Data::empty()),
            Precondition::Exists,
        )
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Transport(_)), "{error:?}");
    assert_eq!(received.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_gateways_429_is_retried_and_a_retry_after_past_the_policy_is_not_waited_for() {
    let (url, received) = scripted(vec![
        Reply::Answer(429, &[], r#"{"message":"Too Many Requests"}"#.to_owned()),
        Reply::Answer(200, &[], issued()),
    ]);
    client(&url)
        .get(&session_service_client::SessionId::new(ID))
        .await
        .unwrap();
    assert_eq!(received.lock().unwrap().len(), 2);

    let (url, received) = scripted(vec![Reply::Answer(
        503,
        &[("retry-after", "3600")],
        problem("unavailable", 503),
    )]);
    let error = client(&url)
        .get(&session_service_client::SessionId::new(ID))
        .await
        .unwrap_err();
    assert_eq!(error.problem_kind(), Some(ProblemKind::Unavailable));
    assert_eq!(received.lock().unwrap().len(), 1, "an hour is past max_retry_after");
}

/// A session (no id) at `version` holding `data`, as GET, PUT and PATCH answer it.
fn session(version: u64, data: &str) -> String {
    let time = "2026-12-03T10:00:00Z";
    format!(
        r#"{{"handle":"{h}","data":{data},"created_at":"{time}","updated_at":"{time}","expires_at":"{time}","absolute_expires_at":"{time}","idle_timeout_seconds":1800,"version":{version}}}"#,
        h = "0".repeat(64)
    )
}

fn unavailable() -> Reply {
    Reply::Answer(503, &[("retry-after", "0")], problem("unavailable", 503))
}

/// The methods and targets the server got, in order.
fn requests(received: &Mutex<Vec<Received>>) -> Vec<(String, String)> {
    received
        .lock()
        .unwrap()
        .iter()
        .map(|r| (r.method.clone(), r.target.clone()))
        .collect()
}

fn sent(method: &str) -> (String, String) {
    (method.to_owned(), format!("/api/sessions/{ID}"))
}

async fn replace_version_3(url: &str, data: &str) -> Result<session_service_client::Session, Error> {
    client(url)
        .replace(
            &session_service_client::SessionId::new(ID),
            &Replacement::new(session_service_client::Data::from_json(data).unwrap()),
            Precondition::Version(3),
        )
        .await
}

#[tokio::test]
async fn a_replace_naming_a_version_answered_503_is_read_and_its_landed_write_returned() {
    let (url, received) = scripted(vec![
        unavailable(),
        Reply::Answer(200, &[], session(4, r#"{"theme":"light"}"#)),
    ]);
    let session = replace_version_3(&url, r#"{"theme":"light"}"#).await.unwrap();
    assert_eq!((session.version, session.data.as_json()), (4, r#"{"theme":"light"}"#));
    assert_eq!(
        requests(&received),
        [sent("PUT"), sent("GET")],
        "one PUT, then a plain GET"
    );
    let received = received.lock().unwrap();
    assert_eq!(received[0].header("if-match"), Some("\"3\""));
    assert_eq!((received[1].header("if-match"), received[1].body.len()), (None, 0));
}

#[tokio::test]
async fn a_merge_naming_a_version_answered_503_is_read_and_its_landed_write_returned() {
    let (url, received) = scripted(vec![
        unavailable(),
        Reply::Answer(200, &[], session(4, r#"{"theme":"dark","cart":[7],"deep":{"a":1}}"#)),
    ]);
    let session = client(&url)
        .merge(
            &session_service_client::SessionId::new(ID),
            &session_service_client::Data::from_json(r#"{"cart":[7],"coupon":null,"deep":{"a":1,"b":null}}"#).unwrap(),
            Precondition::Version(3),
        )
        .await
        .unwrap();
    assert_eq!(session.version, 4);
    assert_eq!(requests(&received), [sent("PATCH"), sent("GET")]);
}

#[tokio::test]
async fn a_write_read_back_at_its_version_is_sent_again() {
    let (url, received) = scripted(vec![
        unavailable(),
        Reply::Answer(200, &[], session(3, r#"{"theme":"dark"}"#)),
        Reply::Answer(200, &[], session(4, r#"{"theme":"light"}"#)),
    ]);
    let session = replace_version_3(&url, r#"{"theme":"light"}"#).await.unwrap();
    assert_eq!(session.version, 4);
    assert_eq!(requests(&received), [sent("PUT"), sent("GET"), sent("PUT")]);
    assert_eq!(received.lock().unwrap()[2].header("if-match"), Some("\"3\""));
}

#[tokio::test]
async fn a_write_read_back_at_another_version_is_a_precondition_failure() {
    for (version, data) in [
        (5, r#"{"theme":"blue"}"#),
        (4, r#"{"theme":"blue"}"#),
        (5, r#"{"theme":"light"}"#),
    ] {
        let (url, received) = scripted(vec![unavailable(), Reply::Answer(200, &[], session(version, data))]);
        let error = replace_version_3(&url, r#"{"theme":"light"}"#).await.unwrap_err();
        assert_eq!(
            error.problem_kind(),
            Some(ProblemKind::PreconditionFailed),
            "v{version} {data}: {error:?}"
        );
        let Error::Problem(problem) = &error else {
            unreachable!()
        };
        assert_eq!(problem.status, 412);
        assert_eq!(requests(&received), [sent("PUT"), sent("GET")], "v{version} {data}");
    }
}

#[tokio::test]
async fn a_lost_answer_to_a_write_naming_a_version_is_read_not_resent() {
    for lost in [
        Reply::Hang,
        Reply::Answer(502, &[], "Bad Gateway".to_owned()),
        Reply::Answer(504, &[], "Gateway Timeout".to_owned()),
        Reply::Answer(503, &[], "Service Unavailable".to_owned()),
    ] {
        let (url, received) = scripted(vec![lost, Reply::Answer(200, &[], session(4, r#"{"theme":"light"}"#))]);
        let session = replace_version_3(&url, r#"{"theme":"light"}"#).await.unwrap();
        assert_eq!(session.version, 4);
        assert_eq!(requests(&received), [sent("PUT"), sent("GET")]);
    }
}

#[tokio::test]
async fn a_write_whose_session_is_gone_when_read_back_is_not_found() {
    let (url, received) = scripted(vec![unavailable(), Reply::Answer(404, &[], problem("not-found", 404))]);
    let error = replace_version_3(&url, r#"{"theme":"light"}"#).await.unwrap_err();
    assert!(error.is_not_found(), "{error:?}");
    assert_eq!(requests(&received), [sent("PUT"), sent("GET")]);
}

#[tokio::test]
async fn a_412_to_a_resent_write_is_read_back_too() {
    // The first attempt committed after the read (or the read was stale): the resend's
    // 412 is its own write's doing.
    let (url, received) = scripted(vec![
        unavailable(),
        Reply::Answer(200, &[], session(3, r#"{"theme":"dark"}"#)),
        Reply::Answer(412, &[], problem("precondition-failed", 412)),
        Reply::Answer(200, &[], session(4, r#"{"theme":"light"}"#)),
    ]);
    let session = replace_version_3(&url, r#"{"theme":"light"}"#).await.unwrap();
    assert_eq!(session.version, 4);
    assert_eq!(
        requests(&received),
        [sent("PUT"), sent("GET"), sent("PUT"), sent("GET")]
    );
}

#[tokio::test]
async fn a_failing_read_back_is_retried_within_the_attempts_then_the_writes_error_returned() {
    let (url, received) = scripted(vec![
        unavailable(),
        unavailable(),
        Reply::Answer(200, &[], session(4, r#"{"theme":"light"}"#)),
    ]);
    replace_version_3(&url, r#"{"theme":"light"}"#).await.unwrap();
    assert_eq!(requests(&received), [sent("PUT"), sent("GET"), sent("GET")]);

    let (url, received) = scripted(vec![
        Reply::Answer(502, &[], "Bad Gateway".to_owned()),
        unavailable(),
        unavailable(),
        unavailable(),
    ]);
    let error = replace_version_3(&url, r#"{"theme":"light"}"#).await.unwrap_err();
    assert!(
        matches!(error, Error::UnexpectedResponse { status: 502, .. }),
        "{error:?}"
    );
    assert_eq!(
        requests(&received),
        [sent("PUT"), sent("GET"), sent("GET"), sent("GET")]
    );
}

#[tokio::test]
async fn a_conflict_is_resent_without_a_read() {
    let (url, received) = scripted(vec![
        Reply::Answer(409, &[], problem("conflict", 409)),
        Reply::Answer(200, &[], session(4, r#"{"theme":"light"}"#)),
    ]);
    replace_version_3(&url, r#"{"theme":"light"}"#).await.unwrap();
    assert_eq!(requests(&received), [sent("PUT"), sent("PUT")]);
}

const HANDLE: &str = "h1";

async fn revoke(url: &str) -> Result<(), Error> {
    client(url).revoke("user-42", HANDLE).await
}

fn revoked() -> (String, String) {
    ("DELETE".to_owned(), format!("/api/subjects/user-42/sessions/{HANDLE}"))
}

fn not_found() -> Reply {
    Reply::Answer(404, &[], problem("not-found", 404))
}

#[tokio::test]
async fn a_revoke_whose_answer_was_lost_then_not_found_succeeded() {
    // The first attempt revoked the session, its answer lost: the retry finds no live session.
    let (url, received) = scripted(vec![Reply::Hang, not_found()]);
    revoke(&url).await.unwrap();
    assert_eq!(requests(&received), [revoked(), revoked()]);
}

#[tokio::test]
async fn a_revoke_answered_503_then_not_found_succeeded() {
    let (url, received) = scripted(vec![unavailable(), not_found()]);
    revoke(&url).await.unwrap();
    assert_eq!(requests(&received), [revoked(), revoked()]);
}

#[tokio::test]
async fn a_revoke_not_found_at_once_is_not_found() {
    let (url, received) = scripted(vec![not_found()]);
    let error = revoke(&url).await.unwrap_err();
    assert!(error.is_not_found(), "{error:?}");
    assert_eq!(requests(&received), [revoked()]);
}

#[tokio::test]
async fn a_revoke_not_found_after_a_conflict_is_not_found() {
    // A 409 proves nothing was done: the 404 after it is the handle's own.
    let (url, received) = scripted(vec![Reply::Answer(409, &[], problem("conflict", 409)), not_found()]);
    let error = revoke(&url).await.unwrap_err();
    assert!(error.is_not_found(), "{error:?}");
    assert_eq!(requests(&received), [revoked(), revoked()]);
}
