//! The I/O half: the watches, the per-Service reconcile (plan with [`crate::plan`], then one status patch when the
//! ingress differs) and the retry policy.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{LoadBalancerIngress, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::Error;
use crate::plan::{self, Handling};

/// The reporting controller of this controller's events.
pub const CONTROLLER_NAME: &str = "servicelb-controller";

/// Runs the ServiceLB status controller until `shutdown` fires. Never panics; logs and retries on errors.
pub async fn run(client: Client, shutdown: CancellationToken) -> anyhow::Result<()> {
    let (nodes, writer) = reflector::store::<Node>();
    let node_watch = watcher(Api::<Node>::all(client.clone()), watcher::Config::default()).modify(slim_node);
    let node_changes = reflector(writer, node_watch).default_backoff().filter_map(relevant_node_change());
    let slices = watcher::Config::default().labels(plan::LABEL_SERVICE_NAME);
    let (services, service_writer) = reflector::store::<Service>();
    let service_watch = watcher(Api::<Service>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .modify(|svc: &mut Service| svc.metadata.managed_fields = None);
    let controller = Controller::for_stream(reflector(service_writer, service_watch).applied_objects(), services);
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), Reporter { controller: CONTROLLER_NAME.into(), instance: None }),
        client: client.clone(),
        nodes,
        errors: Mutex::default(),
    });
    info!("servicelb starting");
    controller
        .reconcile_all_on(node_changes)
        .watches(Api::<EndpointSlice>::all(client), slices, slice_to_service)
        .graceful_shutdown_on(shutdown.cancelled_owned())
        .run(reconcile, error_policy, ctx)
        .for_each(|result| {
            if let Err(error) = result {
                debug!(%error, "servicelb queue");
            }
            std::future::ready(())
        })
        .await;
    info!("servicelb stopped");
    Ok(())
}

/// What the cache keeps of a node: all but `managedFields` and the list of images it holds, which the plan never
/// reads (upstream informers strip managedFields the same way).
fn slim_node(node: &mut Node) {
    node.metadata.managed_fields = None;
    if let Some(status) = node.status.as_mut() {
        status.images = None;
    }
}

/// An EndpointSlice's Service, by its `kubernetes.io/service-name` label.
fn slice_to_service(slice: EndpointSlice) -> Option<ObjectRef<Service>> {
    let name = slice.labels().get(plan::LABEL_SERVICE_NAME)?;
    Some(ObjectRef::new(name).within(&slice.namespace()?))
}

/// A hash of what the ingress depends on in a node: readiness, addresses and the exclusion label.
fn node_fingerprint(node: &Node) -> u64 {
    let mut h = DefaultHasher::new();
    node.labels().contains_key(plan::LABEL_EXCLUDE).hash(&mut h);
    if let Some(status) = &node.status {
        for c in status.conditions.iter().flatten().filter(|c| c.type_ == "Ready") {
            c.status.hash(&mut h);
        }
        for a in status.addresses.iter().flatten() {
            (&a.type_, &a.address).hash(&mut h);
        }
    }
    h.finish()
}

/// Turns the node watch into "re-check every Service" triggers: on additions, deletions, relevant changes (not
/// heartbeats) and after every (re)list.
fn relevant_node_change() -> impl FnMut(Result<watcher::Event<Node>, watcher::Error>) -> std::future::Ready<Option<()>>
{
    let mut seen: HashMap<String, u64> = HashMap::new();
    move |event| {
        let fire = match event {
            Ok(watcher::Event::Apply(node)) => {
                seen.insert(node.name_any(), node_fingerprint(&node)).is_none_or(|old| old != node_fingerprint(&node))
            }
            Ok(watcher::Event::Delete(node)) => {
                seen.remove(&node.name_any());
                true
            }
            Ok(watcher::Event::Init) => {
                seen.clear();
                false
            }
            Ok(watcher::Event::InitApply(node)) => {
                seen.insert(node.name_any(), node_fingerprint(&node));
                false
            }
            Ok(watcher::Event::InitDone) => true,
            Err(error) => {
                warn!(%error, "node watch failed; retrying");
                false
            }
        };
        std::future::ready(fire.then_some(()))
    }
}

struct Context {
    client: Client,
    recorder: Recorder,
    nodes: Store<Node>,
    /// Consecutive errors per Service UID, for the retry backoff.
    errors: Mutex<HashMap<String, u32>>,
}

impl Context {
    async fn publish(&self, svc: &Service, type_: EventType, reason: &str, note: String) {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: "UpdateLoadBalancer".into(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, &svc.object_ref(&())).await {
            warn!(%error, service = %svc.name_any(), reason, "publishing an event failed");
        }
    }

    /// The nodes running a Ready endpoint of the Service, read fresh from its EndpointSlices.
    async fn endpoint_nodes(&self, svc: &Service) -> Result<HashSet<String>, Error> {
        let namespace = svc.namespace().unwrap_or_default();
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), &namespace);
        let selector = format!("{}={}", plan::LABEL_SERVICE_NAME, svc.name_any());
        let slices = api
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|source| Error::ListSlices { service: format!("{namespace}/{}", svc.name_any()), source })?;
        Ok(plan::endpoint_nodes(&slices.items))
    }
}

#[tracing::instrument(skip_all, fields(service = %svc.name_any(), namespace = %svc.namespace().unwrap_or_default()))]
async fn reconcile(svc: Arc<Service>, ctx: Arc<Context>) -> Result<Action, Error> {
    let result = sync(&svc, &ctx).await;
    if result.is_ok() {
        ctx.errors.lock().unwrap_or_else(PoisonError::into_inner).remove(&svc.uid().unwrap_or_default());
    }
    result
}

async fn sync(svc: &Service, ctx: &Context) -> Result<Action, Error> {
    let current: Vec<LoadBalancerIngress> = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.clone())
        .unwrap_or_default();
    let desired = match plan::handling(svc) {
        Handling::Ignore => return Ok(Action::await_change()),
        Handling::Clear => Vec::new(),
        Handling::Manage => {
            ctx.nodes.wait_until_ready().await.map_err(Error::CacheGone)?;
            let local = if plan::local_traffic(svc) { Some(ctx.endpoint_nodes(svc).await?) } else { None };
            let nodes = ctx.nodes.state();
            let nodes: Vec<&Node> = nodes.iter().map(AsRef::as_ref).collect();
            plan::ingress(svc, &nodes, local.as_ref())
        }
    };
    if current == desired {
        return Ok(Action::await_change());
    }
    let name = svc.name_any();
    let namespace = svc.namespace().unwrap_or_default();
    let api: Api<Service> = Api::namespaced(ctx.client.clone(), &namespace);
    // A merge patch: `null` removes the list when there is nothing to advertise.
    let ingress = if desired.is_empty() { serde_json::Value::Null } else { json!(desired) };
    let patch = json!({"status": {"loadBalancer": {"ingress": ingress}}});
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map_err(|source| Error::Status { service: format!("{namespace}/{name}"), source })?;
    info!(from = %plan::describe(&current), to = %plan::describe(&desired), "load balancer ingress updated");
    match plan::handling(svc) {
        Handling::Manage if desired.is_empty() => {
            let note = "There are no available nodes for LoadBalancer".to_string();
            ctx.publish(svc, EventType::Warning, "UnAvailableLoadBalancer", note).await;
        }
        Handling::Manage => {
            let note = format!(
                "Updated LoadBalancer with new IPs: {} -> {}",
                plan::describe(&current),
                plan::describe(&desired)
            );
            ctx.publish(svc, EventType::Normal, "UpdatedLoadBalancer", note).await;
        }
        _ => ctx.publish(svc, EventType::Normal, "DeletedLoadBalancer", "Deleted load balancer".into()).await,
    }
    Ok(Action::await_change())
}

/// Retries a failed Service with exponential backoff: 1 s doubling up to 5 minutes.
fn error_policy(svc: Arc<Service>, error: &Error, ctx: Arc<Context>) -> Action {
    let mut errors = ctx.errors.lock().unwrap_or_else(PoisonError::into_inner);
    let n = errors.entry(svc.uid().unwrap_or_default()).or_default();
    *n = n.saturating_add(1);
    let delay = Duration::from_secs(1u64 << (*n - 1).min(8)).min(Duration::from_secs(300));
    warn!(service = %svc.name_any(), namespace = %svc.namespace().unwrap_or_default(), %error, ?delay, "servicelb sync failed");
    Action::requeue(delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(ready: &str, ip: &str, beat: &str) -> Node {
        serde_json::from_value(json!({"metadata": {"name": "n"}, "status": {
            "conditions": [{"type": "Ready", "status": ready, "lastHeartbeatTime": beat}],
            "addresses": [{"type": "InternalIP", "address": ip}]}}))
        .expect("node")
    }

    #[tokio::test]
    async fn node_triggers_skip_heartbeats_but_fire_on_changes_deletes_and_relists() {
        let mut f = relevant_node_change();
        let n = node("True", "10.0.0.1", "2024-01-01T00:00:00Z");
        assert_eq!(f(Ok(watcher::Event::Init)).await, None);
        assert_eq!(f(Ok(watcher::Event::InitApply(n.clone()))).await, None);
        assert_eq!(f(Ok(watcher::Event::InitDone)).await, Some(()));
        assert_eq!(f(Ok(watcher::Event::Apply(node("True", "10.0.0.1", "2024-01-01T00:00:10Z")))).await, None);
        assert_eq!(f(Ok(watcher::Event::Apply(node("False", "10.0.0.1", "2024-01-01T00:00:20Z")))).await, Some(()));
        assert_eq!(f(Ok(watcher::Event::Apply(node("False", "10.0.0.2", "2024-01-01T00:00:20Z")))).await, Some(()));
        assert_eq!(f(Ok(watcher::Event::Delete(n))).await, Some(()));
    }

    #[test]
    fn slim_nodes_plan_the_same_ingress() {
        let mut n: Node = serde_json::from_value(json!({"metadata": {"name": "n", "labels": {"a": "b"},
            "managedFields": [{"manager": "kubelet", "fieldsV1": {"f:status": {}}}]}, "status": {
            "conditions": [{"type": "Ready", "status": "True"}],
            "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}],
            "images": [{"names": ["nginx"], "sizeBytes": 1}]}}))
        .expect("node");
        let before = node_fingerprint(&n);
        slim_node(&mut n);
        assert!(n.metadata.managed_fields.is_none());
        assert!(n.status.as_ref().is_some_and(|s| s.images.is_none() && s.addresses.is_some()));
        assert_eq!(n.metadata.labels.as_ref().map(|l| l.len()), Some(1));
        assert_eq!(node_fingerprint(&n), before);
    }

    #[test]
    fn slices_map_to_their_service() {
        let slice: EndpointSlice = serde_json::from_value(json!({"metadata": {"name": "web-abc", "namespace": "prod",
            "labels": {"kubernetes.io/service-name": "web"}}, "addressType": "IPv4", "endpoints": []}))
        .expect("slice");
        assert_eq!(slice_to_service(slice), Some(ObjectRef::new("web").within("prod")));
    }
}
