//! Every value `template.yaml` allows for a parameter that reaches a function's
//! environment starts that function, and the values just past its bounds are
//! refused by the function too: the template's constraints (MinValue, MaxValue,
//! AllowedValues) are the functions' own. A stack deployed with any allowed values
//! therefore never fails at its first invocation on its configuration.

use std::collections::BTreeMap;

use serde_yaml_ng::Value;
use session_store::{Config, Limits};

use session_store::audit::AuditLog;
use session_testkit::{self as testkit, repo_root};

fn template() -> Value {
    serde_yaml_ng::from_str(&std::fs::read_to_string(repo_root().join("template.yaml")).unwrap()).unwrap()
}

/// A scalar as text (`1800`, `"true"`).
fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A function's environment: each variable's value with every parameter at its
/// default, and the parameter it comes from (`!Ref Parameter`), if any.
fn environment(template: &Value, function: &str) -> BTreeMap<String, (String, Option<String>)> {
    let variables = template["Resources"][function]["Properties"]["Environment"]["Variables"]
        .as_mapping()
        .unwrap_or_else(|| panic!("{function} has environment variables"));
    let parameters = &template["Parameters"];
    variables
        .iter()
        .map(|(name, value)| {
            let name = name.as_str().unwrap().to_owned();
            let parameter = match value {
                Value::Tagged(tagged) if tagged.tag == "!Ref" => tagged
                    .value
                    .as_str()
                    .filter(|p| parameters.get(*p).is_some())
                    .map(str::to_owned),
                _ => None,
            };
            let value = match &parameter {
                Some(p) => text(&parameters[p.as_str()]["Default"]).unwrap_or_default(),
                // A resource's name or a stack-specific string: any non-empty text.
                None => text(value).unwrap_or_else(|| format!("{name}-value")),
            };
            (name, (value, parameter))
        })
        .collect()
}

/// The values a parameter's constraints allow at their edges, and the values
/// just past them.
fn edges(parameter: &Value) -> (Vec<String>, Vec<String>) {
    let (mut allowed, mut refused) = (Vec::new(), Vec::new());
    if let Some(values) = parameter["AllowedValues"].as_sequence() {
        allowed.extend(values.iter().filter_map(text));
    }
    let number = |key: &str| text(&parameter[key]).map(|v| v.parse::<i64>().unwrap());
    if let Some(min) = number("MinValue") {
        allowed.push(min.to_string());
        refused.push((min - 1).to_string());
    }
    if let Some(max) = number("MaxValue") {
        allowed.push(max.to_string());
        refused.push((max + 1).to_string());
    }
    (allowed, refused)
}

/// Whether `function` starts with the environment `env`.
fn starts(function: &str, env: &BTreeMap<String, String>) -> Result<(), String> {
    let lookup = |name: &str| env.get(name).cloned();
    match function {
        "ApiFunction" | "SweeperFunction" => Config::from_lookup(lookup).map(drop).map_err(|e| e.to_string()),
        "AuditFunction" => {
            let client = aws_sdk_dynamodb::Client::from_conf(testkit::local_config().build());
            AuditLog::from_lookup(client, lookup)
                .map(drop)
                .map_err(|e| e.to_string())
        }
        other => panic!("no configuration reader for {other}"),
    }
}

/// Pairs of a default timeout and its ceiling: CloudFormation cannot compare two
/// parameters, so the deployer keeps each default within its ceiling (the function
/// refuses otherwise, see below).
const PAIRS: [(&str, &str); 2] = [
    ("SESSION_IDLE_TIMEOUT_SECONDS", "SESSION_MAX_IDLE_TIMEOUT_SECONDS"),
    (
        "SESSION_ABSOLUTE_TIMEOUT_SECONDS",
        "SESSION_MAX_ABSOLUTE_TIMEOUT_SECONDS",
    ),
];

/// Moves the other member of `changed`'s pair so the pair is consistent again, as
/// a deployer setting one of them would.
fn within_ceilings(env: &mut BTreeMap<String, String>, changed: &str) {
    let number = |env: &BTreeMap<String, String>, name: &str| env.get(name).and_then(|v| v.parse::<u64>().ok());
    for (default, ceiling) in PAIRS {
        let (Some(d), Some(c)) = (number(env, default), number(env, ceiling)) else {
            continue;
        };
        if d > c {
            let (other, value) = if changed == default { (ceiling, d) } else { (default, c) };
            env.insert(other.to_owned(), value.to_string());
        }
    }
}

#[test]
fn every_allowed_parameter_value_starts_the_functions_and_values_past_the_bounds_are_refused_by_them() {
    let template = template();
    let mut checked = 0;
    for function in ["ApiFunction", "SweeperFunction", "AuditFunction"] {
        let environment = environment(&template, function);
        let defaults: BTreeMap<String, String> = environment.iter().map(|(k, (v, _))| (k.clone(), v.clone())).collect();
        starts(function, &defaults).unwrap_or_else(|e| panic!("{function} with every default: {e}"));
        for (variable, (_, parameter)) in &environment {
            let Some(parameter) = parameter else { continue };
            let (allowed, refused) = edges(&template["Parameters"][parameter.as_str()]);
            for value in allowed {
                let mut env = defaults.clone();
                env.insert(variable.clone(), value.clone());
                within_ceilings(&mut env, variable);
                if let Err(e) = starts(function, &env) {
                    panic!("{function}: {parameter}={value} is allowed by the template but refused: {e}");
                }
                checked += 1;
            }
            for value in refused {
                let env = BTreeMap::from_iter(defaults.clone().into_iter().chain([(variable.clone(), value.clone())]));
                let refusal = starts(function, &env).expect_err(&format!(
                    "{function}: {parameter}={value} is refused by the template but the function takes it"
                ));
                assert!(refusal.contains(variable.as_str()), "{refusal}");
                checked += 1;
            }
        }
    }
    assert!(checked >= 20, "only {checked} edge values checked");
}

/// A default timeout above its ceiling cannot be stated as a parameter constraint
/// (CloudFormation compares no two parameters); the function refuses it by name.
/// The template's defaults keep each default within its ceiling, and the ceilings
/// admit Django's default session age (14 days).
#[test]
fn the_default_ceilings_admit_djangos_default_session_age_and_the_defaults_stay_within_them() {
    let template = template();
    let default = |name: &str| {
        text(&template["Parameters"][name]["Default"])
            .unwrap()
            .parse::<u32>()
            .unwrap()
    };
    let django_default_age = 14 * 24 * 60 * 60;
    assert!(default("MaxIdleTimeoutSeconds") >= django_default_age);
    assert!(default("MaxAbsoluteTimeoutSeconds") >= django_default_age);
    assert!(default("IdleTimeoutSeconds") <= default("MaxIdleTimeoutSeconds"));
    assert!(default("AbsoluteTimeoutSeconds") <= default("MaxAbsoluteTimeoutSeconds"));
    assert_eq!(
        (default("IdleTimeoutSeconds"), default("AbsoluteTimeoutSeconds")),
        (1800, 43200)
    );
    // `scripts/run` and `cargo lambda watch` start with the built-in defaults: they
    // serve what a stack deployed with the template's defaults serves.
    let built_in = Limits::default();
    assert_eq!(
        [
            built_in.default_idle_timeout,
            built_in.max_idle_timeout,
            built_in.default_absolute_timeout,
            built_in.max_absolute_timeout,
        ],
        [
            default("IdleTimeoutSeconds"),
            default("MaxIdleTimeoutSeconds"),
            default("AbsoluteTimeoutSeconds"),
            default("MaxAbsoluteTimeoutSeconds"),
        ]
    );

    let mut env = BTreeMap::from([
        ("SESSIONS_TABLE".to_owned(), "sessions".to_owned()),
        ("REGISTRY_TABLE".to_owned(), "registry".to_owned()),
        ("SESSION_MAX_IDLE_TIMEOUT_SECONDS".to_owned(), "600".to_owned()),
    ]);
    let refusal = starts("ApiFunction", &env).unwrap_err();
    assert!(refusal.contains("SESSION_IDLE_TIMEOUT_SECONDS"), "{refusal}");
    env.insert("SESSION_IDLE_TIMEOUT_SECONDS".to_owned(), "600".to_owned());
    assert_eq!(starts("ApiFunction", &env), Ok(()));
}
