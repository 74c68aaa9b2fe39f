//! UDP has no connection to close: a conntrack entry keeps sending a client's datagrams to the endpoint it was
//! first DNATed to, even after that endpoint is gone — the client is black-holed until the entry times out.
//! After every applied sync the proxy deletes the entries that point at UDP endpoints which left their service
//! port, and the entries of UDP service ports that just got their first endpoint (traffic to them was being
//! rejected), as upstream kube-proxy's conntrack cleanup does. Deletion runs the `conntrack` tool
//! (conntrack-tools): netlink conntrack deletion by filter has no maintained Rust crate.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;

use crate::model::{Protocol, ServicePort};

/// A set of UDP conntrack entries: to `dst` (any local address when `None`) on `dst_port`, answered by
/// `endpoint` (anyone when `None`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct StaleFlows {
    pub dst: Option<IpAddr>,
    pub dst_port: u16,
    pub endpoint: Option<IpAddr>,
}

impl StaleFlows {
    /// The `conntrack -D` arguments that select these entries.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec!["-D".to_string(), "-p".into(), "udp".into()];
        if let Some(dst) = self.dst {
            args.extend(["--orig-dst".into(), dst.to_string()]);
        }
        args.extend(["--orig-port-dst".into(), self.dst_port.to_string()]);
        if let Some(endpoint) = self.endpoint {
            args.extend(["--reply-src".into(), endpoint.to_string()]);
        }
        args
    }
}

/// Every destination clients use for `port`: (address or any node address, port).
fn destinations(port: &ServicePort) -> Vec<(Option<IpAddr>, u16)> {
    let mut out: Vec<(Option<IpAddr>, u16)> =
        port.cluster_ips.iter().chain(&port.external_ips).map(|ip| (Some(*ip), port.port)).collect();
    if port.localhost {
        out.push((Some(IpAddr::V4(Ipv4Addr::LOCALHOST)), port.port));
    }
    out.extend(port.node_port.map(|p| (None, p)));
    out
}

/// The UDP entries left stale by these service port changes, each (before, after; `None`: not there).
pub fn stale_udp_flows<'a>(
    changes: impl IntoIterator<Item = (Option<&'a ServicePort>, Option<&'a ServicePort>)>,
) -> BTreeSet<StaleFlows> {
    let mut out = BTreeSet::new();
    for (before, after) in changes {
        if let Some(before) = before.filter(|p| p.protocol == Protocol::Udp) {
            for endpoint in &before.endpoints {
                if after.is_some_and(|a| a.endpoints.iter().any(|e| e.ip == endpoint.ip && e.port == endpoint.port)) {
                    continue;
                }
                for (dst, dst_port) in destinations(before) {
                    out.insert(StaleFlows { dst, dst_port, endpoint: Some(endpoint.ip) });
                }
            }
        }
        if let Some(after) = after.filter(|p| p.protocol == Protocol::Udp && !p.endpoints.is_empty())
            && before.is_none_or(|b| b.endpoints.is_empty())
        {
            for (dst, dst_port) in destinations(after) {
                out.insert(StaleFlows { dst, dst_port, endpoint: None });
            }
        }
    }
    out
}

/// Deletes the entries; finding none is not an error. Returns how many filters failed.
pub fn delete(flows: &BTreeSet<StaleFlows>) -> usize {
    let mut failed = 0;
    for flow in flows {
        match Command::new("conntrack").args(flow.args()).output() {
            // conntrack exits 1 when nothing matched.
            Ok(out) if out.status.success() || String::from_utf8_lossy(&out.stderr).contains(" 0 flow entries") => {}
            outcome => {
                tracing::warn!(?flow, ?outcome, "deleting stale UDP conntrack entries failed");
                failed += 1;
            }
        }
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Endpoint;
    use crate::ruleset::{Ruleset, RulesetConfig};

    fn config() -> RulesetConfig {
        RulesetConfig {
            table: "skiff".into(),
            cluster_cidr: "10.42.0.0/16".parse().unwrap_or_default(),
            service_cidr: "10.43.0.0/16".parse().unwrap_or_default(),
        }
    }

    fn dns(protocol: Protocol, endpoints: &[&str]) -> ServicePort {
        ServicePort {
            namespace: "kube-system".into(),
            service: "kube-dns".into(),
            port_name: "dns".into(),
            protocol,
            cluster_ips: vec![IpAddr::V4(Ipv4Addr::new(10, 43, 0, 10))],
            port: 53,
            node_port: Some(30053),
            endpoints: endpoints
                .iter()
                .filter_map(|ip| ip.parse().ok())
                .map(|ip| Endpoint { ip, port: 53, local: true })
                .collect(),
            ..Default::default()
        }
    }

    fn flows(before: Vec<ServicePort>, after: Vec<ServicePort>) -> Vec<Vec<String>> {
        let applied = Ruleset::new(&config(), before);
        let update = applied.plan_to(after);
        stale_udp_flows(update.port_changes(&applied)).iter().map(StaleFlows::args).collect()
    }

    fn args(s: &str) -> Vec<String> {
        s.split(' ').map(String::from).collect()
    }

    #[test]
    fn a_departed_udp_endpoint_loses_its_entries_on_every_destination() {
        let stale =
            flows(vec![dns(Protocol::Udp, &["10.42.0.2", "10.42.0.3"])], vec![dns(Protocol::Udp, &["10.42.0.3"])]);
        assert_eq!(
            stale,
            [
                args("-D -p udp --orig-port-dst 30053 --reply-src 10.42.0.2"),
                args("-D -p udp --orig-dst 10.43.0.10 --orig-port-dst 53 --reply-src 10.42.0.2"),
            ]
        );
    }

    #[test]
    fn a_udp_service_port_getting_its_first_endpoint_forgets_earlier_flows() {
        let stale = flows(vec![dns(Protocol::Udp, &[])], vec![dns(Protocol::Udp, &["10.42.0.2"])]);
        assert_eq!(
            stale,
            [args("-D -p udp --orig-port-dst 30053"), args("-D -p udp --orig-dst 10.43.0.10 --orig-port-dst 53")]
        );
    }

    #[test]
    fn tcp_and_unchanged_ports_leave_conntrack_alone() {
        assert!(flows(vec![dns(Protocol::Tcp, &["10.42.0.2"])], vec![dns(Protocol::Tcp, &[])]).is_empty());
        let same = vec![dns(Protocol::Udp, &["10.42.0.2"])];
        assert!(flows(same.clone(), same).is_empty());
        // A removed UDP service takes its endpoints' entries with it.
        assert_eq!(flows(vec![dns(Protocol::Udp, &["10.42.0.2"])], vec![]).len(), 2);
    }
}
