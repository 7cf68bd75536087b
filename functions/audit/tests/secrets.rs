//! No session id and no session data at rest: after a whole life of sessions through
//! the API (creates with and without an `Idempotency-Key`, merges, replaces, touches,
//! rotations and a login, deletes, a revoke by handle, a revoke-all), the sessions
//! table, the registry table, the sessions table's stream and the audit table written
//! from it hold no id, in any of the encodings an id's bytes could take, and none of
//! the data's keys or values, in any encoding (binary attributes read as their bytes).

mod common;

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use common::*;
use local_triggers::streams::DynamoDbLocal;
use serde_json::{Value, json};
use session_store::{DynamoStore, SessionId};
use session_testkit::{self as testkit, ManualClock};

/// The sample event `events/{name}.json` as JSON.
fn sample(name: &str) -> Value {
    let text = std::fs::read_to_string(testkit::repo_root().join(format!("events/{name}.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

const SAMPLE_ID: &str = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA";

/// Sends `event` (aimed at `id`, with `body` and extra headers) through the API handler.
async fn call(app: &api::App, name: &str, id: &str, body: Option<&str>, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut event = serde_json::from_str::<Value>(&sample(name).to_string().replace(SAMPLE_ID, id)).unwrap();
    if let Some(body) = body {
        event["body"] = json!(body);
        event["headers"]["content-length"] = json!(body.len().to_string());
    }
    for (name, value) in headers {
        event["headers"][*name] = json!(value);
    }
    let request = lambda_http::request::from_str(&event.to_string()).unwrap();
    let response = api::handle(app, request).await.unwrap();
    let json = match response.body() {
        lambda_http::Body::Text(text) => serde_json::from_str(text).unwrap_or(Value::Null),
        _ => Value::Null,
    };
    (response.status().as_u16(), json)
}

/// Every item of `table`, read consistently.
async fn scan(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Vec<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let page = client
            .scan()
            .table_name(table)
            .consistent_read(true)
            .set_exclusive_start_key(start)
            .send()
            .await
            .unwrap();
        items.extend(page.items().iter().cloned());
        start = page.last_evaluated_key;
        if start.is_none() {
            return items;
        }
    }
}

/// Every item of `table`, as text.
async fn dump(client: &aws_sdk_dynamodb::Client, table: &str) -> String {
    scan(client, table)
        .await
        .iter()
        .map(|item| format!("{item:?}\n"))
        .collect()
}

/// DynamoDB Local's endpoint, a client, fresh tables, a clock and an API on them.
async fn setup() -> (
    String,
    aws_sdk_dynamodb::Client,
    session_store::Config,
    Arc<ManualClock>,
    api::App,
) {
    let (client, _) = testkit::client();
    let config = testkit::fresh_config(&client).await;
    let clock = Arc::new(ManualClock::new());
    let app = api::App {
        clock: clock.clone(),
        ..api::App::new(DynamoStore::new(client.clone(), config.clone()))
    };
    (testkit::endpoint(), client, config, clock, app)
}

/// The forms an id's 32 bytes could be found in.
fn encodings(id: &str) -> [String; 4] {
    let bytes = URL_SAFE_NO_PAD.decode(id).unwrap();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    [id.to_owned(), hex.clone(), hex.to_uppercase(), STANDARD.encode(&bytes)]
}

#[tokio::test]
async fn no_table_and_no_stream_record_holds_a_session_id() {
    let (endpoint, client, config, clock, app) = setup().await;
    let mut ids: Vec<String> = Vec::new();
    let mut issued = |(status, json): (u16, Value)| {
        assert_eq!(status, 201, "{json}");
        let id = json["id"].as_str().unwrap().to_owned();
        ids.push(id.clone());
        id
    };
    let key = [("idempotency-key", "\"5b1e9d2c-8f3a-4e7b-9c6d-0a1b2c3d4e5f\"")];
    let anonymous = issued(call(&app, "create-session", "", Some(r#"{"data":{"a":1}}"#), &key).await);
    assert_eq!(
        call(&app, "create-session", "", Some(r#"{"data":{"a":1}}"#), &key)
            .await
            .0,
        201,
        "a replay"
    );
    let owned: Vec<String> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            v.push(issued(call(&app, "create-session", "", None, &[]).await));
        }
        v
    };
    assert_eq!(call(&app, "merge-session", &owned[0], None, &[]).await.0, 200);
    assert_eq!(call(&app, "replace-session", &owned[1], None, &[]).await.0, 200);
    clock.advance(120);
    assert_eq!(call(&app, "touch-session", &owned[2], None, &[]).await.0, 200);
    let rotated = issued(
        call(
            &app,
            "rotate-session",
            &owned[0],
            None,
            &[("idempotency-key", "rotate-key-0123456789")],
        )
        .await,
    );
    let login = issued(
        call(
            &app,
            "rotate-session",
            &anonymous,
            Some(r#"{"subject":"user-42"}"#),
            &[],
        )
        .await,
    );
    assert_eq!(call(&app, "delete-session", &owned[1], None, &[]).await.0, 204);
    let (_, got) = call(&app, "get-session", &owned[2], None, &[]).await;
    let handle = got["handle"].as_str().unwrap().to_owned();
    let by_handle = sample("revoke-subject-session").to_string();
    let sample_handle = SessionId::parse(SAMPLE_ID).unwrap().handle();
    let request = by_handle.replace(sample_handle.as_str(), &handle);
    let response = api::handle(&app, lambda_http::request::from_str(&request).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let (status, revoked) = call(&app, "revoke-subject-sessions", &rotated, None, &[]).await;
    assert_eq!(
        (status, &revoked["revoked"]),
        (200, &json!(2)),
        "login and owned[3]; rotated kept"
    );
    let (status, listed) = call(&app, "list-subject-sessions", "", None, &[]).await;
    assert_eq!((status, listed["sessions"].as_array().map(Vec::len)), (200, Some(1)));
    assert_eq!(
        call(&app, "get-session", &login, None, &[]).await.0,
        404,
        "the logged-in session went with its owner's others"
    );

    let stream = DynamoDbLocal::new(&endpoint).read_all(&config.table_name).unwrap();
    let batch: aws_lambda_events::event::dynamodb::Event =
        serde_json::from_value(json!({ "Records": stream })).unwrap();
    let auditor = auditor(&client).await;
    assert!(run(&auditor, &batch).await.batch_item_failures.is_empty());
    let removes = stream.iter().filter(|r| r["eventName"] == "REMOVE").count();
    assert!(removes >= 6, "the stream carried the deletions ({removes})");

    let dumps = [
        ("sessions table", dump(&client, &config.table_name).await),
        ("registry table", dump(&client, &config.registry_table).await),
        ("stream", serde_json::to_string(&stream).unwrap()),
        ("audit table", dump(&client, auditor.log.table()).await),
    ];
    for (what, text) in &dumps {
        assert!(text.len() > 100, "{what} is not empty");
    }
    let kept = SessionId::parse(&rotated).unwrap().handle();
    assert!(dumps[0].1.contains(kept.as_str()), "sessions are there, by handle");
    assert_eq!(ids.len(), 7);
    for id in &ids {
        for encoded in encodings(id) {
            for (what, text) in &dumps {
                assert!(
                    !text.contains(&encoded),
                    "{what} holds a session id ({})",
                    &encoded[..8]
                );
            }
        }
    }
}

/// Data an app keeps next to a login: distinctive keys and values, one nested.
/// (Owners, handles, devices and times are readable at rest by design: listings, the
/// cap, the sweeper and the audit need them without the id.)
const CANARIES: [&str; 5] = [
    "canarykeyQ7",
    "canaryvalueZ9",
    "nestedcanaryW4",
    "patchcanaryK2",
    "replacecanaryM5",
];

/// Every byte string an item could hold data in: each string and number as stored,
/// each binary attribute's bytes, and each string that base64 or hex decodes, at any depth.
fn stored_bytes(value: &aws_sdk_dynamodb::types::AttributeValue, into: &mut Vec<Vec<u8>>) {
    use aws_sdk_dynamodb::types::AttributeValue as A;
    match value {
        A::S(s) | A::N(s) => text_bytes(s, into),
        A::B(b) => into.push(b.as_ref().to_vec()),
        A::Ss(v) | A::Ns(v) => v.iter().for_each(|s| text_bytes(s, into)),
        A::Bs(v) => into.extend(v.iter().map(|b| b.as_ref().to_vec())),
        A::L(v) => v.iter().for_each(|v| stored_bytes(v, into)),
        A::M(m) => m.iter().for_each(|(k, v)| {
            text_bytes(k, into);
            stored_bytes(v, into);
        }),
        _ => {}
    }
}

/// `s` itself, and what it decodes to as base64 (either alphabet) or hex.
fn text_bytes(s: &str, into: &mut Vec<Vec<u8>>) {
    into.push(s.as_bytes().to_vec());
    into.extend(STANDARD.decode(s).ok());
    into.extend(URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok());
    if s.len().is_multiple_of(2) && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        into.push(
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect(),
        );
    }
}

/// Every item of `table`, as byte strings ([`stored_bytes`]).
async fn dump_bytes(client: &aws_sdk_dynamodb::Client, table: &str) -> Vec<Vec<u8>> {
    let mut found = Vec::new();
    for item in scan(client, table).await {
        item.iter().for_each(|(k, v)| {
            text_bytes(k, &mut found);
            stored_bytes(v, &mut found);
        });
    }
    found
}

/// Every string of a stream record (its images' binary values arrive base64-encoded).
fn json_bytes(value: &Value, into: &mut Vec<Vec<u8>>) {
    match value {
        Value::String(s) => text_bytes(s, into),
        Value::Array(v) => v.iter().for_each(|v| json_bytes(v, into)),
        Value::Object(m) => m.iter().for_each(|(k, v)| {
            text_bytes(k, into);
            json_bytes(v, into);
        }),
        other => into.push(other.to_string().into_bytes()),
    }
}

/// The forms a canary could be found in: as is, UTF-16 (both byte orders), base64 and hex.
fn canary_forms(canary: &str) -> Vec<Vec<u8>> {
    let utf16 = |le: bool| -> Vec<u8> {
        canary
            .encode_utf16()
            .flat_map(|u| if le { u.to_le_bytes() } else { u.to_be_bytes() })
            .collect()
    };
    let hex: String = canary.bytes().map(|b| format!("{b:02x}")).collect();
    vec![
        canary.as_bytes().to_vec(),
        canary.to_uppercase().into_bytes(),
        utf16(true),
        utf16(false),
        STANDARD.encode(canary).into_bytes(),
        URL_SAFE_NO_PAD.encode(canary).into_bytes(),
        hex.into_bytes(),
    ]
}

#[tokio::test]
async fn no_table_and_no_stream_record_holds_session_data() {
    let (endpoint, client, config, clock, app) = setup().await;
    let [key, value, nested, patched, replaced] = CANARIES;
    let created = format!(
        r#"{{"subject":"user-42","data":{{"{key}":"{value}","prefs":{{"{nested}":[1,"{value}"]}},"cart":"{}"}}}}"#,
        "item ".repeat(200)
    );
    let mut live = Vec::new();
    for _ in 0..3 {
        let (status, json) = call(&app, "create-session", "", Some(&created), &[]).await;
        assert_eq!(status, 201, "{json}");
        assert_eq!(json["data"][key], json!(value), "served to the id's holder");
        live.push(json["id"].as_str().unwrap().to_owned());
    }
    let patch = format!(r#"{{"data":{{"{patched}":"{value}","prefs":{{"{nested}":null}}}}}}"#);
    let (status, json) = call(&app, "merge-session", &live[0], Some(&patch), &[]).await;
    assert_eq!((status, &json["data"][patched]), (200, &json!(value)), "{json}");
    let put = format!(r#"{{"data":{{"{replaced}":"{value}"}}}}"#);
    assert_eq!(call(&app, "replace-session", &live[1], Some(&put), &[]).await.0, 200);
    clock.advance(120);
    assert_eq!(call(&app, "touch-session", &live[2], None, &[]).await.0, 200);
    let rotate = r#"{"subject":"user-43"}"#;
    let (status, json) = call(&app, "rotate-session", &live[0], Some(rotate), &[]).await;
    assert_eq!((status, &json["data"][patched]), (201, &json!(value)), "{json}");
    let rotated = json["id"].as_str().unwrap().to_owned();
    assert_eq!(call(&app, "delete-session", &live[1], None, &[]).await.0, 204);
    let (status, revoked) = call(&app, "revoke-subject-sessions", &rotated, None, &[]).await;
    assert_eq!(
        (status, &revoked["revoked"]),
        (200, &json!(1)),
        "live[2]: the login left user-42"
    );
    let (status, json) = call(&app, "get-session", &rotated, None, &[]).await;
    assert_eq!((status, &json["data"][patched]), (200, &json!(value)), "{json}");

    let stream = DynamoDbLocal::new(&endpoint).read_all(&config.table_name).unwrap();
    let batch: aws_lambda_events::event::dynamodb::Event =
        serde_json::from_value(json!({ "Records": stream })).unwrap();
    let auditor = auditor(&client).await;
    assert!(run(&auditor, &batch).await.batch_item_failures.is_empty());
    let mut stream_bytes = Vec::new();
    json_bytes(&Value::Array(stream.clone()), &mut stream_bytes);
    let mut dumps = vec![
        ("sessions table", dump_bytes(&client, &config.table_name).await),
        ("registry table", dump_bytes(&client, &config.registry_table).await),
        ("stream", stream_bytes),
        ("audit table", dump_bytes(&client, auditor.log.table()).await),
    ];
    let documents = scan(&client, &config.table_name)
        .await
        .iter()
        .filter(|item| item.get(session_store::item::attr::DOCUMENT).is_some_and(|d| d.is_b()))
        .count();
    assert_eq!(documents, 1, "the one live session's document, sealed");
    // Were a document compressed but not sealed, its text would inflate from one of these
    // offsets (the whole blob, past the format and codec bytes, past the nonce too).
    let inflated: Vec<Vec<u8>> = dumps
        .iter()
        .flat_map(|(_, found)| found)
        .flat_map(|bytes| [0, 2, 14].map(|offset| bytes.get(offset..).unwrap_or_default()))
        .filter_map(|b| miniz_oxide::inflate::decompress_to_vec_with_limit(b, 1 << 20).ok())
        .collect();
    dumps.push(("anything that inflates", inflated));
    for canary in CANARIES {
        for form in canary_forms(canary) {
            for (what, found) in &dumps {
                assert!(
                    !found
                        .iter()
                        .any(|b| b.windows(form.len()).any(|w| w == form.as_slice())),
                    "{what} holds session data ({canary})"
                );
            }
        }
    }
    for (what, found) in &dumps {
        let cart = "item item item".as_bytes();
        assert!(
            !found.iter().any(|b| b.windows(cart.len()).any(|w| w == cart)),
            "{what} holds the cart"
        );
    }
}
