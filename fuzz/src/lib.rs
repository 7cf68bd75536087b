//! The properties the fuzz targets check, as plain functions: each panics when its
//! property fails. `cargo +nightly fuzz run request` (or `data_codec`) explores them
//! with libFuzzer; `cargo test -p fuzz-targets` runs them over the seeds in `seeds/`
//! and random inputs on every CI run.

use std::sync::OnceLock;

use aws_sdk_dynamodb::config::retry::RetryConfig;
use base64::Engine;
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use serde_json::{Value, json};
use session_store::{Config, DynamoStore, NewSession, Session, SessionData, SessionId, Timestamp, item};
use session_testkit::{self as testkit, RequestCounter};

/// Bytes a request line cannot carry raw.
const NOT_IN_URI: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'<')
    .add(b'>')
    .add(b'[')
    .add(b']')
    .add(b'\\')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

/// An API on a DynamoDB endpoint that refuses connections, and its request counter.
fn app() -> &'static (api::App, RequestCounter, tokio::runtime::Runtime) {
    static APP: OnceLock<(api::App, RequestCounter, tokio::runtime::Runtime)> = OnceLock::new();
    APP.get_or_init(|| {
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a local port");
        let counter = RequestCounter::default();
        let config = testkit::local_config_at(&format!("http://{closed}"))
            .retry_config(RetryConfig::disabled())
            .interceptor(counter.clone())
            .build();
        let store = DynamoStore::new(
            aws_sdk_dynamodb::Client::from_conf(config),
            Config::for_table("sessions"),
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        (api::App::new(store), counter, runtime)
    })
}

/// The API Gateway (HTTP API, payload 2.0) event `input` describes: a method byte, then
/// NUL-separated path, query, headers (`name: value` lines) and body; a body after a
/// second NUL byte is sent base64-encoded, as API Gateway sends binary bodies.
pub fn event(input: &[u8]) -> Value {
    let (method, rest) = input.split_first().unwrap_or((&0, &[]));
    let mut parts = rest.splitn(5, |b| *b == 0);
    let mut text = || String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let (path, query, header_lines, body) = (text(), text(), text(), text());
    let binary = parts.next();
    let mut headers = serde_json::Map::new();
    for line in header_lines.lines() {
        if let Some((name, value)) = line.split_once(':') {
            let name: String = name
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect::<String>()
                .to_ascii_lowercase();
            if !name.is_empty() {
                headers.insert(name, Value::String(value.trim().to_owned()));
            }
        }
    }
    let method = METHODS[usize::from(*method) % METHODS.len()];
    // As a client must send them and API Gateway passes them on: what a URI cannot hold
    // raw (controls, spaces, non-ASCII, ...) percent-encoded.
    let path = format!("/{}", utf8_percent_encode(path.trim_start_matches('/'), NOT_IN_URI));
    let query = utf8_percent_encode(&query, NOT_IN_URI).to_string();
    let (body, base64) = match binary {
        Some(bytes) => (base64::engine::general_purpose::STANDARD.encode(bytes), true),
        None => (body, false),
    };
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "api",
            "domainName": "api.example.com",
            "domainPrefix": "api",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.1", "userAgent": "fuzz"},
            "requestId": "fuzz",
            "routeKey": "$default",
            "stage": "$default",
            "time": "22/Nov/2026:10:00:00 +0000",
            "timeEpoch": 1795341600000u64
        },
        "body": body,
        "isBase64Encoded": base64
    })
}

/// Property: every request API Gateway could deliver gets a 2xx or a 4xx problem, or a
/// 503 only after it reached DynamoDB (which refuses here); never a panic or a 500.
pub fn request(input: &[u8]) {
    let event = event(input);
    // Requests lambda_http cannot read never reach the handler (nor come from API Gateway:
    // its 10 KB request line and header limit keeps them out).
    let Ok(request) = lambda_http::request::from_str(&event.to_string()) else {
        return;
    };
    let (app, counter, runtime) = app();
    counter.take();
    let response = runtime
        .block_on(api::handle(app, request))
        .expect("the handler answers every request");
    let status = response.status().as_u16();
    let reached_dynamodb = counter.take() > 0;
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok());
    match status {
        200..=299 => {}
        400..=499 => assert_eq!(content_type, Some("application/problem+json"), "{status} for {event}"),
        503 => assert!(reached_dynamodb, "503 without a DynamoDB call for {event}"),
        _ => panic!("{status} for {event}"),
    }
}

/// Property: any JSON object a client may store round-trips exactly through a
/// sealed document and the whole DynamoDB item codec, and opens with its own id only.
pub fn data_codec(input: &[u8]) {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    let Ok(data) = SessionData::from_json(text) else {
        return;
    };
    let id = SessionId::generate().expect("OS randomness");
    let sealed = session_store::seal::seal(&id, data.as_json().as_bytes()).expect("OS randomness");
    let opened = session_store::seal::open(&id, &sealed).expect("a document opens with its id");
    assert_eq!(SessionData::from_document(opened).as_ref(), Some(&data), "{text}");
    let other = SessionId::generate().expect("OS randomness");
    assert!(session_store::seal::open(&other, &sealed).is_err(), "{text}");
    let json = serde_json::to_string(&data).expect("data serializes");
    assert_eq!(SessionData::from_json(&json).ok().as_ref(), Some(&data), "{text}");

    let config = Config::for_table("sessions");
    let request = NewSession {
        data: data.clone(),
        ..Default::default()
    };
    let Ok(session) = Session::create(&id, id.handle(), request, &config.limits, Timestamp(1_795_341_600)) else {
        return; // over the size limit: refused before it is stored
    };
    let item = item::encode(&session, &id, None, "write", &config).expect("OS randomness");
    let decoded = item::decode(item).expect("a stored session decodes");
    assert_eq!(decoded.open(&id).expect("it opens with its id"), session, "{text}");
}
