//! The pod's status as the kubelet reports it: phase, IPs, conditions and one `containerStatuses` entry per
//! container, patched only when it differs from what the API has.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use skiff_runtime::State;

use super::{MANAGER, PodRuntime};

pub(crate) fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

pub(crate) fn state_json(state: &State) -> Value {
    match state {
        State::Running { started_at, .. } => json!({"running": {"startedAt": rfc3339(*started_at)}}),
        State::Exited { code, started_at, finished_at, signal, .. } => json!({"terminated": {
            "exitCode": code,
            "signal": signal,
            "reason": if *code == 0 { "Completed" } else { "Error" },
            "startedAt": rfc3339(*started_at),
            "finishedAt": rfc3339(*finished_at),
        }}),
        State::Unknown => json!({"waiting": {"reason": "ContainerCreating"}}),
    }
}

/// Reports the pod's status when it differs from what the API has.
pub(crate) async fn report_status(
    rt: &PodRuntime,
    pod: &Pod,
    ip: &str,
    policy: &str,
    mut statuses: Vec<Value>,
) -> anyhow::Result<()> {
    // The kubelet reports containerStatuses sorted by name, whatever the spec's order.
    statuses.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    let running = statuses.iter().filter(|s| s["state"].get("running").is_some()).count();
    let terminated: Vec<i64> = statuses.iter().filter_map(|s| s["state"]["terminated"]["exitCode"].as_i64()).collect();
    let all_ready = !statuses.is_empty() && statuses.iter().all(|s| s["ready"] == true);
    let phase = if running > 0 || policy == "Always" && terminated.len() < statuses.len() {
        if running > 0 { "Running" } else { "Pending" }
    } else if !statuses.is_empty() && terminated.len() == statuses.len() {
        if terminated.iter().all(|c| *c == 0) {
            "Succeeded"
        } else if policy == "Never" {
            "Failed"
        } else {
            "Running"
        }
    } else {
        "Pending"
    };
    let old = pod.status.clone().unwrap_or_default();
    let now = rfc3339(chrono::Utc::now());
    let flag = |b: bool| if b { "True" } else { "False" };
    let condition = |kind: &str, value: &str| {
        let since = old
            .conditions
            .as_ref()
            .and_then(|cs| cs.iter().find(|c| c.type_ == kind && c.status == value))
            .and_then(|c| c.last_transition_time.as_ref())
            .map(|t| t.0.to_string())
            .unwrap_or_else(|| now.clone());
        json!({"type": kind, "status": value, "lastProbeTime": null, "lastTransitionTime": since})
    };
    let unready: Vec<&str> =
        statuses.iter().filter(|s| s["ready"] != true).filter_map(|s| s["name"].as_str()).collect();
    let readiness = |kind: &str| {
        let mut c = condition(kind, flag(all_ready));
        if !all_ready {
            c["reason"] = json!("ContainersNotReady");
            c["message"] = json!(format!("containers with unready status: [{}]", unready.join(" ")));
        }
        c
    };
    let status = json!({
        "phase": phase,
        "hostIP": rt.node_ip,
        "hostIPs": [{"ip": rt.node_ip}],
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "startTime": old.start_time.as_ref().map(|t| t.0.to_string()).unwrap_or_else(|| now.clone()),
        "qosClass": old.qos_class.clone().unwrap_or_else(|| "BestEffort".into()),
        "conditions": [
            condition("PodReadyToStartContainers", "True"),
            condition("Initialized", "True"),
            readiness("Ready"),
            readiness("ContainersReady"),
            condition("PodScheduled", "True"),
        ],
        "containerStatuses": statuses,
    });
    let current = serde_json::to_value(&old)?;
    let differs = ["phase", "podIP", "conditions", "containerStatuses"].iter().any(|k| {
        let strip = |v: &Value| {
            let mut v = v.clone();
            if let Some(list) = v.as_array_mut() {
                for item in list {
                    if let Some(m) = item.as_object_mut() {
                        m.remove("lastTransitionTime");
                        m.remove("lastProbeTime");
                    }
                }
            }
            v
        };
        strip(&current[*k]) != strip(&status[*k])
    });
    if differs {
        let pods: Api<Pod> = Api::namespaced(rt.client.clone(), pod.metadata.namespace.as_deref().unwrap_or("default"));
        let name = pod.metadata.name.clone().unwrap_or_default();
        pods.patch_status(&name, &PatchParams::apply(MANAGER), &Patch::Merge(json!({"status": status}))).await?;
    }
    Ok(())
}
