//! Watches of Services and EndpointSlices that keep the [`Zone`](crate::zone::Zone) current: every event
//! updates it at once, so a change is visible to the next question. A relist applies each object as it comes and
//! then removes what it did not name, since objects deleted while the watch was away send no event.

use std::collections::HashSet;
use std::sync::PoisonError;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use tokio::sync::watch as signal;
use tokio_util::sync::CancellationToken;

use crate::server::SharedZone;
use crate::zone::{ObjectKey, ServiceInfo, SliceInfo, Zone};

/// The label that ties an EndpointSlice to its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

fn key<K: ResourceExt>(object: &K) -> ObjectKey {
    (object.namespace().unwrap_or_default().into(), object.name_any().into())
}

/// A kind the zone takes in: what it keeps of an object, and how it sets and replaces those.
trait Watched:
    kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static
{
    type Entry: Send + 'static;
    fn entry(&self) -> Self::Entry;
    fn apply(zone: &mut Zone, entry: Self::Entry);
    fn delete(zone: &mut Zone, object: &Self);
    /// Removes every object of the kind that `keep` does not hold (after a relist).
    fn retain(zone: &mut Zone, keep: &HashSet<ObjectKey>);
}

impl Watched for Service {
    type Entry = (ObjectKey, ServiceInfo);

    fn entry(&self) -> Self::Entry {
        (key(self), ServiceInfo::new(self))
    }

    fn apply(zone: &mut Zone, (key, info): Self::Entry) {
        zone.set_service(key, Some(info));
    }

    fn delete(zone: &mut Zone, object: &Self) {
        zone.set_service(key(object), None);
    }

    fn retain(zone: &mut Zone, keep: &HashSet<ObjectKey>) {
        zone.retain_services(keep);
    }
}

impl Watched for EndpointSlice {
    /// The slice, its Service (none: not a Service's slice), what DNS reads of it.
    type Entry = (ObjectKey, Option<ObjectKey>, SliceInfo);

    fn entry(&self) -> Self::Entry {
        let service = self
            .labels()
            .get(SERVICE_NAME_LABEL)
            .map(|name| (self.namespace().unwrap_or_default().into(), name.as_str().into()));
        (key(self), service, SliceInfo::new(self))
    }

    fn apply(zone: &mut Zone, (key, service, info): Self::Entry) {
        zone.set_slice(key, service.map(|s| (s, info)));
    }

    fn delete(zone: &mut Zone, object: &Self) {
        zone.set_slice(key(object), None);
    }

    fn retain(zone: &mut Zone, keep: &HashSet<ObjectKey>) {
        zone.retain_slices(keep);
    }
}

/// Watches Services and EndpointSlices into `zone` until `stop`; the returned receiver turns true once both
/// have been listed.
pub fn start(client: kube::Client, zone: SharedZone, stop: CancellationToken) -> signal::Receiver<bool> {
    let (synced_tx, synced_rx) = signal::channel(false);
    let services = watch::<Service>(Api::all(client.clone()), zone.clone(), stop.clone());
    let slices = watch::<EndpointSlice>(Api::all(client), zone, stop);
    tokio::spawn(async move {
        let (mut services, mut slices) = (services, slices);
        let _ = services.wait_for(|s| *s).await;
        let _ = slices.wait_for(|s| *s).await;
        let _ = synced_tx.send(true);
    });
    synced_rx
}

fn watch<K: Watched>(api: Api<K>, zone: SharedZone, stop: CancellationToken) -> signal::Receiver<bool> {
    let (synced_tx, synced_rx) = signal::channel(false);
    let stream = watcher(api, watcher::Config::default()).default_backoff();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        // The objects a relist has named so far: each is applied as it comes (no list held in memory), and at its
        // end whatever it did not name is removed.
        let mut relisted: HashSet<ObjectKey> = HashSet::new();
        loop {
            let event = tokio::select! {
                _ = stop.cancelled() => return,
                item = stream.next() => match item {
                    Some(Ok(event)) => event,
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "a DNS watch failed; it restarts");
                        continue;
                    }
                    None => return,
                },
            };
            let mut zone = zone.write().unwrap_or_else(PoisonError::into_inner);
            match event {
                watcher::Event::Apply(object) => K::apply(&mut zone, object.entry()),
                watcher::Event::Delete(object) => K::delete(&mut zone, &object),
                watcher::Event::Init => relisted.clear(),
                watcher::Event::InitApply(object) => {
                    relisted.insert(key(&object));
                    K::apply(&mut zone, object.entry());
                }
                watcher::Event::InitDone => {
                    K::retain(&mut zone, &relisted);
                    relisted = HashSet::new();
                    let _ = synced_tx.send(true);
                }
            }
        }
    });
    synced_rx
}
