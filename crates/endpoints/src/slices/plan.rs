//! Upstream's `Reconciler.reconcile` as a pure function: given a Service, the pods its selector matches and the
//! slices this controller already has for it, the slices to create, update and delete.
//!
//! Endpoints are grouped by their port set (a named `targetPort` can resolve to different numbers on different
//! pods). Per group: existing slices keep the endpoints still wanted (updated in place when they changed) and lose
//! the others; slices already being updated are filled up first, then an unchanged slice that can take all that
//! remains, then new slices of at most `max_per_slice`. Slices of port sets no longer wanted go; a Service with
//! no endpoints keeps one empty placeholder slice. Creates that can reuse a slice about to be deleted become
//! updates of it.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;

use super::endpoint::{EndpointKey, PortsKey, endpoint_key, endpoint_ports, pod_to_endpoint, ports_key, slice_labels};
use crate::pod::{PodInfo, service_is_ipv6};
use crate::{ANNOTATION_TRIGGER_TIME, SLICE_CONTROLLER};

/// Upstream's default `--max-endpoints-per-slice`.
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;

/// What a sync will do. Slices to create carry `generateName`; slices to update carry their name and the
/// resourceVersion they were read at.
#[derive(Debug, Default)]
pub struct Plan {
    pub create: Vec<EndpointSlice>,
    pub update: Vec<EndpointSlice>,
    pub delete: Vec<Arc<EndpointSlice>>,
}

/// Desired endpoints in pod order, taken by identity or popped in order.
#[derive(Default)]
struct EndpointSet {
    order: VecDeque<EndpointKey>,
    items: HashMap<EndpointKey, Endpoint>,
}

impl EndpointSet {
    fn insert(&mut self, endpoint: Endpoint) {
        let key = endpoint_key(&endpoint);
        if self.items.insert(key.clone(), endpoint).is_none() {
            self.order.push_back(key);
        }
    }
    fn take(&mut self, key: &EndpointKey) -> Option<Endpoint> {
        self.items.remove(key)
    }
    fn pop(&mut self) -> Option<Endpoint> {
        while let Some(key) = self.order.pop_front() {
            if let Some(endpoint) = self.items.remove(&key) {
                return Some(endpoint);
            }
        }
        None
    }
    fn len(&self) -> usize {
        self.items.len()
    }
}

fn owned_by(slice: &EndpointSlice, service: &Service) -> bool {
    let uid = service.metadata.uid.as_deref();
    slice.metadata.owner_references.iter().flatten().any(|r| Some(r.uid.as_str()) == uid)
}

/// A new slice for `service` (upstream's `newEndpointSlice`).
pub fn new_slice(service: &Service, ports: Vec<EndpointPort>, address_type: &str) -> EndpointSlice {
    let name = service.metadata.name.clone().unwrap_or_default();
    let (labels, _) = slice_labels(None, service, SLICE_CONTROLLER);
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}-")),
            namespace: service.metadata.namespace.clone(),
            labels: Some(labels),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Service".into(),
                name,
                uid: service.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        },
        address_type: address_type.into(),
        endpoints: Vec::new(),
        ports: Some(ports),
    }
}

fn is_placeholder_like(existing: &EndpointSlice, placeholder: &EndpointSlice) -> bool {
    existing.metadata.namespace == placeholder.metadata.namespace
        && existing.metadata.labels.clone().unwrap_or_default()
            == placeholder.metadata.labels.clone().unwrap_or_default()
        && existing.address_type == placeholder.address_type
        && existing.endpoints.is_empty()
        && existing.ports.as_ref().is_none_or(Vec::is_empty)
}

/// The plan for `service` over `pods` (those its selector matches) and `existing` (its slices managed by this
/// controller).
pub fn plan(
    service: &Service,
    pods: &[Arc<PodInfo>],
    existing: &[Arc<EndpointSlice>],
    trigger: Option<Timestamp>,
    max_per_slice: usize,
) -> Plan {
    let max_per_slice = max_per_slice.max(1);
    let ipv6 = service_is_ipv6(service);
    let address_type = if ipv6 { "IPv6" } else { "IPv4" };
    let mut plan = Plan::default();

    // Slices of another address type go; of the rest, those owned by another Service (an old one of the same
    // name) go too.
    let (typed, other_type): (Vec<_>, Vec<_>) = existing.iter().cloned().partition(|s| s.address_type == address_type);
    let mut existing_by_ports: BTreeMap<PortsKey, Vec<Arc<EndpointSlice>>> = BTreeMap::new();
    for slice in &typed {
        if owned_by(slice, service) {
            existing_by_ports.entry(ports_key(slice.ports.as_ref())).or_default().push(slice.clone());
        } else {
            plan.delete.push(slice.clone());
        }
    }

    let mut desired: BTreeMap<PortsKey, (Vec<EndpointPort>, EndpointSet)> = BTreeMap::new();
    for pod in pods {
        if !pod.should_be_in_endpoints(true) {
            continue;
        }
        let ports = endpoint_ports(service, pod);
        let Some(endpoint) = pod_to_endpoint(service, pod, ipv6) else { continue };
        desired.entry(ports_key(Some(&ports))).or_insert_with(|| (ports, EndpointSet::default())).1.insert(endpoint);
    }

    for (key, (ports, set)) in desired.iter_mut() {
        let slices = existing_by_ports.get(key).map(Vec::as_slice).unwrap_or_default();
        let set = std::mem::take(set);
        by_port_mapping(service, slices, set, ports, address_type, max_per_slice, &mut plan);
    }
    for (key, slices) in &existing_by_ports {
        if !desired.contains_key(key) {
            plan.delete.extend(slices.iter().cloned());
        }
    }

    // A Service always has at least one slice: keep (or make) an empty placeholder.
    if typed.len() == plan.delete.len() && plan.create.is_empty() {
        let placeholder = new_slice(service, Vec::new(), address_type);
        if plan.delete.len() == 1 && is_placeholder_like(&plan.delete[0], &placeholder) {
            plan.delete.clear();
        } else {
            plan.create.push(placeholder);
        }
    }
    plan.delete.extend(other_type);

    // Recycle: a slice that would be created becomes an update of one that would be deleted.
    let mut i = 0;
    while i < plan.delete.len() && !plan.create.is_empty() {
        let doomed = &plan.delete[i];
        if doomed.address_type == address_type && owned_by(doomed, service) {
            let doomed = plan.delete.remove(i);
            if let Some(mut slice) = plan.create.pop() {
                slice.metadata.generate_name = None;
                slice.metadata.name = doomed.metadata.name.clone();
                slice.metadata.resource_version = doomed.metadata.resource_version.clone();
                slice.metadata.annotations = doomed.metadata.annotations.clone();
                plan.update.push(slice);
            }
        } else {
            i += 1;
        }
    }

    for slice in plan.create.iter_mut().chain(plan.update.iter_mut()) {
        slice.metadata.managed_fields = None;
        let mut annotations = slice.metadata.annotations.take().unwrap_or_default();
        match trigger {
            Some(time) => annotations.insert(ANNOTATION_TRIGGER_TIME.into(), time.to_string()),
            None => annotations.remove(ANNOTATION_TRIGGER_TIME),
        };
        slice.metadata.annotations = Some(annotations).filter(|a| !a.is_empty());
    }
    plan
}

/// Upstream's `reconcileByPortMapping` for one port set; adds its creates, updates and deletes to `plan`.
fn by_port_mapping(
    service: &Service,
    existing: &[Arc<EndpointSlice>],
    mut desired: EndpointSet,
    ports: &[EndpointPort],
    address_type: &str,
    max: usize,
    plan: &mut Plan,
) {
    let mut changed: BTreeMap<String, EndpointSlice> = BTreeMap::new();
    let mut unchanged: BTreeMap<String, Arc<EndpointSlice>> = BTreeMap::new();
    let mut to_delete: BTreeSet<String> = BTreeSet::new();
    let originals: BTreeMap<String, Arc<EndpointSlice>> =
        existing.iter().map(|s| (s.metadata.name.clone().unwrap_or_default(), s.clone())).collect();

    // 1. Keep wanted endpoints (updated), drop the rest.
    for (name, slice) in &originals {
        let mut kept = Vec::with_capacity(slice.endpoints.len());
        let mut endpoint_changed = false;
        for endpoint in &slice.endpoints {
            if let Some(wanted) = desired.take(&endpoint_key(endpoint)) {
                endpoint_changed |= &wanted != endpoint;
                kept.push(wanted);
            }
        }
        let (labels, labels_changed) = slice_labels(Some(slice), service, SLICE_CONTROLLER);
        if endpoint_changed || kept.len() != slice.endpoints.len() {
            if kept.is_empty() {
                to_delete.insert(name.clone());
            } else {
                let mut copy = EndpointSlice::clone(slice);
                copy.endpoints = kept;
                copy.metadata.labels = Some(labels);
                changed.insert(name.clone(), copy);
            }
        } else if labels_changed {
            let mut copy = EndpointSlice::clone(slice);
            copy.metadata.labels = Some(labels);
            changed.insert(name.clone(), copy);
        } else {
            unchanged.insert(name.clone(), slice.clone());
        }
    }

    // 2. Fill the slices being updated anyway, fullest first.
    if desired.len() > 0 {
        let mut names: Vec<String> = changed.keys().cloned().collect();
        names.sort_by_key(|n| std::cmp::Reverse(changed.get(n).map_or(0, |s| s.endpoints.len())));
        for name in names {
            let Some(slice) = changed.get_mut(&name) else { continue };
            while slice.endpoints.len() < max {
                let Some(endpoint) = desired.pop() else { break };
                slice.endpoints.push(endpoint);
            }
        }
    }

    // 3. Put what remains into one unchanged slice that can take it all, or into new slices.
    while desired.len() > 0 {
        let mut target: Option<EndpointSlice> = None;
        if desired.len() < max {
            let fit = unchanged
                .iter()
                .filter(|(_, s)| s.endpoints.len() + desired.len() <= max)
                .min_by_key(|(_, s)| max - (s.endpoints.len() + desired.len()))
                .map(|(name, _)| name.clone());
            if let Some(name) = fit.and_then(|name| unchanged.remove(&name)) {
                target = Some(EndpointSlice::clone(&name));
            }
        }
        let mut slice = target.unwrap_or_else(|| new_slice(service, ports.to_vec(), address_type));
        while slice.endpoints.len() < max {
            let Some(endpoint) = desired.pop() else { break };
            slice.endpoints.push(endpoint);
        }
        match slice.metadata.name.clone() {
            Some(name) => {
                changed.insert(name, slice);
            }
            None => plan.create.push(slice),
        }
    }

    plan.update.extend(changed.into_values());
    plan.delete.extend(to_delete.iter().filter_map(|name| originals.get(name).cloned()));
}

#[cfg(test)]
mod tests;
