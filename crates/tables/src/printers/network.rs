//! Services, Endpoints and EndpointSlices: upstream's `printService` (with `getServiceExternalIP` and
//! `makePortString`), `printEndpoints` (`formatEndpoints`) and `printEndpointSlice`.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{Column, PrintedRow, Printer, age, int, items, name, text};
use crate::descriptions as d;
use crate::selector::format_labels;

/// How many addresses/ports a cell lists before ` + N more...`.
const MAX_LISTED: usize = 3;

pub const SERVICE: Printer = Printer {
    columns: &[
        Column::name(),
        Column::new("Type", "string", d::SERVICE_TYPE),
        Column::new("Cluster-IP", "string", d::SERVICE_CLUSTER_IP),
        Column::new("External-IP", "string", d::SERVICE_EXTERNAL_IPS),
        Column::new("Port(s)", "string", d::SERVICE_PORTS),
        Column::age(),
        Column::new("Selector", "string", d::SERVICE_SELECTOR).wide(),
    ],
    print: print_service,
};

fn print_service(svc: &Value, now: DateTime<Utc>) -> PrintedRow {
    // Upstream reads `spec.clusterIPs[0]`; fall back to `clusterIP` for objects stored before it was defaulted.
    let cluster_ip = items(svc, "/spec/clusterIPs")
        .first()
        .and_then(Value::as_str)
        .or_else(|| svc.pointer("/spec/clusterIP").and_then(Value::as_str).filter(|ip| !ip.is_empty()))
        .unwrap_or("<none>");
    let ports = port_string(items(svc, "/spec/ports"));
    vec![
        json!(name(svc)),
        json!(text(svc, "/spec/type")),
        json!(cluster_ip),
        json!(external_ip(svc)),
        json!(if ports.is_empty() { "<none>".to_string() } else { ports }),
        json!(age(svc, now)),
        json!(format_labels(svc.pointer("/spec/selector").and_then(Value::as_object))),
    ]
    .into()
}

/// `getServiceExternalIP` as the API server calls it (wide, so load-balancer addresses are not clipped).
fn external_ip(svc: &Value) -> String {
    let external_ips: Vec<&str> = items(svc, "/spec/externalIPs").iter().filter_map(Value::as_str).collect();
    match text(svc, "/spec/type") {
        "ClusterIP" | "NodePort" => {
            if external_ips.is_empty() {
                "<none>".to_string()
            } else {
                external_ips.join(",")
            }
        }
        "LoadBalancer" => {
            let ingress = load_balancer_addresses(svc);
            if !external_ips.is_empty() {
                ingress.iter().map(String::as_str).chain(external_ips).collect::<Vec<_>>().join(",")
            } else if !ingress.is_empty() {
                ingress.into_iter().collect::<Vec<_>>().join(",")
            } else {
                "<pending>".to_string()
            }
        }
        "ExternalName" => text(svc, "/spec/externalName").to_string(),
        _ => "<unknown>".to_string(),
    }
}

/// The IPs (or else hostnames) of `status.loadBalancer.ingress`, sorted and de-duplicated.
fn load_balancer_addresses(svc: &Value) -> BTreeSet<String> {
    items(svc, "/status/loadBalancer/ingress")
        .iter()
        .filter_map(|ing| match (text(ing, "/ip"), text(ing, "/hostname")) {
            ("", "") => None,
            ("", host) => Some(host.to_string()),
            (ip, _) => Some(ip.to_string()),
        })
        .collect()
}

/// `80/TCP` or, with a node port, `80:30080/TCP`; comma-joined.
fn port_string(ports: &[Value]) -> String {
    ports
        .iter()
        .map(|p| {
            let (port, protocol, node_port) = (int(p, "/port"), text(p, "/protocol"), int(p, "/nodePort"));
            if node_port > 0 { format!("{port}:{node_port}/{protocol}") } else { format!("{port}/{protocol}") }
        })
        .collect::<Vec<_>>()
        .join(",")
}

pub const ENDPOINTS: Printer = Printer {
    columns: &[Column::name(), Column::new("Endpoints", "string", d::ENDPOINTS_SUBSETS), Column::age()],
    print: print_endpoints,
};

fn print_endpoints(ep: &Value, now: DateTime<Utc>) -> PrintedRow {
    vec![json!(name(ep)), json!(format_endpoints(ep)), json!(age(ep, now))].into()
}

/// `ip:port` for every address and port of every subset (bare IPs for a subset without ports), the first three
/// followed by ` + N more...`; `<none>` without subsets.
fn format_endpoints(ep: &Value) -> String {
    let subsets = items(ep, "/subsets");
    if subsets.is_empty() {
        return "<none>".to_string();
    }
    let mut listed = Vec::new();
    let mut count = 0;
    for subset in subsets {
        let addresses = items(subset, "/addresses");
        let ports = items(subset, "/ports");
        if ports.is_empty() {
            for addr in addresses {
                if listed.len() < MAX_LISTED {
                    listed.push(text(addr, "/ip").to_string());
                }
                count += 1;
            }
        } else {
            for port in ports {
                for addr in addresses {
                    if listed.len() < MAX_LISTED {
                        listed.push(join_host_port(text(addr, "/ip"), int(port, "/port")));
                    }
                    count += 1;
                }
            }
        }
    }
    with_more(listed, count, "")
}

/// Go's `net.JoinHostPort`: IPv6 addresses in brackets.
fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}

/// Joins `listed` with `,` and appends ` + N more...` when `count` exceeds what was listed; `empty` when nothing
/// was listed at all (upstream's `listWithMoreString` uses `<unset>`, `formatEndpoints` the empty string).
fn with_more(listed: Vec<String>, count: usize, empty: &str) -> String {
    let joined = listed.join(",");
    if count > MAX_LISTED {
        format!("{joined} + {} more...", count - MAX_LISTED)
    } else if joined.is_empty() {
        empty.to_string()
    } else {
        joined
    }
}

pub const ENDPOINT_SLICE: Printer = Printer {
    columns: &[
        Column::name(),
        Column::new("AddressType", "string", d::ENDPOINT_SLICE_ADDRESS_TYPE),
        Column::new("Ports", "string", d::ENDPOINT_SLICE_PORTS),
        Column::new("Endpoints", "string", d::ENDPOINT_SLICE_ENDPOINTS),
        Column::age(),
    ],
    print: print_endpoint_slice,
};

fn print_endpoint_slice(slice: &Value, now: DateTime<Utc>) -> PrintedRow {
    let ports = items(slice, "/ports");
    let listed_ports = ports
        .iter()
        .take(MAX_LISTED)
        .map(|p| match (p.get("port").and_then(Value::as_i64), p.get("name").and_then(Value::as_str)) {
            (Some(port), _) => port.to_string(),
            (None, Some(name)) => name.to_string(),
            (None, None) => "*".to_string(),
        })
        .collect();
    let addresses: Vec<&str> = items(slice, "/endpoints")
        .iter()
        .flat_map(|e| items(e, "/addresses"))
        .map(|a| a.as_str().unwrap_or_default())
        .collect();
    let listed_addresses = addresses.iter().take(MAX_LISTED).map(|a| a.to_string()).collect();
    vec![
        json!(name(slice)),
        json!(text(slice, "/addressType")),
        json!(with_more(listed_ports, ports.len(), "<unset>")),
        json!(with_more(listed_addresses, addresses.len(), "<unset>")),
        json!(age(slice, now)),
    ]
    .into()
}

#[cfg(test)]
mod tests;
