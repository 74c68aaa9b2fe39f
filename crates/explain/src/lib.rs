//! `skiff explain svc NAME`: why a Service does or does not reach pods, in one report — its selector, the pods
//! that match it, what the near misses lack, which endpoints are Ready, the DNS names it answers to, and what
//! this node's data plane holds for it (its nftables chains and the endpoints its traffic goes to, read back
//! from the kernel).
//!
//! Data flow: [`fetch`] reads the Service, the pods of its namespace and its EndpointSlices through kube-rs;
//! [`report`] turns them into text with no I/O of its own except the data plane reader it is given (in the
//! binary, [`skiff_proxy::inspect::programmed`] on the live table), so what it concludes is testable from
//! objects alone. Which pods match and which endpoints a pod gives follow the endpoint controllers' own rules
//! ([`skiff_endpoints::pod`]); chain names are the proxy's ([`skiff_proxy::ruleset`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use k8s_openapi::api::core::v1::{Pod, Service, ServicePort as ApiServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, ListParams};
use skiff_endpoints::pod::{PodInfo, selector_matches, service_selector};
use skiff_proxy::inspect::Programmed;
use skiff_proxy::model::{ServicePort, service_templates};

/// What the report is made from.
#[derive(Debug, Clone)]
pub struct Objects {
    pub service: Service,
    /// Every pod of the Service's namespace.
    pub pods: Vec<Pod>,
    /// The Service's EndpointSlices (label `kubernetes.io/service-name`).
    pub slices: Vec<EndpointSlice>,
}

/// Reads the Service `namespace/name`, the pods of its namespace and its EndpointSlices.
pub async fn fetch(client: &kube::Client, namespace: &str, name: &str) -> anyhow::Result<Objects> {
    let service = Api::<Service>::namespaced(client.clone(), namespace).get(name).await?;
    let pods = Api::<Pod>::namespaced(client.clone(), namespace).list(&ListParams::default()).await?.items;
    let by_service = ListParams::default().labels(&format!("kubernetes.io/service-name={name}"));
    let slices = Api::<EndpointSlice>::namespaced(client.clone(), namespace).list(&by_service).await?.items;
    Ok(Objects { service, pods, slices })
}

/// One endpoint address of the Service's slices.
struct SliceEndpoint {
    address: String,
    ready: bool,
    terminating: bool,
    pod: Option<String>,
    node: Option<String>,
    hostname: Option<String>,
    ports: Vec<String>,
    /// The slice's named ports: name, number, protocol (lower case), which SRV records of headless Services give.
    named_ports: Vec<(String, i32, String)>,
}

impl SliceEndpoint {
    /// The endpoint's own name under a headless Service: its hostname, else its address with dashes (Skiff's
    /// DNS, as CoreDNS).
    fn dns_label(&self) -> String {
        self.hostname.as_deref().map_or_else(|| self.address.replace(['.', ':'], "-"), str::to_lowercase)
    }

    fn record_type(&self) -> &'static str {
        if self.address.contains(':') { "AAAA" } else { "A" }
    }
}

fn slice_endpoints(slices: &[EndpointSlice]) -> Vec<SliceEndpoint> {
    let mut endpoints = Vec::new();
    for slice in slices {
        let ports: Vec<String> = slice
            .ports
            .iter()
            .flatten()
            .map(|p| {
                let number = p.port.map_or_else(|| "?".to_string(), |n| n.to_string());
                let protocol = p.protocol.as_deref().unwrap_or("TCP");
                match p.name.as_deref().filter(|n| !n.is_empty()) {
                    Some(name) => format!("{name} {number}/{protocol}"),
                    None => format!("{number}/{protocol}"),
                }
            })
            .collect();
        let named_ports: Vec<(String, i32, String)> = slice
            .ports
            .iter()
            .flatten()
            .filter_map(|p| {
                let name = p.name.clone().filter(|n| !n.is_empty())?;
                Some((name, p.port?, p.protocol.as_deref().unwrap_or("TCP").to_lowercase()))
            })
            .collect();
        for endpoint in &slice.endpoints {
            let conditions = endpoint.conditions.as_ref();
            for address in &endpoint.addresses {
                endpoints.push(SliceEndpoint {
                    address: address.clone(),
                    // An unset condition means ready (the EndpointSlice API's rule); a terminating endpoint is not
                    // (it may still be `ready` under publishNotReadyAddresses), as the proxy counts them.
                    ready: conditions.and_then(|c| c.ready) != Some(false)
                        && conditions.and_then(|c| c.terminating) != Some(true),
                    terminating: conditions.and_then(|c| c.terminating) == Some(true),
                    pod: endpoint
                        .target_ref
                        .as_ref()
                        .filter(|r| r.kind.as_deref() == Some("Pod"))
                        .and_then(|r| r.name.clone()),
                    node: endpoint.node_name.clone(),
                    hostname: endpoint.hostname.clone(),
                    ports: ports.clone(),
                    named_ports: named_ports.clone(),
                });
            }
        }
    }
    endpoints.sort_by(|a, b| a.address.cmp(&b.address));
    // One address in several slices (a Service whose pods differ in ports): one endpoint with all its ports.
    endpoints.dedup_by(|later, first| {
        let same = later.address == first.address;
        if same {
            for port in later.ports.drain(..) {
                if !first.ports.contains(&port) {
                    first.ports.push(port);
                }
            }
            for port in later.named_ports.drain(..) {
                if !first.named_ports.contains(&port) {
                    first.named_ports.push(port);
                }
            }
        }
        same
    });
    endpoints
}

/// What a selector label looks like on a pod that does not match: the value it has, or that it lacks the key.
fn missing_labels(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> Vec<String> {
    selector
        .iter()
        .filter(|(key, value)| labels.get(*key) != Some(*value))
        .map(|(key, value)| match labels.get(key) {
            Some(has) => format!("{key}={value} (has {key}={has})"),
            None => format!("{key}={value} (no {key} label)"),
        })
        .collect()
}

fn labels_text(labels: &BTreeMap<String, String>) -> String {
    labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

fn pod_state(pod: &PodInfo) -> &'static str {
    if pod.terminal {
        "Finished"
    } else if pod.terminating {
        "Terminating"
    } else if pod.ready {
        "Ready"
    } else {
        "NotReady"
    }
}

fn target_port_text(port: &ApiServicePort) -> String {
    match &port.target_port {
        Some(IntOrString::String(name)) => format!("pods' port named {name}"),
        Some(IntOrString::Int(n)) if *n != 0 => format!("pods' port {n}"),
        _ => format!("pods' port {}", port.port),
    }
}

/// What a verdict of the proxy's maps does, in words (`none` when there is no element).
fn route_text(verdict: Option<&str>, none: &str) -> String {
    match verdict {
        None => none.to_string(),
        Some("goto reject-chain") => "refused at once (no endpoints)".to_string(),
        Some("drop") => "dropped (no endpoint on this node for its Local traffic policy)".to_string(),
        Some(other) => other.strip_prefix("goto ").map_or_else(|| other.to_string(), |c| format!("chain {c}")),
    }
}

/// The report on `objects`: `zone` is the cluster domain, `data_plane` reads what this node's kernel holds for
/// a service port (an error says why it could not).
pub fn report(
    objects: &Objects,
    zone: &str,
    data_plane: &mut dyn FnMut(&ServicePort) -> Result<Programmed, String>,
) -> String {
    let service = &objects.service;
    let namespace = service.metadata.namespace.clone().unwrap_or_default();
    let name = service.metadata.name.clone().unwrap_or_default();
    let spec = service.spec.clone().unwrap_or_default();
    let type_ = spec.type_.clone().unwrap_or_else(|| "ClusterIP".to_string());
    let cluster_ip = spec.cluster_ip.clone().unwrap_or_default();
    let headless = cluster_ip == "None";
    let fqdn = format!("{name}.{namespace}.svc.{zone}");
    let mut out = String::new();
    let mut verdict: Vec<String> = Vec::new();

    let _ = writeln!(out, "Service {namespace}/{name}");
    let _ = writeln!(out, "  Type:       {type_}");
    if type_ == "ExternalName" {
        let target = spec.external_name.clone().unwrap_or_default();
        let _ = writeln!(out, "  Alias for:  {target}");
        let _ = writeln!(out, "\nDNS names (zone {zone}):");
        let _ = writeln!(out, "  {fqdn}  CNAME {target}");
        let _ = writeln!(
            out,
            "\nVerdict: an alias in DNS only: lookups of {name} answer CNAME {target}; no pods, endpoints or data plane rules."
        );
        return out;
    }
    let ips: Vec<String> = spec
        .cluster_ips
        .clone()
        .filter(|ips| !ips.is_empty())
        .unwrap_or_else(|| vec![cluster_ip.clone()])
        .into_iter()
        .filter(|ip| !ip.is_empty())
        .collect();
    let shown_ips = if headless {
        "None (headless)".to_string()
    } else if ips.is_empty() {
        "<none>".to_string()
    } else {
        ips.join(",")
    };
    let _ = writeln!(out, "  IP:         {shown_ips}");
    for port in spec.ports.iter().flatten() {
        let protocol = port.protocol.as_deref().unwrap_or("TCP");
        let mut line = format!("{}/{protocol} → {}", port.port, target_port_text(port));
        if let Some(node_port) = port.node_port.filter(|_| matches!(type_.as_str(), "NodePort" | "LoadBalancer")) {
            let _ = write!(line, ", NodePort {node_port}");
        }
        match port.name.as_deref().filter(|n| !n.is_empty()) {
            Some(port_name) => {
                let _ = writeln!(out, "  Port:       {port_name} {line}");
            }
            None => {
                let _ = writeln!(out, "  Port:       {line}");
            }
        }
    }
    let ingress: Vec<String> = service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref()?.ingress.clone())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.or(i.hostname))
        .collect();
    if type_ == "LoadBalancer" {
        let shown = if ingress.is_empty() { "<pending>".to_string() } else { ingress.join(",") };
        let _ = writeln!(out, "  Ingress:    {shown} (and localhost)");
    }

    // Selector, matching pods and near misses.
    let pods: Vec<PodInfo> = objects.pods.iter().filter_map(PodInfo::from_pod).collect();
    let selector = service_selector(service);
    match selector {
        None => {
            let _ = writeln!(out, "  Selector:   <none>");
            let _ = writeln!(
                out,
                "\nNo selector: no controller picks pods for this Service; its endpoints are whatever a hand-written \
                 Endpoints object (mirrored into EndpointSlices) lists."
            );
        }
        Some(selector) => {
            let _ = writeln!(out, "  Selector:   {}", labels_text(selector));
            let matching: Vec<&PodInfo> = pods.iter().filter(|p| selector_matches(selector, &p.labels)).collect();
            let _ = writeln!(out, "\nPods in {namespace} matching the selector: {}", matching.len());
            for pod in &matching {
                let ip = pod.ips.first().map_or("<no IP yet>", String::as_str);
                let node = pod.node_name.as_deref().unwrap_or("<not scheduled>");
                let _ = writeln!(out, "  {}  {ip}  {}  node {node}", pod.name, pod_state(pod));
                for port in spec.ports.iter().flatten() {
                    if pod.find_port(port).is_none()
                        && let Some(IntOrString::String(port_name)) = &port.target_port
                    {
                        let protocol = port.protocol.as_deref().unwrap_or("TCP");
                        let _ = writeln!(out, "    has no container port named {port_name} ({protocol})");
                        verdict.push(format!(
                            "pod {} matches but has no container port named {port_name}, so it is no endpoint for \
                             port {}",
                            pod.name, port.port
                        ));
                    }
                }
            }
            // Near misses: pods with some of the selector's labels (key and value), not all. When there are none
            // and nothing matches either, the pods that at least use one of its keys are the best hint (a typo in
            // a value).
            let unmatched = || pods.iter().filter(|p| !selector_matches(selector, &p.labels));
            let mut near: Vec<&PodInfo> =
                unmatched().filter(|p| selector.iter().any(|(k, v)| p.labels.get(k) == Some(v))).collect();
            let mut heading = "Near misses (pods with some of the selector's labels, not all)";
            if near.is_empty() && matching.is_empty() {
                near = unmatched().filter(|p| selector.keys().any(|k| p.labels.contains_key(k))).collect();
                heading = "Pods with the selector's label keys, but other values";
            }
            if !near.is_empty() {
                let _ = writeln!(out, "\n{heading}:");
                for pod in &near {
                    let _ =
                        writeln!(out, "  {}  missing {}", pod.name, missing_labels(selector, &pod.labels).join(", "));
                }
            }
            if matching.is_empty() {
                verdict.push(if near.is_empty() {
                    format!("no pod in {namespace} has any of the selector's labels ({})", labels_text(selector))
                } else {
                    format!(
                        "no pod in {namespace} has all of the selector's labels; look closely at the labels of the \
                         pods above"
                    )
                });
            } else if !matching.iter().any(|p| p.ready && !p.terminating) {
                verdict.push(format!("{} pod(s) match, but none is Ready", matching.len()));
            }
        }
    }

    // Endpoints.
    let endpoints = slice_endpoints(&objects.slices);
    let ready = endpoints.iter().filter(|e| e.ready).count();
    let _ = writeln!(out, "\nEndpoints (EndpointSlices): {ready} Ready of {}", endpoints.len());
    for endpoint in &endpoints {
        let state = match (endpoint.ready, endpoint.terminating) {
            (true, _) => "Ready",
            (false, true) => "Terminating",
            (false, false) => "NotReady",
        };
        let mut line = format!("  {}  {state}", endpoint.address);
        if let Some(pod) = &endpoint.pod {
            let _ = write!(line, "  pod {pod}");
        }
        if let Some(node) = &endpoint.node {
            let _ = write!(line, "  node {node}");
        }
        if !endpoint.ports.is_empty() {
            let _ = write!(line, "  ports {}", endpoint.ports.join(", "));
        }
        let _ = writeln!(out, "{line}");
    }
    if ready == 0 && verdict.is_empty() {
        verdict.push("the Service has no Ready endpoint".to_string());
    }

    // DNS names.
    let publish_not_ready = spec.publish_not_ready_addresses == Some(true);
    let _ = writeln!(out, "\nDNS names (zone {zone}):");
    let served: Vec<&SliceEndpoint> = endpoints.iter().filter(|e| e.ready || publish_not_ready).collect();
    if headless {
        let shown = if served.is_empty() {
            "no address records (no Ready endpoints)".to_string()
        } else {
            served.iter().map(|e| format!("{} {}", e.record_type(), e.address)).collect::<Vec<_>>().join(", ")
        };
        let _ = writeln!(out, "  {fqdn}  {shown}");
        for endpoint in &served {
            let _ = writeln!(out, "  {}.{fqdn}  {} {}", endpoint.dns_label(), endpoint.record_type(), endpoint.address);
        }
    } else if !ips.is_empty() {
        let records: Vec<String> =
            ips.iter().map(|ip| format!("{} {ip}", if ip.contains(':') { "AAAA" } else { "A" })).collect();
        let _ = writeln!(out, "  {fqdn}  {}", records.join(", "));
    }
    for port in spec.ports.iter().flatten() {
        let Some(port_name) = port.name.as_deref().filter(|n| !n.is_empty()) else { continue };
        let protocol = port.protocol.as_deref().unwrap_or("TCP").to_lowercase();
        let srv = format!("_{port_name}._{protocol}.{fqdn}");
        if !headless {
            let _ = writeln!(out, "  {srv}  SRV {} {fqdn}", port.port);
            continue;
        }
        // A headless Service's SRV records: one per endpoint serving the named port, on the endpoint's port.
        let records: Vec<String> = served
            .iter()
            .filter_map(|e| {
                let (_, number, _) = e.named_ports.iter().find(|(n, _, p)| n == port_name && *p == protocol)?;
                Some(format!("SRV {number} {}.{fqdn}", e.dns_label()))
            })
            .collect();
        if records.is_empty() {
            let _ = writeln!(out, "  {srv}  no records (no Ready endpoint serves the port)");
        }
        for record in records {
            let _ = writeln!(out, "  {srv}  {record}");
        }
    }
    let _ = writeln!(out, "  (also {name}.{namespace} from any namespace, and {name} from pods in {namespace})");

    // The data plane on this node.
    let _ = writeln!(out, "\nData plane on this node (nftables table inet {}):", skiff_proxy::TABLE);
    let ports = service_templates(service);
    if ports.is_empty() {
        let why = if headless {
            "headless: no virtual IP, so no rules; clients reach the pods' own IPs"
        } else {
            "no rules (no cluster IP yet)"
        };
        let _ = writeln!(out, "  {why}");
    }
    for port in &ports {
        let label = if port.port_name.is_empty() {
            format!("{}/{}", port.port, port.protocol.as_str())
        } else {
            format!("{} {}/{}", port.port_name, port.port, port.protocol.as_str())
        };
        match data_plane(port) {
            Err(e) => {
                let _ = writeln!(out, "  {label}: could not read the table: {e}");
            }
            Ok(programmed) => {
                let route = route_text(programmed.cluster_ip_verdict.as_deref(), "no rule for its cluster IP");
                let _ = writeln!(out, "  {label}: {route}");
                if let Some(node_port) = port.node_port {
                    let route = route_text(programmed.node_port_verdict.as_deref(), "no rule");
                    let _ = writeln!(out, "    NodePort {node_port}: {route}");
                }
                if let Some((external, present)) = &programmed.external_chain {
                    let present = if *present { "" } else { " (not in the table: no way in from outside here)" };
                    let _ = writeln!(out, "    from outside: chain {external}{present}");
                }
                let backends: Vec<String> = programmed.backends.iter().map(ToString::to_string).collect();
                let shown = if backends.is_empty() { "none".to_string() } else { backends.join(" ") };
                let _ = writeln!(out, "    backends: {shown}");
                let ipv4 = port.cluster_ips.iter().any(|ip| ip.is_ipv4());
                match programmed.cluster_ip_verdict.as_deref() {
                    None if !ipv4 => verdict.push(format!(
                        "port {label} has only IPv6 cluster IPs, which Skiff's proxy does not route yet"
                    )),
                    None => verdict
                        .push(format!("port {label} is not programmed on this node (is the node agent running?)")),
                    Some("drop") => verdict.push(format!(
                        "port {label}: internalTrafficPolicy Local and no endpoint on this node, so traffic from this \
                         node's pods is dropped"
                    )),
                    _ if backends.is_empty() && ready > 0 && !port.internal_local => {
                        verdict.push(format!("port {label} has Ready endpoints but no backends here yet"))
                    }
                    _ => {}
                }
            }
        }
    }

    if verdict.is_empty() {
        let _ = writeln!(out, "\nVerdict: traffic to {name} reaches {ready} Ready endpoint(s).");
    } else {
        let _ = writeln!(out, "\nVerdict: {}.", verdict.join("; "));
    }
    out
}

#[cfg(test)]
mod tests;
