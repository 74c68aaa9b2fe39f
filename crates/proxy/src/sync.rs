//! The proxy's loop: reflectors cache every Service and EndpointSlice; once both have synced, every change
//! (coalesced over a few milliseconds) rebuilds the desired ruleset and applies only its difference from the
//! mirror of what was last applied. A failed apply keeps the mirror (so the conntrack cleanup still knows what the
//! kernel held) but forces the retry to be a full sync. After an apply: stale UDP flows are deleted, the health
//! check servers follow the local endpoint counts, and the endpoint changes' trigger times become network
//! programming latencies. The rules stay in the kernel when the loop stops, so traffic keeps flowing while the
//! proxy restarts; the first sync after a start replaces whatever table is there.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::runtime::reflector::{self, Store, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::health::HealthServers;
use crate::model::{ServicePort, service_ports};
use crate::ruleset::{Ruleset, RulesetConfig};
use crate::{conntrack, metrics, nft};

/// Changes arriving this close together are applied in one transaction.
const COALESCE: Duration = Duration::from_millis(5);
/// How long after a failed apply the next attempt comes.
const RETRY: Duration = Duration::from_secs(1);
/// The label that ties an EndpointSlice to its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Runs the proxy for the node named `node` until `stop` fires.
pub async fn run(client: kube::Client, config: RulesetConfig, node: String, stop: CancellationToken) {
    let started = Timestamp::now();
    let changed = Arc::new(Notify::new());
    // Trigger times of the endpoint changes not yet programmed (older than this start: not ours to measure).
    let triggers: Arc<Mutex<Vec<Timestamp>>> = Arc::default();
    let pending = triggers.clone();
    let services = cache::<Service>(Api::all(client.clone()), changed.clone(), stop.clone(), |_| {});
    let slices = cache::<EndpointSlice>(Api::all(client), changed.clone(), stop.clone(), move |slice| {
        if let Some(at) = metrics::trigger_time(slice).filter(|at| *at >= started) {
            pending.lock().unwrap_or_else(PoisonError::into_inner).push(at);
        }
    });
    tokio::select! {
        _ = stop.cancelled() => return,
        ready = async { tokio::try_join!(services.wait_until_ready(), slices.wait_until_ready()) } => {
            if ready.is_err() {
                return;
            }
        }
    }
    let metrics = metrics::metrics();
    let mut health = HealthServers::default();
    // The mirror: what the kernel's table held after the last successful sync. `full` forces the next sync to
    // replace the whole table: at start (reconciling whatever an earlier run left) and after a failure.
    let mut applied: Option<Ruleset> = None;
    let mut full = true;
    loop {
        let batch: Vec<Timestamp> = std::mem::take(&mut *triggers.lock().unwrap_or_else(PoisonError::into_inner));
        let desired = Ruleset::new(&config, desired(&services, &slices, &node), applied.as_ref());
        let script = match &applied {
            Some(applied) if !full => desired.update_script(applied),
            _ => Some(desired.full_script()),
        };
        let mut healthy = true;
        if script.is_none() {
            // The kernel already holds what these changes ask for: programmed as of now.
            metrics.programmed(&batch);
        }
        if let Some(script) = script {
            let began = Instant::now();
            match tokio::task::spawn_blocking(move || nft::apply(&script)).await {
                Ok(Ok(())) => {
                    let counts = desired.counts();
                    metrics.synced(began.elapsed(), full, counts);
                    metrics.programmed(&batch);
                    tracing::debug!(elapsed = ?began.elapsed(), full, ?counts, "service rules applied");
                    if let Some(before) = &applied {
                        let stale = conntrack::stale_udp_flows(before, &desired);
                        if !stale.is_empty() {
                            let _ = tokio::task::spawn_blocking(move || conntrack::delete(&stale)).await;
                        }
                    }
                    applied = Some(desired);
                    full = false;
                }
                outcome => {
                    tracing::warn!(?outcome, "applying the service rules failed; retrying with a full sync");
                    metrics.sync_failures.inc();
                    triggers.lock().unwrap_or_else(PoisonError::into_inner).extend(batch);
                    full = true;
                    healthy = false;
                }
            }
        }
        if let Some(applied) = &applied {
            health.update(applied, healthy).await;
        }
        let wait = if healthy { None } else { Some(RETRY) };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = changed.notified() => tokio::time::sleep(COALESCE).await,
            _ = tokio::time::sleep(wait.unwrap_or(Duration::MAX)), if wait.is_some() => {}
        }
    }
}

/// A reflector for `K` whose every change wakes `changed`, after `seen` has looked at the changed object.
fn cache<K>(api: Api<K>, changed: Arc<Notify>, stop: CancellationToken, seen: impl Fn(&K) + Send + 'static) -> Store<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    let (store, writer) = reflector::store::<K>();
    let stream = reflector(writer, watcher(api, watcher::Config::default())).default_backoff().touched_objects();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                item = stream.next() => match item {
                    Some(Ok(object)) => {
                        seen(&object);
                        changed.notify_one();
                    }
                    Some(Err(e)) => tracing::debug!(error = %e, "a proxy watch failed; it restarts"),
                    None => return,
                },
            }
        }
    });
    store
}

/// Every routed service port, from the caches.
fn desired(services: &Store<Service>, slices: &Store<EndpointSlice>, node: &str) -> Vec<ServicePort> {
    // The cached objects themselves (shared, not copied): a sync at 10,000 Services must not clone 10,000 slices.
    let mut by_service: HashMap<(String, String), Vec<Arc<EndpointSlice>>> = HashMap::new();
    for slice in slices.state() {
        let namespace = slice.metadata.namespace.clone().unwrap_or_default();
        if let Some(name) = slice.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL)) {
            by_service.entry((namespace, name.clone())).or_default().push(slice.clone());
        }
    }
    let mut ports: Vec<ServicePort> = services
        .state()
        .iter()
        .flat_map(|svc| {
            let key =
                (svc.metadata.namespace.clone().unwrap_or_default(), svc.metadata.name.clone().unwrap_or_default());
            service_ports(svc, by_service.get(&key).map(Vec::as_slice).unwrap_or_default(), node)
        })
        .collect();
    ports.sort_by_cached_key(ServicePort::id);
    ports
}
