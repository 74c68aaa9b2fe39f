//! Node IPAM: gives every Node a pod CIDR (`spec.podCIDR` / `spec.podCIDRs`) carved from the cluster CIDR, as
//! upstream's node IPAM controller does with its range allocator. The node agent waits for it and builds its pod
//! network from it.
//!
//! Allocation is a pure function of the Nodes that exist ([`assign`]): a Node keeps the range it has; new Nodes
//! get the lowest free one. The write is a patch pinned to the Node's resourceVersion (a Node is never given two
//! ranges), and a range handed out stays reserved until the cache shows it, so two Nodes registering at once
//! never share one. One controller runs per cluster.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures::StreamExt;
use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::{Patch, PatchParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// The size of each node's range (upstream's default `--node-cidr-mask-size` for IPv4).
pub const NODE_MASK: u8 = 24;

/// How long a range handed to a Node the cache has not shown stays reserved (the Node may have been deleted
/// before its watch event came).
const PENDING_FOR: Duration = Duration::from_secs(60);

/// The range for a Node without one, given the ranges already taken; `None` when the cluster CIDR is full.
pub fn assign(cluster: Ipv4Net, mask: u8, taken: &BTreeSet<Ipv4Net>) -> Option<Ipv4Net> {
    cluster.subnets(mask).ok()?.find(|net| !taken.contains(net))
}

fn pod_cidr(node: &Node) -> Option<Ipv4Net> {
    node.spec.as_ref()?.pod_cidr.as_deref()?.parse().ok()
}

/// Runs until `shutdown` fires.
pub async fn run(client: kube::Client, cluster: Ipv4Net, shutdown: CancellationToken) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client);
    let (store, writer) = reflector::store();
    // The cache is filled by its own task; this loop plans whenever a Node changes (and every 30 s).
    let changed = std::sync::Arc::new(tokio::sync::Notify::new());
    let notify = changed.clone();
    let events = watcher(nodes.clone(), watcher::Config::default()).default_backoff().reflect(writer).applied_objects();
    let feeder = tokio::spawn(events.for_each(move |_| {
        notify.notify_one();
        futures::future::ready(())
    }));
    let _stop_feeder = tokio_util::task::AbortOnDropHandle::new(feeder);
    tokio::select! {
        _ = shutdown.cancelled() => return Ok(()),
        ready = store.wait_until_ready() => ready?,
    }
    // Ranges this controller handed out that its cache may not show yet: the watch event of one patch can come
    // after the next Node appears, and that Node must not get the same range.
    let mut pending: BTreeMap<String, (Ipv4Net, Instant)> = BTreeMap::new();
    loop {
        let all = store.state();
        pending.retain(|name, (_, at)| match all.iter().find(|n| n.metadata.name.as_deref() == Some(name)) {
            Some(node) => pod_cidr(node).is_none(),
            None => at.elapsed() < PENDING_FOR,
        });
        let mut taken: BTreeSet<Ipv4Net> = all.iter().filter_map(|n| pod_cidr(n)).collect();
        taken.extend(pending.values().map(|(range, _)| *range));
        for node in all.iter().filter(|n| pod_cidr(n).is_none()) {
            let name = node.metadata.name.clone().unwrap_or_default();
            if pending.contains_key(&name) {
                continue;
            }
            let Some(range) = assign(cluster, NODE_MASK, &taken) else {
                tracing::error!(node = name, %cluster, "no pod CIDR left for the node");
                continue;
            };
            let patch = json!({
                "metadata": {"resourceVersion": node.metadata.resource_version},
                "spec": {"podCIDR": range.to_string(), "podCIDRs": [range.to_string()]},
            });
            match nodes.patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await {
                Ok(_) => {
                    tracing::info!(node = name, cidr = %range, "assigned pod CIDR");
                    taken.insert(range);
                    pending.insert(name, (range, Instant::now()));
                }
                Err(e) => tracing::warn!(node = name, error = %e, "assigning a pod CIDR failed; will retry"),
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = changed.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(30)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assigns_the_lowest_free_range() {
        let cluster: Ipv4Net = "10.42.0.0/16".parse().unwrap();
        let mut taken = BTreeSet::new();
        assert_eq!(assign(cluster, 24, &taken), Some("10.42.0.0/24".parse().unwrap()));
        taken.insert("10.42.0.0/24".parse().unwrap());
        taken.insert("10.42.2.0/24".parse().unwrap());
        assert_eq!(assign(cluster, 24, &taken), Some("10.42.1.0/24".parse().unwrap()));
        let tiny: Ipv4Net = "10.42.0.0/24".parse().unwrap();
        let full: BTreeSet<Ipv4Net> = [tiny].into();
        assert_eq!(assign(tiny, 24, &full), None);
    }
}
