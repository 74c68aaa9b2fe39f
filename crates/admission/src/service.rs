//! Services: upstream `SetDefaults_Service`, the registry strategy's cluster-IP normalisation and type-change
//! wiping, and `ValidateService` / `ValidateServiceUpdate`, message for message.
//!
//! The API server allocates `clusterIP`(s) and node ports after validation, so a Service with them unset is
//! valid here.

use serde_json::{Value, json};
use skiff_api::FieldError;

use crate::json::{arr, has, int, s, same, str_map};
use crate::meta::{validate_labels, validate_unique_dns1123_label};
use crate::names;

mod strategy;
#[cfg(test)]
mod tests;

pub use strategy::{default, prepare_update};

const MAX_CLIENT_IP_AFFINITY_SECONDS: i64 = 86400;
const SUPPORTED_PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
const SUPPORTED_TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
const LB_SOURCE_RANGES_ANNOTATION: &str = "service.beta.kubernetes.io/load-balancer-source-ranges";

fn spec(svc: &Value) -> &Value {
    svc.get("spec").unwrap_or(&Value::Null)
}

fn svc_type(svc: &Value) -> &str {
    s(spec(svc), "type")
}

fn cluster_ips(svc: &Value) -> Vec<&str> {
    arr(spec(svc), "clusterIPs").iter().map(|v| v.as_str().unwrap_or("")).collect()
}

fn is_headless(svc: &Value) -> bool {
    cluster_ips(svc) == ["None"]
}

/// NodePort and LoadBalancer services, or ClusterIP ones with external IPs.
fn externally_accessible(svc: &Value) -> bool {
    matches!(svc_type(svc), "LoadBalancer" | "NodePort")
        || (svc_type(svc) == "ClusterIP" && !arr(spec(svc), "externalIPs").is_empty())
}

fn needs_health_check(svc: &Value) -> bool {
    svc_type(svc) == "LoadBalancer" && s(spec(svc), "externalTrafficPolicy") == "Local"
}

/// `ValidateService` without the metadata checks (the caller runs those).
pub fn validate(svc: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let sp = spec(svc);
    let ty = svc_type(svc);
    let ports = arr(sp, "ports");
    let headless = is_headless(svc);
    if ports.is_empty() && !headless && ty != "ExternalName" {
        errs.push(FieldError::required("spec.ports", ""));
    }
    match ty {
        "LoadBalancer" | "NodePort" if headless => errs.push(FieldError::invalid(
            "spec.clusterIPs[0]",
            "None",
            format!("may not be set to 'None' for {ty} services"),
        )),
        "ExternalName" => {
            if !arr(sp, "clusterIPs").is_empty() {
                errs.push(FieldError::forbidden("spec.clusterIPs", "may not be set for ExternalName services"));
            }
            if !arr(sp, "ipFamilies").is_empty() {
                errs.push(FieldError::forbidden("spec.ipFamilies", "may not be set for ExternalName services"));
            }
            if has(sp, "ipFamilyPolicy") {
                errs.push(FieldError::forbidden("spec.ipFamilyPolicy", "may not be set for ExternalName services"));
            }
            let cname = s(sp, "externalName");
            let cname = cname.strip_suffix('.').unwrap_or(cname);
            if cname.is_empty() {
                errs.push(FieldError::required("spec.externalName", ""));
            } else {
                for msg in names::is_dns1123_subdomain(cname) {
                    errs.push(FieldError::invalid("spec.externalName", cname, msg));
                }
            }
        }
        _ => {}
    }
    let mut names_seen: Vec<&str> = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        errs.extend(validate_port(port, ports.len() > 1, &mut names_seen, &format!("spec.ports[{i}]")));
    }
    if has(sp, "selector") {
        errs.extend(validate_labels(&str_map(sp, "selector"), "spec.selector"));
    }
    let affinity = s(sp, "sessionAffinity");
    match affinity {
        "" => errs.push(FieldError::required("spec.sessionAffinity", "")),
        "ClientIP" => errs.extend(validate_client_ip_affinity(sp.get("sessionAffinityConfig"))),
        "None" => {
            if has(sp, "sessionAffinityConfig") {
                errs.push(FieldError::forbidden(
                    "spec.sessionAffinityConfig",
                    "must not be set when session affinity is None",
                ));
            }
        }
        other => errs.push(FieldError::not_supported("spec.sessionAffinity", other, &["ClientIP", "None"])),
    }
    errs.extend(validate_cluster_ips(svc));
    for (i, ip) in arr(sp, "externalIPs").iter().enumerate() {
        let ip = ip.as_str().unwrap_or("");
        let at = format!("spec.externalIPs[{i}]");
        let msgs = names::is_valid_ip(ip);
        if msgs.is_empty() {
            if let Some(msg) = names::non_special_ip(ip) {
                errs.push(FieldError::invalid(at, ip, msg));
            }
        } else {
            errs.extend(msgs.into_iter().map(|m| FieldError::invalid(at.clone(), ip, m)));
        }
    }
    if ty.is_empty() {
        errs.push(FieldError::required("spec.type", ""));
    } else if !SUPPORTED_TYPES.contains(&ty) {
        errs.push(FieldError::not_supported("spec.type", ty, SUPPORTED_TYPES));
    }
    if ty == "ClusterIP" {
        for (i, port) in ports.iter().enumerate() {
            if int(port, "nodePort").unwrap_or(0) != 0 {
                errs.push(FieldError::forbidden(
                    format!("spec.ports[{i}].nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            }
        }
    }
    let mut node_ports: Vec<(&str, i64)> = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let np = int(port, "nodePort").unwrap_or(0);
        if np == 0 {
            continue;
        }
        let key = (s(port, "protocol"), np);
        if node_ports.contains(&key) {
            errs.push(FieldError::duplicate(format!("spec.ports[{i}].nodePort"), np));
        }
        node_ports.push(key);
    }
    let mut seen: Vec<(&str, i64)> = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let key = (s(port, "protocol"), int(port, "port").unwrap_or(0));
        if seen.contains(&key) {
            errs.push(FieldError::duplicate(format!("spec.ports[{i}]"), json!({"port": key.1, "protocol": key.0})));
        }
        seen.push(key);
    }
    errs.extend(validate_source_ranges(svc));
    if has(sp, "allocateLoadBalancerNodePorts") && ty != "LoadBalancer" {
        errs.push(FieldError::forbidden(
            "spec.allocateLoadBalancerNodePorts",
            "may only be used when `type` is 'LoadBalancer'",
        ));
    }
    if ty == "LoadBalancer" && !has(sp, "allocateLoadBalancerNodePorts") {
        errs.push(FieldError::required("allocateLoadBalancerNodePorts", ""));
    }
    if has(sp, "loadBalancerClass") {
        let class = s(sp, "loadBalancerClass");
        if ty == "LoadBalancer" {
            for msg in names::is_qualified_name(class) {
                errs.push(FieldError::invalid("spec.loadBalancerClass", class, msg));
            }
        } else {
            errs.push(FieldError::forbidden(
                "spec.loadBalancerClass",
                "may only be used when `type` is 'LoadBalancer'",
            ));
        }
    }
    errs.extend(validate_traffic_policies(svc));
    errs
}

fn validate_port<'a>(port: &'a Value, require_name: bool, seen: &mut Vec<&'a str>, at: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name = s(port, "name");
    if require_name && name.is_empty() {
        errs.push(FieldError::required(format!("{at}.name"), ""));
    } else if !name.is_empty() {
        errs.extend(validate_unique_dns1123_label(name, &format!("{at}.name"), seen));
    }
    let number = int(port, "port").unwrap_or(0);
    for msg in names::is_valid_port_num(number) {
        errs.push(FieldError::invalid(format!("{at}.port"), number, msg));
    }
    let protocol = s(port, "protocol");
    if protocol.is_empty() {
        errs.push(FieldError::required(format!("{at}.protocol"), ""));
    } else if !SUPPORTED_PROTOCOLS.contains(&protocol) {
        errs.push(FieldError::not_supported(format!("{at}.protocol"), protocol, SUPPORTED_PROTOCOLS));
    }
    errs.extend(validate_port_num_or_name(port.get("targetPort"), &format!("{at}.targetPort")));
    if has(port, "appProtocol") {
        let proto = s(port, "appProtocol");
        for msg in names::is_qualified_name(proto) {
            errs.push(FieldError::invalid(format!("{at}.appProtocol"), proto, msg));
        }
    }
    errs
}

/// `ValidatePortNumOrName`: a number in 1–65535 or an IANA service name.
pub fn validate_port_num_or_name(v: Option<&Value>, at: &str) -> Vec<FieldError> {
    match v {
        Some(Value::String(name)) => {
            names::is_valid_port_name(name).into_iter().map(|m| FieldError::invalid(at, name.as_str(), m)).collect()
        }
        other => {
            let n = other.and_then(Value::as_i64).unwrap_or(0);
            names::is_valid_port_num(n).into_iter().map(|m| FieldError::invalid(at, n, m)).collect()
        }
    }
}

fn validate_client_ip_affinity(config: Option<&Value>) -> Vec<FieldError> {
    let at = "spec.sessionAffinityConfig";
    let detail = "when session affinity type is ClientIP";
    let Some(config) = config.filter(|c| !c.is_null()) else {
        return vec![FieldError::required(at, detail)];
    };
    let Some(client_ip) = config.get("clientIP").filter(|c| !c.is_null()) else {
        return vec![FieldError::required(format!("{at}.clientIP"), detail)];
    };
    let Some(timeout) = int(client_ip, "timeoutSeconds") else {
        return vec![FieldError::required(format!("{at}.clientIP.timeoutSeconds"), detail)];
    };
    if timeout <= 0 || timeout > MAX_CLIENT_IP_AFFINITY_SECONDS {
        return vec![FieldError::invalid(
            format!("{at}.clientIP.timeoutSeconds"),
            timeout,
            format!("must be greater than 0 and less than {MAX_CLIENT_IP_AFFINITY_SECONDS}"),
        )];
    }
    Vec::new()
}

/// `ValidateServiceClusterIPsRelatedFields`.
fn validate_cluster_ips(svc: &Value) -> Vec<FieldError> {
    let sp = spec(svc);
    if svc_type(svc) == "ExternalName" {
        return Vec::new();
    }
    let mut errs = Vec::new();
    let ips = cluster_ips(svc);
    let ips_value = || sp.get("clusterIPs").cloned().unwrap_or(Value::Null);
    let cluster_ip = s(sp, "clusterIP");
    if !cluster_ip.is_empty() {
        if ips.is_empty() {
            errs.push(FieldError::required("spec.clusterIPs", ""));
        } else if ips[0] != cluster_ip {
            errs.push(FieldError::invalid("spec.clusterIPs", ips_value(), "first value must match `clusterIP`"));
        }
    } else if !ips.is_empty() {
        errs.push(FieldError::invalid(
            "spec.clusterIPs",
            ips_value(),
            "must be empty when `clusterIP` is not specified",
        ));
    }
    let families: Vec<&str> = arr(sp, "ipFamilies").iter().map(|v| v.as_str().unwrap_or("")).collect();
    for (i, f) in families.iter().enumerate() {
        if !matches!(*f, "IPv4" | "IPv6") {
            errs.push(FieldError::not_supported(format!("spec.ipFamilies[{i}]"), *f, &["IPv4", "IPv6"]));
        }
        if families[..i].contains(f) {
            errs.push(FieldError::duplicate(format!("spec.ipFamilies[{i}]"), *f));
        }
    }
    if has(sp, "ipFamilyPolicy") {
        let policy = s(sp, "ipFamilyPolicy");
        let supported = ["PreferDualStack", "RequireDualStack", "SingleStack"];
        if !supported.contains(&policy) {
            errs.push(FieldError::not_supported("spec.ipFamilyPolicy", policy, &supported));
        }
    }
    let mut invalid_ips = false;
    for (i, ip) in ips.iter().enumerate() {
        if i == 0 && *ip == "None" {
            if ips.len() > 1 {
                invalid_ips = true;
                errs.push(FieldError::invalid(
                    "spec.clusterIPs",
                    ips_value(),
                    "'None' must be the first and only value",
                ));
            }
            continue;
        }
        for msg in names::is_valid_ip(ip) {
            invalid_ips = true;
            errs.push(FieldError::invalid(format!("spec.clusterIPs[{i}]"), *ip, msg));
        }
    }
    if ips.len() > 2 {
        errs.push(FieldError::invalid("spec.clusterIPs", ips_value(), "may only hold up to 2 values"));
    }
    if invalid_ips {
        return errs;
    }
    if ips.len() > 1 {
        let v6 = ips.iter().filter(|ip| names::parse_ip(ip).is_some_and(|a| a.is_ipv6())).count();
        if v6 != 1 || ips.len() != 2 {
            errs.push(FieldError::invalid(
                "spec.clusterIPs",
                ips_value(),
                "may specify no more than one IP for each IP family",
            ));
        }
    }
    if !is_headless(svc) {
        for (i, (ip, family)) in ips.iter().zip(&families).enumerate() {
            let v6 = names::parse_ip(ip).is_some_and(|a| a.is_ipv6());
            if *family == "IPv4" && v6 {
                errs.push(FieldError::invalid(
                    format!("spec.clusterIPs[{i}]"),
                    *ip,
                    format!("expected an IPv4 value as indicated by `ipFamilies[{i}]`"),
                ));
            }
            if *family == "IPv6" && !v6 {
                errs.push(FieldError::invalid(
                    format!("spec.clusterIPs[{i}]"),
                    *ip,
                    format!("expected an IPv6 value as indicated by `ipFamilies[{i}]`"),
                ));
            }
        }
    }
    errs
}

fn validate_source_ranges(svc: &Value) -> Vec<FieldError> {
    let sp = spec(svc);
    let mut errs = Vec::new();
    let ranges = arr(sp, "loadBalancerSourceRanges");
    let lb_only = "may only be used when `type` is 'LoadBalancer'";
    if !ranges.is_empty() {
        let at = "spec.LoadBalancerSourceRanges";
        if svc_type(svc) != "LoadBalancer" {
            errs.push(FieldError::forbidden(at, lb_only));
        }
        for (i, r) in ranges.iter().enumerate() {
            let r = r.as_str().unwrap_or("").trim();
            for msg in names::is_valid_cidr(r) {
                errs.push(FieldError::invalid(format!("{at}[{i}]"), r, msg));
            }
        }
    } else if let Some(val) = svc.pointer("/metadata/annotations").and_then(|a| a.get(LB_SOURCE_RANGES_ANNOTATION)) {
        let at = format!("metadata.annotations[{LB_SOURCE_RANGES_ANNOTATION}]");
        if svc_type(svc) != "LoadBalancer" {
            errs.push(FieldError::forbidden(at.clone(), lb_only));
        }
        let val = val.as_str().unwrap_or("").trim();
        if !val.is_empty() {
            for r in val.split(',') {
                let r = r.trim();
                for msg in names::is_valid_cidr(r) {
                    errs.push(FieldError::invalid(at.clone(), r, msg));
                }
            }
        }
    }
    errs
}

fn validate_traffic_policies(svc: &Value) -> Vec<FieldError> {
    let sp = spec(svc);
    let mut errs = Vec::new();
    let etp = s(sp, "externalTrafficPolicy");
    if !externally_accessible(svc) {
        if !etp.is_empty() {
            errs.push(FieldError::invalid(
                "spec.externalTrafficPolicy",
                etp,
                "may only be set for externally-accessible services",
            ));
        }
    } else if etp.is_empty() {
        errs.push(FieldError::required("spec.externalTrafficPolicy", ""));
    } else if !matches!(etp, "Cluster" | "Local") {
        errs.push(FieldError::not_supported("spec.externalTrafficPolicy", etp, &["Cluster", "Local"]));
    }
    let hc = int(sp, "healthCheckNodePort").unwrap_or(0);
    if !needs_health_check(svc) {
        if hc != 0 {
            errs.push(FieldError::invalid(
                "spec.healthCheckNodePort",
                hc,
                "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
            ));
        }
    } else if hc == 0 {
        errs.push(FieldError::required("spec.healthCheckNodePort", ""));
    } else {
        for msg in names::is_valid_port_num(hc) {
            errs.push(FieldError::invalid("spec.healthCheckNodePort", hc, msg));
        }
    }
    let ty = svc_type(svc);
    match sp.get("internalTrafficPolicy").and_then(Value::as_str) {
        None if matches!(ty, "NodePort" | "LoadBalancer" | "ClusterIP") => {
            errs.push(FieldError::required("spec.internalTrafficPolicy", ""));
        }
        Some(itp) if !matches!(itp, "Cluster" | "Local") => {
            errs.push(FieldError::not_supported("spec.internalTrafficPolicy", itp, &["Cluster", "Local"]));
        }
        _ => {}
    }
    if let Some(td) = sp.get("trafficDistribution").and_then(Value::as_str)
        && !matches!(td, "PreferClose")
    {
        errs.push(FieldError::not_supported("spec.trafficDistribution", td, &["PreferClose"]));
    }
    errs
}

/// The update-only rules of `ValidateServiceUpdate` (the caller adds metadata and `validate(new)`).
pub fn validate_update(old: &Value, new: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let (ot, nt) = (svc_type(old), svc_type(new));
    if ot != "ExternalName" && nt != "ExternalName" && !(is_headless(old) && is_headless(new)) {
        let (o, n) = (cluster_ips(old), cluster_ips(new));
        let n_value = || spec(new).get("clusterIPs").cloned().unwrap_or(Value::Null);
        if o.len() == n.len() {
            if let Some(i) = o.iter().zip(&n).position(|(a, b)| a != b) {
                errs.push(FieldError::invalid(format!("spec.clusterIPs[{i}]"), n_value(), "may not change once set"));
            }
        } else if o.len() > n.len() {
            if n.is_empty() {
                errs.push(FieldError::invalid("spec.clusterIPs[0]", n_value(), "primary clusterIP can not be unset"));
            } else if n[0] != o[0] {
                errs.push(FieldError::invalid("spec.clusterIPs[0]", n_value(), "may not change once set"));
            }
        } else if !o.is_empty() && n[0] != o[0] {
            errs.push(FieldError::invalid("spec.clusterIPs[0]", n_value(), "may not change once set"));
        }
        let (of, nf) = (arr(spec(old), "ipFamilies"), arr(spec(new), "ipFamilies"));
        if is_headless(old) == is_headless(new) && !of.is_empty() && !nf.is_empty() && of[0] != nf[0] {
            errs.push(FieldError::invalid("spec.ipFamilies[0]", Value::Array(nf.to_vec()), "may not change once set"));
        }
    }
    if ot == "LoadBalancer"
        && nt == "LoadBalancer"
        && !same(spec(old).get("loadBalancerClass"), spec(new).get("loadBalancerClass"))
    {
        let v = spec(new).get("loadBalancerClass").cloned().unwrap_or(Value::Null);
        errs.push(FieldError::invalid("spec.loadBalancerClass", v, "may not change once set"));
    }
    if needs_health_check(old)
        && needs_health_check(new)
        && int(spec(old), "healthCheckNodePort") != int(spec(new), "healthCheckNodePort")
    {
        errs.push(FieldError::forbidden("spec.healthCheckNodePort", "field is immutable"));
    }
    errs
}
