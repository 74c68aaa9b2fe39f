//! Version conversion between what is stored and what a client sees.
//!
//! Every kind is stored in the one version it is served in, except Events: core `v1` Events and
//! `events.k8s.io/v1` Events are the same objects (as upstream), stored in the core shape and renamed field by
//! field on the way in and out.

use serde_json::{Map, Value};
use skiff_api::{ResourceType, object};

/// `events.k8s.io/v1` field ↔ core `v1` field.
const EVENT_FIELDS: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

fn is_new_event(rt: &ResourceType) -> bool {
    rt.group == "events.k8s.io" && rt.plural == "events"
}

fn rename(obj: Value, pairs: impl Iterator<Item = (&'static str, &'static str)>) -> Value {
    let Value::Object(mut map) = obj else { return obj };
    let mut out = Map::new();
    let renames: Vec<_> = pairs.collect();
    for (k, v) in std::mem::take(&mut map) {
        let new = renames.iter().find(|(from, _)| *from == k).map_or(k, |(_, to)| (*to).to_string());
        out.insert(new, v);
    }
    Value::Object(out)
}

/// The resource type objects are stored (and admitted) as.
pub fn storage_type(rt: &'static ResourceType) -> &'static ResourceType {
    if is_new_event(rt) { skiff_api::resource::lookup("", "v1", "events").unwrap_or(rt) } else { rt }
}

/// The stored object as the client's version shows it, with `apiVersion` and `kind` set.
pub fn for_client(rt: &ResourceType, stored: Value) -> Value {
    let mut obj =
        if is_new_event(rt) { rename(stored, EVENT_FIELDS.iter().map(|(new, old)| (*old, *new))) } else { stored };
    object::set_type_meta(&mut obj, &rt.api_version(), rt.kind);
    obj
}

/// A client's object in the stored version.
pub fn for_storage(rt: &ResourceType, obj: Value) -> Value {
    let mut obj = if is_new_event(rt) { rename(obj, EVENT_FIELDS.iter().copied()) } else { obj };
    if is_new_event(rt) {
        object::set_type_meta(&mut obj, "v1", "Event");
    } else {
        object::set_type_meta(&mut obj, &rt.api_version(), rt.kind);
    }
    obj
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_round_trip_between_versions() {
        let rt = skiff_api::resource::lookup("events.k8s.io", "v1", "events").unwrap();
        let new = json!({"metadata": {"name": "e"}, "regarding": {"kind": "Pod"}, "note": "hi", "reason": "Started"});
        let stored = for_storage(rt, new);
        assert_eq!(stored["involvedObject"]["kind"], "Pod");
        assert_eq!(stored["message"], "hi");
        assert_eq!(stored["apiVersion"], "v1");
        let back = for_client(rt, stored);
        assert_eq!(back["note"], "hi");
        assert_eq!(back["apiVersion"], "events.k8s.io/v1");
        assert_eq!(back["reason"], "Started");
    }
}
