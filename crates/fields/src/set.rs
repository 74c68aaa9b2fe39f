//! Field sets: structured-merge-diff's `fieldpath.Set`, held as a tree keyed by serialized path elements, and
//! its `FieldsV1` JSON encoding.
//!
//! A path element is kept in its serialized form (`f:name`, `k:{"port":80,"protocol":"TCP"}`, `v:"value"`,
//! `i:3`), normalized on decode so that two spellings of one element (key order, whitespace) are one key.
//! A node of the tree is a *member* when the path ending there is in the set; it may also have children.
//! `FieldsV1` writes a member without children as `{}`, a member with children with an extra `".": {}`, and a
//! node that is only a prefix as its children alone (upstream's `emitContentsV1` / `readIterV1`).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::FieldsError;

/// A set of field paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Set {
    /// Invariant: no node is empty (neither a member nor a prefix of one).
    nodes: BTreeMap<String, Node>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Node {
    member: bool,
    children: Set,
}

impl Node {
    fn is_empty(&self) -> bool {
        !self.member && self.children.is_empty()
    }
}

impl Set {
    pub(crate) fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Adds `path` (serialized path elements). The empty path (the root) is never a member.
    pub(crate) fn insert<S: AsRef<str>>(&mut self, path: &[S]) {
        let Some((first, rest)) = path.split_first() else { return };
        let node = self.nodes.entry(first.as_ref().to_owned()).or_default();
        if rest.is_empty() {
            node.member = true;
        } else {
            node.children.insert(rest);
        }
    }

    #[cfg(test)]
    pub(crate) fn has<S: AsRef<str>>(&self, path: &[S]) -> bool {
        let Some((first, rest)) = path.split_first() else { return false };
        self.nodes.get(first.as_ref()).is_some_and(|n| if rest.is_empty() { n.member } else { n.children.has(rest) })
    }

    pub(crate) fn union(&mut self, other: &Set) {
        for (key, theirs) in &other.nodes {
            let mine = self.nodes.entry(key.clone()).or_default();
            mine.member |= theirs.member;
            mine.children.union(&theirs.children);
        }
    }

    /// The members of `self` that are not members of `other` (upstream's `Set.Difference`: removing a member
    /// does not remove what lies below it).
    pub(crate) fn difference(&self, other: &Set) -> Set {
        self.filter(other, |mine, theirs| Node {
            member: mine.member && !theirs.member,
            children: mine.children.difference(&theirs.children),
        })
    }

    /// The members of `self` that are neither members of `other` nor below one (`Set.RecursiveDifference`).
    pub(crate) fn recursive_difference(&self, other: &Set) -> Set {
        self.filter(other, |mine, theirs| {
            if theirs.member {
                Node::default()
            } else {
                Node { member: mine.member, children: mine.children.recursive_difference(&theirs.children) }
            }
        })
    }

    fn filter(&self, other: &Set, both: impl Fn(&Node, &Node) -> Node) -> Set {
        let mut nodes = BTreeMap::new();
        for (key, mine) in &self.nodes {
            let node = match other.nodes.get(key) {
                None => mine.clone(),
                Some(theirs) => both(mine, theirs),
            };
            if !node.is_empty() {
                nodes.insert(key.clone(), node);
            }
        }
        Set { nodes }
    }

    /// The `FieldsV1` JSON of the set.
    pub(crate) fn to_fields_v1(&self) -> Value {
        Value::Object(self.children_json())
    }

    fn children_json(&self) -> Map<String, Value> {
        let mut out = Map::new();
        for (key, node) in &self.nodes {
            let mut body = node.children.children_json();
            if node.member && !body.is_empty() {
                body.insert(".".to_owned(), Value::Object(Map::new()));
            }
            out.insert(key.clone(), Value::Object(body));
        }
        out
    }

    /// Reads a `FieldsV1` document. Path elements of an unknown type are dropped, as upstream does.
    pub(crate) fn from_fields_v1(fields: &Value) -> Result<Set, FieldsError> {
        let Value::Object(map) = fields else {
            return Err(FieldsError::Set("fieldsV1 must be an object".to_owned()));
        };
        Ok(read_children(map)?.0)
    }
}

/// The children of a `FieldsV1` object, and whether the object marks its own node a member.
fn read_children(map: &Map<String, Value>) -> Result<(Set, bool), FieldsError> {
    let mut set = Set::default();
    let mut dot = false;
    for (key, value) in map {
        if key == "." {
            dot = true;
            continue;
        }
        let Some(element) = normalize_element(key)? else { continue };
        let Value::Object(inner) = value else {
            return Err(FieldsError::Set(format!("expected an object at {key}")));
        };
        let (children, member) = read_children(inner)?;
        let node = Node { member, children };
        if !node.is_empty() {
            set.nodes.insert(element, node);
        }
    }
    // An object with no (known) children is a member by itself (`{}`).
    let member = dot || set.is_empty();
    Ok((set, member))
}

/// The canonical spelling of a serialized path element, `None` for an unknown element type.
fn normalize_element(key: &str) -> Result<Option<String>, FieldsError> {
    let bad = |why: &str| FieldsError::Set(format!("parsing key as path element: {why}: {key:?}"));
    let (kind, rest) = match (key.get(..1), key.get(1..2), key.get(2..)) {
        (Some(kind), Some(":"), Some(rest)) => (kind, rest),
        _ => return Err(bad("expected a two-character type prefix")),
    };
    match kind {
        "f" => Ok(Some(key.to_owned())),
        "k" => match serde_json::from_str::<Value>(rest) {
            Ok(fields @ Value::Object(_)) => Ok(Some(format!("k:{}", go_json(&fields)))),
            _ => Err(bad("invalid key")),
        },
        "v" => match serde_json::from_str::<Value>(rest) {
            Ok(value) => Ok(Some(format!("v:{}", go_json(&value)))),
            Err(_) => Err(bad("invalid value")),
        },
        "i" => match rest.parse::<i64>() {
            Ok(index) => Ok(Some(format!("i:{index}"))),
            Err(_) => Err(bad("invalid index")),
        },
        _ => Ok(None),
    }
}

/// `f:<name>`.
pub(crate) fn field_element(name: &str) -> String {
    format!("f:{name}")
}

/// `k:{...}` for the given key fields (sorted by name, as `serde_json` maps are).
pub(crate) fn key_element(fields: Map<String, Value>) -> String {
    format!("k:{}", go_json(&Value::Object(fields)))
}

/// `v:<json>` for a member of a set-typed list.
pub(crate) fn value_element(value: &Value) -> String {
    format!("v:{}", go_json(value))
}

/// Compact JSON as Go's `encoding/json` writes it: `<`, `>`, `&`, U+2028 and U+2029 escaped.
fn go_json(value: &Value) -> String {
    let plain = value.to_string();
    let mut out = String::with_capacity(plain.len());
    for c in plain.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(fields: Value) -> Set {
        Set::from_fields_v1(&fields).unwrap()
    }

    #[test]
    fn round_trips_fields_v1_with_dots() {
        let fields = json!({"f:metadata":{"f:labels":{".":{},"f:app":{}}},"f:spec":{"f:ports":{".":{},
            "k:{\"port\":80,\"protocol\":\"TCP\"}":{".":{},"f:port":{}}},"f:selector":{}}});
        let s = set(fields.clone());
        assert!(s.has(&["f:metadata", "f:labels"]));
        assert!(!s.has(&["f:metadata"]));
        assert!(s.has(&["f:spec", "f:selector"]));
        assert_eq!(s.to_fields_v1(), fields);
    }

    #[test]
    fn normalizes_key_order_and_drops_unknown_elements() {
        let s = set(json!({"k:{\"protocol\": \"TCP\", \"port\": 80}": {}, "x:weird": {}, "v:\"a<b\"": {}}));
        assert_eq!(s.to_fields_v1(), json!({"k:{\"port\":80,\"protocol\":\"TCP\"}": {}, "v:\"a\\u003cb\"": {}}));
        assert!(Set::from_fields_v1(&json!({"nonsense": {}})).is_err());
        assert!(Set::from_fields_v1(&json!({"k:{oops": {}})).is_err());
    }

    #[test]
    fn difference_keeps_children_and_recursive_difference_drops_them() {
        let a = set(json!({"f:labels": {".": {}, "f:app": {}}, "f:x": {}}));
        let b = set(json!({"f:labels": {}}));
        assert_eq!(a.difference(&b).to_fields_v1(), json!({"f:labels": {"f:app": {}}, "f:x": {}}));
        assert_eq!(a.recursive_difference(&b).to_fields_v1(), json!({"f:x": {}}));
        let mut u = a.difference(&a);
        assert!(u.is_empty());
        u.union(&b);
        assert_eq!(u.to_fields_v1(), json!({"f:labels": {}}));
    }
}
