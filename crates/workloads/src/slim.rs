//! What the controllers keep of the objects they cache (upstream informers strip `managedFields` the same way,
//! with `TransformStripManagedFields`; pods go further). `metadata.managedFields` is never read and is the
//! heaviest part of an object in memory, so no cached Deployment or ReplicaSet keeps it; they keep everything
//! else, as their templates are compared and ReplicaSets are written back whole. Pods, by far the most numerous,
//! are cached as a [`CachedPod`]: only what the ReplicaSet controller reads of them ([`crate::pods`], claiming and
//! expectations), which [`CachedPod::to_pod`] turns back into a `Pod` for a reconcile.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodCondition, PodSpec, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::Resource;
use serde::Deserialize;

/// The annotation `kubectl apply` keeps a full copy of the object in.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops `metadata.managedFields`.
pub(crate) fn managed_fields<K: Resource>(object: &mut K) {
    object.meta_mut().managed_fields = None;
}

/// What the ReplicaSet controller's cache keeps of a pod; deserialized from a `Pod` (so a watch of `CachedPod`
/// lists and watches pods) and turned back into one by [`CachedPod::to_pod`].
#[derive(Clone, Debug, Deserialize)]
#[serde(from = "Pod")]
pub struct CachedPod {
    /// Name, namespace, uid, resourceVersion, ownerReferences, creation and deletion timestamps and the
    /// annotations but last-applied; the labels are kept apart, more compactly.
    metadata: ObjectMeta,
    labels: Box<[(String, String)]>,
    node_name: Option<String>,
    phase: Option<String>,
    /// The `Ready` condition's status and last transition.
    ready: Option<(String, Option<Time>)>,
    /// The highest container restart count, when the pod reports container statuses.
    restarts: Option<i32>,
}

impl From<Pod> for CachedPod {
    fn from(pod: Pod) -> Self {
        let Pod { metadata, spec, status } = pod;
        let mut annotations = metadata.annotations.unwrap_or_default();
        annotations.remove(LAST_APPLIED);
        let labels = metadata.labels.unwrap_or_default().into_iter().collect();
        let metadata = ObjectMeta {
            name: metadata.name,
            namespace: metadata.namespace,
            uid: metadata.uid,
            resource_version: metadata.resource_version,
            owner_references: metadata.owner_references,
            creation_timestamp: metadata.creation_timestamp,
            deletion_timestamp: metadata.deletion_timestamp,
            annotations: (!annotations.is_empty()).then_some(annotations),
            ..ObjectMeta::default()
        };
        let status = status.unwrap_or_default();
        let ready = status
            .conditions
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .map(|c| (c.status, c.last_transition_time));
        let restarts = status.container_statuses.map(|cs| cs.iter().map(|c| c.restart_count).max().unwrap_or(0));
        Self { metadata, labels, node_name: spec.and_then(|s| s.node_name), phase: status.phase, ready, restarts }
    }
}

impl CachedPod {
    /// The pod's labels.
    pub fn labels(&self) -> BTreeMap<String, String> {
        self.labels.iter().cloned().collect()
    }

    /// The pod as the ReplicaSet controller reads it: the metadata kept, `spec.nodeName`, `status.phase`, the
    /// `Ready` condition and one container status carrying the highest restart count.
    pub fn to_pod(&self) -> Pod {
        let mut metadata = self.metadata.clone();
        metadata.labels = (!self.labels.is_empty()).then(|| self.labels());
        let conditions = self.ready.as_ref().map(|(status, since)| {
            vec![PodCondition {
                type_: "Ready".into(),
                status: status.clone(),
                last_transition_time: since.clone(),
                ..PodCondition::default()
            }]
        });
        let container_statuses =
            self.restarts.map(|n| vec![ContainerStatus { restart_count: n, ..ContainerStatus::default() }]);
        Pod {
            metadata,
            spec: Some(PodSpec { node_name: self.node_name.clone(), ..PodSpec::default() }),
            status: Some(PodStatus {
                phase: self.phase.clone(),
                conditions,
                container_statuses,
                ..PodStatus::default()
            }),
        }
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

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::ReplicaSet;
    use k8s_openapi::jiff::Timestamp;
    use serde_json::json;

    use super::*;
    use crate::pods::{is_active, is_available, is_ready, sort_for_deletion};

    fn full_pod(name: &str, restarts: i32, node: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {
                "name": name, "namespace": "ns", "uid": name, "resourceVersion": "7",
                "creationTimestamp": "2024-01-01T00:00:00Z",
                "labels": {"app": "web"},
                "annotations": {LAST_APPLIED: "{\"big\": true}", "keep": "me"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "rs-uid",
                    "controller": true}],
                "managedFields": [{"manager": "kubectl", "operation": "Update", "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:spec": {"f:containers": {}}}}],
            },
            "spec": {
                "nodeName": node,
                "containers": [{"name": "c", "image": "nginx", "env": [{"name": "A", "value": "b"}]}],
                "volumes": [{"name": "v", "emptyDir": {}}],
            },
            "status": {
                "phase": "Running", "podIP": "10.0.0.1",
                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2024-01-01T00:00:10Z"}],
                "containerStatuses": [{"name": "c", "image": "nginx", "imageID": "sha256:x", "ready": true,
                    "restartCount": restarts, "state": {"running": {"startedAt": "2024-01-01T00:00:05Z"}}}],
            },
        }))
        .expect("pod")
    }

    fn slim(p: Pod) -> Pod {
        CachedPod::from(p).to_pod()
    }

    #[test]
    fn pods_keep_what_the_replicaset_controller_reads() {
        let p = slim(full_pod("a", 3, "n1"));
        let meta = &p.metadata;
        assert!(meta.managed_fields.is_none());
        assert_eq!(meta.annotations.as_ref().map(|a| a.keys().cloned().collect::<Vec<_>>()), Some(vec!["keep".into()]));
        assert_eq!(meta.labels.as_ref().and_then(|l| l.get("app")).map(String::as_str), Some("web"));
        assert_eq!(meta.owner_references.as_ref().map(Vec::len), Some(1));
        assert!(meta.creation_timestamp.is_some() && meta.resource_version.is_some() && meta.uid.is_some());
        let spec = p.spec.as_ref().expect("spec");
        assert_eq!(spec.node_name.as_deref(), Some("n1"));
        assert!(spec.containers.is_empty() && spec.volumes.is_none());
        let status = p.status.as_ref().expect("status");
        assert!(status.pod_ip.is_none());
        let c = &status.container_statuses.as_ref().expect("container statuses")[0];
        assert_eq!(c.restart_count, 3);
        assert!(c.image.is_empty() && c.state.is_none());
        let ready = &status.conditions.as_ref().expect("conditions")[0];
        assert_eq!((ready.type_.as_str(), ready.status.as_str()), ("Ready", "True"));
        assert!(ready.last_transition_time.is_some());
    }

    #[test]
    fn slim_pods_rank_and_count_as_full_ones() {
        let now = Timestamp::now();
        let full = [full_pod("a", 0, "n1"), full_pod("b", 5, "n1"), full_pod("c", 1, "n2")];
        let slim: Vec<Pod> = full.iter().cloned().map(slim).collect();
        let order = |pods: &[Pod]| {
            let mut refs: Vec<&Pod> = pods.iter().collect();
            sort_for_deletion(&mut refs, now);
            refs.iter().filter_map(|p| p.metadata.name.clone()).collect::<Vec<_>>()
        };
        assert_eq!(order(&slim), order(&full));
        assert_eq!(order(&slim)[0], "b");
        for (f, s) in full.iter().zip(&slim) {
            assert_eq!(is_active(f), is_active(s));
            assert_eq!(is_ready(f), is_ready(s));
            assert_eq!(is_available(f, 5, now), is_available(s, 5, now));
        }
    }

    #[test]
    fn a_watch_of_cached_pods_reads_pods() {
        let json = serde_json::to_value(full_pod("a", 0, "n1")).expect("json");
        let c: CachedPod = serde_json::from_value(json).expect("cached pod");
        assert_eq!(c.labels().get("app").map(String::as_str), Some("web"));
        assert_eq!(c.meta().owner_references.as_ref().map(Vec::len), Some(1));
        assert_eq!(<CachedPod as Resource>::url_path(&(), None), "/api/v1/pods");
        let bare: CachedPod = serde_json::from_value(json!({"metadata": {"name": "b"}})).expect("bare pod");
        let p = bare.to_pod();
        assert!(p.metadata.labels.is_none());
        assert!(p.status.is_some_and(|s| s.conditions.is_none() && s.container_statuses.is_none()));
    }

    #[test]
    fn workload_objects_lose_only_managed_fields() {
        let mut rs: ReplicaSet = serde_json::from_value(json!({
            "metadata": {"name": "rs", "annotations": {LAST_APPLIED: "{}"}, "managedFields": [{"manager": "m"}]},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                "template": {"spec": {"containers": [{"name": "c", "image": "nginx"}]}}},
        }))
        .expect("replicaset");
        let mut expected = rs.clone();
        expected.metadata.managed_fields = None;
        managed_fields(&mut rs);
        assert_eq!(rs, expected);
        assert!(rs.metadata.annotations.is_some_and(|a| a.contains_key(LAST_APPLIED)));
    }
}
