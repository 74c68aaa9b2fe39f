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
    let mut wanted = Desired::default();
    let mut full = true;
    loop {
        let batch: Vec<Timestamp> = std::mem::take(&mut *triggers.lock().unwrap_or_else(PoisonError::into_inner));
        let desired = Ruleset::new(&config, wanted.compute(&services, &slices, &node), applied.as_ref());
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

/// Every routed service port, from the caches, remembering per Service what it was computed from: a Service
/// whose object and EndpointSlices are the very same cached objects as last time (the reflector replaces an
/// object's `Arc` when it changes) keeps its ports, shared, so a sync at 10,000 Services recomputes only the
/// Services that changed and the ruleset skips comparing the rest.
#[derive(Default)]
struct Desired {
    by_service: HashMap<(String, String), Computed>,
}

struct Computed {
    service: Arc<Service>,
    slices: Vec<Arc<EndpointSlice>>,
    ports: Vec<Arc<ServicePort>>,
}

impl Desired {
    fn compute(
        &mut self,
        services: &Store<Service>,
        slices: &Store<EndpointSlice>,
        node: &str,
    ) -> Vec<Arc<ServicePort>> {
        let mut slices_of: HashMap<(String, String), Vec<Arc<EndpointSlice>>> = HashMap::new();
        for slice in slices.state() {
            let namespace = slice.metadata.namespace.clone().unwrap_or_default();
            if let Some(name) = slice.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL)) {
                slices_of.entry((namespace, name.clone())).or_default().push(slice);
            }
        }
        let mut computed = HashMap::with_capacity(self.by_service.len());
        let mut ports = Vec::new();
        for service in services.state() {
            let key = (
                service.metadata.namespace.clone().unwrap_or_default(),
                service.metadata.name.clone().unwrap_or_default(),
            );
            let mut its_slices = slices_of.remove(&key).unwrap_or_default();
            its_slices.sort_by_key(|s| Arc::as_ptr(s) as usize);
            let same = |c: &Computed| {
                Arc::ptr_eq(&c.service, &service)
                    && c.slices.len() == its_slices.len()
                    && c.slices.iter().zip(&its_slices).all(|(a, b)| Arc::ptr_eq(a, b))
            };
            let entry = match self.by_service.remove(&key) {
                Some(c) if same(&c) => c,
                _ => {
                    let ports = service_ports(&service, &its_slices, node).into_iter().map(Arc::new).collect();
                    Computed { service, slices: its_slices, ports }
                }
            };
            ports.extend(entry.ports.iter().cloned());
            computed.insert(key, entry);
        }
        self.by_service = computed;
        ports.sort_by_cached_key(|p| p.id());
        ports
    }
}
