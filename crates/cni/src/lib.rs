//! Pod networking for the Skiff node agent through CNI, the ecosystem's standard plugin interface.
//!
//! The agent describes the node's pod network once ([`NetworkConfig`]: bridge name, the node's pod CIDR, where
//! host-local keeps its allocations) and gets a [`Cni`]. For each pod it creates a network namespace
//! ([`create_netns`]), then [`Cni::add`] runs the Debian reference plugins as the CNI 1.0 spec describes —
//! `loopback` for `lo`, then the conflist `bridge` (+ `host-local` IPAM) → `portmap`, each plugin fed the previous
//! one's result — and returns the pod's IP ([`CniResult`]). The result is cached on disk so [`Cni::check`],
//! [`Cni::del`] and an agent restarted later ([`Cni::cached_result`]) can find it. [`Cni::del`] releases the IP even
//! when the namespace is already gone, and is safe to repeat; [`Cni::teardown`] removes everything the network made.
//!
//! Plugins run in the agent's network namespace, or in one given by [`Cni::with_plugin_netns`] (tests use a
//! throw-away "node" namespace). Namespace changes happen only on short-lived dedicated threads, never on the
//! async runtime's threads. IPv4 only.

mod cache;
mod cni;
mod config;
mod error;
mod exec;
mod masq;
mod netns;
mod result;

pub use cache::CacheError;
pub use cni::Cni;
pub use config::{
    CNI_VERSION, ConfigError, DEFAULT_PLUGIN_DIRS, NetworkConfig, POD_IFNAME, PortMapping, Protocol, loopback_config,
};
pub use error::Error;
pub use exec::ExecError;
pub use masq::chain_name;
pub use netns::{
    NETNS_RUN_DIR, NetnsError, create_netns, create_netns_in, delete_netns, delete_netns_at, netns_exists, run_in_netns,
};
pub use result::{CniResult, Interface, IpConfig, PluginError, ResultError, Route};
