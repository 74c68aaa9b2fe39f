//! The garbage collector, as upstream's `pkg/controller/garbagecollector`: one watcher per collectable resource
//! feeds the uid graph ([`Graph`]); the graph's changes queue work; workers (started once every watcher has listed)
//! look the object and its owners up live, [`decide`](crate::plan::decide) and then write.

mod attempt;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use kube::Client;
use kube::api::{Api, DynamicObject};
use kube::runtime::WatchStreamExt;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::watcher::{self, Event};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::graph::{Graph, Identity, Node, Work};
use crate::queue::WorkQueue;
use crate::resources::Catalog;

/// Concurrent workers, as upstream's `--concurrent-gc-syncs` default.
const WORKERS: usize = 20;
/// Workers start anyway if some watcher has not listed by then (a resource that cannot be watched must not stop
/// collection of the others).
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);
const REPORTER: &str = "garbage-collector-controller";

/// Runs the garbage collector until `shutdown` fires. Never panics; logs and retries on errors.
pub async fn run(client: Client, shutdown: CancellationToken) -> anyhow::Result<()> {
    let Some(catalog) = crate::discover_until_ok(&client, &shutdown).await else { return Ok(()) };
    let collector = Arc::new(Collector::new(client, catalog));
    let mut tasks = JoinSet::new();
    let watched: Vec<usize> = collector.catalog.collectable().map(|(i, _)| i).collect();
    let (synced_tx, mut synced_rx) = mpsc::channel(watched.len().max(1));
    for index in watched.iter().copied() {
        tasks.spawn(Arc::clone(&collector).watch(index, synced_tx.clone()));
    }
    drop(synced_tx);
    let all_synced = async {
        for _ in 0..watched.len() {
            if synced_rx.recv().await.is_none() {
                break;
            }
        }
    };
    tokio::select! {
        () = shutdown.cancelled() => return Ok(()),
        r = tokio::time::timeout(SYNC_TIMEOUT, all_synced) => {
            if r.is_err() {
                tracing::warn!("not every resource listed in time; collecting garbage anyway");
            }
        }
    }
    tracing::info!(resources = watched.len(), objects = collector.graph().len(), "garbage collector synced");
    for _ in 0..WORKERS {
        tasks.spawn(Arc::clone(&collector).work());
    }
    shutdown.cancelled().await;
    collector.queue.shut_down();
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    Ok(())
}

pub(crate) struct Collector {
    client: Client,
    catalog: Catalog,
    graph: Mutex<Graph>,
    queue: Arc<WorkQueue<Work>>,
    recorder: Recorder,
    /// Owner uids known not to exist (uids are never reused, so this never goes stale).
    absent: Mutex<HashSet<String>>,
}

impl Collector {
    fn new(client: Client, catalog: Catalog) -> Self {
        let reporter = Reporter { controller: REPORTER.into(), instance: None };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            catalog,
            graph: Mutex::new(Graph::default()),
            queue: WorkQueue::new(),
            absent: Mutex::new(HashSet::new()),
        }
    }

    fn graph(&self) -> MutexGuard<'_, Graph> {
        self.graph.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn enqueue(&self, work: Vec<Work>) {
        for w in work {
            self.queue.add(w);
        }
    }

    /// Feeds one resource's watch into the graph; reports once after its first complete list.
    async fn watch(self: Arc<Self>, index: usize, synced: mpsc::Sender<usize>) {
        let Some(resource) = self.catalog.get(index) else { return };
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &resource.api);
        let gr = resource.group_resource();
        let mut events = watcher::watcher(api, watcher::Config::default()).default_backoff().boxed();
        let mut listed = HashSet::new();
        let mut reported = false;
        while let Some(event) = events.next().await {
            match event {
                Ok(Event::Init) => listed.clear(),
                Ok(Event::InitApply(obj)) => {
                    if let Some(uid) = &obj.metadata.uid {
                        listed.insert(uid.clone());
                    }
                    self.observe(index, &obj);
                }
                Ok(Event::InitDone) => {
                    let work = self.graph().forget_unlisted(index, &listed);
                    self.enqueue(work);
                    listed.clear();
                    if !reported {
                        reported = true;
                        let _ = synced.send(index).await;
                    }
                }
                Ok(Event::Apply(obj)) => self.observe(index, &obj),
                Ok(Event::Delete(obj)) => {
                    if let Some(uid) = &obj.metadata.uid {
                        let work = self.graph().forget(uid);
                        self.enqueue(work);
                    }
                }
                Err(e) => tracing::warn!(resource = %gr, error = %e, "watch failed; retrying"),
            }
        }
    }

    fn observe(&self, index: usize, obj: &DynamicObject) {
        if let Some(node) = Node::from_object(index, obj) {
            let work = self.graph().observe(node);
            self.enqueue(work);
        }
    }

    async fn work(self: Arc<Self>) {
        while let Some(item) = self.queue.next().await {
            let span = tracing::debug_span!("gc", ?item);
            let result = match &item {
                Work::Delete(uid) => self.attempt_to_delete(uid).await,
                Work::Orphan(uid) => self.orphan_dependents(uid).await,
            };
            match result {
                Ok(()) => self.queue.forget(&item),
                Err(e) => {
                    span.in_scope(|| tracing::warn!(error = %e, "garbage collection failed; retrying"));
                    self.queue.retry(item.clone());
                }
            }
            self.queue.done(&item);
        }
    }

    fn api(&self, id: &Identity) -> Option<Api<DynamicObject>> {
        let r = self.catalog.get(id.resource)?;
        Some(match &id.namespace {
            Some(ns) if r.namespaced => Api::namespaced_with(self.client.clone(), ns, &r.api),
            _ => Api::all_with(self.client.clone(), &r.api),
        })
    }

    /// A Warning event about `id` (best effort: a failure to record is logged).
    async fn warn(&self, id: &Identity, reason: &str, note: String) {
        let Some(r) = self.catalog.get(id.resource) else { return };
        let reference = k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some(r.api.api_version.clone()),
            kind: Some(r.api.kind.clone()),
            name: Some(id.name.clone()),
            namespace: id.namespace.clone(),
            uid: Some(id.uid.clone()),
            ..Default::default()
        };
        tracing::warn!(name = %id.name, namespace = ?id.namespace, reason, "{note}");
        let event = KubeEvent {
            type_: EventType::Warning,
            reason: reason.into(),
            note: Some(note),
            action: "GarbageCollect".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &reference).await {
            tracing::debug!(error = %e, "recording an event failed");
        }
    }
}
