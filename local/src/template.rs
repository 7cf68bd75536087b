//! The triggers `template.yaml` attaches to its functions: `ScheduleV2` events and
//! `DynamoDB` stream event sources, with the settings Lambda would apply to them.

use std::time::Duration;

use serde_yaml_ng::{Mapping, Value};

use crate::Error;
use crate::filter::Filter;

/// A function invoked on a schedule with a fixed payload (an EventBridge Scheduler `ScheduleV2` event).
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// The function's name under `cargo lambda watch` (its binary).
    pub function: String,
    /// Time between invocations (the template's `rate(...)` expression).
    pub every: Duration,
    /// The payload (`Input`), `{}` when the template names none.
    pub input: String,
}

/// A function fed batches from a DynamoDB table's stream (a `DynamoDB` event source mapping).
#[derive(Debug, Clone, PartialEq)]
pub struct StreamSource {
    /// The function's name under `cargo lambda watch` (its binary).
    pub function: String,
    /// Logical id of the table whose stream is read.
    pub table: String,
    /// Most records per invocation (`BatchSize`, default 100).
    pub batch_size: usize,
    /// Records must match one of these to be delivered (`FilterCriteria`); none means all.
    pub filters: Vec<Filter>,
    /// The function reports failed records by sequence number (`ReportBatchItemFailures`).
    pub reports_item_failures: bool,
    /// A failed batch is split in two and each half retried (`BisectBatchOnFunctionError`).
    pub bisect_on_error: bool,
    /// Retries before a batch goes to the on-failure destination (`MaximumRetryAttempts`; `None`: forever).
    pub max_retries: Option<u32>,
    /// Records older than this go to the on-failure destination unread (`MaximumRecordAgeInSeconds`).
    pub max_record_age: Option<Duration>,
    /// Start at the oldest record (`TRIM_HORIZON`) rather than the newest (`LATEST`).
    pub from_trim_horizon: bool,
}

/// Every schedule and stream source in a template.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Triggers {
    /// `ScheduleV2` events.
    pub schedules: Vec<Schedule>,
    /// `DynamoDB` events.
    pub streams: Vec<StreamSource>,
}

impl Triggers {
    /// Reads the triggers of every `AWS::Serverless::Function` in `template`.
    /// Parameters take their defaults; `overrides` (name, value) replace them.
    pub fn from_template(template: &str, overrides: &[(String, String)]) -> Result<Self, Error> {
        let template: Value = serde_yaml_ng::from_str(template)?;
        let context = Context::new(&template, overrides);
        let mut triggers = Self::default();
        let resources = template
            .get("Resources")
            .and_then(Value::as_mapping)
            .ok_or_else(|| invalid("the template has no Resources"))?;
        for (id, resource) in resources {
            if resource.get("Type").and_then(Value::as_str) != Some("AWS::Serverless::Function") {
                continue;
            }
            let id = id.as_str().unwrap_or_default();
            // `cargo lambda watch` serves each function under its binary's name.
            let function = resource
                .get("Metadata")
                .and_then(|m| m.get("BuildProperties"))
                .and_then(|p| p.get("Binary"))
                .and_then(Value::as_str)
                .unwrap_or(id)
                .to_owned();
            let events = resource.get("Properties").and_then(|p| p.get("Events"));
            for (name, event) in events.and_then(Value::as_mapping).into_iter().flatten() {
                let where_ = format!("{id}.Events.{}", name.as_str().unwrap_or_default());
                let properties = event.get("Properties").cloned().unwrap_or(Value::Null);
                match event.get("Type").and_then(Value::as_str) {
                    Some("ScheduleV2" | "Schedule") => {
                        triggers
                            .schedules
                            .push(schedule(&context, &function, &properties, &where_)?)
                    }
                    Some("DynamoDB") => triggers
                        .streams
                        .push(stream(&context, &function, &properties, &where_)?),
                    _ => {}
                }
            }
        }
        Ok(triggers)
    }
}

/// Parameter values and conditions, for resolving `!Ref`, `!Sub` and `!If`.
struct Context {
    parameters: Mapping,
    conditions: Mapping,
}

impl Context {
    fn new(template: &Value, overrides: &[(String, String)]) -> Self {
        let mut parameters = Mapping::new();
        for (name, parameter) in template
            .get("Parameters")
            .and_then(Value::as_mapping)
            .into_iter()
            .flatten()
        {
            if let Some(default) = parameter.get("Default") {
                parameters.insert(name.clone(), default.clone());
            }
        }
        for (name, value) in overrides {
            parameters.insert(Value::from(name.as_str()), Value::from(value.as_str()));
        }
        let conditions = template
            .get("Conditions")
            .and_then(Value::as_mapping)
            .cloned()
            .unwrap_or_default();
        Self { parameters, conditions }
    }

    /// Whether a condition (`!Equals`, `!Not`, `!And`, `!Or`, `!Condition`) holds.
    fn holds(&self, value: &Value, where_: &str) -> Result<bool, Error> {
        let Value::Tagged(tagged) = value else {
            return Err(invalid(format!("{where_}: expected a condition function")));
        };
        let operands = tagged.value.as_sequence().map_or(&[][..], Vec::as_slice);
        match (tagged.tag.to_string().trim_start_matches('!'), operands) {
            ("Equals", [a, b]) => Ok(self.scalar(a, where_)? == self.scalar(b, where_)?),
            ("Not", [a]) => Ok(!self.holds(a, where_)?),
            ("And", all) => all.iter().try_fold(true, |acc, c| Ok(acc && self.holds(c, where_)?)),
            ("Or", any) => any.iter().try_fold(false, |acc, c| Ok(acc || self.holds(c, where_)?)),
            ("Condition", _) => self.condition(tagged.value.as_str().unwrap_or_default(), where_),
            (other, _) => Err(invalid(format!("{where_}: unsupported condition function {other}"))),
        }
    }

    /// Whether the template's condition `name` holds.
    fn condition(&self, name: &str, where_: &str) -> Result<bool, Error> {
        let definition = self
            .conditions
            .get(name)
            .ok_or_else(|| invalid(format!("{where_}: no condition {name}")))?;
        self.holds(definition, &format!("Conditions.{name}"))
    }

    fn parameter(&self, name: &str) -> Option<String> {
        match self.parameters.get(name)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    /// A scalar property, resolving `!Ref Parameter` and `!Sub` over parameters.
    fn scalar(&self, value: &Value, where_: &str) -> Result<String, Error> {
        match value {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            Value::Tagged(tagged) if tagged.tag == "Ref" => tagged
                .value
                .as_str()
                .and_then(|name| self.parameter(name))
                .ok_or_else(|| invalid(format!("{where_}: !Ref names no parameter with a value"))),
            Value::Tagged(tagged) if tagged.tag == "Sub" => {
                let text = tagged
                    .value
                    .as_str()
                    .ok_or_else(|| invalid(format!("{where_}: only the one-string form of !Sub is supported")))?;
                self.substitute(text, where_)
            }
            Value::Tagged(tagged) if tagged.tag == "If" => match tagged.value.as_sequence().map(Vec::as_slice) {
                Some([Value::String(condition), then, otherwise]) => {
                    let chosen = if self.condition(condition, where_)? {
                        then
                    } else {
                        otherwise
                    };
                    self.scalar(chosen, where_)
                }
                _ => Err(invalid(format!(
                    "{where_}: !If takes a condition's name and two values"
                ))),
            },
            _ => Err(invalid(format!("{where_}: expected a value or a parameter reference"))),
        }
    }

    fn substitute(&self, text: &str, where_: &str) -> Result<String, Error> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let end = rest[start..]
                .find('}')
                .ok_or_else(|| invalid(format!("{where_}: unterminated ${{ in !Sub")))?;
            let name = &rest[start + 2..start + end];
            out.push_str(
                &self
                    .parameter(name)
                    .ok_or_else(|| invalid(format!("{where_}: !Sub names {name}, which is no parameter")))?,
            );
            rest = &rest[start + end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    fn optional(&self, properties: &Value, name: &str, where_: &str) -> Result<Option<String>, Error> {
        properties
            .get(name)
            .map(|v| self.scalar(v, &format!("{where_}.{name}")))
            .transpose()
    }

    fn number(&self, properties: &Value, name: &str, where_: &str) -> Result<Option<i64>, Error> {
        self.optional(properties, name, where_)?
            .map(|v| {
                v.parse()
                    .map_err(|_| invalid(format!("{where_}.{name}: {v} is not a number")))
            })
            .transpose()
    }

    fn flag(&self, properties: &Value, name: &str, where_: &str) -> Result<bool, Error> {
        Ok(self.optional(properties, name, where_)?.as_deref() == Some("true"))
    }
}

fn invalid(message: impl Into<String>) -> Error {
    Error::Template(message.into())
}

fn schedule(context: &Context, function: &str, properties: &Value, where_: &str) -> Result<Schedule, Error> {
    let expression = context
        .optional(properties, "ScheduleExpression", where_)?
        .or(context.optional(properties, "Schedule", where_)?)
        .ok_or_else(|| invalid(format!("{where_} has no ScheduleExpression")))?;
    Ok(Schedule {
        function: function.to_owned(),
        every: rate(&expression).ok_or_else(|| {
            invalid(format!(
                "{where_}: {expression} is not a rate(...) expression; pass --schedule-every"
            ))
        })?,
        input: context
            .optional(properties, "Input", where_)?
            .unwrap_or_else(|| "{}".into()),
    })
}

/// The interval of a `rate(N unit)` schedule expression.
pub fn rate(expression: &str) -> Option<Duration> {
    let inner = expression.trim().strip_prefix("rate(")?.strip_suffix(')')?;
    let (count, unit) = inner.trim().split_once(' ')?;
    let count: u64 = count.parse().ok().filter(|&n| n > 0)?;
    let seconds = match unit.trim() {
        "minute" | "minutes" => 60,
        "hour" | "hours" => 3600,
        "day" | "days" => 86400,
        _ => return None,
    };
    Some(Duration::from_secs(count * seconds))
}

fn stream(context: &Context, function: &str, properties: &Value, where_: &str) -> Result<StreamSource, Error> {
    let table = match properties.get("Stream") {
        Some(Value::Tagged(tagged)) if tagged.tag == "GetAtt" => tagged
            .value
            .as_str()
            .and_then(|target| target.strip_suffix(".StreamArn"))
            .map(str::to_owned),
        _ => None,
    }
    .ok_or_else(|| invalid(format!("{where_}.Stream must be !GetAtt <Table>.StreamArn")))?;
    let filters = properties
        .get("FilterCriteria")
        .and_then(|c| c.get("Filters"))
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
        .map(|f| {
            let pattern = context.optional(f, "Pattern", where_)?.unwrap_or_default();
            Filter::parse(&pattern)
        })
        .collect::<Result<_, _>>()?;
    let types = properties.get("FunctionResponseTypes").and_then(Value::as_sequence);
    Ok(StreamSource {
        function: function.to_owned(),
        table,
        batch_size: context
            .number(properties, "BatchSize", where_)?
            .map_or(100, |n| n.clamp(1, 10_000) as usize),
        filters,
        reports_item_failures: types
            .into_iter()
            .flatten()
            .any(|t| t.as_str() == Some("ReportBatchItemFailures")),
        bisect_on_error: context.flag(properties, "BisectBatchOnFunctionError", where_)?,
        max_retries: context
            .number(properties, "MaximumRetryAttempts", where_)?
            .and_then(|n| u32::try_from(n).ok()),
        max_record_age: context
            .number(properties, "MaximumRecordAgeInSeconds", where_)?
            .and_then(|n| u64::try_from(n).ok())
            .map(Duration::from_secs),
        from_trim_horizon: context.optional(properties, "StartingPosition", where_)?.as_deref() != Some("LATEST"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = include_str!("../../template.yaml");

    #[test]
    fn the_projects_template_yields_the_sweeper_schedule_and_the_audit_stream() {
        let triggers = Triggers::from_template(TEMPLATE, &[]).unwrap();
        assert_eq!(
            triggers.schedules,
            vec![Schedule {
                function: "sweeper".into(),
                every: Duration::from_secs(300),
                input: r#"{"dry_run": false}"#.into(),
            }]
        );
        let [audit] = triggers.streams.as_slice() else {
            panic!("one stream source: {:?}", triggers.streams)
        };
        assert_eq!(
            (audit.function.as_str(), audit.table.as_str()),
            ("audit", "SessionsTable")
        );
        assert_eq!(audit.batch_size, 100);
        assert!(audit.reports_item_failures && audit.bisect_on_error && audit.from_trim_horizon);
        assert_eq!(audit.max_retries, Some(10));
        assert_eq!(audit.max_record_age, Some(Duration::from_secs(21600)));
        assert_eq!(
            audit.filters,
            vec![Filter::parse(r#"{"eventName": ["REMOVE"]}"#).unwrap()]
        );
    }

    #[test]
    fn parameter_overrides_reach_the_schedule() {
        // 1 takes the template's `!If` branch for the singular unit ("rate(1 minute)").
        for (minutes, seconds) in [("1", 60), ("2", 120), ("60", 3600)] {
            let overrides = [("SweepIntervalMinutes".to_owned(), minutes.to_owned())];
            let triggers = Triggers::from_template(TEMPLATE, &overrides).unwrap();
            assert_eq!(triggers.schedules[0].every, Duration::from_secs(seconds), "{minutes}");
        }
    }

    #[test]
    fn rate_expressions_parse_and_others_do_not() {
        assert_eq!(rate("rate(1 minute)"), Some(Duration::from_secs(60)));
        assert_eq!(rate("rate(3 hours)"), Some(Duration::from_secs(10800)));
        assert_eq!(rate("rate(0 minutes)"), None);
        assert_eq!(rate("cron(0 * * * ? *)"), None);
    }
}
