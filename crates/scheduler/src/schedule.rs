//! The I/O half of scheduling: the watches, the per-pod reconcile (choose with [`crate::filter`], then bind or
//! report why not), the assumed-pod bookkeeping and the retry policy.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Binding, Node, ObjectReference, Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, Store, reflector};
use kube::runtime::{PredicateConfig, WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::Error;
use crate::bound::BoundPods;
use crate::filter::{self, FitError};
use crate::slim::{self, CachedPod};

/// The `spec.schedulerName` this scheduler answers to (and its events' reporting controller).
pub const SCHEDULER_NAME: &str = "default-scheduler";
/// How often a pod that fits nowhere is retried even when no node changes.
const UNSCHEDULABLE_RETRY: Duration = Duration::from_secs(60);
/// A `FailedScheduling` event with an unchanged message is not repeated more often than this.
const EVENT_REPEAT: Duration = Duration::from_secs(60);

/// Runs the scheduler until `shutdown` fires. Never panics; logs and retries on errors.
pub async fn run(client: Client, shutdown: CancellationToken) -> anyhow::Result<()> {
    let (nodes, writer) = reflector::store::<Node>();
    // Every scheduling-relevant node change (not heartbeats) retries all pending pods.
    let node_watch = watcher(Api::<Node>::all(client.clone()), watcher::Config::default()).modify(slim::node);
    let node_changes = reflector(writer, node_watch)
        .default_backoff()
        .applied_objects()
        .predicate_filter(node_fingerprint, PredicateConfig::default())
        .filter_map(|node| {
            if let Err(error) = &node {
                warn!(%error, "node watch failed; retrying");
            }
            std::future::ready(node.ok().map(|_| ()))
        });
    // Bound pods only count towards their node: they go to `State::bound`, not to the controller's store.
    let state = Arc::new(Mutex::new(State::default()));
    let router = Arc::clone(&state);
    let (pods, pod_writer) = reflector::store::<CachedPod>();
    let pod_watch = watcher(Api::<CachedPod>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .filter_map(move |event| {
            let routed = match event {
                Ok(event) => {
                    let mut state = router.lock().unwrap_or_else(PoisonError::into_inner);
                    let State { bound, unconfirmed, .. } = &mut *state;
                    bound.route(event, |uid| unconfirmed.contains(uid)).map(Ok)
                }
                Err(error) => Some(Err(error)),
            };
            std::future::ready(routed)
        });
    let controller = Controller::for_stream(reflector(pod_writer, pod_watch).applied_objects(), pods);
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), Reporter { controller: SCHEDULER_NAME.into(), instance: None }),
        client,
        pods: controller.store(),
        nodes,
        state,
    });
    info!("scheduler starting");
    controller
        .reconcile_all_on(node_changes)
        .graceful_shutdown_on(shutdown.cancelled_owned())
        .run(reconcile, error_policy, ctx)
        .for_each(|result| {
            if let Err(error) = result {
                debug!(%error, "scheduler queue");
            }
            std::future::ready(())
        })
        .await;
    info!("scheduler stopped");
    Ok(())
}

/// A hash of what scheduling looks at on a node: labels, cordon, taints and the Ready condition.
fn node_fingerprint(node: &Node) -> Option<u64> {
    let mut h = DefaultHasher::new();
    node.labels().hash(&mut h);
    if let Some(spec) = &node.spec {
        spec.unschedulable.hash(&mut h);
        for t in spec.taints.iter().flatten() {
            (&t.key, &t.value, &t.effect).hash(&mut h);
        }
    }
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready").map(|c| c.status.clone()));
    ready.hash(&mut h);
    Some(h.finish())
}

struct Context {
    client: Client,
    recorder: Recorder,
    pods: Store<CachedPod>,
    nodes: Store<Node>,
    /// Shared with the pod watch, which keeps `bound` and reads `unconfirmed`.
    state: Arc<Mutex<State>>,
}

/// The scheduler's memory between reconciles, keyed by pod UID.
#[derive(Default)]
struct State {
    /// Every pod bound to a node (whoever bound it), as the watch shows them.
    bound: BoundPods,
    /// Pods bound by us that the watch has not shown bound yet → their node (upstream's "assumed" pods).
    assumed: HashMap<String, String>,
    /// Pods bound by us whose `PodScheduled=True` write has not succeeded yet.
    unconfirmed: HashSet<String>,
    /// The last `FailedScheduling` message published per pod, and when.
    failures: HashMap<String, (String, Instant)>,
    /// Consecutive errors per pod, for the retry backoff.
    errors: HashMap<String, u32>,
}

/// Whether the scheduler should look for a node for this pod.
fn pending(pod: &Pod) -> bool {
    let spec = pod.spec.as_ref();
    let unbound = spec.and_then(|s| s.node_name.as_deref()).is_none_or(str::is_empty);
    let ours = spec.and_then(|s| s.scheduler_name.as_deref()).is_none_or(|n| n.is_empty() || n == SCHEDULER_NAME);
    unbound && ours && pod.metadata.deletion_timestamp.is_none() && !terminated(pod)
}

fn terminated(pod: &Pod) -> bool {
    matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"))
}

fn scheduled_condition(pod: &Pod) -> Option<&PodCondition> {
    pod.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "PodScheduled")
}

impl Context {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Chooses a node and assumes the pod onto it, atomically with respect to other reconciles.
    fn choose_and_assume(&self, pod: &Pod, uid: &str) -> Result<String, FitError> {
        let pods = self.pods.state();
        let nodes = self.nodes.state();
        let mut state = self.state();
        let State { bound, assumed, unconfirmed, failures, .. } = &mut *state;
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for p in bound.placements().filter(|p| !p.terminated) {
            *counts.entry(p.node.clone()).or_default() += 1;
        }
        // The store holds unbound pods (and bound ones whose binding is unconfirmed, counted above already).
        let unbound: HashSet<String> = pods.iter().filter_map(|p| p.uid()).filter(|id| !bound.contains(id)).collect();
        assumed.retain(|id, _| unbound.contains(id));
        failures.retain(|id, _| unbound.contains(id));
        unconfirmed.retain(|id| unbound.contains(id) || bound.contains(id));
        for node in state.assumed.values() {
            *counts.entry(node.clone()).or_default() += 1;
        }
        let nodes: Vec<&Node> = nodes.iter().map(AsRef::as_ref).collect();
        let chosen = filter::choose(pod, &nodes, &counts)?.to_string();
        state.assumed.insert(uid.to_string(), chosen.clone());
        Ok(chosen)
    }

    async fn publish(&self, pod: &Pod, type_: EventType, reason: &str, action: &str, note: String) {
        let event = Event { type_, reason: reason.into(), note: Some(note), action: action.into(), secondary: None };
        if let Err(error) = self.recorder.publish(&event, &pod.object_ref(&())).await {
            warn!(%error, pod = %pod.name_any(), reason, "publishing an event failed");
        }
    }

    /// Writes the `PodScheduled` condition with a strategic-merge status patch (merged by `type`).
    async fn set_condition(&self, pod: &Pod, condition: PodCondition) -> Result<(), Error> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
        let mut condition = serde_json::to_value(condition).map_err(|e| Error::Encode(e.to_string()))?;
        // A strategic merge keeps fields the new condition leaves out; null removes them (as a two-way patch would).
        for field in ["reason", "message", "lastProbeTime"] {
            if let Some(c) = condition.as_object_mut() {
                c.entry(field).or_insert(serde_json::Value::Null);
            }
        }
        let patch = json!({"status": {"conditions": [condition]}});
        api.patch_status(&pod.name_any(), &PatchParams::default(), &Patch::Strategic(patch))
            .await
            .map(|_| ())
            .map_err(|source| Error::Status { pod: pod.name_any(), source })
    }

    async fn bind(&self, pod: &Pod, uid: &str, node: &str) -> Result<Action, Error> {
        let name = pod.name_any();
        let namespace = pod.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let binding = Binding {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                uid: pod.uid(),
                ..ObjectMeta::default()
            },
            target: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Node".into()),
                name: Some(node.into()),
                ..ObjectReference::default()
            },
        };
        // Unconfirmed before the binding exists, so the watch keeps the bound pod in the store until confirmed.
        self.state().unconfirmed.insert(uid.to_string());
        let result: Result<serde_json::Value, kube::Error> =
            api.create_subresource("binding", &name, &PostParams::default(), &binding).await;
        if result.is_err() {
            self.state().unconfirmed.remove(uid);
        }
        match result {
            Ok(_) => {}
            // Someone else bound it (or our cache was stale): the watch will show where.
            Err(kube::Error::Api(s)) if s.code == 409 => return Ok(Action::await_change()),
            Err(kube::Error::Api(s)) if s.code == 404 => {
                self.state().assumed.remove(uid);
                return Ok(Action::await_change());
            }
            Err(source) => {
                self.state().assumed.remove(uid);
                let note = format!("Binding rejected: {source}");
                self.publish(pod, EventType::Warning, "FailedScheduling", "Scheduling", note).await;
                return Err(Error::Bind { pod: name, node: node.into(), source });
            }
        }
        info!(pod = %name, %namespace, %node, "bound");
        let note = format!("Successfully assigned {namespace}/{name} to {node}");
        self.publish(pod, EventType::Normal, "Scheduled", "Binding", note).await;
        self.confirm(pod, uid).await
    }

    /// Sets `PodScheduled=True` on a pod we bound (upstream's binding does it; Skiff's API server does not).
    async fn confirm(&self, pod: &Pod, uid: &str) -> Result<Action, Error> {
        let condition = PodCondition {
            type_: "PodScheduled".into(),
            status: "True".into(),
            last_transition_time: Some(Time(Timestamp::now())),
            ..PodCondition::default()
        };
        self.set_condition(pod, condition).await?;
        self.state().unconfirmed.remove(uid);
        Ok(Action::await_change())
    }

    /// Leaves the pod Pending with `PodScheduled=False` and a `FailedScheduling` event; retried later.
    async fn unschedulable(&self, pod: &Pod, uid: &str, fit: &FitError) -> Result<Action, Error> {
        let message = fit.to_string();
        let existing = scheduled_condition(pod);
        let same = existing.is_some_and(|c| {
            c.status == "False"
                && c.reason.as_deref() == Some("Unschedulable")
                && c.message.as_deref() == Some(&message)
        });
        if !same {
            let since = existing.filter(|c| c.status == "False").and_then(|c| c.last_transition_time.clone());
            let condition = PodCondition {
                type_: "PodScheduled".into(),
                status: "False".into(),
                reason: Some("Unschedulable".into()),
                message: Some(message.clone()),
                last_transition_time: Some(since.unwrap_or(Time(Timestamp::now()))),
                ..PodCondition::default()
            };
            self.set_condition(pod, condition).await?;
        }
        let repeat = {
            let state = self.state();
            state.failures.get(uid).is_some_and(|(m, at)| *m == message && at.elapsed() < EVENT_REPEAT)
        };
        if !repeat {
            info!(pod = %pod.name_any(), namespace = %pod.namespace().unwrap_or_default(), %message, "unschedulable");
            self.state().failures.insert(uid.to_string(), (message.clone(), Instant::now()));
            self.publish(pod, EventType::Warning, "FailedScheduling", "Scheduling", message).await;
        }
        Ok(Action::requeue(UNSCHEDULABLE_RETRY))
    }
}

#[tracing::instrument(skip_all, fields(pod = %pod.name_any(), namespace = %pod.namespace().unwrap_or_default()))]
async fn reconcile(pod: Arc<CachedPod>, ctx: Arc<Context>) -> Result<Action, Error> {
    let uid = pod.uid().unwrap_or_default();
    let pod = pod.to_pod();
    let result = schedule_one(&pod, &uid, &ctx).await;
    if result.is_ok() {
        ctx.state().errors.remove(&uid);
    }
    result
}

async fn schedule_one(pod: &Pod, uid: &str, ctx: &Context) -> Result<Action, Error> {
    if !pending(pod) {
        let unconfirmed = ctx.state().unconfirmed.contains(uid);
        if unconfirmed && scheduled_condition(pod).is_none_or(|c| c.status != "True") {
            return ctx.confirm(pod, uid).await;
        }
        return Ok(Action::await_change());
    }
    if ctx.state().assumed.contains_key(uid) {
        // Bound a moment ago; the watch has not caught up yet.
        return Ok(Action::await_change());
    }
    ctx.nodes.wait_until_ready().await.map_err(Error::CacheGone)?;
    match ctx.choose_and_assume(pod, uid) {
        Ok(node) => ctx.bind(pod, uid, &node).await,
        Err(fit) => ctx.unschedulable(pod, uid, &fit).await,
    }
}

/// Retries a failed pod with exponential backoff: 1 s doubling up to 5 minutes.
fn error_policy(pod: Arc<CachedPod>, error: &Error, ctx: Arc<Context>) -> Action {
    let mut state = ctx.state();
    let n = state.errors.entry(pod.uid().unwrap_or_default()).or_default();
    *n = n.saturating_add(1);
    let delay = Duration::from_secs(1u64 << (*n - 1).min(8)).min(Duration::from_secs(300));
    warn!(pod = %pod.name_any(), namespace = %pod.namespace().unwrap_or_default(), %error, ?delay, "scheduling failed");
    Action::requeue(delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).expect("pod")
    }

    #[test]
    fn only_unbound_live_pods_of_this_scheduler_are_pending() {
        let base = json!({"metadata": {"name": "p"}, "spec": {"containers": []}});
        assert!(pending(&pod(base.clone())));
        let mut named = base.clone();
        named["spec"]["schedulerName"] = json!("default-scheduler");
        assert!(pending(&pod(named)));
        let mut other = base.clone();
        other["spec"]["schedulerName"] = json!("my-scheduler");
        assert!(!pending(&pod(other)));
        let mut bound = base.clone();
        bound["spec"]["nodeName"] = json!("n1");
        assert!(!pending(&pod(bound)));
        let mut done = base.clone();
        done["status"] = json!({"phase": "Succeeded"});
        assert!(!pending(&pod(done)));
        let mut deleting = base;
        deleting["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
        assert!(!pending(&pod(deleting)));
    }

    #[test]
    fn fingerprint_ignores_heartbeats_but_not_readiness() {
        let node = |ready: &str, beat: &str| -> Node {
            serde_json::from_value(json!({"metadata": {"name": "n"}, "status": {"conditions": [
                {"type": "Ready", "status": ready, "lastHeartbeatTime": beat}]}}))
            .expect("node")
        };
        let a = node_fingerprint(&node("True", "2024-01-01T00:00:00Z"));
        assert_eq!(a, node_fingerprint(&node("True", "2024-01-01T00:00:10Z")));
        assert_ne!(a, node_fingerprint(&node("False", "2024-01-01T00:00:10Z")));
    }
}
