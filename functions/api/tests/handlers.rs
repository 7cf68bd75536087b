//! The API handler fed the `events/` samples, against DynamoDB Local: every test twice,
//! once with the events API Gateway's HTTP API sends (`http_api::`) and once with those of
//! the function's URL (`function_url::`, from `events/function-url/`).

mod common;

use common::*;

/// Makes each listed `async fn` a test behind each front door.
macro_rules! behind_both_front_doors {
    ($($test:ident),* $(,)?) => {
        mod http_api {
            $(#[tokio::test]
            async fn $test() {
                crate::common::behind(crate::common::FrontDoor::HttpApi, super::$test()).await
            })*
        }
        mod function_url {
            $(#[tokio::test]
            async fn $test() {
                crate::common::behind(crate::common::FrontDoor::FunctionUrl, super::$test()).await
            })*
        }
    };
}

behind_both_front_doors!(
    health_answers_ok_without_touching_dynamodb,
    the_sample_events_walk_a_session_through_its_whole_life,
    missing_expired_and_malformed_ids_get_the_same_404,
    a_stale_if_match_gets_412_and_a_current_one_wins,
    any_json_object_round_trips_exactly_over_http,
    bad_input_gets_a_clear_4xx_problem,
    hostile_paths_and_headers_get_a_4xx_before_any_dynamodb_call,
    an_owners_sessions_are_listed_and_revoked_but_one,
    unknown_paths_are_404_and_wrong_methods_405,
    dynamodb_down_is_a_503_with_retry_after,
    a_listed_handle_revokes_that_session_and_never_another_owners,
    login_rotation_binds_the_subject,
    idempotency_keys_replay_creates_and_rotations_and_refuse_other_requests,
    patch_is_an_rfc_7396_merge_patch_at_every_depth,
    get_with_touch_true_reads_and_slides_the_idle_expiry_in_one_call,
    devices_are_stored_listed_kept_across_rotation_and_bounded,
);

/// The handle of live session `id`, as the API shows it (one GetItem).
async fn handle_of(app: &api::App, id: &str) -> Value {
    let got = call(app, &event_for("get-session", id)).await;
    assert_eq!(got.status, 200, "{}", got.json);
    got.json["handle"].clone()
}

/// The key of session `id`'s item: a digest of the id, which rotation changes.
fn key_of(id: &str) -> Value {
    Value::String(
        session_store::SessionId::parse(id)
            .unwrap()
            .handle()
            .as_str()
            .to_owned(),
    )
}
use serde_json::{Value, json};

async fn health_answers_ok_without_touching_dynamodb() {
    let (app, counter, _) = app().await;
    let reply = call(&app, &event("health")).await;
    assert_eq!((reply.status, reply.json.clone()), (200, json!({"status": "ok"})));
    assert_eq!(counter.take(), 0);
}

async fn the_sample_events_walk_a_session_through_its_whole_life() {
    let (app, counter, clock) = app().await;
    let created = call(&app, &event("create-session")).await;
    assert_eq!(created.status, 201, "{}", created.json);
    assert_eq!(counter.take(), 1, "create");
    let id = created.json["id"].as_str().unwrap().to_owned();
    assert_eq!(created.header("location"), Some(format!("/sessions/{id}").as_str()));
    assert_eq!(created.header("etag"), Some("\"1\""));
    assert_eq!(created.json["subject"], "user-42");
    assert_eq!(created.json["data"], json!({"cart": [1, 2], "theme": "dark"}));
    assert_eq!(created.json["idle_timeout_seconds"], 1800);
    assert_eq!(created.json["version"], 1);
    for field in ["created_at", "updated_at", "expires_at", "absolute_expires_at"] {
        let text = created.json[field].as_str().unwrap();
        assert!(text.ends_with('Z') && text.len() == 20, "{field}: {text}");
    }

    let got = call(&app, &event_for("get-session", &id)).await;
    let mut without_id = created.json.clone();
    without_id.as_object_mut().unwrap().remove("id");
    assert_eq!(
        (got.status, got.json.clone()),
        (200, without_id),
        "only create and rotate return the id"
    );
    assert_ne!(
        got.json["handle"],
        key_of(&id),
        "the handle is random, no digest of the id"
    );
    assert_eq!(got.header("etag"), Some("\"1\""));
    assert_eq!(counter.take(), 1, "get");

    clock.advance(120);
    let replaced = call(&app, &event_for("replace-session", &id)).await;
    assert_eq!(replaced.status, 200, "{}", replaced.json);
    assert_eq!(replaced.json["data"], json!({"cart": [], "theme": "light"}));
    assert_eq!(replaced.header("etag"), Some("\"2\""));
    assert_ne!(
        replaced.json["expires_at"], created.json["expires_at"],
        "a data write is activity"
    );
    assert_eq!(counter.take(), 2, "replace: read, then one conditional PutItem");

    let merged = call(&app, &event_for("merge-session", &id)).await;
    assert_eq!(merged.status, 200, "{}", merged.json);
    assert_eq!(merged.json["data"], json!({"cart": [], "locale": "de-CH"}));
    assert_eq!(merged.json["version"], 3);
    assert_eq!(counter.take(), 2, "merge: read, then one conditional PutItem");

    clock.advance(120);
    let touched = call(&app, &event_for("touch-session", &id)).await;
    assert_eq!(touched.status, 200, "{}", touched.json);
    assert_eq!(touched.json["version"], 3, "a touch is not a data write");
    assert_ne!(touched.json["expires_at"], merged.json["expires_at"]);
    assert_eq!(counter.take(), 1, "touch");

    let rotated = call(&app, &event_for("rotate-session", &id)).await;
    assert_eq!(rotated.status, 201, "{}", rotated.json);
    assert_eq!(counter.take(), 2, "rotate: read, then one TransactWriteItems");
    let new_id = rotated.json["id"].as_str().unwrap().to_owned();
    assert_ne!(new_id, id);
    assert_eq!(rotated.header("location"), Some(format!("/sessions/{new_id}").as_str()));
    assert_eq!(rotated.json["data"], merged.json["data"]);
    assert_eq!(rotated.json["absolute_expires_at"], created.json["absolute_expires_at"]);
    assert_eq!(
        call(&app, &event_for("get-session", &id)).await.status,
        404,
        "the old id is gone"
    );

    let deleted = call(&app, &event_for("delete-session", &new_id)).await;
    assert_eq!((deleted.status, deleted.body_text()), (204, String::new()));
    assert_eq!(
        call(&app, &event_for("delete-session", &new_id)).await.status,
        204,
        "idempotent"
    );
    counter.take();
    assert_eq!(call(&app, &event_for("get-session", &new_id)).await.status, 404);
}

async fn missing_expired_and_malformed_ids_get_the_same_404() {
    let (app, counter, clock) = app().await;
    let missing = call(&app, &event("get-session")).await;
    let id = create(&app, r#"{"idle_timeout_seconds": 60}"#).await;
    clock.advance(61);
    let expired = call(&app, &event_for("get-session", &id)).await;
    counter.take();
    let malformed = call(&app, &event_for("get-session", "..%2F..%2Fetc%2Fpasswd")).await;
    assert_eq!(counter.take(), 0, "a malformed id costs no DynamoDB call");
    for reply in [&missing, &expired, &malformed] {
        assert_eq!(reply.status, 404);
        assert_eq!(reply.header("content-type"), Some("application/problem+json"));
        assert_eq!(reply.json, missing.json);
    }
    assert_eq!(missing.json["type"], "urn:session-service:problem:not-found");
    for name in ["replace-session", "merge-session", "touch-session", "rotate-session"] {
        assert_eq!(
            call(&app, &event_for(name, &id)).await.status,
            404,
            "{name} must not revive an expired session"
        );
    }
}

async fn a_stale_if_match_gets_412_and_a_current_one_wins() {
    let (app, _, _) = app().await;
    let id = create(&app, "{}").await;
    let first = call(&app, &event_for("replace-session", &id)).await;
    assert_eq!(first.status, 200);
    let stale = call(&app, &event_for("replace-session", &id)).await;
    assert_eq!(stale.status, 412, "{}", stale.json);
    assert_eq!(stale.json["type"], "urn:session-service:problem:precondition-failed");
    let merge = with_header(event_for("merge-session", &id), "if-match", "\"2\"");
    assert_eq!(call(&app, &merge).await.status, 200);
    let weak = with_header(event_for("merge-session", &id), "if-match", "W/\"3\"");
    assert_eq!(call(&app, &weak).await.status, 412, "weak tags never match");
    let any = with_header(event_for("merge-session", &id), "if-match", "*");
    assert_eq!(call(&app, &any).await.status, 200);
}

async fn any_json_object_round_trips_exactly_over_http() {
    let (app, _, _) = app().await;
    let data = r#"{"":1,"big":1e308,"n":123456789012345678901,"x":1.0,"ключ":{"🔑":[true,null,-0.0]}}"#;
    let id = create(&app, &format!(r#"{{"data": {data}}}"#)).await;
    let got = call(&app, &event_for("get-session", &id)).await;
    let text = got.body_text();
    assert!(text.contains(&format!(r#""data":{data}"#)), "{text}");
}

async fn bad_input_gets_a_clear_4xx_problem() {
    let (app, counter, _) = app().await;
    let id = create(&app, "{}").await;
    let create_with = |body: &str, ct: &str| with_body(event("create-session"), body, Some(ct));
    let deep = format!(r#"{{"data":{{"a":{}1{}}}}}"#, "[".repeat(70), "]".repeat(70));
    let deeper = format!(r#"{{"data":{{"a":{}1{}}}}}"#, "[".repeat(40_000), "]".repeat(40_000));
    let big = format!(r#"{{"data":{{"a":"{}"}}}}"#, "x".repeat(380_000));
    let huge = format!(r#"{{"data":{{"a":"{}"}}}}"#, "x".repeat(1_000_000));
    let cases: Vec<(&str, Value, u16)> = vec![
        ("not JSON", create_with("{", "application/json"), 400),
        ("an array", create_with("[]", "application/json"), 422),
        (
            "rotate with an array of its fields",
            with_body(event_for("rotate-session", &id), "[false]", Some("application/json")),
            422,
        ),
        (
            "fractional timeout",
            create_with(r#"{"idle_timeout_seconds": 1.5}"#, "application/json"),
            422,
        ),
        ("unknown field", create_with(r#"{"sid": 1}"#, "application/json"), 422),
        (
            "data not an object",
            create_with(r#"{"data": [1]}"#, "application/json"),
            422,
        ),
        (
            "timeout of wrong type",
            create_with(r#"{"idle_timeout_seconds": "1"}"#, "application/json"),
            422,
        ),
        (
            "zero timeout",
            create_with(r#"{"idle_timeout_seconds": 0}"#, "application/json"),
            422,
        ),
        (
            "negative timeout",
            create_with(r#"{"absolute_timeout_seconds": -5}"#, "application/json"),
            422,
        ),
        (
            "timeout over the maximum",
            create_with(r#"{"idle_timeout_seconds": 999999999}"#, "application/json"),
            422,
        ),
        (
            "subject with a newline",
            create_with(r#"{"subject": "a\nb"}"#, "application/json"),
            422,
        ),
        (
            "form body",
            create_with("a=1", "application/x-www-form-urlencoded"),
            415,
        ),
        ("nesting over the limit", create_with(&deep, "application/json"), 422),
        (
            "nesting far over the limit",
            create_with(&deeper, "application/json"),
            422,
        ),
        (
            "data over the 380,000-byte limit",
            create_with(&big, "application/json"),
            413,
        ),
        ("body far over the limit", create_with(&huge, "application/json"), 413),
        (
            "PUT without data",
            with_body(event_for("replace-session", &id), "{}", None),
            422,
        ),
        (
            "PUT without a body",
            with_body(event_for("replace-session", &id), "", None),
            400,
        ),
        (
            "PATCH as plain JSON",
            with_body(
                event_for("merge-session", &id),
                r#"{"data":{}}"#,
                Some("application/json"),
            ),
            415,
        ),
        (
            "PATCH with a non-object data",
            with_body(event_for("merge-session", &id), r#"{"data":[1]}"#, None),
            422,
        ),
        (
            "list limit 0",
            with_query(event("list-subject-sessions"), "limit", "0"),
            400,
        ),
        (
            "list limit text",
            with_query(event("list-subject-sessions"), "limit", "ten"),
            400,
        ),
        (
            "list cursor forged",
            with_query(event("list-subject-sessions"), "cursor", "eyJ4IjoxfQ"),
            400,
        ),
        (
            "revoke except malformed",
            with_query(event("revoke-subject-sessions"), "except", "nope"),
            400,
        ),
    ];
    counter.take();
    for (what, event, status) in cases {
        let reply = call(&app, &event).await;
        assert_eq!(counter.take(), 0, "{what}: invalid input never reaches DynamoDB");
        assert_eq!(reply.status, status, "{what}: {}", reply.json);
        assert_eq!(reply.header("content-type"), Some("application/problem+json"), "{what}");
        assert!(
            reply.json["type"]
                .as_str()
                .unwrap()
                .starts_with("urn:session-service:problem:"),
            "{what}"
        );
        assert!(!reply.json["detail"].as_str().unwrap().is_empty(), "{what}");
    }
    let whole = call(
        &app,
        &create_with(r#"{"idle_timeout_seconds": 60.0, "subject": null}"#, "application/json"),
    )
    .await;
    assert_eq!(
        (whole.status, whole.json["idle_timeout_seconds"].as_u64()),
        (201, Some(60)),
        "60.0 is 60"
    );
    counter.take();
    let mut binary = with_body(event("create-session"), "", Some("application/json"));
    binary["body"] = Value::String("/w==".into()); // the single byte 0xFF: not UTF-8
    binary["isBase64Encoded"] = Value::Bool(true);
    assert_eq!(call(&app, &binary).await.status, 400, "invalid UTF-8");
    assert_eq!(counter.take(), 0, "invalid input never reaches DynamoDB");
}

async fn hostile_paths_and_headers_get_a_4xx_before_any_dynamodb_call() {
    let (app, counter, _) = app().await;
    let id = create(&app, "{}").await;
    let missing = call(&app, &event("get-session")).await;
    counter.take();
    let lookalike = SAMPLE_ID.replacen('A', "\u{0410}", 1); // Cyrillic capital A
    let fullwidth = SAMPLE_ID.replacen('A', "\u{FF21}", 1);
    let encoded = format!("%41{}", &SAMPLE_ID[1..]); // "A" percent-encoded
    let ids = [
        "..%2F..%2Fetc%2Fpasswd".to_owned(),
        "%2e%2e".to_owned(),
        "..".to_owned(),
        lookalike,
        fullwidth,
        encoded,
        format!("{SAMPLE_ID}="),
        format!("{SAMPLE_ID}%00"),
        SAMPLE_ID[..42].to_owned(),
        format!("{SAMPLE_ID}A"),
        SAMPLE_ID.replace('A', "+"),
        // API Gateway caps the request line and headers at 10 KB (and lambda_http panics on a
        // URI over 64 KiB, which therefore never arrives).
        "x".repeat(8_000),
    ];
    for bad in &ids {
        for name in [
            "get-session",
            "replace-session",
            "merge-session",
            "touch-session",
            "rotate-session",
            "delete-session",
        ] {
            let reply = call(&app, &event_for(name, bad)).await;
            assert_eq!(reply.status, 404, "{name} {bad:.60}: {}", reply.json);
            assert_eq!(
                reply.json, missing.json,
                "{name} {bad:.60}: the same 404 as a missing id"
            );
            assert_eq!(counter.take(), 0, "{name} {bad:.60}: no DynamoDB call");
        }
    }

    let replace = || event_for("replace-session", &id);
    let junk = "x".repeat(100_000);
    let many_weak_tags = "W/\"1\", ".repeat(10_000);
    let headers = [
        (
            "If-Match of 100 KB of junk",
            with_header(replace(), "if-match", &junk),
            412,
        ),
        (
            "If-Match of 10,000 weak tags",
            with_header(replace(), "if-match", &many_weak_tags),
            412,
        ),
        (
            "If-Match that is not ASCII",
            with_header(replace(), "if-match", "\"1\"\u{e9}"),
            412,
        ),
        ("If-Match that is empty", with_header(replace(), "if-match", ""), 412),
        (
            "Content-Type of 100 KB",
            with_header(replace(), "content-type", &format!("application/{junk}")),
            415,
        ),
        (
            "Content-Type that is not ASCII",
            with_header(replace(), "content-type", "application/js\u{f6}n"),
            415,
        ),
    ];
    for (what, event, status) in headers {
        let reply = call(&app, &event).await;
        assert_eq!(reply.status, status, "{what}: {}", reply.json);
        assert_eq!(reply.header("content-type"), Some("application/problem+json"), "{what}");
        assert_eq!(counter.take(), 0, "{what}: no DynamoDB call");
    }
    let padded = with_header(event("get-session"), "x-padding", &junk);
    assert_eq!(
        call(&app, &padded).await.status,
        404,
        "an unknown huge header is ignored"
    );
}

fn with_query(mut event: Value, name: &str, value: &str) -> Value {
    event["rawQueryString"] = Value::String(format!("{name}={value}"));
    event["queryStringParameters"] = json!({ name: value });
    event
}

async fn an_owners_sessions_are_listed_and_revoked_but_one() {
    let (app, counter, _) = app().await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(create(&app, r#"{"subject": "user-42", "data": {"secret": 1}}"#).await);
    }
    create(&app, r#"{"subject": "someone-else"}"#).await;
    let mut expected = Vec::new();
    for id in &ids {
        expected.push(handle_of(&app, id).await);
    }
    counter.take();
    let listed = call(&app, &event("list-subject-sessions")).await;
    assert_eq!(listed.status, 200, "{}", listed.json);
    assert_eq!(counter.take(), 2, "a page: one Query, one BatchGetItem");
    let sessions = listed.json["sessions"].as_array().unwrap();
    let mut listed_handles: Vec<_> = sessions.iter().map(|s| s["handle"].clone()).collect();
    listed_handles.sort_by_key(|h| h.to_string());
    expected.sort_by_key(|h| h.to_string());
    assert_eq!(listed_handles, expected, "listings carry handles");
    assert!(sessions.iter().all(|s| s.get("id").is_none()));
    assert!(
        ids.iter().all(|id| !listed.body_text().contains(id.as_str())),
        "and never an id"
    );
    assert!(
        sessions.iter().all(|s| s.get("data").is_none()),
        "listings leave data out"
    );
    assert_eq!(listed.json["next_cursor"], Value::Null);

    let paged = call(&app, &with_query(event("list-subject-sessions"), "limit", "2")).await;
    assert_eq!(paged.json["sessions"].as_array().unwrap().len(), 2);
    let cursor = paged.json["next_cursor"].as_str().unwrap();
    let rest = call(&app, &with_query(event("list-subject-sessions"), "cursor", cursor)).await;
    assert_eq!(rest.json["sessions"].as_array().unwrap().len(), 1);

    counter.take();
    let nobody = event("list-subject-sessions").to_string().replace("user-42", "nobody");
    let nobody = call(&app, &serde_json::from_str(&nobody).unwrap()).await;
    assert_eq!(nobody.json["sessions"], json!([]));
    assert_eq!(counter.take(), 1, "an empty page: the Query alone");
    let revoked = call(&app, &event_for("revoke-subject-sessions", &ids[0])).await;
    assert_eq!((revoked.status, revoked.json.clone()), (200, json!({"revoked": 2})));
    assert_eq!(
        counter.take(),
        8,
        "revoke: read `except`, lock, one Query, two DeleteItems per session (session, membership), unlock"
    );
    assert_eq!(call(&app, &event_for("get-session", &ids[0])).await.status, 200);
    assert_eq!(call(&app, &event_for("get-session", &ids[1])).await.status, 404);
}

async fn unknown_paths_are_404_and_wrong_methods_405() {
    let (app, _, _) = app().await;
    let mut unknown = event("health");
    unknown["rawPath"] = "/admin".into();
    let reply = call(&app, &unknown).await;
    assert_eq!(
        (reply.status, reply.json["type"].as_str()),
        (404, Some("urn:session-service:problem:no-route"))
    );
    // A typo after a session id: the 404 does not echo the path, id and all.
    let id = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    unknown["rawPath"] = format!("/sessions/{id}/typo").into();
    let reply = call(&app, &unknown).await;
    assert_eq!(reply.json["type"], "urn:session-service:problem:no-route");
    assert!(!reply.body_text().contains(id), "{}", reply.body_text());
    let mut wrong = event("health");
    wrong["requestContext"]["http"]["method"] = "POST".into();
    let reply = call(&app, &wrong).await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("GET"));
}

async fn dynamodb_down_is_a_503_with_retry_after() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = session_testkit::local_config_at(&format!("http://{closed}")).build();
    let store = session_store::DynamoStore::new(
        aws_sdk_dynamodb::Client::from_conf(config),
        session_store::Config::for_table("sessions"),
    );
    let app = api::App::new(store);
    for name in [
        "create-session",
        "get-session",
        "touch-session",
        "list-subject-sessions",
    ] {
        let reply = call(&app, &event(name)).await;
        assert_eq!(reply.status, 503, "{name}: {}", reply.json);
        assert_eq!(reply.header("retry-after"), Some("1"));
        assert_eq!(reply.json["type"], "urn:session-service:problem:unavailable");
    }
}

async fn a_listed_handle_revokes_that_session_and_never_another_owners() {
    let (app, counter, _) = app().await;
    let mine = create(&app, r#"{"subject": "user-42"}"#).await;
    let other = create(&app, r#"{"subject": "user-42"}"#).await;
    let theirs = create(&app, r#"{"subject": "mallory"}"#).await;
    let (mine_handle, theirs_handle) = (handle_of(&app, &mine).await, handle_of(&app, &theirs).await);
    let listed = call(&app, &event("list-subject-sessions")).await;
    let handle = listed.json["sessions"][0]["handle"].as_str().unwrap().to_owned();
    let revoke_sample = event("revoke-subject-session");
    // From the path: a function URL sends no path parameters.
    let sample_handle = revoke_sample["rawPath"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let revoke = |subject: &str, handle: &str| {
        let text = revoke_sample
            .to_string()
            .replace(&sample_handle, handle)
            .replace("user-42", subject);
        serde_json::from_str::<Value>(&text).unwrap()
    };
    counter.take();
    let wrong_owner = call(&app, &revoke("mallory", &handle)).await;
    assert_eq!(wrong_owner.status, 404, "{}", wrong_owner.json);
    assert_eq!(
        counter.take(),
        1,
        "one strongly consistent Query finds no session of mallory's"
    );
    let across = call(&app, &revoke("user-42", theirs_handle.as_str().unwrap())).await;
    assert_eq!(across.status, 404, "a handle never reaches another owner's session");
    assert_eq!(call(&app, &event_for("get-session", &theirs)).await.status, 200);

    let revoked = call(&app, &revoke("user-42", &handle)).await;
    assert_eq!((revoked.status, revoked.body_text()), (204, String::new()));
    let (gone, kept) = if mine_handle == Value::String(handle.clone()) {
        (&mine, &other)
    } else {
        (&other, &mine)
    };
    assert_eq!(call(&app, &event_for("get-session", gone)).await.status, 404);
    assert_eq!(call(&app, &event_for("get-session", kept)).await.status, 200);
    assert_eq!(
        call(&app, &revoke("user-42", &handle)).await.status,
        404,
        "revoked already: the handle names no live session, nothing is done"
    );
    let id_as_handle = call(&app, &revoke("user-42", kept)).await;
    assert_eq!(id_as_handle.status, 404, "an id is not a handle");
    counter.take();
    let malformed = call(&app, &revoke("user-42", "not-a-handle")).await;
    assert_eq!((malformed.status, counter.take()), (404, 0));
}

async fn login_rotation_binds_the_subject() {
    let (app, _, _) = app().await;
    let anonymous = create(&app, r#"{"data": {"cart": [1]}}"#).await;
    let handle = handle_of(&app, &anonymous).await;
    let login = with_body(
        event_for("rotate-session", &anonymous),
        r#"{"subject": "user-42"}"#,
        Some("application/json"),
    );
    let rotated = call(&app, &login).await;
    assert_eq!(rotated.status, 201, "{}", rotated.json);
    assert_eq!(rotated.json["subject"], "user-42");
    assert_eq!(rotated.json["data"], json!({"cart": [1]}));
    let new_id = rotated.json["id"].as_str().unwrap().to_owned();
    assert_eq!(call(&app, &event_for("get-session", &anonymous)).await.status, 404);
    let listed = call(&app, &event("list-subject-sessions")).await;
    assert_eq!(listed.json["sessions"].as_array().unwrap().len(), 1);
    assert_eq!(rotated.json["handle"], handle, "a login keeps the session's handle");
    assert_eq!(listed.json["sessions"][0]["handle"], handle);
    assert_eq!(rotated.json["handle"], handle_of(&app, &new_id).await);
    let bad = with_body(
        event_for("rotate-session", &new_id),
        r#"{"subject": ""}"#,
        Some("application/json"),
    );
    assert_eq!(call(&app, &bad).await.status, 422);
}

async fn idempotency_keys_replay_creates_and_rotations_and_refuse_other_requests() {
    let (app, counter, _) = app().await;
    let key = "\"8e03978e-40d5-43e8-bc93-6894a57f9324\"";
    let create_event = with_header(event("create-session"), "idempotency-key", key);
    let first = call(&app, &create_event).await;
    assert_eq!(first.status, 201, "{}", first.json);
    assert_eq!(counter.take(), 1, "one TransactWriteItems: session, membership, record");
    let again = call(&app, &create_event).await;
    assert_eq!(again.status, 201, "{}", again.json);
    assert_eq!(again.json["id"], first.json["id"], "the same session");
    assert_eq!(again.header("location"), first.header("location"));
    let listed = call(&app, &event("list-subject-sessions")).await;
    assert_eq!(listed.json["sessions"].as_array().unwrap().len(), 1, "nothing new");

    // The same key and body from another IAM principal: its own session, never this id.
    let mut elsewhere = create_event.clone();
    elsewhere["requestContext"]["authorizer"]["iam"]["callerId"] = json!("AROAOTHERROLE:worker");
    let theirs = call(&app, &elsewhere).await;
    assert_eq!(theirs.status, 201, "{}", theirs.json);
    assert_ne!(theirs.json["id"], first.json["id"], "a key is scoped to its caller");
    // The same role under another session name is the same caller.
    let mut renamed = create_event.clone();
    renamed["requestContext"]["authorizer"]["iam"]["callerId"] = json!("AROAEXAMPLEROLE:web-backend-2");
    assert_eq!(call(&app, &renamed).await.json["id"], first.json["id"]);

    let other = with_body(create_event.clone(), r#"{"subject": "user-42"}"#, None);
    let reused = call(&app, &other).await;
    assert_eq!(reused.status, 422, "{}", reused.json);
    assert_eq!(
        reused.json["type"],
        "urn:session-service:problem:idempotency-key-reused"
    );

    let id = first.json["id"].as_str().unwrap();
    let rotate = with_header(
        event_for("rotate-session", id),
        "idempotency-key",
        "rotate-0001-0002-0003",
    );
    let rotated = call(&app, &rotate).await;
    assert_eq!(rotated.status, 201, "{}", rotated.json);
    let retried = call(&app, &rotate).await;
    assert_eq!(retried.status, 201, "a retried rotation is not a 404: {}", retried.json);
    assert_eq!(retried.json["id"], rotated.json["id"]);
    let listed = call(&app, &event("list-subject-sessions")).await;
    assert_eq!(
        listed.json["sessions"].as_array().unwrap().len(),
        2,
        "theirs and the rotated one"
    );

    for bad in [
        "short",
        "with spaces in the key",
        "\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}",
    ] {
        counter.take();
        let reply = call(&app, &with_header(event("create-session"), "idempotency-key", bad)).await;
        assert_eq!(reply.status, 400, "{bad}: {}", reply.json);
        assert_eq!(reply.json["type"], "urn:session-service:problem:invalid-header");
        assert_eq!(counter.take(), 0, "{bad}: no DynamoDB call");
    }
}

async fn patch_is_an_rfc_7396_merge_patch_at_every_depth() {
    let (app, counter, _) = app().await;
    let id = create(&app, r#"{"data":{"prefs":{"lang":"en","theme":"dark"},"cart":[1]}}"#).await;
    let patch = |body: &str, if_match: Option<&str>| {
        let event = with_body(event_for("merge-session", &id), body, None);
        match if_match {
            Some(tag) => with_header(event, "if-match", tag),
            None => event,
        }
    };
    // A nested null removes that member only; the others stay.
    let reply = call(
        &app,
        &patch(r#"{"data":{"prefs":{"lang":null,"font":{"size":12}}}}"#, None),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.json);
    assert_eq!(
        reply.json["data"],
        json!({"prefs": {"theme": "dark", "font": {"size": 12}}, "cart": [1]})
    );
    assert_eq!(reply.header("etag"), Some("\"2\""));
    // The empty merge patch changes nothing, and still answers the session.
    counter.take();
    let same = call(&app, &patch("{}", Some("\"2\""))).await;
    assert_eq!((same.status, &same.json["data"]), (200, &reply.json["data"]));
    assert_eq!(same.header("etag"), Some("\"2\""), "no new version");
    assert_eq!(
        call(&app, &patch(r#"{"data":{}}"#, None)).await.header("etag"),
        Some("\"2\"")
    );
    let stale = call(&app, &patch("{}", Some("\"1\""))).await;
    assert_eq!(
        stale.status, 412,
        "an empty patch still honours If-Match: {}",
        stale.json
    );
    // `"data": null` removes the data member: the session keeps no data.
    let cleared = call(&app, &patch(r#"{"data":null}"#, None)).await;
    assert_eq!((cleared.status, &cleared.json["data"]), (200, &json!({})));
    // Concurrent nested merges of different members all land (each reads, then
    // writes on the condition that the version it read is still there).
    let merges = futures::future::join_all((0..6).map(|i| {
        let body = format!(r#"{{"data":{{"prefs":{{"k{i}":{i}}}}}}}"#);
        let event = with_body(event_for("merge-session", &id), &body, None);
        let app = &app;
        async move { call(app, &event).await.status }
    }))
    .await;
    let merged = call(&app, &event_for("get-session", &id)).await;
    let landed = merged.json["data"]["prefs"].as_object().map_or(0, |m| m.len());
    let ok = merges.iter().filter(|s| **s == 200).count();
    assert_eq!(
        landed, ok,
        "every 200 landed, none was lost: {merges:?} {}",
        merged.json
    );
    assert!(merges.iter().all(|s| matches!(s, 200 | 409)), "{merges:?}");
}

async fn get_with_touch_true_reads_and_slides_the_idle_expiry_in_one_call() {
    let (app, counter, clock) = app().await;
    let id = create(&app, r#"{"idle_timeout_seconds": 600}"#).await;
    let plain = call(&app, &event_for("get-session", &id)).await;
    counter.take();
    // Within the touch step: one read, the expiry where it was.
    clock.advance(30);
    let viewed = call(&app, &event_for("get-session-touch", &id)).await;
    assert_eq!(viewed.status, 200, "{}", viewed.json);
    assert_eq!(viewed.json, plain.json, "nothing due");
    assert_eq!(counter.take(), 1);
    // Past it: read and slid, and the answer shows the new expiry.
    clock.advance(60);
    let slid = call(&app, &event_for("get-session-touch", &id)).await;
    assert_eq!(slid.status, 200, "{}", slid.json);
    assert_ne!(slid.json["expires_at"], plain.json["expires_at"]);
    assert_eq!(counter.take(), 2);
    let again = call(&app, &event_for("get-session", &id)).await;
    assert_eq!(again.json["expires_at"], slid.json["expires_at"]);
    assert_eq!(again.header("etag"), slid.header("etag"));
    // Anything but true or false is a 400 problem, before any DynamoDB call.
    let mut odd = event_for("get-session-touch", &id);
    odd["rawQueryString"] = Value::from("touch=yes");
    odd["queryStringParameters"]["touch"] = Value::from("yes");
    counter.take();
    let refused = call(&app, &odd).await;
    assert_eq!(refused.status, 400, "{}", refused.json);
    assert_eq!(refused.json["type"], "urn:session-service:problem:invalid-query");
    assert_eq!(counter.take(), 0);
}

async fn devices_are_stored_listed_kept_across_rotation_and_bounded() {
    let (app, _, clock) = app().await;
    let sample: Value = serde_json::from_str(event("create-session-with-device")["body"].as_str().unwrap()).unwrap();
    assert!(sample["device"].is_object(), "the sample names a device");
    let body = r#"{"subject": "dev-user", "device": {"user_agent": "Mozilla/5.0 (Macintosh)", "ip": "2001:DB8::7", "label": "Work laptop"}}"#;
    let created = call(&app, &with_body(event("create-session-with-device"), body, None)).await;
    assert_eq!(created.status, 201, "{}", created.json);
    let device = json!({"user_agent": "Mozilla/5.0 (Macintosh)", "ip": "2001:db8::7", "label": "Work laptop"});
    assert_eq!(created.json["device"], device, "the address in canonical form");
    let as_sampled = call(&app, &event("create-session-with-device")).await;
    assert_eq!(as_sampled.json["device"], sample["device"], "{}", as_sampled.json);
    let id = created.json["id"].as_str().unwrap().to_owned();
    assert_eq!(call(&app, &event_for("get-session", &id)).await.json["device"], device);

    // Data writes and touches keep it (PATCH into an object: the guarded PutItem path).
    for (event_name, body) in [
        ("merge-session", r#"{"data": {"prefs": {"lang": "en"}}}"#),
        ("merge-session", r#"{"data": {"prefs": {"tz": "UTC"}}}"#),
        ("replace-session", r#"{"data": {"k": 1}}"#),
    ] {
        clock.advance(61);
        let mut request = with_body(event_for(event_name, &id), body, None);
        request["headers"].as_object_mut().unwrap().remove("if-match");
        let written = call(&app, &request).await;
        assert_eq!(written.status, 200, "{event_name}: {}", written.json);
        assert_eq!(written.json["device"], device, "{event_name}");
    }
    clock.advance(61);
    assert_eq!(
        call(&app, &event_for("touch-session", &id)).await.json["device"],
        device
    );
    assert_eq!(call(&app, &event_for("get-session", &id)).await.json["device"], device);

    // A rotation keeps the device, or takes the one it names (a login elsewhere).
    clock.advance(120);
    let rotated = call(&app, &event_for("rotate-session", &id)).await;
    assert_eq!(rotated.json["device"], device, "{}", rotated.json);
    let successor = rotated.json["id"].as_str().unwrap().to_owned();
    let sampled = call(&app, &event_for("rotate-session-with-device", &successor)).await;
    assert_eq!(sampled.json["device"]["label"], "Phone", "{}", sampled.json);
    let successor = sampled.json["id"].as_str().unwrap().to_owned();
    let elsewhere = with_body(
        event_for("rotate-session-with-device", &successor),
        r#"{"subject": "dev-user", "device": {"label": "Phone"}}"#,
        None,
    );
    let moved = call(&app, &elsewhere).await;
    assert_eq!(moved.json["device"], json!({"label": "Phone"}), "{}", moved.json);

    // The listing: handle, device, created, last active, expiry; no id, no data.
    let mut list = event("list-subject-sessions");
    let text = list.to_string().replace("user-42", "dev-user");
    list = serde_json::from_str(&text).unwrap();
    let listed = call(&app, &list).await;
    let sessions = listed.json["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1, "{}", listed.json);
    let summary = &sessions[0];
    assert_eq!(summary["device"], json!({"label": "Phone"}));
    assert_eq!(summary["last_active_at"], moved.json["updated_at"]);
    assert_eq!(summary["created_at"], created.json["created_at"]);
    assert!(summary.get("data").is_none() && summary.get("id").is_none());

    // Bounded: each part checked, a 422 problem naming it; unknown parts refused.
    for (device, names) in [
        (json!({"user_agent": "x".repeat(513)}), "device.user_agent"),
        (json!({"label": "tab\there"}), "device.label"),
        (json!({"label": ""}), "device.label"),
        (json!({"ip": "300.1.2.3"}), "device.ip"),
        (json!({"fingerprint": "abc"}), "fingerprint"),
    ] {
        let body = json!({"device": device}).to_string();
        let refused = call(&app, &with_body(event("create-session"), &body, None)).await;
        assert_eq!(refused.status, 422, "{device}: {}", refused.json);
        assert!(
            refused.json["detail"].as_str().unwrap().contains(names),
            "{}",
            refused.json
        );
    }
}
