//! What the API logs: fingerprints of session ids, never the ids (bearer secrets).
//! Its own test binary: tracing's per-callsite interest is process-wide, so a
//! thread-scoped subscriber sees every event only when no other test runs beside it.

mod common;

use common::*;
use session_testkit as testkit;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;

/// Log lines written while it is alive (JSON, as in Lambda).
#[derive(Clone, Default)]
struct CapturedLogs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn session_ids_never_reach_the_logs_only_their_fingerprints() {
    let logs = CapturedLogs::default();
    let writer = logs.clone();
    // Our crates at every level; the SDK at the functions' default (INFO: at DEBUG and
    // TRACE it logs request and response bodies, which an operator turns on knowingly).
    let filter = Targets::new()
        .with_default(LevelFilter::INFO)
        .with_target("api", LevelFilter::TRACE)
        .with_target("session_store", LevelFilter::TRACE);
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(LevelFilter::TRACE)
        .with_writer(move || writer.clone())
        .finish()
        .with(filter);
    let _guard = tracing::subscriber::set_default(subscriber);

    let (app, _, clock) = app().await;
    let id = create(&app, r#"{"subject": "alice"}"#).await;
    let mut ids = vec![id.clone()];
    for name in [
        "get-session",
        "replace-session",
        "replace-session",
        "merge-session",
        "touch-session",
    ] {
        call(&app, &event_for(name, &id)).await; // the second PUT is a stale If-Match: 412
    }
    let rotated = call(&app, &event_for("rotate-session", &id)).await;
    let new_id = rotated.json["id"].as_str().unwrap().to_owned();
    ids.push(new_id.clone());
    call(&app, &event_for("delete-session", &new_id)).await;
    ids.push(create(&app, r#"{"subject": "alice", "idle_timeout_seconds": 60}"#).await);
    clock.advance(61);
    call(&app, &event_for("get-session", &ids[2])).await;
    call(&app, &event("revoke-subject-sessions")).await;
    // A session whose stored data was altered: an ERROR line with its fingerprint.
    let altered = create(&app, r#"{"data": {"logCanaryKey7": "logCanaryValue3"}}"#).await;
    assert_eq!(call(&app, &event_for("get-session", &altered)).await.status, 200);
    testkit::alter_document(&app.store, &session_store::SessionId::parse(&altered).unwrap()).await;
    assert_eq!(call(&app, &event_for("get-session", &altered)).await.status, 500);
    ids.push(altered.clone());
    // Through a function URL, which keeps no access log: the function's line is it.
    let via_url = create(&app, "{}").await;
    ids.push(via_url.clone());
    call(
        &app,
        &event_for_through(FrontDoor::FunctionUrl, "touch-session", &via_url),
    )
    .await;

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let unopened: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|line| line["fields"]["message"] == "the stored session document does not open")
        .collect();
    let fingerprint = session_store::SessionId::parse(&altered).unwrap().fingerprint();
    assert_eq!(unopened.len(), 1, "{text}");
    assert_eq!(
        (&unopened[0]["level"], &unopened[0]["fields"]["session"]),
        (&"ERROR".into(), &fingerprint.clone().into())
    );
    let last_request: serde_json::Value = text
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .rfind(|line| line["fields"]["message"] == "request")
        .expect("a request line");
    let fields = &last_request["fields"];
    assert_eq!(
        (
            &fields["method"],
            &fields["route"],
            &fields["status"],
            &fields["caller"],
            &fields["ip"],
            &fields["request_id"],
        ),
        (
            &"POST".into(),
            &"/sessions/{id}/touch".into(),
            &200.into(),
            &"AROAEXAMPLEROLE".into(),
            &"203.0.113.10".into(),
            &"5f0c1d9e-8a7b-4c6d-9e2f-3a4b5c6d7e8f".into(),
        ),
        "{last_request}"
    );
    assert!(fields["latency_ms"].is_u64(), "{last_request}");
    assert!(text.lines().count() >= 10, "{text}");
    for canary in ["logCanaryKey7", "logCanaryValue3"] {
        assert!(!text.contains(canary), "session data appears in the logs:\n{text}");
    }
    for id in &ids {
        let fingerprint = session_store::SessionId::parse(id).unwrap().fingerprint();
        assert!(text.contains(&fingerprint), "{fingerprint} is logged");
        assert!(!text.contains(id.as_str()), "{id} appears in the logs:\n{text}");
        assert!(!text.contains(&id[..20]), "a long part of {id} appears in the logs");
    }
}
