//! Upstream's mirroring `reconciler.reconcile` as a pure function: one slice per (address type, port set) of a
//! hand-written Endpoints object, at most `max_per_subset` addresses from each subset, ready addresses with
//! `ready: true` and not-ready ones with `ready: false`; invalid IPs are skipped.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{EndpointAddress, Endpoints};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::slices::plan::Plan;
use crate::slices::{endpoint_key, ports_key};
use crate::{ANNOTATION_TRIGGER_TIME, LABEL_MANAGED_BY, LABEL_SERVICE_NAME, MIRRORING_CONTROLLER};

/// Upstream's default `--mirroring-max-endpoints-per-subset`.
pub const MAX_ENDPOINTS_PER_SUBSET: usize = 1000;

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

type Key = (String, crate::slices::PortsKey);

fn address_to_endpoint(address: &EndpointAddress, ready: bool) -> Option<(Endpoint, &'static str)> {
    let ip: IpAddr = address.ip.parse().ok()?;
    let address_type = if ip.is_ipv4() { "IPv4" } else { "IPv6" };
    let endpoint = Endpoint {
        addresses: vec![ip.to_string()],
        conditions: Some(EndpointConditions { ready: Some(ready), ..Default::default() }),
        target_ref: address.target_ref.clone(),
        node_name: address.node_name.clone(),
        hostname: address.hostname.clone().filter(|h| !h.is_empty()),
        ..Default::default()
    };
    Some((endpoint, address_type))
}

/// A new mirrored slice (upstream's `newEndpointSlice`): the Endpoints' labels and annotations (but the trigger
/// time and kubectl's last-applied configuration), owned by the Endpoints.
pub fn new_slice(endpoints: &Endpoints, ports: Vec<EndpointPort>, address_type: &str) -> EndpointSlice {
    let name = endpoints.metadata.name.clone().unwrap_or_default();
    let mut labels = endpoints.metadata.labels.clone().unwrap_or_default();
    labels.insert(LABEL_SERVICE_NAME.into(), name.clone());
    labels.insert(LABEL_MANAGED_BY.into(), MIRRORING_CONTROLLER.into());
    let mut annotations = endpoints.metadata.annotations.clone().unwrap_or_default();
    annotations.remove(ANNOTATION_TRIGGER_TIME);
    annotations.remove(LAST_APPLIED);
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}-")),
            namespace: endpoints.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: Some(annotations).filter(|a| !a.is_empty()),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Endpoints".into(),
                name,
                uid: endpoints.metadata.uid.clone().unwrap_or_default(),
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

/// The plan mirroring `endpoints` over its `existing` mirrored slices. Also returns how many addresses were
/// skipped as invalid IPs.
pub fn plan(endpoints: &Endpoints, existing: &[Arc<EndpointSlice>], max_per_subset: usize) -> (Plan, usize) {
    let mut desired: BTreeMap<Key, (Vec<EndpointPort>, Vec<Endpoint>)> = BTreeMap::new();
    let mut invalid = 0;
    for subset in endpoints.subsets.iter().flatten() {
        let ports: Vec<EndpointPort> = subset
            .ports
            .iter()
            .flatten()
            .map(|p| EndpointPort {
                name: Some(p.name.clone().unwrap_or_default()),
                port: Some(p.port),
                protocol: Some(p.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: p.app_protocol.clone(),
            })
            .collect();
        let port_key = ports_key(Some(&ports));
        let addresses = subset.addresses.iter().flatten().map(|a| (a, true));
        let not_ready = subset.not_ready_addresses.iter().flatten().map(|a| (a, false));
        let mut added = 0;
        for (address, ready) in addresses.chain(not_ready) {
            if added >= max_per_subset {
                break;
            }
            let Some((endpoint, address_type)) = address_to_endpoint(address, ready) else {
                invalid += 1;
                continue;
            };
            added += 1;
            let entry = desired
                .entry((address_type.to_string(), port_key.clone()))
                .or_insert_with(|| (ports.clone(), Vec::new()));
            let key = endpoint_key(&endpoint);
            match entry.1.iter_mut().find(|e| endpoint_key(e) == key) {
                Some(same) => *same = endpoint,
                None => entry.1.push(endpoint),
            }
        }
    }

    let mut existing_by_key: BTreeMap<Key, Vec<Arc<EndpointSlice>>> = BTreeMap::new();
    for slice in existing {
        existing_by_key
            .entry((slice.address_type.clone(), ports_key(slice.ports.as_ref())))
            .or_default()
            .push(slice.clone());
    }

    let mut plan = Plan::default();
    for (key, (ports, mut wanted)) in desired {
        wanted.truncate(max_per_subset);
        let slices = existing_by_key.remove(&key).unwrap_or_default();
        let mut slice = new_slice(endpoints, ports, &key.0);
        slice.endpoints = wanted;
        let Some((first, rest)) = slices.split_first() else {
            plan.create.push(slice);
            continue;
        };
        plan.delete.extend(rest.iter().cloned());
        if !same_mirror(first, &slice) {
            slice.metadata.generate_name = None;
            slice.metadata.name = first.metadata.name.clone();
            slice.metadata.resource_version = first.metadata.resource_version.clone();
            plan.update.push(slice);
        }
    }
    plan.delete.extend(existing_by_key.into_values().flatten());

    // Recycle slices that would be deleted for those that would be created, address type permitting.
    let mut i = 0;
    while i < plan.delete.len() && !plan.create.is_empty() {
        let position = plan.create.iter().rposition(|c| c.address_type == plan.delete[i].address_type);
        match position {
            Some(position) => {
                let doomed = plan.delete.remove(i);
                let mut slice = plan.create.remove(position);
                slice.metadata.generate_name = None;
                slice.metadata.name = doomed.metadata.name.clone();
                slice.metadata.resource_version = doomed.metadata.resource_version.clone();
                plan.update.push(slice);
            }
            None => i += 1,
        }
    }
    (plan, invalid)
}

/// Whether an existing mirrored slice already says what `wanted` says (endpoints as a set, labels, annotations).
fn same_mirror(existing: &EndpointSlice, wanted: &EndpointSlice) -> bool {
    let by_key = |slice: &EndpointSlice| -> BTreeMap<_, Endpoint> {
        slice.endpoints.iter().map(|e| (endpoint_key(e), e.clone())).collect()
    };
    existing.endpoints.len() == wanted.endpoints.len()
        && by_key(existing) == by_key(wanted)
        && existing.metadata.labels.clone().unwrap_or_default() == wanted.metadata.labels.clone().unwrap_or_default()
        && existing.metadata.annotations.clone().unwrap_or_default()
            == wanted.metadata.annotations.clone().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn endpoints(subsets: serde_json::Value) -> Endpoints {
        serde_json::from_value(json!({
            "metadata": {"name": "numbers-api", "namespace": "ns", "uid": "ep-uid", "labels": {"team": "a"},
                "annotations": {LAST_APPLIED: "{}", "note": "kept"}},
            "subsets": subsets
        }))
        .expect("endpoints")
    }

    fn created(plan: &Plan) -> Vec<Arc<EndpointSlice>> {
        plan.create
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let mut s = s.clone();
                s.metadata.name = Some(format!("numbers-api-{i}"));
                s.metadata.resource_version = Some("1".into());
                Arc::new(s)
            })
            .collect()
    }

    #[test]
    fn mirrors_addresses_ports_labels_and_annotations() {
        let ep = endpoints(
            json!([{"addresses": [{"ip": "192.168.123.234"}], "notReadyAddresses": [{"ip": "192.168.123.235"}],
            "ports": [{"port": 80}]}]),
        );
        let (plan, invalid) = plan(&ep, &[], MAX_ENDPOINTS_PER_SUBSET);
        assert_eq!(invalid, 0);
        assert_eq!(plan.create.len(), 1);
        let slice = &plan.create[0];
        let labels = slice.metadata.labels.clone().expect("labels");
        assert_eq!(labels.get(LABEL_MANAGED_BY).map(String::as_str), Some(MIRRORING_CONTROLLER));
        assert_eq!(labels.get(LABEL_SERVICE_NAME).map(String::as_str), Some("numbers-api"));
        assert_eq!(labels.get("team").map(String::as_str), Some("a"));
        let annotations = slice.metadata.annotations.clone().expect("annotations");
        assert!(!annotations.contains_key(LAST_APPLIED) && annotations.contains_key("note"));
        let ready: Vec<_> = slice.endpoints.iter().map(|e| e.conditions.as_ref().and_then(|c| c.ready)).collect();
        assert_eq!(ready, [Some(true), Some(false)]);
        let port = &slice.ports.as_ref().expect("ports")[0];
        assert_eq!((port.name.as_deref(), port.port, port.protocol.as_deref()), (Some(""), Some(80), Some("TCP")));
        let existing = created(&plan);
        let (again, _) = super::plan(&ep, &existing, MAX_ENDPOINTS_PER_SUBSET);
        assert!(again.create.is_empty() && again.update.is_empty() && again.delete.is_empty());
    }

    #[test]
    fn port_changes_recycle_the_slice_and_invalid_ips_are_skipped() {
        let ep = endpoints(json!([{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}]));
        let (first, _) = plan(&ep, &[], MAX_ENDPOINTS_PER_SUBSET);
        let existing = created(&first);
        let changed =
            endpoints(json!([{"addresses": [{"ip": "10.0.0.1"}, {"ip": "nonsense"}], "ports": [{"port": 8080}]}]));
        let (next, invalid) = plan(&changed, &existing, MAX_ENDPOINTS_PER_SUBSET);
        assert_eq!(invalid, 1);
        assert!(next.create.is_empty() && next.delete.is_empty());
        assert_eq!(next.update.len(), 1);
        assert_eq!(next.update[0].metadata.name.as_deref(), Some("numbers-api-0"));
        let (gone, _) = plan(&endpoints(json!([])), &existing, MAX_ENDPOINTS_PER_SUBSET);
        assert_eq!(gone.delete.len(), 1);
    }
}
