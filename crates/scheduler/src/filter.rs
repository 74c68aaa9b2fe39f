//! The pure half of scheduling: which nodes a pod fits (the upstream filter plugins `NodeUnschedulable`,
//! `TaintToleration` and `NodeAffinity`'s nodeSelector part, run in that order and stopping at the first that
//! rejects), which of the fitting nodes wins (fewest pods, then name), and the upstream `FitError` message when none
//! fits. No I/O: the caller hands in the nodes and the per-node pod counts.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::{Node, Pod, Taint, Toleration};

/// The taint the node lifecycle controller puts on a node whose Ready condition is False.
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
/// The taint the node lifecycle controller puts on a node whose Ready condition is Unknown (or missing).
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// The taint that stands for `spec.unschedulable`.
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

/// Why one node was rejected; `Display` gives upstream's reason text.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rejection {
    /// `spec.unschedulable` (cordoned) and the pod does not tolerate it.
    Unschedulable,
    /// A NoSchedule/NoExecute taint (real or implied by readiness) the pod does not tolerate.
    UntoleratedTaint { key: String, value: String },
    /// A `spec.nodeSelector` label is missing or different.
    NodeSelector,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unschedulable => f.write_str("node(s) were unschedulable"),
            Self::UntoleratedTaint { key, value } => write!(f, "node(s) had untolerated taint {{{key}: {value}}}"),
            Self::NodeSelector => f.write_str("node(s) didn't match Pod's node affinity/selector"),
        }
    }
}

/// No node fits: the upstream message (`0/3 nodes are available: …`) is its `Display`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FitError {
    pub nodes: usize,
    /// Rejection reason text → number of nodes rejected for it.
    pub reasons: BTreeMap<String, usize>,
}

impl fmt::Display for FitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nodes == 0 {
            return f.write_str("no nodes available to schedule pods");
        }
        // Upstream sorts the "<count> <reason>" strings themselves.
        let mut parts: Vec<String> = self.reasons.iter().map(|(reason, n)| format!("{n} {reason}")).collect();
        parts.sort();
        write!(f, "0/{} nodes are available: {}.", self.nodes, parts.join(", "))
    }
}

/// The node's effective NoSchedule/NoExecute taints: its own, plus those the node lifecycle controller would add
/// for readiness (Skiff has no such controller, so the scheduler infers them from the Ready condition).
fn effective_taints(node: &Node) -> Vec<Taint> {
    let mut taints: Vec<Taint> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .collect();
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status.as_str());
    let implied = match ready {
        Some("True") => None,
        Some("False") => Some(TAINT_NOT_READY),
        _ => Some(TAINT_UNREACHABLE),
    };
    if let Some(key) = implied.filter(|k| !taints.iter().any(|t| t.key == *k)) {
        taints.push(Taint { key: key.into(), effect: "NoSchedule".into(), ..Taint::default() });
    }
    taints
}

/// Whether `toleration` tolerates `taint` (upstream `Toleration.ToleratesTaint`).
fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = toleration.effect.as_deref().filter(|e| !e.is_empty())
        && effect != taint.effect
    {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        _ => false,
    }
}

fn tolerated(pod: &Pod, taint: &Taint) -> bool {
    pod.spec.as_ref().and_then(|s| s.tolerations.as_ref()).is_some_and(|ts| ts.iter().any(|t| tolerates(t, taint)))
}

/// Runs the filters for one node; `None` means the pod fits.
pub fn reject(pod: &Pod, node: &Node) -> Option<Rejection> {
    let spec = node.spec.as_ref();
    if spec.and_then(|s| s.unschedulable).unwrap_or(false) {
        let cordon = Taint { key: TAINT_UNSCHEDULABLE.into(), effect: "NoSchedule".into(), ..Taint::default() };
        if !tolerated(pod, &cordon) {
            return Some(Rejection::Unschedulable);
        }
    }
    if let Some(taint) = effective_taints(node).into_iter().find(|t| !tolerated(pod, t)) {
        return Some(Rejection::UntoleratedTaint { key: taint.key, value: taint.value.unwrap_or_default() });
    }
    let selector = pod.spec.as_ref().and_then(|s| s.node_selector.as_ref());
    let labels = node.metadata.labels.as_ref();
    if let Some(selector) = selector
        && !selector.iter().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
    {
        return Some(Rejection::NodeSelector);
    }
    None
}

/// Picks the fitting node with the fewest pods (`counts`, by node name), ties broken by name.
pub fn choose<'a>(pod: &Pod, nodes: &'a [&'a Node], counts: &BTreeMap<String, usize>) -> Result<&'a str, FitError> {
    let mut reasons = BTreeMap::new();
    let mut best: Option<(usize, &str)> = None;
    for node in nodes {
        let Some(name) = node.metadata.name.as_deref() else { continue };
        match reject(pod, node) {
            Some(why) => *reasons.entry(why.to_string()).or_insert(0) += 1,
            None => {
                let candidate = (counts.get(name).copied().unwrap_or(0), name);
                if best.is_none_or(|b| candidate < b) {
                    best = Some(candidate);
                }
            }
        }
    }
    best.map(|(_, name)| name).ok_or(FitError { nodes: nodes.len(), reasons })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, ready: &str, extra: serde_json::Value) -> Node {
        let mut n = json!({
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "spec": {},
            "status": {"conditions": [{"type": "Ready", "status": ready}]}
        });
        if let (Some(n), Some(extra)) = (n.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                n.insert(k.clone(), v.clone());
            }
        }
        serde_json::from_value(n).expect("node")
    }

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "default"}, "spec": spec})).expect("pod")
    }

    fn plain() -> Pod {
        pod(json!({"containers": [{"name": "c"}]}))
    }

    #[test]
    fn fewest_pods_wins_and_ties_go_by_name() {
        let (a, b, c) = (node("b", "True", json!({})), node("a", "True", json!({})), node("c", "True", json!({})));
        let nodes = [&a, &b, &c];
        let mut counts = BTreeMap::new();
        assert_eq!(choose(&plain(), &nodes, &counts), Ok("a"));
        counts.insert("a".to_string(), 2);
        counts.insert("b".to_string(), 1);
        counts.insert("c".to_string(), 1);
        assert_eq!(choose(&plain(), &nodes, &counts), Ok("b"));
    }

    #[test]
    fn cordoned_not_ready_and_selector_mismatch_are_reported_like_upstream() {
        let cordoned = node("n1", "True", json!({"spec": {"unschedulable": true}}));
        let not_ready = node("n2", "False", json!({}));
        let unknown = node("n3", "Unknown", json!({}));
        let other = node("n4", "True", json!({}));
        let p = pod(json!({"containers": [{"name": "c"}], "nodeSelector": {"disk": "ssd"}}));
        let err = choose(&p, &[&cordoned, &not_ready, &unknown, &other], &BTreeMap::new()).expect_err("no fit");
        assert_eq!(
            err.to_string(),
            "0/4 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, \
             1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }, \
             1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }, 1 node(s) were unschedulable."
        );
        let none: [&Node; 0] = [];
        assert_eq!(
            choose(&plain(), &none, &BTreeMap::new()).expect_err("no nodes").to_string(),
            "no nodes available to schedule pods"
        );
    }

    #[test]
    fn node_selector_matches_all_labels() {
        let ssd = node("ssd", "True", json!({"metadata": {"name": "ssd", "labels": {"disk": "ssd", "zone": "a"}}}));
        let hdd = node("hdd", "True", json!({"metadata": {"name": "hdd", "labels": {"disk": "hdd"}}}));
        let p = pod(json!({"containers": [{"name": "c"}], "nodeSelector": {"disk": "ssd"}}));
        assert_eq!(choose(&p, &[&hdd, &ssd], &BTreeMap::new()), Ok("ssd"));
        let p = pod(json!({"containers": [{"name": "c"}], "nodeSelector": {"disk": "ssd", "zone": "b"}}));
        assert_eq!(reject(&p, &ssd), Some(Rejection::NodeSelector));
    }

    #[test]
    fn taints_and_tolerations() {
        let tainted = node(
            "t",
            "True",
            json!({"spec": {"taints": [
                {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"},
                {"key": "soft", "effect": "PreferNoSchedule"}
            ]}}),
        );
        assert_eq!(
            reject(&plain(), &tainted),
            Some(Rejection::UntoleratedTaint { key: "dedicated".into(), value: "gpu".into() })
        );
        let equal = pod(json!({"containers": [{"name": "c"}],
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]}));
        assert_eq!(reject(&equal, &tainted), None);
        let wrong_value =
            pod(json!({"containers": [{"name": "c"}], "tolerations": [{"key": "dedicated", "value": "cpu"}]}));
        assert!(reject(&wrong_value, &tainted).is_some());
        let wrong_effect = pod(json!({"containers": [{"name": "c"}],
            "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}]}));
        assert!(reject(&wrong_effect, &tainted).is_some());
        let everything = pod(json!({"containers": [{"name": "c"}], "tolerations": [{"operator": "Exists"}]}));
        assert_eq!(reject(&everything, &tainted), None);
        let cordoned = node("c", "False", json!({"spec": {"unschedulable": true}}));
        assert_eq!(reject(&everything, &cordoned), None, "tolerating everything includes cordon and not-ready");
        let not_ready_only = pod(json!({"containers": [{"name": "c"}],
            "tolerations": [{"key": TAINT_NOT_READY, "operator": "Exists"}]}));
        assert_eq!(reject(&not_ready_only, &node("nr", "False", json!({}))), None);
        assert!(reject(&not_ready_only, &node("nr", "Unknown", json!({}))).is_some());
    }
}
