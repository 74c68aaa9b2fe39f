//! The controllers that make a Skiff cluster move by itself, run together under one supervisor: Deployments and
//! ReplicaSets (`skiff-workloads`), Endpoints, EndpointSlices and their mirroring (`skiff-endpoints`), garbage
//! collection and namespace deletion (`skiff-gc`), the scheduler (`skiff-scheduler`) and LoadBalancer status
//! (`skiff-servicelb`), node IPAM (`skiff-nodeipam`) and the node lifecycle (`skiff-nodelifecycle`). With several
//! servers on one datastore only the holder of a Lease runs them ([`leader`]).
//!
//! Each controller is a kube-rs client of the API and knows nothing of the others; they meet only through the
//! objects they read and write. `skiff server` runs them in-process against its own API server, and
//! `skiff controllers --kubeconfig FILE` runs the same set against any Kubernetes API. A controller whose loop ends
//! with an error before shutdown is restarted after a backoff, so one failing controller never stops the rest.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ipnet::Ipv4Net;

use kube::Client;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub mod leader;

/// One controller's loop, as a future.
type Loop = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;
type Run = Arc<dyn Fn(Client, CancellationToken) -> Loop + Send + Sync>;

/// Cluster settings some controllers need.
#[derive(Debug, Clone)]
pub struct Options {
    /// The pod network, split into per-node ranges by node IPAM.
    pub cluster_cidr: Ipv4Net,
    /// When silent nodes turn unreachable and their pods are evicted.
    pub node_lifecycle: skiff_nodelifecycle::Options,
    /// Who holds the controllers' Lease when this process leads (default: `<hostname>_<pid>`). A server passes
    /// one that survives its restarts, so a restarted server takes its own Lease back at once.
    pub identity: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            cluster_cidr: Ipv4Net::new_assert(std::net::Ipv4Addr::new(10, 42, 0, 0), 16),
            node_lifecycle: skiff_nodelifecycle::Options::default(),
            identity: None,
        }
    }
}

/// The names of every controller, as `--controllers` takes them.
pub fn names() -> Vec<&'static str> {
    controllers(&Options::default()).into_iter().map(|(name, _)| name).collect()
}

fn plain(f: fn(Client, CancellationToken) -> Loop) -> Run {
    Arc::new(f)
}

/// Every controller, by the name it logs under.
fn controllers(options: &Options) -> Vec<(&'static str, Run)> {
    let cidr = options.cluster_cidr;
    let lifecycle = options.node_lifecycle;
    vec![
        ("nodeipam", Arc::new(move |c, s| Box::pin(skiff_nodeipam::run(c, cidr, s)))),
        ("node-lifecycle", Arc::new(move |c, s| Box::pin(skiff_nodelifecycle::run(c, lifecycle, s)))),
        ("deployment", plain(|c, s| Box::pin(skiff_workloads::deployment::run(c, s)))),
        ("replicaset", plain(|c, s| Box::pin(skiff_workloads::replicaset::run(c, s)))),
        // Endpoints, EndpointSlices and their mirroring share one cache of pods and Services.
        ("endpoints", plain(|c, s| Box::pin(skiff_endpoints::run(c, s)))),
        ("garbage-collector", plain(|c, s| Box::pin(skiff_gc::garbagecollector::run(c, s)))),
        ("namespace", plain(|c, s| Box::pin(skiff_gc::namespace::run(c, s)))),
        ("scheduler", plain(|c, s| Box::pin(skiff_scheduler::run(c, s)))),
        ("servicelb", plain(|c, s| Box::pin(skiff_servicelb::run(c, s)))),
    ]
}

/// Runs every controller until `shutdown` fires.
pub async fn run(client: Client, options: Options, shutdown: CancellationToken) {
    run_only(client, options, &names(), shutdown).await;
}

/// Runs the named controllers (see [`names`]) until `shutdown` fires, while this process holds the controllers'
/// Lease ([`leader`]): with several servers on one datastore, one of them runs them.
pub async fn run_only(client: Client, options: Options, only: &[&str], shutdown: CancellationToken) {
    let identity = options.identity.clone().unwrap_or_else(|| {
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}_{}", hostname.trim(), std::process::id())
    });
    let only: Vec<&'static str> = names().into_iter().filter(|n| only.contains(n)).collect();
    let lead = |lost: CancellationToken| {
        let (client, options, only) = (client.clone(), options.clone(), only.clone());
        async move {
            let mut set = JoinSet::new();
            for (name, run) in controllers(&options).into_iter().filter(|(name, _)| only.contains(name)) {
                let client = client.clone();
                let lost = lost.clone();
                set.spawn(async move { supervise(name, run, client, lost).await });
            }
            while set.join_next().await.is_some() {}
        }
    };
    leader::run(client.clone(), identity, shutdown, lead).await;
}

/// Keeps one controller running: restarts it with exponential backoff (1 s doubling to 30 s) when it fails.
async fn supervise(name: &'static str, run: Run, client: Client, shutdown: CancellationToken) {
    let mut backoff = Duration::from_secs(1);
    loop {
        tracing::debug!(controller = name, "starting");
        let result = run(client.clone(), shutdown.clone()).await;
        if shutdown.is_cancelled() {
            return;
        }
        match result {
            Ok(()) => tracing::warn!(controller = name, "stopped unexpectedly; restarting"),
            Err(e) => tracing::error!(controller = name, error = %e, "failed; restarting"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}
