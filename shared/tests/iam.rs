//! Each function's IAM role in `template.yaml` allows exactly the DynamoDB actions its code
//! calls, on the resources it calls them on: nothing missing (a deployed function would get
//! AccessDenied) and nothing extra (least privilege).
//!
//! The code side is read from the source: every SDK operation call (`.get_item()`, ...) and
//! transaction part (`Put::builder()`, ...) in the files that make a function's requests on a
//! table. `api` makes its requests on the sessions table through `store.rs` and on the registry
//! table through `registry.rs`, the sweeper through `sweep.rs`, the audit function through
//! `audit.rs`.

use std::collections::BTreeSet;

use serde_yaml_ng::Value;
use session_store::item::EXPIRY_INDEX;
use session_testkit::repo_root;

/// `template.yaml`, parsed.
fn template() -> Value {
    serde_yaml_ng::from_str(&std::fs::read_to_string(repo_root().join("template.yaml")).unwrap()).unwrap()
}

/// DynamoDB operations as the SDK's fluent builders name them, with their IAM action.
const OPERATIONS: &[(&str, &str)] = &[
    ("batch_get_item", "BatchGetItem"),
    ("batch_write_item", "BatchWriteItem"),
    ("delete_item", "DeleteItem"),
    ("describe_table", "DescribeTable"),
    ("get_item", "GetItem"),
    ("put_item", "PutItem"),
    ("query", "Query"),
    ("scan", "Scan"),
    ("transact_get_items", "TransactGetItems"),
    ("transact_write_items", "TransactWriteItems"),
    ("update_item", "UpdateItem"),
];

/// The IAM actions (`dynamodb:X`) that the SDK calls in `files` need, and the indexes queried.
fn actions_called(files: &[&str]) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut actions = BTreeSet::new();
    let mut indexes = BTreeSet::new();
    for file in files {
        let source = std::fs::read_to_string(repo_root().join(file)).unwrap();
        for (method, action) in OPERATIONS {
            if source.contains(&format!(".{method}()")) {
                actions.insert(format!("dynamodb:{action}"));
            }
        }
        // A transaction is authorized as the actions of its parts, on the tables the parts name.
        actions.remove("dynamodb:TransactWriteItems");
        for (part, action) in [
            ("Put", "PutItem"),
            ("Delete", "DeleteItem"),
            ("Update", "UpdateItem"),
            ("ConditionCheck", "ConditionCheckItem"),
        ] {
            if source.contains(&format!(" {part}::builder()")) {
                actions.insert(format!("dynamodb:{action}"));
            }
        }
        for (constant, name) in [("EXPIRY_INDEX", EXPIRY_INDEX)] {
            if source.contains(&format!(".index_name({constant})")) {
                indexes.insert(name.to_owned());
            }
        }
    }
    (actions, indexes)
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

/// The DynamoDB actions a role allows on `resource`.
fn allowed(statements: &[(BTreeSet<String>, String)], resource: &str) -> BTreeSet<String> {
    statements
        .iter()
        .filter(|(_, r)| r == resource)
        .flat_map(|(actions, _)| actions.iter().filter(|a| a.starts_with("dynamodb:")).cloned())
        .collect()
}

/// What a role's code calls on one table: the table's logical id, the actions, the indexes queried.
type Calls = (&'static str, (BTreeSet<String>, BTreeSet<String>));

/// Checks that `role` allows exactly the called actions on each table (Query on the table
/// itself when no index is queried, else on each index queried), log writes to `log_group`,
/// the `others` (resource, actions), and nothing else.
fn check_role(role: &str, tables: Vec<Calls>, log_group: &str, others: &[(&str, &[&str])]) {
    let template = template();
    let statements = statements(&template, role);
    let mut expected_resources = BTreeSet::from([format!("{log_group}.Arn")]);
    for (table, (mut called, indexes)) in tables {
        expected_resources.insert(format!("{table}.Arn"));
        if !indexes.is_empty() && called.remove("dynamodb:Query") {
            for index in &indexes {
                let resource = format!("${{{table}.Arn}}/index/{index}");
                assert_eq!(
                    allowed(&statements, &resource),
                    BTreeSet::from(["dynamodb:Query".to_owned()]),
                    "{role} on {resource}"
                );
                expected_resources.insert(resource);
            }
        }
        assert_eq!(
            allowed(&statements, &format!("{table}.Arn")),
            called,
            "{role} on {table}"
        );
    }
    let logs: BTreeSet<_> = statements
        .iter()
        .filter(|(_, r)| *r == format!("{log_group}.Arn"))
        .flat_map(|(a, _)| a.iter().cloned())
        .collect();
    assert_eq!(
        logs,
        BTreeSet::from(["logs:CreateLogStream".to_owned(), "logs:PutLogEvents".to_owned()]),
        "{role}: log writes to its own group only"
    );
    for (resource, actions) in others {
        let granted: BTreeSet<_> = statements
            .iter()
            .filter(|(_, r)| r == resource)
            .flat_map(|(a, _)| a.iter().cloned())
            .collect();
        let wanted: BTreeSet<_> = actions.iter().map(|a| a.to_string()).collect();
        assert_eq!(granted, wanted, "{role} on {resource}");
        expected_resources.insert(resource.to_string());
    }
    let resources: BTreeSet<_> = statements.iter().map(|(_, r)| r.clone()).collect();
    assert_eq!(resources, expected_resources, "{role}: no other resources");
}

#[test]
fn the_api_role_allows_exactly_what_the_store_calls() {
    check_role(
        "ApiRole",
        vec![
            (
                "SessionsTable",
                actions_called(&[
                    "shared/src/store.rs",
                    "functions/api/src/lib.rs",
                    "functions/api/src/main.rs",
                ]),
            ),
            ("RegistryTable", actions_called(&["shared/src/registry.rs"])),
        ],
        "ApiLogGroup",
        &[],
    );
}

#[test]
fn the_sweeper_role_allows_exactly_what_the_sweep_calls() {
    check_role(
        "SweeperRole",
        vec![(
            "SessionsTable",
            actions_called(&[
                "shared/src/sweep.rs",
                "functions/sweeper/src/lib.rs",
                "functions/sweeper/src/main.rs",
            ]),
        )],
        "SweeperLogGroup",
        &[],
    );
}

#[test]
fn the_audit_role_allows_exactly_what_the_audit_writes_and_its_stream_needs() {
    // `audit.rs` also holds `AuditLog::by_subject` (a Query on the audit table's index), the
    // operators' read (`xtask audit`), run with their credentials, never by the function.
    let source = std::fs::read_to_string(repo_root().join("shared/src/audit.rs")).unwrap();
    assert_eq!(source.matches(".query()").count(), 1);
    assert!(source.contains("pub async fn by_subject"));
    let (mut called, _) = actions_called(&[
        "shared/src/audit.rs",
        "functions/audit/src/lib.rs",
        "functions/audit/src/main.rs",
    ]);
    assert!(called.remove("dynamodb:Query"));
    check_role(
        "AuditRole",
        vec![("AuditTable", (called, BTreeSet::new()))],
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
fn every_route_requires_iam_authorization() {
    let template = template();
    let auth = &template["Resources"]["HttpApi"]["Properties"]["Auth"];
    assert_eq!(auth["EnableIamAuthorizer"].as_bool(), Some(true));
    assert_eq!(auth["DefaultAuthorizer"].as_str(), Some("AWS_IAM"));
    let events = template["Resources"]["ApiFunction"]["Properties"]["Events"]
        .as_mapping()
        .unwrap();
    assert_eq!(events.len(), 11, "every route of openapi.yaml");
    for (name, event) in events {
        assert_eq!(event["Type"].as_str(), Some("HttpApi"), "{name:?}");
        assert!(
            matches!(&event["Properties"]["ApiId"], Value::Tagged(t) if t.value.as_str() == Some("HttpApi")),
            "{name:?} is on HttpApi"
        );
        assert!(
            event["Properties"].get("Auth").is_none(),
            "{name:?} must not override the default authorizer"
        );
    }
}
