//! What the data plane must do, independent of nftables: the service ports of a Service (one per cluster IP
//! family and port), each with the endpoints traffic may go to, chosen the way upstream kube-proxy chooses them.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// One port of one Service: the unit the data plane routes (`<ns>/<name>/<proto>/<port name>`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServicePort {
    pub namespace: String,
    pub service: String,
    /// The port's name; empty for a Service's single unnamed port.
    pub port_name: String,
    pub protocol: Protocol,
    pub cluster_ips: Vec<IpAddr>,
    pub port: u16,
    /// The port on every node address (NodePort and LoadBalancer Services).
    pub node_port: Option<u16>,
    /// Addresses outside the cluster that also serve `port`: `spec.externalIPs` and, for LoadBalancer Services,
    /// `status.loadBalancer.ingress[].ip`.
    pub external_ips: Vec<IpAddr>,
    /// A LoadBalancer Service is also served on 127.0.0.1:`port` from the node itself, as Docker Desktop does.
    pub localhost: bool,
    /// `sessionAffinity: ClientIP`: how long a client sticks to the endpoint it first reached, in seconds.
    pub affinity_timeout: Option<u32>,
    /// `internalTrafficPolicy: Local`: traffic to the cluster IPs goes only to endpoints on this node.
    pub internal_local: bool,
    /// `externalTrafficPolicy: Local`: traffic from outside goes only to endpoints on this node, not masqueraded.
    pub external_local: bool,
    /// `spec.healthCheckNodePort` (an `externalTrafficPolicy: Local` LoadBalancer): answers with the local
    /// endpoint count, so a load balancer sends traffic only to nodes with endpoints.
    pub health_check_node_port: Option<u16>,
    /// Where traffic goes, sorted; empty means clients are rejected at once.
    pub endpoints: Vec<Endpoint>,
}

impl ServicePort {
    /// Upstream's service port name, which names the rules: `ns/name/tcp/portname`.
    pub fn id(&self) -> String {
        format!("{}/{}/{}/{}", self.namespace, self.service, self.protocol.as_str(), self.port_name)
    }

    /// The endpoints on this node.
    pub fn local_endpoints(&self) -> Vec<Endpoint> {
        self.endpoints.iter().filter(|e| e.local).copied().collect()
    }

    /// Whether any traffic uses only this node's endpoints.
    pub fn uses_local_endpoints(&self) -> bool {
        self.internal_local || (self.external_local && self.is_external())
    }

    /// Whether the port is reachable from outside the cluster (NodePort, LoadBalancer, externalIPs, localhost).
    pub fn is_external(&self) -> bool {
        self.node_port.is_some() || self.localhost || !self.external_ips.is_empty()
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }

    fn parse(s: Option<&str>) -> Option<Protocol> {
        match s.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }
}

/// An endpoint address and the target port it serves this service port on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    pub ip: IpAddr,
    pub port: u16,
    /// On the node this proxy runs on (the EndpointSlice's `nodeName`).
    pub local: bool,
}

/// Upstream's default `sessionAffinityConfig.clientIP.timeoutSeconds`: three hours.
const DEFAULT_AFFINITY_TIMEOUT: u32 = 10_800;

/// The service ports of `service` without endpoints (which [`ServicePort::with_endpoints`] adds): all that
/// routing reads of a Service. Services that the proxy does not route (ExternalName, headless, no cluster IP yet)
/// have none.
pub fn service_templates(service: &Service) -> Vec<ServicePort> {
    let Some(spec) = &service.spec else { return Vec::new() };
    if spec.type_.as_deref() == Some("ExternalName") {
        return Vec::new();
    }
    let cluster_ips: Vec<IpAddr> =
        spec.cluster_ips.iter().flatten().chain(spec.cluster_ip.iter()).filter_map(|ip| ip.parse().ok()).fold(
            Vec::new(),
            |mut ips, ip| {
                if !ips.contains(&ip) {
                    ips.push(ip);
                }
                ips
            },
        );
    if cluster_ips.is_empty() {
        return Vec::new();
    }
    let namespace = service.metadata.namespace.clone().unwrap_or_default();
    let name = service.metadata.name.clone().unwrap_or_default();
    let load_balancer = spec.type_.as_deref() == Some("LoadBalancer");
    let mut external_ips: Vec<IpAddr> = spec.external_ips.iter().flatten().filter_map(|ip| ip.parse().ok()).collect();
    if load_balancer {
        let ingress = service.status.as_ref().and_then(|s| s.load_balancer.as_ref()).and_then(|lb| lb.ingress.as_ref());
        external_ips.extend(ingress.into_iter().flatten().filter_map(|i| i.ip.as_deref()?.parse::<IpAddr>().ok()));
    }
    external_ips.sort();
    external_ips.dedup();
    let takes_node_ports = matches!(spec.type_.as_deref(), Some("NodePort" | "LoadBalancer"));
    let affinity_timeout = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        let configured = spec.session_affinity_config.as_ref().and_then(|c| c.client_ip.as_ref()?.timeout_seconds);
        configured.and_then(|t| u32::try_from(t).ok()).filter(|t| *t > 0).unwrap_or(DEFAULT_AFFINITY_TIMEOUT)
    });
    let internal_local = spec.internal_traffic_policy.as_deref() == Some("Local");
    let external_local = takes_node_ports_or_external(spec) && spec.external_traffic_policy.as_deref() == Some("Local");
    let health_check_node_port =
        spec.health_check_node_port.filter(|_| external_local && load_balancer).and_then(|p| u16::try_from(p).ok());
    spec.ports
        .iter()
        .flatten()
        .filter_map(|port| {
            Some(ServicePort {
                namespace: namespace.clone(),
                service: name.clone(),
                port_name: port.name.clone().unwrap_or_default(),
                protocol: Protocol::parse(port.protocol.as_deref())?,
                cluster_ips: cluster_ips.clone(),
                port: u16::try_from(port.port).ok()?,
                node_port: port.node_port.filter(|_| takes_node_ports).and_then(|p| u16::try_from(p).ok()),
                external_ips: external_ips.clone(),
                localhost: load_balancer,
                affinity_timeout,
                internal_local,
                external_local,
                health_check_node_port,
                endpoints: Vec::new(),
            })
        })
        .collect()
}

/// `externalTrafficPolicy` applies to Services reachable from outside: NodePort, LoadBalancer, or any with
/// externalIPs.
fn takes_node_ports_or_external(spec: &k8s_openapi::api::core::v1::ServiceSpec) -> bool {
    matches!(spec.type_.as_deref(), Some("NodePort" | "LoadBalancer"))
        || spec.external_ips.as_ref().is_some_and(|ips| !ips.is_empty())
}

/// All that routing reads of an EndpointSlice, as seen from one node: its ports, and the endpoints traffic may
/// use with whether they are ready and on this node. A tenth of the slice's size, which at 10,000 Services is
/// most of the proxy's memory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SliceEndpoints {
    /// (name, protocol, target port).
    ports: Vec<(String, Protocol, u16)>,
    endpoints: Vec<SliceEndpoint>,
}

/// An endpoint that may take traffic: ready, or serving while it terminates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SliceEndpoint {
    /// The first address (one address per endpoint is routed, as upstream does).
    ip: IpAddr,
    /// Ready and not terminating; otherwise serving and terminating.
    ready: bool,
    /// On the node this proxy runs on (the endpoint's `nodeName`).
    local: bool,
}

impl SliceEndpoints {
    /// What `node` routes from `slice`.
    pub fn new(slice: &EndpointSlice, node: &str) -> SliceEndpoints {
        let ports = slice
            .ports
            .iter()
            .flatten()
            .filter_map(|p| {
                let target = p.port.and_then(|p| u16::try_from(p).ok())?;
                Some((p.name.clone().unwrap_or_default(), Protocol::parse(p.protocol.as_deref())?, target))
            })
            .collect();
        let endpoints = slice
            .endpoints
            .iter()
            .filter_map(|endpoint| {
                let conditions = endpoint.conditions.clone().unwrap_or_default();
                // Unset ready means ready; serving defaults to ready; terminating to false.
                let is_ready = conditions.ready.unwrap_or(true);
                let serving = conditions.serving.unwrap_or(is_ready);
                let is_terminating = conditions.terminating.unwrap_or(false);
                let ready = is_ready && !is_terminating;
                let draining = serving && is_terminating;
                if !ready && !draining {
                    return None;
                }
                let ip = endpoint.addresses.first()?.parse().ok()?;
                Some(SliceEndpoint { ip, ready, local: endpoint.node_name.as_deref() == Some(node) })
            })
            .collect();
        SliceEndpoints { ports, endpoints }
    }
}

impl ServicePort {
    /// This port (a template from [`service_templates`]) with its endpoints from `slices`: the ready ones; when
    /// none is ready, the serving ones that are terminating (upstream's graceful termination), so that
    /// connections drain instead of failing.
    pub fn with_endpoints(&self, slices: &[&SliceEndpoints]) -> ServicePort {
        let mut ready = Vec::new();
        let mut terminating = Vec::new();
        for slice in slices {
            let Some(&(_, _, target)) =
                slice.ports.iter().find(|(name, protocol, _)| *name == self.port_name && *protocol == self.protocol)
            else {
                continue;
            };
            for endpoint in &slice.endpoints {
                let list = if endpoint.ready { &mut ready } else { &mut terminating };
                list.push(Endpoint { ip: endpoint.ip, port: target, local: endpoint.local });
            }
        }
        let mut endpoints = if ready.is_empty() { terminating } else { ready };
        endpoints.sort();
        endpoints.dedup();
        ServicePort { endpoints, ..self.clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ServicePort as SpecPort, ServiceSpec};
    use k8s_openapi::api::discovery::v1::{Endpoint as SliceEndpoint, EndpointConditions, EndpointPort};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn service(type_: &str, cluster_ip: &str) -> Service {
        Service {
            metadata: ObjectMeta { name: Some("web".into()), namespace: Some("shop".into()), ..Default::default() },
            spec: Some(ServiceSpec {
                type_: Some(type_.into()),
                cluster_ip: Some(cluster_ip.into()),
                ports: Some(vec![
                    SpecPort { name: Some("http".into()), port: 80, ..Default::default() },
                    SpecPort { name: Some("dns".into()), port: 53, protocol: Some("UDP".into()), ..Default::default() },
                ]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn endpoint(ip: &str, ready: Option<bool>, serving: Option<bool>, terminating: Option<bool>) -> SliceEndpoint {
        SliceEndpoint {
            addresses: vec![ip.into()],
            conditions: Some(EndpointConditions { ready, serving, terminating }),
            ..Default::default()
        }
    }

    fn slice(endpoints: Vec<SliceEndpoint>) -> EndpointSlice {
        EndpointSlice {
            address_type: "IPv4".into(),
            endpoints,
            ports: Some(vec![
                EndpointPort {
                    name: Some("http".into()),
                    port: Some(8080),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                },
                EndpointPort {
                    name: Some("dns".into()),
                    port: Some(5353),
                    protocol: Some("UDP".into()),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        }
    }

    /// The service ports of `service` with their endpoints from `slices`, as node `node-a` routes them.
    fn service_ports_on_node(service: &Service, slices: &[EndpointSlice]) -> Vec<ServicePort> {
        let slices: Vec<SliceEndpoints> = slices.iter().map(|s| SliceEndpoints::new(s, "node-a")).collect();
        let slices: Vec<&SliceEndpoints> = slices.iter().collect();
        service_templates(service).iter().map(|template| template.with_endpoints(&slices)).collect()
    }

    fn ips(port: &ServicePort) -> Vec<String> {
        port.endpoints.iter().map(|e| format!("{}:{}", e.ip, e.port)).collect()
    }

    #[test]
    fn ready_endpoints_per_port_and_protocol() {
        let slices = [slice(vec![
            endpoint("10.42.0.9", Some(true), None, None),
            endpoint("10.42.0.3", None, None, None),
            endpoint("10.42.0.4", Some(false), Some(false), None),
        ])];
        let ports = service_ports_on_node(&service("ClusterIP", "10.43.0.7"), &slices);
        assert_eq!(ports.len(), 2);
        assert_eq!(ports[0].id(), "shop/web/tcp/http");
        assert_eq!(ports[0].port, 80);
        assert_eq!(ips(&ports[0]), ["10.42.0.3:8080", "10.42.0.9:8080"]);
        assert_eq!(ports[1].id(), "shop/web/udp/dns");
        assert_eq!(ips(&ports[1]), ["10.42.0.3:5353", "10.42.0.9:5353"]);
    }

    #[test]
    fn terminating_serving_endpoints_only_when_none_is_ready() {
        let draining = endpoint("10.42.0.5", Some(false), Some(true), Some(true));
        let gone = endpoint("10.42.0.6", Some(false), Some(false), Some(true));
        let only_terminating = [slice(vec![draining.clone(), gone.clone()])];
        let ports = service_ports_on_node(&service("ClusterIP", "10.43.0.7"), &only_terminating);
        assert_eq!(ips(&ports[0]), ["10.42.0.5:8080"]);
        let with_ready = [slice(vec![draining, gone, endpoint("10.42.0.8", Some(true), None, None)])];
        let ports = service_ports_on_node(&service("ClusterIP", "10.43.0.7"), &with_ready);
        assert_eq!(ips(&ports[0]), ["10.42.0.8:8080"]);
    }

    #[test]
    fn headless_and_external_name_services_are_not_routed() {
        assert!(service_ports_on_node(&service("ClusterIP", "None"), &[]).is_empty());
        assert!(service_ports_on_node(&service("ExternalName", ""), &[]).is_empty());
        let unrouted = service_ports_on_node(&service("ClusterIP", "10.43.0.7"), &[]);
        assert!(unrouted.iter().all(|p| p.endpoints.is_empty()), "no slices, no endpoints");
    }

    #[test]
    fn node_ports_external_ips_and_load_balancer_ingress() {
        use k8s_openapi::api::core::v1::{LoadBalancerIngress, LoadBalancerStatus, ServiceStatus};
        let with_ports = |mut svc: Service| {
            let spec = svc.spec.get_or_insert_with(Default::default);
            for (port, node_port) in spec.ports.iter_mut().flatten().zip([30080, 30053]) {
                port.node_port = Some(node_port);
            }
            spec.external_ips = Some(vec!["192.168.9.9".into(), "not an IP".into()]);
            svc.status = Some(ServiceStatus {
                load_balancer: Some(LoadBalancerStatus {
                    ingress: Some(vec![LoadBalancerIngress { ip: Some("192.168.9.1".into()), ..Default::default() }]),
                }),
                ..Default::default()
            });
            svc
        };
        let lb = service_ports_on_node(&with_ports(service("LoadBalancer", "10.43.0.7")), &[]);
        assert_eq!(lb[0].node_port, Some(30080));
        assert_eq!(lb[1].node_port, Some(30053));
        let expected: Vec<IpAddr> = ["192.168.9.1", "192.168.9.9"].iter().filter_map(|ip| ip.parse().ok()).collect();
        assert_eq!(lb[0].external_ips, expected);
        assert!(lb[0].localhost, "a LoadBalancer answers on localhost");
        let cluster_ip = service_ports_on_node(&with_ports(service("ClusterIP", "10.43.0.7")), &[]);
        assert_eq!(cluster_ip[0].node_port, None, "a ClusterIP Service has no NodePort even if one is set");
        let only_spec: Vec<IpAddr> = ["192.168.9.9"].iter().filter_map(|ip| ip.parse().ok()).collect();
        assert_eq!(
            cluster_ip[0].external_ips, only_spec,
            "externalIPs apply to any type; ingress only to LoadBalancer"
        );
        assert!(!cluster_ip[0].localhost);
    }

    #[test]
    fn affinity_traffic_policies_and_endpoint_locality() {
        use k8s_openapi::api::core::v1::{ClientIPConfig, SessionAffinityConfig};
        let mut local_one = endpoint("10.42.0.2", Some(true), None, None);
        local_one.node_name = Some("node-a".into());
        let mut remote_one = endpoint("10.42.1.2", Some(true), None, None);
        remote_one.node_name = Some("node-b".into());
        let slices = [slice(vec![local_one, remote_one])];
        let mut svc = service("LoadBalancer", "10.43.0.7");
        let spec = svc.spec.get_or_insert_with(Default::default);
        spec.session_affinity = Some("ClientIP".into());
        spec.external_traffic_policy = Some("Local".into());
        spec.internal_traffic_policy = Some("Local".into());
        spec.health_check_node_port = Some(32000);
        let ports = service_ports_on_node(&svc, &slices);
        assert_eq!(ports[0].affinity_timeout, Some(10_800), "upstream's default timeout");
        assert!(ports[0].internal_local && ports[0].external_local);
        assert_eq!(ports[0].health_check_node_port, Some(32000));
        assert_eq!(ips(&ports[0]), ["10.42.0.2:8080", "10.42.1.2:8080"], "every endpoint is kept");
        let local: Vec<String> = ports[0].local_endpoints().iter().map(|e| e.ip.to_string()).collect();
        assert_eq!(local, ["10.42.0.2"], "the endpoint on this node");

        let spec = svc.spec.get_or_insert_with(Default::default);
        spec.session_affinity_config =
            Some(SessionAffinityConfig { client_ip: Some(ClientIPConfig { timeout_seconds: Some(60) }) });
        spec.type_ = Some("ClusterIP".into());
        let ports = service_ports_on_node(&svc, &slices);
        assert_eq!(ports[0].affinity_timeout, Some(60));
        assert!(!ports[0].external_local, "externalTrafficPolicy means nothing without external access");
        assert_eq!(ports[0].health_check_node_port, None);
    }
}
