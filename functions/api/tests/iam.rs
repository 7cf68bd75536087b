//! Each function's IAM role in `template.yaml` allows exactly the DynamoDB actions its code
//! sends, on the resources it sends them to: nothing missing (a deployed function would get
//! AccessDenied) and nothing extra (least privilege).
//!
//! The code side is recorded, not read from the source: each function's handler runs a
//! workload that takes every path that sends a request (fast and slow writes, transactions,
//! replays, listings, revocations, sweeps, dry runs, audits) on DynamoDB Local, and the SDK
//! interceptor `OperationRecorder` notes the action each request needs, a transaction as
//! its parts and a batch per table.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::*;
use lambda_runtime::{Context, LambdaEvent};
use serde_yaml_ng::Value;
use session_store::DynamoStore;
use session_testkit::{self as testkit, Authorization, ManualClock, repo_root};

/// `template.yaml`, parsed.
fn template() -> Value {
    serde_yaml_ng::from_str(&std::fs::read_to_string(repo_root().join("template.yaml")).unwrap()).unwrap()
}

/// Recorded authorizations as (action, resource), the resource written as the template
/// writes it (`SessionsTable.Arn`, `${SessionsTable.Arn}/index/expiry-index`), with
/// `tables` naming each table's logical id.
fn as_resources(recorded: BTreeSet<Authorization>, tables: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    recorded
        .into_iter()
        .map(|(action, table, index)| {
            let logical = tables
                .iter()
                .find(|(name, _)| *name == table)
                .map(|(_, logical)| *logical)
                .unwrap_or_else(|| panic!("{action} on a table the function does not use: {table:?}"));
            let resource = match index {
                None => format!("{logical}.Arn"),
                Some(index) => format!("${{{logical}.Arn}}/index/{index}"),
            };
            (action, resource)
        })
        .collect()
}

/// A role's statements as (actions, resource) pairs, the resource written as the template
/// writes it (`SessionsTable.Arn`, `${SessionsTable.Arn}/index/subject-index`, ...).
fn statements(template: &Value, role: &str) -> Vec<(BTreeSet<String>, String)> {
    let policies = template["Resources"][role]["Properties"]["Policies"]
        .as_sequence()
        .unwrap_or_else(|| panic!("{role} has inline policies"));
    let mut out = Vec::new();
    for policy in policies {
        for statement in policy["PolicyDocument"]["Statement"].as_sequence().unwrap() {
            assert_eq!(statement["Effect"].as_str(), Some("Allow"), "{role}");
            let actions = match &statement["Action"] {
                Value::String(one) => BTreeSet::from([one.clone()]),
                Value::Sequence(many) => many.iter().map(|a| a.as_str().unwrap().to_owned()).collect(),
                other => panic!("{role}: Action {other:?}"),
            };
            let resource = match &statement["Resource"] {
                Value::Tagged(tagged) => tagged.value.as_str().unwrap().to_owned(),
                other => panic!("{role}: Resource {other:?} is not a reference to the stack's own resource"),
            };
            out.push((actions, resource));
        }
    }
    out
}

/// Checks that `role` allows exactly the `sent` (action, resource) pairs of DynamoDB, log
/// writes to `log_group`, the `others` (resource, actions), and nothing else.
fn check_role(role: &str, sent: BTreeSet<(String, String)>, log_group: &str, others: &[(&str, &[&str])]) {
    let template = template();
    let statements = statements(&template, role);
    let granted_on = |resource: &str| -> BTreeSet<String> {
        statements
            .iter()
            .filter(|(_, r)| r == resource)
            .flat_map(|(a, _)| a.iter().cloned())
            .collect()
    };
    let special: BTreeSet<String> = others
        .iter()
        .map(|(r, _)| r.to_string())
        .chain([format!("{log_group}.Arn")])
        .collect();
    let allowed: BTreeSet<(String, String)> = statements
        .iter()
        .filter(|(_, r)| !special.contains(r))
        .flat_map(|(actions, r)| actions.iter().map(move |a| (a.clone(), r.clone())))
        .collect();
    let missing: Vec<_> = sent.difference(&allowed).collect();
    let extra: Vec<_> = allowed.difference(&sent).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{role}: sent but not allowed (AccessDenied when deployed): {missing:?}; allowed but never sent: {extra:?}"
    );
    assert_eq!(
        granted_on(&format!("{log_group}.Arn")),
        BTreeSet::from(["logs:CreateLogStream".to_owned(), "logs:PutLogEvents".to_owned()]),
        "{role}: log writes to its own group only"
    );
    for (resource, actions) in others {
        let wanted: BTreeSet<_> = actions.iter().map(|a| a.to_string()).collect();
        assert_eq!(granted_on(resource), wanted, "{role} on {resource}");
    }
}

#[tokio::test]
async fn the_api_role_allows_exactly_what_the_api_sends() {
    let (setup, _) = testkit::client();
    let config = testkit::fresh_config(&setup).await;
    let (client, recorder) = testkit::recording_client();
    let store = DynamoStore::new(client, config.clone());
    let app = api::App {
        clock: Arc::new(ManualClock::new()),
        ..api::App::new(store)
    };
    let key = "4d1f8a36-5c2b-4e0f-9a7d-2b6c1e3f5a90";
    let ok = |reply: Reply, what: &str| assert!(reply.status < 300, "{what}: {} {}", reply.status, reply.json);
    ok(call(&app, &event("health")).await, "health");
    // An owned create with a key: one transaction on both tables.
    let created = call(&app, &with_header(event("create-session"), "idempotency-key", key)).await;
    let id = created.json["id"].as_str().unwrap().to_owned();
    ok(created, "owned create");
    // An anonymous one: one PutItem.
    create(&app, "{}").await;
    ok(call(&app, &event_for("get-session", &id)).await, "get");
    ok(call(&app, &event_for("replace-session", &id)).await, "replace");
    ok(call(&app, &event_for("merge-session", &id)).await, "merge");
    ok(call(&app, &event_for("touch-session", &id)).await, "touch");
    // A merge naming more keys than one UpdateItem takes: read, then a guarded PutItem.
    let many: serde_json::Map<String, serde_json::Value> = (0..60).map(|i| (format!("k{i}"), i.into())).collect();
    let body = serde_json::json!({ "data": many }).to_string();
    ok(
        call(&app, &with_body(event_for("merge-session", &id), &body, None)).await,
        "slow merge",
    );
    // A rotation with a key, then its retry (the old id gone: the record answers).
    let rotate = with_header(event_for("rotate-session", &id), "idempotency-key", key);
    let rotated = call(&app, &rotate).await;
    let rotated_id = rotated.json["id"].as_str().unwrap().to_owned();
    ok(rotated, "rotate");
    ok(call(&app, &rotate).await, "rotate retried");
    ok(call(&app, &event("list-subject-sessions")).await, "list");
    let other = call(&app, &event("create-session")).await;
    let other_handle = other.json["handle"].as_str().unwrap().to_owned();
    let by_handle = event("revoke-subject-session").to_string();
    let sample_handle = session_store::SessionId::parse(SAMPLE_ID).unwrap().handle();
    let by_handle: serde_json::Value =
        serde_json::from_str(&by_handle.replace(sample_handle.as_str(), &other_handle)).unwrap();
    ok(call(&app, &by_handle).await, "revoke by handle");
    create(&app, r#"{"subject":"user-42"}"#).await;
    ok(
        call(&app, &event_for("revoke-subject-sessions", &rotated_id)).await,
        "revoke all but one",
    );
    ok(call(&app, &event_for("delete-session", &rotated_id)).await, "delete");

    let sent = as_resources(
        recorder.take(),
        &[
            (config.table_name.as_str(), "SessionsTable"),
            (config.registry_table.as_str(), "RegistryTable"),
        ],
    );
    check_role("ApiRole", sent, "ApiLogGroup", &[]);
}

#[tokio::test]
async fn the_sweeper_role_allows_exactly_what_the_sweeper_sends() {
    let (setup, _) = testkit::client();
    let config = testkit::fresh_config(&setup).await;
    let plain = DynamoStore::new(setup, config.clone());
    let clock = Arc::new(ManualClock::new());
    let t0 = session_store::Clock::now(clock.as_ref());
    let idle = |seconds| session_store::NewSession {
        idle_timeout_seconds: Some(seconds),
        ..Default::default()
    };
    let expired = plain.create(idle(60), None, t0).await.unwrap();
    // Touched late in its life: filed under its first expiry, live past it (re-filed).
    let touched = plain.create(idle(600), None, t0).await.unwrap();
    plain.touch(&touched.id, t0.plus(590)).await.unwrap();
    clock.advance(700);
    let (client, recorder) = testkit::recording_client();
    let sweeper = sweeper::Sweeper {
        clock,
        ..sweeper::Sweeper::new(DynamoStore::new(client, config.clone()))
    };
    let invoke = |name: &str| {
        let text = std::fs::read_to_string(repo_root().join(format!("events/{name}.json"))).unwrap();
        LambdaEvent::new(serde_json::from_str(&text).unwrap(), Context::default())
    };
    let dry = sweeper::handle(&sweeper, invoke("sweeper-dry-run")).await.unwrap();
    assert_eq!((dry.deleted, dry.skipped_live), (1, 1), "{dry:?}");
    // Deletes the expired one, re-files the touched one.
    let swept = sweeper::handle(&sweeper, invoke("sweeper-scheduled")).await.unwrap();
    assert_eq!((swept.deleted, swept.skipped_live), (1, 1), "{swept:?}");
    assert!(plain.get(&expired.id, t0).await.is_err());

    let sent = as_resources(recorder.take(), &[(config.table_name.as_str(), "SessionsTable")]);
    check_role(
        "SweeperRole",
        sent,
        "SweeperLogGroup",
        // Lambda sends the record of a run that failed every attempt to the on-failure
        // destination (EventInvokeConfig) with the function's role.
        &[("SweeperDeadLetterQueue.Arn", &["sqs:SendMessage"])],
    );
}

#[tokio::test]
async fn the_audit_role_allows_exactly_what_the_audit_sends_and_its_stream_needs() {
    let (setup, _) = testkit::client();
    let table = testkit::fresh_table(&setup, "AuditTable").await;
    let (client, recorder) = testkit::recording_client();
    let auditor = audit::Auditor::new(session_store::audit::AuditLog::new(client, table.clone(), 90));
    for name in ["audit-user-delete", "audit-ttl-delete", "audit-batch-with-poison"] {
        let text = std::fs::read_to_string(repo_root().join(format!("events/{name}.json"))).unwrap();
        let batch: aws_lambda_events::event::dynamodb::Event = serde_json::from_str(&text).unwrap();
        let response = audit::handle(&auditor, LambdaEvent::new(batch, Context::default()))
            .await
            .unwrap();
        assert!(response.batch_item_failures.is_empty(), "{name}");
    }

    let sent = as_resources(recorder.take(), &[(table.as_str(), "AuditTable")]);
    check_role(
        "AuditRole",
        sent,
        "AuditLogGroup",
        &[
            // The event source mapping reads the stream and sends what it gives up on to the
            // failure queue with the function's role.
            (
                "${SessionsTable.Arn}/stream/*",
                &[
                    "dynamodb:DescribeStream",
                    "dynamodb:GetRecords",
                    "dynamodb:GetShardIterator",
                    "dynamodb:ListStreams",
                ],
            ),
            ("AuditFailureQueue.Arn", &["sqs:SendMessage"]),
        ],
    );
}

#[test]
fn every_route_requires_iam_authorization_through_either_front_door() {
    let template = template();
    let resources = &template["Resources"];
    // HttpApi: IAM is the default authorizer, and no route of its definition overrides it.
    let api = &resources["HttpApi"]["Properties"];
    assert_eq!(api["Auth"]["EnableIamAuthorizer"].as_bool(), Some(true));
    assert_eq!(api["Auth"]["DefaultAuthorizer"].as_str(), Some("AWS_IAM"));
    let paths = api["DefinitionBody"]["paths"].as_mapping().unwrap();
    let operations: usize = paths.values().map(|item| item.as_mapping().unwrap().len()).sum();
    assert_eq!(operations, 11, "every route of openapi.yaml");
    for (path, item) in paths {
        for (method, operation) in item.as_mapping().unwrap() {
            assert!(
                operation.get("security").is_none(),
                "{method:?} {path:?} must not override the default authorizer"
            );
        }
    }
    // FunctionUrl: the URL itself is IAM-authorized.
    let url = &resources["ApiFunctionUrl"];
    assert_eq!(url["Properties"]["AuthType"].as_str(), Some("AWS_IAM"));
    assert_eq!(url["Condition"].as_str(), Some("UseFunctionUrl"));
    assert_eq!(resources["HttpApi"]["Condition"].as_str(), Some("UseHttpApi"));
    assert!(
        resources["ApiFunction"]["Properties"].get("Events").is_none(),
        "routes live in the HTTP API's definition: a function's HttpApi events cannot carry its condition"
    );
}
