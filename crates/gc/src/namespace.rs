//! The namespace controller, as upstream's `pkg/controller/namespace`: a namespace being deleted (the API server
//! set its `deletionTimestamp` and phase `Terminating`, and it still holds the `kubernetes` finalizer) is emptied
//! of every namespaced resource the server serves; the status conditions say what remains; once nothing does,
//! `kubernetes` leaves `spec.finalizers` through the `finalize` subresource and the API server removes it.

mod conditions;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::discovery::verbs;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Client, Resource as _};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub use conditions::{Content, conditions};

use crate::Error;
use crate::resources::{Catalog, Resource};

/// The finalizer this controller owns in `spec.finalizers`.
pub const KUBERNETES: &str = "kubernetes";
/// How soon a namespace with content left is looked at again (upstream estimates from pods' grace periods and
/// retries after that; content here mostly goes at once, so look again soon).
const RECHECK: Duration = Duration::from_millis(500);
const REPORTER: &str = "namespace-controller";

struct Ctx {
    client: Client,
    recorder: Recorder,
}

/// Runs the namespace controller until `shutdown` fires. Never panics; logs and retries on errors.
pub async fn run(client: Client, shutdown: CancellationToken) -> anyhow::Result<()> {
    let reporter = Reporter { controller: REPORTER.into(), instance: None };
    let ctx = Arc::new(Ctx { recorder: Recorder::new(client.clone(), reporter), client: client.clone() });
    let namespaces: Api<Namespace> = Api::all(client);
    Controller::new(namespaces, watcher::Config::default())
        .graceful_shutdown_on(shutdown.cancelled_owned())
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %crate::report(&e), "namespace reconcile failed");
            }
        })
        .await;
    Ok(())
}

fn error_policy(ns: Arc<Namespace>, error: &Error, _ctx: Arc<Ctx>) -> Action {
    tracing::warn!(namespace = ?ns.metadata.name, error = %crate::report(error), "namespace deletion failed; retrying");
    Action::requeue(Duration::from_secs(2))
}

fn holds_kubernetes(ns: &Namespace) -> bool {
    ns.spec.as_ref().and_then(|s| s.finalizers.as_ref()).is_some_and(|f| f.iter().any(|x| x == KUBERNETES))
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let Some(name) = ns.metadata.name.clone() else { return Ok(Action::await_change()) };
    if ns.metadata.deletion_timestamp.is_none() || !holds_kubernetes(&ns) {
        return Ok(Action::await_change());
    }
    let span = tracing::info_span!("namespace", namespace = %name);
    empty_and_finalize(ns, ctx, name).instrument(span).await
}

async fn empty_and_finalize(ns: Arc<Namespace>, ctx: Arc<Ctx>, name: String) -> Result<Action, Error> {
    let catalog = match Catalog::discover(&ctx.client).await {
        Ok(c) => c,
        Err(e) => {
            let wanted = conditions(Some(&crate::report(&e)), &Content::default());
            update_conditions(&ctx.client, &ns, wanted).await?;
            return Err(e);
        }
    };
    let content = delete_content(&ctx.client, &catalog, &name).await;
    update_conditions(&ctx.client, &ns, conditions(None, &content)).await?;
    if !content.failures.is_empty() {
        let note = conditions(None, &content)
            .into_iter()
            .find(|c| c.type_ == "NamespaceDeletionContentFailure")
            .and_then(|c| c.message)
            .unwrap_or_default();
        publish(&ctx, &ns, "NamespaceDeletionContentFailure", note).await;
        return Err(Error::ContentRemains { namespace: name });
    }
    if !content.remaining.is_empty() {
        tracing::debug!(remaining = ?content.remaining, "namespace content remains");
        return Ok(Action::requeue(RECHECK));
    }
    finalize(&ctx.client, &ns).await?;
    tracing::info!("namespace emptied and finalized");
    Ok(Action::await_change())
}

/// Deletes everything in the namespace, resource by resource (a collection delete where served, else one by
/// one), and counts what is left afterwards.
pub async fn delete_content(client: &Client, catalog: &Catalog, namespace: &str) -> Content {
    let mut content = Content::default();
    for resource in catalog.namespaced_deletable() {
        let gr = resource.group_resource();
        match delete_resource(client, resource, namespace).await {
            Ok(left) => {
                if !left.is_empty() {
                    content.remaining.insert(gr, left.len());
                }
                for obj in left {
                    for f in obj.metadata.finalizers.unwrap_or_default() {
                        *content.finalizers.entry(f).or_default() += 1;
                    }
                }
            }
            Err(e) => {
                content.failures.insert(gr, crate::report(&e));
            }
        }
    }
    content
}

/// One resource's content: deleted (in the background, as upstream), then listed again; returns what remains.
async fn delete_resource(client: &Client, r: &Resource, namespace: &str) -> Result<Vec<DynamicObject>, Error> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &r.api);
    let list_error = |source| Error::Content { resource: r.group_resource(), source };
    let present = api.list(&ListParams::default()).await.map_err(list_error)?;
    if present.items.is_empty() {
        return Ok(Vec::new());
    }
    let params = DeleteParams::background();
    if r.supports(verbs::DELETE_COLLECTION) {
        api.delete_collection(&params, &ListParams::default()).await.map_err(list_error)?;
    } else {
        for obj in present.items.iter().filter(|o| o.metadata.deletion_timestamp.is_none()) {
            let Some(name) = obj.metadata.name.as_deref() else { continue };
            match api.delete(name, &params).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(list_error(e)),
            }
        }
    }
    Ok(api.list(&ListParams::default()).await.map_err(list_error)?.items)
}

/// Writes the deletion conditions through the status subresource when they changed.
async fn update_conditions(
    client: &Client,
    ns: &Namespace,
    wanted: Vec<k8s_openapi::api::core::v1::NamespaceCondition>,
) -> Result<(), Error> {
    let Some(name) = ns.metadata.name.as_deref() else { return Ok(()) };
    let current = ns.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let Some(merged) = conditions::merge(&current, wanted, now) else { return Ok(()) };
    let api: Api<Namespace> = Api::all(client.clone());
    let patch = json!({"status": {"conditions": merged}});
    match api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(source) => Err(Error::Namespace { action: "update status of", namespace: name.into(), source }),
    }
}

/// `PUT /api/v1/namespaces/{name}/finalize` with `kubernetes` removed from `spec.finalizers`.
async fn finalize(client: &Client, ns: &Namespace) -> Result<(), Error> {
    let Some(name) = ns.metadata.name.as_deref() else { return Ok(()) };
    let api: Api<Namespace> = Api::all(client.clone());
    // The latest copy: the finalize is a full update pinned to its resourceVersion.
    let Some(mut latest) = api.get_opt(name).await.map_err(|source| Error::Namespace {
        action: "read",
        namespace: name.into(),
        source,
    })?
    else {
        return Ok(());
    };
    if latest.metadata.uid != ns.metadata.uid {
        return Ok(());
    }
    if let Some(spec) = latest.spec.as_mut() {
        spec.finalizers = spec.finalizers.take().map(|f| f.into_iter().filter(|x| x != KUBERNETES).collect());
    }
    match api.replace_subresource("finalize", name, &PostParams::default(), &latest).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(source) => Err(Error::Namespace { action: "finalize", namespace: name.into(), source }),
    }
}

async fn publish(ctx: &Ctx, ns: &Namespace, reason: &str, note: String) {
    let event = Event {
        type_: EventType::Warning,
        reason: reason.into(),
        note: Some(note),
        action: "DeleteContent".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &ns.object_ref(&())).await {
        tracing::debug!(error = %e, "recording an event failed");
    }
}
