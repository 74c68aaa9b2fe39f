//! Cluster-level kinds and small ones: Namespaces (phase, the `kubernetes` finalizer, the name label), Nodes
//! (taints, pod CIDRs, allocatable) and Leases.

use serde_json::{Value, json};
use skiff_api::FieldError;

use crate::json::{arr, child, has, int, s, set, set_default};
use crate::meta::validate_finalizer_name;
use crate::names;

/// `SetDefaults_Namespace` (the `kubernetes.io/metadata.name` label), `SetDefaults_NamespaceStatus` and the
/// strategy's `kubernetes` finalizer.
pub fn default_namespace(ns: &mut Value) {
    let name = ns.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
    if !name.is_empty() {
        let labels = child(child(ns, "metadata"), "labels");
        set(labels, "kubernetes.io/metadata.name", json!(name));
    }
    let spec = child(ns, "spec");
    let has_kubernetes = arr(spec, "finalizers").iter().any(|f| f.as_str() == Some("kubernetes"));
    if !has_kubernetes && !has(spec, "finalizers") {
        set(spec, "finalizers", json!(["kubernetes"]));
    }
    set_default(child(ns, "status"), "phase", json!("Active"));
}

pub fn validate_namespace(ns: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for f in arr(ns.get("spec").unwrap_or(&Value::Null), "finalizers") {
        errs.extend(validate_finalizer_name(f.as_str().unwrap_or(""), "spec.finalizers"));
    }
    if let Some(phase) = ns.pointer("/status/phase").and_then(Value::as_str)
        && !matches!(phase, "Active" | "Terminating")
    {
        errs.push(FieldError::not_supported("status.phase", phase, &["Active", "Terminating"]));
    }
    errs
}

/// `SetDefaults_NodeStatus`: allocatable is capacity until the kubelet says otherwise.
pub fn default_node(node: &mut Value) {
    let Some(capacity) = node.pointer("/status/capacity").filter(|c| c.is_object()).cloned() else { return };
    set_default(child(node, "status"), "allocatable", capacity);
}

pub fn validate_node(node: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = node.get("spec").unwrap_or(&Value::Null);
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for (i, t) in arr(spec, "taints").iter().enumerate() {
        let at = format!("metadata.taints[{i}]");
        let key = s(t, "key");
        errs.extend(crate::meta::validate_label_name(key, &format!("{at}.key")));
        let value = s(t, "value");
        let msgs = names::is_label_value(value);
        if !msgs.is_empty() {
            errs.push(FieldError::invalid(format!("{at}.value"), value, msgs.join(";")));
        }
        match s(t, "effect") {
            "NoSchedule" | "PreferNoSchedule" | "NoExecute" => {}
            "" => errs.push(FieldError::required(format!("{at}.effect"), "")),
            e => errs.push(FieldError::not_supported(
                format!("{at}.effect"),
                e,
                &["NoExecute", "NoSchedule", "PreferNoSchedule"],
            )),
        }
        let pair = (key, s(t, "effect"));
        if seen.contains(&pair) {
            let mut e = FieldError::duplicate(at, t.clone());
            e.detail = "taints must be unique by key and effect pair".to_string();
            errs.push(e);
        } else {
            seen.push(pair);
        }
    }
    for (i, cidr) in arr(spec, "podCIDRs").iter().enumerate() {
        let cidr = cidr.as_str().unwrap_or("");
        for msg in names::is_valid_cidr(cidr) {
            errs.push(FieldError::invalid(format!("spec.podCIDRs[{i}]"), cidr, msg));
        }
    }
    errs
}

pub fn validate_node_update(old: &Value, new: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let (o, n) = (old.get("spec").unwrap_or(&Value::Null), new.get("spec").unwrap_or(&Value::Null));
    if !arr(o, "podCIDRs").is_empty() && arr(o, "podCIDRs") != arr(n, "podCIDRs") {
        errs.push(FieldError::forbidden(
            "spec.podCIDRs",
            "node updates may not change podCIDR except from \"\" to valid",
        ));
    }
    if !s(o, "providerID").is_empty() && s(o, "providerID") != s(n, "providerID") {
        errs.push(FieldError::forbidden(
            "spec.providerID",
            "node updates may not change providerID except from \"\" to valid",
        ));
    }
    errs
}

/// `ValidateLeaseSpec`.
pub fn validate_lease(lease: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = lease.get("spec").unwrap_or(&Value::Null);
    if let Some(d) = int(spec, "leaseDurationSeconds")
        && d <= 0
    {
        errs.push(FieldError::invalid("spec.leaseDurationSeconds", d, "must be greater than 0"));
    }
    if let Some(t) = int(spec, "leaseTransitions")
        && t < 0
    {
        errs.push(FieldError::invalid("spec.leaseTransitions", t, "must be greater than or equal to 0"));
    }
    if has(spec, "strategy") && !matches!(s(spec, "strategy"), "OldestEmulationVersion") {
        errs.push(FieldError::not_supported("spec.strategy", s(spec, "strategy"), &["OldestEmulationVersion"]));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_default_and_validate() {
        let mut ns = json!({"metadata": {"name": "team-a"}});
        default_namespace(&mut ns);
        assert_eq!(ns["metadata"]["labels"]["kubernetes.io/metadata.name"], "team-a");
        assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
        assert_eq!(ns["status"]["phase"], "Active");
        assert!(validate_namespace(&ns).is_empty());
        let bad = json!({"spec": {"finalizers": ["custom"]}});
        assert_eq!(
            validate_namespace(&bad)[0].detail,
            "name is neither a standard finalizer name nor is it fully qualified"
        );
    }

    #[test]
    fn nodes() {
        let mut node = json!({"status": {"capacity": {"cpu": "4"}}, "spec": {"taints": [
            {"key": "a", "effect": "NoSchedule"}, {"key": "a", "effect": "NoSchedule"}, {"key": "b", "effect": "Bad"}]}});
        default_node(&mut node);
        assert_eq!(node["status"]["allocatable"], json!({"cpu": "4"}));
        let errs = validate_node(&node);
        assert_eq!(errs.len(), 2);
        assert_eq!(errs[0].field, "metadata.taints[1]");
        assert_eq!(errs[1].field, "metadata.taints[2].effect");
        let old = json!({"spec": {"podCIDRs": ["10.0.0.0/24"]}});
        let new = json!({"spec": {"podCIDRs": ["10.0.1.0/24"]}});
        assert_eq!(validate_node_update(&old, &new).len(), 1);
        assert!(validate_node_update(&json!({}), &new).is_empty());
    }

    #[test]
    fn leases() {
        assert!(validate_lease(&json!({"spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}})).is_empty());
        let errs = validate_lease(&json!({"spec": {"leaseDurationSeconds": 0, "leaseTransitions": -1}}));
        assert_eq!(errs.len(), 2);
        assert_eq!(errs[0].to_string(), "spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0");
    }
}
