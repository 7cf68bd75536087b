//! Property test: PATCH data is RFC 7396, as a reference implementation (the
//! `json-patch` crate's `merge`) computes it, on random documents and patches
//! with nested objects, nulls at every depth and overlapping member names;
//! applied in memory and through DynamoDB Local.

use proptest::prelude::*;
use serde_json::{Value, json};
use session_store::{DataPatch, NewSession, SessionData, Timestamp};
use session_testkit as testkit;

/// Any JSON value up to three levels deep, over a few member names so that
/// patches and documents overlap.
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (-1000i64..1000).prop_map(Value::from),
        "[a-z]{0,4}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
            proptest::collection::btree_map("[a-c]?", inner, 0..4).prop_map(|m| json!(m)),
        ]
    })
}

/// A top-level object: session data or a patch of it.
fn object() -> impl Strategy<Value = Value> {
    proptest::collection::btree_map("[a-d]", value(), 0..5).prop_map(|m| json!(m))
}

/// What RFC 7396 says `patch` makes of `document`.
fn reference(document: &Value, patch: &Value) -> Value {
    let mut merged = document.clone();
    json_patch::merge(&mut merged, patch);
    merged
}

fn data_of(value: &Value) -> SessionData {
    SessionData::from_json(&value.to_string()).unwrap()
}

fn as_value(data: &SessionData) -> Value {
    serde_json::to_value(data).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn merging_in_memory_is_rfc_7396(document in object(), patch in object()) {
        let mut data = data_of(&document);
        let parsed: DataPatch = serde_json::from_value(patch.clone()).unwrap();
        data.apply(&parsed).unwrap();
        prop_assert_eq!(as_value(&data), reference(&document, &patch));
    }
}

#[test]
fn merging_through_the_store_is_rfc_7396() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let store = runtime.block_on(testkit::store(|_| {})).0;
    let config = ProptestConfig {
        cases: 48,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(document in object(), patch in object())| {
        let now = Timestamp::now();
        let (merged, read) = runtime.block_on(async {
            let created = store
                .create(NewSession { data: data_of(&document), ..Default::default() }, None, now)
                .await
                .unwrap();
            let parsed: DataPatch = serde_json::from_value(patch.clone()).unwrap();
            let merged = store.merge(&created.id, parsed, None, now).await.unwrap();
            let read = store.get(&created.id, now).await.unwrap();
            (merged, read)
        });
        let expected = reference(&document, &patch);
        prop_assert_eq!(as_value(&merged.data), expected.clone(), "the answer");
        prop_assert_eq!(as_value(&read.data), expected, "what was stored");
    });
}
