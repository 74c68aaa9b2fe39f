//! Server-side `meta.k8s.io/v1` Tables, so that `kubectl get` prints the same columns against Skiff as against
//! upstream Kubernetes.
//!
//! The API server hands [`table`] the objects of a list, watch event or single GET exactly as stored (full JSON
//! with `apiVersion`/`kind`/`metadata`/`spec`/`status`) together with the [`ResourceType`] they belong to. The
//! resource picks a printer in [`printers`] (a port of upstream's `pkg/printers/internalversion/printers.go`):
//! a fixed list of column definitions plus a function from one object to its cells. Like upstream's API
//! server, every row carries all cells, the `-o wide` (priority 1) ones included; kubectl decides what to
//! show. Each row then gets the object in the form `includeObject` asks for: `PartialObjectMetadata` by default,
//! the full object, or nothing. Ages are rendered against [`TableOptions::now`] with upstream's
//! `HumanDuration` ([`duration`]), which keeps the whole crate a pure function of its inputs.

pub mod descriptions;
pub mod duration;
pub mod printers;
pub mod selector;

use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use skiff_api::ResourceType;

/// What each row's `object` holds: the `includeObject` query parameter of a Table request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncludeObject {
    /// `None`: rows carry cells only.
    None,
    /// `Metadata` (the default): a `PartialObjectMetadata` with the object's full `metadata`.
    #[default]
    Metadata,
    /// `Object`: the whole object (kubectl asks for this with `--sort-by`).
    Object,
}

/// Errors in a Table request's parameters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// Upstream answers this with 400 BadRequest.
    #[error("unrecognized includeObject value: {0:?}")]
    UnknownIncludeObject(String),
}

impl FromStr for IncludeObject {
    type Err = TableError;

    /// Parses the query parameter's value; the empty string means the default, as upstream.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "None" => Ok(Self::None),
            "Metadata" | "" => Ok(Self::Metadata),
            "Object" => Ok(Self::Object),
            other => Err(TableError::UnknownIncludeObject(other.to_string())),
        }
    }
}

/// How to build one Table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableOptions {
    pub include_object: IncludeObject,
    /// `metadata.resourceVersion` of the Table: the list's resourceVersion, or the object's for a single GET or a
    /// watch event. Omitted when empty.
    pub resource_version: String,
    /// `metadata.continue` of the Table, for paged lists.
    pub continue_token: Option<String>,
    /// The instant ages are measured from.
    pub now: DateTime<Utc>,
    /// Leave out the column definitions (`"columnDefinitions": null`). Upstream's watch sends them with the first
    /// event only and sets this for every later event; kubectl keeps the columns it saw first.
    pub no_headers: bool,
}

impl Default for TableOptions {
    fn default() -> Self {
        Self {
            include_object: IncludeObject::Metadata,
            resource_version: String::new(),
            continue_token: None,
            now: Utc::now(),
            no_headers: false,
        }
    }
}

/// Builds the `meta.k8s.io/v1` Table for `objects` (stored objects of resource `rt`), one row per object.
pub fn table(rt: &ResourceType, objects: &[Value], opts: &TableOptions) -> Value {
    let printer = printers::printer_for(rt);
    let columns = if opts.no_headers {
        Value::Null
    } else {
        Value::Array(printer.columns.iter().map(printers::Column::to_json).collect())
    };
    let rows: Vec<Value> = objects
        .iter()
        .map(|obj| {
            let printed = (printer.print)(obj, opts.now);
            let mut row = Map::new();
            row.insert("cells".into(), Value::Array(printed.cells));
            if let Some(conditions) = printed.conditions {
                row.insert("conditions".into(), conditions);
            }
            if let Some(object) = row_object(rt, obj, opts.include_object) {
                row.insert("object".into(), object);
            }
            Value::Object(row)
        })
        .collect();
    let mut metadata = Map::new();
    if !opts.resource_version.is_empty() {
        metadata.insert("resourceVersion".into(), Value::String(opts.resource_version.clone()));
    }
    if let Some(token) = opts.continue_token.as_ref().filter(|t| !t.is_empty()) {
        metadata.insert("continue".into(), Value::String(token.clone()));
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": columns,
        "rows": rows,
    })
}

/// The `object` of a row, as `includeObject` asks.
fn row_object(rt: &ResourceType, obj: &Value, include: IncludeObject) -> Option<Value> {
    match include {
        IncludeObject::None => None,
        IncludeObject::Metadata => {
            let metadata = obj.get("metadata").cloned().unwrap_or_else(|| json!({}));
            Some(json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": metadata}))
        }
        IncludeObject::Object => {
            let mut full = obj.clone();
            if let Value::Object(map) = &mut full {
                map.entry("apiVersion").or_insert_with(|| Value::String(rt.api_version()));
                map.entry("kind").or_insert_with(|| Value::String(rt.kind.to_string()));
            }
            Some(full)
        }
    }
}

#[cfg(test)]
mod tests;
