//! The pods already bound to a node, kept apart from the controller's store: uid → node and whether the pod has
//! terminated, which is all the scheduler reads of them (to count each node's pods). Most pods of a cluster are
//! bound, so the pod watch is routed through [`BoundPods::route`] before the store: a bound pod is recorded here
//! and reaches the store (and reconcile) only while the scheduler still has to confirm its binding
//! (`PodScheduled=True`); otherwise it is removed from the store, as if deleted.

use std::collections::HashMap;

use kube::ResourceExt;
use kube::runtime::watcher::Event;

use crate::slim::CachedPod;

/// Where a bound pod runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Placement {
    pub node: String,
    /// Phase `Succeeded` or `Failed`: it no longer counts towards the node's load.
    pub terminated: bool,
}

/// Bound pods by uid, following the pod watch (a relist replaces them all).
#[derive(Debug, Default)]
pub(crate) struct BoundPods {
    pods: HashMap<String, Placement>,
    /// The pods of a relist in progress; they replace `pods` when it completes.
    relist: Option<HashMap<String, Placement>>,
}

fn placement(pod: &CachedPod) -> Option<Placement> {
    Some(Placement { node: pod.node_name()?.to_string(), terminated: pod.terminated() })
}

impl BoundPods {
    /// Records one watch event and returns what the controller's store should see instead (`None`: nothing).
    /// `keep` tells, by uid, whether a bound pod must stay in the store (its binding is not confirmed yet).
    pub(crate) fn route(&mut self, event: Event<CachedPod>, keep: impl Fn(&str) -> bool) -> Option<Event<CachedPod>> {
        match event {
            Event::Init => {
                self.relist = Some(HashMap::new());
                Some(Event::Init)
            }
            Event::InitApply(pod) => {
                let (Some(at), Some(uid)) = (placement(&pod), pod.uid()) else { return Some(Event::InitApply(pod)) };
                let kept = keep(&uid);
                self.relist.as_mut().unwrap_or(&mut self.pods).insert(uid, at);
                kept.then_some(Event::InitApply(pod))
            }
            Event::InitDone => {
                if let Some(pods) = self.relist.take() {
                    self.pods = pods;
                }
                Some(Event::InitDone)
            }
            Event::Apply(pod) => {
                let uid = pod.uid().unwrap_or_default();
                let Some(at) = placement(&pod) else {
                    self.pods.remove(&uid);
                    return Some(Event::Apply(pod));
                };
                let kept = keep(&uid);
                self.pods.insert(uid, at);
                Some(if kept { Event::Apply(pod) } else { Event::Delete(pod) })
            }
            Event::Delete(pod) => {
                if let Some(uid) = pod.uid() {
                    self.pods.remove(&uid);
                }
                Some(Event::Delete(pod))
            }
        }
    }

    /// Whether the pod with this uid is bound.
    pub(crate) fn contains(&self, uid: &str) -> bool {
        self.pods.contains_key(uid)
    }

    /// Every bound pod's placement.
    pub(crate) fn placements(&self) -> impl Iterator<Item = &Placement> {
        self.pods.values()
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::json;

    use super::*;

    fn pod(uid: &str, node: Option<&str>, phase: &str) -> CachedPod {
        let mut v = json!({"metadata": {"name": uid, "namespace": "ns", "uid": uid},
            "spec": {"containers": []}, "status": {"phase": phase}});
        if let Some(n) = node {
            v["spec"]["nodeName"] = json!(n);
        }
        CachedPod::from(serde_json::from_value::<Pod>(v).expect("pod"))
    }

    fn kind(e: &Option<Event<CachedPod>>) -> &'static str {
        match e {
            None => "none",
            Some(Event::Init) => "init",
            Some(Event::InitApply(_)) => "init-apply",
            Some(Event::InitDone) => "init-done",
            Some(Event::Apply(_)) => "apply",
            Some(Event::Delete(_)) => "delete",
        }
    }

    #[test]
    fn bound_pods_leave_the_store_unless_unconfirmed() {
        let mut b = BoundPods::default();
        let never = |_: &str| false;
        assert_eq!(kind(&b.route(Event::Apply(pod("a", None, "Pending")), never)), "apply");
        assert!(!b.contains("a"));
        assert_eq!(kind(&b.route(Event::Apply(pod("a", Some("n1"), "Pending")), never)), "delete");
        assert!(b.contains("a"));
        assert_eq!(kind(&b.route(Event::Apply(pod("c", Some("n2"), "Running")), |uid| uid == "c")), "apply");
        assert!(b.contains("c"));
        let mut placements: Vec<_> = b.placements().map(|p| p.node.as_str()).collect();
        placements.sort_unstable();
        assert_eq!(placements, ["n1", "n2"]);
        assert_eq!(kind(&b.route(Event::Apply(pod("a", Some("n1"), "Succeeded")), never)), "delete");
        assert!(b.placements().any(|p| p.node == "n1" && p.terminated));
        assert_eq!(kind(&b.route(Event::Delete(pod("a", Some("n1"), "Succeeded")), never)), "delete");
        assert!(!b.contains("a"));
    }

    #[test]
    fn a_relist_replaces_the_bound_pods() {
        let mut b = BoundPods::default();
        let never = |_: &str| false;
        b.route(Event::Apply(pod("gone", Some("n1"), "Running")), never);
        assert_eq!(kind(&b.route(Event::Init, never)), "init");
        assert_eq!(kind(&b.route(Event::InitApply(pod("x", Some("n1"), "Running")), never)), "none");
        assert_eq!(kind(&b.route(Event::InitApply(pod("y", Some("n1"), "Running")), |_| true)), "init-apply");
        assert_eq!(kind(&b.route(Event::InitApply(pod("z", None, "Pending")), never)), "init-apply");
        assert!(b.contains("gone") && !b.contains("x"), "the old list stays until the relist completes");
        assert_eq!(kind(&b.route(Event::InitDone, never)), "init-done");
        assert!(!b.contains("gone") && b.contains("x") && b.contains("y") && !b.contains("z"));
    }
}
