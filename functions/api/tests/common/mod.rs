//! Shared helpers: an app on a fresh DynamoDB Local table, and the `events/` files.

#![allow(dead_code)]

use std::sync::Arc;

use api::App;
use lambda_http::{Body, Response};
use serde_json::Value;
use session_testkit::{self as testkit, ManualClock, RequestCounter};

/// The id the sample events carry.
pub const SAMPLE_ID: &str = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA";

/// An app on a fresh table, its request counter and its clock.
pub async fn app() -> (App, RequestCounter, Arc<ManualClock>) {
    let (store, counter) = testkit::store(|_| {}).await;
    let clock = Arc::new(ManualClock::new());
    (
        App {
            clock: clock.clone(),
            ..App::new(store)
        },
        counter,
        clock,
    )
}

/// The front door a request came through, which shapes its event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrontDoor {
    /// API Gateway's HTTP API: `events/{name}.json`.
    HttpApi,
    /// The api function's URL: `events/function-url/{name}.json`.
    FunctionUrl,
}

impl FrontDoor {
    /// Both front doors.
    pub const ALL: [FrontDoor; 2] = [FrontDoor::HttpApi, FrontDoor::FunctionUrl];

    /// The folder of this front door's sample events.
    pub fn events_dir(self) -> std::path::PathBuf {
        let root = testkit::repo_root().join("events");
        match self {
            FrontDoor::HttpApi => root,
            FrontDoor::FunctionUrl => root.join("function-url"),
        }
    }
}

tokio::task_local! {
    /// The front door whose events `event` loads, for a test run `behind` it.
    static FRONT_DOOR: FrontDoor;
}

/// Runs `test` with every event it loads through [`event`] as `door` sends it.
pub async fn behind<F: std::future::Future>(door: FrontDoor, test: F) -> F::Output {
    FRONT_DOOR.scope(door, test).await
}

/// The sample event `{name}.json` as the front door of the running test sends it (the
/// HTTP API outside [`behind`]), as JSON.
pub fn event(name: &str) -> Value {
    event_through(FRONT_DOOR.try_with(|door| *door).unwrap_or(FrontDoor::HttpApi), name)
}

/// The sample event `{name}.json` as `door` sends it, as JSON.
pub fn event_through(door: FrontDoor, name: &str) -> Value {
    let path = door.events_dir().join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// The sample event aimed at session `id` instead of the sample id.
pub fn event_for(name: &str, id: &str) -> Value {
    let text = event(name).to_string().replace(SAMPLE_ID, id);
    serde_json::from_str(&text).unwrap()
}

/// The sample event as `door` sends it, aimed at session `id` instead of the sample id.
pub fn event_for_through(door: FrontDoor, name: &str, id: &str) -> Value {
    let text = event_through(door, name).to_string().replace(SAMPLE_ID, id);
    serde_json::from_str(&text).unwrap()
}

/// A response's parts: status, headers and body as JSON (`Null` when empty).
pub struct Reply {
    pub status: u16,
    pub response: Response<Body>,
    pub json: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.response.headers().get(name).and_then(|v| v.to_str().ok())
    }

    pub fn body_text(&self) -> String {
        match self.response.body() {
            Body::Text(t) => t.clone(),
            Body::Binary(b) => String::from_utf8_lossy(b).into_owned(),
            _ => String::new(),
        }
    }
}

/// Sends an event through the handler, as the Lambda runtime would.
pub async fn call(app: &App, event: &Value) -> Reply {
    let request = lambda_http::request::from_str(&event.to_string()).expect("a valid HTTP API or function URL event");
    let response = api::handle(app, request).await.unwrap();
    let status = response.status().as_u16();
    let json = match response.body() {
        Body::Text(t) => serde_json::from_str(t).unwrap_or(Value::Null),
        _ => Value::Null,
    };
    Reply { status, response, json }
}

/// Replaces an event's body (and its content type, when given).
pub fn with_body(mut event: Value, body: &str, content_type: Option<&str>) -> Value {
    event["body"] = Value::String(body.to_owned());
    event["headers"]["content-length"] = Value::String(body.len().to_string());
    if let Some(ct) = content_type {
        event["headers"]["content-type"] = Value::String(ct.to_owned());
    }
    event
}

/// Sets a header on an event.
pub fn with_header(mut event: Value, name: &str, value: &str) -> Value {
    event["headers"][name] = Value::String(value.to_owned());
    event
}

/// Creates a session through the `create-session` event with `body`; returns its id.
pub async fn create(app: &App, body: &str) -> String {
    let reply = call(app, &with_body(event("create-session"), body, None)).await;
    assert_eq!(reply.status, 201, "{}", reply.json);
    reply.json["id"].as_str().unwrap().to_owned()
}
