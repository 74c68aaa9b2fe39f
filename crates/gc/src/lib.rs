//! Garbage collection by ownerReferences and the namespace lifecycle, as upstream's
//! `pkg/controller/garbagecollector` and `pkg/controller/namespace`, both clients of the API through kube-rs.
//!
//! Data flow of the garbage collector: discovery ([`resources::Catalog`]) → one watcher per deletable resource →
//! the uid graph ([`graph::Graph`], owner → dependents) → work items ([`graph::Work`]) in a deduplicating,
//! backing-off queue ([`queue::WorkQueue`]) → workers that read the object and each owner live, decide with the
//! pure [`plan::decide`] (keep, drop dangling references, or delete with a propagation policy) and write (patch
//! pinned to the resourceVersion read, delete with a uid precondition). Foreground deletions end when no blocking
//! dependent is left (the `foregroundDeletion` finalizer is removed); orphan deletions end when every dependent's
//! reference is gone (the `orphan` finalizer is removed); the API server then removes the owner.
//!
//! Data flow of the namespace controller: namespace watch → a terminating namespace → discovery → delete every
//! namespaced resource in it → list what remains → status conditions ([`namespace::conditions`]) → once nothing
//! is left, `PUT .../finalize` without the `kubernetes` finalizer.

pub mod garbagecollector;
pub mod graph;
pub mod namespace;
pub mod plan;
pub mod queue;
pub mod resources;

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::graph::Identity;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("discovering the served resources")]
    Discovery(#[source] kube::Error),
    #[error("{action} {name} (uid {uid})")]
    Api {
        action: &'static str,
        name: String,
        uid: String,
        #[source]
        source: kube::Error,
    },
    #[error("owner kind {kind} of {api_version} is not served")]
    UnknownKind { api_version: String, kind: String },
    #[error("deleting the {resource} in the namespace")]
    Content {
        resource: String,
        #[source]
        source: kube::Error,
    },
    #[error("{action} namespace {namespace}")]
    Namespace {
        action: &'static str,
        namespace: String,
        #[source]
        source: kube::Error,
    },
    #[error("content of namespace {namespace} could not all be deleted")]
    ContentRemains { namespace: String },
}

impl Error {
    fn api(action: &'static str, id: &Identity, source: kube::Error) -> Self {
        let name = match &id.namespace {
            Some(ns) => format!("{ns}/{}", id.name),
            None => id.name.clone(),
        };
        Self::Api { action, name, uid: id.uid.clone(), source }
    }
}

/// An error and its causes on one line, for logs and conditions.
pub fn report(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// Runs the garbage collector and the namespace controller until `shutdown` fires.
pub async fn run(client: kube::Client, shutdown: CancellationToken) -> anyhow::Result<()> {
    let (gc, ns) =
        tokio::join!(garbagecollector::run(client.clone(), shutdown.clone()), namespace::run(client, shutdown));
    gc.and(ns)
}

/// Discovery, retried every second until it works; `None` once `shutdown` fires.
async fn discover_until_ok(client: &kube::Client, shutdown: &CancellationToken) -> Option<resources::Catalog> {
    loop {
        match resources::Catalog::discover(client).await {
            Ok(c) => return Some(c),
            Err(e) => tracing::warn!(error = %report(&e), "discovery failed; retrying"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return None,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_carry_the_cause() {
        let inner = std::io::Error::other("connection refused");
        let e = Error::Discovery(kube::Error::Service(Box::new(inner)));
        let text = report(&e);
        assert!(text.starts_with("discovering the served resources: "), "{text}");
        assert!(text.ends_with("connection refused"), "{text}");
    }
}
