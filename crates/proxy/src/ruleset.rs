//! The nftables ruleset for a set of service ports, after upstream kube-proxy's nftables shape: one `inet` table;
//! a single verdict-map lookup (`ip daddr . meta l4proto . th dport`) sends a packet for a ClusterIP to its
//! service port's chain, so per-packet cost does not grow with the number of Services; that chain picks an
//! endpoint uniformly at random (`numgen random`) and DNATs to it through a map of its own (slot → address .
//! port). Unlike upstream there is no chain per endpoint (except with session affinity, which needs one to
//! remember the client): the kernel's cost of every commit and of every ruleset dump grows with the number of
//! chains, and at 10,000 Services × 10 endpoints a chain per endpoint is 110,000 of them (`docs/benchmarks.md`).
//! Service ports without endpoints are rejected at once from a second map; a ClusterIP on a port it does not
//! serve (and ICMP to it) is rejected, an unallocated address in the service CIDR dropped. Masquerade only where
//! the reply would not come back through this node otherwise: a client outside the cluster CIDR, or a pod
//! reaching itself (hairpin: a DNATed connection whose source and destination are one endpoint, looked up in a
//! set of `endpoint . endpoint` pairs at postrouting).
//!
//! A [`Ruleset`] is the desired table as data: the fixed skeleton, the elements of the shared maps, and per
//! service port the chains it owns. [`Ruleset::full_script`] writes all of it as one table replacement;
//! [`Ruleset::update_script`] diffs it against the ruleset last applied (the in-memory mirror of the kernel's
//! table) and writes only the change: new sets and chains, chains whose rules changed (flushed and refilled), map
//! elements removed and added (a replaced endpoint is just that), stale chains flushed then deleted and stale
//! sets deleted — one transaction either way.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use ipnet::Ipv4Net;
use sha2::{Digest, Sha256};

use crate::model::{Endpoint, ServicePort};

/// The packet mark that asks `nat-postrouting` to masquerade.
const MASQUERADE_MARK: &str = "0x4000";

/// The shared set and maps, with their element types, in the order the table declares them.
const CLUSTER_IPS: &str = "cluster-ips";
const SERVICE_IPS: &str = "service-ips";
const NO_ENDPOINT_SERVICES: &str = "no-endpoint-services";
const SERVICE_NODEPORTS: &str = "service-nodeports";
const NO_ENDPOINT_NODEPORTS: &str = "no-endpoint-nodeports";
/// `endpoint . endpoint` for every endpoint the table DNATs to: a connection DNATed back to its own source is a
/// pod reaching itself through its Service (hairpin), masqueraded so the reply comes back through the node.
const HAIRPIN_ENDPOINTS: &str = "hairpin-endpoints";
const BY_ADDRESS: &str = "ipv4_addr . inet_proto . inet_service : verdict";
const BY_PORT: &str = "inet_proto . inet_service : verdict";
const SHARED: [(&str, &str, &str); 6] = [
    ("set", CLUSTER_IPS, "ipv4_addr"),
    ("map", SERVICE_IPS, BY_ADDRESS),
    ("map", NO_ENDPOINT_SERVICES, BY_ADDRESS),
    ("map", SERVICE_NODEPORTS, BY_PORT),
    ("map", NO_ENDPOINT_NODEPORTS, BY_PORT),
    ("set", HAIRPIN_ENDPOINTS, "ipv4_addr . ipv4_addr"),
];

/// What the ruleset depends on besides the services.
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// The name of the chain that balances over this node's endpoints of a service port (traffic policy Local).
pub fn local_chain(port: &ServicePort) -> String {
    format!("local-{}-{}", short_hash(&port.id()), port.id())
}

/// The name of the map from `numgen` slot to endpoint address and port that a balancing chain DNATs through.
pub fn endpoints_map(chain: &str) -> String {
    format!("endpoints-{chain}")
}

/// The name of the set of clients that stick to one endpoint of a service port (session affinity).
pub fn affinity_set(port: &ServicePort, endpoint: &Endpoint) -> String {
    let id = format!("{}__{}/{}", port.id(), endpoint.ip, endpoint.port);
    format!("affinity-{}-{id}", short_hash(&id))
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

fn ipv4(ips: &[IpAddr]) -> Vec<Ipv4Addr> {
    ips.iter().filter_map(|ip| if let IpAddr::V4(v4) = ip { Some(*v4) } else { None }).collect()
}

/// A chain of the table and its rules, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Chain {
    name: String,
    rules: Vec<String>,
}

/// An element of one of the shared sets or maps; a set's element has no verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Element {
    container: &'static str,
    key: String,
    verdict: Option<String>,
}

/// A set or map a service port owns (session affinity's clients; a balancing chain's endpoints), with its
/// declaration and, for a map, its elements (key → element text).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Set {
    kind: &'static str,
    name: String,
    definition: String,
    elements: BTreeMap<String, String>,
}

/// What one service port puts in the table: the chains and sets it owns and its elements in the shared maps.
#[derive(Debug, PartialEq, Eq)]
struct PortRules {
    port: Arc<ServicePort>,
    chains: Vec<Chain>,
    sets: Vec<Set>,
    elements: Vec<Element>,
}

/// The desired table. IPv4 only for now: IPv6 cluster IPs are skipped.
#[derive(Debug, Clone)]
pub struct Ruleset {
    config: RulesetConfig,
    /// By service port id. Shared with the ruleset it was built from where the port did not change, so building
    /// and diffing cost little for the ports that stayed the same.
    ports: BTreeMap<String, Arc<PortRules>>,
    /// Every shared element: (container, key) → verdict. Two ports claiming one key: the first by id wins.
    elements: BTreeMap<(&'static str, String), Option<String>>,
}

impl Ruleset {
    /// The ruleset for `ports`, reusing what `previous` computed for ports that have not changed (a port shared
    /// with `previous` through the same `Arc` is not even compared).
    pub fn new<P: Into<Arc<ServicePort>>>(
        config: &RulesetConfig,
        ports: impl IntoIterator<Item = P>,
        previous: Option<&Ruleset>,
    ) -> Ruleset {
        let reusable = previous.filter(|p| p.config == *config);
        let ports: BTreeMap<String, Arc<PortRules>> = ports
            .into_iter()
            .map(|port| {
                let port: Arc<ServicePort> = port.into();
                let id = port.id();
                let rules = match reusable.and_then(|p| p.ports.get(&id)) {
                    Some(same) if Arc::ptr_eq(&same.port, &port) || same.port == port => same.clone(),
                    _ => Arc::new(port_rules(config, port)),
                };
                (id, rules)
            })
            .collect();
        let mut elements = BTreeMap::new();
        for element in ports.values().flat_map(|p| &p.elements) {
            elements.entry((element.container, element.key.clone())).or_insert_with(|| element.verdict.clone());
        }
        Ruleset { config: config.clone(), ports, elements }
    }

    /// The service port with this id.
    pub fn service_port(&self, id: &str) -> Option<&ServicePort> {
        self.ports.get(id).map(|p| &*p.port)
    }

    /// Every service port, by id.
    pub fn service_ports(&self) -> impl Iterator<Item = &ServicePort> {
        self.ports.values().map(|p| &*p.port)
    }

    /// How many service ports, chains (the proxy's own, besides the fixed skeleton) and shared-map elements.
    pub fn counts(&self) -> (usize, usize, usize) {
        (self.ports.len(), self.ports.values().map(|p| p.chains.len()).sum(), self.elements.len())
    }

    /// A script for `nft -f -` that replaces the whole table in one transaction.
    pub fn full_script(&self) -> String {
        let mut out = String::new();
        let t = &self.config.table;
        // Creating then deleting makes the script valid whether or not the table exists; it all commits at once.
        let _ = writeln!(out, "add table inet {t}\ndelete table inet {t}\ntable inet {t} {{");
        for (kind, name, type_) in SHARED {
            let _ = write!(out, "  {kind} {name} {{\n    type {type_};\n");
            let elements: Vec<String> = self
                .elements
                .iter()
                .filter(|((container, _), _)| *container == name)
                .map(|((_, key), verdict)| element_text(key, verdict.as_deref()))
                .collect();
            if !elements.is_empty() {
                let _ = writeln!(out, "    elements = {{\n      {}\n    }}", elements.join(",\n      "));
            }
            out.push_str("  }\n");
        }
        skeleton(&mut out, &self.config);
        for set in self.ports.values().flat_map(|p| &p.sets) {
            let _ = write!(out, "  {} {} {{\n    {}\n", set.kind, set.name, set.definition);
            if !set.elements.is_empty() {
                let elements: Vec<&str> = set.elements.values().map(String::as_str).collect();
                let _ = writeln!(out, "    elements = {{ {} }}", elements.join(", "));
            }
            out.push_str("  }\n");
        }
        for chain in self.ports.values().flat_map(|p| &p.chains) {
            let _ = writeln!(out, "  chain {} {{", chain.name);
            for rule in &chain.rules {
                let _ = writeln!(out, "    {rule}");
            }
            out.push_str("  }\n");
        }
        out.push_str("}\n");
        out
    }

    /// A script that turns `applied` (what the kernel holds) into this ruleset in one transaction, touching only
    /// what differs; `None` when nothing does. A different configuration replaces the table.
    pub fn update_script(&self, applied: &Ruleset) -> Option<String> {
        if self.config != applied.config {
            return Some(self.full_script());
        }
        let t = &self.config.table;
        let mut new_chains = Vec::new();
        let mut refills = Vec::new();
        let mut stale = Vec::new();
        let mut new_sets = Vec::new();
        let mut stale_sets = Vec::new();
        // Elements of sets that stay: (set, keys removed or changed, element texts added or changed).
        let mut set_changes: Vec<(&Set, Vec<&str>, Vec<&str>)> = Vec::new();
        for (id, port) in &self.ports {
            let old = applied.ports.get(id);
            if old.is_some_and(|old| Arc::ptr_eq(old, port)) {
                continue;
            }
            let before: BTreeMap<&str, &Set> =
                old.iter().flat_map(|o| &o.sets).map(|set| (set.name.as_str(), set)).collect();
            for set in &port.sets {
                match before.get(set.name.as_str()) {
                    None => new_sets.push(set),
                    // A set's declaration cannot change in place; this is rare enough to replace the table.
                    Some(was) if was.definition != set.definition => return Some(self.full_script()),
                    Some(was) if was.elements != set.elements => {
                        let gone = was.elements.iter().filter(|(k, v)| set.elements.get(*k) != Some(*v));
                        let came = set.elements.iter().filter(|(k, v)| was.elements.get(*k) != Some(*v));
                        set_changes.push((
                            set,
                            gone.map(|(k, _)| k.as_str()).collect(),
                            came.map(|(_, v)| v.as_str()).collect(),
                        ));
                    }
                    Some(_) => {}
                }
            }
            if let Some(old) = old {
                stale_sets.extend(old.sets.iter().filter(|set| !port.sets.iter().any(|s| s.name == set.name)));
            }
            match old {
                Some(old) if old.chains == port.chains => {}
                Some(old) => {
                    let before: BTreeMap<&str, &Chain> = old.chains.iter().map(|c| (c.name.as_str(), c)).collect();
                    let after: BTreeMap<&str, &Chain> = port.chains.iter().map(|c| (c.name.as_str(), c)).collect();
                    for chain in &port.chains {
                        match before.get(chain.name.as_str()) {
                            None => new_chains.push(chain),
                            Some(was) if was.rules != chain.rules => refills.push(chain),
                            Some(_) => {}
                        }
                    }
                    stale.extend(old.chains.iter().filter(|c| !after.contains_key(c.name.as_str())));
                }
                None => new_chains.extend(&port.chains),
            }
        }
        for (id, old) in &applied.ports {
            if !self.ports.contains_key(id) {
                stale.extend(&old.chains);
                stale_sets.extend(&old.sets);
            }
        }
        let mut removed: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        let mut added: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        // Both maps are sorted: one merge walk finds what went, what came and what changed its verdict.
        let (mut before, mut after) = (applied.elements.iter().peekable(), self.elements.iter().peekable());
        loop {
            let order = match (before.peek(), after.peek()) {
                (None, None) => break,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some((old, _)), Some((new, _))) => old.cmp(new),
            };
            let old = if order.is_le() { before.next() } else { None };
            let new = if order.is_ge() { after.next() } else { None };
            if let (Some((_, was)), Some((_, is))) = (old, new)
                && was == is
            {
                continue;
            }
            if let Some(((container, key), _)) = old {
                removed.entry(container).or_default().push(key);
            }
            if let Some(((container, key), verdict)) = new {
                added.entry(container).or_default().push(element_text(key, verdict.as_deref()));
            }
        }
        let unchanged = new_chains.is_empty() && refills.is_empty() && stale.is_empty() && new_sets.is_empty();
        if unchanged && stale_sets.is_empty() && set_changes.is_empty() && removed.is_empty() && added.is_empty() {
            return None;
        }
        // Order matters within the transaction: chains exist before rules and elements point at them, and a chain
        // is deleted only once nothing jumps to it any more.
        let mut out = String::new();
        for set in &new_sets {
            let _ = writeln!(out, "add {} inet {t} {} {{ {} }}", set.kind, set.name, set.definition);
            if !set.elements.is_empty() {
                let elements: Vec<&str> = set.elements.values().map(String::as_str).collect();
                let _ = writeln!(out, "add element inet {t} {} {{ {} }}", set.name, elements.join(", "));
            }
        }
        for (set, gone, came) in &set_changes {
            if !gone.is_empty() {
                let _ = writeln!(out, "delete element inet {t} {} {{ {} }}", set.name, gone.join(", "));
            }
            if !came.is_empty() {
                let _ = writeln!(out, "add element inet {t} {} {{ {} }}", set.name, came.join(", "));
            }
        }
        for chain in &new_chains {
            let _ = writeln!(out, "add chain inet {t} {}", chain.name);
        }
        for chain in &refills {
            let _ = writeln!(out, "flush chain inet {t} {}", chain.name);
        }
        for chain in new_chains.iter().chain(&refills) {
            for rule in &chain.rules {
                let _ = writeln!(out, "add rule inet {t} {} {rule}", chain.name);
            }
        }
        for (container, keys) in removed {
            let _ = writeln!(out, "delete element inet {t} {container} {{ {} }}", keys.join(", "));
        }
        for (container, elements) in added {
            let _ = writeln!(out, "add element inet {t} {container} {{ {} }}", elements.join(", "));
        }
        for chain in &stale {
            let _ = writeln!(out, "flush chain inet {t} {}", chain.name);
        }
        for chain in &stale {
            let _ = writeln!(out, "delete chain inet {t} {}", chain.name);
        }
        for set in &stale_sets {
            let _ = writeln!(out, "delete {} inet {t} {}", set.kind, set.name);
        }
        Some(out)
    }
}

fn element_text(key: &str, verdict: Option<&str>) -> String {
    match verdict {
        Some(verdict) => format!("{key} : {verdict}"),
        None => key.to_string(),
    }
}

/// The base chains and the fixed chains every service port's rules lead through.
fn skeleton(out: &mut String, config: &RulesetConfig) {
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
        "  chain services {{\n    ip daddr . meta l4proto . th dport vmap @{SERVICE_IPS}\n    fib daddr type local \
         meta l4proto . th dport vmap @{SERVICE_NODEPORTS}\n  }}\n  chain service-endpoints-check {{\n    ip daddr . \
         meta l4proto . th dport vmap @{NO_ENDPOINT_SERVICES}\n    fib daddr type local meta l4proto . th dport vmap \
         @{NO_ENDPOINT_NODEPORTS}\n  }}\n  chain cluster-ips-check {{\n    ip daddr @{CLUSTER_IPS} reject comment \"a \
         port the ClusterIP does not serve\"\n    ip daddr {} drop comment \"an unallocated ClusterIP\"\n  }}\n  chain \
         reject-chain {{\n    reject\n  }}\n  chain mark-for-masquerade {{\n    meta mark set meta mark or \
         {MASQUERADE_MARK}\n  }}\n  chain masquerading {{\n    ct status dnat ip saddr . ip daddr \
         @{HAIRPIN_ENDPOINTS} jump mark-for-masquerade comment \"hairpin\"\n    meta mark & {MASQUERADE_MARK} == 0 return\n    meta \
         mark set meta mark xor {MASQUERADE_MARK}\n    masquerade fully-random\n  }}",
        config.service_cidr
    );
}

/// The chains, affinity sets and shared elements of one service port. Traffic to a cluster IP takes the
/// internal chain (all endpoints, or with `internalTrafficPolicy: Local` this node's); traffic from outside takes
/// the external chain, which masquerades and goes to every endpoint, or with `externalTrafficPolicy: Local` keeps
/// the client's address and goes to this node's endpoints (pods and the node itself still reach every endpoint,
/// as upstream short-circuits them).
fn port_rules(config: &RulesetConfig, port: Arc<ServicePort>) -> PortRules {
    let ips = ipv4(&port.cluster_ips);
    let proto = port.protocol.as_str();
    let local = port.local_endpoints();
    let cluster_chain = service_chain(&port);
    let local_chain = local_chain(&port);
    let external = format!("goto {}", external_chain(&port));
    // An empty `ips` means an IPv6-only Service: nothing to route yet.
    let has_endpoints = !port.endpoints.is_empty() && !ips.is_empty();
    let has_local = has_endpoints && !local.is_empty();
    let internal_ok = if port.internal_local { has_local } else { has_endpoints };
    let external_ok = if port.external_local { has_local } else { has_endpoints };
    // No endpoints at all: reject at once. Endpoints, but none here for a Local policy: drop, as upstream does.
    let unavailable = if has_endpoints { "drop" } else { "goto reject-chain" };
    let internal = format!("goto {}", if port.internal_local { &local_chain } else { &cluster_chain });

    let mut elements: Vec<Element> =
        ips.iter().map(|ip| Element { container: CLUSTER_IPS, key: ip.to_string(), verdict: None }).collect();
    let mut destinations: Vec<(Ipv4Addr, bool)> = ips.iter().map(|ip| (*ip, true)).collect();
    destinations.extend(ipv4(&port.external_ips).into_iter().map(|ip| (ip, false)));
    if port.localhost {
        destinations.push((Ipv4Addr::LOCALHOST, false));
    }
    for (ip, is_internal) in destinations {
        let key = format!("{ip} . {proto} . {}", port.port);
        let (ok, verdict) = if is_internal { (internal_ok, &internal) } else { (external_ok, &external) };
        elements.push(if ok {
            Element { container: SERVICE_IPS, key, verdict: Some(verdict.clone()) }
        } else {
            Element { container: NO_ENDPOINT_SERVICES, key, verdict: Some(unavailable.to_string()) }
        });
    }
    if let Some(node_port) = port.node_port {
        let key = format!("{proto} . {node_port}");
        elements.push(if external_ok {
            Element { container: SERVICE_NODEPORTS, key, verdict: Some(external.clone()) }
        } else {
            Element { container: NO_ENDPOINT_NODEPORTS, key, verdict: Some(unavailable.to_string()) }
        });
    }

    let mut chains = Vec::new();
    let mut sets = Vec::new();
    // The cluster chain serves internal traffic under the Cluster policy, and every external client: directly,
    // or as the short-circuit for pods and the node under `externalTrafficPolicy: Local`.
    let cluster_used = has_endpoints && (!port.internal_local || port.is_external());
    let local_used = has_local && port.uses_local_endpoints();
    let masquerade_off_cluster: Vec<String> = ips
        .iter()
        .map(|ip| {
            format!(
                "ip daddr {ip} meta l4proto {proto} th dport {} ip saddr != {} jump mark-for-masquerade",
                port.port, config.cluster_cidr
            )
        })
        .collect();
    if cluster_used {
        let off_cluster = if port.internal_local { &[][..] } else { &masquerade_off_cluster[..] };
        let (chain, map) = balancing_chain(cluster_chain.clone(), off_cluster, &port, &port.endpoints);
        chains.push(chain);
        sets.extend(map);
    }
    if local_used {
        let off_cluster = if port.internal_local { &masquerade_off_cluster[..] } else { &[][..] };
        let (chain, map) = balancing_chain(local_chain.clone(), off_cluster, &port, &local);
        chains.push(chain);
        sets.extend(map);
    }
    if external_ok && port.is_external() {
        let rules = if port.external_local {
            vec![
                format!("ip saddr {} goto {cluster_chain} comment \"pods use every endpoint\"", config.cluster_cidr),
                "fib saddr type local jump mark-for-masquerade comment \"the node itself is masqueraded\"".into(),
                format!("fib saddr type local goto {cluster_chain}"),
                format!("goto {local_chain} comment \"outside clients keep their address\""),
            ]
        } else {
            // From outside the cluster (or from the node's localhost): masqueraded, so replies come back here.
            vec!["jump mark-for-masquerade".into(), format!("goto {cluster_chain}")]
        };
        chains.push(Chain { name: external_chain(&port), rules });
    }
    let routed: &[Endpoint] = if cluster_used {
        &port.endpoints
    } else if local_used {
        &local
    } else {
        &[]
    };
    for endpoint in routed {
        let ip = endpoint.ip;
        elements.push(Element { container: HAIRPIN_ENDPOINTS, key: format!("{ip} . {ip}"), verdict: None });
        if let Some(timeout) = port.affinity_timeout {
            chains.push(endpoint_chain_rules(&port, endpoint));
            sets.push(Set {
                kind: "set",
                name: affinity_set(&port, endpoint),
                definition: format!("type ipv4_addr; flags dynamic,timeout; timeout {timeout}s;"),
                elements: BTreeMap::new(),
            });
        }
    }
    PortRules { port, chains, sets, elements }
}

/// A chain that spreads new connections over `endpoints` at random. Without session affinity it DNATs through
/// a map of its own from `numgen` slot to endpoint, so an endpoint change is a change of that map's elements
/// (and of the rule's modulus when the count changes), with no chain per endpoint: the kernel's cost of a commit
/// and of a dump grows with the number of chains. With session affinity, a client that has a live entry in an
/// endpoint's affinity set goes back to that endpoint's chain first, and new clients jump to one at random.
fn balancing_chain(name: String, first: &[String], port: &ServicePort, endpoints: &[Endpoint]) -> (Chain, Option<Set>) {
    let mut rules = first.to_vec();
    if port.affinity_timeout.is_some() {
        rules.extend(
            endpoints.iter().map(|e| format!("ip saddr @{} goto {}", affinity_set(port, e), endpoint_chain(port, e))),
        );
        let targets: Vec<String> =
            endpoints.iter().enumerate().map(|(i, e)| format!("{i} : goto {}", endpoint_chain(port, e))).collect();
        rules.push(format!("numgen random mod {} vmap {{ {} }}", targets.len(), targets.join(", ")));
        return (Chain { name, rules }, None);
    }
    let map = endpoints_map(&name);
    let elements =
        endpoints.iter().enumerate().map(|(i, e)| (i.to_string(), format!("{i} : {} . {}", e.ip, e.port))).collect();
    let proto = port.protocol.as_str();
    rules.push(format!("meta l4proto {proto} dnat ip to numgen random mod {} map @{map}", endpoints.len()));
    let set = Set {
        kind: "map",
        name: map,
        // `th dport` here would not survive nft reading the map back from the kernel next to a `meta l4proto`.
        definition: format!("typeof numgen random mod 1 : ip daddr . {proto} dport;"),
        elements,
    };
    (Chain { name, rules }, Some(set))
}

fn endpoint_chain_rules(port: &ServicePort, endpoint: &Endpoint) -> Chain {
    let mut rules = vec![format!("ip saddr {} jump mark-for-masquerade", endpoint.ip)];
    if port.affinity_timeout.is_some() {
        rules.push(format!("update @{} {{ ip saddr }}", affinity_set(port, endpoint)));
    }
    rules.push(format!("meta l4proto {} dnat ip to {}:{}", port.protocol.as_str(), endpoint.ip, endpoint.port));
    Chain { name: endpoint_chain(port, endpoint), rules }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(name: &str, ip: &str, endpoints: &[&str]) -> ServicePort {
        ServicePort {
            namespace: "default".into(),
            service: name.into(),
            port_name: "http".into(),
            cluster_ips: vec![ip.parse().unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))],
            port: 80,
            endpoints: endpoints
                .iter()
                .filter_map(|e| e.parse().ok())
                .map(|ip| Endpoint { ip, port: 8080, local: true })
                .collect(),
            ..Default::default()
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
        let script = Ruleset::new(&config(), vec![web.clone(), port("empty", "10.43.0.11", &[])], None).full_script();
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
        let map = endpoints_map(&svc);
        let expected_chains = format!(
            "  chain {svc} {{\n    ip daddr 10.43.0.10 meta l4proto tcp th dport 80 ip saddr != 10.42.0.0/16 jump \
             mark-for-masquerade\n    meta l4proto tcp dnat ip to numgen random mod 2 map @{map}\n  }}\n"
        );
        assert!(script.contains(&expected_chains), "{script}");
        let endpoints = format!(
            "  map {map} {{\n    typeof numgen random mod 1 : ip daddr . tcp dport;\n    elements = {{ 0 : 10.42.0.2 . \
             8080, 1 : 10.42.0.3 . 8080 }}\n  }}\n"
        );
        assert!(script.contains(&endpoints), "{script}");
        let hairpin = "  set hairpin-endpoints {\n    type ipv4_addr . ipv4_addr;\n    elements = {\n      10.42.0.2 . \
                       10.42.0.2,\n      10.42.0.3 . 10.42.0.3\n    }\n  }\n";
        assert!(script.contains(hairpin), "{script}");
        assert!(!script.contains(&ep3), "no chain per endpoint without session affinity: {script}");
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
        let script = Ruleset::new(&config(), vec![empty, lb.clone()], None).full_script();
        let (svc, ext) = (service_chain(&lb), external_chain(&lb));
        assert!(ext.starts_with("external-") && ext.ends_with("-default/lb/tcp/http"), "{ext}");
        let service_ips = format!(
            "  map service-ips {{\n    type ipv4_addr . inet_proto . inet_service : verdict;\n    elements = {{\n      \
             10.43.0.20 . tcp . 80 : goto {svc},\n      127.0.0.1 . tcp . 80 : goto {ext},\n      192.168.200.100 . \
             tcp . 80 : goto {ext}\n    }}\n  }}\n"
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
        let plain = Ruleset::new(&config(), vec![port("web", "10.43.0.10", &["10.42.0.2"])], None).full_script();
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

    fn lines(script: &str) -> Vec<&str> {
        script.lines().collect()
    }

    #[test]
    fn an_unchanged_ruleset_needs_no_transaction() {
        let ports = vec![port("web", "10.43.0.10", &["10.42.0.2"]), port("empty", "10.43.0.11", &[])];
        let applied = Ruleset::new(&config(), ports.clone(), None);
        let again = Ruleset::new(&config(), ports, Some(&applied));
        assert_eq!(again.update_script(&applied), None);
        assert_eq!(again.full_script(), applied.full_script());
    }

    #[test]
    fn a_new_endpoint_adds_its_map_element_and_rewrites_only_its_service_chain() {
        let other = port("other", "10.43.0.9", &["10.42.0.7"]);
        let before = port("web", "10.43.0.10", &["10.42.0.2"]);
        let after = port("web", "10.43.0.10", &["10.42.0.2", "10.42.0.3"]);
        let applied = Ruleset::new(&config(), vec![other.clone(), before], None);
        let desired = Ruleset::new(&config(), vec![other, after.clone()], Some(&applied));
        let script = desired.update_script(&applied).unwrap_or_default();
        let svc = service_chain(&after);
        let map = endpoints_map(&svc);
        assert_eq!(
            lines(&script),
            [
                format!("add element inet skiff {map} {{ 1 : 10.42.0.3 . 8080 }}"),
                format!("flush chain inet skiff {svc}"),
                format!(
                    "add rule inet skiff {svc} ip daddr 10.43.0.10 meta l4proto tcp th dport 80 ip saddr != 10.42.0.0/16 \
                     jump mark-for-masquerade"
                ),
                format!("add rule inet skiff {svc} meta l4proto tcp dnat ip to numgen random mod 2 map @{map}"),
                "add element inet skiff hairpin-endpoints { 10.42.0.3 . 10.42.0.3 }".to_string(),
            ]
        );
    }

    #[test]
    fn a_replaced_endpoint_changes_only_map_elements() {
        let before = port("web", "10.43.0.10", &["10.42.0.2", "10.42.0.3"]);
        let after = port("web", "10.43.0.10", &["10.42.0.2", "10.42.0.4"]);
        let applied = Ruleset::new(&config(), vec![before], None);
        let desired = Ruleset::new(&config(), vec![after.clone()], Some(&applied));
        let script = desired.update_script(&applied).unwrap_or_default();
        let map = endpoints_map(&service_chain(&after));
        assert_eq!(
            lines(&script),
            [
                format!("delete element inet skiff {map} {{ 1 }}"),
                format!("add element inet skiff {map} {{ 1 : 10.42.0.4 . 8080 }}"),
                "delete element inet skiff hairpin-endpoints { 10.42.0.3 . 10.42.0.3 }".to_string(),
                "add element inet skiff hairpin-endpoints { 10.42.0.4 . 10.42.0.4 }".to_string(),
            ]
        );
    }

    #[test]
    fn losing_every_endpoint_moves_the_elements_then_removes_the_chains() {
        let before = port("web", "10.43.0.10", &["10.42.0.2"]);
        let mut after = before.clone();
        after.endpoints.clear();
        let applied = Ruleset::new(&config(), vec![before.clone()], None);
        let desired = Ruleset::new(&config(), vec![after], Some(&applied));
        let script = desired.update_script(&applied).unwrap_or_default();
        let svc = service_chain(&before);
        assert_eq!(
            lines(&script),
            [
                "delete element inet skiff hairpin-endpoints { 10.42.0.2 . 10.42.0.2 }".to_string(),
                "delete element inet skiff service-ips { 10.43.0.10 . tcp . 80 }".to_string(),
                "add element inet skiff no-endpoint-services { 10.43.0.10 . tcp . 80 : goto reject-chain }".to_string(),
                format!("flush chain inet skiff {svc}"),
                format!("delete chain inet skiff {svc}"),
                format!("delete map inet skiff {}", endpoints_map(&svc)),
            ]
        );
    }

    #[test]
    fn a_removed_service_takes_its_elements_and_chains_and_nothing_else() {
        let mut shared_ip = port("web", "10.43.0.10", &["10.42.0.2"]);
        shared_ip.port_name = "admin".into();
        shared_ip.port = 81;
        let gone = port("gone", "10.43.0.12", &["10.42.0.5"]);
        let mut web = port("web", "10.43.0.10", &["10.42.0.2"]);
        web.node_port = Some(30080);
        let applied = Ruleset::new(&config(), vec![web.clone(), shared_ip.clone(), gone.clone()], None);
        let desired = Ruleset::new(&config(), vec![web, shared_ip], Some(&applied));
        let script = desired.update_script(&applied).unwrap_or_default();
        let svc = service_chain(&gone);
        assert_eq!(
            lines(&script),
            [
                "delete element inet skiff cluster-ips { 10.43.0.12 }".to_string(),
                "delete element inet skiff hairpin-endpoints { 10.42.0.5 . 10.42.0.5 }".to_string(),
                "delete element inet skiff service-ips { 10.43.0.12 . tcp . 80 }".to_string(),
                format!("flush chain inet skiff {svc}"),
                format!("delete chain inet skiff {svc}"),
                format!("delete map inet skiff {}", endpoints_map(&svc)),
            ],
            "10.43.0.10 stays a cluster IP: another port of it remains"
        );
        // And back: the service returns with its chains before the elements that point at them.
        let restored = Ruleset::new(&config(), vec![gone, port("web", "10.43.0.10", &["10.42.0.2"])], Some(&desired));
        let script = restored.update_script(&desired).unwrap_or_default();
        let first_element = script.find("add element inet skiff service-ips").unwrap_or(0);
        assert!(script.find(&format!("add chain inet skiff {svc}")).is_some_and(|i| i < first_element), "{script}");
        assert!(script.contains("delete element inet skiff service-nodeports { tcp . 30080 }"), "{script}");
        assert!(script.contains("add element inet skiff cluster-ips { 10.43.0.12 }"), "{script}");
    }

    #[test]
    fn another_configuration_replaces_the_table() {
        let ports = vec![port("web", "10.43.0.10", &["10.42.0.2"])];
        let applied = Ruleset::new(&config(), ports.clone(), None);
        let mut moved = config();
        moved.cluster_cidr = Ipv4Net::new(std::net::Ipv4Addr::new(10, 50, 0, 0), 16).unwrap_or_default();
        let desired = Ruleset::new(&moved, ports, Some(&applied));
        let script = desired.update_script(&applied).unwrap_or_default();
        assert!(script.starts_with("add table inet skiff\ndelete table inet skiff\n"), "{script}");
        assert!(script.contains("ip saddr != 10.50.0.0/16"), "{script}");
    }

    #[test]
    fn client_ip_affinity_remembers_the_client_per_endpoint() {
        let mut web = port("web", "10.43.0.10", &["10.42.0.2", "10.42.0.3"]);
        web.affinity_timeout = Some(60);
        let script = Ruleset::new(&config(), vec![web.clone()], None).full_script();
        let (svc, ep2, ep3) =
            (service_chain(&web), endpoint_chain(&web, &web.endpoints[0]), endpoint_chain(&web, &web.endpoints[1]));
        let (set2, set3) = (affinity_set(&web, &web.endpoints[0]), affinity_set(&web, &web.endpoints[1]));
        assert!(set2.starts_with("affinity-") && set2 != set3 && set2.len() <= 255, "{set2}");
        let sets = format!(
            "  set {set2} {{\n    type ipv4_addr; flags dynamic,timeout; timeout 60s;\n  }}\n  set {set3} {{\n    type \
             ipv4_addr; flags dynamic,timeout; timeout 60s;\n  }}\n"
        );
        assert!(script.contains(&sets), "{script}");
        let chains = format!(
            "  chain {svc} {{\n    ip daddr 10.43.0.10 meta l4proto tcp th dport 80 ip saddr != 10.42.0.0/16 jump \
             mark-for-masquerade\n    ip saddr @{set2} goto {ep2}\n    ip saddr @{set3} goto {ep3}\n    numgen random \
             mod 2 vmap {{ 0 : goto {ep2}, 1 : goto {ep3} }}\n  }}\n  chain {ep2} {{\n    ip saddr 10.42.0.2 jump \
             mark-for-masquerade\n    update @{set2} {{ ip saddr }}\n    meta l4proto tcp dnat ip to 10.42.0.2:8080\n  \
             }}\n"
        );
        assert!(script.contains(&chains), "{script}");

        // Turning affinity off removes the sets after the rules that use them are gone.
        let mut off = web.clone();
        off.affinity_timeout = None;
        let applied = Ruleset::new(&config(), vec![web], None);
        let script = Ruleset::new(&config(), vec![off], Some(&applied)).update_script(&applied).unwrap_or_default();
        let flush = script.find(&format!("flush chain inet skiff {ep2}")).unwrap_or(usize::MAX);
        let delete = script.find(&format!("delete set inet skiff {set2}")).unwrap_or(0);
        assert!(flush < delete, "{script}");
    }

    fn on_node(ip: &str, local: bool) -> Endpoint {
        Endpoint { ip: ip.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)), port: 8080, local }
    }

    #[test]
    fn external_traffic_policy_local_keeps_outside_clients_on_this_nodes_endpoints() {
        let mut web = port("web", "10.43.0.30", &[]);
        web.node_port = Some(30080);
        web.external_local = true;
        web.health_check_node_port = Some(32000);
        web.endpoints = vec![on_node("10.42.0.2", true), on_node("10.42.1.2", false)];
        let script = Ruleset::new(&config(), vec![web.clone()], None).full_script();
        let (svc, ext, local) = (service_chain(&web), external_chain(&web), local_chain(&web));
        assert!(local.starts_with("local-"), "{local}");
        assert!(script.contains(&format!("10.43.0.30 . tcp . 80 : goto {svc}")), "pods use the cluster IP: {script}");
        assert!(script.contains(&format!("tcp . 30080 : goto {ext}")), "{script}");
        let external = format!(
            "  chain {ext} {{\n    ip saddr 10.42.0.0/16 goto {svc} comment \"pods use every endpoint\"\n    fib saddr \
             type local jump mark-for-masquerade comment \"the node itself is masqueraded\"\n    fib saddr type local \
             goto {svc}\n    goto {local} comment \"outside clients keep their address\"\n  }}\n"
        );
        assert!(script.contains(&external), "{script}");
        let (local_map, cluster_map) = (endpoints_map(&local), endpoints_map(&svc));
        let local_rules =
            format!("  chain {local} {{\n    meta l4proto tcp dnat ip to numgen random mod 1 map @{local_map}\n  }}\n");
        assert!(script.contains(&local_rules), "{script}");
        let only_here = format!(
            "  map {local_map} {{\n    typeof numgen random mod 1 : ip daddr . tcp dport;\n    \
                                 elements = {{ 0 : 10.42.0.2 . 8080 }}\n  }}\n"
        );
        assert!(script.contains(&only_here), "{script}");
        let everywhere = format!(
            "  map {cluster_map} {{\n    typeof numgen random mod 1 : ip daddr . tcp dport;\n    \
                                  elements = {{ 0 : 10.42.0.2 . 8080, 1 : 10.42.1.2 . 8080 }}\n  }}\n"
        );
        assert!(script.contains(&everywhere), "the cluster chain still reaches every endpoint: {script}");

        // Endpoints only on other nodes: outside clients are dropped here (the health check steers balancers
        // away), pods still reach the Service.
        web.endpoints = vec![on_node("10.42.1.2", false)];
        let script = Ruleset::new(&config(), vec![web], None).full_script();
        assert!(script.contains("tcp . 30080 : drop"), "{script}");
        assert!(script.contains(&format!("10.43.0.30 . tcp . 80 : goto {svc}")), "{script}");
        assert!(!script.contains(&format!("chain {local}")), "{script}");
    }

    #[test]
    fn internal_traffic_policy_local_uses_only_this_nodes_endpoints() {
        let mut dns = port("kube-dns", "10.43.0.10", &[]);
        dns.internal_local = true;
        dns.endpoints = vec![on_node("10.42.0.2", true), on_node("10.42.1.2", false)];
        let script = Ruleset::new(&config(), vec![dns.clone()], None).full_script();
        let (svc, local) = (service_chain(&dns), local_chain(&dns));
        assert!(script.contains(&format!("10.43.0.10 . tcp . 80 : goto {local}")), "{script}");
        let local_map = endpoints_map(&local);
        let local_rules = format!(
            "  chain {local} {{\n    ip daddr 10.43.0.10 meta l4proto tcp th dport 80 ip saddr != 10.42.0.0/16 jump \
             mark-for-masquerade\n    meta l4proto tcp dnat ip to numgen random mod 1 map @{local_map}\n  }}\n"
        );
        assert!(script.contains(&local_rules), "{script}");
        assert!(script.contains(&format!("map {local_map} {{\n    typeof numgen random mod 1 : ip daddr . tcp dport;\n    elements = {{ 0 : 10.42.0.2 . 8080 }}")), "{script}");
        assert!(!script.contains(&format!("chain {svc}")) && !script.contains("10.42.1.2 . 8080"), "{script}");

        dns.endpoints = vec![on_node("10.42.1.2", false)];
        let script = Ruleset::new(&config(), vec![dns.clone()], None).full_script();
        assert!(script.contains("10.43.0.10 . tcp . 80 : drop"), "endpoints elsewhere: drop, not reject: {script}");
        dns.endpoints.clear();
        let script = Ruleset::new(&config(), vec![dns], None).full_script();
        assert!(script.contains("10.43.0.10 . tcp . 80 : goto reject-chain"), "no endpoints at all: {script}");
    }
}
