//! The Deployment controller (upstream's `pkg/controller/deployment`): rolls a Deployment's pod template
//! out through ReplicaSets named `<deployment>-<pod-template-hash>`. A reconcile claims ReplicaSets (adopts
//! orphans the selector matches, releases those it no longer matches), then, as upstream's `syncDeployment`:
//! status only while deleting; scaling only while paused or when `spec.replicas` changed; otherwise a
//! RollingUpdate ([`rolling`]) or Recreate ([`recreate`]) step. Every step ends by writing the status and
//! conditions ([`progress`]) and, once a rollout is complete, deleting old ReplicaSets beyond
//! `revisionHistoryLimit`.

mod progress;
mod recreate;
mod rolling;
mod sync;
mod util;

use std::sync::Arc;

use futures::StreamExt;
use futures::channel::mpsc;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::labels::matches;
use crate::ownership::controller_of;
use crate::runtime::{Backoff, Events};
use crate::slim;

/// What every reconcile shares.
pub(crate) struct Context {
    client: Client,
    sets: Store<ReplicaSet>,
    events: Events,
    backoff: Backoff,
}

/// Runs the Deployment controller until `shutdown` fires. Never panics; logs and retries on errors.
pub async fn run(client: Client, shutdown: CancellationToken) -> anyhow::Result<()> {
    let (sets, writer) = reflector::store::<ReplicaSet>();
    let (relisted, relists) = mpsc::unbounded::<()>();
    let rs_events = reflector::reflector(
        writer,
        watcher(Api::<ReplicaSet>::all(client.clone()), watcher::Config::default())
            .default_backoff()
            .modify(slim::managed_fields),
    )
    .inspect(move |event| {
        if matches!(event, Ok(watcher::Event::InitDone)) {
            // ReplicaSets deleted while the watch was down give no event: look at every Deployment again.
            let _ = relisted.unbounded_send(());
        }
    })
    .touched_objects();
    // Pods only matter to Recreate, which waits for the old pods to be gone; their metadata is enough.
    let pod_events = watcher(Api::<PartialObjectMeta<Pod>>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .touched_objects();
    let (deployments, deployments_writer) = reflector::store::<Deployment>();
    let deployment_watch = watcher(Api::<Deployment>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .modify(slim::managed_fields);
    let controller = Controller::for_stream(
        reflector::reflector(deployments_writer, deployment_watch).applied_objects(),
        deployments.clone(),
    );
    let for_sets = deployments.clone();
    let (for_pods, sets_for_pods) = (deployments.clone(), sets.clone());
    let ctx = Arc::new(Context {
        client: client.clone(),
        sets,
        events: Events::new(client, "deployment-controller"),
        backoff: Backoff::default(),
    });
    controller
        .watches_stream(rs_events, move |rs| deployments_of(&for_sets, &rs))
        .watches_stream(pod_events, move |pod| recreating_deployment_of(&for_pods, &sets_for_pods, &pod))
        .reconcile_all_on(relists)
        .graceful_shutdown_on(shutdown.cancelled_owned())
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "deployment controller event");
            }
        })
        .await;
    Ok(())
}

/// The Deployments a ReplicaSet event concerns: its controller, or for an orphan every Deployment selecting it.
fn deployments_of(deployments: &Store<Deployment>, rs: &ReplicaSet) -> Vec<ObjectRef<Deployment>> {
    let ns = rs.namespace().unwrap_or_default();
    if let Some(owner) = controller_of(&rs.metadata) {
        if owner.kind == "Deployment" && owner.api_version.starts_with("apps/") {
            return vec![ObjectRef::new(&owner.name).within(&ns)];
        }
        return Vec::new();
    }
    deployments
        .state()
        .iter()
        .filter(|d| d.namespace().as_deref() == Some(ns.as_str()))
        .filter(|d| matches(d.spec.as_ref().map(|s| &s.selector), rs.metadata.labels.as_ref()))
        .map(|d| ObjectRef::from_obj(d.as_ref()))
        .collect()
}

/// The Recreate Deployment whose ReplicaSet controls a pod (upstream only requeues Recreate Deployments on
/// pod events, to start the new ReplicaSet once the old pods are gone).
fn recreating_deployment_of(
    deployments: &Store<Deployment>,
    sets: &Store<ReplicaSet>,
    pod: &PartialObjectMeta<Pod>,
) -> Option<ObjectRef<Deployment>> {
    let ns = pod.namespace()?;
    let rs_ref = controller_of(&pod.metadata).filter(|r| r.kind == "ReplicaSet")?;
    let rs = sets.get(&ObjectRef::new(&rs_ref.name).within(&ns))?;
    let d_ref = controller_of(&rs.metadata).filter(|r| r.kind == "Deployment")?;
    let key = ObjectRef::new(&d_ref.name).within(&ns);
    deployments.get(&key).filter(|d| util::is_recreate(d)).map(|_| key)
}

fn error_policy(d: Arc<Deployment>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = format!("{}/{}", d.namespace().unwrap_or_default(), d.name_any());
    let delay = ctx.backoff.failed(&key);
    tracing::warn!(deployment = %key, %error, retry_in = ?delay, "syncing deployment failed");
    Action::requeue(delay)
}

#[tracing::instrument(skip_all, fields(deployment = %format!("{}/{}", d.namespace().unwrap_or_default(), d.name_any())))]
async fn reconcile(d: Arc<Deployment>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.sets.wait_until_ready().await.map_err(|_| Error::CacheGone)?;
    let key = format!("{}/{}", d.namespace().unwrap_or_default(), d.name_any());
    let action = sync::Sync::new(&ctx, d.as_ref().clone())?.run().await?;
    ctx.backoff.succeeded(&key);
    Ok(action)
}
