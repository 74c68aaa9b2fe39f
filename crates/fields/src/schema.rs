//! How structured-merge-diff sees the fields of the built-in kinds: which lists are associative (and by which
//! keys), which are sets, which maps and structs are atomic, and what the zero object of a kind looks like.
//!
//! Upstream reads this from the OpenAPI schema (`x-kubernetes-list-type`, `x-kubernetes-list-map-keys`,
//! `x-kubernetes-map-type`, which kube-openapi fills in from `+listType`/`+listMapKey` markers, falling back to
//! the patch merge key). The schemas `k8s-openapi` carries have none of that, so the markers of the fields that
//! matter are written down here, keyed like `skiff-patch`'s table by a kind-independent owner type. Anything not
//! listed is untyped, which is also what upstream does for a custom resource without a schema: maps are
//! granular (one path per key) and lists are atomic (one leaf).

use serde_json::{Value, json};

/// How a list field is tracked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum List {
    /// The whole list is one leaf (the default).
    Atomic,
    /// A set of scalars: one `v:<value>` path per item.
    Set,
    /// An associative list: one `k:{...}` path per item, keyed by these fields.
    Map(&'static [&'static str]),
}

/// What is known about one field: its type name (the element type for lists; `""` when untyped) and, for a
/// list, how it is tracked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Field {
    pub ty: &'static str,
    pub list: List,
}

impl Field {
    pub(crate) const UNTYPED: Field = Field { ty: "", list: List::Atomic };

    /// Atomic structs and maps (`+structType=atomic`, `+mapType=atomic`) are one leaf, whatever they hold.
    pub(crate) fn is_atomic(&self) -> bool {
        ATOMIC_TYPES.contains(&self.ty)
    }
}

const fn t(ty: &'static str) -> Field {
    Field { ty, list: List::Atomic }
}

const fn map(ty: &'static str, keys: &'static [&'static str]) -> Field {
    Field { ty, list: List::Map(keys) }
}

const SET: Field = Field { ty: "", list: List::Set };
const NAME: &[&str] = &["name"];
const TYPE: &[&str] = &["type"];
const IP: &[&str] = &["ip"];

/// Types that are tracked as a single leaf.
static ATOMIC_TYPES: &[&str] = &[
    "AtomicMap",            // Service and ReplicationController `selector`, `nodeSelector`
    "LabelSelector",        // `+structType=atomic`
    "NodeSelector",         // `+structType=atomic`
    "OwnerReference",       // `+structType=atomic`
    "LocalObjectReference", // `+structType=atomic`
    "ObjectReference",      // `+structType=atomic`
    "KeySelector",          // configMapKeyRef, secretKeyRef, fieldRef, resourceFieldRef
];

/// `(owner type, JSON field, field)`. `metadata` of any typed owner is `ObjectMeta` (see [`field`]).
static FIELDS: &[(&str, &str, Field)] = &[
    ("ObjectMeta", "finalizers", SET),
    ("ObjectMeta", "ownerReferences", map("OwnerReference", &["uid"])),
    // Pods and pod templates.
    ("Pod", "spec", t("PodSpec")),
    ("Pod", "status", t("PodStatus")),
    ("PodTemplate", "template", t("PodTemplateSpec")),
    ("PodTemplateSpec", "spec", t("PodSpec")),
    ("PodSpec", "containers", map("Container", NAME)),
    ("PodSpec", "initContainers", map("Container", NAME)),
    ("PodSpec", "ephemeralContainers", map("Container", NAME)),
    ("PodSpec", "volumes", map("", NAME)),
    ("PodSpec", "imagePullSecrets", map("LocalObjectReference", NAME)),
    ("PodSpec", "hostAliases", map("", IP)),
    ("PodSpec", "topologySpreadConstraints", map("", &["topologyKey", "whenUnsatisfiable"])),
    ("PodSpec", "schedulingGates", map("", NAME)),
    ("PodSpec", "resourceClaims", map("", NAME)),
    ("PodSpec", "nodeSelector", t("AtomicMap")),
    ("PodSpec", "affinity", t("Affinity")),
    ("Affinity", "nodeAffinity", t("NodeAffinity")),
    ("NodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution", t("NodeSelector")),
    ("Container", "ports", map("", &["containerPort", "protocol"])),
    ("Container", "env", map("EnvVar", NAME)),
    ("Container", "volumeMounts", map("", &["mountPath"])),
    ("Container", "volumeDevices", map("", &["devicePath"])),
    ("Container", "resources", t("ResourceRequirements")),
    ("ResourceRequirements", "claims", map("", NAME)),
    ("EnvVar", "valueFrom", t("EnvVarSource")),
    ("EnvVarSource", "configMapKeyRef", t("KeySelector")),
    ("EnvVarSource", "secretKeyRef", t("KeySelector")),
    ("EnvVarSource", "fieldRef", t("KeySelector")),
    ("EnvVarSource", "resourceFieldRef", t("KeySelector")),
    ("PodStatus", "conditions", map("", TYPE)),
    ("PodStatus", "podIPs", map("", IP)),
    ("PodStatus", "hostIPs", map("", IP)),
    ("PodStatus", "resourceClaimStatuses", map("", NAME)),
    // Workloads.
    ("Deployment", "spec", t("WorkloadSpec")),
    ("ReplicaSet", "spec", t("WorkloadSpec")),
    ("StatefulSet", "spec", t("WorkloadSpec")),
    ("DaemonSet", "spec", t("WorkloadSpec")),
    ("Job", "spec", t("WorkloadSpec")),
    ("ReplicationController", "spec", t("ReplicationControllerSpec")),
    ("WorkloadSpec", "template", t("PodTemplateSpec")),
    ("WorkloadSpec", "selector", t("LabelSelector")),
    ("ReplicationControllerSpec", "template", t("PodTemplateSpec")),
    ("ReplicationControllerSpec", "selector", t("AtomicMap")),
    ("CronJob", "spec", t("CronJobSpec")),
    ("CronJobSpec", "jobTemplate", t("JobTemplateSpec")),
    ("JobTemplateSpec", "spec", t("WorkloadSpec")),
    ("Deployment", "status", t("ConditionsStatus")),
    ("ReplicaSet", "status", t("ConditionsStatus")),
    ("StatefulSet", "status", t("ConditionsStatus")),
    ("DaemonSet", "status", t("ConditionsStatus")),
    ("ReplicationController", "status", t("ConditionsStatus")),
    ("Job", "status", t("ConditionsStatus")),
    ("ConditionsStatus", "conditions", map("", TYPE)),
    // Services, nodes, namespaces and the rest.
    ("Service", "spec", t("ServiceSpec")),
    ("ServiceSpec", "ports", map("", &["port", "protocol"])),
    ("ServiceSpec", "selector", t("AtomicMap")),
    ("Service", "status", t("ConditionsStatus")),
    ("Node", "spec", t("NodeSpec")),
    ("NodeSpec", "podCIDRs", SET),
    ("Node", "status", t("NodeStatus")),
    ("NodeStatus", "conditions", map("", TYPE)),
    ("NodeStatus", "addresses", map("", TYPE)),
    ("Namespace", "status", t("ConditionsStatus")),
    ("PersistentVolumeClaim", "status", t("ConditionsStatus")),
    ("HorizontalPodAutoscaler", "status", t("ConditionsStatus")),
    ("PodDisruptionBudget", "spec", t("WorkloadSpec")),
    ("PodDisruptionBudget", "status", t("ConditionsStatus")),
    ("NetworkPolicy", "spec", t("NetworkPolicySpec")),
    ("NetworkPolicySpec", "podSelector", t("LabelSelector")),
    ("ServiceAccount", "secrets", map("ObjectReference", NAME)),
];

/// `(group, kind, zero object)`: the built-in kinds with a typed root, and the object upstream compares a
/// create against (the Go zero value converted to JSON: non-pointer structs are present, empty).
/// Builds the zero object of a kind.
type Zero = fn() -> Value;

static KINDS: &[(&str, &str, Zero)] = &[
    ("", "Pod", || json!({"metadata": {}, "spec": pod_spec(), "status": {}})),
    ("", "PodTemplate", || json!({"metadata": {}, "template": {"metadata": {}, "spec": pod_spec()}})),
    ("", "Service", || json!({"metadata": {}, "spec": {}, "status": {"loadBalancer": {}}})),
    (
        "",
        "Node",
        || json!({"metadata": {}, "spec": {}, "status": {"daemonEndpoints": {"kubeletEndpoint": {}}, "nodeInfo": {}}}),
    ),
    ("", "Namespace", || json!({"metadata": {}, "spec": {}, "status": {}})),
    ("", "ReplicationController", || json!({"metadata": {}, "spec": {}, "status": {}})),
    ("", "PersistentVolumeClaim", || json!({"metadata": {}, "spec": {"resources": {}}, "status": {}})),
    ("", "ServiceAccount", || json!({"metadata": {}})),
    ("apps", "Deployment", || json!({"metadata": {}, "spec": pod_owner_spec(&["strategy"]), "status": {}})),
    ("apps", "ReplicaSet", || json!({"metadata": {}, "spec": pod_owner_spec(&[]), "status": {}})),
    ("apps", "StatefulSet", || json!({"metadata": {}, "spec": pod_owner_spec(&["updateStrategy"]), "status": {}})),
    ("apps", "DaemonSet", || json!({"metadata": {}, "spec": pod_owner_spec(&["updateStrategy"]), "status": {}})),
    ("batch", "Job", || json!({"metadata": {}, "spec": pod_owner_spec(&[]), "status": {}})),
    (
        "batch",
        "CronJob",
        || json!({"metadata": {}, "spec": {"jobTemplate": {"metadata": {}, "spec": pod_owner_spec(&[])}}, "status": {}}),
    ),
    (
        "autoscaling",
        "HorizontalPodAutoscaler",
        || json!({"metadata": {}, "spec": {"scaleTargetRef": {}}, "status": {}}),
    ),
    ("policy", "PodDisruptionBudget", || json!({"metadata": {}, "spec": {}, "status": {}})),
    ("networking.k8s.io", "NetworkPolicy", || json!({"metadata": {}, "spec": {"podSelector": {}}})),
];

/// A zero `PodSpec`: `containers` has no `omitempty`, so it is there as `null` (and so a new container list is
/// not itself "added", unlike a Service's `ports`).
fn pod_spec() -> Value {
    json!({"containers": null})
}

/// The `spec` of a pod-owning workload's zero value: the template is a struct, as are the listed fields;
/// `selector` has no `omitempty`.
fn pod_owner_spec(structs: &[&str]) -> Value {
    let mut spec = json!({"selector": null, "template": {"metadata": {}, "spec": pod_spec()}});
    for name in structs {
        spec[*name] = json!({});
    }
    spec
}

/// The root type of a kind: its name for the built-in kinds listed here, `"Object"` (typed `metadata`, the rest
/// untyped) for anything else.
pub(crate) fn root_type(api_version: &str, kind: &str) -> &'static str {
    let group = api_version.split_once('/').map_or("", |(g, _)| g);
    KINDS.iter().find(|(g, k, _)| *g == group && *k == kind).map_or("Object", |(_, k, _)| *k)
}

/// The object a create is compared against.
pub(crate) fn zero_object(root: &str) -> Value {
    KINDS.iter().find(|(_, k, _)| *k == root).map_or_else(|| json!({}), |(_, _, zero)| zero())
}

/// The type of `field` inside a value of type `owner`.
pub(crate) fn field(owner: &str, field: &str) -> Field {
    if owner.is_empty() {
        return Field::UNTYPED;
    }
    if field == "metadata" && owner != "ObjectMeta" {
        return t("ObjectMeta");
    }
    FIELDS.iter().find(|(o, f, _)| *o == owner && *f == field).map_or(Field::UNTYPED, |(_, _, m)| *m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_from_a_deployment_to_container_ports() {
        let root = root_type("apps/v1", "Deployment");
        let template = field(field(root, "spec").ty, "template");
        let containers = field(field(template.ty, "spec").ty, "containers");
        assert_eq!(containers.list, List::Map(&["name"]));
        assert_eq!(field(containers.ty, "ports").list, List::Map(&["containerPort", "protocol"]));
        assert_eq!(field(containers.ty, "command"), Field::UNTYPED);
        assert!(field(field(root, "spec").ty, "selector").is_atomic());
        assert!(!field(template.ty, "metadata").is_atomic());
    }

    #[test]
    fn unknown_kinds_only_type_metadata() {
        assert_eq!(root_type("v1", "Service"), "Service");
        assert_eq!(root_type("example.com/v1", "Widget"), "Object");
        assert_eq!(root_type("v1", "Deployment"), "Object");
        assert_eq!(field(field("Object", "metadata").ty, "finalizers"), SET);
        assert_eq!(field("Object", "spec"), Field::UNTYPED);
        assert_eq!(zero_object("Object"), json!({}));
        assert_eq!(zero_object("Deployment")["spec"]["strategy"], json!({}));
    }
}
