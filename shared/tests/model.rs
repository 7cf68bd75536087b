//! Property test: random sequences of create, get, replace, merge, touch, rotate and
//! delete, with the clock moving between them, give on DynamoDB Local exactly what a
//! plain in-memory model of the session contract says.

use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;
use serde_json::{Value, json};
use session_store::error::StoreError;
use session_store::{DataPatch, DynamoStore, NewSession, Session, SessionData, SessionId, Timestamp};
use session_testkit as testkit;

/// The contract, kept in memory: what a live session looks like to clients.
#[derive(Debug, Clone, PartialEq)]
struct Expected {
    data: BTreeMap<String, Value>,
    version: u64,
    created_at: i64,
    updated_at: i64,
    expires_at: i64,
    absolute_expires_at: i64,
    idle: u32,
}

impl Expected {
    fn new(idle: u32, absolute: u32, data: BTreeMap<String, Value>, now: i64) -> Self {
        Self {
            data,
            version: 1,
            created_at: now,
            updated_at: now,
            expires_at: (now + i64::from(idle)).min(now + i64::from(absolute)),
            absolute_expires_at: now + i64::from(absolute),
            idle,
        }
    }

    /// Live through its `expires_at` second.
    fn live(&self, now: i64) -> bool {
        now <= self.expires_at
    }

    /// Activity at `now`: the idle expiry slides, never past the absolute one.
    fn active(&mut self, now: i64) {
        self.updated_at = now;
        self.expires_at = (now + i64::from(self.idle)).min(self.absolute_expires_at);
    }

    fn of(session: &Session) -> Self {
        let data = serde_json::from_str(&serde_json::to_string(&session.data).unwrap()).unwrap();
        Self {
            data,
            version: session.version,
            created_at: session.created_at.0,
            updated_at: session.updated_at.0,
            expires_at: session.expires_at.0,
            absolute_expires_at: session.absolute_expires_at.0,
            idle: session.idle_timeout_seconds,
        }
    }
}

/// One step. Sessions are named by an index into every id the run has made
/// (rotated and deleted ones included), taken modulo their number.
#[derive(Debug, Clone)]
enum Op {
    Create {
        idle: u32,
        absolute: u32,
        data: BTreeMap<String, Value>,
    },
    Get(usize),
    Replace {
        target: usize,
        data: BTreeMap<String, Value>,
        idle: Option<u32>,
        stale: bool,
    },
    Merge {
        target: usize,
        patch: BTreeMap<String, Option<Value>>,
        check_version: bool,
    },
    Touch(usize),
    Rotate {
        target: usize,
        keep_data: bool,
    },
    Delete(usize),
    Wait(u32),
}

fn data() -> impl Strategy<Value = BTreeMap<String, Value>> {
    let value = prop_oneof![
        any::<i32>().prop_map(|n| json!(n)),
        "[a-z]{0,8}".prop_map(|s| json!(s)),
        Just(json!({"nested": [1, null, true]})),
    ];
    proptest::collection::btree_map("[a-c]{1,2}", value, 0..4)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (1u32..120, 1u32..300, data()).prop_map(|(idle, absolute, data)| Op::Create { idle, absolute, data }),
        2 => any::<usize>().prop_map(Op::Get),
        2 => (any::<usize>(), data(), proptest::option::of(1u32..120), proptest::bool::weighted(0.2))
            .prop_map(|(target, data, idle, stale)| Op::Replace { target, data, idle, stale }),
        2 => (any::<usize>(), proptest::collection::btree_map("[a-c]{1,2}", proptest::option::of(any::<i32>().prop_map(|n| json!(n))), 0..3), any::<bool>())
            .prop_map(|(target, patch, check_version)| Op::Merge { target, patch, check_version }),
        2 => any::<usize>().prop_map(Op::Touch),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(target, keep_data)| Op::Rotate { target, keep_data }),
        1 => any::<usize>().prop_map(Op::Delete),
        2 => prop_oneof![0u32..3, 0u32..150].prop_map(Op::Wait),
    ]
}

/// What an operation gave, in the model's terms.
#[derive(Debug, PartialEq)]
enum Outcome {
    Session(Expected),
    NotFound,
    VersionMismatch,
    Deleted,
}

fn outcome(result: Result<Session, StoreError>) -> Outcome {
    match result {
        Ok(session) => Outcome::Session(Expected::of(&session)),
        Err(StoreError::NotFound) => Outcome::NotFound,
        Err(StoreError::VersionMismatch { .. }) => Outcome::VersionMismatch,
        Err(other) => panic!("unexpected store error: {other:?}"),
    }
}

fn session_data(data: &BTreeMap<String, Value>) -> SessionData {
    SessionData::from_json(&serde_json::to_string(data).unwrap()).unwrap()
}

/// Runs `ops` against the store and the model side by side; the first disagreement fails.
async fn run(store: &DynamoStore, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut now = Timestamp::now().0;
    let mut ids: Vec<SessionId> = Vec::new();
    let mut model: HashMap<String, Expected> = HashMap::new();
    for (step, op) in ops.into_iter().enumerate() {
        let at = Timestamp(now);
        let pick = |i: usize| ids.get(i % ids.len().max(1)).cloned();
        // The model's live session behind an id, if any.
        let live =
            |model: &HashMap<String, Expected>, id: &SessionId| model.get(id.as_str()).filter(|s| s.live(now)).cloned();
        let (got, want) = match op {
            Op::Create {
                idle,
                absolute,
                ref data,
            } => {
                let request = NewSession {
                    data: session_data(data),
                    idle_timeout_seconds: Some(idle),
                    absolute_timeout_seconds: Some(absolute),
                    ..Default::default()
                };
                let created = store.create(request, None, at).await.unwrap();
                let expected = Expected::new(idle, absolute, data.clone(), now);
                model.insert(created.id.as_str().to_owned(), expected.clone());
                ids.push(created.id.clone());
                (
                    Outcome::Session(Expected::of(&created.session)),
                    Outcome::Session(expected),
                )
            }
            Op::Wait(seconds) => {
                now += i64::from(seconds);
                continue;
            }
            _ if ids.is_empty() => continue,
            Op::Get(i) => {
                let id = pick(i).unwrap();
                let want = live(&model, &id).map_or(Outcome::NotFound, Outcome::Session);
                (outcome(store.get(&id, at).await), want)
            }
            Op::Replace {
                target,
                ref data,
                idle,
                stale,
            } => {
                let id = pick(target).unwrap();
                let current = live(&model, &id);
                let if_match = current
                    .as_ref()
                    .map(|s| vec![if stale { s.version + 7 } else { s.version }]);
                let got = outcome(
                    store
                        .replace(&id, session_data(data), idle, if_match.as_deref(), at)
                        .await,
                );
                let want = match current {
                    None => Outcome::NotFound,
                    Some(_) if stale => Outcome::VersionMismatch,
                    Some(mut s) => {
                        s.data = data.clone();
                        s.idle = idle.unwrap_or(s.idle);
                        s.version += 1;
                        s.active(now);
                        model.insert(id.as_str().to_owned(), s.clone());
                        Outcome::Session(s)
                    }
                };
                (got, want)
            }
            Op::Merge {
                target,
                ref patch,
                check_version,
            } => {
                let id = pick(target).unwrap();
                let current = live(&model, &id);
                let if_match = current.as_ref().filter(|_| check_version).map(|s| vec![s.version]);
                let patch_json: DataPatch = serde_json::from_value(json!(patch)).unwrap();
                let got = outcome(store.merge(&id, patch_json, if_match.as_deref(), at).await);
                let want = match current {
                    None => Outcome::NotFound,
                    // The empty merge patch changes no data: a touch.
                    Some(mut s) if patch.is_empty() => {
                        let slid = (now + i64::from(s.idle)).min(s.absolute_expires_at);
                        if slid != s.expires_at {
                            s.active(now);
                        }
                        model.insert(id.as_str().to_owned(), s.clone());
                        Outcome::Session(s)
                    }
                    Some(mut s) => {
                        for (key, value) in patch {
                            match value {
                                Some(v) => s.data.insert(key.clone(), v.clone()),
                                None => s.data.remove(key),
                            };
                        }
                        s.version += 1;
                        s.active(now);
                        model.insert(id.as_str().to_owned(), s.clone());
                        Outcome::Session(s)
                    }
                };
                (got, want)
            }
            Op::Touch(i) => {
                let id = pick(i).unwrap();
                let got = outcome(store.touch(&id, at).await);
                let want = match live(&model, &id) {
                    None => Outcome::NotFound,
                    Some(mut s) => {
                        // Touch step 0: written whenever it moves the expiry.
                        let slid = (now + i64::from(s.idle)).min(s.absolute_expires_at);
                        if slid != s.expires_at {
                            s.active(now);
                        }
                        model.insert(id.as_str().to_owned(), s.clone());
                        Outcome::Session(s)
                    }
                };
                (got, want)
            }
            Op::Rotate { target, keep_data } => {
                let id = pick(target).unwrap();
                let result = store.rotate(&id, keep_data, None, None, at).await;
                let want = match live(&model, &id) {
                    None => Outcome::NotFound,
                    Some(mut s) => {
                        model.remove(id.as_str());
                        if !keep_data {
                            s.data.clear();
                        }
                        s.version = 1;
                        s.active(now);
                        Outcome::Session(s)
                    }
                };
                if let Ok(next) = &result {
                    prop_assert_ne!(&next.id, &id);
                    model.insert(next.id.as_str().to_owned(), Expected::of(&next.session));
                    ids.push(next.id.clone());
                }
                (outcome(result.map(|issued| issued.session)), want)
            }
            Op::Delete(i) => {
                let id = pick(i).unwrap();
                store.delete(&id).await.unwrap();
                model.remove(id.as_str());
                (Outcome::Deleted, Outcome::Deleted)
            }
        };
        prop_assert_eq!(got, want, "step {}: {:?}", step, op);
    }
    // Afterwards every id reads as the model says.
    for id in &ids {
        let want = model
            .get(id.as_str())
            .filter(|s| s.live(now))
            .cloned()
            .map_or(Outcome::NotFound, Outcome::Session);
        prop_assert_eq!(outcome(store.get(id, Timestamp(now)).await), want);
    }
    Ok(())
}

#[test]
fn random_operation_sequences_agree_with_the_model() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let store = runtime.block_on(testkit::store(|c| c.limits.touch_step = 0)).0;
    let config = ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(ops in proptest::collection::vec(op(), 1..40))| {
        runtime.block_on(run(&store, ops))?;
    });
}
