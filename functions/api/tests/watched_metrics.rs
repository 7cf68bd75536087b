//! Every metric of the functions' namespace that `template.yaml` watches (an alarm)
//! or shows (the dashboard) is one the functions write, under the same dimensions:
//! the three functions run a workload with their metrics captured, and each
//! (metric, dimension names) the template names must be among what they wrote.
//! A metric renamed in the code, or a dimension dropped, fails here instead of
//! leaving an alarm watching nothing.

mod common;

use std::collections::BTreeSet;

use common::*;
use lambda_runtime::{Context, LambdaEvent};
use lambda_support::metrics::Metrics;
use serde_json::Value;
use serde_yaml_ng::Value as Yaml;
use session_store::DynamoStore;
use session_testkit::emf::{self, Captured};
use session_testkit::{self as testkit, repo_root};

/// A metric and the names of the dimensions it is published under.
type Published = (String, BTreeSet<String>);

/// What the functions write over a workload touching every metric.
async fn written() -> BTreeSet<Published> {
    let captured = Captured::default();
    let (app, _, clock) = app().await;
    let app = api::App {
        metrics: Metrics::new("SessionService/test", "api").with_sink(captured.sink()),
        ..app
    };
    let id = create(&app, r#"{"subject": "user-42", "idle_timeout_seconds": 60}"#).await;
    let rotated = call(&app, &event_for("rotate-session", &id)).await;
    let successor = rotated.json["id"].as_str().unwrap().to_owned();
    call(&app, &event_for("delete-session", &successor)).await;
    let owned = call(&app, &event("create-session")).await;
    let handle = owned.json["handle"].as_str().unwrap();
    let sample = event("revoke-subject-session");
    let sample_handle = sample["pathParameters"]["handle"].as_str().unwrap();
    let by_handle = serde_json::from_str(&sample.to_string().replace(sample_handle, handle)).unwrap();
    call(&app, &by_handle).await;
    create(&app, r#"{"subject": "user-42"}"#).await;
    call(&app, &event("revoke-subject-sessions")).await;
    let altered = create(&app, "{}").await;
    testkit::alter_document(&app.store, &session_store::SessionId::parse(&altered).unwrap()).await;
    call(&app, &event_for("get-session", &altered)).await;
    let expiring = create(&app, r#"{"idle_timeout_seconds": 60}"#).await;
    clock.advance(61);
    call(&app, &event_for("get-session", &expiring)).await;

    let sweeper = sweeper::Sweeper {
        clock,
        metrics: Metrics::new("SessionService/test", "sweeper").with_sink(captured.sink()),
        ..sweeper::Sweeper::new(DynamoStore::new(app.store.client().clone(), app.store.config().clone()))
    };
    let text = std::fs::read_to_string(repo_root().join("events/sweeper-scheduled.json")).unwrap();
    sweeper::handle(
        &sweeper,
        LambdaEvent::new(serde_json::from_str(&text).unwrap(), Context::default()),
    )
    .await
    .unwrap();

    let (client, _) = testkit::client();
    let table = testkit::fresh_table(&client, "AuditTable").await;
    let auditor = audit::Auditor {
        metrics: Metrics::new("SessionService/test", "audit").with_sink(captured.sink()),
        ..audit::Auditor::new(session_store::audit::AuditLog::new(client, table, 90))
    };
    let text = std::fs::read_to_string(repo_root().join("events/audit-batch-with-poison.json")).unwrap();
    audit::handle(
        &auditor,
        LambdaEvent::new(serde_json::from_str(&text).unwrap(), Context::default()),
    )
    .await
    .unwrap();

    captured
        .take()
        .iter()
        .flat_map(emf::data)
        .map(|d| (d.name, d.dimensions.into_keys().collect()))
        .collect()
}

/// The functions' namespace as the template writes it.
const NAMESPACE: &str = "SessionService/${AWS::StackName}";

fn is_namespace(value: &Yaml) -> bool {
    matches!(value, Yaml::Tagged(t) if t.tag == "!Sub" && t.value.as_str() == Some(NAMESPACE))
}

fn dimension_names(dimensions: &Yaml) -> BTreeSet<String> {
    dimensions
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|d| d["Name"].as_str().map(str::to_owned))
        .collect()
}

/// Each (metric, dimension names) an alarm reads from the functions' namespace.
fn alarmed(template: &Yaml) -> Vec<(String, Published)> {
    let mut out = Vec::new();
    for (id, resource) in template["Resources"].as_mapping().unwrap() {
        let id = id.as_str().unwrap().to_owned();
        if resource["Type"].as_str() != Some("AWS::CloudWatch::Alarm") {
            continue;
        }
        let properties = &resource["Properties"];
        let mut metrics = vec![properties];
        for query in properties["Metrics"].as_sequence().into_iter().flatten() {
            metrics.push(&query["MetricStat"]["Metric"]);
        }
        for metric in metrics {
            if is_namespace(&metric["Namespace"]) {
                let name = metric["MetricName"].as_str().unwrap().to_owned();
                out.push((id.clone(), (name, dimension_names(&metric["Dimensions"]))));
            }
        }
    }
    out
}

/// Each (metric, dimension names) a dashboard widget shows from the functions'
/// namespace: metric arrays, and `SEARCH('{namespace,Dim} MetricName="Name"', ...)`.
fn shown(template: &Yaml) -> Vec<Published> {
    let mut out = Vec::new();
    for body in dashboard_bodies(template) {
        shown_in(&body, &mut out);
    }
    out
}

/// The dashboard's body for each choice of its `!Sub` variables' `!If` branches (the front
/// door's widget), as JSON.
fn dashboard_bodies(template: &Yaml) -> Vec<Value> {
    let body = &template["Resources"]["OperationsDashboard"]["Properties"]["DashboardBody"];
    let Yaml::Tagged(sub) = body else {
        panic!("the dashboard body is a !Sub")
    };
    let (text, variables) = match &sub.value {
        Yaml::String(text) => (text.clone(), None),
        Yaml::Sequence(parts) => (parts[0].as_str().unwrap().to_owned(), parts[1].as_mapping()),
        other => panic!("the dashboard body's !Sub is {other:?}"),
    };
    let mut bodies = vec![text];
    for (name, value) in variables.into_iter().flatten() {
        let placeholder = format!("${{{}}}", name.as_str().unwrap());
        let Yaml::Tagged(choice) = value else {
            panic!("{placeholder} is an !If")
        };
        let branches: Vec<String> = choice.value.as_sequence().unwrap()[1..]
            .iter()
            .map(|branch| match branch {
                Yaml::Tagged(sub) => sub.value.as_str().unwrap().to_owned(),
                other => other.as_str().unwrap().to_owned(),
            })
            .collect();
        bodies = bodies
            .iter()
            .flat_map(|body| branches.iter().map(|branch| body.replace(&placeholder, branch)))
            .collect();
    }
    bodies
        .iter()
        .map(|body| serde_json::from_str(body).expect("the dashboard body is JSON"))
        .collect()
}

fn shown_in(body: &Value, out: &mut Vec<Published>) {
    for widget in body["widgets"].as_array().unwrap() {
        for row in widget["properties"]["metrics"].as_array().into_iter().flatten() {
            let row = row.as_array().unwrap();
            if row[0] == NAMESPACE {
                let name = row[1].as_str().unwrap().to_owned();
                let dimensions = row[2..].iter().filter_map(Value::as_str).step_by(2).map(str::to_owned);
                out.push((name, dimensions.collect()));
            }
            let expression = row.iter().find_map(|r| r["expression"].as_str()).unwrap_or_default();
            if let Some(search) = expression
                .strip_prefix("SEARCH('{\"")
                .and_then(|s| s.strip_prefix(NAMESPACE))
                .and_then(|s| s.strip_prefix('"'))
            {
                let (dimensions, rest) = search.split_once('}').unwrap();
                let name = rest.split('"').nth(1).unwrap().to_owned();
                let dimensions = dimensions.split(',').filter(|d| !d.is_empty()).map(str::to_owned);
                out.push((name, dimensions.collect()));
            }
        }
    }
}

#[tokio::test]
async fn every_metric_an_alarm_or_the_dashboard_names_is_one_the_functions_write() {
    let template: Yaml =
        serde_yaml_ng::from_str(&std::fs::read_to_string(repo_root().join("template.yaml")).unwrap()).unwrap();
    let written = written().await;
    let alarmed = alarmed(&template);
    let shown = shown(&template);
    assert!(alarmed.len() >= 4, "alarms on the functions' metrics: {alarmed:?}");
    assert!(shown.len() >= 20, "dashboard metrics: {shown:?}");
    for (alarm, metric) in &alarmed {
        assert!(
            written.contains(metric),
            "{alarm} watches {metric:?}, which no function writes: {written:?}"
        );
    }
    for metric in &shown {
        assert!(
            written.contains(metric),
            "the dashboard shows {metric:?}, which no function writes: {written:?}"
        );
    }
    let unused: Vec<_> = written
        .iter()
        .filter(|m| !shown.contains(m) && !alarmed.iter().any(|(_, a)| a == *m))
        .collect();
    assert!(unused.is_empty(), "written but neither shown nor watched: {unused:?}");
}
