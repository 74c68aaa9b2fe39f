//! The two walks over objects that produce field sets: [`compare`] (upstream's `TypedValue.Compare`, which an
//! Update records) and [`to_field_set`] (`TypedValue.ToFieldSet`, which an Apply records).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use crate::schema::{self, Field, List};
use crate::set::{self, Set};

/// What changed between two objects.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Comparison {
    pub added: Set,
    pub modified: Set,
    pub removed: Set,
}

impl Comparison {
    /// Drops `ignored` and everything below it from the three sets (`Comparison.ExcludeFields`).
    pub(crate) fn exclude(self, ignored: &Set) -> Comparison {
        Comparison {
            added: self.added.recursive_difference(ignored),
            modified: self.modified.recursive_difference(ignored),
            removed: self.removed.recursive_difference(ignored),
        }
    }

    /// `Added ∪ Modified`: what the writer now sets.
    pub(crate) fn changed(&self) -> Set {
        let mut out = self.added.clone();
        out.union(&self.modified);
        out
    }
}

/// Compares `lhs` (the live object) with `rhs` (the object about to be stored), both of type `root`.
pub(crate) fn compare(lhs: &Value, rhs: &Value, root: &'static str) -> Comparison {
    let mut out = Comparison::default();
    walk(Some(lhs), Some(rhs), schema::Field { ty: root, list: List::Atomic }, &mut Vec::new(), &mut out);
    out
}

fn walk(lhs: Option<&Value>, rhs: Option<&Value>, field: Field, path: &mut Vec<String>, out: &mut Comparison) {
    if field.is_atomic() {
        return leaf(lhs, rhs, path, out);
    }
    // `null` (and absence) takes the shape of the other side, like structured-merge-diff's `deduceAtom`.
    let fits = |v: Option<&Value>, shape: fn(&Value) -> bool| v.is_none_or(|v| v.is_null() || shape(v));
    let any = |shape: fn(&Value) -> bool| lhs.is_some_and(shape) || rhs.is_some_and(shape);
    if any(Value::is_object) && fits(lhs, Value::is_object) && fits(rhs, Value::is_object) {
        walk_map(lhs, rhs, field, path, out)
    } else if field.list != List::Atomic
        && any(Value::is_array)
        && fits(lhs, Value::is_array)
        && fits(rhs, Value::is_array)
    {
        walk_list(lhs, rhs, field, path, out)
    } else {
        // Scalars, atomic lists and values whose shape changed.
        leaf(lhs, rhs, path, out)
    }
}

fn walk_map(lhs: Option<&Value>, rhs: Option<&Value>, field: Field, path: &mut Vec<String>, out: &mut Comparison) {
    let (l, r) = (lhs.and_then(Value::as_object), rhs.and_then(Value::as_object));
    if l.is_none_or(Map::is_empty) && r.is_none_or(Map::is_empty) {
        // Both empty: a leaf, which keeps the difference between `{}`, `null` and absent.
        return leaf(lhs, rhs, path, out);
    }
    let keys: BTreeSet<&String> = l.into_iter().chain(r).flat_map(Map::keys).collect();
    for key in keys {
        path.push(set::field_element(key));
        let child = schema::field(field.ty, key);
        walk(l.and_then(|m| m.get(key)), r.and_then(|m| m.get(key)), child, path, out);
        path.pop();
    }
    node(lhs.is_some(), rhs.is_some(), path, out);
}

fn walk_list(lhs: Option<&Value>, rhs: Option<&Value>, field: Field, path: &mut Vec<String>, out: &mut Comparison) {
    let (l, r) = (lhs.and_then(Value::as_array), rhs.and_then(Value::as_array));
    if l.is_none_or(Vec::is_empty) && r.is_none_or(Vec::is_empty) {
        return leaf(lhs, rhs, path, out);
    }
    let left = index_items(l.map_or(&[], Vec::as_slice), field.list);
    let right = index_items(r.map_or(&[], Vec::as_slice), field.list);
    let item = item_field(field);
    for (element, r) in &right.1 {
        path.push(element.clone());
        walk(left.0.get(element).copied(), Some(r), item, path, out);
        path.pop();
    }
    for (element, l) in &left.1 {
        if !right.0.contains_key(element) {
            path.push(element.clone());
            walk(Some(l), None, item, path, out);
            path.pop();
        }
    }
    node(lhs.is_some(), rhs.is_some(), path, out);
}

type Indexed<'a> = (BTreeMap<String, &'a Value>, Vec<(String, &'a Value)>);

/// The items of a list by path element, in order; a repeated element keeps its first item.
fn index_items(items: &[Value], list: List) -> Indexed<'_> {
    let mut seen = BTreeMap::new();
    let mut order = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let element = item_element(item, i, list);
        if !seen.contains_key(&element) {
            seen.insert(element.clone(), item);
            order.push((element, item));
        }
    }
    (seen, order)
}

/// The path element of a list item: `k:{...}` with the key fields it has (an item with none of them, or not a
/// map, falls back to its index), or `v:<value>` for a set.
fn item_element(item: &Value, index: usize, list: List) -> String {
    match list {
        List::Map(keys) => {
            let fields: Map<String, Value> =
                keys.iter().filter_map(|k| item.get(*k).map(|v| ((*k).to_owned(), v.clone()))).collect();
            if fields.is_empty() { format!("i:{index}") } else { set::key_element(fields) }
        }
        List::Set => set::value_element(item),
        List::Atomic => format!("i:{index}"),
    }
}

fn item_field(list: Field) -> Field {
    match list.list {
        List::Map(_) => Field { ty: list.ty, list: List::Atomic },
        _ => Field::UNTYPED,
    }
}

/// A map or list node after its children: it was added or removed as a whole if one side lacks it.
fn node(lhs: bool, rhs: bool, path: &[String], out: &mut Comparison) {
    if !lhs {
        out.added.insert(path);
    } else if !rhs {
        out.removed.insert(path);
    }
}

fn leaf(lhs: Option<&Value>, rhs: Option<&Value>, path: &[String], out: &mut Comparison) {
    match (lhs, rhs) {
        (None, _) => out.added.insert(path),
        (_, None) => out.removed.insert(path),
        (Some(l), Some(r)) if l != r => out.modified.insert(path),
        _ => {}
    }
}

/// Every leaf field and list item `value` (of type `root`) mentions, plus the fields it sets to `null` or `{}`.
pub(crate) fn to_field_set(value: &Value, root: &'static str) -> Set {
    let mut out = Set::default();
    collect(value, Field { ty: root, list: List::Atomic }, &mut Vec::new(), &mut out);
    out
}

fn collect(value: &Value, field: Field, path: &mut Vec<String>, out: &mut Set) {
    if field.is_atomic() {
        return out.insert(path);
    }
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                path.push(set::field_element(key));
                collect(child, schema::field(field.ty, key), path, out);
                if child.is_null() || child.as_object().is_some_and(Map::is_empty) {
                    out.insert(path);
                }
                path.pop();
            }
        }
        Value::Array(items) if field.list != List::Atomic => {
            let item = item_field(field);
            for (i, child) in items.iter().enumerate() {
                path.push(item_element(child, i, field.list));
                collect(child, item, path, out);
                out.insert(path);
                path.pop();
            }
        }
        _ => out.insert(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn compare_marks_new_maps_and_items_but_not_existing_structs() {
        let old = json!({"metadata": {}, "spec": {}});
        let new = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"selector": {"app": "web"},
            "ports": [{"port": 80, "protocol": "TCP"}]}});
        let c = compare(&old, &new, "Service");
        assert_eq!(
            c.added.to_fields_v1(),
            json!({"f:metadata": {"f:labels": {".": {}, "f:app": {}}}, "f:spec": {"f:selector": {},
                "f:ports": {".": {}, "k:{\"port\":80,\"protocol\":\"TCP\"}": {".": {}, "f:port": {}, "f:protocol": {}}}}})
        );
        assert!(c.modified.is_empty() && c.removed.is_empty());
    }

    #[test]
    fn compare_reports_modified_and_removed_leaves_and_set_items() {
        let old = json!({"metadata": {"finalizers": ["a", "b"], "labels": {"x": "1"}}, "spec": {"command": ["x"]}});
        let new = json!({"metadata": {"finalizers": ["b"]}, "spec": {"command": ["y"]}});
        let c = compare(&old, &new, "Object");
        assert_eq!(
            c.removed.to_fields_v1(),
            json!({"f:metadata": {"f:finalizers": {"v:\"a\"": {}}, "f:labels": {".": {}, "f:x": {}}}})
        );
        assert_eq!(c.modified.to_fields_v1(), json!({"f:spec": {"f:command": {}}}));
        assert!(c.added.is_empty());
    }

    #[test]
    fn field_set_of_an_applied_object_has_items_but_no_dots_on_maps() {
        let applied = json!({"apiVersion": "apps/v1", "metadata": {"labels": {"app": "web"}},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": {"spec": {
                "containers": [{"name": "c", "image": "nginx", "resources": {}}]}}}});
        let s = to_field_set(&applied, "Deployment");
        assert_eq!(
            s.to_fields_v1(),
            json!({"f:apiVersion": {}, "f:metadata": {"f:labels": {"f:app": {}}}, "f:spec": {"f:replicas": {},
                "f:selector": {}, "f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"c\"}": {".": {},
                "f:image": {}, "f:name": {}, "f:resources": {}}}}}}})
        );
    }
}
