//! Element order after a list merge (upstream's `normalizeElementOrder` and `$setElementOrder` checks): items
//! the patch mentions follow the patch's (or `$setElementOrder`'s) order, items only the live object has keep
//! their relative place, and the two are interleaved by the live order where both are known.

use serde_json::Value;

use super::{DIRECTIVE, bad_arg, find_by_key, no_merge_key, value_eq};
use crate::PatchError;

/// Checks that the patch list's items (deletions aside) appear in the `$setElementOrder` list, in its order.
pub(super) fn validate_order(patch: &[Value], order: &[Value], key: &str) -> Result<(), PatchError> {
    if patch.is_empty() || order.is_empty() {
        return Ok(());
    }
    let kept: Vec<&Value> = if key.is_empty() {
        patch.iter().collect()
    } else {
        let mut kept = Vec::new();
        for item in patch {
            if !item.is_object() {
                return Err(bad_arg("map", item));
            }
            if item.get(DIRECTIVE).and_then(Value::as_str) != Some("delete") {
                kept.push(item);
            }
        }
        kept
    };
    let (mut p, mut s) = (0, 0);
    while p < kept.len() && s < order.len() {
        if kept[p].get(DIRECTIVE).is_some() {
            p += 1;
            continue;
        }
        if same_item(kept[p], &order[s], key)? {
            p += 1;
        }
        s += 1;
    }
    if p < kept.len() {
        return Err(PatchError::SetElementOrderMismatch {
            patch: Value::Array(patch.to_vec()).to_string(),
            order: Value::Array(order.to_vec()).to_string(),
        });
    }
    Ok(())
}

fn same_item(a: &Value, b: &Value, key: &str) -> Result<bool, PatchError> {
    if key.is_empty() {
        return Ok(value_eq(a, b));
    }
    let ka = a.as_object().ok_or_else(|| bad_arg("map", a))?.get(key).ok_or_else(|| no_merge_key(a, key))?;
    let kb = b.as_object().ok_or_else(|| bad_arg("map", b))?.get(key).ok_or_else(|| no_merge_key(b, key))?;
    Ok(value_eq(ka, kb))
}

/// Splits `items` into those present in `by` (by merge key for maps) and the server-only rest.
pub(super) fn partition(
    items: Vec<Value>,
    by: &[Value],
    key: &str,
    is_map: bool,
) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let mut present = Vec::new();
    let mut server_only = Vec::new();
    for item in items {
        let found = if is_map {
            let Value::Object(map) = &item else { return Err(bad_arg("map", &item)) };
            let wanted = map.get(key).ok_or_else(|| no_merge_key(&item, key))?;
            find_by_key(by, key, wanted)?.is_some()
        } else {
            by.iter().any(|b| value_eq(b, &item))
        };
        if found { present.push(item) } else { server_only.push(item) }
    }
    Ok((present, server_only))
}

/// Sorts the patch items by `patch_order` and the server-only items by `server_order`, then interleaves
/// them, keeping both relative orders (upstream's `normalizeElementOrder`).
pub(super) fn normalize_element_order(
    patch_items: Vec<Value>,
    server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    key: &str,
    is_map: bool,
) -> Result<Vec<Value>, PatchError> {
    let patch_items = sort_by_order(patch_items, patch_order, key, is_map)?;
    let server_only = sort_by_order(server_only, server_order, key, is_map)?;
    let mut left = server_only.into_iter().peekable();
    let mut right = patch_items.into_iter().peekable();
    let mut out = Vec::new();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => matches!(
                (index_of(server_order, l, key, is_map), index_of(server_order, r, key, is_map)),
                (Some(li), Some(ri)) if li < ri
            ),
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    Ok(out)
}

fn sort_by_order(items: Vec<Value>, order: &[Value], key: &str, is_map: bool) -> Result<Vec<Value>, PatchError> {
    let (mut items, deletions) = if is_map {
        for item in items.iter().chain(order) {
            let Value::Object(map) = item else { return Err(bad_arg("map", item)) };
            if !map.contains_key(key) {
                return Err(no_merge_key(item, key));
            }
        }
        items.into_iter().partition::<Vec<_>, _>(|i| i.get(DIRECTIVE).and_then(Value::as_str) != Some("delete"))
    } else {
        (items, Vec::new())
    };
    items.sort_by_key(|item| index_of(order, item, key, is_map).unwrap_or(usize::MAX));
    items.extend(deletions);
    Ok(items)
}

fn index_of(list: &[Value], item: &Value, key: &str, is_map: bool) -> Option<usize> {
    let ident = |v: &'_ Value| -> Option<Value> { if is_map { v.get(key).cloned() } else { Some(v.clone()) } };
    let wanted = ident(item);
    list.iter().position(|v| match (ident(v), &wanted) {
        (Some(a), Some(b)) => value_eq(&a, b),
        (None, None) => true,
        _ => false,
    })
}
