//! `metadata.managedFields`: which field manager owns which fields of an object, recorded on every write the
//! way upstream's field manager does (`k8s.io/apimachinery/pkg/util/managedfields/internal` over
//! structured-merge-diff), for objects held as JSON, with no I/O.
//!
//! The API server calls [`managed_fields`] once per write with the stored object (`None` on create), the object
//! about to be stored and, for server-side apply, the applied configuration; it stores the returned list as
//! the new object's `metadata.managedFields` (dropping the field when the list is empty, as upstream stores
//! nil). Inside, the starting entries are decoded (the stored object's, or the client's own list when it sent
//! one, or none when it sent `[]`), the write is turned into field sets in the `FieldsV1` encoding (`set`):
//! an Update owns what it added or changed (a `walk::compare` of old and new, or of the kind's zero object
//! on create), an Apply owns exactly what it applied (`walk::to_field_set`); every other manager loses the
//! fields whose values changed or that were removed, fields that are never tracked are stripped, and the
//! entries are capped and sorted like upstream (`managers`).
//!
//! Approximations, since Skiff has no structured-merge-diff schema: the list types, list-map keys and atomic
//! maps of the built-in kinds are a hand-written table (`schema`); anything else is treated like an untyped
//! custom resource (maps granular, lists atomic). Every field of a map is treated as a declared struct field,
//! so an applied non-empty map that upstream's schema would call a free-form map entry gets no `"."` marker.
//! Conflicts are not reported: every apply behaves as `force=true`, and fields an applier stops applying are
//! not pruned from the object here (that is the patch code's job). API-version conversion of other managers'
//! sets is not done (Skiff serves one version per kind).

mod managers;
mod schema;
mod set;
mod walk;

use serde_json::Value;

use managers::{Entry, MAX_UPDATE_MANAGERS, Managed};
use set::Set;

/// Why a `managedFields` list could not be decoded. Messages are upstream's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldsError {
    #[error("managedFields must be a list")]
    NotAList,
    #[error("operation must be `Apply` or `Update`")]
    Operation,
    #[error("apiVersion must not be empty")]
    ApiVersion,
    #[error("missing fieldsType in managed fields entry {0}")]
    MissingFieldsType(usize),
    #[error("invalid fieldsType {0:?} in managed fields entry {1}")]
    FieldsType(String, usize),
    /// A `fieldsV1` that is not a valid field set.
    #[error("error decoding set: {0}")]
    Set(String),
}

/// The operation of a managed fields entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Create, update (PUT) or a non-apply patch.
    Update,
    /// Server-side apply.
    Apply,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Update => "Update",
            Operation::Apply => "Apply",
        }
    }
}

/// One write, as the field manager sees it.
#[derive(Debug, Clone, Copy)]
pub struct Write<'a> {
    /// The field manager (`?fieldManager=`, else derived from the user agent).
    pub manager: &'a str,
    pub operation: Operation,
    /// The object's `apiVersion`, e.g. `v1` or `apps/v1`.
    pub api_version: &'a str,
    pub kind: &'a str,
    /// `Some("status")` for a write to the status subresource.
    pub subresource: Option<&'a str>,
    /// The write's time, RFC 3339 with seconds (`2026-11-21T12:00:00Z`).
    pub time: &'a str,
    /// Whether the resource has a status subresource: then main-resource writes never own `status` and status
    /// writes never own `spec` (upstream's reset fields).
    pub status_subresource: bool,
}

/// Fields no manager ever owns (upstream's `stripmeta.go`, plus the deletion fields only the server sets).
const STRIPPED: &[&[&str]] = &[
    &["f:apiVersion"],
    &["f:kind"],
    &["f:metadata"],
    &["f:metadata", "f:name"],
    &["f:metadata", "f:namespace"],
    &["f:metadata", "f:creationTimestamp"],
    &["f:metadata", "f:selfLink"],
    &["f:metadata", "f:uid"],
    &["f:metadata", "f:clusterName"],
    &["f:metadata", "f:generation"],
    &["f:metadata", "f:managedFields"],
    &["f:metadata", "f:resourceVersion"],
    &["f:metadata", "f:deletionTimestamp"],
    &["f:metadata", "f:deletionGracePeriodSeconds"],
];

/// The `metadata.managedFields` the stored object should carry after this write (empty: store none).
///
/// `old` is the stored object before the write (`None` on create); `new` is the object about to be stored,
/// whose own `metadata.managedFields` is whatever the client sent; `applied` is, for an Apply, the applied
/// configuration (the patch body; `new` is used when it is missing).
pub fn managed_fields(old: Option<&Value>, new: &Value, applied: Option<&Value>, w: &Write) -> Value {
    let root = schema::root_type(w.api_version, w.kind);
    let live = match old {
        Some(old) => without_managed_fields(old),
        None => schema::zero_object(root),
    };
    let ignored = ignored_fields(w);
    let comparison = walk::compare(&live, &without_managed_fields(new), root).exclude(&ignored);
    let changed = comparison.changed();

    let mut managed = starting_entries(old, new, w);
    let mut mine = Entry {
        manager: w.manager.to_owned(),
        operation: w.operation,
        api_version: w.api_version.to_owned(),
        subresource: w.subresource.unwrap_or_default().to_owned(),
        time: Some(w.time.to_owned()),
        set: Set::default(),
    };
    let id = mine.identifier();
    match w.operation {
        Operation::Update => {
            // Upstream records the write as a fresh "current-operation" manager, so the writer's previous
            // entry loses changed fields like everyone else's, then takes them back with the new ones.
            managed.lose(&changed, &comparison.removed, None);
            let owned = strip(changed);
            if !owned.is_empty() {
                if let Some(previous) = managed.entries.remove(&id) {
                    mine.set = previous.set;
                }
                mine.set.union(&owned);
                managed.entries.insert(id, mine);
            }
            managed.cap_updates(MAX_UPDATE_MANAGERS);
        }
        Operation::Apply => {
            let config = without_managed_fields(applied.unwrap_or(new));
            mine.set = strip(walk::to_field_set(&config, root).recursive_difference(&ignored));
            managed.entries.remove(&id);
            managed.lose(&changed, &comparison.removed, None);
            if !mine.set.is_empty() {
                managed.entries.insert(id, mine);
            }
        }
    }
    let mut encoded = managed.encode();
    if let Some(old) = old {
        keep_times_of_a_no_op(old, new, &mut encoded);
    }
    encoded
}

/// Checks a client-sent `metadata.managedFields` list the way upstream decodes it.
pub fn validate(managed_fields: &Value) -> Result<(), FieldsError> {
    Managed::decode(managed_fields).map(|_| ())
}

/// The entries the write starts from (`decodeLiveOrNew`): an apply or a subresource write always starts from
/// the stored object's; otherwise the client's list if it sent a valid non-empty one, none if it sent `[]`
/// (or `[{}]`), and the stored object's if it sent nothing.
fn starting_entries(old: Option<&Value>, new: &Value, w: &Write) -> Managed {
    let live = || old.and_then(managed_fields_of).and_then(|l| Managed::decode(l).ok()).unwrap_or_default();
    if w.operation == Operation::Apply || w.subresource.is_some() {
        return live();
    }
    match managed_fields_of(new) {
        Some(Value::Array(list)) if is_reset(list) => Managed::default(),
        Some(list) => match Managed::decode(list) {
            Ok(managed) if !managed.entries.is_empty() => managed,
            _ => live(),
        },
        None => live(),
    }
}

fn is_reset(list: &[Value]) -> bool {
    match list {
        [] => true,
        [only] => only.as_object().is_some_and(|o| o.values().all(|v| v.is_null() || v == "")),
        _ => false,
    }
}

fn managed_fields_of(object: &Value) -> Option<&Value> {
    object.get("metadata")?.get("managedFields").filter(|v| !v.is_null())
}

fn without_managed_fields(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    object
}

/// The reset fields: `status` for main-resource writes and `spec` for status writes, on resources with a
/// status subresource.
fn ignored_fields(w: &Write) -> Set {
    let mut ignored = Set::default();
    if w.status_subresource {
        ignored.insert(&[if w.subresource == Some("status") { "f:spec" } else { "f:status" }]);
    }
    ignored
}

fn strip(set: Set) -> Set {
    let mut stripped = Set::default();
    for path in STRIPPED {
        stripped.insert(path);
    }
    set.difference(&stripped)
}

/// Upstream's `IgnoreManagedFieldsTimestampsTransformer`: when the object is unchanged and the entries differ
/// only in their times, the old times are kept so that a no-op write stays a no-op.
fn keep_times_of_a_no_op(old: &Value, new: &Value, encoded: &mut Value) {
    let (Some(Value::Array(before)), Value::Array(after)) = (managed_fields_of(old), &mut *encoded) else { return };
    if before.len() != after.len() || after.is_empty() {
        return;
    }
    let timeless = |e: &Value| {
        let mut e = e.clone();
        if let Some(o) = e.as_object_mut() {
            o.remove("time");
        }
        e
    };
    if before.iter().zip(after.iter()).any(|(b, a)| timeless(b) != timeless(a)) {
        return;
    }
    let comparable = |o: &Value| {
        let mut o = without_managed_fields(o);
        if let Some(meta) = o.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("resourceVersion");
        }
        o
    };
    if comparable(old) != comparable(new) {
        return;
    }
    for (b, a) in before.iter().zip(after.iter_mut()) {
        match (b.get("time"), a.as_object_mut()) {
            (Some(time), Some(a)) => {
                a.insert("time".to_owned(), time.clone());
            }
            (None, Some(a)) => {
                a.remove("time");
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
