//! The node lifecycle controller, after upstream's (`pkg/controller/nodelifecycle`) and its taint-based eviction:
//! a node whose agent stops heartbeating is marked unreachable and its pods leave the Services' endpoints at
//! once; after the pods' toleration of that (the API server's default, 300 s) they are evicted so their
//! ReplicaSets replace them on healthy nodes; a node that comes back is trusted again.
//!
//! Data flow: kube-rs watches of Nodes, node Leases (`kube-node-lease`) and Pods keep three stores → every
//! [`Options::period`] the pure [`plan`] reads them with the time and returns [`Action`]s → each is one API write:
//! - a node not heard from (its Lease's `renewTime` and its Ready condition's `lastHeartbeatTime`, the later of
//!   the two) for longer than [`Options::grace`] gets Ready (and the other conditions the agent reports)
//!   `Unknown` with upstream's reason and message, and the `node.kubernetes.io/unreachable:NoExecute` taint;
//! - its pods get `Ready=False` (upstream's `MarkPodsNotReady`), which the endpoint controllers act on;
//! - once a pod has been on an unreachable node for its toleration (`tolerationSeconds` of a toleration of that
//!   taint — the API server gives every pod 300 s unless it says otherwise; a toleration without seconds: never;
//!   no toleration: at once, as upstream's taint manager does) it is deleted;
//! - a node heard from again loses the taint (its agent has already reported Ready).

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, PodCondition, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

/// The taint of a node whose Ready condition is Unknown.
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// The conditions the agent reports, all turned Unknown when it goes silent.
const REPORTED: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// The controller's timing (upstream's flags in parentheses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// How long a node may go unheard before it is unreachable (`--node-monitor-grace-period`, 40 s).
    pub grace: Duration,
    /// How often the nodes are looked at (`--node-monitor-period`, 5 s).
    pub period: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self { grace: Duration::from_secs(40), period: Duration::from_secs(5) }
    }
}

/// One write the controller makes.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// The node's conditions, replaced (the reported ones now Unknown), and its taints with the unreachable one.
    MarkUnreachable { node: String, conditions: Vec<NodeCondition>, taints: Vec<Taint> },
    /// The node's taints without the unreachable one.
    Trust { node: String, taints: Vec<Taint> },
    /// The pod's conditions with Ready False.
    PodNotReady { namespace: String, name: String, conditions: Vec<PodCondition> },
    /// Delete the pod.
    Evict { namespace: String, name: String },
}

fn node_name(node: &Node) -> &str {
    node.metadata.name.as_deref().unwrap_or_default()
}

/// When the node's agent was last heard from.
fn last_heard(node: &Node, lease: Option<&Lease>) -> Option<Timestamp> {
    let renewed = lease.and_then(|l| l.spec.as_ref()?.renew_time.as_ref()).map(|t| t.0);
    let reported = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .and_then(|c| c.last_heartbeat_time.as_ref())
        .map(|t| t.0);
    renewed.max(reported).or_else(|| node.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

fn unreachable_since(node: &Node) -> Option<Timestamp> {
    node.spec.as_ref()?.taints.as_ref()?.iter().find(|t| t.key == TAINT_UNREACHABLE)?.time_added.as_ref().map(|t| t.0)
}

fn elapsed(since: Timestamp, now: Timestamp) -> Duration {
    Duration::try_from(now.duration_since(since)).unwrap_or_default()
}

/// How long `pod` stays on an unreachable node: `None` for ever.
fn toleration(pod: &Pod) -> Option<Duration> {
    let tolerations = pod.spec.as_ref().and_then(|s| s.tolerations.as_ref());
    let matching = tolerations.into_iter().flatten().find(|t| {
        let key = t.key.as_deref().unwrap_or_default();
        let effect = t.effect.as_deref().unwrap_or_default();
        (key == TAINT_UNREACHABLE || (key.is_empty() && t.operator.as_deref() == Some("Exists")))
            && (effect.is_empty() || effect == "NoExecute")
    });
    match matching {
        None => Some(Duration::ZERO),
        Some(t) => t.toleration_seconds.map(|s| Duration::from_secs(u64::try_from(s.max(0)).unwrap_or_default())),
    }
}

/// What to write, given the cluster as the stores hold it at `now`.
pub fn plan(nodes: &[&Node], leases: &[&Lease], pods: &[&Pod], now: Timestamp, options: &Options) -> Vec<Action> {
    let mut actions = Vec::new();
    for node in nodes {
        let name = node_name(node);
        let lease = leases.iter().copied().find(|l| l.metadata.name.as_deref() == Some(name));
        let silent = last_heard(node, lease).is_none_or(|t| elapsed(t, now) > options.grace);
        let taints: Vec<Taint> = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
        let tainted = taints.iter().any(|t| t.key == TAINT_UNREACHABLE);
        if !silent {
            if tainted {
                let taints = taints.into_iter().filter(|t| t.key != TAINT_UNREACHABLE).collect();
                actions.push(Action::Trust { node: name.to_string(), taints });
            }
            continue;
        }
        let on_node = pods.iter().filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(name));
        let since = match unreachable_since(node) {
            Some(since) => since,
            None => {
                actions.push(mark_unreachable(node, taints, now));
                now
            }
        };
        for pod in on_node {
            let (namespace, pod_name) =
                (pod.metadata.namespace.clone().unwrap_or_default(), pod.metadata.name.clone().unwrap_or_default());
            if pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            if toleration(pod).is_some_and(|t| elapsed(since, now) >= t) {
                actions.push(Action::Evict { namespace, name: pod_name });
                continue;
            }
            let conditions: Vec<PodCondition> =
                pod.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
            if conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True") {
                let conditions = conditions
                    .into_iter()
                    .map(|c| {
                        if c.type_ == "Ready" {
                            PodCondition { status: "False".into(), last_transition_time: Some(Time(now)), ..c }
                        } else {
                            c
                        }
                    })
                    .collect();
                actions.push(Action::PodNotReady { namespace, name: pod_name, conditions });
            }
        }
    }
    actions
}

fn mark_unreachable(node: &Node, mut taints: Vec<Taint>, now: Timestamp) -> Action {
    let mut conditions: Vec<NodeCondition> =
        node.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    for type_ in REPORTED {
        let unknown = NodeCondition {
            type_: type_.into(),
            status: "Unknown".into(),
            reason: Some("NodeStatusUnknown".into()),
            message: Some("Kubelet stopped posting node status.".into()),
            last_transition_time: Some(Time(now)),
            last_heartbeat_time: None,
        };
        match conditions.iter_mut().find(|c| c.type_ == type_) {
            Some(c) => {
                *c = NodeCondition { last_heartbeat_time: c.last_heartbeat_time.clone(), ..unknown };
            }
            None if type_ == "Ready" => conditions.push(unknown),
            None => {}
        }
    }
    taints.push(Taint {
        key: TAINT_UNREACHABLE.into(),
        effect: "NoExecute".into(),
        time_added: Some(Time(now)),
        value: None,
    });
    Action::MarkUnreachable { node: node_name(node).to_string(), conditions, taints }
}

/// A store kept by a watch of its own (a reflector moves only while its stream is polled).
fn cached<K>(api: Api<K>) -> (Store<K>, AbortOnDropHandle<()>)
where
    K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    let (store, writer) = reflector::store();
    let feed = watcher(api, watcher::Config::default()).default_backoff().reflect(writer).for_each(|_| async {});
    (store, AbortOnDropHandle::new(tokio::spawn(feed)))
}

/// Runs until `shutdown` fires.
pub async fn run(client: kube::Client, options: Options, shutdown: CancellationToken) -> anyhow::Result<()> {
    // The watches stop when this returns (their handles abort on drop).
    let (nodes, _nodes_feed) = cached(Api::<Node>::all(client.clone()));
    let (leases, _leases_feed) = cached(Api::<Lease>::namespaced(client.clone(), "kube-node-lease"));
    let (pods, _pods_feed) = cached(Api::<Pod>::all(client.clone()));
    tokio::select! {
        _ = shutdown.cancelled() => return Ok(()),
        ready = async { nodes.wait_until_ready().await?; leases.wait_until_ready().await?; pods.wait_until_ready().await } => ready?,
    }
    let mut tick = tokio::time::interval(options.period);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tick.tick() => {}
        }
        let (all_nodes, all_leases, all_pods) = (nodes.state(), leases.state(), pods.state());
        let actions = plan(
            &all_nodes.iter().map(|n| n.as_ref()).collect::<Vec<_>>(),
            &all_leases.iter().map(|l| l.as_ref()).collect::<Vec<_>>(),
            &all_pods.iter().map(|p| p.as_ref()).collect::<Vec<_>>(),
            Timestamp::now(),
            &options,
        );
        for action in actions {
            if let Err(e) = apply(&client, &action).await {
                tracing::warn!(?action, error = %e, "node lifecycle write failed; will retry");
            }
        }
    }
}

async fn apply(client: &kube::Client, action: &Action) -> Result<(), kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let params = PatchParams::default();
    match action {
        Action::MarkUnreachable { node, conditions, taints } => {
            tracing::warn!(node, "node stopped heartbeating: marking it unreachable");
            nodes.patch_status(node, &params, &Patch::Merge(json!({"status": {"conditions": conditions}}))).await?;
            nodes.patch(node, &params, &Patch::Merge(json!({"spec": {"taints": taints}}))).await?;
        }
        Action::Trust { node, taints } => {
            tracing::info!(node, "node heartbeating again: removing the unreachable taint");
            nodes.patch(node, &params, &Patch::Merge(json!({"spec": {"taints": taints}}))).await?;
        }
        Action::PodNotReady { namespace, name, conditions } => {
            let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
            pods.patch_status(name, &params, &Patch::Merge(json!({"status": {"conditions": conditions}}))).await?;
        }
        Action::Evict { namespace, name } => {
            tracing::info!(namespace, pod = name, "evicting a pod from an unreachable node");
            let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
            match pods.delete(name, &DeleteParams::default()).await {
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(e) => return Err(e),
                Ok(_) => {}
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
