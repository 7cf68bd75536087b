//! Lambda event filter patterns (`FilterCriteria`), the part of the language
//! templates use for stream records: exact values, `prefix` and `exists`.

use serde_json::Value;

use crate::Error;

/// One parsed filter pattern.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter(Value);

impl Filter {
    /// Parses a pattern, refusing the parts of the language this runner does not implement
    /// (rather than delivering records Lambda would filter out).
    pub fn parse(pattern: &str) -> Result<Self, Error> {
        let value: Value =
            serde_json::from_str(pattern).map_err(|e| Error::Filter(format!("{pattern} is not JSON: {e}")))?;
        check(&value, pattern)?;
        Ok(Self(value))
    }

    /// Whether `record` (a stream record as JSON) matches.
    pub fn matches(&self, record: &Value) -> bool {
        matches(&self.0, record)
    }
}

fn check(pattern: &Value, text: &str) -> Result<(), Error> {
    let unsupported = |what: &str| Err(Error::Filter(format!("{text}: {what} is not supported locally")));
    let Value::Object(fields) = pattern else {
        return unsupported("a pattern that is not an object");
    };
    for value in fields.values() {
        match value {
            Value::Object(_) => check(value, text)?,
            Value::Array(options) => {
                for option in options {
                    match option {
                        Value::Object(o) if o.len() == 1 && o.get("exists").is_some_and(Value::is_boolean) => {}
                        Value::Object(o) if o.len() == 1 && o.get("prefix").is_some_and(Value::is_string) => {}
                        Value::Object(o) => return unsupported(&format!("the rule {}", Value::Object(o.clone()))),
                        Value::Array(_) => return unsupported("a nested list"),
                        _ => {}
                    }
                }
            }
            _ => return unsupported("a value outside a list"),
        }
    }
    Ok(())
}

fn matches(pattern: &Value, record: &Value) -> bool {
    let Value::Object(fields) = pattern else {
        return false;
    };
    fields.iter().all(|(name, rule)| {
        let value = record.get(name);
        match rule {
            Value::Object(_) => value.is_some_and(|v| matches(rule, v)),
            Value::Array(options) => options.iter().any(|option| matches_option(option, value)),
            _ => false,
        }
    })
}

fn matches_option(option: &Value, value: Option<&Value>) -> bool {
    match option {
        Value::Object(o) => {
            if let Some(exists) = o.get("exists").and_then(Value::as_bool) {
                value.is_some() == exists
            } else if let Some(prefix) = o.get("prefix").and_then(Value::as_str) {
                value.and_then(Value::as_str).is_some_and(|v| v.starts_with(prefix))
            } else {
                false
            }
        }
        literal => match value {
            Some(Value::Array(items)) => items.contains(literal),
            Some(v) => v == literal,
            None => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn exact_values_match_one_of_a_list() {
        let filter = Filter::parse(r#"{"eventName": ["REMOVE", "MODIFY"]}"#).unwrap();
        assert!(filter.matches(&json!({"eventName": "REMOVE"})));
        assert!(filter.matches(&json!({"eventName": "MODIFY"})));
        assert!(!filter.matches(&json!({"eventName": "INSERT"})));
        assert!(!filter.matches(&json!({})));
    }

    #[test]
    fn nested_fields_prefix_and_exists() {
        let filter = Filter::parse(
            r#"{"dynamodb": {"Keys": {"id": {"S": [{"prefix": "A"}]}}}, "userIdentity": [{"exists": false}]}"#,
        )
        .unwrap();
        assert!(filter.matches(&json!({"dynamodb": {"Keys": {"id": {"S": "AQID"}}}})));
        assert!(!filter.matches(&json!({"dynamodb": {"Keys": {"id": {"S": "BQID"}}}})));
        assert!(!filter.matches(&json!({"dynamodb": {"Keys": {"id": {"S": "AQID"}}}, "userIdentity": {}})));
    }

    #[test]
    fn rules_not_implemented_here_are_refused_not_ignored() {
        assert!(Filter::parse(r#"{"n": [{"numeric": [">", 1]}]}"#).is_err());
        assert!(Filter::parse(r#"{"n": [{"anything-but": ["x"]}]}"#).is_err());
        assert!(Filter::parse(r#"{"n": "x"}"#).is_err());
        assert!(Filter::parse("[]").is_err());
    }
}
