//! OVSDB values in JSON (RFC 7047 section 5.1) and back.
//!
//! A set is `["set",[..]]`, but the server writes a set of exactly one element as the bare
//! element; a map is `["map",[[key,value],..]]`; a row reference is `["uuid","<uuid>"]`, and
//! `["named-uuid","<name>"]` inside a transaction refers to a row its `insert` named.

use std::collections::BTreeMap;

use serde_json::{json, Value};

/// `["set",[..]]`.
pub fn set(items: Vec<Value>) -> Value {
    json!(["set", items])
}

/// `["map",[[k,v],..]]` of strings.
pub fn str_map(pairs: &[(&str, &str)]) -> Value {
    let pairs: Vec<Value> = pairs.iter().map(|(k, v)| json!([k, v])).collect();
    json!(["map", pairs])
}

/// `["uuid",u]`: a reference to an existing row.
pub fn uuid(u: &str) -> Value {
    json!(["uuid", u])
}

/// `["named-uuid",n]`: a reference to the row inserted with `uuid-name` `n` in the same
/// transaction.
pub fn named_uuid(n: &str) -> Value {
    json!(["named-uuid", n])
}

/// The elements of a set, given as `["set",[..]]` or as one bare atom (how the server writes a
/// one-element set); JSON `null` (a column missing from a row) is the empty set.
pub fn as_set(v: &Value) -> Vec<Value> {
    match (v, tagged(v, "set")) {
        (_, Some(Value::Array(items))) => items.clone(),
        (Value::Null, _) => Vec::new(),
        _ => vec![v.clone()],
    }
}

/// The strings of a set of strings (non-string elements are skipped).
pub fn as_strings(v: &Value) -> Vec<String> {
    as_set(v)
        .iter()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

/// A map of strings to strings (pairs that are not two strings are skipped; anything that is
/// not a map gives an empty map).
pub fn as_str_map(v: &Value) -> BTreeMap<String, String> {
    let Some(Value::Array(pairs)) = tagged(v, "map") else {
        return BTreeMap::new();
    };
    pairs
        .iter()
        .filter_map(|pair| match pair.as_array()?.as_slice() {
            [Value::String(k), Value::String(v)] => Some((k.clone(), v.clone())),
            _ => None,
        })
        .collect()
}

/// The UUID in `["uuid",u]`, also when wrapped in a one-element set; `None` otherwise (e.g. an
/// empty optional reference).
pub fn as_uuid(v: &Value) -> Option<String> {
    if let Some(Value::String(u)) = tagged(v, "uuid") {
        return Some(u.clone());
    }
    match tagged(v, "set") {
        Some(Value::Array(items)) if items.len() == 1 => as_uuid(&items[0]),
        _ => None,
    }
}

/// The payload of `[tag, payload]`.
fn tagged<'a>(v: &'a Value, tag: &str) -> Option<&'a Value> {
    match v.as_array()?.as_slice() {
        [Value::String(t), payload] if t == tag => Some(payload),
        _ => None,
    }
}

#[cfg(test)]
#[path = "value_tests.rs"]
mod tests;
