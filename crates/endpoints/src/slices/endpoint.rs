//! One pod as an EndpointSlice endpoint and its ports (upstream's `podToEndpoint` and `getEndpointPorts`), the
//! identity upstream hashes an endpoint by, and the labels a controller-managed slice carries.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ObjectReference, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};

use crate::pod::{PodInfo, service_ip_set};
use crate::{LABEL_HEADLESS, LABEL_MANAGED_BY, LABEL_SERVICE_NAME};

/// The ports a pod serves for `service`: one per Service port whose target the pod has, `name` always present
/// (empty for an unnamed port). A headless Service without ports gets none.
pub fn endpoint_ports(service: &Service, pod: &PodInfo) -> Vec<EndpointPort> {
    let ports = service.spec.as_ref().and_then(|s| s.ports.as_ref());
    ports
        .into_iter()
        .flatten()
        .filter_map(|service_port| {
            let port = pod.find_port(service_port)?;
            Some(EndpointPort {
                name: Some(service_port.name.clone().unwrap_or_default()),
                port: Some(port),
                protocol: Some(service_port.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: service_port.app_protocol.clone(),
            })
        })
        .collect()
}

/// The endpoint for `pod`: its address of the slice's family, conditions exactly as upstream, node, hostname
/// (when `spec.subdomain` names the Service) and a reference to the pod. `None` without an address of the family.
pub fn pod_to_endpoint(service: &Service, pod: &PodInfo, ipv6: bool) -> Option<Endpoint> {
    let address = pod.ip_of_family(ipv6)?;
    let publish = service.spec.as_ref().and_then(|s| s.publish_not_ready_addresses).unwrap_or(false);
    let serving = pod.ready;
    let terminating = pod.terminating;
    // Ready is never true for a terminating pod unless the Service publishes not-ready addresses.
    let ready = publish || (pod.ready && !terminating);
    let namespace = service.metadata.namespace.as_deref().unwrap_or_default();
    let name = service.metadata.name.as_deref().unwrap_or_default();
    Some(Endpoint {
        addresses: vec![address.to_string()],
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        hostname: pod.hostname_for(namespace, name).map(str::to_string),
        node_name: pod.node_name.clone(),
        target_ref: Some(ObjectReference {
            kind: Some("Pod".into()),
            namespace: Some(pod.namespace.clone()),
            name: Some(pod.name.clone()),
            uid: Some(pod.uid.clone()).filter(|u| !u.is_empty()),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// What upstream hashes an endpoint by: its sorted addresses, hostname and target's namespace and name.
pub type EndpointKey = (Vec<String>, Option<String>, Option<(Option<String>, Option<String>)>);

pub fn endpoint_key(endpoint: &Endpoint) -> EndpointKey {
    let mut addresses = endpoint.addresses.clone();
    addresses.sort();
    let target = endpoint.target_ref.as_ref().map(|r| (r.namespace.clone(), r.name.clone()));
    (addresses, endpoint.hostname.clone(), target)
}

/// A port set's identity regardless of order; an absent name or protocol counts as `""` and `TCP`.
pub type PortsKey = Vec<(String, i32, String, Option<String>)>;

pub fn ports_key(ports: Option<&Vec<EndpointPort>>) -> PortsKey {
    let mut key: PortsKey = ports
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p.name.clone().unwrap_or_default(),
                p.port.unwrap_or_default(),
                p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                p.app_protocol.clone(),
            )
        })
        .collect();
    key.sort();
    key
}

/// Upstream's `setEndpointSliceLabels`: the Service's labels (reserved keys aside), the headless label when the
/// Service has no cluster IP, the service-name and managed-by labels; and whether the slice's own labels
/// (reserved keys aside) differ from the Service's.
pub fn slice_labels(
    slice: Option<&EndpointSlice>,
    service: &Service,
    manager: &str,
) -> (BTreeMap<String, String>, bool) {
    let reserved = |key: &str| key == LABEL_SERVICE_NAME || key == LABEL_MANAGED_BY || key == LABEL_HEADLESS;
    let mut labels: BTreeMap<String, String> = service
        .metadata
        .labels
        .iter()
        .flatten()
        .filter(|(k, _)| !reserved(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let own: Vec<(&String, &String)> =
        slice.and_then(|s| s.metadata.labels.as_ref()).into_iter().flatten().filter(|(k, _)| !reserved(k)).collect();
    let changed = slice.is_some() && (own.len() != labels.len() || own.iter().any(|(k, v)| labels.get(*k) != Some(*v)));
    if !service_ip_set(service) {
        labels.insert(LABEL_HEADLESS.into(), String::new());
    }
    labels.insert(LABEL_SERVICE_NAME.into(), service.metadata.name.clone().unwrap_or_default());
    labels.insert(LABEL_MANAGED_BY.into(), manager.into());
    (labels, changed)
}
