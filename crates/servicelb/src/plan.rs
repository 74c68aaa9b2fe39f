//! The pure half: which Services are ours, which nodes accept a Service's traffic, and the
//! `status.loadBalancer.ingress` that follows. No I/O; the caller hands in the nodes and EndpointSlices.

use std::collections::{BTreeSet, HashSet};

use k8s_openapi::api::core::v1::{LoadBalancerIngress, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The `spec.loadBalancerClass` this controller answers to (besides no class at all).
pub const LOAD_BALANCER_CLASS: &str = "skiff.io/servicelb";
/// Nodes with this label are never load-balancer targets (upstream's service controller honours it too).
pub const LABEL_EXCLUDE: &str = "node.kubernetes.io/exclude-from-external-load-balancers";
/// The label tying an EndpointSlice to its Service.
pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";

/// What to do with one Service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handling {
    /// A LoadBalancer without a class or with ours: keep its ingress in step with the nodes.
    Manage,
    /// Not (or no longer) a LoadBalancer: its ingress must be empty.
    Clear,
    /// Another implementation's class: not ours to touch.
    Ignore,
}

pub fn handling(svc: &Service) -> Handling {
    let spec = svc.spec.as_ref();
    let class = spec.and_then(|s| s.load_balancer_class.as_deref());
    if class.is_some_and(|c| c != LOAD_BALANCER_CLASS) {
        return Handling::Ignore;
    }
    if spec.and_then(|s| s.type_.as_deref()) == Some("LoadBalancer") { Handling::Manage } else { Handling::Clear }
}

/// Whether the Service only accepts external traffic on nodes running one of its endpoints.
pub fn local_traffic(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.external_traffic_policy.as_deref()) == Some("Local")
}

fn ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The nodes that run a Ready endpoint of the Service, from its EndpointSlices (as k3s: `ready` must be true).
pub fn endpoint_nodes(slices: &[EndpointSlice]) -> HashSet<String> {
    slices
        .iter()
        .flat_map(|s| s.endpoints.iter())
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
        .filter_map(|e| e.node_name.clone())
        .collect()
}

/// The ingress the Service should have: the InternalIP and ExternalIP addresses of every Ready, non-excluded node
/// (only those in `local` when it is given), each IP family sorted and deduplicated, families in the Service's
/// `ipFamilies` order (IPv4 then IPv6 when unset), each entry with `ipMode: VIP`.
pub fn ingress(svc: &Service, nodes: &[&Node], local: Option<&HashSet<String>>) -> Vec<LoadBalancerIngress> {
    let mut v4 = BTreeSet::new();
    let mut v6 = BTreeSet::new();
    for node in nodes {
        let name = node.metadata.name.as_deref().unwrap_or_default();
        let excluded = node.metadata.labels.as_ref().is_some_and(|l| l.contains_key(LABEL_EXCLUDE));
        if excluded || !ready(node) || local.is_some_and(|l| !l.contains(name)) {
            continue;
        }
        let addresses = node.status.as_ref().and_then(|s| s.addresses.as_ref());
        for a in addresses.into_iter().flatten() {
            if a.type_ != "InternalIP" && a.type_ != "ExternalIP" {
                continue;
            }
            match a.address.parse::<std::net::IpAddr>() {
                Ok(std::net::IpAddr::V4(_)) => v4.insert(a.address.clone()),
                Ok(std::net::IpAddr::V6(_)) => v6.insert(a.address.clone()),
                Err(_) => false,
            };
        }
    }
    let families = svc.spec.as_ref().and_then(|s| s.ip_families.clone()).filter(|f| !f.is_empty());
    let families = families.unwrap_or_else(|| vec!["IPv4".into(), "IPv6".into()]);
    let mut ips = Vec::new();
    for family in families {
        match family.as_str() {
            "IPv4" => ips.extend(v4.iter().cloned()),
            "IPv6" => ips.extend(v6.iter().cloned()),
            _ => {}
        }
    }
    ips.into_iter()
        .map(|ip| LoadBalancerIngress { ip: Some(ip), ip_mode: Some("VIP".into()), ..LoadBalancerIngress::default() })
        .collect()
}

/// The ingress IPs (or hostnames) as a Go-style list, for event messages: `[10.0.0.1 10.0.0.2]`.
pub fn describe(ingress: &[LoadBalancerIngress]) -> String {
    let parts: Vec<&str> =
        ingress.iter().map(|i| i.ip.as_deref().or(i.hostname.as_deref()).unwrap_or_default()).collect();
    format!("[{}]", parts.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, ready: &str, addresses: serde_json::Value) -> Node {
        serde_json::from_value(json!({"metadata": {"name": name},
            "status": {"conditions": [{"type": "Ready", "status": ready}], "addresses": addresses}}))
        .expect("node")
    }

    fn svc(spec: serde_json::Value) -> Service {
        serde_json::from_value(json!({"metadata": {"name": "s", "namespace": "default"}, "spec": spec})).expect("svc")
    }

    fn ips(i: &[LoadBalancerIngress]) -> Vec<&str> {
        i.iter().map(|i| i.ip.as_deref().unwrap_or_default()).collect()
    }

    #[test]
    fn handling_follows_type_and_class() {
        assert_eq!(handling(&svc(json!({"type": "LoadBalancer"}))), Handling::Manage);
        let ours = json!({"type": "LoadBalancer", "loadBalancerClass": LOAD_BALANCER_CLASS});
        assert_eq!(handling(&svc(ours)), Handling::Manage);
        let theirs = json!({"type": "LoadBalancer", "loadBalancerClass": "example.com/lb"});
        assert_eq!(handling(&svc(theirs)), Handling::Ignore);
        assert_eq!(handling(&svc(json!({"type": "ClusterIP"}))), Handling::Clear);
        assert_eq!(handling(&svc(json!({}))), Handling::Clear);
    }

    #[test]
    fn ready_nodes_internal_and_external_ips_sorted_and_deduplicated() {
        let a = node(
            "a",
            "True",
            json!([{"type": "InternalIP", "address": "10.0.0.2"}, {"type": "ExternalIP", "address": "203.0.113.9"},
                   {"type": "Hostname", "address": "a"}, {"type": "InternalIP", "address": "fd00::2"}]),
        );
        let b = node("b", "True", json!([{"type": "InternalIP", "address": "10.0.0.1"}]));
        let dup = node("dup", "True", json!([{"type": "InternalIP", "address": "10.0.0.1"}]));
        let down = node("down", "False", json!([{"type": "InternalIP", "address": "10.0.0.3"}]));
        let nodes = [&a, &b, &dup, &down];
        let got = ingress(&svc(json!({"type": "LoadBalancer"})), &nodes, None);
        assert_eq!(ips(&got), ["10.0.0.1", "10.0.0.2", "203.0.113.9", "fd00::2"]);
        assert!(got.iter().all(|i| i.ip_mode.as_deref() == Some("VIP")));
        let v6_first = svc(json!({"type": "LoadBalancer", "ipFamilies": ["IPv6", "IPv4"]}));
        assert_eq!(ips(&ingress(&v6_first, &nodes, None)), ["fd00::2", "10.0.0.1", "10.0.0.2", "203.0.113.9"]);
        let v4_only = svc(json!({"type": "LoadBalancer", "ipFamilies": ["IPv4"]}));
        assert_eq!(ips(&ingress(&v4_only, &nodes, None)), ["10.0.0.1", "10.0.0.2", "203.0.113.9"]);
        assert_eq!(describe(&ingress(&v4_only, &[&b], None)), "[10.0.0.1]");
    }

    #[test]
    fn local_policy_keeps_only_nodes_with_ready_endpoints() {
        let slice: EndpointSlice = serde_json::from_value(json!({
        "metadata": {"name": "s-1"}, "addressType": "IPv4",
        "endpoints": [
            {"addresses": ["10.244.0.5"], "conditions": {"ready": true}, "nodeName": "b"},
            {"addresses": ["10.244.0.6"], "conditions": {"ready": false}, "nodeName": "a"},
            {"addresses": ["10.244.0.7"], "conditions": {"ready": true}}
        ]}))
        .expect("slice");
        let local = endpoint_nodes(&[slice]);
        assert_eq!(local, HashSet::from(["b".to_string()]));
        let a = node("a", "True", json!([{"type": "InternalIP", "address": "10.0.0.2"}]));
        let b = node("b", "True", json!([{"type": "InternalIP", "address": "10.0.0.1"}]));
        let s = svc(json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local"}));
        assert!(local_traffic(&s));
        assert_eq!(ips(&ingress(&s, &[&a, &b], Some(&local))), ["10.0.0.1"]);
        assert!(ingress(&s, &[&a, &b], Some(&HashSet::new())).is_empty());
    }

    #[test]
    fn excluded_nodes_are_skipped() {
        let mut a = node("a", "True", json!([{"type": "InternalIP", "address": "10.0.0.2"}]));
        a.metadata.labels = Some([(LABEL_EXCLUDE.to_string(), String::new())].into());
        assert!(ingress(&svc(json!({"type": "LoadBalancer"})), &[&a], None).is_empty());
    }
}
