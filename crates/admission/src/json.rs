//! Small readers and writers over `serde_json::Value`, so that kind-specific code reads like upstream's Go
//! (`spec.ports[i].port`) without a typed model, and every field missing or `null` reads as Go's zero value.

use serde_json::{Map, Value};

/// The string at `key`, or `""` when missing, null or not a string (Go's zero value).
pub fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// The integer at `key`, when present and numeric.
pub fn int(v: &Value, key: &str) -> Option<i64> {
    v.get(key).and_then(Value::as_i64)
}

/// The array at `key` (empty when missing or null).
pub fn arr<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

/// The object at `key` (`None` when missing, null or not an object).
pub fn obj<'a>(v: &'a Value, key: &str) -> Option<&'a Map<String, Value>> {
    v.get(key).and_then(Value::as_object)
}

/// Whether `key` holds something other than null.
pub fn has(v: &Value, key: &str) -> bool {
    v.get(key).is_some_and(|x| !x.is_null())
}

/// The strings of a `map[string]string` field (non-string values are skipped; decoding rejects them).
pub fn str_map<'a>(v: &'a Value, key: &str) -> Vec<(&'a str, &'a str)> {
    obj(v, key).map(|m| m.iter().filter_map(|(k, v)| Some((k.as_str(), v.as_str()?))).collect()).unwrap_or_default()
}

/// The object at `key`, created (replacing null or a non-object) when needed.
pub fn child<'a>(v: &'a mut Value, key: &str) -> &'a mut Value {
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    let Value::Object(map) = v else { unreachable!("made an object above") };
    let entry = map.entry(key.to_string()).or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    entry
}

/// Sets `key` to `value` when it is missing, null or an empty string.
pub fn set_default(v: &mut Value, key: &str, value: Value) {
    if let Value::Object(map) = v {
        let unset = match map.get(key) {
            None | Some(Value::Null) => true,
            Some(Value::String(s)) => s.is_empty(),
            _ => false,
        };
        if unset {
            map.insert(key.to_string(), value);
        }
    }
}

pub fn set(v: &mut Value, key: &str, value: Value) {
    if let Value::Object(map) = v {
        map.insert(key.to_string(), value);
    }
}

pub fn remove(v: &mut Value, key: &str) {
    if let Value::Object(map) = v {
        map.remove(key);
    }
}

/// Every element of the array at `key`, mutably (none when it is not an array).
pub fn items_mut<'a>(v: &'a mut Value, key: &str) -> impl Iterator<Item = &'a mut Value> {
    v.get_mut(key).and_then(Value::as_array_mut).into_iter().flatten()
}

/// Removes nulls, empty maps and empty arrays everywhere, so that two objects compare as Go's semantic equality
/// would (an omitted field and a zero value are the same).
pub fn normalized(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            Value::Object(m.iter().map(|(k, v)| (k.clone(), normalized(v))).filter(|(_, v)| !is_empty(v)).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(normalized).collect()),
        other => other.clone(),
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// Semantic equality of two fields (see [`normalized`]).
pub fn same(a: Option<&Value>, b: Option<&Value>) -> bool {
    normalized(a.unwrap_or(&Value::Null)) == normalized(b.unwrap_or(&Value::Null))
}
