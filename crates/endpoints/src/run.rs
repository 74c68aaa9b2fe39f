//! Wiring: the four watchers that feed the cache, the wait for their first complete list, and the workers of
//! each controller with their retry policy (backoff, a warning log line, a Warning event).

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Endpoints, ObjectReference, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::cache::{Cache, Change, Queues};
use crate::endpoints::EndpointsController;
use crate::mirroring::{MAX_ENDPOINTS_PER_SUBSET, MirroringController};
use crate::pod::PodInfo;
use crate::queue::WorkQueue;
use crate::slices::{MAX_ENDPOINTS_PER_SLICE, SliceController};
use crate::{Error, ObjectKey};

/// Which controllers to run and how.
#[derive(Debug, Clone)]
pub struct Options {
    /// The legacy Endpoints controller.
    pub endpoints: bool,
    /// The EndpointSlice controller.
    pub endpoint_slices: bool,
    /// The EndpointSlice mirroring controller.
    pub mirroring: bool,
    /// Concurrent syncs per controller (upstream's `--concurrent-*-syncs`, default 5).
    pub workers: usize,
    /// Upstream's `--max-endpoints-per-slice` (100).
    pub max_endpoints_per_slice: usize,
    /// Upstream's `--mirroring-max-endpoints-per-subset` (1000).
    pub mirroring_max_endpoints_per_subset: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            endpoints: true,
            endpoint_slices: true,
            mirroring: true,
            workers: 5,
            max_endpoints_per_slice: MAX_ENDPOINTS_PER_SLICE,
            mirroring_max_endpoints_per_subset: MAX_ENDPOINTS_PER_SUBSET,
        }
    }
}

/// Runs the Endpoints, EndpointSlice and mirroring controllers over one cache until `shutdown` fires.
pub async fn run(client: Client, shutdown: CancellationToken) -> anyhow::Result<()> {
    run_with(client, shutdown, Options::default()).await
}

/// Runs only the legacy Endpoints controller.
pub async fn run_endpoints(client: Client, shutdown: CancellationToken) -> anyhow::Result<()> {
    let options = Options { endpoint_slices: false, mirroring: false, ..Options::default() };
    run_with(client, shutdown, options).await
}

/// Runs only the EndpointSlice controller.
pub async fn run_endpoint_slices(client: Client, shutdown: CancellationToken) -> anyhow::Result<()> {
    let options = Options { endpoints: false, mirroring: false, ..Options::default() };
    run_with(client, shutdown, options).await
}

/// Runs only the EndpointSlice mirroring controller.
pub async fn run_mirroring(client: Client, shutdown: CancellationToken) -> anyhow::Result<()> {
    let options = Options { endpoints: false, endpoint_slices: false, ..Options::default() };
    run_with(client, shutdown, options).await
}

/// Runs the controllers `options` selects until `shutdown` fires. Never panics; API errors are logged and retried.
pub async fn run_with(client: Client, shutdown: CancellationToken, options: Options) -> anyhow::Result<()> {
    let queues = Queues {
        endpoints: options.endpoints.then(WorkQueue::default),
        slices: options.endpoint_slices.then(WorkQueue::default),
        mirroring: options.mirroring.then(WorkQueue::default),
    };
    let cache = Arc::new(Cache::new(queues.clone()));
    let mut tasks = JoinSet::new();
    let (synced_tx, mut synced_rx) = mpsc::channel::<&'static str>(4);

    let c = cache.clone();
    let convert_pod = |pod: Pod| PodInfo::from_pod(&pod);
    tasks.spawn(watch(Api::<Pod>::all(client.clone()), convert_pod, move |ch| c.pods_changed(ch), synced_tx.clone()));
    let c = cache.clone();
    tasks.spawn(watch(Api::<Service>::all(client.clone()), arc, move |ch| c.services_changed(ch), synced_tx.clone()));
    let c = cache.clone();
    tasks.spawn(watch(
        Api::<Endpoints>::all(client.clone()),
        arc,
        move |ch| c.endpoints_changed(ch),
        synced_tx.clone(),
    ));
    let c = cache.clone();
    tasks.spawn(watch(Api::<EndpointSlice>::all(client.clone()), arc, move |ch| c.slices_changed(ch), synced_tx));

    let mut synced = 0;
    while synced < 4 {
        tokio::select! {
            _ = shutdown.cancelled() => {
                tasks.shutdown().await;
                return Ok(());
            }
            kind = synced_rx.recv() => match kind {
                Some(kind) => {
                    tracing::debug!(kind, "cache synced");
                    synced += 1;
                }
                None => anyhow::bail!("a watcher stopped before its cache synced"),
            }
        }
    }
    tracing::info!("endpoints controllers' caches synced; starting workers");

    let reporter = Reporter { controller: "endpoint-controllers".into(), instance: None };
    let recorder = Recorder::new(client.clone(), reporter);
    let workers = options.workers.max(1);
    if let Some(queue) = queues.endpoints {
        let controller = Arc::new(EndpointsController::new(client.clone(), cache.clone()));
        let failure = Failure { controller: "endpoint", reason: "FailedToUpdateEndpoint", kind: "Service" };
        for _ in 0..workers {
            let controller = controller.clone();
            let sync = move |key: ObjectKey| {
                let controller = controller.clone();
                async move { controller.sync(&key).await }
            };
            tasks.spawn(work(failure, queue.clone(), cache.clone(), recorder.clone(), shutdown.clone(), sync));
        }
    }
    if let Some(queue) = queues.slices {
        let controller = Arc::new(SliceController::new(client.clone(), cache.clone(), options.max_endpoints_per_slice));
        let failure = Failure { controller: "endpointslice", reason: "FailedToUpdateEndpointSlices", kind: "Service" };
        for _ in 0..workers {
            let controller = controller.clone();
            let sync = move |key: ObjectKey| {
                let controller = controller.clone();
                async move { controller.sync(&key).await }
            };
            tasks.spawn(work(failure, queue.clone(), cache.clone(), recorder.clone(), shutdown.clone(), sync));
        }
    }
    if let Some(queue) = queues.mirroring {
        let max = options.mirroring_max_endpoints_per_subset;
        let controller = Arc::new(MirroringController::new(client.clone(), cache.clone(), max));
        let failure =
            Failure { controller: "endpointslicemirroring", reason: "FailedToUpdateEndpointSlices", kind: "Endpoints" };
        for _ in 0..workers {
            let controller = controller.clone();
            let sync = move |key: ObjectKey| {
                let controller = controller.clone();
                async move { controller.sync(&key).await }
            };
            tasks.spawn(work(failure, queue.clone(), cache.clone(), recorder.clone(), shutdown.clone(), sync));
        }
    }

    shutdown.cancelled().await;
    tasks.shutdown().await;
    Ok(())
}

/// What the cache keeps of a Service, Endpoints or EndpointSlice: all but `metadata.managedFields`, which no
/// controller reads and which is the heaviest part of an object in memory (upstream informers strip it too).
fn arc<K: Resource>(mut object: K) -> Option<Arc<K>> {
    object.meta_mut().managed_fields = None;
    Some(Arc::new(object))
}

/// Drives one watcher into the cache: relists are buffered and applied as one `Replace`; the first one reports
/// the cache synced. The kube-rs watcher re-lists after a 410 and backs off on errors, so this never ends.
async fn watch<K, T>(
    api: Api<K>,
    convert: impl Fn(K) -> Option<T>,
    apply: impl Fn(Change<T>),
    synced: mpsc::Sender<&'static str>,
) where
    K: Resource + Clone + serde::de::DeserializeOwned + Debug + Send + 'static,
    K::DynamicType: Default,
{
    let kind = std::any::type_name::<K>().rsplit("::").next().unwrap_or("object");
    let mut stream = std::pin::pin!(watcher(api, watcher::Config::default()).default_backoff());
    let mut buffer: Option<Vec<T>> = None;
    let mut first = true;
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::Init) => buffer = Some(Vec::new()),
            Ok(watcher::Event::InitApply(object)) => {
                if let Some(item) = convert(object) {
                    buffer.get_or_insert_with(Vec::new).push(item);
                }
            }
            Ok(watcher::Event::InitDone) => {
                apply(Change::Replace(buffer.take().unwrap_or_default()));
                if first {
                    first = false;
                    let _ = synced.send(kind).await;
                }
            }
            Ok(watcher::Event::Apply(object)) => {
                if let Some(item) = convert(object) {
                    apply(Change::Apply(item));
                }
            }
            Ok(watcher::Event::Delete(object)) => {
                if let Some(item) = convert(object) {
                    apply(Change::Delete(item));
                }
            }
            Err(error) => tracing::warn!(kind, %error, "watch failed; retrying"),
        }
    }
}

/// How a controller reports a failed sync.
#[derive(Clone, Copy)]
struct Failure {
    controller: &'static str,
    reason: &'static str,
    /// The kind of object the key names, which the Warning event is about.
    kind: &'static str,
}

/// One worker: takes keys, syncs them, and on failure requeues with backoff, logs and records an event.
async fn work<F, Fut>(
    failure: Failure,
    queue: WorkQueue,
    cache: Arc<Cache>,
    recorder: Recorder,
    shutdown: CancellationToken,
    sync: F,
) where
    F: Fn(ObjectKey) -> Fut,
    Fut: Future<Output = Result<(), Error>>,
{
    loop {
        let key = tokio::select! {
            _ = shutdown.cancelled() => return,
            key = queue.get() => key,
        };
        let span = tracing::debug_span!("sync", controller = failure.controller, key = %key);
        match sync(key.clone()).instrument(span).await {
            Ok(()) => queue.forget(&key),
            Err(error) => {
                let delay = queue.add_rate_limited(key.clone());
                let cause = std::error::Error::source(&error).map(ToString::to_string).unwrap_or_default();
                tracing::warn!(
                    controller = failure.controller, key = %key, %error, cause, retry_in = ?delay, "sync failed"
                );
                let uid = match failure.kind {
                    "Service" => cache.service(&key).and_then(|s| s.metadata.uid.clone()),
                    _ => cache.endpoints(&key).and_then(|e| e.metadata.uid.clone()),
                };
                let reference = ObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some(failure.kind.into()),
                    namespace: Some(key.namespace.clone()),
                    name: Some(key.name.clone()),
                    uid,
                    ..Default::default()
                };
                let event = Event {
                    type_: EventType::Warning,
                    reason: failure.reason.into(),
                    note: Some(format!("{error}: {cause}")),
                    action: "Sync".into(),
                    secondary: None,
                };
                let recorder = recorder.clone();
                tokio::spawn(async move {
                    if let Err(error) = recorder.publish(&event, &reference).await {
                        tracing::debug!(%error, "could not record an event");
                    }
                });
            }
        }
        queue.done(&key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_objects_lose_only_managed_fields() {
        let service: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "ns", "labels": {"app": "web"}, "annotations": {"a": "b"},
                "managedFields": [{"manager": "kubectl", "operation": "Update", "fieldsV1": {"f:spec": {}}}]},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]},
        }))
        .expect("service");
        let mut expected = service.clone();
        expected.metadata.managed_fields = None;
        let cached = arc(service).expect("kept");
        assert_eq!(*cached, expected);
        assert!(cached.metadata.annotations.is_some() && cached.spec.is_some());
    }
}
