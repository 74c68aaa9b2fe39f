//! The scheduler: assigns each unscheduled pod (empty `spec.nodeName`, `spec.schedulerName` unset or
//! `default-scheduler`) to a node, the way kube-scheduler does it as seen from the API, much simplified.
//!
//! Data flows one way. A kube-rs [`Controller`](kube::runtime::Controller) watches all pods and a reflector caches
//! Nodes. Only what the scheduler reads is kept: pods already bound go to a uid → node index (`bound`, the view of
//! how loaded each node is) instead of the controller's store, unless their binding is still to be confirmed; the
//! store keeps the others as a `CachedPod` (`slim`); nodes lose managedFields. Each pending pod is reconciled:
//! [`filter`] — a pure function — drops the nodes it does not fit (cordoned, untolerated NoSchedule/NoExecute taints
//! including the not-ready/unreachable ones implied by the Ready condition, `nodeSelector`) and picks the one with
//! the fewest non-terminated pods, ties broken by name. [`schedule`] then does the I/O: a `pods/{name}/binding`
//! POST, the `PodScheduled=True` condition and a `Scheduled` event; or, when nothing fits, `PodScheduled=False`
//! (reason `Unschedulable`, upstream's `0/N nodes are available: …` message) and a `FailedScheduling` event. A pod
//! just bound is "assumed" on its node until the watch shows the binding, so pods scheduled back to back spread
//! out. Any scheduling-relevant change to a Node (readiness, cordon, taints, labels) retries every pending pod at
//! once; unschedulable pods are also retried every minute.

mod bound;
pub mod filter;
pub mod schedule;
mod slim;

pub use schedule::run;

/// What can go wrong while scheduling one pod; every variant goes back to the retry policy.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("binding pod {pod} to node {node}: {source}")]
    Bind {
        pod: String,
        node: String,
        #[source]
        source: kube::Error,
    },
    #[error("updating the status of pod {pod}: {source}")]
    Status {
        pod: String,
        #[source]
        source: kube::Error,
    },
    #[error("encoding a pod condition: {0}")]
    Encode(String),
    #[error("the node cache is gone")]
    CacheGone(#[source] kube::runtime::reflector::store::WriterDropped),
}
