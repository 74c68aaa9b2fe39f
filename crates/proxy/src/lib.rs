//! The Skiff service proxy's data plane: Services and their EndpointSlices become kernel nftables rules that
//! send a ClusterIP's traffic to the Service's Ready pods.
//!
//! Data flow: watches over Services and EndpointSlices fill the [`cache`] (records of what routing reads), which
//! marks the Services each event touches → [`sync`] recomputes only those ([`cache::Caches::service_ports`]: one
//! routed unit per Service port, with the endpoints upstream kube-proxy would choose) → the mirror of the kernel's
//! table ([`ruleset::Ruleset`], in kube-proxy's nftables shape) plans the [`ruleset::Update`] for the ports that
//! changed: only new, changed and stale chains and elements, in time proportional to the change → [`netlink`] for
//! an update of elements alone, [`nft::apply`] (`nft -f -`) for anything more; one atomic transaction either way.
//! The first sync after a start, and the first after a failure, replace the whole table in one transaction
//! instead, which also reconciles whatever an earlier run left there.
//!
//! Routed: ClusterIP with random balancing, fast rejection for Services without endpoints and for unserved ports,
//! NodePort on every local address, LoadBalancer ingress addresses, externalIPs and 127.0.0.1 for LoadBalancer
//! ports, masquerade for hairpin, off-cluster and external clients; `sessionAffinity: ClientIP`,
//! `externalTrafficPolicy: Local` (with its `healthCheckNodePort`, [`health`]) and `internalTrafficPolicy: Local`.
//! After each apply, UDP flows still pointing at an endpoint that left are deleted from conntrack ([`conntrack`]),
//! and [`metrics`] records sync durations, table size and network programming latency.
//!
//! Two writers, chosen by measurement (`docs/benchmarks.md`, "Service proxy"): an update that only changes
//! elements — an endpoint replaced, the common change — goes to the kernel as one nfnetlink batch ([`netlink`]),
//! because every `nft` run first reads back the kernel's whole ruleset (~100 ms at 10,000 Services, against a
//! millisecond or two for the kernel to commit the change); anything more (new or changed chains, a full sync)
//! goes through the `nft` tool (`nft -f -` batches: atomic, and readable when debugging), where writing rule
//! expressions as netlink by hand would buy little, those changes being rarer.

pub mod cache;
pub mod conntrack;
pub mod health;
pub mod inspect;
pub mod metrics;
pub mod model;
pub mod netlink;
pub mod nft;
pub mod ruleset;
pub mod sync;

pub use ruleset::RulesetConfig;
pub use sync::run;

/// The table the proxy owns.
pub const TABLE: &str = "skiff";
