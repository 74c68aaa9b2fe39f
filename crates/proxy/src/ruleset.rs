//! The nftables ruleset for a set of service ports, after upstream kube-proxy's nftables shape: one `inet` table;
//! a single verdict-map lookup (`ip daddr . meta l4proto . th dport`) sends a packet for a ClusterIP to its
//! service port's chain, so per-packet cost does not grow with the number of Services; that chain picks an
//! endpoint uniformly at random (`numgen random mod N offset <its first slot>`) and DNATs to it through one of a
//! fixed set of shared endpoint maps (slot → address . port), where it owns a block of slots. Unlike upstream
//! there is no chain per endpoint (except with session affinity, which needs one to remember the client) and no
//! set per Service: the kernel's cost of a commit and of a ruleset dump grows with the number of chains, its
//! cost of creating or naming a set with the number of sets, and its cost of adding a map element with the
//! number of rules bound to the map — each quadratic at 10,000 Services × 10 endpoints in one of the other
//! shapes (`docs/benchmarks.md`).
//! Service ports without endpoints are rejected at once from a second map; a ClusterIP on a port it does not
//! serve (and ICMP to it) is rejected, an unallocated address in the service CIDR dropped. Masquerade only where
//! the reply would not come back through this node otherwise: a client outside the cluster CIDR, or a pod
//! reaching itself (hairpin: a DNATed connection whose source and destination are one endpoint, looked up in a
//! set of `endpoint . endpoint` pairs at postrouting).
//!
//! A [`Ruleset`] is the table as data — the fixed skeleton, every service port with its slot blocks, how many
//! ports want each shared set element, and every port's claims on shared map elements — and the proxy keeps one
//! as the mirror of the kernel's table. A port's chains, sets and elements are a function of the port and its
//! blocks, computed again when a sync needs them instead of kept: at 10,000 Services kept rules were most of the
//! proxy's memory. [`Ruleset::full_script`] writes all of it as one table replacement. [`Ruleset::plan`] takes the service
//! ports that changed and works out, in time proportional to them and not to the table, the [`Update`] that
//! brings the kernel there: new sets and chains, chains whose rules changed (flushed and refilled), elements
//! removed and added (a replaced endpoint is just that), stale chains flushed then deleted and stale sets deleted
//! — one transaction, written as an `nft` script ([`Update::script`]) or, when it only changes elements, as
//! netlink messages ([`Update::element_changes`]). [`Ruleset::commit`] folds an applied update into the mirror.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use ipnet::Ipv4Net;
use sha2::{Digest, Sha256};

use crate::model::{Endpoint, Protocol, ServicePort};

/// The packet mark that asks `nat-postrouting` to masquerade.
const MASQUERADE_MARK: &str = "0x4000";

/// The shared set and maps, with their element types, in the order the table declares them.
const CLUSTER_IPS: &str = "cluster-ips";
/// Cluster IP (and external address) . protocol . port → the verdict that balances its traffic.
pub const SERVICE_IPS: &str = "service-ips";
/// The same key → reject (no endpoints) or drop (none on this node for a Local policy).
pub const NO_ENDPOINT_SERVICES: &str = "no-endpoint-services";
/// Protocol . NodePort → the verdict for traffic to that port on any node address.
pub const SERVICE_NODEPORTS: &str = "service-nodeports";
/// The same key → reject or drop when the port has no (local) endpoints.
pub const NO_ENDPOINT_NODEPORTS: &str = "no-endpoint-nodeports";
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

/// Balancing chains DNAT through this many shared maps (slot → endpoint address . port), each chain's slots in the
/// map its block picks. The kernel keeps a table's sets in a list, so creating or naming one costs the number of
/// sets, and adding an element to a map costs the number of rules bound to it: a map per chain and one map for all
/// chains are both quadratic at 10,000 Services (`docs/benchmarks.md`); a few hundred maps are neither.
pub const ENDPOINT_MAPS: u32 = 256;
/// Slots per balancing chain: its endpoints are slots `block × SLOTS_PER_CHAIN ..` (`numgen random mod N offset`);
/// endpoints past that many are not routed.
pub const SLOTS_PER_CHAIN: u32 = 8192;

/// Where an element lives: one of the fixed shared sets and maps, or one of the endpoint maps (per protocol:
/// `nft` refuses a rule matching one protocol against a map typed by another, or by `th dport`, once the map is
/// in the kernel).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Container {
    Shared(&'static str),
    Endpoints(Protocol, u32),
}

impl fmt::Display for Container {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Container::Shared(name) => f.write_str(name),
            Container::Endpoints(protocol, map) => write!(f, "endpoints-{}-{map}", protocol.as_str()),
        }
    }
}

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

/// The endpoint map a balancing chain of `protocol` with this block DNATs through, and its first slot.
pub fn endpoint_slots(protocol: Protocol, block: u32) -> (Container, u32) {
    (Container::Endpoints(protocol, block % ENDPOINT_MAPS), block.saturating_mul(SLOTS_PER_CHAIN))
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

/// The key of a set or map element, typed after the set's key type, so that it can be written both as `nft`
/// text and as netlink bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    /// `ipv4_addr`
    Address(Ipv4Addr),
    /// `ipv4_addr . inet_proto . inet_service`
    Destination(Ipv4Addr, Protocol, u16),
    /// `inet_proto . inet_service`
    NodePort(Protocol, u16),
    /// `ipv4_addr . ipv4_addr`
    Pair(Ipv4Addr, Ipv4Addr),
    /// A `numgen` slot.
    Slot(u32),
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Address(ip) => write!(f, "{ip}"),
            Key::Destination(ip, proto, port) => write!(f, "{ip} . {} . {port}", proto.as_str()),
            Key::NodePort(proto, port) => write!(f, "{} . {port}", proto.as_str()),
            Key::Pair(a, b) => write!(f, "{a} . {b}"),
            Key::Slot(slot) => write!(f, "{slot}"),
        }
    }
}

/// What a map element maps its key to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Data {
    /// `goto <chain>`
    Goto(String),
    /// `drop`
    Drop,
    /// An endpoint: `ip daddr . <proto> dport`.
    Endpoint(Ipv4Addr, u16),
}

impl fmt::Display for Data {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Data::Goto(chain) => write!(f, "goto {chain}"),
            Data::Drop => f.write_str("drop"),
            Data::Endpoint(ip, port) => write!(f, "{ip} . {port}"),
        }
    }
}

/// An element as `nft` writes it: `key` for a set, `key : data` for a map.
fn element_text(key: &Key, data: Option<&Data>) -> String {
    match data {
        Some(data) => format!("{key} : {data}"),
        None => key.to_string(),
    }
}

/// A chain of the table and its rules, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Chain {
    name: String,
    rules: Vec<String>,
}

/// An element of one of the shared sets or maps; a set's element has no data.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Element {
    container: Container,
    key: Key,
    data: Option<Data>,
}

/// A set a service port owns (session affinity's clients, which the kernel fills), with its declaration.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Set {
    name: String,
    definition: String,
}

/// What one service port puts in the table: the chains and sets it owns and its elements in the shared maps.
#[derive(Debug, PartialEq, Eq)]
struct PortRules {
    chains: Vec<Chain>,
    sets: Vec<Set>,
    elements: Vec<Element>,
    blocks: Blocks,
}

/// A service port's balancing chains (those that DNAT through the shared endpoint maps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Balancer {
    /// Over every endpoint.
    Cluster,
    /// Over this node's endpoints.
    Local,
}

/// Each balancing chain's block of endpoint slots.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Blocks {
    cluster: Option<u32>,
    local: Option<u32>,
}

impl Blocks {
    fn get(&self, balancer: Balancer) -> Option<u32> {
        match balancer {
            Balancer::Cluster => self.cluster,
            Balancer::Local => self.local,
        }
    }

    fn set(&mut self, balancer: Balancer, block: u32) {
        match balancer {
            Balancer::Cluster => self.cluster = Some(block),
            Balancer::Local => self.local = Some(block),
        }
    }

    fn iter(&self) -> impl Iterator<Item = u32> {
        self.cluster.into_iter().chain(self.local)
    }
}

/// What the mirror keeps of a service port: the port and its blocks. Its rules are a function of those
/// ([`port_rules`]), computed again when a sync needs them rather than kept: at 10,000 Services they would be
/// most of the proxy's memory.
#[derive(Debug, PartialEq, Eq)]
struct Placed {
    id: Arc<str>,
    port: Arc<ServicePort>,
    blocks: Blocks,
}

/// A shared map element claimed by a service port: (container, key, the port's id).
type Claim = (Container, Key, Arc<str>);

/// An endpoint slot's data before and after an update.
type SlotChange<'a> = (Option<&'a Data>, Option<&'a Data>);

/// How the mirror tracks who put an element in the kernel, by where it lives.
enum Tracking {
    /// An endpoint map slot: only the port holding the slot's block writes it.
    Owned,
    /// A set element (no data): there while any port wants it.
    Counted,
    /// A shared map element: several ports may want one key with different data (two LoadBalancers on one
    /// port want `127.0.0.1 . tcp . 80`); the kernel holds the first claim by port id.
    Claimed,
}

impl Element {
    fn tracking(&self) -> Tracking {
        match (self.container, &self.data) {
            (Container::Endpoints(..), _) => Tracking::Owned,
            (_, None) => Tracking::Counted,
            (_, Some(_)) => Tracking::Claimed,
        }
    }
}

/// The table as data. IPv4 only for now: IPv6 cluster IPs are skipped.
#[derive(Debug, Clone)]
pub struct Ruleset {
    config: RulesetConfig,
    /// By service port id.
    ports: BTreeMap<String, Arc<Placed>>,
    /// How many chains the ports' rules have.
    chains: usize,
    /// Every port's claim on a shared map element. Two ports claiming one key: the kernel holds the first claim
    /// by port id.
    claims: BTreeMap<Claim, Data>,
    /// How many ports want each set element.
    wanted: BTreeMap<(Container, Key), u32>,
    /// How many shared elements the kernel holds.
    elements: usize,
    /// Endpoint slot blocks given back, and the lowest never given out.
    free_blocks: BTreeSet<u32>,
    next_block: u32,
}

/// A service port as it should now be, for [`Ruleset::plan`].
#[derive(Debug, Clone)]
pub enum Change {
    /// The port with its current endpoints (new, or replacing the port with the same id).
    Port(Arc<ServicePort>),
    /// The port with this id is gone.
    Removed(String),
}

/// The difference between a ruleset and the one a set of [`Change`]s make of it: what the kernel must do, and
/// what [`Ruleset::commit`] folds into the mirror once it has.
#[derive(Debug, Default)]
pub struct Update {
    table: String,
    /// A set's declaration changed, which cannot be done in place: the table must be replaced.
    replace: bool,
    ports: Vec<PortUpdate>,
    /// Claims withdrawn (`None`) and made.
    claims: Vec<(Claim, Option<Data>)>,
    /// How many more (or fewer) ports want these set elements.
    wanted: Vec<((Container, Key), i64)>,
    new_sets: Vec<Set>,
    new_chains: Vec<Chain>,
    refills: Vec<Chain>,
    stale_chains: Vec<Chain>,
    stale_sets: Vec<Set>,
    /// Shared elements the kernel must drop and add, by container.
    removed: BTreeMap<Container, Vec<Key>>,
    added: BTreeMap<Container, Vec<(Key, Option<Data>)>>,
    /// Endpoint slot blocks taken (from the free ones, or new) and given back.
    taken_blocks: Vec<u32>,
    given_back: Vec<u32>,
    /// How many chains the changed ports had, and have.
    chains: (usize, usize),
}

/// A service port's new state in an [`Update`].
#[derive(Debug)]
struct PortUpdate {
    id: String,
    /// `None`: removed.
    port: Option<Arc<ServicePort>>,
    placed: Option<Arc<Placed>>,
}

/// A change of one set or map's elements, for writers that do not go through `nft` text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElementChange<'a> {
    pub set: Container,
    /// Removed, or added.
    pub add: bool,
    pub key: Key,
    pub data: Option<&'a Data>,
}

impl Ruleset {
    /// The ruleset for `ports`.
    pub fn new<P: Into<Arc<ServicePort>>>(config: &RulesetConfig, ports: impl IntoIterator<Item = P>) -> Ruleset {
        let mut ruleset = Ruleset::empty(config);
        let update = ruleset.plan(ports.into_iter().map(|p| Change::Port(p.into())));
        ruleset.commit(update);
        ruleset
    }

    /// A ruleset without service ports: the skeleton alone.
    pub fn empty(config: &RulesetConfig) -> Ruleset {
        Ruleset {
            config: config.clone(),
            ports: BTreeMap::new(),
            chains: 0,
            claims: BTreeMap::new(),
            wanted: BTreeMap::new(),
            elements: 0,
            free_blocks: BTreeSet::new(),
            next_block: 0,
        }
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
        (self.ports.len(), self.chains, self.elements)
    }

    /// The changes that turn this ruleset into the one for `ports` (every port compared: the full-sync path).
    pub fn changes_to<P: Into<Arc<ServicePort>>>(&self, ports: impl IntoIterator<Item = P>) -> Vec<Change> {
        let mut seen = BTreeSet::new();
        let mut changes: Vec<Change> = ports
            .into_iter()
            .map(Into::into)
            .filter(|port: &Arc<ServicePort>| {
                let id = port.id();
                let same = self.ports.get(&id).is_some_and(|p| Arc::ptr_eq(&p.port, port) || p.port == *port);
                seen.insert(id);
                !same
            })
            .map(Change::Port)
            .collect();
        changes.extend(self.ports.keys().filter(|id| !seen.contains(*id)).cloned().map(Change::Removed));
        changes
    }

    /// The update that [`changes_to`](Self::changes_to) `ports` make.
    pub fn plan_to<P: Into<Arc<ServicePort>>>(&self, ports: impl IntoIterator<Item = P>) -> Update {
        self.plan(self.changes_to(ports))
    }

    /// What `changes` do to the table, in time proportional to them. A later change of the same id wins.
    pub fn plan(&self, changes: impl IntoIterator<Item = Change>) -> Update {
        let mut by_id: BTreeMap<String, Option<Arc<ServicePort>>> = BTreeMap::new();
        for change in changes {
            match change {
                Change::Port(port) => by_id.insert(port.id(), Some(port)),
                Change::Removed(id) => by_id.insert(id, None),
            };
        }
        let mut update = Update { table: self.config.table.clone(), ..Update::default() };
        let mut claims: BTreeMap<Claim, Option<Data>> = BTreeMap::new();
        let mut wanted: BTreeMap<(Container, Key), i64> = BTreeMap::new();
        // Blocks given back here are free only once the update is in: the kernel still holds their slots.
        let mut free = self.free_blocks.iter().copied();
        let mut next_block = self.next_block;
        for (id, port) in by_id {
            let old = self.ports.get(&id);
            let mut block_of = |balancer: Balancer| {
                let kept = old.and_then(|o| o.blocks.get(balancer));
                kept.unwrap_or_else(|| {
                    let block = free.next().unwrap_or_else(|| {
                        next_block += 1;
                        next_block - 1
                    });
                    update.taken_blocks.push(block);
                    block
                })
            };
            let new = match (&port, old) {
                (Some(port), Some(old)) if Arc::ptr_eq(&old.port, port) || old.port == *port => continue,
                (Some(port), _) => Some(port_rules(&self.config, port, &mut block_of)),
                (None, None) => continue,
                (None, Some(_)) => None,
            };
            let old_rules = old.map(|o| self.rules_of(o));
            let new_blocks: Vec<u32> = new.iter().flat_map(|n| n.blocks.iter()).collect();
            update.given_back.extend(old.iter().flat_map(|o| o.blocks.iter()).filter(|b| !new_blocks.contains(b)));
            update.chains.0 += old_rules.as_ref().map_or(0, |o| o.chains.len());
            update.chains.1 += new.as_ref().map_or(0, |n| n.chains.len());
            let owner = old.map_or_else(|| Arc::from(id.as_str()), |o| o.id.clone());
            // Slot → (its data before, after).
            let mut owned: BTreeMap<(Container, Key), SlotChange<'_>> = BTreeMap::new();
            let old_elements = old_rules.iter().flat_map(|o| &o.elements).map(|e| (e, false));
            for (element, is_new) in old_elements.chain(new.iter().flat_map(|n| &n.elements).map(|e| (e, true))) {
                let at = (element.container, element.key);
                match (element.tracking(), &element.data) {
                    (Tracking::Owned, data) => {
                        let (was, will) = owned.entry(at).or_default();
                        *if is_new { will } else { was } = data.as_ref();
                    }
                    (Tracking::Counted, _) => *wanted.entry(at).or_default() += if is_new { 1 } else { -1 },
                    (Tracking::Claimed, data) => {
                        claims.insert((at.0, at.1, owner.clone()), data.clone().filter(|_| is_new));
                    }
                }
            }
            // A slot's owner is the only writer: its old and new data are the whole story.
            for ((container, key), (was, will)) in owned {
                if was == will {
                    continue;
                }
                if was.is_some() {
                    update.removed.entry(container).or_default().push(key);
                }
                if let Some(data) = will {
                    update.added.entry(container).or_default().push((key, Some(data.clone())));
                }
            }
            update.diff_port(old_rules.as_ref(), new.as_ref());
            let placed = port
                .as_ref()
                .zip(new.as_ref())
                .map(|(port, new)| Arc::new(Placed { id: owner.clone(), port: port.clone(), blocks: new.blocks }));
            update.ports.push(PortUpdate { id, port, placed });
        }
        // The kernel holds each key's first claim by port id: compare that before and after the changed claims.
        let lowest: Arc<str> = Arc::from("");
        let touched: BTreeSet<(Container, Key)> = claims.keys().map(|(c, k, _)| (*c, *k)).collect();
        for (container, key) in touched {
            let range = (container, key, lowest.clone())..;
            let of_key = |claim: &&Claim| claim.0 == container && claim.1 == key;
            let before = self.claims.range(range.clone()).take_while(|(c, _)| of_key(c)).next();
            let kept =
                self.claims.range(range.clone()).take_while(|(c, _)| of_key(c)).find(|(c, _)| !claims.contains_key(*c));
            let made = claims.range(range).take_while(|(c, _)| of_key(c)).find_map(|(c, d)| d.as_ref().map(|d| (c, d)));
            let after = match (kept, made) {
                (Some(k), Some(m)) => Some(if k.0 < m.0 { k.1 } else { m.1 }),
                (Some(k), None) => Some(k.1),
                (None, Some(m)) => Some(m.1),
                (None, None) => None,
            };
            let before = before.map(|(_, d)| d);
            if before == after {
                continue;
            }
            if before.is_some() {
                update.removed.entry(container).or_default().push(key);
            }
            if let Some(data) = after {
                update.added.entry(container).or_default().push((key, Some(data.clone())));
            }
        }
        // A set element is in the kernel while any port wants it.
        for ((container, key), delta) in &wanted {
            let before = i64::from(self.wanted.get(&(*container, *key)).copied().unwrap_or(0));
            match (before > 0, before + delta > 0) {
                (true, false) => update.removed.entry(*container).or_default().push(*key),
                (false, true) => update.added.entry(*container).or_default().push((*key, None)),
                _ => {}
            }
        }
        for keys in update.removed.values_mut() {
            keys.sort();
        }
        for elements in update.added.values_mut() {
            elements.sort();
        }
        update.claims = claims.into_iter().collect();
        update.wanted = wanted.into_iter().filter(|(_, delta)| *delta != 0).collect();
        update
    }

    /// Takes in an update the kernel has applied (or, with a full sync, is about to get in full).
    pub fn commit(&mut self, update: Update) {
        for PortUpdate { id, placed, .. } in update.ports {
            match placed {
                Some(placed) => self.ports.insert(id, placed),
                None => self.ports.remove(&id),
            };
        }
        self.chains = (self.chains + update.chains.1).saturating_sub(update.chains.0);
        for (claim, data) in update.claims {
            match data {
                Some(data) => self.claims.insert(claim, data),
                None => self.claims.remove(&claim),
            };
        }
        for (element, delta) in update.wanted {
            let count = i64::from(self.wanted.get(&element).copied().unwrap_or(0)) + delta;
            match u32::try_from(count) {
                Ok(count) if count > 0 => self.wanted.insert(element, count),
                _ => self.wanted.remove(&element),
            };
        }
        for block in update.taken_blocks {
            self.free_blocks.remove(&block);
            self.next_block = self.next_block.max(block + 1);
        }
        self.free_blocks.extend(update.given_back);
        let removed: usize = update.removed.values().map(Vec::len).sum();
        let added: usize = update.added.values().map(Vec::len).sum();
        self.elements = (self.elements + added).saturating_sub(removed);
    }

    /// The shared map elements the kernel holds, in order: each key's first claim.
    fn held_claims(&self) -> impl Iterator<Item = (Container, &Key, &Data)> {
        let mut last: Option<(Container, Key)> = None;
        self.claims.iter().filter_map(move |((container, key, _), data)| {
            if last == Some((*container, *key)) {
                return None;
            }
            last = Some((*container, *key));
            Some((*container, key, data))
        })
    }

    /// A script for `nft -f -` that replaces the whole table in one transaction.
    pub fn full_script(&self) -> String {
        let mut out = String::new();
        let t = &self.config.table;
        // Creating then deleting makes the script valid whether or not the table exists; it all commits at once.
        let _ = writeln!(out, "add table inet {t}\ndelete table inet {t}\ntable inet {t} {{");
        let mut elements: BTreeMap<Container, Vec<(Key, Option<Data>)>> = BTreeMap::new();
        for (container, key, data) in self.held_claims() {
            elements.entry(container).or_default().push((*key, Some(data.clone())));
        }
        for (container, key) in self.wanted.keys() {
            elements.entry(*container).or_default().push((*key, None));
        }
        // Sets before the chains that use them.
        let (mut sets, mut chains) = (String::new(), String::new());
        for placed in self.ports.values() {
            let rules = self.rules_of(placed);
            for element in rules.elements {
                if let Tracking::Owned = element.tracking() {
                    elements.entry(element.container).or_default().push((element.key, element.data));
                }
            }
            for set in &rules.sets {
                let _ = writeln!(sets, "  set {} {{\n    {}\n  }}", set.name, set.definition);
            }
            for chain in &rules.chains {
                let _ = writeln!(chains, "  chain {} {{", chain.name);
                for rule in &chain.rules {
                    let _ = writeln!(chains, "    {rule}");
                }
                chains.push_str("  }\n");
            }
        }
        let fixed = SHARED.map(|(kind, name, type_)| (kind, Container::Shared(name), format!("type {type_}")));
        let endpoint_maps = [Protocol::Tcp, Protocol::Udp, Protocol::Sctp].into_iter().flat_map(|protocol| {
            let type_ = format!("typeof numgen random mod 1 : ip daddr . {} dport", protocol.as_str());
            (0..ENDPOINT_MAPS).map(move |m| ("map", Container::Endpoints(protocol, m), type_.clone()))
        });
        for (kind, container, type_) in fixed.into_iter().chain(endpoint_maps) {
            let _ = write!(out, "  {kind} {container} {{\n    {type_};\n");
            if let Some(elements) = elements.get_mut(&container) {
                elements.sort();
                let texts: Vec<String> = elements.iter().map(|(key, data)| element_text(key, data.as_ref())).collect();
                let _ = writeln!(out, "    elements = {{\n      {}\n    }}", texts.join(",\n      "));
            }
            out.push_str("  }\n");
        }
        skeleton(&mut out, &self.config);
        out.push_str(&sets);
        out.push_str(&chains);
        out.push_str("}\n");
        out
    }

    /// The rules of a port the mirror holds.
    fn rules_of(&self, placed: &Placed) -> PortRules {
        // A block the port does not hold means the rules no longer come out as they were computed; that cannot
        // happen (they are a function of the port and its blocks), and an out-of-range block would show it.
        port_rules(&self.config, &placed.port, &mut |balancer| placed.blocks.get(balancer).unwrap_or(u32::MAX))
    }
}

fn keys_text(keys: &[Key]) -> String {
    keys.iter().map(Key::to_string).collect::<Vec<_>>().join(", ")
}

impl Update {
    /// Whether the kernel has nothing to do.
    pub fn is_empty(&self) -> bool {
        !self.replace && self.is_elements_only() && self.removed.is_empty() && self.added.is_empty()
    }

    /// Whether the table must be replaced (a set's declaration changed): a full sync.
    pub fn replaces_table(&self) -> bool {
        self.replace
    }

    /// Whether the update changes elements and nothing else.
    fn is_elements_only(&self) -> bool {
        self.new_sets.is_empty()
            && self.new_chains.is_empty()
            && self.refills.is_empty()
            && self.stale_chains.is_empty()
            && self.stale_sets.is_empty()
    }

    /// The service ports this update changes, as (before, after).
    pub fn port_changes<'a>(
        &'a self,
        base: &'a Ruleset,
    ) -> impl Iterator<Item = (Option<&'a ServicePort>, Option<&'a ServicePort>)> {
        self.ports.iter().map(|p| (base.service_port(&p.id), p.port.as_deref()))
    }

    /// When the update only removes and adds elements of existing sets and maps: every such change, removals
    /// first. `None` when it needs more (chains, sets) or nothing at all.
    pub fn element_changes(&self) -> Option<Vec<ElementChange<'_>>> {
        if self.replace || !self.is_elements_only() || self.is_empty() {
            return None;
        }
        let mut out = Vec::new();
        for (set, keys) in &self.removed {
            out.extend(keys.iter().map(|key| ElementChange { set: *set, add: false, key: *key, data: None }));
        }
        for (set, elements) in &self.added {
            out.extend(elements.iter().map(|(key, data)| ElementChange {
                set: *set,
                add: true,
                key: *key,
                data: data.as_ref(),
            }));
        }
        Some(out)
    }

    /// The update as a script for `nft -f -`, one transaction; `None` when there is nothing to do. Only for an
    /// update that does not [replace the table](Self::replaces_table).
    pub fn script(&self) -> Option<String> {
        if self.is_empty() {
            return None;
        }
        let t = &self.table;
        // Order matters within the transaction: chains exist before rules and elements point at them, and a chain
        // is deleted only once nothing jumps to it any more.
        let mut out = String::new();
        for set in &self.new_sets {
            let _ = writeln!(out, "add set inet {t} {} {{ {} }}", set.name, set.definition);
        }
        for chain in &self.new_chains {
            let _ = writeln!(out, "add chain inet {t} {}", chain.name);
        }
        for chain in &self.refills {
            let _ = writeln!(out, "flush chain inet {t} {}", chain.name);
        }
        for chain in self.new_chains.iter().chain(&self.refills) {
            for rule in &chain.rules {
                let _ = writeln!(out, "add rule inet {t} {} {rule}", chain.name);
            }
        }
        for (container, keys) in &self.removed {
            let _ = writeln!(out, "delete element inet {t} {container} {{ {} }}", keys_text(keys));
        }
        for (container, elements) in &self.added {
            let texts: Vec<String> = elements.iter().map(|(k, d)| element_text(k, d.as_ref())).collect();
            let _ = writeln!(out, "add element inet {t} {container} {{ {} }}", texts.join(", "));
        }
        for chain in &self.stale_chains {
            let _ = writeln!(out, "flush chain inet {t} {}", chain.name);
        }
        for chain in &self.stale_chains {
            let _ = writeln!(out, "delete chain inet {t} {}", chain.name);
        }
        for set in &self.stale_sets {
            let _ = writeln!(out, "delete set inet {t} {}", set.name);
        }
        Some(out)
    }

    /// Adds what going from `old` to `new` (one service port's rules) does to its own sets and chains.
    fn diff_port(&mut self, old: Option<&PortRules>, new: Option<&PortRules>) {
        let before: BTreeMap<&str, &Set> = old.iter().flat_map(|o| &o.sets).map(|s| (s.name.as_str(), s)).collect();
        let after: BTreeMap<&str, &Set> = new.iter().flat_map(|n| &n.sets).map(|s| (s.name.as_str(), s)).collect();
        for (name, set) in &after {
            match before.get(name) {
                None => self.new_sets.push((*set).clone()),
                // A set's declaration cannot change in place; this is rare enough to replace the table.
                Some(was) if was.definition != set.definition => self.replace = true,
                Some(_) => {}
            }
        }
        self.stale_sets.extend(before.iter().filter(|(name, _)| !after.contains_key(*name)).map(|(_, s)| (*s).clone()));
        let before: BTreeMap<&str, &Chain> = old.iter().flat_map(|o| &o.chains).map(|c| (c.name.as_str(), c)).collect();
        let after: BTreeMap<&str, &Chain> = new.iter().flat_map(|n| &n.chains).map(|c| (c.name.as_str(), c)).collect();
        // In the port's own order: a chain's rules may only jump to chains that exist by then.
        for chain in new.iter().flat_map(|n| &n.chains) {
            match before.get(chain.name.as_str()) {
                None => self.new_chains.push(chain.clone()),
                Some(was) if was.rules != chain.rules => self.refills.push(chain.clone()),
                Some(_) => {}
            }
        }
        self.stale_chains
            .extend(old.iter().flat_map(|o| &o.chains).filter(|c| !after.contains_key(c.name.as_str())).cloned());
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
fn port_rules(config: &RulesetConfig, port: &ServicePort, block_of: &mut dyn FnMut(Balancer) -> u32) -> PortRules {
    let ips = ipv4(&port.cluster_ips);
    let proto = port.protocol.as_str();
    let protocol = port.protocol;
    let local = port.local_endpoints();
    let cluster_chain = service_chain(port);
    let local_chain = local_chain(port);
    let external = Data::Goto(external_chain(port));
    // An empty `ips` means an IPv6-only Service: nothing to route yet.
    let has_endpoints = !port.endpoints.is_empty() && !ips.is_empty();
    let has_local = has_endpoints && !local.is_empty();
    let internal_ok = if port.internal_local { has_local } else { has_endpoints };
    let external_ok = if port.external_local { has_local } else { has_endpoints };
    // No endpoints at all: reject at once. Endpoints, but none here for a Local policy: drop, as upstream does.
    let unavailable = if has_endpoints { Data::Drop } else { Data::Goto("reject-chain".into()) };
    let internal = Data::Goto(if port.internal_local { local_chain.clone() } else { cluster_chain.clone() });

    let mut elements: Vec<Element> = ips
        .iter()
        .map(|ip| Element { container: Container::Shared(CLUSTER_IPS), key: Key::Address(*ip), data: None })
        .collect();
    let mut destinations: Vec<(Ipv4Addr, bool)> = ips.iter().map(|ip| (*ip, true)).collect();
    destinations.extend(ipv4(&port.external_ips).into_iter().map(|ip| (ip, false)));
    if port.localhost {
        destinations.push((Ipv4Addr::LOCALHOST, false));
    }
    for (ip, is_internal) in destinations {
        let key = Key::Destination(ip, protocol, port.port);
        let (ok, verdict) = if is_internal { (internal_ok, &internal) } else { (external_ok, &external) };
        elements.push(if ok {
            Element { container: Container::Shared(SERVICE_IPS), key, data: Some(verdict.clone()) }
        } else {
            Element { container: Container::Shared(NO_ENDPOINT_SERVICES), key, data: Some(unavailable.clone()) }
        });
    }
    if let Some(node_port) = port.node_port {
        let key = Key::NodePort(protocol, node_port);
        elements.push(if external_ok {
            Element { container: Container::Shared(SERVICE_NODEPORTS), key, data: Some(external.clone()) }
        } else {
            Element { container: Container::Shared(NO_ENDPOINT_NODEPORTS), key, data: Some(unavailable.clone()) }
        });
    }

    let mut chains = Vec::new();
    let mut sets = Vec::new();
    let mut blocks = Blocks::default();
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
        let block = port.affinity_timeout.is_none().then(|| block_of(Balancer::Cluster));
        chains.push(balancing_chain(cluster_chain.clone(), off_cluster, port, &port.endpoints, block, &mut elements));
        if let Some(block) = block {
            blocks.set(Balancer::Cluster, block);
        }
    }
    if local_used {
        let off_cluster = if port.internal_local { &masquerade_off_cluster[..] } else { &[][..] };
        let block = port.affinity_timeout.is_none().then(|| block_of(Balancer::Local));
        chains.push(balancing_chain(local_chain.clone(), off_cluster, port, &local, block, &mut elements));
        if let Some(block) = block {
            blocks.set(Balancer::Local, block);
        }
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
        chains.push(Chain { name: external_chain(port), rules });
    }
    let routed: &[Endpoint] = if cluster_used {
        &port.endpoints
    } else if local_used {
        &local
    } else {
        &[]
    };
    for endpoint in routed {
        if let IpAddr::V4(ip) = endpoint.ip {
            elements.push(Element {
                container: Container::Shared(HAIRPIN_ENDPOINTS),
                key: Key::Pair(ip, ip),
                data: None,
            });
        }
        if let Some(timeout) = port.affinity_timeout {
            chains.push(endpoint_chain_rules(port, endpoint));
            sets.push(Set {
                name: affinity_set(port, endpoint),
                definition: format!("type ipv4_addr; flags dynamic,timeout; timeout {timeout}s;"),
            });
        }
    }
    PortRules { chains, sets, elements, blocks }
}

/// A chain that spreads new connections over `endpoints` at random. Without session affinity it DNATs through
/// its `block` of slots in one of the shared endpoint maps (slot → endpoint), so an endpoint change is a change
/// of map elements (and of the rule's modulus when the count changes), with no chain per endpoint: the kernel's
/// cost of a commit and of a dump grows with the number of chains. With session affinity, a client that has a
/// live entry in an endpoint's affinity set goes back to that endpoint's chain first, and new clients jump to one
/// at random.
fn balancing_chain(
    name: String,
    first: &[String],
    port: &ServicePort,
    endpoints: &[Endpoint],
    block: Option<u32>,
    elements: &mut Vec<Element>,
) -> Chain {
    let mut rules = first.to_vec();
    let Some(block) = block else {
        rules.extend(
            endpoints.iter().map(|e| format!("ip saddr @{} goto {}", affinity_set(port, e), endpoint_chain(port, e))),
        );
        let targets: Vec<String> =
            endpoints.iter().enumerate().map(|(i, e)| format!("{i} : goto {}", endpoint_chain(port, e))).collect();
        rules.push(format!("numgen random mod {} vmap {{ {} }}", targets.len(), targets.join(", ")));
        return Chain { name, rules };
    };
    let (map, first_slot) = endpoint_slots(port.protocol, block);
    let routed: Vec<(Ipv4Addr, u16)> = endpoints
        .iter()
        .filter_map(|e| if let IpAddr::V4(ip) = e.ip { Some((ip, e.port)) } else { None })
        .take(SLOTS_PER_CHAIN as usize)
        .collect();
    for (slot, (ip, port)) in (first_slot..).zip(&routed) {
        elements.push(Element { container: map, key: Key::Slot(slot), data: Some(Data::Endpoint(*ip, *port)) });
    }
    let proto = port.protocol.as_str();
    rules.push(format!(
        "meta l4proto {proto} dnat ip to numgen random mod {} offset {first_slot} map @{map}",
        routed.len()
    ));
    Chain { name, rules }
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
        let script = Ruleset::new(&config(), vec![web.clone(), port("empty", "10.43.0.11", &[])]).full_script();
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
             mark-for-masquerade\n    meta l4proto tcp dnat ip to numgen random mod 2 offset 0 map @endpoints-tcp-0\n  }}\n"
        );
        assert!(script.contains(&expected_chains), "{script}");
        let endpoints = "  map endpoints-tcp-0 {\n    typeof numgen random mod 1 : ip daddr . tcp dport;\n    elements = {\n      \
                         0 : 10.42.0.2 . 8080,\n      1 : 10.42.0.3 . 8080\n    }\n  }\n";
        assert_eq!(script.matches("  map endpoints-").count(), 3 * ENDPOINT_MAPS as usize, "{script}");
        assert!(script.contains(endpoints), "{script}");
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
        let script = Ruleset::new(&config(), vec![empty, lb.clone()]).full_script();
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
        let plain = Ruleset::new(&config(), vec![port("web", "10.43.0.10", &["10.42.0.2"])]).full_script();
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
        let mut applied = Ruleset::new(&config(), ports.clone());
        let full = applied.full_script();
        let again = applied.plan_to(ports.clone());
        assert!(again.is_empty() && again.script().is_none() && again.element_changes().is_none());
        // Changes that change nothing: the same ports handed in as changed.
        let same = applied.plan(ports.into_iter().map(|p| Change::Port(Arc::new(p))));
        assert_eq!(same.script(), None);
        applied.commit(same);
        assert_eq!(applied.full_script(), full);
    }

    #[test]
    fn a_new_endpoint_adds_its_map_element_and_rewrites_only_its_service_chain() {
        let other = port("other", "10.43.0.9", &["10.42.0.7"]);
        let before = port("web", "10.43.0.10", &["10.42.0.2"]);
        let after = port("web", "10.43.0.10", &["10.42.0.2", "10.42.0.3"]);
        let applied = Ruleset::new(&config(), vec![other.clone(), before]);
        let update = applied.plan_to(vec![other, after.clone()]);
        assert!(update.element_changes().is_none(), "a rule changes: not elements only");
        let script = update.script().unwrap_or_default();
        let svc = service_chain(&after);
        // "other" sorts first and took block 0; web has block 1: slots from 8192 in endpoints-1.
        assert_eq!(
            lines(&script),
            [
                format!("flush chain inet skiff {svc}"),
                format!(
                    "add rule inet skiff {svc} ip daddr 10.43.0.10 meta l4proto tcp th dport 80 ip saddr != 10.42.0.0/16 \
                     jump mark-for-masquerade"
                ),
                format!(
                    "add rule inet skiff {svc} meta l4proto tcp dnat ip to numgen random mod 2 offset 8192 map @endpoints-tcp-1"
                ),
                "add element inet skiff hairpin-endpoints { 10.42.0.3 . 10.42.0.3 }".to_string(),
                "add element inet skiff endpoints-tcp-1 { 8193 : 10.42.0.3 . 8080 }".to_string(),
            ]
        );
    }

    #[test]
    fn a_replaced_endpoint_changes_only_map_elements() {
        let before = port("web", "10.43.0.10", &["10.42.0.2", "10.42.0.3"]);
        let after = port("web", "10.43.0.10", &["10.42.0.2", "10.42.0.4"]);
        let applied = Ruleset::new(&config(), vec![before]);
        let update = applied.plan_to(vec![after.clone()]);
        let script = update.script().unwrap_or_default();
        let map = Container::Endpoints(Protocol::Tcp, 0);
        let hairpin = Container::Shared(HAIRPIN_ENDPOINTS);
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap_or(Ipv4Addr::UNSPECIFIED);
        let endpoint = Data::Endpoint(ip("10.42.0.4"), 8080);
        assert_eq!(
            update.element_changes(),
            Some(vec![
                ElementChange {
                    set: hairpin,
                    add: false,
                    key: Key::Pair(ip("10.42.0.3"), ip("10.42.0.3")),
                    data: None
                },
                ElementChange { set: map, add: false, key: Key::Slot(1), data: None },
                ElementChange { set: hairpin, add: true, key: Key::Pair(ip("10.42.0.4"), ip("10.42.0.4")), data: None },
                ElementChange { set: map, add: true, key: Key::Slot(1), data: Some(&endpoint) },
            ])
        );
        assert_eq!(
            lines(&script),
            [
                "delete element inet skiff hairpin-endpoints { 10.42.0.3 . 10.42.0.3 }",
                "delete element inet skiff endpoints-tcp-0 { 1 }",
                "add element inet skiff hairpin-endpoints { 10.42.0.4 . 10.42.0.4 }",
                "add element inet skiff endpoints-tcp-0 { 1 : 10.42.0.4 . 8080 }",
            ]
        );
    }

    #[test]
    fn losing_every_endpoint_moves_the_elements_then_removes_the_chains() {
        let before = port("web", "10.43.0.10", &["10.42.0.2"]);
        let mut after = before.clone();
        after.endpoints.clear();
        let applied = Ruleset::new(&config(), vec![before.clone()]);
        let script = applied.plan_to(vec![after]).script().unwrap_or_default();
        let svc = service_chain(&before);
        assert_eq!(
            lines(&script),
            [
                "delete element inet skiff hairpin-endpoints { 10.42.0.2 . 10.42.0.2 }".to_string(),
                "delete element inet skiff service-ips { 10.43.0.10 . tcp . 80 }".to_string(),
                "delete element inet skiff endpoints-tcp-0 { 0 }".to_string(),
                "add element inet skiff no-endpoint-services { 10.43.0.10 . tcp . 80 : goto reject-chain }".to_string(),
                format!("flush chain inet skiff {svc}"),
                format!("delete chain inet skiff {svc}"),
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
        let mut applied = Ruleset::new(&config(), vec![web.clone(), shared_ip.clone(), gone.clone()]);
        let update = applied.plan(vec![Change::Removed(gone.id())]);
        let script = update.script().unwrap_or_default();
        let svc = service_chain(&gone);
        assert_eq!(
            lines(&script),
            [
                "delete element inet skiff cluster-ips { 10.43.0.12 }".to_string(),
                "delete element inet skiff hairpin-endpoints { 10.42.0.5 . 10.42.0.5 }".to_string(),
                "delete element inet skiff service-ips { 10.43.0.12 . tcp . 80 }".to_string(),
                "delete element inet skiff endpoints-tcp-0 { 0 }".to_string(),
                format!("flush chain inet skiff {svc}"),
                format!("delete chain inet skiff {svc}"),
            ],
            "10.43.0.10 stays a cluster IP: another port of it remains"
        );
        // And back: the service returns with its chains before the elements that point at them.
        applied.commit(update);
        let script = applied.plan_to(vec![gone, port("web", "10.43.0.10", &["10.42.0.2"]), shared_ip]).script();
        let script = script.unwrap_or_default();
        let first_element = script.find("add element inet skiff service-ips").unwrap_or(0);
        assert!(script.find(&format!("add chain inet skiff {svc}")).is_some_and(|i| i < first_element), "{script}");
        assert!(script.contains("delete element inet skiff service-nodeports { tcp . 30080 }"), "{script}");
        assert!(script.contains("add element inet skiff cluster-ips { 10.43.0.12 }"), "{script}");
        assert!(script.contains("offset 0 map @endpoints-tcp-0"), "the block given back is taken again: {script}");
    }

    #[test]
    fn a_shared_element_passes_to_the_next_claim_when_its_owner_goes() {
        // Two LoadBalancers on port 80 both claim 127.0.0.1 . tcp . 80: the first by id holds it.
        let lb = |name: &str, ip: &str| {
            let mut p = port(name, ip, &["10.42.0.2"]);
            p.localhost = true;
            p
        };
        let (a, b) = (lb("a", "10.43.0.20"), lb("b", "10.43.0.21"));
        let mut applied = Ruleset::new(&config(), vec![b.clone(), a.clone()]);
        let held = |r: &Ruleset| {
            let script = r.full_script();
            let line = script.lines().find(|l| l.contains("127.0.0.1 . tcp . 80")).unwrap_or_default().to_string();
            line.trim().trim_end_matches(',').to_string()
        };
        assert_eq!(held(&applied), format!("127.0.0.1 . tcp . 80 : goto {}", external_chain(&a)));
        assert_eq!(
            applied.counts().2,
            8,
            "two cluster IPs, service IPs and endpoint slots, one localhost, one hairpin pair"
        );
        let update = applied.plan(vec![Change::Removed(a.id())]);
        let script = update.script().unwrap_or_default();
        assert!(
            script.contains(&format!(
                "delete element inet skiff service-ips {{ 10.43.0.20 . tcp . 80, 127.0.0.1 . tcp . 80 }}\ndelete element \
                 inet skiff endpoints-tcp-0 {{ 0 }}\nadd element inet skiff service-ips {{ 127.0.0.1 . tcp . 80 : goto {} }}",
                external_chain(&b)
            )),
            "{script}"
        );
        assert!(!script.contains("hairpin"), "b still DNATs to 10.42.0.2: {script}");
        applied.commit(update);
        assert_eq!(held(&applied), format!("127.0.0.1 . tcp . 80 : goto {}", external_chain(&b)));
        assert_eq!(applied.counts().2, 5);
        // The last port DNATing to 10.42.0.2 takes its hairpin pair with it.
        let update = applied.plan(vec![Change::Removed(b.id())]);
        let script = update.script().unwrap_or_default();
        assert!(script.contains("delete element inet skiff hairpin-endpoints { 10.42.0.2 . 10.42.0.2 }"), "{script}");
        applied.commit(update);
        assert_eq!(applied.counts().2, 0);
        assert_eq!(applied.full_script(), Ruleset::empty(&config()).full_script());
    }

    #[test]
    fn client_ip_affinity_remembers_the_client_per_endpoint() {
        let mut web = port("web", "10.43.0.10", &["10.42.0.2", "10.42.0.3"]);
        web.affinity_timeout = Some(60);
        let script = Ruleset::new(&config(), vec![web.clone()]).full_script();
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
        let applied = Ruleset::new(&config(), vec![web]);
        let script = applied.plan_to(vec![off]).script().unwrap_or_default();
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
        let script = Ruleset::new(&config(), vec![web.clone()]).full_script();
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
        // The cluster chain has block 0 (slots from 0 in endpoints-tcp-0), the local chain block 1.
        let local_rules = format!(
            "  chain {local} {{\n    meta l4proto tcp dnat ip to numgen random mod 1 offset 8192 map @endpoints-tcp-1\n  }}\n"
        );
        assert!(script.contains(&local_rules), "{script}");
        let only_here = "  map endpoints-tcp-1 {\n    typeof numgen random mod 1 : ip daddr . tcp dport;\n    elements = {\n      \
                         8192 : 10.42.0.2 . 8080\n    }\n  }\n";
        assert!(script.contains(only_here), "{script}");
        let everywhere = "  map endpoints-tcp-0 {\n    typeof numgen random mod 1 : ip daddr . tcp dport;\n    elements = {\n      \
                          0 : 10.42.0.2 . 8080,\n      1 : 10.42.1.2 . 8080\n    }\n  }\n";
        assert!(script.contains(everywhere), "the cluster chain still reaches every endpoint: {script}");

        // Endpoints only on other nodes: outside clients are dropped here (the health check steers balancers
        // away), pods still reach the Service.
        web.endpoints = vec![on_node("10.42.1.2", false)];
        let script = Ruleset::new(&config(), vec![web]).full_script();
        assert!(script.contains("tcp . 30080 : drop"), "{script}");
        assert!(script.contains(&format!("10.43.0.30 . tcp . 80 : goto {svc}")), "{script}");
        assert!(!script.contains(&format!("chain {local}")), "{script}");
    }

    #[test]
    fn internal_traffic_policy_local_uses_only_this_nodes_endpoints() {
        let mut dns = port("kube-dns", "10.43.0.10", &[]);
        dns.internal_local = true;
        dns.endpoints = vec![on_node("10.42.0.2", true), on_node("10.42.1.2", false)];
        let script = Ruleset::new(&config(), vec![dns.clone()]).full_script();
        let (svc, local) = (service_chain(&dns), local_chain(&dns));
        assert!(script.contains(&format!("10.43.0.10 . tcp . 80 : goto {local}")), "{script}");
        let local_rules = format!(
            "  chain {local} {{\n    ip daddr 10.43.0.10 meta l4proto tcp th dport 80 ip saddr != 10.42.0.0/16 jump \
             mark-for-masquerade\n    meta l4proto tcp dnat ip to numgen random mod 1 offset 0 map @endpoints-tcp-0\n  }}\n"
        );
        assert!(script.contains(&local_rules), "{script}");
        assert!(script.contains("elements = {\n      0 : 10.42.0.2 . 8080\n    }"), "{script}");
        assert!(!script.contains(&format!("chain {svc}")) && !script.contains("10.42.1.2 . 8080"), "{script}");

        dns.endpoints = vec![on_node("10.42.1.2", false)];
        let script = Ruleset::new(&config(), vec![dns.clone()]).full_script();
        assert!(script.contains("10.43.0.10 . tcp . 80 : drop"), "endpoints elsewhere: drop, not reject: {script}");
        dns.endpoints.clear();
        let script = Ruleset::new(&config(), vec![dns]).full_script();
        assert!(script.contains("10.43.0.10 . tcp . 80 : goto reject-chain"), "no endpoints at all: {script}");
    }
}
