//! Skiff's cluster DNS: Services, their endpoints and pods by name, to the Kubernetes DNS-Based Service
//! Discovery specification (schema 1.1.0), in every node's agent.
//!
//! Data flow: kube-rs watches of Services and EndpointSlices ([`watch`]) keep compact records in the
//! [`zone::Zone`] (the cluster domain, answered from memory; a change is visible to the next question) → the UDP
//! listener ([`udp`], a thread per core) answers a repeated question from the [`cache::AnswerCache`] (retired by
//! any zone change) and hands the rest, as hickory's TCP listener hands every question, to [`server::Handler`] →
//! names of the cluster domain, and PTR names of the addresses it knows, are answered by
//! [`zone::Zone::lookup`]; everything else, and an ExternalName's target, goes to the node's upstream resolvers
//! through [`forward::Forwarder`] (hickory's resolver, with its cache) → [`metrics`] counts questions by type,
//! answers by code, their latency and the answer cache's hits and misses.
//!
//! Hand-written here, and why: the zone's lookup, and the UDP listener with its answer cache ([`udp`] says why).
//! hickory's zone stores hold records by name and would need a full record set rebuilt per change, with hundreds
//! of records per headless Service and no notion of readiness; the specification's names are few shapes, each
//! answered from the Service and its endpoints.

pub mod cache;
pub mod forward;
pub mod metrics;
pub mod server;
pub mod services;
pub mod udp;
pub mod watch;
pub mod zone;

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use tokio_util::sync::CancellationToken;

pub use zone::ZoneConfig;

/// What the DNS server needs.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// Where to listen, on UDP and TCP.
    pub listen: SocketAddr,
    pub zone: ZoneConfig,
    /// The upstream resolvers for names outside the cluster domain (none: those are SERVFAIL).
    pub upstreams: Vec<SocketAddr>,
    /// Called first on each thread the server starts for itself (the node agent turns its allocator's thread
    /// cache off there).
    pub thread_start: Option<fn()>,
}

/// Cluster DNS being served.
pub struct Dns {
    listeners: server::Listeners,
    stop: CancellationToken,
}

impl Dns {
    /// Waits for the stop signal, then shuts the listeners down.
    pub async fn wait(self) {
        self.stop.cancelled().await;
        self.listeners.shutdown().await;
    }
}

/// Starts cluster DNS: watches the cluster, and once Services and EndpointSlices are listed (so that no name is
/// wrongly NXDOMAIN) listens at `config.listen`. `None`: `stop` fired first.
pub async fn start(client: kube::Client, config: DnsConfig, stop: CancellationToken) -> std::io::Result<Option<Dns>> {
    let zone = Arc::new(RwLock::new(zone::Zone::new(config.zone.clone())));
    let mut synced = watch::start(client, zone.clone(), stop.clone());
    tokio::select! {
        _ = stop.cancelled() => return Ok(None),
        _ = synced.wait_for(|s| *s) => {}
    }
    let forwarder = if config.upstreams.is_empty() {
        None
    } else {
        Some(forward::Forwarder::new(&config.upstreams).map_err(std::io::Error::other)?)
    };
    let listeners = server::serve(config.listen, zone, forwarder, config.thread_start, stop.clone()).await?;
    tracing::info!(listen = %config.listen, domain = %config.zone.domain, upstreams = ?config.upstreams, "cluster DNS serving");
    Ok(Some(Dns { listeners, stop }))
}
