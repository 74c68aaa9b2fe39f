//! skiff-endpoints: the controllers that give Services their endpoints, as upstream's endpoints controller
//! (`pkg/controller/endpoint`), EndpointSlice controller (`staging/src/k8s.io/endpointslice`) and EndpointSlice
//! mirroring controller (`pkg/controller/endpointslicemirroring`) do.
//!
//! Data flows one way. Four kube-rs watchers (Pods, Services, Endpoints, EndpointSlices) feed one indexed
//! [`cache`]: pods by label, Services by selector pair, slices by Service. Each change puts the keys of the
//! Services it touches on per-controller work queues ([`queue`]). A worker takes a key, reads the cache, computes
//! a plan with a pure function — [`endpoints::plan`] (the legacy Endpoints object), [`slices::plan`] (slices to
//! create, update and delete, 100 endpoints at most per slice) or [`mirroring::plan`] (slices mirroring a
//! hand-written Endpoints of a Service without a selector) — then applies it through the API and records what the
//! API returned in the cache so the next sync plans from it. Failures go back on the queue with exponential
//! backoff, a warning log line and a Warning event on the object. Workers start once all four caches have synced;
//! the watchers re-list after a 410 and the cache is replaced and every Service resynced.
//!
//! Entry points: [`run`] runs all three controllers over one shared cache; [`run_endpoints`],
//! [`run_endpoint_slices`] and [`run_mirroring`] run one each; [`run_with`] takes [`Options`].

mod cache;
pub mod endpoints;
pub mod mirroring;
pub mod pod;
mod queue;
mod run;
pub mod slices;
mod tracker;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

pub use run::{Options, run, run_endpoint_slices, run_endpoints, run_mirroring, run_with};

/// `kubernetes.io/service-name`: the Service an EndpointSlice belongs to.
pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";
/// `endpointslice.kubernetes.io/managed-by`: which controller owns an EndpointSlice.
pub const LABEL_MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
/// `endpointslice.kubernetes.io/skip-mirror`: `"true"` keeps an Endpoints object from being mirrored.
pub const LABEL_SKIP_MIRROR: &str = "endpointslice.kubernetes.io/skip-mirror";
/// `service.kubernetes.io/headless`: set (empty) on the endpoints of Services without a cluster IP.
pub const LABEL_HEADLESS: &str = "service.kubernetes.io/headless";
/// The EndpointSlice controller's `managed-by` value.
pub const SLICE_CONTROLLER: &str = "endpointslice-controller.k8s.io";
/// The EndpointSlice mirroring controller's `managed-by` value.
pub const MIRRORING_CONTROLLER: &str = "endpointslicemirroring-controller.k8s.io";
/// `endpoints.kubernetes.io/last-change-trigger-time`.
pub const ANNOTATION_TRIGGER_TIME: &str = "endpoints.kubernetes.io/last-change-trigger-time";
/// `endpoints.kubernetes.io/over-capacity`, set to `truncated` past 1000 addresses.
pub const ANNOTATION_OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";

/// A namespaced object's `namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self { namespace: namespace.into(), name: name.into() }
    }

    /// The key of an object's metadata; `None` without a namespace or name.
    pub fn of(meta: &ObjectMeta) -> Option<Self> {
        Some(Self::new(meta.namespace.clone()?, meta.name.clone()?))
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A write to the API that failed; the sync is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to create {kind} for {key}")]
    Create {
        kind: &'static str,
        key: ObjectKey,
        #[source]
        source: kube::Error,
    },
    #[error("failed to update {kind} {name} for {key}")]
    Update {
        kind: &'static str,
        name: String,
        key: ObjectKey,
        #[source]
        source: kube::Error,
    },
    #[error("failed to delete {kind} {name} for {key}")]
    Delete {
        kind: &'static str,
        name: String,
        key: ObjectKey,
        #[source]
        source: kube::Error,
    },
}

/// Whether a kube error is the API's 404.
fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 404)
}

/// Whether a create failed because the namespace is terminating (upstream drops the work then).
fn is_namespace_terminating(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status)
        if status.code == 403 && status.message.contains("because it is being terminated"))
}
