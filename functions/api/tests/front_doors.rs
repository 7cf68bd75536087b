//! The two front doors (`FrontDoor` in `template.yaml`) send the same requests in two event
//! shapes: API Gateway's HTTP API (`events/*.json`) and the function's URL
//! (`events/function-url/*.json`). The samples of both cover every route and say the same
//! thing, and the handler reads the caller from either.

mod common;

use std::collections::BTreeSet;

use api::routes::{ROUTES, Target};
use common::*;
use serde_json::{Value, json};

/// The names (without `.json`) of the API request samples behind `door`.
fn samples(door: FrontDoor) -> BTreeSet<String> {
    std::fs::read_dir(door.events_dir())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .map(|path| path.file_stem().unwrap().to_str().unwrap().to_owned())
        .filter(|name| event_through(door, name)["version"] == "2.0")
        .collect()
}

#[test]
fn every_route_has_a_sample_request_behind_each_front_door() {
    let routes: BTreeSet<(String, String)> = ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    for door in FrontDoor::ALL {
        let covered: BTreeSet<(String, String)> = samples(door)
            .iter()
            .map(|name| {
                let event = event_through(door, name);
                let method = event["requestContext"]["http"]["method"].as_str().unwrap().to_owned();
                let path = event["rawPath"].as_str().unwrap();
                let target = Target::parse(path).unwrap_or_else(|| panic!("{door:?} {name}: no route has {path}"));
                (method, target.template().to_owned())
            })
            .collect();
        assert_eq!(covered, routes, "{door:?}");
    }
}

#[test]
fn every_function_url_sample_is_its_http_api_twin_as_a_function_url_sends_it() {
    let twins = samples(FrontDoor::HttpApi);
    assert_eq!(
        samples(FrontDoor::FunctionUrl),
        twins,
        "a function URL sample for every HTTP API sample"
    );
    for name in &twins {
        let api = event_through(FrontDoor::HttpApi, name);
        let url = event_through(FrontDoor::FunctionUrl, name);
        // The request itself is the same.
        for field in [
            "version",
            "rawPath",
            "rawQueryString",
            "queryStringParameters",
            "cookies",
            "body",
            "isBase64Encoded",
        ] {
            assert_eq!(url.get(field), api.get(field), "{name}: {field}");
        }
        let context = &url["requestContext"];
        assert_eq!(context["http"], api["requestContext"]["http"], "{name}");
        assert_eq!(
            context["authorizer"]["iam"]["callerId"], api["requestContext"]["authorizer"]["iam"]["callerId"],
            "{name}: the same signer"
        );
        // What a function URL sends differently: no route or stage of its own, no path
        // parameters, its own host.
        assert_eq!(url["routeKey"], "$default", "{name}");
        assert_eq!(context["routeKey"], "$default", "{name}");
        assert_eq!(context["stage"], "$default", "{name}");
        assert!(
            url["pathParameters"].is_null() && url["stageVariables"].is_null(),
            "{name}"
        );
        let url_id = context["apiId"].as_str().unwrap();
        assert!(
            url_id.len() == 32 && url_id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
            "{name}: a URL id is 32 lowercase letters and digits"
        );
        let region = api["requestContext"]["domainName"]
            .as_str()
            .unwrap()
            .split('.')
            .nth(2)
            .unwrap();
        let host = format!("{url_id}.lambda-url.{region}.on.aws");
        assert_eq!(
            (context["domainName"].as_str(), context["domainPrefix"].as_str()),
            (Some(host.as_str()), Some(url_id))
        );
        let mut headers = url["headers"].clone();
        assert_eq!(headers["host"].as_str(), Some(host.as_str()), "{name}");
        headers["host"] = api["headers"]["host"].clone();
        assert_eq!(headers, api["headers"], "{name}: the same headers but the host");
    }
}

#[tokio::test]
async fn a_retried_create_is_the_same_callers_through_either_front_door() {
    let (app, _, _) = app().await;
    let key = "\"2b1f54d0-5c7e-4f53-9d2e-6a0c3e1b8f47\"";
    let through = |door| with_header(event_through(door, "create-session"), "idempotency-key", key);
    let first = call(&app, &through(FrontDoor::HttpApi)).await;
    assert_eq!(first.status, 201, "{}", first.json);
    // The function URL's IAM context names the same principal: the retry is recognised.
    let again = call(&app, &through(FrontDoor::FunctionUrl)).await;
    assert_eq!((again.status, &again.json["id"]), (201, &first.json["id"]));
    // Another principal behind the function URL gets a session of its own.
    let mut other = through(FrontDoor::FunctionUrl);
    other["requestContext"]["authorizer"]["iam"]["callerId"] = json!("AROAOTHERROLE:worker");
    let theirs = call(&app, &other).await;
    assert_eq!(theirs.status, 201, "{}", theirs.json);
    assert_ne!(theirs.json["id"], first.json["id"]);
    assert_ne!(theirs.json["id"], Value::Null);
}

#[tokio::test]
async fn a_body_the_function_url_sends_base64_encoded_is_read_as_its_bytes() {
    // A function URL base64-encodes a body whose content type it does not take for text;
    // `application/merge-patch+json` may be one.
    use base64::Engine as _;
    let (app, _, _) = app().await;
    let id = create(&app, r#"{"data": {"theme": "dark"}}"#).await;
    let mut merge = event_for_through(FrontDoor::FunctionUrl, "merge-session", &id);
    let body = merge["body"].as_str().unwrap().to_owned();
    merge["body"] = base64::engine::general_purpose::STANDARD.encode(&body).into();
    merge["isBase64Encoded"] = true.into();
    let merged = call(&app, &merge).await;
    assert_eq!(merged.status, 200, "{}", merged.json);
    assert_eq!(merged.json["data"], json!({"locale": "de-CH"}), "{}", merged.json);
}
