//! One printer per kind: the column definitions and the cells of one object, ported from upstream's
//! `pkg/printers/internalversion/printers.go` (`AddHandlers` and the `print*` functions) as the API server runs
//! them, i.e. always "wide": rows carry the priority-1 cells too. Kinds without a printer get upstream's default
//! table (`Name`, `Created At`).

mod apps;
mod cluster;
mod config;
mod event;
mod network;
mod pod;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use skiff_api::ResourceType;

use crate::descriptions as d;
use crate::duration::{parse_time, since};

/// One `TableColumnDefinition`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    /// `string`, `integer`, `date`, …
    pub ty: &'static str,
    /// `name` for the column kubectl prefixes with `kind/` (`get all`); usually empty.
    pub format: &'static str,
    pub description: &'static str,
    /// 0 = always shown, 1 = `-o wide` only.
    pub priority: u8,
}

impl Column {
    pub const fn new(name: &'static str, ty: &'static str, description: &'static str) -> Self {
        Self { name, ty, format: "", description, priority: 0 }
    }

    /// The `Name` column every printer starts with.
    pub const fn name() -> Self {
        Self { name: "Name", ty: "string", format: "name", description: d::NAME, priority: 0 }
    }

    /// The `Age` column (`metadata.creationTimestamp`).
    pub const fn age() -> Self {
        Self::new("Age", "string", d::CREATION_TIMESTAMP)
    }

    pub const fn wide(self) -> Self {
        Self { priority: 1, ..self }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "type": self.ty,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        })
    }
}

/// The cells of one row, and the row conditions upstream sets (only pods have them).
#[derive(Debug, Clone, PartialEq)]
pub struct PrintedRow {
    pub cells: Vec<Value>,
    pub conditions: Option<Value>,
}

impl From<Vec<Value>> for PrintedRow {
    fn from(cells: Vec<Value>) -> Self {
        Self { cells, conditions: None }
    }
}

/// A kind's columns and its row function.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    pub columns: &'static [Column],
    pub print: fn(&Value, DateTime<Utc>) -> PrintedRow,
}

/// The printer for a resource, by group and kind.
pub fn printer_for(rt: &ResourceType) -> Printer {
    match (rt.group, rt.kind) {
        ("", "Pod") => pod::PRINTER,
        ("", "Service") => network::SERVICE,
        ("", "Endpoints") => network::ENDPOINTS,
        ("discovery.k8s.io", "EndpointSlice") => network::ENDPOINT_SLICE,
        ("apps", "Deployment") => apps::DEPLOYMENT,
        ("apps", "ReplicaSet") => apps::REPLICA_SET,
        ("", "Namespace") => cluster::NAMESPACE,
        ("", "Node") => cluster::NODE,
        ("coordination.k8s.io", "Lease") => cluster::LEASE,
        ("", "Event") | ("events.k8s.io", "Event") => event::PRINTER,
        ("", "ConfigMap") => config::CONFIG_MAP,
        ("", "Secret") => config::SECRET,
        ("", "ServiceAccount") => config::SERVICE_ACCOUNT,
        _ => DEFAULT,
    }
}

/// Upstream's `defaultTableConvertor`: the name and the creation time as an RFC 3339 date.
pub const DEFAULT: Printer = Printer {
    columns: &[Column::name(), Column::new("Created At", "date", d::CREATION_TIMESTAMP)],
    print: print_default,
};

fn print_default(obj: &Value, _now: DateTime<Utc>) -> PrintedRow {
    let created = parse_time(obj.pointer("/metadata/creationTimestamp"))
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_else(|| "0001-01-01T00:00:00Z".to_string());
    vec![json!(name(obj)), json!(created)].into()
}

// Field access that reads missing or mistyped fields as Go's zero values.

/// `metadata.name`.
fn name(obj: &Value) -> &str {
    text(obj, "/metadata/name")
}

/// The age cell: time since `metadata.creationTimestamp`.
fn age(obj: &Value, now: DateTime<Utc>) -> String {
    since(parse_time(obj.pointer("/metadata/creationTimestamp")), now)
}

/// A string at a JSON pointer, `""` when absent.
fn text<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

/// An integer at a JSON pointer, 0 when absent.
fn int(v: &Value, pointer: &str) -> i64 {
    v.pointer(pointer).and_then(Value::as_i64).unwrap_or_default()
}

/// The items of an array at a JSON pointer (none when absent).
fn items<'a>(v: &'a Value, pointer: &str) -> &'a [Value] {
    v.pointer(pointer).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
}

/// The number of entries of an object or array at a JSON pointer.
fn len(v: &Value, pointer: &str) -> i64 {
    let n = match v.pointer(pointer) {
        Some(Value::Object(m)) => m.len(),
        Some(Value::Array(a)) => a.len(),
        _ => 0,
    };
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// `<none>` for an empty string (upstream's usual placeholder).
fn or_none(s: &str) -> String {
    if s.is_empty() { "<none>".to_string() } else { s.to_string() }
}

/// Helpers shared by the printers' tests.
#[cfg(test)]
pub(crate) mod tests {
    use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};

    /// The fixed "now" of every test: 2024-05-01T12:00:00Z.
    pub fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_714_564_800, 0).unwrap_or_default()
    }

    /// The RFC 3339 timestamp `secs` seconds before [`now`].
    pub fn at(secs: i64) -> String {
        (now() - TimeDelta::seconds(secs)).to_rfc3339_opts(SecondsFormat::Secs, true)
    }

    #[test]
    fn test_clock_is_fixed() {
        assert_eq!(at(0), "2024-05-01T12:00:00Z");
        assert_eq!(at(90), "2024-05-01T11:58:30Z");
    }
}
