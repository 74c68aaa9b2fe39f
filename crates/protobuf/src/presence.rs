//! Which zero values are meaningful.
//!
//! Kubernetes' gogo-protobuf marshallers write every non-pointer Go field, even when it holds its zero value
//! (`name: ""`, `generation: 0`, `hostNetwork: false`), and write pointer fields only when set. Go's JSON encoder,
//! with `omitempty` on almost every field, drops those zero values again. The wire alone cannot tell a pointer set to
//! zero (`replicas: 0`, `runAsUser: 0`, `ready: false`) from a plain zero, so the decoder drops zero scalars except
//! for the fields listed here: the Go pointer scalars (`*int32`, `*int64`, `*bool`, `*string`, `*IntOrString`) of the
//! supported kinds, plus a few required non-`omitempty` fields whose zero Kubernetes would print
//! (upstream: `k8s.io/api/{core,apps,discovery,coordination,autoscaling}/v1/types.go`,
//! `k8s.io/apimachinery/pkg/apis/meta/v1/types.go`).

/// `(message, JSON field)` pairs whose zero value is kept.
const KEEP_ZERO: &[(&str, &[&str])] = &[
    ("apimachinery.pkg.apis.meta.v1.ObjectMeta", &["deletionGracePeriodSeconds"]),
    ("apimachinery.pkg.apis.meta.v1.OwnerReference", &["controller", "blockOwnerDeletion"]),
    (
        "apimachinery.pkg.apis.meta.v1.DeleteOptions",
        &[
            "gracePeriodSeconds",
            "orphanDependents",
            "propagationPolicy",
            "ignoreStoreReadErrorWithClusterBreakingPotential",
        ],
    ),
    ("apimachinery.pkg.apis.meta.v1.Preconditions", &["uid", "resourceVersion"]),
    ("api.apps.v1.DeploymentSpec", &["replicas", "revisionHistoryLimit", "progressDeadlineSeconds"]),
    ("api.apps.v1.DeploymentStatus", &["collisionCount", "terminatingReplicas"]),
    ("api.apps.v1.RollingUpdateDeployment", &["maxUnavailable", "maxSurge"]),
    ("api.apps.v1.ReplicaSetSpec", &["replicas"]),
    ("api.apps.v1.ReplicaSetStatus", &["replicas", "terminatingReplicas"]),
    // ScaleSpec.replicas is `omitempty` upstream, but 0 is exactly what `scale --replicas=0` means.
    ("api.autoscaling.v1.ScaleSpec", &["replicas"]),
    ("api.autoscaling.v1.ScaleStatus", &["replicas"]),
    (
        "api.core.v1.PodSpec",
        &[
            "terminationGracePeriodSeconds",
            "activeDeadlineSeconds",
            "automountServiceAccountToken",
            "shareProcessNamespace",
            "priority",
            "enableServiceLinks",
            "setHostnameAsFQDN",
            "hostUsers",
        ],
    ),
    ("api.core.v1.ContainerPort", &["containerPort"]),
    ("api.core.v1.ServicePort", &["port"]),
    ("api.core.v1.EndpointPort", &["port"]),
    ("api.core.v1.DaemonEndpoint", &["Port"]),
    (
        "api.core.v1.SecurityContext",
        &[
            "runAsUser",
            "runAsGroup",
            "runAsNonRoot",
            "privileged",
            "readOnlyRootFilesystem",
            "allowPrivilegeEscalation",
        ],
    ),
    ("api.core.v1.PodSecurityContext", &["runAsUser", "runAsGroup", "runAsNonRoot", "fsGroup"]),
    ("api.core.v1.Probe", &["terminationGracePeriodSeconds"]),
    ("api.core.v1.Toleration", &["tolerationSeconds"]),
    ("api.core.v1.SecretVolumeSource", &["defaultMode", "optional"]),
    ("api.core.v1.ConfigMapVolumeSource", &["defaultMode", "optional"]),
    ("api.core.v1.ProjectedVolumeSource", &["defaultMode"]),
    ("api.core.v1.DownwardAPIVolumeSource", &["defaultMode"]),
    ("api.core.v1.DownwardAPIVolumeFile", &["mode"]),
    ("api.core.v1.KeyToPath", &["mode"]),
    ("api.core.v1.ServiceAccountTokenProjection", &["expirationSeconds"]),
    ("api.core.v1.ConfigMapKeySelector", &["optional"]),
    ("api.core.v1.SecretKeySelector", &["optional"]),
    ("api.core.v1.ConfigMapEnvSource", &["optional"]),
    ("api.core.v1.SecretEnvSource", &["optional"]),
    ("api.core.v1.ConfigMapProjection", &["optional"]),
    ("api.core.v1.SecretProjection", &["optional"]),
    ("api.core.v1.CSIVolumeSource", &["readOnly"]),
    ("api.core.v1.ServiceSpec", &["allocateLoadBalancerNodePorts"]),
    ("api.core.v1.ClientIpConfig", &["timeoutSeconds"]),
    ("api.core.v1.ConfigMap", &["immutable"]),
    ("api.core.v1.Secret", &["immutable"]),
    ("api.core.v1.ServiceAccount", &["automountServiceAccountToken"]),
    ("api.core.v1.ContainerStatus", &["ready", "restartCount", "started"]),
    ("api.core.v1.ContainerStateTerminated", &["exitCode"]),
    ("api.core.v1.NodeFeatures", &["supplementalGroupsPolicy"]),
    ("api.core.v1.NodeRuntimeHandlerFeatures", &["recursiveReadOnlyMounts", "userNamespaces"]),
    ("api.discovery.v1.EndpointConditions", &["ready", "serving", "terminating"]),
    ("api.discovery.v1.Endpoint", &["hostname", "nodeName", "zone"]),
    ("api.discovery.v1.EndpointPort", &["name", "protocol", "port", "appProtocol"]),
    ("api.coordination.v1.LeaseSpec", &["holderIdentity", "leaseDurationSeconds", "leaseTransitions"]),
];

/// Whether the zero value of `message.field` is meaningful and must be kept.
pub fn keeps_zero(message: &str, field: &str) -> bool {
    KEEP_ZERO.iter().any(|(m, fields)| *m == message && fields.contains(&field))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Schema;

    #[test]
    fn every_listed_field_exists_in_the_schema() {
        let schema = Schema::embedded().expect("schema");
        for (message, fields) in KEEP_ZERO {
            let known = schema.message(message).unwrap_or_else(|| panic!("unknown message {message}"));
            for field in *fields {
                assert!(known.fields.values().any(|f| f.json == *field), "{message} has no field {field}");
            }
        }
        assert!(keeps_zero("api.apps.v1.DeploymentSpec", "replicas"));
        assert!(!keeps_zero("api.apps.v1.DeploymentSpec", "minReadySeconds"));
    }
}
