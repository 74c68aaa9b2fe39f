//! The nftables ruleset for a set of service ports, in upstream kube-proxy's nftables shape: one `inet` table;
//! a single verdict-map lookup (`ip daddr . meta l4proto . th dport`) sends a packet for a ClusterIP to its
//! service port's chain, so per-packet cost does not grow with the number of Services; that chain picks an
//! endpoint uniformly at random (`numgen random`) and jumps to the endpoint's chain, which DNATs. Service ports
//! without endpoints are rejected at once from a second map; a ClusterIP on a port it does not serve (and ICMP to
//! it) is rejected, an unallocated address in the service CIDR dropped. Masquerade only where the reply would not
//! come back through this node otherwise: a client outside the cluster CIDR, or a pod reaching itself (hairpin).

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::Ipv4Net;
use sha2::{Digest, Sha256};

use crate::model::{Endpoint, ServicePort};

/// The packet mark that asks `nat-postrouting` to masquerade.
const MASQUERADE_MARK: &str = "0x4000";

/// What the ruleset depends on besides the services.
#[derive(Debug, Clone)]
pub struct RulesetConfig {
    /// The `inet` table the proxy owns.
    pub table: String,
    /// Pod addresses: traffic from elsewhere to a Service is masqueraded.
    pub cluster_cidr: Ipv4Net,
    /// Service addresses: a packet to one that no Service holds is dropped.
    pub service_cidr: Ipv4Net,
}

/// The name of a service port's chain: a hash (so names stay unique whatever the characters) and the readable
/// `ns/name/proto/port`, as upstream names them.
pub fn service_chain(port: &ServicePort) -> String {
    format!("service-{}-{}", short_hash(&port.id()), port.id())
}

/// The name of the chain that traffic from outside the cluster (NodePort, LoadBalancer, externalIPs, localhost)
/// passes before its service port's chain.
pub fn external_chain(port: &ServicePort) -> String {
    format!("external-{}-{}", short_hash(&port.id()), port.id())
}

fn ipv4(ips: &[IpAddr]) -> Vec<Ipv4Addr> {
    ips.iter().filter_map(|ip| if let IpAddr::V4(v4) = ip { Some(*v4) } else { None }).collect()
}

/// The name of the chain that DNATs to one endpoint of a service port.
pub fn endpoint_chain(port: &ServicePort, endpoint: &Endpoint) -> String {
    let id = format!("{}__{}/{}", port.id(), endpoint.ip, endpoint.port);
    format!("endpoint-{}-{id}", short_hash(&id))
}

fn short_hash(s: &str) -> String {
    let digest = Sha256::digest(s.as_bytes());
    digest.iter().take(4).map(|b| format!("{b:02X}")).collect()
}

/// A script for `nft -f -` that replaces the whole table in one transaction. IPv4 only for now: IPv6 cluster IPs
/// are skipped.
pub fn full_sync(config: &RulesetConfig, ports: &[ServicePort]) -> String {
    let mut out = String::new();
    let t = &config.table;
    // Creating then deleting makes the script valid whether or not the table exists; it all commits at once.
    let _ = writeln!(out, "add table inet {t}\ndelete table inet {t}\ntable inet {t} {{");
    let routed: Vec<(&ServicePort, Vec<Ipv4Addr>)> = ports.iter().map(|p| (p, ipv4(&p.cluster_ips))).collect();

    let mut cluster_ips: Vec<String> = routed.iter().flat_map(|(_, ips)| ips.iter().map(|ip| ip.to_string())).collect();
    cluster_ips.sort();
    cluster_ips.dedup();
    let mut service_ips = Vec::new();
    let mut no_endpoints = Vec::new();
    let mut node_ports = Vec::new();
    let mut no_endpoint_node_ports = Vec::new();
    for (port, ips) in &routed {
        let proto = port.protocol.as_str();
        let service = format!("goto {}", service_chain(port));
        let external = format!("goto {}", external_chain(port));
        let mut destinations: Vec<(Ipv4Addr, &String)> = ips.iter().map(|ip| (*ip, &service)).collect();
        destinations.extend(ipv4(&port.external_ips).into_iter().map(|ip| (ip, &external)));
        if port.localhost {
            destinations.push((Ipv4Addr::LOCALHOST, &external));
        }
        for (ip, verdict) in destinations {
            let key = format!("{ip} . {proto} . {}", port.port);
            if port.endpoints.is_empty() {
                no_endpoints.push(format!("{key} : goto reject-chain"));
            } else {
                service_ips.push(format!("{key} : {verdict}"));
            }
        }
        if let Some(node_port) = port.node_port {
            let key = format!("{proto} . {node_port}");
            if port.endpoints.is_empty() {
                no_endpoint_node_ports.push(format!("{key} : goto reject-chain"));
            } else {
                node_ports.push(format!("{key} : {external}"));
            }
        }
    }
    let by_address = "ipv4_addr . inet_proto . inet_service : verdict";
    set(&mut out, "set", "cluster-ips", "ipv4_addr", &cluster_ips);
    set(&mut out, "map", "service-ips", by_address, &service_ips);
    set(&mut out, "map", "no-endpoint-services", by_address, &no_endpoints);
    set(&mut out, "map", "service-nodeports", "inet_proto . inet_service : verdict", &node_ports);
    set(&mut out, "map", "no-endpoint-nodeports", "inet_proto . inet_service : verdict", &no_endpoint_node_ports);

    let base = [
        ("nat-prerouting", "nat hook prerouting priority dstnat", "jump services"),
        // nft 1.0.6 knows `dstnat` only at prerouting; -100 is its value.
        ("nat-output", "nat hook output priority -100", "jump services"),
        ("nat-postrouting", "nat hook postrouting priority srcnat", "jump masquerading"),
    ];
    for (name, hook, rule) in base {
        let _ = writeln!(out, "  chain {name} {{\n    type {hook}; policy accept;\n    {rule}\n  }}");
    }
    for hook in ["input", "forward", "output"] {
        // route_localnet lets localhost Services work; it must not let other hosts reach 127.0.0.0/8 services.
        let guard = if hook == "input" {
            "\n    iifname != \"lo\" ip daddr 127.0.0.0/8 ct state new drop comment \"martian localhost traffic\""
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "  chain filter-{hook} {{\n    type filter hook {hook} priority filter - 10; policy accept;{guard}\n    ct \
             state new jump service-endpoints-check\n    ct state new jump cluster-ips-check\n  }}"
        );
    }
    let _ = writeln!(
        out,
        "  chain services {{\n    ip daddr . meta l4proto . th dport vmap @service-ips\n    fib daddr type local meta \
         l4proto . th dport vmap @service-nodeports\n  }}\n  chain service-endpoints-check {{\n    ip daddr . meta \
         l4proto . th dport vmap @no-endpoint-services\n    fib daddr type local meta l4proto . th dport vmap \
         @no-endpoint-nodeports\n  }}\n  chain \
         cluster-ips-check {{\n    ip daddr @cluster-ips reject comment \"a port the ClusterIP does not serve\"\n    \
         ip daddr {} drop comment \"an unallocated ClusterIP\"\n  }}\n  chain reject-chain {{\n    reject\n  }}\n  \
         chain mark-for-masquerade {{\n    meta mark set meta mark or {MASQUERADE_MARK}\n  }}\n  chain masquerading \
         {{\n    meta mark & {MASQUERADE_MARK} == 0 return\n    meta mark set meta mark xor {MASQUERADE_MARK}\n    \
         masquerade fully-random\n  }}",
        config.service_cidr
    );
    for (port, ips) in &routed {
        if port.endpoints.is_empty() || ips.is_empty() {
            continue;
        }
        service_chain_rules(&mut out, config, port, ips);
        if port.node_port.is_some() || port.localhost || !port.external_ips.is_empty() {
            // From outside the cluster (or from the node's localhost): always masqueraded, so replies come back
            // through this node.
            let _ = writeln!(
                out,
                "  chain {} {{\n    jump mark-for-masquerade\n    goto {}\n  }}",
                external_chain(port),
                service_chain(port)
            );
        }
        for endpoint in &port.endpoints {
            endpoint_chain_rules(&mut out, port, endpoint);
        }
    }
    out.push_str("}\n");
    out
}

fn set(out: &mut String, kind: &str, name: &str, type_: &str, elements: &[String]) {
    let _ = write!(out, "  {kind} {name} {{\n    type {type_};\n");
    if !elements.is_empty() {
        let _ = writeln!(out, "    elements = {{\n      {}\n    }}", elements.join(",\n      "));
    }
    out.push_str("  }\n");
}

fn service_chain_rules(out: &mut String, config: &RulesetConfig, port: &ServicePort, ips: &[Ipv4Addr]) {
    let _ = writeln!(out, "  chain {} {{", service_chain(port));
    for ip in ips {
        let _ = writeln!(
            out,
            "    ip daddr {ip} meta l4proto {} th dport {} ip saddr != {} jump mark-for-masquerade",
            port.protocol.as_str(),
            port.port,
            config.cluster_cidr
        );
    }
    let targets: Vec<String> =
        port.endpoints.iter().enumerate().map(|(i, e)| format!("{i} : goto {}", endpoint_chain(port, e))).collect();
    let _ = writeln!(out, "    numgen random mod {} vmap {{ {} }}\n  }}", targets.len(), targets.join(", "));
}

fn endpoint_chain_rules(out: &mut String, port: &ServicePort, endpoint: &Endpoint) {
    let _ = writeln!(
        out,
        "  chain {} {{\n    ip saddr {ip} jump mark-for-masquerade\n    meta l4proto {} dnat ip to {ip}:{}\n  }}",
        endpoint_chain(port, endpoint),
        port.protocol.as_str(),
        endpoint.port,
        ip = endpoint.ip,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Protocol;

    fn port(name: &str, ip: &str, endpoints: &[&str]) -> ServicePort {
        ServicePort {
            namespace: "default".into(),
            service: name.into(),
            port_name: "http".into(),
            protocol: Protocol::Tcp,
            cluster_ips: vec![ip.parse().unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))],
            port: 80,
            node_port: None,
            external_ips: vec![],
            localhost: false,
            endpoints: endpoints.iter().filter_map(|e| e.parse().ok()).map(|ip| Endpoint { ip, port: 8080 }).collect(),
        }
    }

    fn config() -> RulesetConfig {
        RulesetConfig {
            table: "skiff".into(),
            cluster_cidr: Ipv4Net::new(std::net::Ipv4Addr::new(10, 42, 0, 0), 16).unwrap_or_default(),
            service_cidr: Ipv4Net::new(std::net::Ipv4Addr::new(10, 43, 0, 0), 16).unwrap_or_default(),
        }
    }

    #[test]
    fn a_cluster_ip_with_endpoints_and_one_without() {
        let web = port("web", "10.43.0.10", &["10.42.0.2", "10.42.0.3"]);
        let script = full_sync(&config(), &[web.clone(), port("empty", "10.43.0.11", &[])]);
        let svc = service_chain(&web);
        let ep2 = endpoint_chain(&web, &web.endpoints[0]);
        let ep3 = endpoint_chain(&web, &web.endpoints[1]);
        assert!(svc.starts_with("service-") && svc.ends_with("-default/web/tcp/http"), "{svc}");
        assert!(ep2.ends_with("-default/web/tcp/http__10.42.0.2/8080"), "{ep2}");
        let expected_maps = format!(
            "  set cluster-ips {{\n    type ipv4_addr;\n    elements = {{\n      10.43.0.10,\n      10.43.0.11\n    }}\n  \
             }}\n  map service-ips {{\n    type ipv4_addr . inet_proto . inet_service : verdict;\n    elements = {{\n      \
             10.43.0.10 . tcp . 80 : goto {svc}\n    }}\n  }}\n  map no-endpoint-services {{\n    type ipv4_addr . \
             inet_proto . inet_service : verdict;\n    elements = {{\n      10.43.0.11 . tcp . 80 : goto reject-chain\n    \
             }}\n  }}\n"
        );
        assert!(script.contains(&expected_maps), "{script}");
        let expected_chains = format!(
            "  chain {svc} {{\n    ip daddr 10.43.0.10 meta l4proto tcp th dport 80 ip saddr != 10.42.0.0/16 jump \
             mark-for-masquerade\n    numgen random mod 2 vmap {{ 0 : goto {ep2}, 1 : goto {ep3} }}\n  }}\n  chain {ep2} \
             {{\n    ip saddr 10.42.0.2 jump mark-for-masquerade\n    meta l4proto tcp dnat ip to 10.42.0.2:8080\n  }}\n"
        );
        assert!(script.contains(&expected_chains), "{script}");
        assert!(script.starts_with("add table inet skiff\ndelete table inet skiff\ntable inet skiff {\n"), "{script}");
        assert!(script.contains("ip daddr 10.43.0.0/16 drop"), "{script}");
        assert!(!script.contains("empty/tcp"), "a Service without endpoints has no chain: {script}");
    }

    #[test]
    fn node_ports_load_balancers_and_external_ips_enter_through_the_external_chain() {
        let mut lb = port("lb", "10.43.0.20", &["10.42.0.2"]);
        lb.node_port = Some(30080);
        lb.external_ips = vec!["192.168.200.100".parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))];
        lb.localhost = true;
        let mut empty = port("empty", "10.43.0.21", &[]);
        empty.node_port = Some(30081);
        let script = full_sync(&config(), &[empty, lb.clone()]);
        let (svc, ext) = (service_chain(&lb), external_chain(&lb));
        assert!(ext.starts_with("external-") && ext.ends_with("-default/lb/tcp/http"), "{ext}");
        let service_ips = format!(
            "  map service-ips {{\n    type ipv4_addr . inet_proto . inet_service : verdict;\n    elements = {{\n      \
             10.43.0.20 . tcp . 80 : goto {svc},\n      192.168.200.100 . tcp . 80 : goto {ext},\n      127.0.0.1 . tcp \
             . 80 : goto {ext}\n    }}\n  }}\n"
        );
        assert!(script.contains(&service_ips), "{script}");
        let node_ports = format!(
            "  map service-nodeports {{\n    type inet_proto . inet_service : verdict;\n    elements = {{\n      tcp . \
             30080 : goto {ext}\n    }}\n  }}\n  map no-endpoint-nodeports {{\n    type inet_proto . inet_service : \
             verdict;\n    elements = {{\n      tcp . 30081 : goto reject-chain\n    }}\n  }}\n"
        );
        assert!(script.contains(&node_ports), "{script}");
        let external = format!("  chain {ext} {{\n    jump mark-for-masquerade\n    goto {svc}\n  }}\n");
        assert!(script.contains(&external), "{script}");
        assert!(script.contains("fib daddr type local meta l4proto . th dport vmap @service-nodeports"), "{script}");
        assert!(script.contains("iifname != \"lo\" ip daddr 127.0.0.0/8 ct state new drop"), "{script}");
        let plain = full_sync(&config(), &[port("web", "10.43.0.10", &["10.42.0.2"])]);
        assert!(!plain.contains("chain external-"), "a ClusterIP Service has no external chain: {plain}");
    }

    #[test]
    fn chain_names_are_stable_and_distinct() {
        let a = port("a", "10.43.0.1", &["10.42.0.2"]);
        let b = port("b", "10.43.0.2", &["10.42.0.2"]);
        assert_eq!(service_chain(&a), service_chain(&a.clone()));
        assert_ne!(service_chain(&a), service_chain(&b));
        assert_ne!(endpoint_chain(&a, &a.endpoints[0]), endpoint_chain(&b, &b.endpoints[0]));
    }
}
