//! A session's data: any JSON object, kept as the client sent it.
//!
//! The data is one JSON text (member order, number text and unicode as sent, less
//! insignificant whitespace), stored as one sealed document (`crate::seal`), so
//! DynamoDB's own map and number limits never apply and nothing of it is readable at
//! rest. PATCH is an RFC 7396 merge patch, applied in memory: objects merge at any
//! depth, `null` removes a member, set members keep their place and new ones come last.

use std::collections::HashMap;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

/// Deepest nesting allowed in session data; the data object itself is level 1.
pub const MAX_DEPTH: usize = 64;

/// A session's data: a JSON object's compact text. `Debug` shows only its size, so
/// data never reaches a log by accident.
#[derive(Clone, Serialize)]
#[serde(transparent)]
pub struct SessionData(Box<RawValue>);

/// An RFC 7396 merge patch for a session's data: a JSON object whose members merge
/// into the data's (an object value), set them (any other value) or, with `null`,
/// remove them. `Debug` shows only its size.
#[derive(Clone, Serialize)]
#[serde(transparent)]
pub struct DataPatch(Box<RawValue>);

impl std::fmt::Debug for SessionData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SessionData({} bytes)", self.size())
    }
}

impl std::fmt::Debug for DataPatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DataPatch({} bytes)", self.0.get().len())
    }
}

/// An object in session data or a patch that does not parse as one. Both were
/// validated when they came in, so this is a bug, answered with a 500.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("session data holds an object that does not parse")]
pub struct Unmergeable;

/// The empty object.
fn empty_object() -> Box<RawValue> {
    RawValue::from_string("{}".to_owned()).expect("{} is JSON")
}

impl Default for SessionData {
    fn default() -> Self {
        Self(empty_object())
    }
}

impl Default for DataPatch {
    fn default() -> Self {
        Self(empty_object())
    }
}

impl PartialEq for SessionData {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
    }
}

impl Eq for SessionData {}

impl SessionData {
    /// Parses a JSON object, e.g. `{"cart": [1, 2]}`.
    pub fn from_json(json: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(json)
    }

    /// Reads the text of an opened document; `None` unless it is a JSON object.
    pub fn from_document(text: Vec<u8>) -> Option<Self> {
        let raw = RawValue::from_string(String::from_utf8(text).ok()?).ok()?;
        raw.get().starts_with('{').then_some(Self(raw))
    }

    /// The data's JSON text, as stored and answered.
    pub fn as_json(&self) -> &str {
        self.0.get()
    }

    /// Bytes the size limit counts: the data's JSON text, without insignificant
    /// whitespace. `{}` is 2 bytes.
    pub fn size(&self) -> usize {
        self.0.get().len()
    }

    /// True when the object has no members.
    pub fn is_empty(&self) -> bool {
        self.0.get() == "{}"
    }

    /// Applies an RFC 7396 merge patch: removes each member set to `null`, merges
    /// each object value into the member's object (recursively, `null` removing
    /// members at any depth), and sets every other value. Members keep their place;
    /// new ones come last.
    pub fn apply(&mut self, patch: &DataPatch) -> Result<(), Unmergeable> {
        self.0 = merge_value(Some(&self.0), &patch.0)?;
        Ok(())
    }
}

impl DataPatch {
    /// True when the patch names no member (it changes no data).
    pub fn is_empty(&self) -> bool {
        self.0.get() == "{}"
    }
}

/// RFC 7396's MergePatch(target, patch) for one value: an object patch merges
/// into the target's members (none if the target is absent or not an object),
/// removing the members it sets to `null` and merging the others recursively;
/// any other patch is the result as it stands. Members keep their order; new
/// ones come last. Values not merged keep their text byte for byte; the names of
/// the objects a patch merges into are written anew (`"\u00e9"` as `"é"`, a
/// repeated name once, with its last value).
fn merge_value(target: Option<&RawValue>, patch: &RawValue) -> Result<Box<RawValue>, Unmergeable> {
    let Some(changes) = members(patch)? else {
        return Ok(patch.to_owned());
    };
    let mut merged: Vec<Option<(String, Box<RawValue>)>> = match target {
        Some(target) => members(target)?.unwrap_or_default().into_iter().map(Some).collect(),
        None => Vec::new(),
    };
    // Where each name stands, so that a patch of many members stays linear.
    let mut at: HashMap<String, usize> = merged
        .iter()
        .enumerate()
        .filter_map(|(i, m)| Some((m.as_ref()?.0.clone(), i)))
        .collect();
    for (name, value) in changes {
        match (at.get(&name).copied(), value.get() == "null") {
            (Some(i), true) => {
                merged[i] = None;
                at.remove(&name);
            }
            (None, true) => {}
            (Some(i), false) => {
                if let Some((_, old)) = &mut merged[i] {
                    *old = merge_value(Some(old), &value)?;
                }
            }
            (None, false) => {
                at.insert(name.clone(), merged.len());
                merged.push(Some((name, merge_value(None, &value)?)));
            }
        }
    }
    let merged: Members = merged.into_iter().flatten().collect();
    serde_json::value::to_raw_value(&AsObject(&merged)).map_err(|_| Unmergeable)
}

/// An object's members, in order: names and values' JSON texts.
type Members = Vec<(String, Box<RawValue>)>;

/// An object's members as written, in order (a repeated name: its last value,
/// in its first place); `None` if `value` is not an object.
fn members(value: &RawValue) -> Result<Option<Members>, Unmergeable> {
    struct Visit;
    impl<'de> serde::de::Visitor<'de> for Visit {
        type Value = Members;
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
        return Ok(None);
    }
    serde_json::Deserializer::from_str(value.get())
        .deserialize_map(Visit)
        .map(Some)
        .map_err(|_| Unmergeable)
}

/// Members serialized as a JSON object, in their order.
struct AsObject<'a>(&'a [(String, Box<RawValue>)]);

impl Serialize for AsObject<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(name, value)| (name, value)))
    }
}

/// Reads a JSON object's text: compact, within [`MAX_DEPTH`], every string Unicode.
fn object<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Box<RawValue>, D::Error> {
    let raw = Box::<RawValue>::deserialize(deserializer)?;
    if !raw.get().starts_with('{') {
        return Err(D::Error::custom("data must be a JSON object"));
    }
    compact(raw.get()).map_err(D::Error::custom)
}

impl<'de> Deserialize<'de> for SessionData {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        object(deserializer).map(Self)
    }
}

impl<'de> Deserialize<'de> for DataPatch {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        object(deserializer).map(Self)
    }
}

/// Strips insignificant whitespace from valid JSON, enforces [`MAX_DEPTH`] and refuses
/// a lone surrogate escape (`"\ud800"`), which is no Unicode text: no JSON parser
/// that reads strings as Unicode (a later merge's, a client's) could read it back.
fn compact(text: &str) -> Result<Box<RawValue>, String> {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut depth = 0usize;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'"' => {
                let end = string_end(bytes, i)?;
                out.push_str(&text[i..end]);
                i = end;
            }
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(format!("data is nested deeper than {MAX_DEPTH} levels"));
                }
                out.push(char::from(b));
                i += 1;
            }
            b'}' | b']' => {
                depth -= 1;
                out.push(char::from(b));
                i += 1;
            }
            // Numbers, literals and punctuation are ASCII.
            _ => {
                out.push(char::from(b));
                i += 1;
            }
        }
    }
    RawValue::from_string(out).map_err(|e| e.to_string())
}

/// The end (one past the closing quote) of the JSON string that starts at `start`,
/// checking that its `\u` escapes are Unicode: every high surrogate followed by a low one.
fn string_end(bytes: &[u8], start: usize) -> Result<usize, String> {
    let lone = || "data holds a lone surrogate escape (\\ud800 to \\udfff), which is not Unicode text".to_owned();
    let hex = |at: usize| -> Option<u32> {
        let digits = std::str::from_utf8(bytes.get(at..at + 4)?).ok()?;
        u32::from_str_radix(digits, 16).ok()
    };
    let mut i = start + 1;
    loop {
        match bytes.get(i) {
            None => return Err("unterminated string".to_owned()),
            Some(b'"') => return Ok(i + 1),
            Some(b'\\') if bytes.get(i + 1) == Some(&b'u') => {
                let unit = hex(i + 2).ok_or_else(|| "bad \\u escape".to_owned())?;
                match unit {
                    0xD800..=0xDBFF => {
                        let low = (bytes.get(i + 6..i + 8) == Some(b"\\u")).then(|| hex(i + 8)).flatten();
                        if !low.is_some_and(|l| (0xDC00..=0xDFFF).contains(&l)) {
                            return Err(lone());
                        }
                        i += 12;
                    }
                    0xDC00..=0xDFFF => return Err(lone()),
                    _ => i += 6,
                }
            }
            Some(b'\\') => i += 2,
            Some(_) => i += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(json: &str) -> String {
        SessionData::from_json(json).unwrap().as_json().to_owned()
    }

    fn merged(data: &str, patch: &str) -> String {
        let mut data = SessionData::from_json(data).unwrap();
        data.apply(&serde_json::from_str(patch).unwrap()).unwrap();
        data.as_json().to_owned()
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
            r#"{"pair":"\ud83d\ude00"}"#,
        ] {
            assert_eq!(text(json), json);
        }
    }

    #[test]
    fn insignificant_whitespace_is_dropped_but_string_contents_kept() {
        assert_eq!(
            text("{ \"a\" : [ 1 , 2 ] , \"b\" : \" x \" }"),
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
            assert!(serde_json::from_str::<DataPatch>(json).is_err(), "{json}");
        }
    }

    #[test]
    fn lone_surrogates_are_refused_in_keys_and_values_at_any_depth() {
        for json in [
            r#"{"prefs":{"\ud800":1,"lang":"en"}}"#,
            r#"{"a":"\udc00"}"#,
            r#"{"a":["x\ud800y"]}"#,
            r#"{"a":"\ud800\u0041"}"#,
        ] {
            let err = SessionData::from_json(json).unwrap_err();
            assert!(err.to_string().contains("lone surrogate"), "{json}: {err}");
            assert!(serde_json::from_str::<DataPatch>(json).is_err(), "{json}");
        }
    }

    #[test]
    fn a_patch_sets_and_removes_top_level_keys_and_merges_objects() {
        assert_eq!(
            merged(r#"{"a":1,"b":{"c":2},"d":3}"#, r#"{"a":null,"b":{"e":4},"f":[5]}"#),
            r#"{"b":{"c":2,"e":4},"d":3,"f":[5]}"#
        );
    }

    #[test]
    fn set_keys_keep_their_place_and_new_and_re_added_keys_come_last() {
        let mut data = r#"{"z":1,"a":2,"m":3}"#.to_owned();
        for (patch, expected) in [
            (r#"{"a":20,"q":4}"#, r#"{"z":1,"a":20,"m":3,"q":4}"#),
            (r#"{"z":null}"#, r#"{"a":20,"m":3,"q":4}"#),
            (r#"{"z":5,"m":null}"#, r#"{"a":20,"q":4,"z":5}"#),
        ] {
            data = merged(&data, patch);
            assert_eq!(data, expected, "{patch}");
        }
    }

    #[test]
    fn nested_merges_follow_rfc_7396_and_keep_member_order_and_number_text() {
        assert_eq!(
            merged(
                r#"{"prefs":{"z":1.0,"lang":"en","a":{"deep":12345678901234567890123}},"x":[1]}"#,
                r#"{"prefs":{"lang":null,"a":{"more":true},"new":{"n":null}},"x":{"k":null}}"#
            ),
            r#"{"prefs":{"z":1.0,"a":{"deep":12345678901234567890123,"more":true},"new":{}},"x":{}}"#
        );
    }

    #[test]
    fn size_is_the_compact_json_text() {
        assert_eq!(
            SessionData::from_json(r#"{"ab": [1, 2]}"#).unwrap().size(),
            r#"{"ab":[1,2]}"#.len()
        );
        assert_eq!(SessionData::default().size(), 2);
    }

    #[test]
    fn documents_read_back_only_as_objects() {
        assert_eq!(
            SessionData::from_document(br#"{"a":1}"#.to_vec()).map(|d| d.as_json().to_owned()),
            Some(r#"{"a":1}"#.to_owned())
        );
        for bad in [&b"[1]"[..], b"{", b"\xff"] {
            assert_eq!(SessionData::from_document(bad.to_vec()), None);
        }
    }
}
