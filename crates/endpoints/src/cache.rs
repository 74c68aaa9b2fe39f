//! The controllers' shared, indexed view of the cluster, fed by four watchers (Pods, Services, Endpoints,
//! EndpointSlices), and the triggers: each change puts the keys of the Services it affects on the work queues.
//!
//! Pods are kept as [`PodInfo`] and indexed by label; Services are indexed by their selector's pairs, so a pod's
//! change finds its Services (old labels and new) without a scan, and a Service finds its pods the same way.
//! Writes the controllers make are recorded at once ([`Cache::record_slice`] and friends), so the next sync
//! never plans from a state older than its own last write; a watch event older than what is cached (a smaller
//! resourceVersion for the same object) is ignored, and an object this process deleted stays gone until its
//! watch `DELETED` arrives.

mod index;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::pod::{PodInfo, selector_matches, service_selector};
use crate::queue::WorkQueue;
use crate::{LABEL_MANAGED_BY, LABEL_SERVICE_NAME, MIRRORING_CONTROLLER, ObjectKey, SLICE_CONTROLLER};
use index::LabelIndex;

/// One watch event, after the watcher's relist buffering: `Replace` is a complete new list.
pub enum Change<T> {
    Apply(T),
    Delete(T),
    Replace(Vec<T>),
}

/// The queues changes are reported to; a controller that is not running has none.
#[derive(Default, Clone)]
pub struct Queues {
    pub endpoints: Option<WorkQueue>,
    pub slices: Option<WorkQueue>,
    pub mirroring: Option<WorkQueue>,
}

#[derive(Default)]
struct State {
    pods: HashMap<ObjectKey, Arc<PodInfo>>,
    pod_index: LabelIndex,
    services: HashMap<ObjectKey, Arc<Service>>,
    service_index: LabelIndex,
    endpoints: HashMap<ObjectKey, Arc<Endpoints>>,
    slices: HashMap<ObjectKey, Arc<EndpointSlice>>,
    /// `(namespace, kubernetes.io/service-name)` → slice names.
    slices_by_service: HashMap<ObjectKey, HashSet<String>>,
    /// UIDs this process deleted whose `DELETED` event has not arrived.
    deleted: HashSet<String>,
}

#[derive(Default)]
pub struct Cache {
    state: RwLock<State>,
    queues: Queues,
    /// Whether the Endpoints have been listed once (the leftover check runs after the first list only).
    endpoints_listed: AtomicBool,
}

fn rv_older(incoming: Option<&String>, cached: Option<&String>) -> bool {
    match (incoming.and_then(|r| r.parse::<u64>().ok()), cached.and_then(|r| r.parse::<u64>().ok())) {
        (Some(incoming), Some(cached)) => incoming < cached,
        _ => false,
    }
}

fn slice_service_key(slice: &EndpointSlice) -> Option<ObjectKey> {
    let name = slice.metadata.labels.as_ref()?.get(LABEL_SERVICE_NAME)?;
    Some(ObjectKey::new(slice.metadata.namespace.clone()?, name.clone()))
}

fn slice_manager(slice: &EndpointSlice) -> Option<&str> {
    slice.metadata.labels.as_ref()?.get(LABEL_MANAGED_BY).map(String::as_str)
}

impl Cache {
    pub fn new(queues: Queues) -> Self {
        Self { state: RwLock::default(), queues, endpoints_listed: AtomicBool::new(false) }
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn enqueue_service(&self, key: &ObjectKey, mirroring: bool) {
        for queue in [&self.queues.endpoints, &self.queues.slices].into_iter().flatten() {
            queue.add(key.clone());
        }
        if mirroring && let Some(queue) = &self.queues.mirroring {
            queue.add(key.clone());
        }
    }

    /// Resyncs every Service (after a list or relist). `leftovers`: also hand every Endpoints object to the
    /// endpoints controller, which deletes those left without a Service (upstream's `checkLeftoverEndpoints`,
    /// done once at startup).
    fn enqueue_everything(&self, leftovers: bool) {
        let (services, endpoints): (Vec<_>, Vec<_>) = {
            let state = self.read();
            (state.services.keys().cloned().collect(), state.endpoints.keys().cloned().collect())
        };
        for key in &services {
            self.enqueue_service(key, true);
        }
        for key in endpoints {
            if leftovers && let Some(queue) = &self.queues.endpoints {
                queue.add(key.clone());
            }
            if let Some(queue) = &self.queues.mirroring {
                queue.add(key);
            }
        }
    }

    // ---- reads ----

    pub fn service(&self, key: &ObjectKey) -> Option<Arc<Service>> {
        self.read().services.get(key).cloned()
    }

    pub fn endpoints(&self, key: &ObjectKey) -> Option<Arc<Endpoints>> {
        self.read().endpoints.get(key).cloned()
    }

    /// The pods in the Service's namespace its selector matches, by name; none without a selector.
    pub fn pods_for(&self, service: &Service) -> Vec<Arc<PodInfo>> {
        let (Some(namespace), Some(selector)) = (service.metadata.namespace.as_deref(), service_selector(service))
        else {
            return Vec::new();
        };
        let state = self.read();
        let Some(candidates) = state.pod_index.candidates(namespace, selector) else { return Vec::new() };
        let mut pods: Vec<Arc<PodInfo>> = candidates
            .iter()
            .filter_map(|name| state.pods.get(&ObjectKey::new(namespace, name.as_str())))
            .filter(|pod| selector_matches(selector, &pod.labels))
            .cloned()
            .collect();
        pods.sort_by(|a, b| a.name.cmp(&b.name));
        pods
    }

    /// The slices labelled for the Service `key` and managed by `manager`, by name.
    pub fn slices_for(&self, key: &ObjectKey, manager: &str) -> Vec<Arc<EndpointSlice>> {
        let state = self.read();
        let Some(names) = state.slices_by_service.get(key) else { return Vec::new() };
        let mut slices: Vec<Arc<EndpointSlice>> = names
            .iter()
            .filter_map(|name| state.slices.get(&ObjectKey::new(key.namespace.as_str(), name.as_str())))
            .filter(|slice| slice_manager(slice) == Some(manager))
            .cloned()
            .collect();
        slices.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        slices
    }

    // ---- the controllers' own writes ----

    pub fn record_slice(&self, slice: EndpointSlice) {
        let mut state = self.write();
        insert_slice(&mut state, Arc::new(slice));
    }

    pub fn forget_slice(&self, slice: &EndpointSlice) {
        let mut state = self.write();
        if let Some(uid) = &slice.metadata.uid {
            state.deleted.insert(uid.clone());
        }
        remove_slice(&mut state, slice);
    }

    pub fn record_endpoints(&self, endpoints: Endpoints) {
        let Some(key) = ObjectKey::of(&endpoints.metadata) else { return };
        self.write().endpoints.insert(key, Arc::new(endpoints));
    }

    pub fn forget_endpoints(&self, endpoints: &Endpoints) {
        let Some(key) = ObjectKey::of(&endpoints.metadata) else { return };
        let mut state = self.write();
        if let Some(uid) = &endpoints.metadata.uid {
            state.deleted.insert(uid.clone());
        }
        state.endpoints.remove(&key);
    }

    // ---- watch events ----

    pub fn pods_changed(&self, change: Change<PodInfo>) {
        let mut affected: HashSet<ObjectKey> = HashSet::new();
        {
            let mut state = self.write();
            match change {
                Change::Apply(pod) => {
                    let key = ObjectKey::new(pod.namespace.as_str(), pod.name.as_str());
                    let old = state.pods.get(&key).cloned();
                    if old.as_deref() == Some(&pod) {
                        return;
                    }
                    if let Some(old) = &old {
                        services_of(&state, old, &mut affected);
                        state.pod_index.remove(&old.namespace, &old.labels, &old.name);
                    }
                    services_of(&state, &pod, &mut affected);
                    state.pod_index.insert(&pod.namespace, &pod.labels, &pod.name);
                    state.pods.insert(key, Arc::new(pod));
                }
                Change::Delete(pod) => {
                    let key = ObjectKey::new(pod.namespace.as_str(), pod.name.as_str());
                    if let Some(old) = state.pods.remove(&key) {
                        services_of(&state, &old, &mut affected);
                        state.pod_index.remove(&old.namespace, &old.labels, &old.name);
                    }
                }
                Change::Replace(pods) => {
                    state.pods.clear();
                    state.pod_index.clear();
                    for pod in pods {
                        state.pod_index.insert(&pod.namespace, &pod.labels, &pod.name);
                        state.pods.insert(ObjectKey::new(pod.namespace.as_str(), pod.name.as_str()), Arc::new(pod));
                    }
                    drop(state);
                    self.enqueue_everything(false);
                    return;
                }
            }
        }
        for key in &affected {
            self.enqueue_service(key, false);
        }
    }

    pub fn services_changed(&self, change: Change<Arc<Service>>) {
        let mut state = self.write();
        let service = match change {
            Change::Apply(service) => service,
            Change::Delete(service) => {
                let Some(key) = ObjectKey::of(&service.metadata) else { return };
                if let Some(old) = state.services.remove(&key) {
                    unindex_service(&mut state, &old);
                }
                drop(state);
                self.enqueue_service(&key, true);
                return;
            }
            Change::Replace(services) => {
                state.services.clear();
                state.service_index.clear();
                for service in services {
                    let Some(key) = ObjectKey::of(&service.metadata) else { continue };
                    index_service(&mut state, &service);
                    state.services.insert(key, service);
                }
                drop(state);
                self.enqueue_everything(false);
                return;
            }
        };
        let Some(key) = ObjectKey::of(&service.metadata) else { return };
        if let Some(old) = state.services.remove(&key) {
            unindex_service(&mut state, &old);
        }
        index_service(&mut state, &service);
        state.services.insert(key.clone(), service);
        drop(state);
        self.enqueue_service(&key, true);
    }

    pub fn endpoints_changed(&self, change: Change<Arc<Endpoints>>) {
        let mut state = self.write();
        match change {
            Change::Apply(endpoints) => {
                let Some(key) = ObjectKey::of(&endpoints.metadata) else { return };
                if endpoints.metadata.uid.as_ref().is_some_and(|uid| state.deleted.contains(uid)) {
                    return;
                }
                let cached = state.endpoints.get(&key);
                let cached_rv = cached.and_then(|c| c.metadata.resource_version.as_ref());
                if rv_older(endpoints.metadata.resource_version.as_ref(), cached_rv) {
                    return;
                }
                state.endpoints.insert(key.clone(), endpoints);
                drop(state);
                if let Some(queue) = &self.queues.mirroring {
                    queue.add(key);
                }
            }
            Change::Delete(endpoints) => {
                let Some(key) = ObjectKey::of(&endpoints.metadata) else { return };
                if let Some(uid) = &endpoints.metadata.uid {
                    state.deleted.remove(uid);
                }
                if state.endpoints.get(&key).is_some_and(|c| c.metadata.uid == endpoints.metadata.uid) {
                    state.endpoints.remove(&key);
                }
                drop(state);
                self.enqueue_service(&key, true);
            }
            Change::Replace(list) => {
                state.endpoints = list
                    .into_iter()
                    .filter_map(|endpoints| Some((ObjectKey::of(&endpoints.metadata)?, endpoints)))
                    .collect();
                state.deleted.clear();
                drop(state);
                let first = !self.endpoints_listed.swap(true, Ordering::SeqCst);
                self.enqueue_everything(first);
            }
        }
    }

    pub fn slices_changed(&self, change: Change<Arc<EndpointSlice>>) {
        let mut state = self.write();
        let (slice, deleted) = match change {
            Change::Apply(slice) => (slice, false),
            Change::Delete(slice) => (slice, true),
            Change::Replace(slices) => {
                state.slices.clear();
                state.slices_by_service.clear();
                state.deleted.clear();
                for slice in slices {
                    insert_slice(&mut state, slice);
                }
                drop(state);
                self.enqueue_everything(false);
                return;
            }
        };
        let Some(key) = ObjectKey::of(&slice.metadata) else { return };
        if deleted {
            if let Some(uid) = &slice.metadata.uid {
                state.deleted.remove(uid);
            }
            if state.slices.get(&key).is_some_and(|c| c.metadata.uid == slice.metadata.uid) {
                remove_slice(&mut state, &slice);
            }
        } else {
            if slice.metadata.uid.as_ref().is_some_and(|uid| state.deleted.contains(uid)) {
                return;
            }
            let cached_rv = state.slices.get(&key).and_then(|c| c.metadata.resource_version.clone());
            if cached_rv.is_some() && cached_rv == slice.metadata.resource_version {
                // Our own write, already recorded.
                return;
            }
            if rv_older(slice.metadata.resource_version.as_ref(), cached_rv.as_ref()) {
                return;
            }
            insert_slice(&mut state, slice.clone());
        }
        drop(state);
        let Some(service) = slice_service_key(&slice) else { return };
        let queue = match slice_manager(&slice) {
            Some(SLICE_CONTROLLER) => &self.queues.slices,
            Some(MIRRORING_CONTROLLER) => &self.queues.mirroring,
            _ => &None,
        };
        if let Some(queue) = queue {
            queue.add(service);
        }
    }
}

/// Adds the Services whose selector matches `pod` to `out`.
fn services_of(state: &State, pod: &PodInfo, out: &mut HashSet<ObjectKey>) {
    for (key, value) in &pod.labels {
        let Some(names) = state.service_index.get(&pod.namespace, key, value) else { continue };
        for name in names {
            let service_key = ObjectKey::new(pod.namespace.as_str(), name.as_str());
            if out.contains(&service_key) {
                continue;
            }
            let matches = state
                .services
                .get(&service_key)
                .and_then(|s| service_selector(s))
                .is_some_and(|selector| selector_matches(selector, &pod.labels));
            if matches {
                out.insert(service_key);
            }
        }
    }
}

fn index_service(state: &mut State, service: &Service) {
    if let (Some(namespace), Some(name), Some(selector)) =
        (service.metadata.namespace.as_deref(), service.metadata.name.as_deref(), service_selector(service))
    {
        state.service_index.insert(namespace, selector, name);
    }
}

fn unindex_service(state: &mut State, service: &Service) {
    if let (Some(namespace), Some(name), Some(selector)) =
        (service.metadata.namespace.as_deref(), service.metadata.name.as_deref(), service_selector(service))
    {
        state.service_index.remove(namespace, selector, name);
    }
}

fn insert_slice(state: &mut State, slice: Arc<EndpointSlice>) {
    let Some(key) = ObjectKey::of(&slice.metadata) else { return };
    if let Some(old) = state.slices.get(&key).cloned() {
        remove_slice(state, &old);
    }
    if let Some(service) = slice_service_key(&slice) {
        state.slices_by_service.entry(service).or_default().insert(key.name.clone());
    }
    state.slices.insert(key, slice);
}

fn remove_slice(state: &mut State, slice: &EndpointSlice) {
    let Some(key) = ObjectKey::of(&slice.metadata) else { return };
    let Some(old) = state.slices.remove(&key) else { return };
    if let Some(service) = slice_service_key(&old)
        && let Some(names) = state.slices_by_service.get_mut(&service)
    {
        names.remove(&key.name);
        if names.is_empty() {
            state.slices_by_service.remove(&service);
        }
    }
}

#[cfg(test)]
mod tests;
