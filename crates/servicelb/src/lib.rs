//! ServiceLB's status side, like k3s's: every Service of type LoadBalancer (without a `loadBalancerClass`, or with
//! `skiff.io/servicelb`) gets `status.loadBalancer.ingress` set to the addresses of the nodes that will accept its
//! traffic, and loses it when it stops being a LoadBalancer. (The node agent makes those addresses serve it.)
//!
//! Data flows one way. A kube-rs [`Controller`](kube::runtime::Controller) watches Services; a reflector caches
//! Nodes, and any change that matters (a node added or removed, Ready flipping, addresses, the
//! `node.kubernetes.io/exclude-from-external-load-balancers` label) re-reconciles every Service; a change to an
//! EndpointSlice re-reconciles its Service. [`plan`] — pure — computes the ingress: the InternalIP and ExternalIP of
//! every Ready node (with `externalTrafficPolicy: Local`, only nodes running a Ready endpoint, read from the
//! Service's EndpointSlices), sorted and deduplicated per IP family, each `{ip, ipMode: VIP}`. [`controller`] writes
//! it with one status patch only when it differs, with k3s's `UpdatedLoadBalancer` / `UnAvailableLoadBalancer`
//! events.

pub mod controller;
pub mod plan;

pub use controller::run;

/// What can go wrong while reconciling one Service; every variant goes back to the retry policy.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("listing the endpoint slices of service {service}: {source}")]
    ListSlices {
        service: String,
        #[source]
        source: kube::Error,
    },
    #[error("updating the status of service {service}: {source}")]
    Status {
        service: String,
        #[source]
        source: kube::Error,
    },
    #[error("the node cache is gone")]
    CacheGone(#[source] kube::runtime::reflector::store::WriterDropped),
}
