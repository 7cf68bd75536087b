//! The data limit counts the data's compact JSON text, and the sealed document
//! (compressed only when that is smaller) is at most 30 bytes more: data that fills
//! the limit at its ceiling, in any shape (tens of thousands of tiny keys, a few large
//! values, multi-byte text, text DEFLATE can hardly shrink), is stored by DynamoDB
//! Local through every write path without a ValidationException; one byte more is
//! refused by the store before any write. And the largest item the store can write
//! (a document of the ceiling's size that DEFLATE cannot shrink, the longest owner
//! and device) is one DynamoDB takes.

use proptest::prelude::*;
use session_store::config::DATA_BYTES_CEILING;
use session_store::item::attr;
use session_store::seal::OVERHEAD;
use session_store::{DataPatch, DynamoStore, NewSession, SessionData, StoreError, Timestamp, ValidationError};
use session_testkit as testkit;

/// `keys` keys of at least `key_len` characters whose JSON text is exactly `size`
/// bytes; values are pseudo-random letters and digits, or two-byte letters (`À` to
/// `ʯ`) with one ASCII letter for an odd remainder, so compression saves little.
fn filled(keys: usize, key_len: usize, multibyte: bool, size: usize) -> SessionData {
    let names: Vec<String> = (0..keys).map(|i| format!("{i:0key_len$x}")).collect();
    // The braces, the commas, and per key `"key":""`.
    let base = 2 + (keys - 1) + names.iter().map(|k| k.len() + 5).sum::<usize>();
    assert!(base <= size, "{keys} keys of {key_len} do not fit in {size}");
    let (each, mut rest) = ((size - base) / keys, (size - base) % keys);
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ keys as u64;
    let mut next = move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut object = serde_json::Map::new();
    for name in names {
        let mut bytes = each + std::mem::take(&mut rest);
        let mut text = String::with_capacity(bytes);
        if multibyte {
            for _ in 0..bytes / 2 {
                text.push(char::from_u32(0xC0 + next(0x2B0 - 0xC0) as u32).unwrap());
            }
            bytes %= 2;
        }
        for _ in 0..bytes {
            text.push(char::from(ALNUM[next(ALNUM.len() as u64) as usize]));
        }
        object.insert(name, serde_json::Value::String(text));
    }
    let data = SessionData::from_json(&serde_json::Value::Object(object).to_string()).unwrap();
    assert_eq!(data.size(), size);
    data
}

/// A patch that rewrites `data`'s first key with a value `extra` bytes longer.
fn rewrite_first(data: &SessionData, extra: usize) -> DataPatch {
    let (key, _) =
        serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&serde_json::to_string(data).unwrap())
            .unwrap()
            .into_iter()
            .next()
            .unwrap();
    let value = serde_json::to_string(data).unwrap();
    let current: serde_json::Value = serde_json::from_str(&value).unwrap();
    let longer = format!("{}{}", current[&key].as_str().unwrap(), "x".repeat(extra));
    serde_json::from_value(serde_json::json!({ key: longer })).unwrap()
}

/// Every write path at exactly the limit succeeds, and one byte over is refused.
async fn at_the_ceiling(store: &DynamoStore, data: SessionData) {
    let now = Timestamp::now();
    let request = NewSession {
        data: data.clone(),
        ..Default::default()
    };
    let created = store.create(request, None, now).await.unwrap();
    let read = store.get(&created.id, now).await.unwrap();
    assert_eq!(read.data, data, "PutItem at the limit");
    let item = testkit::raw_item(store, &created.id).await.unwrap();
    let stored = item[attr::DOCUMENT].as_b().unwrap().as_ref().len();
    assert!(stored <= data.size() + OVERHEAD, "{stored} bytes sealed");
    let replaced = store.replace(&created.id, data.clone(), None, None, now).await.unwrap();
    assert_eq!(replaced.data, data, "PUT at the limit");
    let merged = store
        .merge(&created.id, rewrite_first(&data, 0), None, now)
        .await
        .unwrap();
    assert_eq!(merged.data, data, "a merge that stays at the limit");
    let rotated = store.rotate(&created.id, true, None, None, now).await.unwrap();
    assert_eq!(
        store.get(&rotated.id, now).await.unwrap().data,
        data,
        "a rotation keeping it"
    );
    // A merge that rewrites a key with a value one byte longer: one byte over.
    let err = store
        .merge(&rotated.id, rewrite_first(&data, 1), None, now)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Invalid(ValidationError::DataTooLarge { .. })),
        "{err:?}"
    );
    assert_eq!(store.get(&rotated.id, now).await.unwrap().data, data);
}

#[tokio::test]
async fn the_largest_item_the_store_can_write_fits_in_dynamodb() {
    let (store, _) = testkit::store(|c| c.limits.max_data_bytes = DATA_BYTES_CEILING).await;
    // Four-byte characters: the most bytes an owner's 256 and a user agent's 512 can take.
    let wide = |n: usize| "𝄞".repeat(n);
    let request = NewSession {
        subject: Some(session_store::Subject::parse(&wide(256)).unwrap()),
        device: Some(session_store::Device::new(Some(wide(512)), Some("2001:db8::1".into()), Some(wide(100))).unwrap()),
        ..Default::default()
    };
    let created = store.create(request, None, Timestamp::now()).await.unwrap();
    let mut item = testkit::raw_item(&store, &created.id).await.unwrap();
    // A sealed document as large as any: the ceiling's text stored uncompressed, plus the overhead.
    let mut document = vec![0u8; DATA_BYTES_CEILING + OVERHEAD];
    getrandom::fill(&mut document).unwrap();
    item.insert(
        attr::DOCUMENT.into(),
        aws_sdk_dynamodb::types::AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(document)),
    );
    testkit::put_raw_item(&store, item).await;
}

#[test]
fn data_filling_the_ceiling_in_any_shape_is_stored() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let store = runtime
        .block_on(testkit::store(|c| c.limits.max_data_bytes = DATA_BYTES_CEILING))
        .0;
    // Nearly the most keys that fit (4 hex digits, one-letter values, 11 bytes a key).
    runtime.block_on(at_the_ceiling(&store, filled(34_000, 4, false, DATA_BYTES_CEILING)));
    let config = ProptestConfig {
        cases: 6,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(keys in 1usize..20_000, key_len in 1usize..12, multibyte: bool)| {
        let key_len = key_len.max(format!("{keys:x}").len());
        let keys = keys.min(DATA_BYTES_CEILING / (6 + 2 * key_len) - 1).max(1);
        runtime.block_on(at_the_ceiling(&store, filled(keys, key_len, multibyte, DATA_BYTES_CEILING)));
    });
}
