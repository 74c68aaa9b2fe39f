//! The objects of the controllers scenario: one Ready Node, Services `s-N` selecting `app=s-N`, and pods
//! `s-N-K` bound straight to the Node, whose status the benchmark writes as a kubelet would.

use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{Value, json};

use crate::BenchError;

/// The namespace everything of the scenario lives in.
pub const NAMESPACE: &str = "bench-ctl";
/// The one Node the pods are bound to.
pub const NODE_NAME: &str = "bench-node";

/// The name of Service number `service` (also its pods' `app` label).
pub fn service_name(service: usize) -> String {
    format!("s-{service}")
}

/// The name of pod `replica` of Service `service`.
pub fn pod_name(service: usize, replica: usize) -> String {
    format!("s-{service}-{replica}")
}

/// The IP of pod number `index` (over all pods): unique within 10.42.0.0/16 for the first 65,024 pods; `None`
/// beyond that.
pub fn pod_ip(index: usize) -> Option<String> {
    let (third, fourth) = (index / 254, index % 254 + 1);
    (third < 256).then(|| format!("10.42.{third}.{fourth}"))
}

/// The Node, before its status is written.
pub fn node() -> Result<Node, BenchError> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": NODE_NAME, "labels": {"kubernetes.io/hostname": NODE_NAME}},
    }))?)
}

/// The merge patch of the Node's status a kubelet would write: Ready, with an InternalIP.
pub fn node_status() -> Value {
    json!({"status": {
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "skiff-bench"}],
        "addresses": [
            {"type": "InternalIP", "address": "10.99.0.1"},
            {"type": "Hostname", "address": NODE_NAME},
        ],
    }})
}

/// Pod `replica` of Service `service`, already bound to [`NODE_NAME`] (so the scheduler has nothing to do).
pub fn pod(service: usize, replica: usize) -> Result<Pod, BenchError> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name(service, replica),
            "namespace": NAMESPACE,
            "labels": {"app": service_name(service)},
        },
        "spec": {
            "nodeName": NODE_NAME,
            "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10", "ports": [{"containerPort": 8080}]}],
        },
    }))?)
}

/// The merge patch of a pod's status a kubelet writes when the pod runs at `ip` and its readiness is `ready`.
pub fn pod_status(ip: &str, ready: bool) -> Value {
    let flag = if ready { "True" } else { "False" };
    json!({"status": {
        "phase": "Running",
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "hostIP": "10.99.0.1",
        "conditions": [
            {"type": "Ready", "status": flag},
            {"type": "ContainersReady", "status": flag},
        ],
    }})
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn pod_ips_are_unique_and_valid() {
        let ips: HashSet<String> = (0..10_000).filter_map(pod_ip).collect();
        assert_eq!(ips.len(), 10_000);
        assert_eq!(pod_ip(0).as_deref(), Some("10.42.0.1"));
        assert_eq!(pod_ip(253).as_deref(), Some("10.42.0.254"));
        assert_eq!(pod_ip(254).as_deref(), Some("10.42.1.1"));
        assert!(ips.iter().all(|ip| ip.parse::<std::net::Ipv4Addr>().is_ok()));
        assert_eq!(pod_ip(256 * 254), None);
    }

    #[test]
    fn pods_are_bound_and_selected_by_their_service() {
        let pod = pod(7, 3).expect("pod");
        assert_eq!(pod.metadata.name.as_deref(), Some("s-7-3"));
        assert_eq!(pod.metadata.labels.as_ref().and_then(|l| l.get("app")).map(String::as_str), Some("s-7"));
        assert_eq!(pod.spec.as_ref().and_then(|s| s.node_name.as_deref()), Some(NODE_NAME));
        let svc = crate::load::service(&service_name(7), NAMESPACE);
        let selector = svc.spec.and_then(|s| s.selector).expect("selector");
        assert_eq!(selector.get("app").map(String::as_str), Some("s-7"));
    }

    #[test]
    fn status_patches_carry_what_the_endpoints_controller_reads() {
        let patch = pod_status("10.42.0.9", false);
        assert_eq!(patch["status"]["podIP"], "10.42.0.9");
        assert_eq!(patch["status"]["phase"], "Running");
        assert_eq!(patch["status"]["conditions"][0]["type"], "Ready");
        assert_eq!(patch["status"]["conditions"][0]["status"], "False");
        assert_eq!(pod_status("10.42.0.9", true)["status"]["conditions"][0]["status"], "True");
        let status = node_status();
        assert_eq!(status["status"]["conditions"][0]["status"], "True");
        assert_eq!(status["status"]["addresses"][0]["type"], "InternalIP");
        assert_eq!(node().expect("node").metadata.name.as_deref(), Some(NODE_NAME));
    }
}
