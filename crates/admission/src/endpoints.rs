//! Endpoints (core) and EndpointSlices (`discovery.k8s.io/v1`): address syntax per type, ports, and the
//! slice's immutable `addressType`.

use serde_json::{Value, json};
use skiff_api::FieldError;

use crate::json::{arr, has, int, items_mut, s, set_default};
use crate::meta::validate_unique_dns1123_label;
use crate::names;

const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
const MAX_ADDRESSES: usize = 100;
const MAX_ENDPOINTS: usize = 1000;
const MAX_PORTS: usize = 20000;

pub fn default_endpoints(ep: &mut Value) {
    for subset in items_mut(ep, "subsets") {
        for port in items_mut(subset, "ports") {
            set_default(port, "protocol", json!("TCP"));
        }
    }
}

pub fn default_endpoint_slice(slice: &mut Value) {
    for port in items_mut(slice, "ports") {
        set_default(port, "protocol", json!("TCP"));
        if port.get("name").is_none_or(Value::is_null) {
            crate::json::set(port, "name", json!(""));
        }
    }
}

fn validate_protocol(port: &Value, at: &str, errs: &mut Vec<FieldError>) {
    match s(port, "protocol") {
        "" => errs.push(FieldError::required(format!("{at}.protocol"), "")),
        p if !PROTOCOLS.contains(&p) => errs.push(FieldError::not_supported(format!("{at}.protocol"), p, PROTOCOLS)),
        _ => {}
    }
}

pub fn validate_endpoints(ep: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, subset) in arr(ep, "subsets").iter().enumerate() {
        let at = format!("subsets[{i}]");
        let (ready, not_ready) = (arr(subset, "addresses"), arr(subset, "notReadyAddresses"));
        if ready.is_empty() && not_ready.is_empty() {
            errs.push(FieldError::required(at.clone(), "must specify `addresses` or `notReadyAddresses`"));
        }
        for (key, list) in [("addresses", ready), ("notReadyAddresses", not_ready)] {
            for (j, addr) in list.iter().enumerate() {
                errs.extend(validate_endpoint_address(addr, &format!("{at}.{key}[{j}]")));
            }
        }
        let ports = arr(subset, "ports");
        for (j, port) in ports.iter().enumerate() {
            let pat = format!("{at}.ports[{j}]");
            let name = s(port, "name");
            if ports.len() > 1 && name.is_empty() {
                errs.push(FieldError::required(format!("{pat}.name"), ""));
            } else if !name.is_empty() {
                for msg in names::is_dns1123_label(name) {
                    errs.push(FieldError::invalid(format!("{pat}.name"), name, msg));
                }
            }
            let n = int(port, "port").unwrap_or(0);
            for msg in names::is_valid_port_num(n) {
                errs.push(FieldError::invalid(format!("{pat}.port"), n, msg));
            }
            validate_protocol(port, &pat, &mut errs);
        }
    }
    errs
}

fn validate_endpoint_address(addr: &Value, at: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let ip = s(addr, "ip");
    let msgs = names::is_valid_ip(ip);
    if msgs.is_empty() {
        if let Some(msg) = names::non_special_ip(ip) {
            errs.push(FieldError::invalid(format!("{at}.ip"), ip, msg));
        }
    } else {
        errs.extend(msgs.into_iter().map(|m| FieldError::invalid(format!("{at}.ip"), ip, m)));
    }
    let hostname = s(addr, "hostname");
    if !hostname.is_empty() {
        for msg in names::is_dns1123_label(hostname) {
            errs.push(FieldError::invalid(format!("{at}.hostname"), hostname, msg));
        }
    }
    if let Some(node) = addr.get("nodeName").and_then(Value::as_str) {
        for msg in names::is_dns1123_subdomain(node) {
            errs.push(FieldError::invalid(format!("{at}.nodeName"), node, msg));
        }
    }
    errs
}

pub fn validate_endpoint_slice(slice: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let address_type = s(slice, "addressType");
    let supported = ["FQDN", "IPv4", "IPv6"];
    if address_type.is_empty() {
        errs.push(FieldError::required("addressType", ""));
    } else if !supported.contains(&address_type) {
        errs.push(FieldError::not_supported("addressType", address_type, &supported));
    }
    let endpoints = arr(slice, "endpoints");
    if endpoints.len() > MAX_ENDPOINTS {
        errs.push(too_many("endpoints", endpoints.len(), MAX_ENDPOINTS));
    }
    for (i, ep) in endpoints.iter().enumerate() {
        let at = format!("endpoints[{i}]");
        let addresses = arr(ep, "addresses");
        if addresses.is_empty() {
            errs.push(FieldError::required(format!("{at}.addresses"), "must contain at least 1 address"));
        } else if addresses.len() > MAX_ADDRESSES {
            errs.push(too_many(&format!("{at}.addresses"), addresses.len(), MAX_ADDRESSES));
        }
        for (j, a) in addresses.iter().enumerate() {
            let a = a.as_str().unwrap_or("");
            let path = format!("{at}.addresses[{j}]");
            let ip = names::parse_ip(a);
            match address_type {
                "IPv4" if !ip.is_some_and(|ip| ip.is_ipv4()) => {
                    errs.push(FieldError::invalid(path, a, "must be a valid IPv4 address"));
                }
                "IPv6" if !ip.is_some_and(|ip| ip.is_ipv6()) => {
                    errs.push(FieldError::invalid(path, a, "must be a valid IPv6 address"));
                }
                "FQDN" => {
                    let name = a.strip_suffix('.').unwrap_or(a);
                    let mut msgs = names::is_dns1123_subdomain(name);
                    if msgs.is_empty() && !name.contains('.') {
                        msgs.push("should be a domain with at least two segments separated by dots".to_string());
                    }
                    errs.extend(msgs.into_iter().map(|m| FieldError::invalid(path.clone(), name, m)));
                }
                _ => {}
            }
        }
        if let Some(node) = ep.get("nodeName").and_then(Value::as_str) {
            for msg in names::is_dns1123_subdomain(node) {
                errs.push(FieldError::invalid(format!("{at}.nodeName"), node, msg));
            }
        }
        if let Some(h) = ep.get("hostname").and_then(Value::as_str) {
            for msg in names::is_dns1123_label(h) {
                errs.push(FieldError::invalid(format!("{at}.hostname"), h, msg));
            }
        }
    }
    let ports = arr(slice, "ports");
    if ports.len() > MAX_PORTS {
        errs.push(too_many("ports", ports.len(), MAX_PORTS));
    }
    let mut seen: Vec<&str> = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let at = format!("ports[{i}]");
        errs.extend(validate_unique_dns1123_label(s(port, "name"), &format!("{at}.name"), &mut seen));
        if has(port, "port") {
            let n = int(port, "port").unwrap_or(0);
            for msg in names::is_valid_port_num(n) {
                errs.push(FieldError::invalid(format!("{at}.port"), n, msg));
            }
        }
        validate_protocol(port, &at, &mut errs);
    }
    errs
}

fn too_many(field: &str, actual: usize, max: usize) -> FieldError {
    FieldError {
        kind: skiff_api::FieldErrorKind::TooMany,
        field: field.to_string(),
        value: Some(actual.into()),
        detail: format!("must have at most {max} items"),
    }
}

pub fn validate_endpoint_slice_update(old: &Value, new: &Value) -> Vec<FieldError> {
    let (o, n) = (s(old, "addressType"), s(new, "addressType"));
    if o == n {
        return Vec::new();
    }
    vec![FieldError::invalid("addressType", n, "field is immutable")]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_addresses_and_ports() {
        let mut ep = json!({"subsets": [{"addresses": [{"ip": "10.1.0.5"}], "ports": [{"port": 80}]}]});
        default_endpoints(&mut ep);
        assert_eq!(ep["subsets"][0]["ports"][0]["protocol"], "TCP");
        assert!(validate_endpoints(&ep).is_empty());
        let bad = json!({"subsets": [
            {"addresses": [{"ip": "nope"}, {"ip": "127.0.0.1"}], "ports": [{"port": 0, "protocol": "TCP"}]},
            {"ports": [{"name": "a", "port": 1, "protocol": "TCP"}, {"port": 2, "protocol": "TCP"}]}]});
        let fields: Vec<String> = validate_endpoints(&bad).into_iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            vec![
                "subsets[0].addresses[0].ip",
                "subsets[0].addresses[1].ip",
                "subsets[0].ports[0].port",
                "subsets[1]",
                "subsets[1].ports[1].name"
            ]
        );
    }

    #[test]
    fn slices_check_addresses_by_type() {
        let mut slice = json!({"addressType": "IPv4", "endpoints": [{"addresses": ["10.0.0.1"]}],
                               "ports": [{"name": "http", "port": 80}]});
        default_endpoint_slice(&mut slice);
        assert!(validate_endpoint_slice(&slice).is_empty());
        slice["endpoints"][0]["addresses"] = json!(["fd00::1"]);
        assert_eq!(validate_endpoint_slice(&slice)[0].detail, "must be a valid IPv4 address");
        slice["addressType"] = json!("IPv6");
        assert!(validate_endpoint_slice(&slice).is_empty());
        slice["addressType"] = json!("IP");
        assert_eq!(validate_endpoint_slice(&slice)[0].field, "addressType");
        let old = json!({"addressType": "IPv4"});
        assert_eq!(
            validate_endpoint_slice_update(&old, &json!({"addressType": "IPv6"}))[0].detail,
            "field is immutable"
        );
        let empty = json!({"addressType": "IPv4", "endpoints": [{"addresses": []}]});
        assert_eq!(
            validate_endpoint_slice(&empty)[0].to_string(),
            "endpoints[0].addresses: Required value: must contain at least 1 address"
        );
    }
}
