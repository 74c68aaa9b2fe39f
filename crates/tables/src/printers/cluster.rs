//! Cluster-level kinds: upstream's `printNamespace`, `printNode` (with `findNodeRoles`) and `printLease`.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{Column, PrintedRow, Printer, age, items, name, text};
use crate::descriptions as d;

pub const NAMESPACE: Printer = Printer {
    columns: &[Column::name(), Column::new("Status", "string", d::NAMESPACE_STATUS), Column::age()],
    print: print_namespace,
};

fn print_namespace(ns: &Value, now: DateTime<Utc>) -> PrintedRow {
    vec![json!(name(ns)), json!(text(ns, "/status/phase")), json!(age(ns, now))].into()
}

pub const NODE: Printer = Printer {
    columns: &[
        Column::name(),
        Column::new("Status", "string", d::NODE_STATUS),
        Column::new("Roles", "string", d::NODE_ROLES),
        Column::age(),
        Column::new("Version", "string", d::NODE_KUBELET_VERSION),
        Column::new("Internal-IP", "string", d::NODE_ADDRESSES).wide(),
        Column::new("External-IP", "string", d::NODE_ADDRESSES).wide(),
        Column::new("OS-Image", "string", d::NODE_OS_IMAGE).wide(),
        Column::new("Kernel-Version", "string", d::NODE_KERNEL_VERSION).wide(),
        Column::new("Container-Runtime", "string", d::NODE_CONTAINER_RUNTIME_VERSION).wide(),
    ],
    print: print_node,
};

fn print_node(node: &Value, now: DateTime<Utc>) -> PrintedRow {
    // The last `Ready` condition wins, as in upstream's condition map.
    let ready = items(node, "/status/conditions").iter().rfind(|c| text(c, "/type") == "Ready");
    let mut status = vec![match ready {
        Some(c) if text(c, "/status") == "True" => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }];
    if node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push("SchedulingDisabled");
    }
    let roles = node_roles(node);
    let info = |field: &str| match text(node, &format!("/status/nodeInfo/{field}")) {
        "" => "<unknown>".to_string(),
        v => v.to_string(),
    };
    vec![
        json!(name(node)),
        json!(status.join(",")),
        json!(if roles.is_empty() { "<none>".to_string() } else { roles }),
        json!(age(node, now)),
        json!(text(node, "/status/nodeInfo/kubeletVersion")),
        json!(node_address(node, "InternalIP")),
        json!(node_address(node, "ExternalIP")),
        json!(info("osImage")),
        json!(info("kernelVersion")),
        json!(info("containerRuntimeVersion")),
    ]
    .into()
}

/// Roles from `node-role.kubernetes.io/<role>` label keys and the `kubernetes.io/role` label's value, sorted.
fn node_roles(node: &Value) -> String {
    let labels = node.pointer("/metadata/labels").and_then(Value::as_object);
    let roles: BTreeSet<&str> = labels
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| {
            if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                Some(role).filter(|r| !r.is_empty())
            } else if k == "kubernetes.io/role" {
                v.as_str().filter(|r| !r.is_empty())
            } else {
                None
            }
        })
        .collect();
    roles.into_iter().collect::<Vec<_>>().join(",")
}

/// The first address of the given type, `<none>` without one.
fn node_address(node: &Value, ty: &str) -> String {
    items(node, "/status/addresses")
        .iter()
        .find(|a| text(a, "/type") == ty)
        .map(|a| text(a, "/address").to_string())
        .unwrap_or_else(|| "<none>".to_string())
}

pub const LEASE: Printer = Printer {
    columns: &[Column::name(), Column::new("Holder", "string", d::LEASE_HOLDER_IDENTITY), Column::age()],
    print: print_lease,
};

fn print_lease(lease: &Value, now: DateTime<Utc>) -> PrintedRow {
    vec![json!(name(lease)), json!(text(lease, "/spec/holderIdentity")), json!(age(lease, now))].into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::printers::tests::{at, now};

    fn node() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "node-1", "creationTimestamp": at(10 * 86400), "labels": {
                "kubernetes.io/hostname": "node-1",
                "node-role.kubernetes.io/control-plane": "",
                "node-role.kubernetes.io/worker": "",
                "kubernetes.io/role": "master"
            }},
            "spec": {},
            "status": {
                "conditions": [
                    {"type": "MemoryPressure", "status": "False"},
                    {"type": "Ready", "status": "True", "reason": "KubeletReady"}
                ],
                "addresses": [
                    {"type": "Hostname", "address": "node-1"},
                    {"type": "InternalIP", "address": "10.0.0.5"}
                ],
                "nodeInfo": {"kubeletVersion": "v1.33.0", "osImage": "Debian GNU/Linux 12 (bookworm)",
                             "kernelVersion": "6.1.0-18-amd64", "containerRuntimeVersion": "skiff://0.1.0"}
            }
        })
    }

    #[test]
    fn ready_node_with_roles() {
        let row = print_node(&node(), now());
        assert_eq!(
            row.cells,
            vec![
                json!("node-1"),
                json!("Ready"),
                json!("control-plane,master,worker"),
                json!("10d"),
                json!("v1.33.0"),
                json!("10.0.0.5"),
                json!("<none>"),
                json!("Debian GNU/Linux 12 (bookworm)"),
                json!("6.1.0-18-amd64"),
                json!("skiff://0.1.0")
            ]
        );
    }

    #[test]
    fn cordoned_not_ready_and_unknown_nodes() {
        let mut n = node();
        n["spec"]["unschedulable"] = json!(true);
        n["status"]["conditions"][1]["status"] = json!("False");
        assert_eq!(print_node(&n, now()).cells[1], json!("NotReady,SchedulingDisabled"));
        n["status"]["conditions"] = json!([]);
        n["metadata"]["labels"] = json!({});
        n["status"]["nodeInfo"] = json!({});
        let cells = print_node(&n, now()).cells;
        assert_eq!(cells[1], json!("Unknown,SchedulingDisabled"));
        assert_eq!(cells[2], json!("<none>"));
        assert_eq!(cells[4], json!(""));
        assert_eq!(&cells[7..], &[json!("<unknown>"), json!("<unknown>"), json!("<unknown>")]);
        let wide: Vec<&str> = NODE.columns.iter().filter(|c| c.priority == 1).map(|c| c.name).collect();
        assert_eq!(wide, ["Internal-IP", "External-IP", "OS-Image", "Kernel-Version", "Container-Runtime"]);
    }

    #[test]
    fn namespace_and_lease() {
        let ns =
            json!({"metadata": {"name": "kube-system", "creationTimestamp": at(45)}, "status": {"phase": "Active"}});
        assert_eq!(print_namespace(&ns, now()).cells, vec![json!("kube-system"), json!("Active"), json!("45s")]);
        let terminating = json!({"metadata": {"name": "old"}, "status": {"phase": "Terminating"}});
        assert_eq!(print_namespace(&terminating, now()).cells[1..], [json!("Terminating"), json!("<unknown>")]);
        let lease = json!({"metadata": {"name": "node-1", "creationTimestamp": at(3600 * 5 + 60 * 7)},
                           "spec": {"holderIdentity": "node-1", "leaseDurationSeconds": 40}});
        assert_eq!(print_lease(&lease, now()).cells, vec![json!("node-1"), json!("node-1"), json!("5h7m")]);
        let unheld = json!({"metadata": {"name": "kube-scheduler", "creationTimestamp": at(60)}, "spec": {}});
        assert_eq!(print_lease(&unheld, now()).cells[1], json!(""));
    }
}
