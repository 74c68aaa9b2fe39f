//! The little of a Pod these controllers need, kept in the cache instead of the whole object (a 10,000-pod
//! cluster then costs a few MiB), and the upstream helpers that read it: `ShouldPodBeInEndpoints`, `FindPort`,
//! `ShouldSetHostname` and the Service selector's AND rule.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, Service, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

/// A named container port (sidecar init containers included, as upstream's `FindPort` does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerPort {
    pub name: String,
    pub port: i32,
    pub protocol: String,
}

/// The fields of a Pod that decide its endpoints.
#[derive(Debug, Clone, PartialEq)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub labels: BTreeMap<String, String>,
    /// `status.podIPs` (or `status.podIP` when the list is empty), in order.
    pub ips: Vec<String>,
    pub node_name: Option<String>,
    pub hostname: Option<String>,
    pub subdomain: Option<String>,
    /// The `Ready` condition is `True`.
    pub ready: bool,
    /// `lastTransitionTime` of the `Ready` condition: the trigger time upstream records.
    pub ready_changed: Option<Timestamp>,
    /// `metadata.deletionTimestamp` is set.
    pub terminating: bool,
    /// Phase `Succeeded` or `Failed`.
    pub terminal: bool,
    pub ports: Vec<ContainerPort>,
}

impl PodInfo {
    /// Reads a Pod; `None` when it has no name or namespace (never the case for objects from the API).
    pub fn from_pod(pod: &Pod) -> Option<Self> {
        let meta = &pod.metadata;
        let spec = pod.spec.as_ref();
        let status = pod.status.as_ref();
        let mut ips: Vec<String> = status
            .and_then(|s| s.pod_ips.as_ref())
            .map(|ips| ips.iter().map(|ip| ip.ip.clone()).filter(|ip| !ip.is_empty()).collect())
            .unwrap_or_default();
        if ips.is_empty()
            && let Some(ip) = status.and_then(|s| s.pod_ip.clone()).filter(|ip| !ip.is_empty())
        {
            ips.push(ip);
        }
        let ready_condition =
            status.and_then(|s| s.conditions.as_ref()).and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
        let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or_default();
        let mut ports = Vec::new();
        if let Some(spec) = spec {
            let sidecars =
                spec.init_containers.iter().flatten().filter(|c| c.restart_policy.as_deref() == Some("Always"));
            for container in spec.containers.iter().chain(sidecars) {
                for port in container.ports.iter().flatten() {
                    if let Some(name) = port.name.as_ref().filter(|n| !n.is_empty()) {
                        ports.push(ContainerPort {
                            name: name.clone(),
                            port: port.container_port,
                            protocol: port.protocol.clone().unwrap_or_else(|| "TCP".to_string()),
                        });
                    }
                }
            }
        }
        Some(Self {
            namespace: meta.namespace.clone()?,
            name: meta.name.clone()?,
            uid: meta.uid.clone().unwrap_or_default(),
            labels: meta.labels.clone().unwrap_or_default(),
            ips,
            node_name: spec.and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty()),
            hostname: spec.and_then(|s| s.hostname.clone()).filter(|n| !n.is_empty()),
            subdomain: spec.and_then(|s| s.subdomain.clone()).filter(|n| !n.is_empty()),
            ready: ready_condition.is_some_and(|c| c.status == "True"),
            ready_changed: ready_condition.and_then(|c| c.last_transition_time.as_ref()).map(|t| t.0),
            terminating: meta.deletion_timestamp.is_some(),
            terminal: phase == "Succeeded" || phase == "Failed",
            ports,
        })
    }

    /// Upstream's `ShouldPodBeInEndpoints`: not terminal, has an IP, and terminating only when asked for.
    pub fn should_be_in_endpoints(&self, include_terminating: bool) -> bool {
        !self.terminal && !self.ips.is_empty() && (include_terminating || !self.terminating)
    }

    /// The pod's first IP of the family (IPv6 or not), as the controllers pick it.
    pub fn ip_of_family(&self, ipv6: bool) -> Option<&str> {
        self.ips.iter().map(String::as_str).find(|ip| ip.contains(':') == ipv6)
    }

    /// Upstream's `ShouldSetHostname`: `spec.hostname` set and `spec.subdomain` names the Service.
    pub fn hostname_for(&self, service_namespace: &str, service_name: &str) -> Option<&str> {
        let subdomain_matches = self.subdomain.as_deref() == Some(service_name) && self.namespace == service_namespace;
        self.hostname.as_deref().filter(|_| subdomain_matches)
    }

    /// Upstream's `FindPort`: a named target port is looked up among the container ports with the Service port's
    /// protocol; a number is used as it is (an absent one defaults to the Service port). `None`: no such port.
    pub fn find_port(&self, service_port: &ServicePort) -> Option<i32> {
        match &service_port.target_port {
            Some(IntOrString::String(name)) => {
                let protocol = service_port.protocol.as_deref().unwrap_or("TCP");
                self.ports.iter().find(|p| &p.name == name && p.protocol == protocol).map(|p| p.port)
            }
            Some(IntOrString::Int(0)) | None => Some(service_port.port),
            Some(IntOrString::Int(port)) => Some(*port),
        }
    }
}

/// The Service's selector when it has one: a missing or empty `spec.selector` selects nothing here (such
/// Services get their endpoints from elsewhere).
pub fn service_selector(service: &Service) -> Option<&BTreeMap<String, String>> {
    service.spec.as_ref().and_then(|s| s.selector.as_ref()).filter(|s| !s.is_empty())
}

/// The AND rule: every selector label present on the pod with the same value; extra pod labels do not matter.
pub fn selector_matches(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(key, value)| labels.get(key) == Some(value))
}

/// Whether the Service's endpoints are IPv6 (its first IP family; IPv4 otherwise).
pub fn service_is_ipv6(service: &Service) -> bool {
    let spec = service.spec.as_ref();
    match spec.and_then(|s| s.ip_families.as_ref()).and_then(|f| f.first()) {
        Some(family) => family == "IPv6",
        None => spec.and_then(|s| s.cluster_ip.as_deref()).is_some_and(|ip| ip.contains(':')),
    }
}

/// Upstream's `IsServiceIPSet`: a cluster IP other than `None`.
pub fn service_ip_set(service: &Service) -> bool {
    service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()).is_some_and(|ip| !ip.is_empty() && ip != "None")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn pod(json: serde_json::Value) -> PodInfo {
        let pod: Pod = serde_json::from_value(json).expect("a pod");
        PodInfo::from_pod(&pod).expect("named")
    }

    #[test]
    fn selector_is_an_and_over_labels() {
        let selector = labels(&[("app", "web"), ("tier", "front")]);
        assert!(selector_matches(&selector, &labels(&[("app", "web"), ("tier", "front"), ("extra", "x")])));
        assert!(!selector_matches(&selector, &labels(&[("app", "web")])));
        assert!(!selector_matches(&selector, &labels(&[("app", "web"), ("tier", "back")])));
    }

    #[test]
    fn reads_readiness_ips_ports_and_termination() {
        let p = pod(serde_json::json!({
            "metadata": {"name": "a", "namespace": "ns", "uid": "u1", "deletionTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": [
                {"name": "http", "containerPort": 8080}, {"name": "dns", "containerPort": 53, "protocol": "UDP"}]}]},
            "status": {"phase": "Running", "podIP": "10.0.0.1",
                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2024-01-01T00:00:01Z"}]}
        }));
        assert!(p.ready && p.terminating && !p.terminal);
        assert_eq!(p.ips, vec!["10.0.0.1"]);
        assert!(p.should_be_in_endpoints(true));
        assert!(!p.should_be_in_endpoints(false));
        let named = |name: &str, protocol: &str| ServicePort {
            port: 80,
            protocol: Some(protocol.into()),
            target_port: Some(IntOrString::String(name.into())),
            ..Default::default()
        };
        assert_eq!(p.find_port(&named("http", "TCP")), Some(8080));
        assert_eq!(p.find_port(&named("http", "UDP")), None);
        assert_eq!(p.find_port(&named("dns", "UDP")), Some(53));
        assert_eq!(p.find_port(&ServicePort { port: 81, ..Default::default() }), Some(81));
    }

    #[test]
    fn pods_without_ip_or_finished_are_left_out() {
        let no_ip = pod(serde_json::json!({"metadata": {"name": "a", "namespace": "ns"}}));
        assert!(!no_ip.should_be_in_endpoints(true));
        let done = pod(serde_json::json!({"metadata": {"name": "a", "namespace": "ns"},
            "status": {"phase": "Succeeded", "podIP": "10.0.0.2"}}));
        assert!(!done.should_be_in_endpoints(true));
    }

    #[test]
    fn hostname_only_when_subdomain_names_the_service() {
        let p = pod(serde_json::json!({"metadata": {"name": "a", "namespace": "ns"},
            "spec": {"hostname": "h", "subdomain": "svc", "containers": []}}));
        assert_eq!(p.hostname_for("ns", "svc"), Some("h"));
        assert_eq!(p.hostname_for("ns", "other"), None);
        assert_eq!(p.hostname_for("other", "svc"), None);
    }
}
