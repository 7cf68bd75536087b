//! DynamoDB Local's stream, read through the DynamoDB Streams JSON API and turned
//! into the records Lambda hands a function.
//!
//! Plain JSON rather than the SDK because DynamoDB Local (2026-05-28 build) writes
//! every map attribute of a stream image as a bare `{}`, which the SDK refuses to
//! parse; [`lambda_record`] gives those values their type back, and gives its
//! TTL deletions the shape DynamoDB gives them.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::Error;

/// DynamoDB Local rounds `ApproximateCreationDateTime` down to the minute (AWS: to the second).
pub const LOCAL_TIME_PRECISION_SECONDS: f64 = 60.0;
/// The event name DynamoDB Local (2026-05-28 build) gives its TTL deletions.
pub const LOCAL_TTL_EVENT_NAME: &str = "UNKNOWN_TO_SDK_VERSION";

/// A table's stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Stream {
    /// The stream's ARN.
    pub arn: String,
    /// The names of the table's key attributes (what a record's `Keys` holds).
    pub key: Vec<String>,
}

/// A DynamoDB Local endpoint, spoken to in its JSON protocol.
#[derive(Debug, Clone)]
pub struct DynamoDbLocal {
    endpoint: String,
    agent: ureq::Agent,
}

/// One shard of a stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Shard {
    /// The shard's id.
    pub id: String,
    /// The shard it continues, if any.
    pub parent: Option<String>,
}

/// Where in a shard to start reading.
#[derive(Debug, Clone, PartialEq)]
pub enum Position {
    /// The oldest record still kept (`TRIM_HORIZON`).
    Oldest,
    /// Only records written from now on (`LATEST`).
    Newest,
    /// Just after this sequence number (`AFTER_SEQUENCE_NUMBER`).
    After(String),
}

/// Records from one GetRecords call.
#[derive(Debug, Clone)]
pub struct Page {
    /// The records, oldest first, as the Streams API returns them.
    pub records: Vec<Value>,
    /// When they were read (seconds since the epoch).
    pub read_at: f64,
    /// Where to read next; `None` once the shard is closed and read to its end.
    pub next: Option<String>,
}

impl DynamoDbLocal {
    /// A client for the DynamoDB Local at `endpoint` (`http://host:port`).
    pub fn new(endpoint: &str) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(std::time::Duration::from_secs(30)))
            .build()
            .into();
        Self {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            agent,
        }
    }

    /// One call of the DynamoDB (`DynamoDB_20120810`) or Streams (`DynamoDBStreams_20120810`) API.
    pub fn call(&self, target: &str, body: &Value) -> Result<Value, Error> {
        let mut response = self
            .agent
            .post(&self.endpoint)
            .header("Content-Type", "application/x-amz-json-1.0")
            .header("X-Amz-Target", target)
            // DynamoDB Local wants a SigV4-shaped header but checks no signature.
            .header(
                "Authorization",
                "AWS4-HMAC-SHA256 Credential=local/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0",
            )
            .send(body.to_string())?;
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string()?;
        if status != 200 {
            return Err(Error::Api {
                target: target.to_owned(),
                status,
                body: text,
            });
        }
        serde_json::from_str(&text).map_err(|e| Error::Api {
            target: target.to_owned(),
            status,
            body: format!("{e}: {text}"),
        })
    }

    /// `table`'s stream.
    pub fn stream(&self, table: &str) -> Result<Stream, Error> {
        let description = self.call("DynamoDB_20120810.DescribeTable", &json!({ "TableName": table }))?;
        let table_description = &description["Table"];
        let arn = table_description["LatestStreamArn"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| Error::NoStream(table.to_owned()))?;
        let key = table_description["KeySchema"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|k| k["AttributeName"].as_str().map(str::to_owned))
            .collect();
        Ok(Stream { arn, key })
    }

    /// The stream's shards, parents before children.
    pub fn shards(&self, stream_arn: &str) -> Result<Vec<Shard>, Error> {
        let mut shards = Vec::new();
        let mut start: Option<String> = None;
        loop {
            let mut request = json!({ "StreamArn": stream_arn });
            if let Some(id) = &start {
                request["ExclusiveStartShardId"] = json!(id);
            }
            let page = self.call("DynamoDBStreams_20120810.DescribeStream", &request)?;
            let description = &page["StreamDescription"];
            for shard in description["Shards"].as_array().into_iter().flatten() {
                shards.push(Shard {
                    id: shard["ShardId"].as_str().unwrap_or_default().to_owned(),
                    parent: shard["ParentShardId"].as_str().map(str::to_owned),
                });
            }
            start = description["LastEvaluatedShardId"].as_str().map(str::to_owned);
            if start.is_none() {
                return Ok(shards);
            }
        }
    }

    /// An iterator over `shard` from `position`.
    pub fn shard_iterator(&self, stream_arn: &str, shard: &str, position: &Position) -> Result<String, Error> {
        let mut request = json!({ "StreamArn": stream_arn, "ShardId": shard });
        match position {
            Position::Oldest => request["ShardIteratorType"] = json!("TRIM_HORIZON"),
            Position::Newest => request["ShardIteratorType"] = json!("LATEST"),
            Position::After(sequence_number) => {
                request["ShardIteratorType"] = json!("AFTER_SEQUENCE_NUMBER");
                request["SequenceNumber"] = json!(sequence_number);
            }
        }
        let reply = self.call("DynamoDBStreams_20120810.GetShardIterator", &request)?;
        reply["ShardIterator"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| Error::NoStream(stream_arn.to_owned()))
    }

    /// The next records after `iterator`.
    pub fn get_records(&self, iterator: &str) -> Result<Page, Error> {
        let reply = self.call(
            "DynamoDBStreams_20120810.GetRecords",
            &json!({ "ShardIterator": iterator }),
        )?;
        Ok(Page {
            records: reply["Records"].as_array().cloned().unwrap_or_default(),
            read_at: now(),
            next: reply["NextShardIterator"].as_str().map(str::to_owned),
        })
    }

    /// Every record on `table`'s stream so far, from every shard, as Lambda would deliver them.
    pub fn read_all(&self, table: &str) -> Result<Vec<Value>, Error> {
        let stream = self.stream(table)?;
        let mut records = Vec::new();
        for shard in self.shards(&stream.arn)? {
            let mut iterator = Some(self.shard_iterator(&stream.arn, &shard.id, &Position::Oldest)?);
            while let Some(at) = iterator {
                let page = self.get_records(&at)?;
                if page.records.is_empty() {
                    break;
                }
                let read_at = page.read_at;
                records.extend(page.records.into_iter().map(|r| lambda_record(r, &stream, read_at)));
                iterator = page.next;
            }
        }
        Ok(records)
    }
}

/// Seconds since the epoch.
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A Streams API record as Lambda delivers it: with `eventSourceARN`, typed
/// empty maps in its images, its creation time to the second, and a TTL
/// deletion named `REMOVE` with the DynamoDB service as its `userIdentity`.
///
/// DynamoDB Local names TTL deletions [`LOCAL_TTL_EVENT_NAME`], gives them no
/// `userIdentity`, and puts every index key attribute in their `Keys`; a
/// function filtering on `REMOVE` would never see them.
///
/// DynamoDB Local reports creation times rounded down to the minute. A record's
/// true time lies between that and the moment it was first read (`read_at`), so
/// the tighter of the two bounds is used: to the second when the stream is read
/// as it is written (every 250 ms here), DynamoDB Local's minute when catching up.
pub fn lambda_record(mut record: Value, stream: &Stream, read_at: f64) -> Value {
    let ttl_deletion = record["eventName"] == LOCAL_TTL_EVENT_NAME;
    if ttl_deletion {
        record["eventName"] = json!("REMOVE");
        record["userIdentity"] = json!({ "type": "Service", "principalId": "dynamodb.amazonaws.com" });
    }
    if let Some(dynamodb) = record.get_mut("dynamodb") {
        if let Some(keys) = dynamodb
            .get_mut("Keys")
            .and_then(Value::as_object_mut)
            .filter(|_| ttl_deletion)
        {
            keys.retain(|name, _| stream.key.contains(name));
        }
        for image in ["OldImage", "NewImage"] {
            if let Some(image) = dynamodb.get_mut(image) {
                repair(image);
            }
        }
        if let Some(reported) = dynamodb["ApproximateCreationDateTime"].as_f64() {
            let latest = reported + LOCAL_TIME_PRECISION_SECONDS - 1.0;
            dynamodb["ApproximateCreationDateTime"] = json!(read_at.floor().clamp(reported, latest));
        }
    }
    record["eventSourceARN"] = json!(stream.arn);
    record
}

/// Gives every untyped `{}` attribute value of an image its type back (an empty map).
fn repair(image: &mut Value) {
    let Some(attributes) = image.as_object_mut() else {
        return;
    };
    for value in attributes.values_mut() {
        match value.as_object_mut() {
            Some(v) if v.is_empty() => *value = json!({ "M": {} }),
            Some(v) => {
                if let Some(inner) = v.get_mut("M") {
                    repair(inner);
                }
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(reported: f64) -> Value {
        json!({
            "eventName": "REMOVE",
            "dynamodb": {
                "ApproximateCreationDateTime": reported,
                "OldImage": {"id": {"S": "x"}, "data": {}, "nested": {"M": {"inner": {}}}},
            },
        })
    }

    fn stream() -> Stream {
        Stream {
            arn: "arn:stream".into(),
            key: vec!["id".into()],
        }
    }

    #[test]
    fn untyped_empty_maps_become_typed_ones_at_every_depth() {
        let out = lambda_record(record(1_800_000_000.0), &stream(), 1_800_000_010.5);
        let image = &out["dynamodb"]["OldImage"];
        assert_eq!(image["data"], json!({"M": {}}));
        assert_eq!(image["nested"], json!({"M": {"inner": {"M": {}}}}));
        assert_eq!(image["id"], json!({"S": "x"}));
        assert_eq!(out["eventSourceARN"], "arn:stream");
    }

    #[test]
    fn creation_time_is_the_tighter_of_the_local_minute_and_the_read_time() {
        let minute = 1_800_000_000.0;
        let time = |read_at| {
            lambda_record(record(minute), &stream(), read_at)["dynamodb"]["ApproximateCreationDateTime"].clone()
        };
        // Read as written: the read time, to the second.
        assert_eq!(time(minute + 42.7), json!(minute + 42.0));
        // Read an hour late: DynamoDB Local's minute, as far as it can tell, bounded above.
        assert_eq!(time(minute + 3600.0), json!(minute + 59.0));
        // A read clock behind the record's: never before the reported minute.
        assert_eq!(time(minute - 5.0), json!(minute));
    }

    #[test]
    fn local_ttl_deletions_become_removes_by_the_dynamodb_service_keyed_by_the_table_key() {
        let local = json!({
            "eventName": LOCAL_TTL_EVENT_NAME,
            "dynamodb": {
                "ApproximateCreationDateTime": 1_800_000_000.0,
                "Keys": {"id": {"S": "x"}, "subject": {"S": "alice"}, "expiry_shard": {"N": "3"}},
                "OldImage": {"id": {"S": "x"}, "subject": {"S": "alice"}, "expiry_shard": {"N": "3"}},
            },
        });
        let out = lambda_record(local, &stream(), 1_800_000_001.0);
        assert_eq!(out["eventName"], "REMOVE");
        assert_eq!(
            out["userIdentity"],
            json!({"type": "Service", "principalId": "dynamodb.amazonaws.com"})
        );
        assert_eq!(out["dynamodb"]["Keys"], json!({"id": {"S": "x"}}));
        assert_eq!(out["dynamodb"]["OldImage"]["subject"], json!({"S": "alice"}));

        // Deletions by a caller keep their shape: no user identity.
        let removed = lambda_record(record(1_800_000_000.0), &stream(), 1_800_000_001.0);
        assert_eq!(removed["eventName"], "REMOVE");
        assert!(removed.get("userIdentity").is_none());
    }
}
