//! `skiff-bench`: measures the real, release-built `skiff server` binary and prints numbers (it is not a
//! pass/fail test). For each datastore (embedded SQLite, and etcd started here on free loopback ports) it spawns
//! fresh servers in temporary data dirs ([`process`]), times process spawn until `GET /readyz` answers 200 and reads
//! the idle RSS from `/proc`; then, on a fresh server per load run, drives it through kube-rs ([`load`]): creates
//! Services from several concurrent clients, LISTs one namespace, and times watch event delivery. Samples flow into
//! per-datastore results ([`run`]), are reduced to medians and percentiles ([`stats`]) and rendered as one table with
//! a column per datastore next to the targets ([`report`]). Every child process is stopped by its pid when its guard
//! drops, also on error.
//!
//! A second scenario, [`controllers`], measures the controllers on their own: a `skiff server
//! --disable-controllers` on SQLite plus a separate `skiff controllers` process, driven with Services and pods
//! whose status the benchmark writes as a kubelet would, timing readiness changes until the EndpointSlice watcher
//! sees them and reading both processes' RSS; it is rendered as a table of its own. A third, [`agent`], runs a
//! separate `skiff agent` beside the server inside the benchmark's own network namespace and times pods from
//! create to Ready, fills the node to its density target and reads the agent's memory. A fourth, [`proxy`], writes
//! thousands of Services and EndpointSlices, times the agent's proxy programming them (a full sync, then single
//! endpoint changes until a packet reaches the new endpoint), first-packet latency through ClusterIPs and `wrk`
//! throughput against direct pod traffic. A fifth, [`dns`], times the agent's cluster DNS against Knot DNS and
//! Unbound holding the same records: `dnsperf` throughput and latency, memory per record, and how soon a created
//! or deleted Service shows.

pub mod agent;
pub mod controllers;
pub mod dns;
pub mod error;
pub mod load;
pub mod process;
pub mod proxy;
pub mod report;
pub mod run;
pub mod stats;

pub use error::BenchError;
