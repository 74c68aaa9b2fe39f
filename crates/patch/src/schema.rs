//! The patch metadata of the built-in kinds: which lists merge by which key and which are replaced whole.
//!
//! Upstream reads this from Go struct tags (`patchStrategy:"merge" patchMergeKey:"name"`). `k8s-openapi`'s
//! schemas do not carry those extensions (no `x-kubernetes-patch-merge-key`, no `list-map-keys`), so the
//! tags are written down here once, keyed by a kind-independent type name: `PodSpec.containers` is the same
//! field whether it sits in a Pod, a Deployment's template or a CronJob's job template. Fields not listed are
//! untyped: maps merge key by key and lists are atomic (replaced), which is upstream's default.

/// How a field is patched (upstream's `patchStrategy` tag; `retainKeys` changes nothing when applying, so it
/// is not recorded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Strategy {
    /// No tag: maps merge, lists are replaced.
    Default,
    /// `patchStrategy:"merge"`: lists merge (by `merge_key` for lists of maps, as a set for primitives).
    Merge,
    /// `patchStrategy:"replace"`: the patch value replaces the field whole.
    Replace,
}

/// What the patch needs to know about one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FieldMeta {
    /// The field's type (the element type for lists); `""` when untyped.
    pub ty: &'static str,
    pub strategy: Strategy,
    /// `patchMergeKey`; empty for primitive lists and untagged fields.
    pub merge_key: &'static str,
}

impl FieldMeta {
    pub(crate) const UNTYPED: FieldMeta = FieldMeta { ty: "", strategy: Strategy::Default, merge_key: "" };
}

const fn typed(ty: &'static str) -> FieldMeta {
    FieldMeta { ty, strategy: Strategy::Default, merge_key: "" }
}

const fn by_key(ty: &'static str, merge_key: &'static str) -> FieldMeta {
    FieldMeta { ty, strategy: Strategy::Merge, merge_key }
}

/// A list of primitives merged as a set (`finalizers`, `podCIDRs`).
const SET: FieldMeta = FieldMeta { ty: "", strategy: Strategy::Merge, merge_key: "" };

/// `(owner type, JSON field, metadata)`. `metadata` of any typed owner is `ObjectMeta` (see [`field`]).
static FIELDS: &[(&str, &str, FieldMeta)] = &[
    ("ObjectMeta", "ownerReferences", by_key("", "uid")),
    ("ObjectMeta", "finalizers", SET),
    // Pods and everything that embeds a pod template.
    ("Pod", "spec", typed("PodSpec")),
    ("Pod", "status", typed("PodStatus")),
    ("PodTemplate", "template", typed("PodTemplateSpec")),
    ("PodTemplateSpec", "spec", typed("PodSpec")),
    ("PodSpec", "containers", by_key("Container", "name")),
    ("PodSpec", "initContainers", by_key("Container", "name")),
    ("PodSpec", "ephemeralContainers", by_key("Container", "name")),
    ("PodSpec", "volumes", by_key("", "name")),
    ("PodSpec", "imagePullSecrets", by_key("", "name")),
    ("PodSpec", "hostAliases", by_key("", "ip")),
    ("PodSpec", "topologySpreadConstraints", by_key("", "topologyKey")),
    ("PodSpec", "schedulingGates", by_key("", "name")),
    ("PodSpec", "resourceClaims", by_key("", "name")),
    ("Container", "ports", by_key("", "containerPort")),
    ("Container", "env", by_key("", "name")),
    ("Container", "volumeMounts", by_key("", "mountPath")),
    ("Container", "volumeDevices", by_key("", "devicePath")),
    ("PodStatus", "conditions", by_key("", "type")),
    ("PodStatus", "podIPs", by_key("", "ip")),
    ("PodStatus", "hostIPs", by_key("", "ip")),
    ("PodStatus", "resourceClaimStatuses", by_key("", "name")),
    // Workloads.
    ("Deployment", "spec", typed("TemplatedSpec")),
    ("ReplicaSet", "spec", typed("TemplatedSpec")),
    ("StatefulSet", "spec", typed("TemplatedSpec")),
    ("DaemonSet", "spec", typed("TemplatedSpec")),
    ("ReplicationController", "spec", typed("TemplatedSpec")),
    ("Job", "spec", typed("TemplatedSpec")),
    ("TemplatedSpec", "template", typed("PodTemplateSpec")),
    ("CronJob", "spec", typed("CronJobSpec")),
    ("CronJobSpec", "jobTemplate", typed("JobTemplateSpec")),
    ("JobTemplateSpec", "spec", typed("TemplatedSpec")),
    ("Deployment", "status", typed("ConditionsStatus")),
    ("ReplicaSet", "status", typed("ConditionsStatus")),
    ("StatefulSet", "status", typed("ConditionsStatus")),
    ("DaemonSet", "status", typed("ConditionsStatus")),
    ("ReplicationController", "status", typed("ConditionsStatus")),
    ("Job", "status", typed("ConditionsStatus")),
    ("ConditionsStatus", "conditions", by_key("", "type")),
    // Services, nodes, namespaces and the rest.
    ("Service", "spec", typed("ServiceSpec")),
    ("ServiceSpec", "ports", by_key("", "port")),
    ("Service", "status", typed("ConditionsStatus")),
    ("Node", "spec", typed("NodeSpec")),
    ("NodeSpec", "podCIDRs", SET),
    ("Node", "status", typed("NodeStatus")),
    ("NodeStatus", "conditions", by_key("", "type")),
    ("NodeStatus", "addresses", by_key("", "type")),
    ("Namespace", "status", typed("ConditionsStatus")),
    ("PersistentVolumeClaim", "status", typed("ConditionsStatus")),
    ("HorizontalPodAutoscaler", "status", typed("ConditionsStatus")),
    ("PodDisruptionBudget", "status", typed("ConditionsStatus")),
    ("ServiceAccount", "secrets", by_key("", "name")),
];

/// The built-in kinds strategic merge patch knows, as `(group, kind)`. The root type of each is its kind.
static KINDS: &[(&str, &str)] = &[
    ("", "Pod"),
    ("", "PodTemplate"),
    ("", "Service"),
    ("", "Endpoints"),
    ("", "Node"),
    ("", "Namespace"),
    ("", "Event"),
    ("", "ConfigMap"),
    ("", "Secret"),
    ("", "ServiceAccount"),
    ("", "ReplicationController"),
    ("", "PersistentVolume"),
    ("", "PersistentVolumeClaim"),
    ("", "LimitRange"),
    ("", "ResourceQuota"),
    ("apps", "Deployment"),
    ("apps", "ReplicaSet"),
    ("apps", "StatefulSet"),
    ("apps", "DaemonSet"),
    ("apps", "ControllerRevision"),
    ("batch", "Job"),
    ("batch", "CronJob"),
    ("autoscaling", "Scale"),
    ("autoscaling", "HorizontalPodAutoscaler"),
    ("policy", "PodDisruptionBudget"),
    ("discovery.k8s.io", "EndpointSlice"),
    ("events.k8s.io", "Event"),
    ("coordination.k8s.io", "Lease"),
    ("networking.k8s.io", "Ingress"),
    ("networking.k8s.io", "NetworkPolicy"),
    ("rbac.authorization.k8s.io", "Role"),
    ("rbac.authorization.k8s.io", "RoleBinding"),
    ("rbac.authorization.k8s.io", "ClusterRole"),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
];

/// The root type of a built-in kind (`apps/v1`, `Deployment` → `Deployment`), or `None` for kinds without
/// compiled-in patch metadata (custom resources), for which upstream refuses strategic merge patches.
pub(crate) fn root_type(api_version: &str, kind: &str) -> Option<&'static str> {
    let group = api_version.split_once('/').map_or("", |(g, _)| g);
    KINDS.iter().find(|(g, k)| *g == group && *k == kind).map(|(_, k)| *k)
}

/// The patch metadata of `field` inside a value of type `owner`.
pub(crate) fn field(owner: &str, field: &str) -> FieldMeta {
    if owner.is_empty() {
        return FieldMeta::UNTYPED;
    }
    if field == "metadata" {
        return typed("ObjectMeta");
    }
    FIELDS.iter().find(|(o, f, _)| *o == owner && *f == field).map_or(FieldMeta::UNTYPED, |(_, _, m)| *m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_from_a_deployment_to_container_ports() {
        let root = root_type("apps/v1", "Deployment").unwrap();
        let spec = field(root, "spec");
        let template = field(spec.ty, "template");
        let pod_spec = field(template.ty, "spec");
        let containers = field(pod_spec.ty, "containers");
        assert_eq!((containers.strategy, containers.merge_key), (Strategy::Merge, "name"));
        let ports = field(containers.ty, "ports");
        assert_eq!(ports.merge_key, "containerPort");
        assert_eq!(field(containers.ty, "command"), FieldMeta::UNTYPED);
        assert_eq!(field(pod_spec.ty, "tolerations"), FieldMeta::UNTYPED);
    }

    #[test]
    fn unknown_kinds_and_groups_have_no_root() {
        assert_eq!(root_type("v1", "Service"), Some("Service"));
        assert_eq!(root_type("example.com/v1", "Widget"), None);
        assert_eq!(root_type("v1", "Deployment"), None);
        assert_eq!(field("Service", "metadata").ty, "ObjectMeta");
        assert_eq!(field("ObjectMeta", "finalizers"), SET);
    }
}
