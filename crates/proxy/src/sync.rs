//! The proxy's loop: reflectors cache every Service and EndpointSlice; once both have synced, every change
//! (coalesced over a few milliseconds) rebuilds the desired ruleset and applies only its difference from the
//! mirror of what was last applied. A failed apply drops the mirror, so the retry is a full sync. The rules stay in the kernel when the loop stops, so
//! traffic keeps flowing while the proxy restarts; the first sync after a start replaces whatever table is there.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::runtime::reflector::{self, Store, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::model::{ServicePort, service_ports};
use crate::nft;
use crate::ruleset::{Ruleset, RulesetConfig};

/// Changes arriving this close together are applied in one transaction.
const COALESCE: Duration = Duration::from_millis(5);
/// How long after a failed apply the next attempt comes.
const RETRY: Duration = Duration::from_secs(1);
/// The label that ties an EndpointSlice to its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Runs the proxy for the node named `node` until `stop` fires.
pub async fn run(client: kube::Client, config: RulesetConfig, node: String, stop: CancellationToken) {
    let changed = Arc::new(Notify::new());
    let services = cache::<Service>(Api::all(client.clone()), changed.clone(), stop.clone());
    let slices = cache::<EndpointSlice>(Api::all(client), changed.clone(), stop.clone());
    tokio::select! {
        _ = stop.cancelled() => return,
        ready = async { tokio::try_join!(services.wait_until_ready(), slices.wait_until_ready()) } => {
            if ready.is_err() {
                return;
            }
        }
    }
    // The mirror: what the kernel's table holds, as far as this process knows. None forces a full sync.
    let mut applied: Option<Ruleset> = None;
    loop {
        let desired = Ruleset::new(&config, desired(&services, &slices, &node), applied.as_ref());
        let script = match &applied {
            Some(applied) => desired.update_script(applied),
            None => Some(desired.full_script()),
        };
        if let Some(script) = script {
            let started = Instant::now();
            match tokio::task::spawn_blocking(move || nft::apply(&script)).await {
                Ok(Ok(())) => {
                    let (ports, chains, elements) = desired.counts();
                    let full = applied.is_none();
                    tracing::debug!(elapsed = ?started.elapsed(), full, ports, chains, elements, "service rules applied");
                    applied = Some(desired);
                }
                outcome => {
                    tracing::warn!(?outcome, "applying the service rules failed; retrying with a full sync");
                    applied = None;
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(RETRY) => continue,
                    }
                }
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = changed.notified() => tokio::time::sleep(COALESCE).await,
        }
    }
}

/// A reflector for `K` whose every change wakes `changed`.
fn cache<K>(api: Api<K>, changed: Arc<Notify>, stop: CancellationToken) -> Store<K>
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
                    Some(Ok(_)) => changed.notify_one(),
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
    let mut by_service: HashMap<(String, String), Vec<EndpointSlice>> = HashMap::new();
    for slice in slices.state() {
        let namespace = slice.metadata.namespace.clone().unwrap_or_default();
        if let Some(name) = slice.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL)) {
            by_service.entry((namespace, name.clone())).or_default().push((*slice).clone());
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
    ports.sort_by_key(ServicePort::id);
    ports
}
