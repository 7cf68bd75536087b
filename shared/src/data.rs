//! A session's data: any JSON object, kept exactly as the client sent it.
//!
//! DynamoDB's own map and number types cannot hold every JSON object (no empty
//! attribute names, numbers limited to 38 digits), so the data is stored as a
//! map from each top-level key, prefixed with `_`, to that value's JSON text.
//! Numbers, unicode and nesting therefore round-trip byte for byte (minus
//! insignificant whitespace), while PATCH can still set or remove single keys
//! in one `UpdateItem`. PATCH is an RFC 7396 merge patch: objects merge at any
//! depth, keeping their members' order, and `null` removes a member.
//!
//! A map keeps no order, so the top-level keys' order is kept beside it, as a list
//! of entries replayed on read: `_key` puts a key last unless it is there already,
//! `!key` takes it out. A full write stores one `_key` per key; a PATCH appends its
//! own entries in the same `UpdateItem`, so setting a key keeps its place, a new key
//! comes last and a removed one re-added comes last, as in a JSON object built in
//! that order. The appended entries count toward `data_bytes` (an upper bound), and a
//! PATCH appends in place only while the list holds at most [`ORDER_SLACK`] entries
//! more than the last full write left (`data_keys_max`); past that, or on an item
//! written before orders were kept, it takes the guarded full write, which compacts
//! the list. So a key merged on every request does not grow the item (and its
//! read and write units) without bound.

use std::collections::HashMap;

use indexmap::{IndexMap, IndexSet};

use aws_sdk_dynamodb::types::AttributeValue;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

/// Deepest nesting allowed in session data; the data object itself is level 1.
pub const MAX_DEPTH: usize = 64;

/// Prefix of every stored data key, so that `""` is a valid key in DynamoDB; in the
/// key order, the prefix of an entry that places a key.
const KEY_PREFIX: char = '_';

/// In the key order, the prefix of an entry that takes a key out.
const REMOVED_PREFIX: char = '!';

/// Entries a PATCH may append to the key order beyond one per key before a full write
/// compacts it: at most 64 times (2 bytes and a key) of growth between compactions.
pub const ORDER_SLACK: usize = 64;

/// What DynamoDB counts for each map entry besides its name and value
/// ("DynamoDB item sizes and formats": 1 byte per element, and 3 per map, which
/// the data limit's ceiling leaves room for).
const ELEMENT_OVERHEAD: usize = 1;

/// DynamoDB's size of one entry of the key order: its overhead and its prefixed key.
fn order_entry_size(key: &str) -> usize {
    ELEMENT_OVERHEAD + KEY_PREFIX.len_utf8() + key.len()
}

/// DynamoDB's size of one stored key: its map entry (overhead, prefixed name and the
/// value's text; a string attribute counts its UTF-8 bytes) and its key-order entry.
fn entry_size(key: &str, value: &str) -> usize {
    ELEMENT_OVERHEAD + KEY_PREFIX.len_utf8() + key.len() + value.len() + order_entry_size(key)
}

/// A session's data: a JSON object whose values are kept as compact JSON text, its
/// keys in their order.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(transparent)]
pub struct SessionData(IndexMap<String, Box<RawValue>>);

/// An RFC 7396 merge patch for a session's data: top-level keys to merge into
/// (an object value), to set (any other value) or, with `null`, to remove, in the
/// patch's order.
#[derive(Debug, Clone, Default)]
pub struct DataPatch(IndexMap<String, Option<Box<RawValue>>>);

impl PartialEq for SessionData {
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len()
            && self
                .0
                .iter()
                .zip(&other.0)
                .all(|((k1, v1), (k2, v2))| k1 == k2 && v1.get() == v2.get())
    }
}

impl Eq for SessionData {}

impl SessionData {
    /// Parses a JSON object, e.g. `{"cart": [1, 2]}`.
    pub fn from_json(json: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(json)
    }

    /// Bytes this data counts against the size limit: DynamoDB's own size of the
    /// entries of the stored `data` map (per key, the entry's overhead, the
    /// prefixed key and the compact JSON value) and of the key order (per key, the
    /// overhead and the prefixed key), so that no data within a limit up to the
    /// ceiling makes an item DynamoDB refuses. `{}` is 0 bytes.
    pub fn encoded_size(&self) -> usize {
        self.0.iter().map(|(k, v)| entry_size(k, v.get())).sum()
    }

    /// Number of top-level keys.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when the object has no keys.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// True when `key` holds an object (which a merge patch's object merges into).
    pub fn holds_object(&self, key: &str) -> bool {
        self.0.get(key).is_some_and(|v| v.get().starts_with('{'))
    }

    /// Applies an RFC 7396 merge patch: removes each key set to `null`, merges
    /// each object value into the key's object (recursively, `null` removing
    /// members at any depth), and sets every other value.
    pub fn apply(&mut self, patch: &DataPatch) {
        for (key, value) in &patch.0 {
            match value {
                Some(v) => {
                    let merged = merge_value(self.0.get(key).map(|b| &**b), v);
                    self.0.insert(key.clone(), merged)
                }
                None => self.0.shift_remove(key),
            };
        }
    }

    /// The DynamoDB attribute value this data is stored as.
    pub fn to_attribute(&self) -> AttributeValue {
        AttributeValue::M(
            self.0
                .iter()
                .map(|(k, v)| (storage_key(k), AttributeValue::S(v.get().to_owned())))
                .collect(),
        )
    }

    /// The DynamoDB attribute the key order is stored as: one entry a key, in order.
    pub fn order_attribute(&self) -> AttributeValue {
        AttributeValue::L(self.0.keys().map(|k| AttributeValue::S(storage_key(k))).collect())
    }

    /// Entries the key order may hold before a PATCH must compact it (`data_keys_max`).
    pub fn order_limit(&self) -> usize {
        self.0.len() + ORDER_SLACK
    }

    /// Reads data back from its stored form, its keys in the order `order`'s entries
    /// leave them (keys no entry names, stored before orders were kept, first and
    /// sorted; an entry of neither form is passed over: the order never makes the data
    /// unreadable); `None` if the map is not in its form.
    pub fn from_stored(stored: HashMap<String, String>, order: &[String]) -> Option<Self> {
        let mut values = stored
            .into_iter()
            .map(|(k, v)| {
                let key = k.strip_prefix(KEY_PREFIX)?.to_owned();
                let value = RawValue::from_string(v).ok()?;
                Some((key, value))
            })
            .collect::<Option<HashMap<_, _>>>()?;
        let mut placed = IndexSet::new();
        for entry in order {
            if let Some(key) = entry.strip_prefix(KEY_PREFIX) {
                placed.insert(key);
            } else if let Some(key) = entry.strip_prefix(REMOVED_PREFIX) {
                placed.shift_remove(key);
            } else {
                tracing::warn!("a key-order entry of no known form passed over");
            }
        }
        let mut unplaced: Vec<String> = values
            .keys()
            .filter(|k| !placed.contains(k.as_str()))
            .cloned()
            .collect();
        unplaced.sort();
        let mut data = IndexMap::with_capacity(values.len());
        for key in unplaced.into_iter().chain(placed.into_iter().map(str::to_owned)) {
            if let Some(value) = values.remove(&key) {
                data.insert(key, value);
            }
        }
        Some(Self(data))
    }
}

impl DataPatch {
    /// Keys the patch sets, with their compact JSON values.
    pub fn sets(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| (k.as_str(), v.get())))
    }

    /// Keys the patch removes.
    pub fn removes(&self) -> impl Iterator<Item = &str> {
        self.0.iter().filter(|(_, v)| v.is_none()).map(|(k, _)| k.as_str())
    }

    /// Number of keys the patch names.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when the patch names no key.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The keys the patch sets, each with the value it leaves where the key holds
    /// no object (an object value without its nulls), and whether the value is an
    /// object, which merges into an object the key holds instead.
    pub fn sets_onto_non_objects(&self) -> impl Iterator<Item = (&str, Box<RawValue>, bool)> {
        self.0.iter().filter_map(|(k, v)| {
            let v = v.as_ref()?;
            Some((k.as_str(), merge_value(None, v), v.get().starts_with('{')))
        })
    }

    /// The key-order entries the patch appends, in its order: each set key placed,
    /// each removed key taken out.
    pub fn order_entries(&self) -> AttributeValue {
        let entry = |(k, v): (&String, &Option<Box<RawValue>>)| {
            let prefix = if v.is_some() { KEY_PREFIX } else { REMOVED_PREFIX };
            AttributeValue::S(format!("{prefix}{k}"))
        };
        AttributeValue::L(self.0.iter().map(entry).collect())
    }

    /// Bytes the patch adds at most to the data's encoded size: each set key's
    /// entries, and each removed key's key-order entry.
    pub fn added_size(&self) -> usize {
        let sets: usize = self.sets().map(|(k, v)| entry_size(k, v)).sum();
        sets + self.removes().map(order_entry_size).sum::<usize>()
    }
}

/// RFC 7396's MergePatch(target, patch) for one value: an object patch merges
/// into the target's members (none if the target is absent or not an object),
/// removing the members it sets to `null` and merging the others recursively;
/// any other patch is the result as it stands. Members keep their order; new
/// ones come last. Values not merged keep their text byte for byte.
fn merge_value(target: Option<&RawValue>, patch: &RawValue) -> Box<RawValue> {
    let Some(changes) = members(patch) else {
        return patch.to_owned();
    };
    let mut merged = target.and_then(members).unwrap_or_default();
    for (name, value) in changes {
        let at = merged.iter().position(|(n, _)| *n == name);
        match (at, value.get() == "null") {
            (Some(i), true) => {
                merged.remove(i);
            }
            (None, true) => {}
            (Some(i), false) => merged[i].1 = merge_value(Some(&merged[i].1), &value),
            (None, false) => merged.push((name, merge_value(None, &value))),
        }
    }
    // Strings and valid JSON texts always serialize, into valid JSON.
    serde_json::value::to_raw_value(&Members(&merged)).expect("an object of valid JSON values serializes")
}

/// An object's members as written, in order (a repeated name: its last value,
/// in its first place); `None` if `value` is not an object.
fn members(value: &RawValue) -> Option<Vec<(String, Box<RawValue>)>> {
    struct Visit;
    impl<'de> serde::de::Visitor<'de> for Visit {
        type Value = Vec<(String, Box<RawValue>)>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out: Vec<(String, Box<RawValue>)> = Vec::new();
            let mut at = HashMap::new();
            while let Some((name, value)) = map.next_entry::<String, Box<RawValue>>()? {
                match at.get(&name) {
                    Some(&i) => out[i] = (name, value),
                    None => {
                        at.insert(name.clone(), out.len());
                        out.push((name, value));
                    }
                }
            }
            Ok(out)
        }
    }
    if !value.get().starts_with('{') {
        return None;
    }
    serde_json::Deserializer::from_str(value.get())
        .deserialize_map(Visit)
        .ok()
}

/// Members serialized as a JSON object, in their order.
struct Members<'a>(&'a [(String, Box<RawValue>)]);

impl Serialize for Members<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(name, value)| (name, value)))
    }
}

/// The key a data key is stored under inside the `data` map attribute.
pub fn storage_key(key: &str) -> String {
    let mut stored = String::with_capacity(key.len() + 1);
    stored.push(KEY_PREFIX);
    stored.push_str(key);
    stored
}

impl<'de> Deserialize<'de> for SessionData {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = IndexMap::<String, Box<RawValue>>::deserialize(deserializer)?;
        raw.into_iter()
            .map(|(k, v)| Ok((k, compact(&v).map_err(D::Error::custom)?)))
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

impl<'de> Deserialize<'de> for DataPatch {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = IndexMap::<String, Option<Box<RawValue>>>::deserialize(deserializer)?;
        raw.into_iter()
            .map(|(k, v)| Ok((k, v.map(|v| compact(&v)).transpose().map_err(D::Error::custom)?)))
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

/// Strips insignificant whitespace from valid JSON and enforces [`MAX_DEPTH`].
fn compact(value: &RawValue) -> Result<Box<RawValue>, String> {
    let text = value.get();
    let mut out = String::with_capacity(text.len());
    let (mut depth, mut in_string, mut escaped) = (1usize, false, false);
    for c in text.chars() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            ' ' | '\t' | '\n' | '\r' => continue,
            '"' => in_string = true,
            '{' | '[' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(format!("data is nested deeper than {MAX_DEPTH} levels"));
                }
            }
            '}' | ']' => depth -= 1,
            _ => {}
        }
        out.push(c);
    }
    RawValue::from_string(out).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stored map and key order of `data`.
    fn stored(data: &SessionData) -> (HashMap<String, String>, Vec<String>) {
        let AttributeValue::M(map) = data.to_attribute() else {
            panic!("not a map")
        };
        let map = map.into_iter().map(|(k, v)| (k, v.as_s().unwrap().clone())).collect();
        (map, strings(data.order_attribute()))
    }

    fn strings(list: AttributeValue) -> Vec<String> {
        let AttributeValue::L(list) = list else {
            panic!("not a list")
        };
        list.iter().map(|v| v.as_s().unwrap().clone()).collect()
    }

    fn roundtrip(json: &str) -> String {
        let (map, order) = stored(&SessionData::from_json(json).unwrap());
        serde_json::to_string(&SessionData::from_stored(map, &order).unwrap()).unwrap()
    }

    #[test]
    fn values_dynamodb_cannot_hold_round_trip_exactly() {
        for json in [
            r#"{"":1}"#,
            r#"{"x":1.0}"#,
            r#"{"big":1e308}"#,
            r#"{"n":12345678901234567890123}"#,
            r#"{"neg":-0.0000000000000000000000000000000000000000001}"#,
            r#"{"ключ":"значение","🔑":"✓"}"#,
            r#"{"z":1,"a":2,"m":{"y":3,"b":4},"":5}"#,
            r#"{"nested":{"":{"a":[1,{"b":null}]}}}"#,
            r#"{"s":"with \"quotes\" and \\ and \u0000"}"#,
        ] {
            assert_eq!(roundtrip(json), json);
        }
    }

    #[test]
    fn insignificant_whitespace_is_dropped_but_string_contents_kept() {
        assert_eq!(
            roundtrip("{ \"a\" : [ 1 , 2 ] , \"b\" : \" x \" }"),
            r#"{"a":[1,2],"b":" x "}"#
        );
    }

    #[test]
    fn nesting_beyond_the_limit_is_refused_and_at_the_limit_accepted() {
        let nest = |levels: usize| format!("{{\"a\":{}1{}}}", "[".repeat(levels - 1), "]".repeat(levels - 1));
        assert!(SessionData::from_json(&nest(MAX_DEPTH)).is_ok());
        let err = SessionData::from_json(&nest(MAX_DEPTH + 1)).unwrap_err();
        assert!(err.to_string().contains("nested deeper"), "{err}");
    }

    #[test]
    fn non_objects_are_refused() {
        for json in ["[]", "1", "\"x\"", "null"] {
            assert!(SessionData::from_json(json).is_err(), "{json}");
        }
    }

    #[test]
    fn a_patch_sets_and_removes_top_level_keys_and_merges_objects() {
        let mut data = SessionData::from_json(r#"{"a":1,"b":{"c":2},"d":3}"#).unwrap();
        let patch: DataPatch = serde_json::from_str(r#"{"a":null,"b":{"e":4},"f":[5]}"#).unwrap();
        assert_eq!(patch.removes().collect::<Vec<_>>(), ["a"]);
        // Per set key its map entry and key-order entry; per removed key its key-order entry.
        assert_eq!(
            patch.added_size(),
            (2 + "b".len() + r#"{"e":4}"#.len() + 2 + "b".len())
                + (2 + "f".len() + "[5]".len() + 2 + "f".len())
                + (2 + "a".len())
        );
        assert_eq!(strings(patch.order_entries()), ["!a", "_b", "_f"]);
        let onto_nothing: Vec<_> = patch
            .sets_onto_non_objects()
            .map(|(k, v, object)| (k, v.get().to_owned(), object))
            .collect();
        assert_eq!(
            onto_nothing,
            [("b", r#"{"e":4}"#.to_owned(), true), ("f", "[5]".to_owned(), false)]
        );
        data.apply(&patch);
        assert_eq!(
            serde_json::to_string(&data).unwrap(),
            r#"{"b":{"c":2,"e":4},"d":3,"f":[5]}"#
        );
    }

    #[test]
    fn nested_merges_follow_rfc_7396_and_keep_member_order_and_number_text() {
        let mut data =
            SessionData::from_json(r#"{"prefs":{"z":1.0,"lang":"en","a":{"deep":12345678901234567890123}},"x":[1]}"#)
                .unwrap();
        let patch: DataPatch =
            serde_json::from_str(r#"{"prefs":{"lang":null,"a":{"more":true},"new":{"n":null}},"x":{"k":null}}"#)
                .unwrap();
        data.apply(&patch);
        assert_eq!(
            serde_json::to_string(&data).unwrap(),
            r#"{"prefs":{"z":1.0,"a":{"deep":12345678901234567890123,"more":true},"new":{}},"x":{}}"#
        );
    }

    #[test]
    fn encoded_size_is_dynamodbs_size_of_the_stored_map_and_key_order() {
        let data = SessionData::from_json(r#"{"ab": [1, 2]}"#).unwrap();
        // The map entry's 1 byte, "_ab" and "[1,2]"; the order entry's 1 byte and "_ab".
        assert_eq!(data.encoded_size(), 1 + 3 + 5 + 1 + 3);
        assert_eq!(SessionData::default().encoded_size(), 0);
    }

    #[test]
    fn stored_keys_without_the_prefix_are_corrupt() {
        let stored = HashMap::from([("a".to_string(), "1".to_string())]);
        assert_eq!(SessionData::from_stored(stored, &[]), None);
    }

    #[test]
    fn an_unknown_key_order_entry_is_passed_over() {
        let stored = HashMap::from([("_a".to_string(), "1".to_string()), ("_b".to_string(), "2".to_string())]);
        let order = ["_b".to_owned(), "?".to_owned(), "_a".to_owned()];
        let read = SessionData::from_stored(stored, &order).unwrap();
        assert_eq!(serde_json::to_string(&read).unwrap(), r#"{"b":2,"a":1}"#);
    }

    #[test]
    fn patches_replayed_on_the_key_order_keep_places_and_put_new_and_re_added_keys_last() {
        let mut data = SessionData::from_json(r#"{"z":1,"a":2,"m":3}"#).unwrap();
        let (mut map, mut order) = stored(&data);
        for patch in [
            r#"{"a":20,"q":4}"#,
            r#"{"z":null}"#,
            r#"{"z":5,"m":null}"#,
            r#"{"a":null,"a2":6}"#,
        ] {
            let patch: DataPatch = serde_json::from_str(patch).unwrap();
            // As the single UpdateItem writes it: set and remove map entries, append entries.
            for (k, v) in patch.sets() {
                map.insert(storage_key(k), v.to_owned());
            }
            for k in patch.removes() {
                map.remove(&storage_key(k));
            }
            order.extend(strings(patch.order_entries()));
            data.apply(&patch);
            let read = SessionData::from_stored(map.clone(), &order).unwrap();
            assert_eq!(
                serde_json::to_string(&read).unwrap(),
                serde_json::to_string(&data).unwrap()
            );
        }
        assert_eq!(serde_json::to_string(&data).unwrap(), r#"{"q":4,"z":5,"a2":6}"#);
    }

    #[test]
    fn keys_stored_before_orders_were_kept_come_first_and_sorted() {
        let map = HashMap::from([
            ("_b".to_owned(), "1".to_owned()),
            ("_a".to_owned(), "2".to_owned()),
            ("_new".to_owned(), "3".to_owned()),
        ]);
        let read = SessionData::from_stored(map, &["_new".to_owned()]).unwrap();
        assert_eq!(serde_json::to_string(&read).unwrap(), r#"{"a":2,"b":1,"new":3}"#);
    }
}
