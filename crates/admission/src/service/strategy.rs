//! The Service strategy's writes: `SetDefaults_Service` with the allocator's IP-family defaults, and
//! `PrepareForUpdate`'s cluster-IP normalisation and wiping of fields a new type no longer uses.

use serde_json::{Value, json};

use super::spec;
use crate::json::{arr, has, int, items_mut, obj, remove, s, same, set, set_default};
use crate::names;

const DEFAULT_CLIENT_IP_AFFINITY_SECONDS: i64 = 10800;

/// `SetDefaults_Service`, plus the create-time cluster-IP normalisation and IP-family defaults.
pub fn default(svc: &mut Value) {
    let spec = crate::json::child(svc, "spec");
    set_default(spec, "sessionAffinity", json!("None"));
    match s(spec, "sessionAffinity") {
        "None" => remove(spec, "sessionAffinityConfig"),
        "ClientIP" => {
            let timeout = spec.pointer("/sessionAffinityConfig/clientIP/timeoutSeconds");
            if timeout.is_none_or(Value::is_null) {
                set(
                    spec,
                    "sessionAffinityConfig",
                    json!({"clientIP": {"timeoutSeconds": DEFAULT_CLIENT_IP_AFFINITY_SECONDS}}),
                );
            }
        }
        _ => {}
    }
    set_default(spec, "type", json!("ClusterIP"));
    for port in items_mut(spec, "ports") {
        set_default(port, "protocol", json!("TCP"));
        let unset = match port.get("targetPort") {
            None | Some(Value::Null) => true,
            Some(Value::Number(n)) => n.as_i64() == Some(0),
            Some(Value::String(s)) => s.is_empty(),
            _ => false,
        };
        if unset && let Some(p) = port.get("port").cloned() {
            set(port, "targetPort", p);
        }
    }
    let ty = s(spec, "type").to_string();
    let externally = matches!(ty.as_str(), "LoadBalancer" | "NodePort")
        || (ty == "ClusterIP" && !arr(spec, "externalIPs").is_empty());
    if externally {
        set_default(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if matches!(ty.as_str(), "ClusterIP" | "NodePort" | "LoadBalancer") {
        set_default(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if ty == "LoadBalancer" {
        set_default(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    // normalizeClusterIPs (create): a client that set only the singular field gets the plural one too.
    let cluster_ip = s(spec, "clusterIP").to_string();
    if !cluster_ip.is_empty() && arr(spec, "clusterIPs").is_empty() {
        set(spec, "clusterIPs", json!([cluster_ip]));
    }
    if ty != "ExternalName" {
        default_ip_families(spec);
    }
}

/// The single-stack cluster's IP-family defaults the allocator applies: `SingleStack` and the family of the
/// requested IP (IPv4 when none); headless services without a selector get `RequireDualStack`.
fn default_ip_families(spec: &mut Value) {
    let headless = arr(spec, "clusterIPs").iter().map(|v| v.as_str()).eq([Some("None")]);
    let selectorless = obj(spec, "selector").is_none_or(|m| m.is_empty());
    let policy = if headless && selectorless { "RequireDualStack" } else { "SingleStack" };
    set_default(spec, "ipFamilyPolicy", json!(policy));
    if arr(spec, "ipFamilies").is_empty() {
        let family = arr(spec, "clusterIPs")
            .iter()
            .filter_map(|v| v.as_str().and_then(names::parse_ip))
            .next()
            .map_or("IPv4", |ip| if ip.is_ipv6() { "IPv6" } else { "IPv4" });
        set(spec, "ipFamilies", json!([family]));
    }
}

/// The strategy's `PrepareForUpdate` for main-resource writes: keep `clusterIPs` in step with `clusterIP`, and
/// wipe the fields the new type no longer uses when the client left them as they were.
pub fn prepare_update(old: &Value, new: &mut Value) {
    let old_spec = spec(old).clone();
    let o = |k: &str| old_spec.get(k);
    let new_spec = crate::json::child(new, "spec");
    // normalizeClusterIPs (update).
    let same_ips = |n: &Value| same(o("clusterIPs"), n.get("clusterIPs"));
    if !arr(&old_spec, "clusterIPs").is_empty()
        && arr(new_spec, "clusterIPs").is_empty()
        && s(&old_spec, "clusterIP") == s(new_spec, "clusterIP")
        && let Some(ips) = o("clusterIPs")
    {
        set(new_spec, "clusterIPs", ips.clone());
    }
    if s(&old_spec, "clusterIP") != s(new_spec, "clusterIP") {
        if !s(&old_spec, "clusterIP").is_empty() && s(new_spec, "clusterIP").is_empty() && same_ips(new_spec) {
            remove(new_spec, "clusterIPs");
        }
        let ip = s(new_spec, "clusterIP").to_string();
        if !ip.is_empty() && same_ips(new_spec) {
            set(new_spec, "clusterIPs", json!([ip]));
        }
    }
    // dropTypeDependentFields.
    let old_type = s(&old_spec, "type").to_string();
    let new_type = s(new_spec, "type").to_string();
    if old_type != "ExternalName" && new_type == "ExternalName" {
        if same_ips(new_spec) && same(o("clusterIP"), new_spec.get("clusterIP")) {
            remove(new_spec, "clusterIP");
            remove(new_spec, "clusterIPs");
        }
        for f in ["ipFamilies", "ipFamilyPolicy"] {
            if same(o(f), new_spec.get(f)) {
                remove(new_spec, f);
            }
        }
    }
    let needs_node_port = |t: &str| matches!(t, "NodePort" | "LoadBalancer");
    if needs_node_port(&old_type) && !needs_node_port(&new_type) {
        let node_ports =
            |sp: &Value| arr(sp, "ports").iter().map(|p| int(p, "nodePort").unwrap_or(0)).collect::<Vec<_>>();
        if node_ports(&old_spec) == node_ports(new_spec) {
            for port in items_mut(new_spec, "ports") {
                remove(port, "nodePort");
            }
        }
    }
    let needs_hc = |t: &str, sp: &Value| t == "LoadBalancer" && s(sp, "externalTrafficPolicy") == "Local";
    if needs_hc(&old_type, &old_spec)
        && !needs_hc(&new_type, new_spec)
        && same(o("healthCheckNodePort"), new_spec.get("healthCheckNodePort"))
    {
        remove(new_spec, "healthCheckNodePort");
    }
    if old_type == "LoadBalancer" && new_type != "LoadBalancer" {
        for f in ["allocateLoadBalancerNodePorts", "loadBalancerClass"] {
            if has(&old_spec, f) && same(o(f), new_spec.get(f)) {
                remove(new_spec, f);
            }
        }
    }
    let externally = |t: &str, sp: &Value| {
        matches!(t, "LoadBalancer" | "NodePort") || (t == "ClusterIP" && !arr(sp, "externalIPs").is_empty())
    };
    if externally(&old_type, &old_spec)
        && !externally(&new_type, new_spec)
        && same(o("externalTrafficPolicy"), new_spec.get("externalTrafficPolicy"))
    {
        remove(new_spec, "externalTrafficPolicy");
    }
    if new_type != "LoadBalancer"
        && let Some(status) = new.get_mut("status").filter(|s| s.is_object())
    {
        set(status, "loadBalancer", json!({}));
    }
}
