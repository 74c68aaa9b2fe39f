//! Pods: upstream's `printPod`, including its status reason logic (init containers, sidecars, waiting and
//! terminated reasons, `Terminating`) and the `3 (2m ago)` restarts form.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{Column, PrintedRow, Printer, age, int, items, name, or_none, text};
use crate::descriptions as d;
use crate::duration::{parse_time, since};

pub const PRINTER: Printer = Printer {
    columns: &[
        Column::name(),
        Column::new("Ready", "string", d::POD_READY),
        Column::new("Status", "string", d::POD_STATUS),
        Column::new("Restarts", "string", d::POD_RESTARTS),
        Column::age(),
        Column::new("IP", "string", d::POD_IP).wide(),
        Column::new("Node", "string", d::POD_NODE_NAME).wide(),
        Column::new("Nominated Node", "string", d::POD_NOMINATED_NODE_NAME).wide(),
        Column::new("Readiness Gates", "string", d::POD_READINESS_GATES).wide(),
    ],
    print: print_pod,
};

fn print_pod(pod: &Value, now: DateTime<Utc>) -> PrintedRow {
    let status = pod_status(pod);
    let restarts = if status.restarts != 0
        && let Some(last) = status.last_restart
    {
        format!("{} ({} ago)", status.restarts, since(Some(last), now))
    } else {
        status.restarts.to_string()
    };
    let conditions = match text(pod, "/status/phase") {
        "Succeeded" => Some(row_completed("Succeeded", "The pod has completed successfully.")),
        "Failed" => Some(row_completed("Failed", "The pod failed.")),
        _ => None,
    };
    let pod_ip = items(pod, "/status/podIPs").first().map(|ip| text(ip, "/ip")).unwrap_or_default();
    let cells = vec![
        json!(name(pod)),
        json!(format!("{}/{}", status.ready, status.total)),
        json!(status.reason),
        json!(restarts),
        json!(age(pod, now)),
        json!(or_none(pod_ip)),
        json!(or_none(text(pod, "/spec/nodeName"))),
        json!(or_none(text(pod, "/status/nominatedNodeName"))),
        json!(readiness_gates(pod)),
    ];
    PrintedRow { cells, conditions }
}

fn row_completed(reason: &str, message: &str) -> Value {
    json!([{"type": "Completed", "status": "True", "reason": reason, "message": message}])
}

/// What `printPod` derives from the container statuses.
#[derive(Debug, PartialEq)]
struct PodStatus {
    reason: String,
    ready: usize,
    total: usize,
    restarts: i64,
    last_restart: Option<DateTime<Utc>>,
}

fn pod_status(pod: &Value) -> PodStatus {
    let phase = text(pod, "/status/phase");
    let mut reason = match text(pod, "/status/reason") {
        "" => phase.to_string(),
        r => r.to_string(),
    };
    for cond in items(pod, "/status/conditions") {
        if text(cond, "/type") == "PodScheduled" && text(cond, "/reason") == "SchedulingGated" {
            reason = "SchedulingGated".to_string();
        }
    }

    let init_specs = items(pod, "/spec/initContainers");
    let is_sidecar = |container_name: &str| {
        init_specs.iter().any(|c| text(c, "/name") == container_name && text(c, "/restartPolicy") == "Always")
    };
    let mut total = items(pod, "/spec/containers").len();
    total += init_specs.iter().filter(|c| text(c, "/restartPolicy") == "Always").count();
    let mut ready = 0;
    let mut restarts = 0;
    let mut last_restart: Option<DateTime<Utc>> = None;
    let mut sidecar_restarts = 0;
    let mut sidecar_last_restart: Option<DateTime<Utc>> = None;

    let mut initializing = false;
    for (i, c) in items(pod, "/status/initContainerStatuses").iter().enumerate() {
        restarts += int(c, "/restartCount");
        let finished = last_termination(c);
        last_restart = later(last_restart, finished);
        let sidecar = is_sidecar(text(c, "/name"));
        if sidecar {
            sidecar_restarts += int(c, "/restartCount");
            sidecar_last_restart = later(sidecar_last_restart, finished);
        }
        let terminated = c.pointer("/state/terminated").filter(|t| t.is_object());
        let waiting_reason = c.pointer("/state/waiting").map(|w| text(w, "/reason"));
        match terminated {
            Some(t) if int(t, "/exitCode") == 0 => continue,
            _ if sidecar && c.get("started").and_then(Value::as_bool) == Some(true) => {
                if c.get("ready").and_then(Value::as_bool) == Some(true) {
                    ready += 1;
                }
                continue;
            }
            Some(t) => {
                reason = match (text(t, "/reason"), int(t, "/signal")) {
                    ("", 0) => format!("Init:ExitCode:{}", int(t, "/exitCode")),
                    ("", signal) => format!("Init:Signal:{signal}"),
                    (r, _) => format!("Init:{r}"),
                };
            }
            None if waiting_reason.is_some_and(|r| !r.is_empty() && r != "PodInitializing") => {
                reason = format!("Init:{}", waiting_reason.unwrap_or_default());
            }
            None => reason = format!("Init:{i}/{}", init_specs.len()),
        }
        initializing = true;
        break;
    }

    if !initializing || condition_true(pod, "Initialized") {
        restarts = sidecar_restarts;
        last_restart = sidecar_last_restart;
        let mut has_running = false;
        for c in items(pod, "/status/containerStatuses").iter().rev() {
            restarts += int(c, "/restartCount");
            last_restart = later(last_restart, last_termination(c));
            let waiting = c.pointer("/state/waiting").filter(|w| w.is_object());
            let terminated = c.pointer("/state/terminated").filter(|t| t.is_object());
            let running = c.pointer("/state/running").is_some_and(Value::is_object);
            if let Some(w) = waiting.filter(|w| !text(w, "/reason").is_empty()) {
                reason = text(w, "/reason").to_string();
            } else if let Some(t) = terminated {
                reason = match (text(t, "/reason"), int(t, "/signal")) {
                    ("", 0) => format!("ExitCode:{}", int(t, "/exitCode")),
                    ("", signal) => format!("Signal:{signal}"),
                    (r, _) => r.to_string(),
                };
            } else if c.get("ready").and_then(Value::as_bool) == Some(true) && running {
                has_running = true;
                ready += 1;
            }
        }
        // A pod whose last container completed but which still has a running one is not "Completed".
        if reason == "Completed" && has_running {
            let pod_ready = items(pod, "/status/conditions")
                .iter()
                .any(|c| text(c, "/type") == "Ready" && text(c, "/status") == "True");
            reason = if pod_ready { "Running" } else { "NotReady" }.to_string();
        }
    }

    let deleting = pod.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null());
    if deleting && text(pod, "/status/reason") == "NodeLost" {
        reason = "Unknown".to_string();
    } else if deleting && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".to_string();
    }
    PodStatus { reason, ready, total, restarts, last_restart }
}

/// `lastState.terminated.finishedAt` of a container status.
fn last_termination(status: &Value) -> Option<DateTime<Utc>> {
    parse_time(status.pointer("/lastState/terminated/finishedAt"))
}

fn later(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// Whether the pod has condition `ty` with status `True` (the first condition of that type decides).
fn condition_true(pod: &Value, ty: &str) -> bool {
    items(pod, "/status/conditions")
        .iter()
        .find(|c| text(c, "/type") == ty)
        .is_some_and(|c| text(c, "/status") == "True")
}

/// `true/total` over `spec.readinessGates`, `<none>` without gates.
fn readiness_gates(pod: &Value) -> String {
    let gates = items(pod, "/spec/readinessGates");
    if gates.is_empty() {
        return "<none>".to_string();
    }
    let met = gates.iter().filter(|g| condition_true(pod, text(g, "/conditionType"))).count();
    format!("{met}/{}", gates.len())
}

#[cfg(test)]
mod tests;
