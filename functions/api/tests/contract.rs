//! `openapi.yaml`, `template.yaml` and the router describe the same API, and
//! what the handler sends matches `openapi.yaml`.

mod common;

use std::collections::BTreeSet;

use api::routes::ROUTES;
use common::*;
use serde_json::{Value, json};
use session_testkit::repo_root;

fn yaml(file: &str) -> Value {
    let text = std::fs::read_to_string(repo_root().join(file)).unwrap();
    let value: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    // Tags such as !Ref become plain values; only the structure matters here.
    serde_json::to_value(value).unwrap()
}

fn routes() -> BTreeSet<(String, String)> {
    ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect()
}

#[test]
fn openapi_documents_exactly_the_routes_the_router_serves() {
    let openapi = yaml("openapi.yaml");
    let mut documented = BTreeSet::new();
    for (path, item) in openapi["paths"].as_object().unwrap() {
        for method in ["get", "put", "post", "delete", "patch"] {
            if item.get(method).is_some() {
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    assert_eq!(documented, routes());
}

#[test]
fn the_template_wires_exactly_the_routes_the_router_serves() {
    let template = yaml("template.yaml");
    let paths = template["Resources"]["HttpApi"]["Properties"]["DefinitionBody"]["paths"]
        .as_object()
        .unwrap();
    let wired: BTreeSet<_> = paths
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(|method| (method.to_uppercase(), path.clone()))
        })
        .collect();
    assert_eq!(wired, routes());
}

/// Checks a reply against the operation `method path` of `openapi.yaml`:
/// the status is documented and the body matches its schema.
fn assert_conforms(openapi: &Value, method: &str, path: &str, reply: &Reply) {
    let operation = &openapi["paths"][path][method.to_lowercase()];
    let mut response = &operation["responses"][reply.status.to_string()];
    assert!(
        !response.is_null(),
        "{method} {path} does not document {}: {}",
        reply.status,
        reply.json
    );
    if let Some(reference) = response.get("$ref").and_then(Value::as_str) {
        let name = reference.rsplit('/').next().unwrap();
        response = &openapi["components"]["responses"][name];
    }
    let Some(content) = response.get("content") else {
        assert_eq!(
            reply.body_text(),
            "",
            "{method} {path} {} documents no body",
            reply.status
        );
        return;
    };
    let content_type = reply.header("content-type").unwrap();
    let mut schema = content[content_type]["schema"].clone();
    assert!(
        !schema.is_null(),
        "{method} {path} {}: undocumented content type {content_type}",
        reply.status
    );
    schema["components"] = openapi["components"].clone();
    let validator = jsonschema::validator_for(&schema).unwrap();
    if let Err(error) = validator.validate(&reply.json) {
        panic!("{method} {path} {}: {error}\n{}", reply.status, reply.json);
    }
}

#[tokio::test]
async fn responses_match_the_documented_statuses_and_schemas_behind_either_front_door() {
    for door in FrontDoor::ALL {
        behind(door, responses_match_the_documented_statuses_and_schemas()).await;
    }
}

async fn responses_match_the_documented_statuses_and_schemas() {
    let openapi = yaml("openapi.yaml");
    let (app, _, clock) = app().await;
    let created = call(&app, &event("create-session")).await;
    let id = created.json["id"].as_str().unwrap().to_owned();
    let bad_json = |name: &str| with_body(event_for(name, &id), "{", None);
    let mut touch_yes = event_for("get-session-touch", &id);
    touch_yes["rawQueryString"] = json!("touch=yes");
    touch_yes["queryStringParameters"] = json!({"touch": "yes"});
    let mut checks: Vec<(&str, &str, Value)> = vec![
        ("GET", "/health", event("health")),
        ("POST", "/sessions", event("create-session")),
        (
            "POST",
            "/sessions",
            with_body(event("create-session"), r#"{"x":1}"#, None),
        ),
        ("POST", "/sessions", with_body(event("create-session"), "{", None)),
        (
            "POST",
            "/sessions",
            with_body(event("create-session"), "a", Some("text/plain")),
        ),
        ("POST", "/sessions", event("create-session-with-device")),
        ("GET", "/sessions/{id}", event_for("get-session", &id)),
        ("GET", "/sessions/{id}", event_for("get-session-touch", &id)),
        ("GET", "/sessions/{id}", touch_yes),
        ("GET", "/sessions/{id}", event("get-session")),
        ("PUT", "/sessions/{id}", event_for("replace-session", &id)),
        ("PUT", "/sessions/{id}", event_for("replace-session", &id)),
        ("PUT", "/sessions/{id}", bad_json("replace-session")),
        ("PATCH", "/sessions/{id}", event_for("merge-session", &id)),
        ("PATCH", "/sessions/{id}", bad_json("merge-session")),
        ("POST", "/sessions/{id}/touch", event_for("touch-session", &id)),
        ("GET", "/subjects/{subject}/sessions", event("list-subject-sessions")),
        (
            "GET",
            "/subjects/{subject}/sessions",
            with_body(event("list-subject-sessions"), "", None),
        ),
        (
            "POST",
            "/sessions/{id}/rotate",
            event_for("rotate-session-with-device", &id),
        ),
        ("POST", "/sessions/{id}/rotate", event_for("rotate-session", &id)),
        (
            "DELETE",
            "/subjects/{subject}/sessions",
            event("revoke-subject-sessions"),
        ),
        ("DELETE", "/sessions/{id}", event_for("delete-session", &id)),
    ];
    let mut paged = event("list-subject-sessions");
    paged["rawQueryString"] = json!("limit=1");
    paged["queryStringParameters"] = json!({"limit": "1"});
    checks.push(("GET", "/subjects/{subject}/sessions", paged));
    let mut statuses = BTreeSet::new();
    for (method, path, event) in checks {
        clock.advance(61);
        let reply = call(&app, &event).await;
        assert_conforms(&openapi, method, path, &reply);
        statuses.insert(reply.status);
    }
    assert_eq!(
        statuses,
        BTreeSet::from([200, 201, 204, 400, 404, 412, 415, 422]),
        "the checks cover these outcomes"
    );
}
