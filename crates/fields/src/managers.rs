//! The `metadata.managedFields` list, decoded into one field set per manager (upstream's `Managed`: a
//! `fieldpath.ManagedFields` plus times), and encoded back in upstream's order.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::set::Set;
use crate::{FieldsError, Operation};

/// Upstream's `DefaultMaxUpdateManagers`: past this many Update entries, the oldest are merged.
pub(crate) const MAX_UPDATE_MANAGERS: usize = 10;
/// The manager the oldest Update entries are merged into (`capmanagers.go`).
const ANCIENT_CHANGES: &str = "ancient-changes";

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    pub manager: String,
    pub operation: Operation,
    pub api_version: String,
    pub subresource: String,
    pub time: Option<String>,
    pub set: Set,
}

impl Entry {
    /// Upstream's `BuildManagerIdentifier`: the entry without its fields and time, and without its
    /// apiVersion when it is an Apply (an applier has one entry whatever version it applies).
    pub(crate) fn identifier(&self) -> String {
        let mut id = Map::new();
        let mut put = |k: &str, v: &str| {
            if !v.is_empty() {
                id.insert(k.to_owned(), Value::String(v.to_owned()));
            }
        };
        put("manager", &self.manager);
        put("operation", self.operation.as_str());
        if self.operation == Operation::Update {
            put("apiVersion", &self.api_version);
        }
        put("subresource", &self.subresource);
        // Go marshals the struct fields in declaration order; the key only needs to be stable and unique.
        let order = ["manager", "operation", "apiVersion", "subresource"];
        let parts: Vec<String> = order
            .iter()
            .filter_map(|k| id.get(*k).map(|v| format!("{}:{v}", Value::String((*k).to_owned()))))
            .collect();
        format!("{{{}}}", parts.join(","))
    }

    fn seconds(&self) -> i64 {
        self.time.as_deref().and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()).map_or(0, |t| t.timestamp())
    }

    fn to_json(&self) -> Value {
        let mut entry = json!({
            "manager": self.manager,
            "operation": self.operation.as_str(),
            "apiVersion": self.api_version,
            "fieldsType": "FieldsV1",
            "fieldsV1": self.set.to_fields_v1(),
        });
        if let Some(time) = &self.time {
            entry["time"] = Value::String(time.clone());
        }
        if !self.subresource.is_empty() {
            entry["subresource"] = Value::String(self.subresource.clone());
        }
        entry
    }
}

/// Every manager's entry, by identifier.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Managed {
    pub entries: BTreeMap<String, Entry>,
}

impl Managed {
    /// Upstream's `DecodeManagedFields`: any invalid entry fails the whole list.
    pub(crate) fn decode(list: &Value) -> Result<Managed, FieldsError> {
        let Value::Array(items) = list else { return Err(FieldsError::NotAList) };
        let mut managed = Managed::default();
        for (i, item) in items.iter().enumerate() {
            let text = |k: &str| item.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
            let operation = match text("operation").as_str() {
                "Apply" => Operation::Apply,
                "Update" => Operation::Update,
                _ => return Err(FieldsError::Operation),
            };
            let api_version = text("apiVersion");
            if api_version.is_empty() {
                return Err(FieldsError::ApiVersion);
            }
            match text("fieldsType").as_str() {
                "FieldsV1" => {}
                "" => return Err(FieldsError::MissingFieldsType(i)),
                other => return Err(FieldsError::FieldsType(other.to_owned(), i)),
            }
            let set = match item.get("fieldsV1") {
                None | Some(Value::Null) => Set::default(),
                Some(fields) => Set::from_fields_v1(fields)?,
            };
            let time = item.get("time").and_then(Value::as_str).map(str::to_owned);
            let entry =
                Entry { manager: text("manager"), operation, api_version, subresource: text("subresource"), time, set };
            managed.entries.insert(entry.identifier(), entry);
        }
        Ok(managed)
    }

    /// Takes `changed` and `removed` away from every entry but `except`, and drops the entries left empty
    /// (the loop at the end of upstream's `Updater.update`, always forced: conflicts are the caller's).
    pub(crate) fn lose(&mut self, changed: &Set, removed: &Set, except: Option<&str>) {
        for (id, entry) in self.entries.iter_mut() {
            if Some(id.as_str()) != except {
                entry.set = entry.set.difference(changed).difference(removed);
            }
        }
        self.entries.retain(|_, e| !e.set.is_empty());
    }

    /// Merges the oldest Update entries into `ancient-changes` buckets, one per apiVersion, until at most
    /// `max` Update entries are left (`capmanagers.go`).
    pub(crate) fn cap_updates(&mut self, max: usize) {
        let mut updaters: Vec<(i64, String)> = self
            .entries
            .iter()
            .filter(|(_, e)| e.operation == Operation::Update)
            .map(|(id, e)| (e.seconds(), id.clone()))
            .collect();
        if updaters.len() <= max {
            return;
        }
        updaters.sort();
        let mut length = updaters.len();
        let mut first_of_version: BTreeMap<String, String> = BTreeMap::new();
        for (_, id) in updaters {
            if length <= max {
                break;
            }
            let Some(entry) = self.entries.get(&id).cloned() else { continue };
            let Some(first) = first_of_version.get(&entry.api_version) else {
                first_of_version.insert(entry.api_version.clone(), id);
                continue;
            };
            let mut bucket = Entry {
                manager: ANCIENT_CHANGES.to_owned(),
                operation: Operation::Update,
                api_version: entry.api_version.clone(),
                subresource: String::new(),
                time: None,
                set: Set::default(),
            };
            let bucket_id = bucket.identifier();
            if !self.entries.contains_key(&bucket_id)
                && let Some(first) = self.entries.remove(first)
            {
                bucket.set = first.set;
                self.entries.insert(bucket_id.clone(), bucket);
            }
            if let Some(bucket) = self.entries.get_mut(&bucket_id) {
                bucket.set.union(&entry.set);
                bucket.time = entry.time.clone();
            }
            self.entries.remove(&id);
            length -= 1;
        }
    }

    /// The list in upstream's order (`sortEncodedManagedFields`): operation (`Apply` before `Update`), time,
    /// manager, apiVersion, subresource.
    pub(crate) fn encode(&self) -> Value {
        let mut entries: Vec<&Entry> = self.entries.values().collect();
        entries.sort_by(|p, q| {
            (p.operation.as_str(), p.seconds(), &p.manager, &p.api_version, &p.subresource).cmp(&(
                q.operation.as_str(),
                q.seconds(),
                &q.manager,
                &q.api_version,
                &q.subresource,
            ))
        });
        Value::Array(entries.into_iter().map(Entry::to_json).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(manager: &str, time: &str, fields: Value) -> Value {
        json!({"manager": manager, "operation": "Update", "apiVersion": "v1", "time": time,
            "fieldsType": "FieldsV1", "fieldsV1": fields})
    }

    #[test]
    fn decode_rejects_bad_entries() {
        let bad_op = json!([{"manager": "m", "operation": "Patch", "apiVersion": "v1", "fieldsType": "FieldsV1"}]);
        assert_eq!(Managed::decode(&bad_op), Err(FieldsError::Operation));
        let no_type = json!([{"manager": "m", "operation": "Apply", "apiVersion": "v1"}]);
        assert_eq!(Managed::decode(&no_type), Err(FieldsError::MissingFieldsType(0)));
        let no_version = json!([{"manager": "m", "operation": "Apply", "fieldsType": "FieldsV1"}]);
        assert_eq!(Managed::decode(&no_version), Err(FieldsError::ApiVersion));
        assert_eq!(Managed::decode(&json!({})), Err(FieldsError::NotAList));
    }

    #[test]
    fn apply_identifiers_ignore_the_api_version() {
        let list = json!([
            {"manager": "m", "operation": "Apply", "apiVersion": "v1", "fieldsType": "FieldsV1", "fieldsV1": {"f:a": {}}},
            {"manager": "m", "operation": "Update", "apiVersion": "v1", "fieldsType": "FieldsV1", "fieldsV1": {"f:b": {}}},
        ]);
        let managed = Managed::decode(&list).unwrap();
        let ids: Vec<&String> = managed.entries.keys().collect();
        assert_eq!(
            ids,
            [r#"{"manager":"m","operation":"Apply"}"#, r#"{"manager":"m","operation":"Update","apiVersion":"v1"}"#]
        );
        // Apply sorts first.
        assert_eq!(managed.encode()[0]["operation"], "Apply");
    }

    #[test]
    fn caps_update_entries_by_merging_the_oldest() {
        let list: Vec<Value> = (0..12)
            .map(|i| entry(&format!("m{i:02}"), &format!("2026-01-01T00:00:{i:02}Z"), json!({format!("f:f{i}"): {}})))
            .collect();
        let mut managed = Managed::decode(&Value::Array(list)).unwrap();
        managed.cap_updates(MAX_UPDATE_MANAGERS);
        let encoded = managed.encode();
        assert_eq!(encoded.as_array().unwrap().len(), 10);
        let ancient = &encoded[0];
        assert_eq!(ancient["manager"], "ancient-changes");
        assert_eq!(ancient["fieldsV1"], json!({"f:f0": {}, "f:f1": {}, "f:f2": {}}));
        assert_eq!(ancient["time"], "2026-01-01T00:00:02Z");
        assert_eq!(encoded[1]["manager"], "m03");
    }
}
