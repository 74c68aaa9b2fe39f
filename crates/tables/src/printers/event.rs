//! Events: upstream's `printEvent`, which serves both `v1` and `events.k8s.io/v1` (upstream prints both from
//! the one internal type). Objects are read in either shape: core `involvedObject`/`message`/`count`/`source`/
//! `firstTimestamp`/`lastTimestamp`/`reportingComponent`, or events.k8s.io `regarding`/`note`/
//! `deprecatedCount`/`deprecatedSource`/`deprecatedFirstTimestamp`/`deprecatedLastTimestamp`/`reportingController`.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{Column, PrintedRow, Printer, name, text};
use crate::descriptions as d;
use crate::duration::{parse_time, since};

pub const PRINTER: Printer = Printer {
    columns: &[
        Column::new("Last Seen", "string", d::EVENT_LAST_TIMESTAMP),
        Column::new("Type", "string", d::EVENT_TYPE),
        Column::new("Reason", "string", d::EVENT_REASON),
        Column::new("Object", "string", d::EVENT_INVOLVED_OBJECT),
        Column::new("Subobject", "string", d::EVENT_FIELD_PATH).wide(),
        Column::new("Source", "string", d::EVENT_SOURCE).wide(),
        Column::new("Message", "string", d::EVENT_MESSAGE),
        Column::new("First Seen", "string", d::EVENT_FIRST_TIMESTAMP).wide(),
        Column::new("Count", "string", d::EVENT_COUNT).wide(),
        Column::name().wide(),
    ],
    print: print_event,
};

/// The first of `pointers` that is present and not null.
fn either<'a>(ev: &'a Value, pointers: &[&str]) -> Option<&'a Value> {
    pointers.iter().find_map(|p| ev.pointer(p).filter(|v| !v.is_null()))
}

fn either_text<'a>(ev: &'a Value, pointers: &[&str]) -> &'a str {
    pointers.iter().map(|p| text(ev, p)).find(|s| !s.is_empty()).unwrap_or_default()
}

fn print_event(ev: &Value, now: DateTime<Utc>) -> PrintedRow {
    let first_timestamp = match parse_time(either(ev, &["/firstTimestamp", "/deprecatedFirstTimestamp"])) {
        Some(t) => since(Some(t), now),
        None => since(parse_time(ev.get("eventTime")), now),
    };
    let mut last_timestamp = match parse_time(either(ev, &["/lastTimestamp", "/deprecatedLastTimestamp"])) {
        Some(t) => since(Some(t), now),
        None => first_timestamp.clone(),
    };
    let mut count = either(ev, &["/count", "/deprecatedCount"]).and_then(Value::as_i64).unwrap_or_default();
    if let Some(series) = ev.get("series").filter(|s| s.is_object()) {
        last_timestamp = since(parse_time(series.get("lastObservedTime")), now);
        count = series.get("count").and_then(Value::as_i64).unwrap_or_default();
    } else if count == 0 {
        // Singleton events of the new API carry no count.
        count = 1;
    }

    let regarding = either(ev, &["/involvedObject", "/regarding"]).unwrap_or(&Value::Null);
    let kind = text(regarding, "/kind").to_lowercase();
    let target = match text(regarding, "/name") {
        "" => kind,
        object_name => format!("{kind}/{object_name}"),
    };
    let component = either_text(ev, &["/source/component", "/deprecatedSource/component"]);
    let host = either_text(ev, &["/source/host", "/deprecatedSource/host"]);
    let component = if component.is_empty() {
        either_text(ev, &["/reportingComponent", "/reportingController"])
    } else {
        component
    };
    let host = if host.is_empty() { text(ev, "/reportingInstance") } else { host };
    let source = if host.is_empty() { component.to_string() } else { format!("{component}, {host}") };
    let message = either_text(ev, &["/message", "/note"]).trim();

    vec![
        json!(last_timestamp),
        json!(text(ev, "/type")),
        json!(text(ev, "/reason")),
        json!(target),
        json!(text(regarding, "/fieldPath")),
        json!(source),
        json!(message),
        json!(first_timestamp),
        json!(count),
        json!(name(ev)),
    ]
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::printers::tests::{at, now};

    #[test]
    fn core_event_cells() {
        let ev = json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": "web-1.17c8a", "namespace": "default", "creationTimestamp": at(600)},
            "involvedObject": {"kind": "Pod", "name": "web-1", "namespace": "default",
                               "fieldPath": "spec.containers{nginx}"},
            "reason": "Pulled", "type": "Normal",
            "message": "Successfully pulled image \"nginx:1.27\"\n",
            "source": {"component": "kubelet", "host": "node-1"},
            "firstTimestamp": at(600), "lastTimestamp": at(30), "count": 4
        });
        assert_eq!(
            print_event(&ev, now()).cells,
            vec![
                json!("30s"),
                json!("Normal"),
                json!("Pulled"),
                json!("pod/web-1"),
                json!("spec.containers{nginx}"),
                json!("kubelet, node-1"),
                json!("Successfully pulled image \"nginx:1.27\""),
                json!("10m"),
                json!(4),
                json!("web-1.17c8a")
            ]
        );
    }

    #[test]
    fn new_api_event_uses_event_time_series_and_reporting_controller() {
        let ev = json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "web.abc", "namespace": "default"},
            "eventTime": "2024-05-01T11:55:00.000000Z",
            "series": {"count": 7, "lastObservedTime": "2024-05-01T11:59:00.000000Z"},
            "regarding": {"kind": "Deployment", "name": "web"},
            "reason": "ScalingReplicaSet", "type": "Normal", "note": "Scaled up replica set web-7d4b9c to 3",
            "reportingController": "deployment-controller", "reportingInstance": ""
        });
        let cells = print_event(&ev, now()).cells;
        assert_eq!(cells[0], json!("60s"));
        assert_eq!(cells[3], json!("deployment/web"));
        assert_eq!(cells[5], json!("deployment-controller"));
        assert_eq!(cells[6], json!("Scaled up replica set web-7d4b9c to 3"));
        assert_eq!(cells[7], json!("5m"));
        assert_eq!(cells[8], json!(7));
    }

    #[test]
    fn singleton_event_without_timestamps() {
        let ev = json!({"metadata": {"name": "x"}, "involvedObject": {"kind": "Node"}, "type": "Warning",
                        "reason": "Rebooted", "message": "rebooted", "reportingComponent": "kubelet",
                        "reportingInstance": "node-1"});
        let cells = print_event(&ev, now()).cells;
        assert_eq!(cells[0], json!("<unknown>"));
        assert_eq!(cells[3], json!("node"));
        assert_eq!(cells[5], json!("kubelet, node-1"));
        assert_eq!(cells[7], json!("<unknown>"));
        assert_eq!(cells[8], json!(1));
    }

    #[test]
    fn columns_put_wide_ones_between_the_default_ones() {
        let cols: Vec<(&str, u8)> = PRINTER.columns.iter().map(|c| (c.name, c.priority)).collect();
        assert_eq!(
            cols,
            [
                ("Last Seen", 0),
                ("Type", 0),
                ("Reason", 0),
                ("Object", 0),
                ("Subobject", 1),
                ("Source", 1),
                ("Message", 0),
                ("First Seen", 1),
                ("Count", 1),
                ("Name", 1)
            ]
        );
        assert_eq!(PRINTER.columns[9].format, "name");
    }
}
