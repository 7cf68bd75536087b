//! The metrics a function writes: a sink that keeps each Embedded Metric Format
//! document, checked against the format's published schema (`emf-schema.json`)
//! and the rules of its specification that a schema cannot state.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

use lambda_support::metrics::Sink;
use serde_json::Value;

/// The documents written to [`Captured::sink`], in order.
#[derive(Clone, Debug, Default)]
pub struct Captured(Arc<Mutex<Vec<String>>>);

impl Captured {
    /// A sink that keeps what it is given, for `Metrics::with_sink`.
    pub fn sink(&self) -> Sink {
        let lines = self.0.clone();
        Arc::new(move |line: &str| lines.lock().unwrap().push(line.to_owned()))
    }

    /// The documents written since the last call, each parsed and checked (a
    /// document that CloudWatch would not extract metrics from fails the test).
    pub fn take(&self) -> Vec<Value> {
        let lines = std::mem::take(&mut *self.0.lock().unwrap());
        lines
            .iter()
            .map(|line| {
                assert!(!line.contains('\n'), "a document is one log line: {line}");
                let document: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
                if let Err(violation) = validate(&document) {
                    panic!("not an EMF document CloudWatch accepts: {violation}\n{line}");
                }
                document
            })
            .collect()
    }
}

/// Checks `document` against the EMF schema and the specification's other rules:
/// every referenced dimension is a string member of the root, every metric a
/// number member (or an array of up to 100 numbers), at most 100 metrics a directive, and no name twice in a directive.
pub fn validate(document: &Value) -> Result<(), String> {
    static SCHEMA: OnceLock<jsonschema::Validator> = OnceLock::new();
    let schema = SCHEMA.get_or_init(|| {
        let text = include_str!("../emf-schema.json");
        jsonschema::validator_for(&serde_json::from_str(text).expect("emf-schema.json is JSON"))
            .expect("emf-schema.json is a schema")
    });
    if let Err(error) = schema.validate(document) {
        return Err(format!("schema: {error} at {}", error.instance_path()));
    }
    for directive in document["_aws"]["CloudWatchMetrics"].as_array().into_iter().flatten() {
        let sets = directive["Dimensions"].as_array().into_iter().flatten();
        for dimension in sets.filter_map(Value::as_array).flatten() {
            let name = dimension.as_str().unwrap_or_default();
            if !document[name].is_string() {
                return Err(format!("dimension {name:?} is not a string member of the root"));
            }
        }
        let metrics = directive["Metrics"].as_array().map_or(&[][..], Vec::as_slice);
        if metrics.len() > 100 {
            return Err(format!("{} metrics in one directive (at most 100)", metrics.len()));
        }
        let mut names = std::collections::BTreeSet::new();
        for metric in metrics {
            let name = metric["Name"].as_str().unwrap_or_default();
            if !names.insert(name) {
                return Err(format!("metric {name:?} twice in one directive"));
            }
            let value = &document[name];
            let values = value.as_array().map_or(&[][..], Vec::as_slice);
            let numbers = value.is_number() || (!values.is_empty() && values.iter().all(Value::is_number));
            if !numbers || values.len() > 100 {
                return Err(format!(
                    "metric {name:?} is not a number or an array of 1 to 100 numbers at the root"
                ));
            }
        }
    }
    Ok(())
}

/// One value CloudWatch extracts from a document: a metric under one dimension set.
#[derive(Clone, Debug, PartialEq)]
pub struct Datum {
    /// The namespace.
    pub namespace: String,
    /// The metric's name.
    pub name: String,
    /// Its unit.
    pub unit: String,
    /// The dimension set, with the document's values.
    pub dimensions: BTreeMap<String, String>,
    /// The value (the first, when the document holds several).
    pub value: f64,
    /// Every value the document holds for it.
    pub values: Vec<f64>,
}

/// Every metric value `document` publishes, once per dimension set.
pub fn data(document: &Value) -> Vec<Datum> {
    let mut data = Vec::new();
    for directive in document["_aws"]["CloudWatchMetrics"].as_array().into_iter().flatten() {
        for set in directive["Dimensions"].as_array().into_iter().flatten() {
            let dimensions: BTreeMap<String, String> = set
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(|name| (name.to_owned(), document[name].as_str().unwrap_or_default().to_owned()))
                .collect();
            for metric in directive["Metrics"].as_array().into_iter().flatten() {
                let name = metric["Name"].as_str().unwrap_or_default();
                let values: Vec<f64> = match &document[name] {
                    Value::Array(values) => values.iter().map(|v| v.as_f64().unwrap_or(f64::NAN)).collect(),
                    value => vec![value.as_f64().unwrap_or(f64::NAN)],
                };
                data.push(Datum {
                    namespace: directive["Namespace"].as_str().unwrap_or_default().to_owned(),
                    name: name.to_owned(),
                    unit: metric["Unit"].as_str().unwrap_or("None").to_owned(),
                    dimensions: dimensions.clone(),
                    value: values.first().copied().unwrap_or(f64::NAN),
                    values,
                });
            }
        }
    }
    data
}

/// The value of metric `name` under exactly the dimensions `dimensions` in
/// `document`, if it publishes one.
pub fn value(document: &Value, name: &str, dimensions: &[(&str, &str)]) -> Option<f64> {
    let wanted: BTreeMap<String, String> = dimensions
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    data(document)
        .into_iter()
        .find(|d| d.name == name && d.dimensions == wanted)
        .map(|d| d.value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The example of the specification.
    fn example() -> Value {
        json!({
            "_aws": {
                "Timestamp": 1574109732004u64,
                "CloudWatchMetrics": [{
                    "Namespace": "lambda-function-metrics",
                    "Dimensions": [["functionVersion"]],
                    "Metrics": [{ "Name": "time", "Unit": "Milliseconds", "StorageResolution": 60 }]
                }]
            },
            "functionVersion": "$LATEST",
            "time": 100,
            "requestId": "989ffbf8-9ace-4817-a57c-e4dd734019ee"
        })
    }

    #[test]
    fn the_specifications_example_is_valid_and_reads_as_one_datum() {
        assert_eq!(validate(&example()), Ok(()));
        assert_eq!(
            value(&example(), "time", &[("functionVersion", "$LATEST")]),
            Some(100.0)
        );
    }

    #[test]
    fn documents_cloudwatch_would_reject_are_invalid() {
        type Breakage = (&'static str, fn(&mut Value));
        let broken: [Breakage; 8] = [
            ("an empty array of values", |d| d["time"] = json!([])),
            ("101 values", |d| d["time"] = json!(vec![1; 101])),
            ("no timestamp", |d| {
                d["_aws"].as_object_mut().unwrap().remove("Timestamp");
            }),
            ("an unknown unit", |d| {
                d["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"] = json!("Parsecs")
            }),
            ("no dimension sets", |d| {
                d["_aws"]["CloudWatchMetrics"][0]["Dimensions"] = json!([])
            }),
            ("a missing metric value", |d| {
                d.as_object_mut().unwrap().remove("time");
            }),
            ("a metric value that is text", |d| d["time"] = json!("100")),
            ("a dimension value that is a number", |d| {
                d["functionVersion"] = json!(1)
            }),
        ];
        for (what, breaks) in broken {
            let mut document = example();
            breaks(&mut document);
            assert!(validate(&document).is_err(), "{what}: {document}");
        }
    }
}
