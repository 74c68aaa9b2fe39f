//! The legacy Endpoints object a Service should have: upstream's `syncService` body, `RepackSubsets` and
//! `truncateEndpoints`, as pure functions.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;

use crate::pod::{PodInfo, service_ip_set, service_is_ipv6};
use crate::{ANNOTATION_OVER_CAPACITY, ANNOTATION_TRIGGER_TIME, LABEL_HEADLESS};

/// Upstream's `maxCapacity`: an Endpoints object keeps at most this many addresses.
pub const MAX_CAPACITY: usize = 1000;

type PortKey = (Option<String>, i32, Option<String>, Option<String>);
type AddressKey = (String, String);

fn port_key(port: &EndpointPort) -> PortKey {
    (port.name.clone(), port.port, port.protocol.clone(), port.app_protocol.clone())
}

/// The subsets for `service` over the pods its selector matched, repacked and sorted.
pub fn desired_subsets(service: &Service, pods: &[Arc<PodInfo>]) -> Vec<EndpointSubset> {
    let namespace = service.metadata.namespace.as_deref().unwrap_or_default();
    let name = service.metadata.name.as_deref().unwrap_or_default();
    let spec = service.spec.clone().unwrap_or_default();
    let publish = spec.publish_not_ready_addresses.unwrap_or(false);
    let ipv6 = service_is_ipv6(service);
    let ports = spec.ports.unwrap_or_default();
    let headless = spec.cluster_ip.as_deref() == Some("None");

    // Port (None: the headless sentinel) → address → (address, ready).
    let mut by_port: BTreeMap<Option<PortKey>, BTreeMap<AddressKey, (EndpointAddress, bool)>> = BTreeMap::new();
    for pod in pods {
        if !pod.should_be_in_endpoints(publish) {
            continue;
        }
        let Some(ip) = pod.ip_of_family(ipv6) else { continue };
        let address = EndpointAddress {
            ip: ip.to_string(),
            hostname: pod.hostname_for(namespace, name).map(str::to_string),
            node_name: pod.node_name.clone(),
            target_ref: Some(ObjectReference {
                kind: Some("Pod".into()),
                namespace: Some(pod.namespace.clone()),
                name: Some(pod.name.clone()),
                uid: Some(pod.uid.clone()).filter(|u| !u.is_empty()),
                ..Default::default()
            }),
        };
        let ready = publish || pod.ready;
        let address_key = (ip.to_string(), pod.uid.clone());
        if ports.is_empty() {
            if headless {
                by_port.entry(None).or_default().insert(address_key, (address, ready));
            }
            continue;
        }
        for service_port in &ports {
            let Some(number) = pod.find_port(service_port) else { continue };
            let port = EndpointPort {
                name: service_port.name.clone().filter(|n| !n.is_empty()),
                port: number,
                protocol: Some(service_port.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: service_port.app_protocol.clone(),
            };
            by_port.entry(Some(port_key(&port))).or_default().insert(address_key.clone(), (address.clone(), ready));
        }
    }

    // Ports offered by exactly the same addresses share a subset.
    type Group = (Vec<EndpointPort>, Vec<(EndpointAddress, bool)>);
    let mut groups: BTreeMap<Vec<(AddressKey, bool)>, Group> = BTreeMap::new();
    for (port, addresses) in by_port {
        let signature: Vec<(AddressKey, bool)> = addresses.iter().map(|(k, (_, ready))| (k.clone(), *ready)).collect();
        let group = groups.entry(signature).or_insert_with(|| (Vec::new(), addresses.into_values().collect()));
        if let Some((name, port, protocol, app_protocol)) = port {
            group.0.push(EndpointPort { name, port, protocol, app_protocol });
        }
    }
    let mut subsets: Vec<EndpointSubset> = groups
        .into_values()
        .map(|(ports, addresses)| {
            let (ready, not_ready): (Vec<_>, Vec<_>) = addresses.into_iter().partition(|(_, ready)| *ready);
            let list = |v: Vec<(EndpointAddress, bool)>| {
                let mut v: Vec<EndpointAddress> = v.into_iter().map(|(a, _)| a).collect();
                v.sort_by(|a, b| address_order(a).cmp(&address_order(b)));
                Some(v).filter(|v| !v.is_empty())
            };
            EndpointSubset {
                addresses: list(ready),
                not_ready_addresses: list(not_ready),
                ports: Some(ports).filter(|p| !p.is_empty()),
            }
        })
        .collect();
    subsets.sort_by_key(subset_order);
    subsets
}

fn address_order(address: &EndpointAddress) -> (&str, Option<&str>) {
    (&address.ip, address.target_ref.as_ref().and_then(|r| r.uid.as_deref()))
}

fn subset_order(subset: &EndpointSubset) -> Vec<PortKey> {
    subset.ports.iter().flatten().map(port_key).collect()
}

/// Subsets with empty lists written as absent, so what the API returns compares equal to what was planned.
fn normalized(subsets: Option<&Vec<EndpointSubset>>) -> Vec<EndpointSubset> {
    subsets
        .into_iter()
        .flatten()
        .map(|s| EndpointSubset {
            addresses: s.addresses.clone().filter(|v| !v.is_empty()),
            not_ready_addresses: s.not_ready_addresses.clone().filter(|v| !v.is_empty()),
            ports: s.ports.clone().filter(|v| !v.is_empty()),
        })
        .collect()
}

fn address_count(subsets: &[EndpointSubset]) -> usize {
    subsets
        .iter()
        .map(|s| s.addresses.as_ref().map_or(0, Vec::len) + s.not_ready_addresses.as_ref().map_or(0, Vec::len))
        .sum()
}

/// The Endpoints to write for `service`, or `None` when `current` already matches (upstream skips the write).
pub fn plan(
    service: &Service,
    pods: &[Arc<PodInfo>],
    current: Option<&Endpoints>,
    trigger: Option<Timestamp>,
) -> Option<Endpoints> {
    let subsets = desired_subsets(service, pods);
    let service_labels = service.metadata.labels.clone().unwrap_or_default();
    if let Some(current) = current {
        let mut labels = current.metadata.labels.clone().unwrap_or_default();
        labels.remove(LABEL_HEADLESS);
        let annotations = current.metadata.annotations.clone().unwrap_or_default();
        let current_subsets = normalized(current.subsets.as_ref());
        let capacity_ok =
            address_count(&current_subsets) <= MAX_CAPACITY && !annotations.contains_key(ANNOTATION_OVER_CAPACITY);
        if current_subsets == subsets && labels == service_labels && capacity_ok {
            return None;
        }
    }
    let mut endpoints = current.cloned().unwrap_or_else(|| Endpoints {
        metadata: ObjectMeta {
            name: service.metadata.name.clone(),
            namespace: service.metadata.namespace.clone(),
            ..Default::default()
        },
        subsets: None,
    });
    endpoints.metadata.managed_fields = None;
    let mut annotations = endpoints.metadata.annotations.take().unwrap_or_default();
    match trigger {
        Some(time) => annotations.insert(ANNOTATION_TRIGGER_TIME.into(), time.to_string()),
        None => annotations.remove(ANNOTATION_TRIGGER_TIME),
    };
    let mut subsets = subsets;
    if truncate(&mut subsets) {
        annotations.insert(ANNOTATION_OVER_CAPACITY.into(), "truncated".into());
    } else {
        annotations.remove(ANNOTATION_OVER_CAPACITY);
    }
    endpoints.metadata.annotations = Some(annotations).filter(|a| !a.is_empty());
    let mut labels = service_labels;
    if !service_ip_set(service) {
        labels.insert(LABEL_HEADLESS.into(), String::new());
    }
    endpoints.metadata.labels = Some(labels).filter(|l| !l.is_empty());
    endpoints.subsets = Some(subsets);
    Some(endpoints)
}

/// Upstream's `truncateEndpoints`: past [`MAX_CAPACITY`], spread what is kept over the subsets in proportion,
/// ready addresses first. Returns whether anything was cut.
pub fn truncate(subsets: &mut [EndpointSubset]) -> bool {
    let len = |v: &Option<Vec<EndpointAddress>>| v.as_ref().map_or(0, Vec::len);
    let total_ready: usize = subsets.iter().map(|s| len(&s.addresses)).sum();
    let total_not_ready: usize = subsets.iter().map(|s| len(&s.not_ready_addresses)).sum();
    if total_ready + total_not_ready <= MAX_CAPACITY {
        return false;
    }
    let truncate_ready = total_ready > MAX_CAPACITY;
    let (max, total) =
        if truncate_ready { (MAX_CAPACITY, total_ready) } else { (MAX_CAPACITY - total_ready, total_not_ready) };
    let mut can_be_added = max;
    for subset in subsets.iter_mut() {
        let in_subset = if truncate_ready { len(&subset.addresses) } else { len(&subset.not_ready_addresses) };
        let share = (in_subset * max).div_ceil(total.max(1)).min(can_be_added);
        let list = if truncate_ready {
            subset.not_ready_addresses = None;
            &mut subset.addresses
        } else {
            &mut subset.not_ready_addresses
        };
        if let Some(list) = list.as_mut() {
            list.truncate(share);
            can_be_added -= list.len();
        }
    }
    true
}

#[cfg(test)]
mod tests;
