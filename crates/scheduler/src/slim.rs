//! What the scheduler keeps of the objects it caches (upstream informers strip `managedFields` the same way,
//! with `TransformStripManagedFields`; the scheduler goes further for pods). Every pod of the cluster is in the
//! pod cache, most of them bound, and a bound pod only counts towards its node's load, so the cache holds a
//! [`CachedPod`]: the pod's identity, node and phase, with the whole spec and status kept only while it is
//! unbound (the filters read them). [`CachedPod::to_pod`] gives reconcile a `Pod` with everything the scheduler
//! reads. Nodes are few; they lose `managedFields`, the last-applied annotation and `status.images`.

use k8s_openapi::api::core::v1::{Node, Pod, PodCondition, PodSpec, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;

/// The annotation `kubectl apply` keeps a full copy of the object in.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// What the scheduler's cache keeps of a pod; deserialized from a `Pod` (so a watch of `CachedPod` lists and
/// watches pods) and turned back into one by [`CachedPod::to_pod`].
#[derive(Clone, Debug, Deserialize)]
#[serde(from = "Pod")]
pub struct CachedPod {
    /// Name, namespace, uid, resourceVersion and deletionTimestamp when bound; all but managedFields and the
    /// last-applied annotation when not.
    metadata: ObjectMeta,
    /// `spec.nodeName`, when set and not empty.
    node_name: Option<String>,
    /// The rest of a bound pod, or the whole of an unbound one.
    rest: Rest,
}

#[derive(Clone, Debug)]
enum Rest {
    Bound {
        scheduler_name: Option<String>,
        phase: Option<String>,
        /// The `PodScheduled` condition is `True`.
        scheduled: bool,
    },
    Unbound(Box<(Option<PodSpec>, Option<PodStatus>)>),
}

impl From<Pod> for CachedPod {
    fn from(pod: Pod) -> Self {
        let Pod { mut metadata, spec, status } = pod;
        let node_name = spec.as_ref().and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty());
        if node_name.is_none() {
            strip_metadata(&mut metadata);
            return Self { metadata, node_name, rest: Rest::Unbound(Box::new((spec, status))) };
        }
        let metadata = ObjectMeta {
            name: metadata.name,
            namespace: metadata.namespace,
            uid: metadata.uid,
            resource_version: metadata.resource_version,
            deletion_timestamp: metadata.deletion_timestamp,
            ..ObjectMeta::default()
        };
        let scheduled = status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "PodScheduled" && c.status == "True"));
        let rest = Rest::Bound {
            scheduler_name: spec.and_then(|s| s.scheduler_name),
            phase: status.and_then(|s| s.phase),
            scheduled,
        };
        Self { metadata, node_name, rest }
    }
}

impl CachedPod {
    /// The node the pod is bound to.
    pub fn node_name(&self) -> Option<&str> {
        self.node_name.as_deref()
    }

    /// Phase `Succeeded` or `Failed`.
    pub fn terminated(&self) -> bool {
        let phase = match &self.rest {
            Rest::Bound { phase, .. } => phase.as_deref(),
            Rest::Unbound(rest) => rest.1.as_ref().and_then(|s| s.phase.as_deref()),
        };
        matches!(phase, Some("Succeeded" | "Failed"))
    }

    /// The pod as reconcile reads it: whole when unbound; when bound, its identity, `deletionTimestamp`,
    /// `spec.nodeName` and `spec.schedulerName`, `status.phase` and a `PodScheduled=True` condition if it had one.
    pub fn to_pod(&self) -> Pod {
        let (spec, status) = match &self.rest {
            Rest::Unbound(rest) => (rest.0.clone(), rest.1.clone()),
            Rest::Bound { scheduler_name, phase, scheduled } => {
                let spec = PodSpec {
                    node_name: self.node_name.clone(),
                    scheduler_name: scheduler_name.clone(),
                    ..PodSpec::default()
                };
                let condition =
                    PodCondition { type_: "PodScheduled".into(), status: "True".into(), ..PodCondition::default() };
                let status = PodStatus {
                    phase: phase.clone(),
                    conditions: scheduled.then(|| vec![condition]),
                    ..PodStatus::default()
                };
                (Some(spec), Some(status))
            }
        };
        Pod { metadata: self.metadata.clone(), spec, status }
    }
}

impl k8s_openapi::Resource for CachedPod {
    const API_VERSION: &'static str = Pod::API_VERSION;
    const GROUP: &'static str = Pod::GROUP;
    const KIND: &'static str = Pod::KIND;
    const VERSION: &'static str = Pod::VERSION;
    const URL_PATH_SEGMENT: &'static str = Pod::URL_PATH_SEGMENT;
    type Scope = <Pod as k8s_openapi::Resource>::Scope;
}

impl k8s_openapi::Metadata for CachedPod {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// Drops `managedFields`, the last-applied annotation and the list of images present (`status.images`) from a
/// watched node: the filters read its labels, spec and conditions.
pub fn node(node: &mut Node) {
    strip_metadata(&mut node.metadata);
    if let Some(status) = node.status.as_mut() {
        status.images = None;
    }
}

fn strip_metadata(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::filter;

    fn full_pod(node_name: Option<&str>) -> Pod {
        let mut v = json!({
            "metadata": {
                "name": "p", "namespace": "ns", "uid": "u1", "resourceVersion": "7",
                "labels": {"app": "web"},
                "annotations": {LAST_APPLIED: "{\"big\": true}", "keep": "me"},
                "managedFields": [{"manager": "kubectl", "operation": "Update", "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:spec": {"f:containers": {}}}}],
            },
            "spec": {
                "schedulerName": "default-scheduler",
                "containers": [{"name": "c", "image": "nginx", "env": [{"name": "A", "value": "b"}]}],
                "nodeSelector": {"disk": "ssd"},
                "tolerations": [{"operator": "Exists"}],
                "volumes": [{"name": "v", "emptyDir": {}}],
            },
            "status": {"phase": "Running", "podIP": "10.0.0.1", "conditions": [
                {"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}]},
        });
        if let Some(n) = node_name {
            v["spec"]["nodeName"] = json!(n);
        }
        serde_json::from_value(v).expect("pod")
    }

    fn cached(p: Pod) -> Pod {
        let c = CachedPod::from(p);
        assert_eq!(c.metadata.managed_fields, None);
        c.to_pod()
    }

    #[test]
    fn bound_pods_keep_only_what_the_scheduler_reads() {
        let p = cached(full_pod(Some("n1")));
        assert_eq!(p.metadata.name.as_deref(), Some("p"));
        assert_eq!(p.metadata.namespace.as_deref(), Some("ns"));
        assert_eq!(p.metadata.uid.as_deref(), Some("u1"));
        assert_eq!(p.metadata.resource_version.as_deref(), Some("7"));
        assert!(p.metadata.managed_fields.is_none() && p.metadata.annotations.is_none());
        let spec = p.spec.as_ref().expect("spec");
        assert_eq!(spec.node_name.as_deref(), Some("n1"));
        assert_eq!(spec.scheduler_name.as_deref(), Some("default-scheduler"));
        assert!(spec.containers.is_empty() && spec.volumes.is_none() && spec.tolerations.is_none());
        let status = p.status.as_ref().expect("status");
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert!(status.pod_ip.is_none());
        let conditions: Vec<_> =
            status.conditions.iter().flatten().map(|c| (c.type_.as_str(), c.status.as_str())).collect();
        assert_eq!(conditions, [("PodScheduled", "True")]);
        let mut unconfirmed = full_pod(Some("n1"));
        unconfirmed.status = None;
        assert!(cached(unconfirmed).status.is_some_and(|s| s.conditions.is_none() && s.phase.is_none()));
    }

    #[test]
    fn the_cache_counts_what_the_scheduler_counts() {
        let bound = CachedPod::from(full_pod(Some("n1")));
        assert_eq!(bound.node_name(), Some("n1"));
        assert!(!bound.terminated());
        let mut done = full_pod(Some("n1"));
        done.status.get_or_insert_default().phase = Some("Succeeded".into());
        assert!(CachedPod::from(done).terminated());
        let mut empty = full_pod(Some(""));
        empty.status.get_or_insert_default().phase = Some("Failed".into());
        let empty = CachedPod::from(empty);
        assert_eq!(empty.node_name(), None);
        assert!(empty.terminated());
        assert_eq!(empty.to_pod().spec.and_then(|s| s.node_name).as_deref(), Some(""));
    }

    #[test]
    fn a_watch_of_cached_pods_reads_pods() {
        let json = serde_json::to_value(full_pod(Some("n1"))).expect("json");
        let c: CachedPod = serde_json::from_value(json).expect("cached pod");
        assert_eq!(c.node_name(), Some("n1"));
        assert_eq!(<CachedPod as kube::Resource>::url_path(&(), Some("ns")), "/api/v1/namespaces/ns/pods");
    }

    #[test]
    fn pending_pods_keep_their_spec_but_lose_managed_fields() {
        let p = cached(full_pod(None));
        assert!(p.metadata.managed_fields.is_none());
        let annotations = p.metadata.annotations.as_ref().expect("annotations");
        assert!(!annotations.contains_key(LAST_APPLIED));
        assert_eq!(annotations.get("keep").map(String::as_str), Some("me"));
        let spec = p.spec.as_ref().expect("spec");
        assert_eq!(spec.containers.len(), 1);
        assert!(spec.node_selector.is_some() && spec.tolerations.is_some());
        assert_eq!(p.status.and_then(|s| s.pod_ip).as_deref(), Some("10.0.0.1"));
    }

    #[test]
    fn slim_nodes_still_filter_the_same() {
        let mut n: Node = serde_json::from_value(json!({
            "metadata": {"name": "n1", "labels": {"disk": "ssd"}, "managedFields": [{"manager": "kubelet"}]},
            "spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]},
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                "images": [{"names": ["nginx"], "sizeBytes": 1}]},
        }))
        .expect("node");
        let p = full_pod(None);
        let before = filter::reject(&p, &n);
        node(&mut n);
        assert!(n.metadata.managed_fields.is_none());
        assert!(n.status.as_ref().is_some_and(|s| s.images.is_none()));
        assert_eq!(filter::reject(&p, &n), before);
        assert!(n.spec.as_ref().is_some_and(|s| s.taints.is_some()));
    }
}
