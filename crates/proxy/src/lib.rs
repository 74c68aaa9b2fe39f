//! The Skiff service proxy's data plane: Services and their EndpointSlices become kernel nftables rules that
//! send a ClusterIP's traffic to the Service's Ready pods.
//!
//! Data flow: reflectors over Services and EndpointSlices ([`sync`]) → [`model::service_ports`] (one routed unit
//! per Service port, with the endpoints upstream kube-proxy would choose) → [`ruleset::Ruleset`] (the desired table
//! as data, in kube-proxy's nftables shape) → diffed against the mirror of the last applied ruleset
//! ([`ruleset::Ruleset::update_script`]: only new, changed and stale chains and elements) → [`nft::apply`]
//! (`nft -f -`, one atomic transaction). The first sync after a start, and the first after a failure, replace the
//! whole table in one transaction instead, which also reconciles whatever an earlier run left there.
//!
//! Routed: ClusterIP with random balancing, fast rejection for Services without endpoints and for unserved ports,
//! NodePort on every local address, LoadBalancer ingress addresses, externalIPs and 127.0.0.1 for LoadBalancer
//! ports, masquerade for hairpin, off-cluster and external clients; `sessionAffinity: ClientIP`,
//! `externalTrafficPolicy: Local` (with its `healthCheckNodePort`, [`health`]) and `internalTrafficPolicy: Local`.
//! After each apply, UDP flows still pointing at an endpoint that left are deleted from conntrack ([`conntrack`]),
//! and [`metrics`] records sync durations, table size and network programming latency.
//!
//! Rules go through the `nft` tool (`nft -f -` batches: atomic, and readable when debugging). Measured
//! (`docs/benchmarks.md`, "Service proxy"): fast enough to 1,000 Services (a change reaches its new endpoint in
//! ~20 ms at 100, ~55 ms at 1,000), not at 10,000 (~370 ms): there every `nft` run first dumps the kernel's whole
//! ruleset (~135 ms), and each sync rebuilds every Service's ports and the whole ruleset (the rest). Netlink batches
//! against the per-service endpoint maps (~1–2 ms of kernel time per change at 10,000) and syncs proportional to
//! what changed are the measured way out, and the next steps.

pub mod conntrack;
pub mod health;
pub mod metrics;
pub mod model;
pub mod nft;
pub mod ruleset;
pub mod sync;

pub use ruleset::RulesetConfig;
pub use sync::run;

/// The table the proxy owns.
pub const TABLE: &str = "skiff";
