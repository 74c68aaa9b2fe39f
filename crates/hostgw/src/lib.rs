//! Pod traffic between nodes in host-gateway mode (flannel's `host-gw`): every node routes each other node's pod
//! CIDR through that node's address, so pods reach pods on any node by their own IPs, with no encapsulation and
//! no NAT — which needs the nodes on one L2 segment. Traffic from pods to anything outside the pod network is
//! masqueraded behind the node's address (pod-to-pod traffic never is).
//!
//! Data flow: a kube-rs watch of the Nodes keeps a store (fed by a task of its own) → on every change (and every [`RESYNC`], to repair what
//! someone else changed) [`desired`] computes the routes from each other Node's `spec.podCIDR` and `InternalIP`
//! → [`reconcile`] compares them with the routes this module owns in the kernel (tagged with the routing protocol
//! [`PROTO`], so nothing else's routes are touched) and adds, replaces and deletes with `ip route`. The egress
//! masquerade is one nftables table ([`EGRESS_TABLE`]) written once at start.
//!
//! Hand-written here, and why: no CNI reference plugin routes between nodes (flannel, which does, is not one of
//! them), and the bridge plugin's own `ipMasq` masquerades everything leaving the node's own pod subnet, other
//! nodes' pods included.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;

use futures::StreamExt;
use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Node;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

/// The routing protocol number that marks the routes this module owns (`ip route … proto 186`); unassigned in
/// `/etc/iproute2/rt_protos`.
pub const PROTO: u8 = 186;
/// The nftables table with the pod network's egress masquerade.
pub const EGRESS_TABLE: &str = "skiff-egress";
/// How often the routes are reconciled with no Node change.
pub const RESYNC: Duration = Duration::from_secs(30);
/// How soon a failed update is tried again.
const RETRY: Duration = Duration::from_secs(1);

/// The routes to other nodes' pods: pod CIDR → that node's address.
pub type Routes = BTreeMap<Ipv4Net, Ipv4Addr>;

/// The routes this node needs: every other Node with a pod CIDR and an IPv4 `InternalIP`.
pub fn desired(nodes: &[&Node], this_node: &str) -> Routes {
    let mut routes = Routes::new();
    for node in nodes.iter().filter(|n| n.metadata.name.as_deref() != Some(this_node)) {
        let cidr = node.spec.as_ref().and_then(|s| s.pod_cidr.as_deref()).and_then(|c| c.parse::<Ipv4Net>().ok());
        let address = node
            .status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .into_iter()
            .flatten()
            .filter(|a| a.type_ == "InternalIP")
            .find_map(|a| a.address.parse::<Ipv4Addr>().ok());
        if let (Some(cidr), Some(address)) = (cidr, address) {
            routes.insert(cidr, address);
        }
    }
    routes
}

/// The routes this module has in the kernel (`ip -j route show proto PROTO`).
pub fn current() -> anyhow::Result<Routes> {
    let out = ip(&["-j", "route", "show", "proto", &PROTO.to_string()])?;
    let listed: Vec<serde_json::Value> = serde_json::from_str(if out.trim().is_empty() { "[]" } else { &out })?;
    Ok(listed
        .iter()
        .filter_map(|route| {
            let dst = route["dst"].as_str()?;
            let cidr: Ipv4Net = if dst.contains('/') { dst.parse().ok()? } else { format!("{dst}/32").parse().ok()? };
            Some((cidr, route["gateway"].as_str()?.parse().ok()?))
        })
        .collect())
}

/// Makes the kernel's routes of this module `want`: adds the missing, replaces the changed, deletes the rest.
/// Returns how many routes it changed.
pub fn reconcile(want: &Routes) -> anyhow::Result<usize> {
    let have = current()?;
    let mut changed = 0;
    for (cidr, via) in want {
        if have.get(cidr) != Some(via) {
            ip(&["route", "replace", &cidr.to_string(), "via", &via.to_string(), "proto", &PROTO.to_string()])?;
            changed += 1;
        }
    }
    for cidr in have.keys().filter(|c| !want.contains_key(c)) {
        ip(&["route", "del", &cidr.to_string(), "proto", &PROTO.to_string()])?;
        changed += 1;
    }
    Ok(changed)
}

/// What removes the egress table (creating it first, so that it may be missing).
fn remove_egress() -> String {
    format!("table ip {EGRESS_TABLE} {{}}\ndelete table ip {EGRESS_TABLE}\n")
}

/// The egress masquerade: traffic from the pod network to anywhere outside it leaves with the node's address
/// (replacing an earlier table in the same transaction).
pub fn egress_script(cluster_cidr: Ipv4Net) -> String {
    remove_egress()
        + &format!(
            "table ip {EGRESS_TABLE} {{\n  chain \
         postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;\n    ip saddr {cluster_cidr} ip \
         daddr != {cluster_cidr} ip daddr != 224.0.0.0/4 masquerade\n  }}\n}}\n"
        )
}

/// Writes the egress masquerade (replacing an earlier one), atomically.
pub fn apply_egress(cluster_cidr: Ipv4Net) -> anyhow::Result<()> {
    Ok(skiff_proxy::nft::apply(&egress_script(cluster_cidr))?)
}

/// Removes what this module made: its routes and the egress table.
pub fn teardown() -> anyhow::Result<()> {
    reconcile(&Routes::new())?;
    Ok(skiff_proxy::nft::apply(&remove_egress())?)
}

/// Keeps the routes to the other nodes' pods in step with the Nodes until `shutdown`.
pub async fn run(client: Client, this_node: String, cluster_cidr: Ipv4Net, shutdown: CancellationToken) {
    if let Err(e) = apply_egress(cluster_cidr) {
        tracing::warn!(error = %e, "writing the pod network's egress masquerade failed");
    }
    let (store, writer) = reflector::store::<Node>();
    // The cache is filled by a task of its own (a reflector only moves while its stream is polled); this loop
    // plans whenever a Node changes, and every RESYNC.
    let changed = std::sync::Arc::new(tokio::sync::Notify::new());
    let notify = changed.clone();
    let events = watcher(Api::<Node>::all(client), watcher::Config::default()).default_backoff().reflect(writer);
    let feeder = tokio::spawn(events.for_each(move |event| {
        if let Err(e) = event {
            tracing::debug!(error = %e, "watching Nodes");
        }
        notify.notify_one();
        futures::future::ready(())
    }));
    let _stop_feeder = tokio_util::task::AbortOnDropHandle::new(feeder);
    tokio::select! {
        _ = shutdown.cancelled() => return,
        ready = store.wait_until_ready() => if ready.is_err() { return },
    }
    let mut resync = tokio::time::interval(RESYNC);
    let mut last: Option<Routes> = None;
    loop {
        let nodes = store.state();
        let want = desired(&nodes.iter().map(|n| n.as_ref()).collect::<Vec<_>>(), &this_node);
        if last.as_ref() != Some(&want) {
            let plan = want.clone();
            match tokio::task::spawn_blocking(move || reconcile(&plan)).await {
                Ok(Ok(count)) => {
                    if count > 0 {
                        tracing::info!(routes = want.len(), changed = count, "routes to other nodes' pods updated");
                    }
                    last = Some(want);
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "updating the routes to other nodes' pods failed; retrying"),
                Err(e) => tracing::warn!(error = %e, "the route update panicked; retrying"),
            }
        }
        let failed = last.is_none();
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = changed.notified() => {}
            _ = resync.tick() => last = None,
            _ = tokio::time::sleep(RETRY), if failed => {}
        }
    }
}

fn ip(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("ip").args(args).output()?;
    anyhow::ensure!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, cidr: Option<&str>, address: Option<&str>) -> Node {
        let addresses: Vec<_> = address.into_iter().map(|a| json!({"type": "InternalIP", "address": a})).collect();
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"podCIDR": cidr},
            "status": {"addresses": addresses},
        }))
        .expect("a node")
    }

    #[test]
    fn every_other_node_with_a_pod_cidr_and_an_address_is_routed_through_that_address() {
        let nodes = [
            node("node-1", Some("10.42.0.0/24"), Some("192.168.60.1")),
            node("node-2", Some("10.42.1.0/24"), Some("192.168.60.2")),
            node("node-3", None, Some("192.168.60.3")),
            node("node-4", Some("10.42.3.0/24"), None),
        ];
        let routes = desired(&nodes.iter().collect::<Vec<_>>(), "node-1");
        assert_eq!(routes, Routes::from([("10.42.1.0/24".parse().unwrap(), "192.168.60.2".parse().unwrap())]));
    }

    #[test]
    fn the_egress_masquerade_spares_the_pod_network_and_replaces_an_earlier_table() {
        let script = egress_script("10.42.0.0/16".parse().unwrap());
        assert!(script.starts_with("table ip skiff-egress {}\ndelete table ip skiff-egress\n"), "{script}");
        assert!(script.contains("ip saddr 10.42.0.0/16 ip daddr != 10.42.0.0/16 ip daddr != 224.0.0.0/4 masquerade"));
    }
}
