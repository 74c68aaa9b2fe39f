//! The ReplicaSet controller (upstream's `pkg/controller/replicaset`): keeps `spec.replicas` active pods
//! per ReplicaSet. A reconcile claims pods (adopts orphans its selector matches, releases pods that stopped
//! matching), plans creates or deletes ([`manage`]) unless earlier writes are not yet in the cache
//! ([`expectations`]), carries them out, and writes the status ([`status`]).

mod expectations;
mod manage;
mod status;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::channel::mpsc;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, is_not_found};
use crate::labels::matches;
use crate::ownership::{Claim, adopt_patch, controller_of, controller_ref, decide, release_patch};
use crate::pods::{is_active, until_available};
use crate::runtime::{Backoff, Events};
use crate::slim::{self, CachedPod};
use expectations::Expectations;

/// What every reconcile shares.
pub(crate) struct Context {
    client: Client,
    pods: Store<CachedPod>,
    expectations: Arc<Expectations>,
    events: Events,
    backoff: Backoff,
}

/// Runs the ReplicaSet controller until `shutdown` fires. Never panics; logs and retries on errors.
pub async fn run(client: Client, shutdown: CancellationToken) -> anyhow::Result<()> {
    let expectations = Arc::new(Expectations::default());
    let (pods, writer) = reflector::store::<CachedPod>();
    let (relisted, relists) = mpsc::unbounded::<()>();
    let observer = Arc::clone(&expectations);
    let pod_events = reflector::reflector(
        writer,
        watcher(Api::<CachedPod>::all(client.clone()), watcher::Config::default()).default_backoff(),
    )
    .inspect(move |event| {
        if let Ok(event) = event {
            observer.observe(event);
            if matches!(event, watcher::Event::InitDone) {
                // A relist may have dropped pods without delete events: look at every ReplicaSet again.
                let _ = relisted.unbounded_send(());
            }
        }
    })
    .touched_objects();
    let (sets, sets_writer) = reflector::store::<ReplicaSet>();
    let rs_watch = watcher(Api::<ReplicaSet>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .modify(slim::managed_fields);
    let controller =
        Controller::for_stream(reflector::reflector(sets_writer, rs_watch).applied_objects(), sets.clone());
    let ctx = Arc::new(Context {
        client: client.clone(),
        pods,
        expectations,
        events: Events::new(client, "replicaset-controller"),
        backoff: Backoff::default(),
    });
    controller
        .watches_stream(pod_events, move |pod| owners_of(&sets, &pod))
        .reconcile_all_on(relists)
        .graceful_shutdown_on(shutdown.cancelled_owned())
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "replicaset controller event");
            }
        })
        .await;
    Ok(())
}

/// The ReplicaSets a pod event concerns: its controller, or for an orphan every ReplicaSet selecting it.
fn owners_of(sets: &Store<ReplicaSet>, pod: &CachedPod) -> Vec<ObjectRef<ReplicaSet>> {
    let ns = pod.namespace().unwrap_or_default();
    if let Some(owner) = controller_of(pod.meta()) {
        if owner.kind == "ReplicaSet" && owner.api_version.starts_with("apps/") {
            return vec![ObjectRef::new(&owner.name).within(&ns)];
        }
        return Vec::new();
    }
    if pod.meta().deletion_timestamp.is_some() {
        return Vec::new();
    }
    let labels = pod.labels();
    sets.state()
        .iter()
        .filter(|rs| rs.namespace().as_deref() == Some(ns.as_str()))
        .filter(|rs| matches(rs.spec.as_ref().map(|s| &s.selector), Some(&labels)))
        .map(|rs| ObjectRef::from_obj(rs.as_ref()))
        .collect()
}

fn error_policy(rs: Arc<ReplicaSet>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = format!("{}/{}", rs.namespace().unwrap_or_default(), rs.name_any());
    let delay = ctx.backoff.failed(&key);
    tracing::warn!(replicaset = %key, %error, retry_in = ?delay, "syncing replicaset failed");
    Action::requeue(delay)
}

#[tracing::instrument(skip_all, fields(replicaset = %format!("{}/{}", rs.namespace().unwrap_or_default(), rs.name_any())))]
async fn reconcile(rs: Arc<ReplicaSet>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.pods.wait_until_ready().await.map_err(|_| Error::CacheGone)?;
    let ns = rs.namespace().ok_or(Error::Unnamed("ReplicaSet"))?;
    let key = format!("{ns}/{}", rs.name_any());
    let needs_sync = ctx.expectations.satisfied(&key);
    let candidates: Vec<Arc<Pod>> = ctx
        .pods
        .state()
        .into_iter()
        .filter(|p| p.namespace().as_deref() == Some(ns.as_str()))
        .map(|p| Arc::new(p.to_pod()))
        .filter(|p| is_active(p))
        .collect();
    let pods = claim_pods(&ctx, &rs, &ns, candidates).await?;

    let mut failure = None;
    if needs_sync && rs.metadata.deletion_timestamp.is_none() {
        let replicas = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let plan = manage::plan(replicas, &pods, Timestamp::now());
        if let Err(e) = manage::execute(&ctx, &rs, &key, plan).await {
            failure = Some(e);
        }
    }
    let now = Timestamp::now();
    let message = failure.as_ref().map(ToString::to_string);
    let new_status = status::calculate(&rs, &pods, message.as_deref(), now);
    if status::changed(rs.status.as_ref(), &new_status) {
        let api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ns);
        match api.patch_status(&rs.name_any(), &PatchParams::default(), &Patch::Merge(status::patch(&new_status))).await
        {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {
                ctx.expectations.forget(&key);
                return Ok(Action::await_change());
            }
            Err(e) => return Err(Error::Api(e)),
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    ctx.backoff.succeeded(&key);
    // Pods that are Ready but not yet for minReadySeconds become available without an event: look again then.
    let min_ready = rs.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0);
    let next = pods.iter().filter_map(|p| until_available(p, min_ready, now)).min();
    Ok(next.map_or_else(Action::await_change, |d| Action::requeue(d + Duration::from_millis(50))))
}

/// Upstream's `claimPods`: the active pods the ReplicaSet owns after adopting and releasing.
async fn claim_pods(ctx: &Context, rs: &ReplicaSet, ns: &str, pods: Vec<Arc<Pod>>) -> Result<Vec<Arc<Pod>>, Error> {
    let uid = rs.metadata.uid.clone().unwrap_or_default();
    let deleting = rs.metadata.deletion_timestamp.is_some();
    let selector = rs.spec.as_ref().map(|s| &s.selector);
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let mut owned = Vec::new();
    let mut rechecked = false;
    let mut first_error = None;
    for pod in pods {
        let selected = matches(selector, pod.metadata.labels.as_ref());
        let patch = match decide(&uid, deleting, &pod.metadata, selected) {
            Claim::Keep => {
                owned.push(pod);
                continue;
            }
            Claim::Ignore => continue,
            Claim::Adopt => {
                if !rechecked {
                    recheck_owner(ctx, rs, ns).await?;
                    rechecked = true;
                }
                adopt_patch(&pod.metadata, controller_ref("apps/v1", "ReplicaSet", &rs.metadata))
            }
            Claim::Release => release_patch(&pod.metadata, &uid),
        };
        let adopting = selected;
        match api.patch(&pod.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await {
            Ok(updated) if adopting => owned.push(Arc::new(updated)),
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => {
                first_error.get_or_insert(Error::Api(e));
            }
        }
    }
    first_error.map_or(Ok(owned), Err)
}

/// Upstream's `RecheckDeletionTimestamp`: before adopting, the ReplicaSet must still exist with the same UID
/// and not be being deleted, as read from the API rather than the cache.
async fn recheck_owner(ctx: &Context, rs: &ReplicaSet, ns: &str) -> Result<(), Error> {
    let api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), ns);
    let fresh = api.get(&rs.name_any()).await?;
    if fresh.metadata.uid != rs.metadata.uid {
        return Err(Error::Precondition(format!("original {ns}/{} is gone", rs.name_any())));
    }
    if fresh.metadata.deletion_timestamp.is_some() {
        return Err(Error::Precondition(format!("{ns}/{} has just been deleted", rs.name_any())));
    }
    Ok(())
}
