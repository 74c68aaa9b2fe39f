//! Strategic merge patch, ported from upstream's `strategicpatch.StrategicMergeMapPatch` (the server side:
//! `MergeParallelList` and `IgnoreUnmatchedNulls` both on).
//!
//! A patch map merges into the original key by key; `null` deletes; lists whose field merges by a key merge
//! item by item, primitive merge lists are unioned, other lists are replaced. Directives: `$patch`
//! (`replace`/`delete` on a map, `replace`/`delete` as a list item), `$retainKeys`,
//! `$setElementOrder/<list>` and `$deleteFromPrimitiveList/<list>`.
//!
//! One deliberate difference: upstream copies a patch value verbatim when the original lacks the key, and
//! relies on decoding into Go structs to drop leftover directives. Objects are stored as JSON here, so such
//! values are merged into an empty value instead, which strips the directives the same way.

use serde_json::{Map, Value};

use crate::PatchError;
use crate::schema::{self, FieldMeta, Strategy};
use order::{normalize_element_order, partition, validate_order};

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";

/// Applies an `application/strategic-merge-patch+json` body to an object of a built-in kind. Kinds without
/// patch metadata (see [`crate::supports_strategic_merge`]) are patched as plain objects whose lists are all
/// atomic, except `metadata.finalizers` and `metadata.ownerReferences`.
pub fn strategic_merge_patch(
    api_version: &str,
    kind: &str,
    original: &Value,
    patch: &Value,
) -> Result<Value, PatchError> {
    let Value::Object(patch) = patch else { return Err(PatchError::InvalidDocument) };
    let original = match original {
        Value::Object(map) => map.clone(),
        Value::Null => Map::new(),
        _ => return Err(PatchError::InvalidDocument),
    };
    let root = schema::root_type(api_version, kind).unwrap_or("Object");
    merge_map(original, patch.clone(), root).map(Value::Object)
}

fn merge_map(
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    ty: &str,
) -> Result<Map<String, Value>, PatchError> {
    if let Some(directive) = patch.get(DIRECTIVE) {
        return match directive.as_str() {
            // The patch replaces the map; merging it into nothing drops its nested directives.
            Some("replace") => {
                patch.remove(DIRECTIVE);
                merge_map(Map::new(), patch, ty)
            }
            Some("delete") => Ok(Map::new()),
            _ => Err(unknown_directive(directive, &patch)),
        };
    }
    apply_retain_keys(&mut original, &mut patch)?;
    merge_element_orders(&mut original, &mut patch, ty)?;

    for (key, patch_value) in patch {
        let (key, delete_list) = match key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            Some(rest) => (field_of(rest, PatchError::BadPrimitiveListFormat)?.to_string(), true),
            None => (key, false),
        };
        if patch_value.is_null() {
            original.remove(&key);
            continue;
        }
        let meta = schema::field(ty, &key);
        match original.get_mut(&key) {
            Some(slot) if delete_list => match (slot, patch_value) {
                (Value::Array(items), Value::Array(remove)) => items.retain(|v| !remove.iter().any(|r| value_eq(v, r))),
                _ => return Err(PatchError::BadPrimitiveListFormat),
            },
            Some(slot) => {
                let merged = merge_value(std::mem::take(slot), patch_value, meta)?;
                *slot = merged;
            }
            // Nothing to delete from.
            None if delete_list => {}
            None => {
                let fresh = fresh(patch_value, meta)?;
                original.insert(key, fresh);
            }
        }
    }
    Ok(original)
}

fn merge_value(original: Value, patch: Value, meta: FieldMeta) -> Result<Value, PatchError> {
    match (original, patch) {
        (Value::Object(o), Value::Object(p)) if meta.strategy != Strategy::Replace => {
            Ok(Value::Object(merge_map(o, p, meta.ty)?))
        }
        (Value::Array(o), Value::Array(p)) if meta.strategy == Strategy::Merge => {
            Ok(Value::Array(merge_list(o, p, meta)?))
        }
        (Value::Array(_), p @ Value::Array(_)) => Ok(p),
        (_, p) => fresh(p, meta),
    }
}

/// A patch value for a key the original lacks, with its directives applied to nothing.
fn fresh(patch: Value, meta: FieldMeta) -> Result<Value, PatchError> {
    match patch {
        Value::Object(p) if meta.strategy != Strategy::Replace => Ok(Value::Object(merge_map(Map::new(), p, meta.ty)?)),
        Value::Array(p) if meta.strategy == Strategy::Merge => Ok(Value::Array(merge_list(Vec::new(), p, meta)?)),
        other => Ok(other),
    }
}

/// Merges a list with a merge strategy: by `meta.merge_key` for maps, as a set for primitives.
fn merge_list(original: Vec<Value>, patch: Vec<Value>, meta: FieldMeta) -> Result<Vec<Value>, PatchError> {
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    let is_map = elements_are_maps(&original, &patch)?;
    let key = meta.merge_key;
    let (merged, server_order, patch) = if !is_map {
        let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
        for item in original.iter().chain(&patch) {
            if !merged.iter().any(|m| value_eq(m, item)) {
                merged.push(item.clone());
            }
        }
        (merged, original, patch)
    } else {
        if key.is_empty() {
            return Err(PatchError::MissingMergeKey);
        }
        let (original, patch) = apply_list_directives(original, patch, meta)?;
        let mut merged = original.clone();
        for item in &patch {
            let Value::Object(item_map) = item else { return Err(bad_arg("map", item)) };
            let wanted = item_map.get(key).ok_or_else(|| no_merge_key(item, key))?;
            match find_by_key(&merged, key, wanted)? {
                Some(i) => {
                    let Value::Object(existing) = std::mem::take(&mut merged[i]) else {
                        return Err(bad_arg("map", &merged[i]));
                    };
                    merged[i] = Value::Object(merge_map(existing, item_map.clone(), meta.ty)?);
                }
                None => merged.push(Value::Object(merge_map(Map::new(), item_map.clone(), meta.ty)?)),
            }
        }
        (merged, original, patch)
    };
    let (patch_items, server_only) = partition(merged, &patch, key, is_map)?;
    normalize_element_order(patch_items, server_only, &patch, &server_order, key, is_map)
}

/// Handles `{"$patch": "delete", key: v}` and `{"$patch": "replace"}` items; returns the original with
/// deletions done (or the patch items, for a replace) and the patch without directive items.
fn apply_list_directives(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    meta: FieldMeta,
) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let key = meta.merge_key;
    let mut plain = Vec::with_capacity(patch.len());
    let mut replace = false;
    for item in patch {
        let Some(directive) = item.get(DIRECTIVE) else {
            plain.push(item);
            continue;
        };
        match directive.as_str() {
            Some("delete") => {
                let wanted = item.get(key).ok_or_else(|| no_merge_key(&item, key))?;
                while let Some(i) = find_by_key(&original, key, wanted)? {
                    original.remove(i);
                }
            }
            Some("replace") => replace = true,
            Some("merge") => return Err(PatchError::MergeDirectiveInList),
            _ => {
                let map = item.as_object().cloned().unwrap_or_default();
                return Err(unknown_directive(directive, &map));
            }
        }
    }
    if !replace {
        return Ok((original, plain));
    }
    // The patch items become the list; merging each into nothing drops their nested directives.
    let mut replaced = Vec::with_capacity(plain.len());
    for item in plain {
        let Value::Object(map) = item else { return Err(bad_arg("map", &item)) };
        replaced.push(Value::Object(merge_map(Map::new(), map, meta.ty)?));
    }
    Ok((replaced, Vec::new()))
}

/// Keeps only the keys `$retainKeys` lists (the patch itself may only set those).
fn apply_retain_keys(original: &mut Map<String, Value>, patch: &mut Map<String, Value>) -> Result<(), PatchError> {
    let Some(retain) = patch.remove(RETAIN_KEYS) else { return Ok(()) };
    let Value::Array(retain) = retain else { return Err(PatchError::BadRetainKeysFormat) };
    let listed = |k: &str| retain.iter().any(|r| r.as_str() == Some(k));
    for (k, v) in patch.iter() {
        let directive = k.starts_with(DELETE_FROM_PRIMITIVE_LIST) || k.starts_with(SET_ELEMENT_ORDER);
        if !v.is_null() && !directive && !listed(k) {
            return Err(PatchError::BadRetainKeysFormat);
        }
    }
    original.retain(|k, _| listed(k));
    Ok(())
}

/// Processes every `$setElementOrder/<field>` of this map together with the patch list of `<field>`.
fn merge_element_orders(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    ty: &str,
) -> Result<(), PatchError> {
    let order_keys: Vec<String> = patch.keys().filter(|k| k.starts_with(SET_ELEMENT_ORDER)).cloned().collect();
    for order_key in order_keys {
        let Some(Value::Array(order)) = patch.remove(&order_key) else {
            return Err(PatchError::BadSetElementOrderFormat);
        };
        let field = field_of(&order_key[SET_ELEMENT_ORDER.len()..], PatchError::BadSetElementOrderFormat)?.to_string();
        let original_list = list_at(original, &field)?;
        let patch_list = list_at(patch, &field)?;
        let meta = schema::field(ty, &field);
        validate_order(patch_list.as_deref().unwrap_or_default(), &order, meta.merge_key)?;
        let merged = match (original_list.clone(), patch_list.clone()) {
            (Some(o), None) => o,
            (None, Some(p)) => merge_list(Vec::new(), p, meta)?,
            (Some(o), Some(p)) if meta.strategy == Strategy::Merge => merge_list(o, p, meta)?,
            (Some(_), Some(p)) => p,
            (None, None) => continue,
        };
        patch.remove(&field);
        if merged.is_empty() {
            original.insert(field, Value::Array(merged));
            continue;
        }
        let is_map = merged[0].is_object();
        if is_map && meta.merge_key.is_empty() {
            return Err(PatchError::MissingMergeKey);
        }
        let (patch_items, server_only) = partition(merged, &order, meta.merge_key, is_map)?;
        let server_order = original_list.unwrap_or_default();
        let both = normalize_element_order(patch_items, server_only, &order, &server_order, meta.merge_key, is_map)?;
        original.insert(field, Value::Array(both));
    }
    Ok(())
}

/// The list at `field`, which must be a list when present.
fn list_at(map: &Map<String, Value>, field: &str) -> Result<Option<Vec<Value>>, PatchError> {
    match map.get(field) {
        None => Ok(None),
        Some(Value::Array(items)) => Ok(Some(items.clone())),
        Some(other) => Err(bad_arg("slice", other)),
    }
}

/// The index of the map in `items` whose `key` equals `wanted`.
fn find_by_key(items: &[Value], key: &str, wanted: &Value) -> Result<Option<usize>, PatchError> {
    for (i, item) in items.iter().enumerate() {
        let Value::Object(map) = item else { return Err(bad_arg("map", item)) };
        if map.get(key).is_some_and(|v| value_eq(v, wanted)) {
            return Ok(Some(i));
        }
    }
    Ok(None)
}

/// Whether the (non-empty) lists hold maps; all items must be of one JSON type and not lists.
fn elements_are_maps(a: &[Value], b: &[Value]) -> Result<bool, PatchError> {
    let mut first: Option<&Value> = None;
    for item in a.iter().chain(b) {
        if item.is_array() {
            return Err(PatchError::ListOfLists);
        }
        match first {
            None => first = Some(item),
            Some(f) if std::mem::discriminant(f) != std::mem::discriminant(item) => {
                let all: Vec<Value> = a.iter().chain(b).cloned().collect();
                return Err(PatchError::MixedListTypes(Value::Array(all).to_string()));
            }
            Some(_) => {}
        }
    }
    Ok(first.is_some_and(Value::is_object))
}

/// The list field named after a directive prefix (`/containers` → `containers`).
fn field_of(rest: &str, err: PatchError) -> Result<&str, PatchError> {
    rest.strip_prefix('/').ok_or(err)
}

/// Equality as Go compares decoded JSON: all numbers are float64.
fn value_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn kind_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "nil",
        Value::Bool(_) => "bool",
        Value::Number(_) => "float64",
        Value::String(_) => "string",
        Value::Array(_) => "slice",
        Value::Object(_) => "map",
    }
}

fn bad_arg(expected: &'static str, got: &Value) -> PatchError {
    PatchError::BadArgType { expected, received: kind_name(got) }
}

fn no_merge_key(item: &Value, key: &str) -> PatchError {
    PatchError::NoMergeKey { item: item.to_string(), key: key.to_string() }
}

fn unknown_directive(directive: &Value, map: &Map<String, Value>) -> PatchError {
    let directive = directive.as_str().map_or_else(|| directive.to_string(), str::to_string);
    PatchError::UnknownDirective { directive, map: Value::Object(map.clone()).to_string() }
}

mod order;
#[cfg(test)]
mod tests;
