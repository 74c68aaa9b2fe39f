//! The Skiff service proxy's data plane: Services and their EndpointSlices become kernel nftables rules that
//! send a ClusterIP's traffic to the Service's Ready pods.
//!
//! Data flow: reflectors over Services and EndpointSlices ([`sync`]) → [`model::service_ports`] (one routed unit
//! per Service port, with the endpoints upstream kube-proxy would choose) → [`ruleset::full_sync`] (the table, in
//! kube-proxy's nftables shape) → [`nft::apply`] (`nft -f -`, one atomic transaction).
//!
//! This is the first slice of the proxy: ClusterIP routing with random balancing, fast rejection for Services
//! without endpoints and for unserved ports, and masquerade for hairpin and off-cluster clients, written as a full
//! replacement of the table by the loop the node agent runs. Still to come: incremental syncs diffed against an
//! in-memory mirror, NodePort/LoadBalancer/externalIPs, session affinity, traffic policies, UDP conntrack cleanup
//! and metrics. Rules go through the `nft` tool for now (`nft -f -` batches are atomic and
//! readable when debugging); netlink will be measured against it with the incremental syncs.

pub mod model;
pub mod nft;
pub mod ruleset;
pub mod sync;

pub use ruleset::RulesetConfig;
pub use sync::run;

/// The table the proxy owns.
pub const TABLE: &str = "skiff";
