//! What Lambda's event source mapping does with stream records: filter, batch,
//! invoke, and on failure retry, bisect, resume from the reported failure, and
//! finally give up to the on-failure destination.

use std::collections::VecDeque;
use std::time::Duration;

use serde_json::{Value, json};

use crate::template::StreamSource;

/// How one invocation went, as the mapping sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Invocation {
    /// The function returned this response.
    Returned(Value),
    /// The function failed (an error, a crash, a timeout) or could not be reached.
    Failed(String),
}

/// What became of a run of records.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Delivery {
    /// Invocations made, retries included.
    pub invocations: usize,
    /// Records the function accepted.
    pub delivered: usize,
    /// Records that matched no filter and were skipped.
    pub filtered: usize,
    /// What went to the on-failure destination, one entry per abandoned batch,
    /// shaped like Lambda's on-failure record.
    pub abandoned: Vec<Value>,
}

/// The batch failed from this index on (0: the whole batch).
fn failed_from(source: &StreamSource, batch: &[Value], outcome: &Invocation) -> Option<usize> {
    let response = match outcome {
        Invocation::Failed(_) => return Some(0),
        Invocation::Returned(response) if source.reports_item_failures => response,
        Invocation::Returned(_) => return None,
    };
    let failures = match response.get("batchItemFailures") {
        None | Some(Value::Null) => return None,
        Some(Value::Array(failures)) if failures.is_empty() => return None,
        Some(Value::Array(failures)) => failures,
        Some(_) => return Some(0),
    };
    // Lambda resumes from the lowest reported sequence number; an identifier that
    // names no record of the batch fails the whole batch.
    failures
        .iter()
        .map(|failure| {
            let id = failure.get("itemIdentifier").and_then(Value::as_str)?;
            batch.iter().position(|r| sequence_number(r) == Some(id))
        })
        .try_fold(usize::MAX, |lowest, index| index.map(|i| lowest.min(i)))
        .or(Some(0))
}

fn sequence_number(record: &Value) -> Option<&str> {
    record["dynamodb"]["SequenceNumber"].as_str()
}

fn created_at(record: &Value) -> Option<f64> {
    record["dynamodb"]["ApproximateCreationDateTime"].as_f64()
}

/// Pause before retry `attempt` (1-based): 100 ms doubling, at most 3.2 s.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100 << attempt.clamp(1, 6).saturating_sub(1))
}

/// Delivers `records` (Lambda stream records, oldest first, one shard) to the
/// function through `invoke`, as the template's event source mapping would.
/// `now` gives the time (seconds since the epoch) for the record-age limit;
/// `pause` waits between retries.
pub fn deliver(
    source: &StreamSource,
    shard: &str,
    records: Vec<Value>,
    now: impl Fn() -> f64,
    mut invoke: impl FnMut(&Value) -> Invocation,
    mut pause: impl FnMut(Duration),
) -> Delivery {
    let mut delivery = Delivery::default();
    let total = records.len();
    let mut queue: VecDeque<Value> = records
        .into_iter()
        .filter(|r| source.filters.is_empty() || source.filters.iter().any(|f| f.matches(r)))
        .collect();
    delivery.filtered = total - queue.len();
    while !queue.is_empty() {
        let size = source.batch_size.min(queue.len());
        let mut batch: Vec<Value> = queue.drain(..size).collect();
        let mut attempts = 0u32;
        loop {
            if let Some(limit) = source.max_record_age {
                let oldest_allowed = now() - limit.as_secs_f64();
                let too_old = batch
                    .iter()
                    .take_while(|r| created_at(r).is_some_and(|t| t < oldest_allowed))
                    .count();
                if too_old > 0 {
                    let old: Vec<Value> = batch.drain(..too_old).collect();
                    delivery
                        .abandoned
                        .push(on_failure(source, shard, &old, "RecordAgeExceeded", attempts));
                    if batch.is_empty() {
                        break;
                    }
                }
            }
            attempts += 1;
            delivery.invocations += 1;
            let outcome = invoke(&json!({ "Records": batch }));
            let Some(from) = failed_from(source, &batch, &outcome) else {
                delivery.delivered += batch.len();
                break;
            };
            delivery.delivered += from;
            batch.drain(..from);
            if source.bisect_on_error && from == 0 && batch.len() > 1 {
                // Splitting does not count as a retry: the halves go one after the other.
                let second = batch.split_off(batch.len() / 2);
                for record in second.into_iter().rev() {
                    queue.push_front(record);
                }
                attempts -= 1;
                continue;
            }
            if source.max_retries.is_some_and(|max| attempts > max) {
                delivery
                    .abandoned
                    .push(on_failure(source, shard, &batch, "RetryAttemptsExhausted", attempts));
                break;
            }
            pause(backoff(attempts));
        }
    }
    delivery
}

/// The record Lambda sends to the on-failure destination for a batch it gives up on.
fn on_failure(source: &StreamSource, shard: &str, batch: &[Value], condition: &str, attempts: u32) -> Value {
    let first = batch.first();
    let last = batch.last();
    json!({
        "requestContext": {
            "functionArn": source.function,
            "condition": condition,
            "approximateInvokeCount": attempts,
        },
        "DDBStreamBatchInfo": {
            "shardId": shard,
            "startSequenceNumber": first.and_then(sequence_number),
            "endSequenceNumber": last.and_then(sequence_number),
            "approximateArrivalOfFirstRecord": first.and_then(created_at),
            "approximateArrivalOfLastRecord": last.and_then(created_at),
            "batchSize": batch.len(),
            "streamArn": first.map(|r| r["eventSourceARN"].clone()),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::Filter;

    fn source() -> StreamSource {
        StreamSource {
            function: "audit".into(),
            table: "SessionsTable".into(),
            batch_size: 4,
            filters: vec![Filter::parse(r#"{"eventName": ["REMOVE"]}"#).unwrap()],
            reports_item_failures: true,
            bisect_on_error: false,
            max_retries: Some(2),
            max_record_age: None,
            from_trim_horizon: true,
        }
    }

    fn records(n: usize) -> Vec<Value> {
        (1..=n)
            .map(|i| json!({"eventName": "REMOVE", "dynamodb": {"SequenceNumber": format!("{i:03}"), "ApproximateCreationDateTime": 1000.0}}))
            .collect()
    }

    fn sequence_numbers(payload: &Value) -> Vec<String> {
        payload["Records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| sequence_number(r).unwrap().to_owned())
            .collect()
    }

    /// Runs `deliver`, answering each invocation with `answer`, and returns what was sent.
    fn run(
        source: &StreamSource,
        records: Vec<Value>,
        mut answer: impl FnMut(&[String]) -> Invocation,
    ) -> (Delivery, Vec<Vec<String>>) {
        let mut sent = Vec::new();
        let delivery = deliver(
            source,
            "shard-1",
            records,
            || 2000.0,
            |payload| {
                let batch = sequence_numbers(payload);
                let reply = answer(&batch);
                sent.push(batch);
                reply
            },
            |_| {},
        );
        (delivery, sent)
    }

    fn ok() -> Invocation {
        Invocation::Returned(json!({"batchItemFailures": []}))
    }

    fn fail_at(id: &str) -> Invocation {
        Invocation::Returned(json!({"batchItemFailures": [{"itemIdentifier": id}]}))
    }

    #[test]
    fn records_are_filtered_then_sent_in_batches_of_the_batch_size() {
        let mut input = records(9);
        input[2]["eventName"] = json!("INSERT");
        let (delivery, sent) = run(&source(), input, |_| ok());
        assert_eq!(
            sent,
            [vec!["001", "002", "004", "005"], vec!["006", "007", "008", "009"]]
        );
        assert_eq!((delivery.delivered, delivery.filtered, delivery.invocations), (8, 1, 2));
    }

    #[test]
    fn a_reported_failure_is_retried_from_that_record_on() {
        let mut calls = 0;
        let (delivery, sent) = run(&source(), records(4), |_| {
            calls += 1;
            if calls == 1 { fail_at("003") } else { ok() }
        });
        assert_eq!(sent, [vec!["001", "002", "003", "004"], vec!["003", "004"]]);
        assert_eq!(delivery.delivered, 4);
        assert!(delivery.abandoned.is_empty());
    }

    #[test]
    fn an_identifier_naming_no_record_fails_the_whole_batch() {
        let mut calls = 0;
        let (_, sent) = run(&source(), records(2), |_| {
            calls += 1;
            if calls == 1 { fail_at("999") } else { ok() }
        });
        assert_eq!(sent, [vec!["001", "002"], vec!["001", "002"]]);
    }

    #[test]
    fn after_the_last_retry_the_batch_goes_to_the_on_failure_destination() {
        let (delivery, sent) = run(&source(), records(6), |batch| {
            if batch.contains(&"002".to_owned()) {
                fail_at("002")
            } else {
                ok()
            }
        });
        // One try and two retries of 002..004, then the next batch.
        assert_eq!(sent.len(), 4);
        assert_eq!(sent[3], ["005", "006"]);
        assert_eq!(delivery.delivered, 3);
        let [abandoned] = delivery.abandoned.as_slice() else {
            panic!("{:?}", delivery.abandoned)
        };
        assert_eq!(abandoned["requestContext"]["condition"], "RetryAttemptsExhausted");
        assert_eq!(abandoned["DDBStreamBatchInfo"]["startSequenceNumber"], "002");
        assert_eq!(abandoned["DDBStreamBatchInfo"]["endSequenceNumber"], "004");
        assert_eq!(abandoned["DDBStreamBatchInfo"]["batchSize"], 3);
    }

    #[test]
    fn a_function_error_bisects_the_batch_down_to_the_poison_record() {
        let source = StreamSource {
            bisect_on_error: true,
            max_retries: Some(0),
            ..source()
        };
        let (delivery, sent) = run(&source, records(4), |batch| {
            if batch.contains(&"003".to_owned()) {
                Invocation::Failed("boom".into())
            } else {
                ok()
            }
        });
        assert_eq!(
            sent,
            [
                vec!["001", "002", "003", "004"],
                vec!["001", "002"],
                vec!["003", "004"],
                vec!["003"],
                vec!["004"]
            ]
        );
        assert_eq!(delivery.delivered, 3);
        assert_eq!(delivery.abandoned.len(), 1);
        assert_eq!(
            delivery.abandoned[0]["DDBStreamBatchInfo"]["startSequenceNumber"],
            "003"
        );
    }

    #[test]
    fn records_older_than_the_age_limit_are_not_delivered() {
        let source = StreamSource {
            max_record_age: Some(Duration::from_secs(60)),
            ..source()
        };
        let mut input = records(3);
        input[2]["dynamodb"]["ApproximateCreationDateTime"] = json!(1990.0);
        let (delivery, sent) = run(&source, input, |_| ok());
        assert_eq!(sent, [vec!["003"]]);
        assert_eq!(
            delivery.abandoned[0]["requestContext"]["condition"],
            "RecordAgeExceeded"
        );
    }

    #[test]
    fn without_item_failure_reports_any_response_is_success() {
        let source = StreamSource {
            reports_item_failures: false,
            ..source()
        };
        let (delivery, sent) = run(&source, records(2), |_| fail_at("001"));
        assert_eq!((delivery.delivered, sent.len()), (2, 1));
    }

    #[test]
    fn backoff_doubles_from_100_ms_up_to_3_2_s() {
        assert_eq!(backoff(1), Duration::from_millis(100));
        assert_eq!(backoff(2), Duration::from_millis(200));
        assert_eq!(backoff(6), Duration::from_millis(3200));
        assert_eq!(backoff(30), Duration::from_millis(3200));
    }
}
