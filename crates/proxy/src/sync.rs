//! The proxy's loop: watches fill the [`cache`] with every Service and EndpointSlice and mark the Services they
//! touch; once both kinds are listed, every change (coalesced over a few milliseconds) recomputes the marked
//! Services' ports, and the mirror of the kernel's table ([`Ruleset`]) plans the update for the ports that differ —
//! work proportional to the change, not to the cluster. An update of elements alone goes to the kernel over
//! [`netlink`], anything more through [`nft`]. A failed apply keeps the mirror (it is what the kernel still holds,
//! so the conntrack cleanup stays right) and makes the retry a full sync, which replaces the whole table. After an
//! apply: stale UDP flows are deleted, the health check servers follow the local endpoint counts, and the endpoint
//! changes' trigger times become network programming latencies. The rules stay in the kernel when the loop stops,
//! so traffic keeps flowing while the proxy restarts; the first sync after a start replaces whatever table is
//! there.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::cache::{self, Caches, ServiceKey, SharedCaches};
use crate::health::HealthServers;
use crate::model::ServicePort;
use crate::ruleset::{Change, Ruleset, RulesetConfig};
use crate::{conntrack, metrics, netlink, nft};

/// Changes arriving this close together are applied in one transaction.
const COALESCE: Duration = Duration::from_millis(5);
/// How long after a failed apply the next attempt comes.
const RETRY: Duration = Duration::from_secs(1);

/// Runs the proxy for the node named `node` until `stop` fires.
pub async fn run(client: kube::Client, config: RulesetConfig, node: String, stop: CancellationToken) {
    let started = Timestamp::now();
    let changed = Arc::new(Notify::new());
    // Trigger times of the endpoint changes not yet programmed (older than this start: not ours to measure).
    let triggers: Arc<Mutex<Vec<Timestamp>>> = Arc::default();
    let caches: SharedCaches = Arc::new(Mutex::new(Caches::new(node.clone())));
    let pending = triggers.clone();
    watch::<Service>(Api::all(client.clone()), caches.clone(), changed.clone(), stop.clone(), |caches, event| {
        caches.service_event(event);
    });
    watch::<EndpointSlice>(Api::all(client), caches.clone(), changed.clone(), stop.clone(), move |caches, event| {
        if let watcher::Event::Apply(slice) | watcher::Event::InitApply(slice) = &event
            && let Some(at) = metrics::trigger_time(slice).filter(|at| *at >= started)
        {
            pending.lock().unwrap_or_else(PoisonError::into_inner).push(at);
        }
        caches.slice_event(event);
    });
    while !cache::lock(&caches).synced() {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = changed.notified() => {}
        }
    }
    let metrics = metrics::metrics();
    let mut health = HealthServers::default();
    // The mirror: what the kernel's table holds. `full` makes the next sync replace the whole table: at start
    // (reconciling whatever an earlier run left) and after a failure.
    let mut applied = Ruleset::empty(&config);
    let mut first = true;
    let mut full = true;
    let mut wanted = Desired::default();
    loop {
        let batch: Vec<Timestamp> = std::mem::take(&mut *triggers.lock().unwrap_or_else(PoisonError::into_inner));
        let changes = wanted.changes(&caches);
        let update = if full { applied.plan_to(wanted.all()) } else { applied.plan(changes) };
        // Flows a cleanup must forget once this applies; not at start, where nothing is known of before.
        let stale = if first { Default::default() } else { conntrack::stale_udp_flows(update.port_changes(&applied)) };
        let mut healthy = true;
        if !full && !update.replaces_table() && update.is_empty() {
            // The kernel already holds what these changes ask for: programmed as of now.
            metrics.programmed(&batch);
        } else {
            let whole = full || update.replaces_table();
            // Element changes alone go straight to the kernel over netlink; anything more through `nft`.
            let (write, next) = if whole {
                let mut next = applied.clone();
                next.commit(update);
                (Write::Nft(next.full_script()), Ok(next))
            } else if let Some(changes) = update.element_changes() {
                let (batch, acks) = netlink::encode(&config.table, &changes);
                (Write::Netlink(batch, acks), Err(update))
            } else {
                (Write::Nft(update.script().unwrap_or_default()), Err(update))
            };
            let writer = write.name();
            let began = Instant::now();
            match tokio::task::spawn_blocking(move || write.apply()).await {
                Ok(Ok(())) => {
                    match next {
                        Ok(next) => applied = next,
                        Err(update) => applied.commit(update),
                    }
                    let counts = applied.counts();
                    metrics.synced(began.elapsed(), whole, counts);
                    metrics.programmed(&batch);
                    tracing::debug!(elapsed = ?began.elapsed(), full = whole, writer, ?counts, "service rules applied");
                    if !stale.is_empty() {
                        let _ = tokio::task::spawn_blocking(move || conntrack::delete(&stale)).await;
                    }
                    first = false;
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
        if !first {
            health.update(&applied, healthy).await;
        }
        let wait = if healthy { None } else { Some(RETRY) };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = changed.notified() => tokio::time::sleep(COALESCE).await,
            _ = tokio::time::sleep(wait.unwrap_or(Duration::MAX)), if wait.is_some() => {}
        }
    }
}

/// One transaction for the kernel.
enum Write {
    /// An `nft -f -` script.
    Nft(String),
    /// A netlink batch and the acknowledgements it asks for.
    Netlink(Vec<u8>, usize),
}

impl Write {
    fn name(&self) -> &'static str {
        match self {
            Write::Nft(_) => "nft",
            Write::Netlink(..) => "netlink",
        }
    }

    fn apply(self) -> Result<(), String> {
        match self {
            Write::Nft(script) => nft::apply(&script).map_err(|e| e.to_string()),
            Write::Netlink(batch, acks) => netlink::send_batch(&batch, acks).map_err(|e| format!("netlink: {e}")),
        }
    }
}

/// A watch of `K` whose every event goes through `take` into the caches and then wakes `changed`.
fn watch<K>(
    api: Api<K>,
    caches: SharedCaches,
    changed: Arc<Notify>,
    stop: CancellationToken,
    take: impl Fn(&mut Caches, watcher::Event<K>) + Send + 'static,
) where
    K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    let stream = watcher(api, watcher::Config::default()).default_backoff();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                item = stream.next() => match item {
                    Some(Ok(event)) => {
                        take(&mut cache::lock(&caches), event);
                        changed.notify_one();
                    }
                    Some(Err(e)) => tracing::debug!(error = %e, "a proxy watch failed; it restarts"),
                    None => return,
                },
            }
        }
    });
}

/// Every routed service port, by Service, as last computed: a sync recomputes only the Services the caches
/// marked changed, and hands the ruleset only the ports that differ.
#[derive(Default)]
struct Desired {
    by_service: HashMap<ServiceKey, Vec<Arc<ServicePort>>>,
}

impl Desired {
    /// Recomputes the changed Services' ports; returns the ports that differ from before.
    fn changes(&mut self, caches: &SharedCaches) -> Vec<Change> {
        let mut caches = cache::lock(caches);
        let mut changes = Vec::new();
        for key in caches.take_changed() {
            let before = self.by_service.remove(&key).unwrap_or_default();
            let mut after = Vec::new();
            for port in caches.service_ports(&key) {
                match before.iter().find(|b| ***b == port) {
                    Some(same) => after.push(same.clone()),
                    None => {
                        let port = Arc::new(port);
                        changes.push(Change::Port(port.clone()));
                        after.push(port);
                    }
                }
            }
            let ids: Vec<String> = after.iter().map(|p| p.id()).collect();
            changes.extend(before.iter().map(|b| b.id()).filter(|id| !ids.contains(id)).map(Change::Removed));
            if !after.is_empty() {
                self.by_service.insert(key, after);
            }
        }
        changes
    }

    /// Every port, for a full sync.
    fn all(&self) -> Vec<Arc<ServicePort>> {
        self.by_service.values().flatten().cloned().collect()
    }
}
