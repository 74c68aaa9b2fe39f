//! The cluster zone: what the Services and EndpointSlices of the cluster mean in DNS, after the Kubernetes
//! DNS-Based Service Discovery specification (schema 1.1.0) and CoreDNS's `kubernetes` plugin where the spec
//! leaves room. The zone keeps compact records of each object ([`ServiceInfo`], [`SliceInfo`]) and answers a
//! question from them ([`Zone::lookup`]) without walking the cluster: by Service name for forward names, and
//! from a reverse index for PTR questions.
//!
//! Names served under `<zone>` (all comparisons case-insensitive; queries arrive lowercased):
//! - `<svc>.<ns>.svc` — A/AAAA: a ClusterIP Service's cluster IPs; a headless Service's ready endpoint addresses
//!   (NXDOMAIN when there are none); CNAME: an ExternalName Service's target.
//! - `<hostname>.<svc>.<ns>.svc` — a headless Service's endpoint by its hostname (the endpoint's `hostname`, else
//!   its address with dashes, as CoreDNS does).
//! - `_<port>._<proto>.<svc>.<ns>.svc` — SRV per named port: to the Service's name (ClusterIP), or per ready
//!   endpoint to its hostname name (headless); the addresses in the additional section.
//! - `<a-b-c-d>.<ns>.pod` — a pod's address (CoreDNS `pods insecure`, kubeadm's default).
//! - `dns-version` — TXT `1.1.0`. The apex answers SOA and NS.
//!
//! A name that exists with no record of the asked type is NOERROR with no answers; one that does not exist is
//! NXDOMAIN; both carry the zone's SOA for negative caching. PTR: `in-addr.arpa`/`ip6.arpa` names of cluster IPs
//! and headless endpoint addresses; other reverse names are not the zone's to answer ([`Zone::lookup`] gives
//! `None` and the server forwards them).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::services::ServiceTable;

/// The schema version of the specification this zone implements.
pub const SCHEMA_VERSION: &str = "1.1.0";

/// A namespace and a name.
pub type ObjectKey = (Arc<str>, Arc<str>);

/// What the zone needs besides the objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneConfig {
    /// The cluster domain, without the trailing dot (`cluster.local`).
    pub domain: String,
    /// The TTL of every answer, in seconds.
    pub ttl: u32,
}

impl Default for ZoneConfig {
    fn default() -> Self {
        ZoneConfig { domain: "cluster.local".into(), ttl: 5 }
    }
}

/// A named port: (name, protocol in lowercase, port number).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NamedPort {
    pub name: Box<str>,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: &'static str,
    pub port: u16,
}

impl NamedPort {
    /// A port as a Service or a slice spells it; `None` when unnamed (no SRV record), of a protocol Kubernetes
    /// does not have, or out of range.
    fn new(name: Option<&str>, protocol: Option<&str>, port: Option<i32>) -> Option<NamedPort> {
        let protocol = match protocol.unwrap_or("TCP").to_ascii_uppercase().as_str() {
            "TCP" => "tcp",
            "UDP" => "udp",
            "SCTP" => "sctp",
            _ => return None,
        };
        Some(NamedPort {
            name: name.filter(|n| !n.is_empty())?.to_lowercase().into(),
            protocol,
            port: u16::try_from(port?).ok()?,
        })
    }
}

/// A Service's cluster IPs, kept inline: at most one per family, so at most two (the API server allows no more
/// in `spec.clusterIPs`; past two, the first two are kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterIps {
    ips: [IpAddr; 2],
    length: u8,
}

impl ClusterIps {
    pub fn as_slice(&self) -> &[IpAddr] {
        &self.ips[..usize::from(self.length)]
    }
}

impl From<Vec<IpAddr>> for ClusterIps {
    fn from(ips: Vec<IpAddr>) -> ClusterIps {
        let unset = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
        let mut kept = ClusterIps { ips: [unset; 2], length: 0 };
        for (slot, ip) in kept.ips.iter_mut().zip(ips) {
            *slot = ip;
            kept.length += 1;
        }
        kept
    }
}

/// How a Service resolves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceKind {
    /// To its cluster IPs (none yet: the name exists without addresses).
    ClusterIp(ClusterIps),
    /// `clusterIP: None`: to its ready endpoints.
    Headless,
    /// To another name.
    ExternalName(Box<str>),
}

/// What DNS reads of a Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInfo {
    pub kind: ServiceKind,
    /// The Service's named ports (unnamed ones have no SRV record); the zone keeps one copy of each list.
    pub ports: Arc<[NamedPort]>,
    /// `publishNotReadyAddresses`: endpoints resolve whether ready or not.
    pub publish_not_ready: bool,
}

impl ServiceInfo {
    /// Whether names of the Service resolve to its endpoints (headless), so that its slices must be kept. A
    /// ClusterIP or ExternalName Service's slices are not: nothing in DNS reads them, and a Service cannot become
    /// headless without new slices (its clusterIP is immutable; an ExternalName switched to headless gets its
    /// slices made afterwards).
    pub fn resolves_to_endpoints(&self) -> bool {
        self.kind == ServiceKind::Headless
    }

    /// What DNS reads of `service`.
    pub fn new(service: &Service) -> ServiceInfo {
        let spec = service.spec.clone().unwrap_or_default();
        let kind = if spec.type_.as_deref() == Some("ExternalName") {
            ServiceKind::ExternalName(
                spec.external_name.unwrap_or_default().trim_end_matches('.').to_lowercase().into(),
            )
        } else if spec.cluster_ip.as_deref() == Some("None") {
            ServiceKind::Headless
        } else {
            let mut ips: Vec<IpAddr> = spec
                .cluster_ips
                .iter()
                .flatten()
                .chain(spec.cluster_ip.iter())
                .filter_map(|ip| ip.parse().ok())
                .collect();
            ips.sort();
            ips.dedup();
            ServiceKind::ClusterIp(ClusterIps::from(ips))
        };
        let ports = spec
            .ports
            .iter()
            .flatten()
            .filter_map(|p| NamedPort::new(p.name.as_deref(), p.protocol.as_deref(), Some(p.port)))
            .collect();
        ServiceInfo { kind, ports, publish_not_ready: spec.publish_not_ready_addresses.unwrap_or(false) }
    }
}

/// What DNS reads of an EndpointSlice.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SliceInfo {
    /// The slice's named ports (the endpoints' port numbers).
    pub ports: Box<[NamedPort]>,
    pub endpoints: Box<[EndpointInfo]>,
}

/// One endpoint of a slice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointInfo {
    pub ips: Box<[IpAddr]>,
    /// `hostname`, lowercased.
    pub hostname: Option<Box<str>>,
    /// `conditions.ready` (unset means ready).
    pub ready: bool,
}

impl EndpointInfo {
    /// The endpoint's name under its Service: its hostname, else its first address with dashes.
    fn host_label(&self) -> Option<Box<str>> {
        self.hostname.clone().or_else(|| self.ips.first().map(|ip| ip.to_string().replace(['.', ':'], "-").into()))
    }
}

impl SliceInfo {
    /// What DNS reads of `slice`.
    pub fn new(slice: &EndpointSlice) -> SliceInfo {
        let ports = slice
            .ports
            .iter()
            .flatten()
            .filter_map(|p| NamedPort::new(p.name.as_deref(), p.protocol.as_deref(), p.port))
            .collect();
        let endpoints = slice
            .endpoints
            .iter()
            .map(|e| EndpointInfo {
                ips: e.addresses.iter().filter_map(|a| a.parse().ok()).collect(),
                hostname: e.hostname.as_ref().map(|h| h.to_lowercase().into()),
                ready: e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true),
            })
            .collect();
        SliceInfo { ports, endpoints }
    }
}

/// A reply from the zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub code: ResponseCode,
    pub answers: Vec<Record>,
    pub additionals: Vec<Record>,
    /// The zone's SOA, for the authority section of a negative answer.
    pub soa: Option<Record>,
    /// An ExternalName's target, whose addresses the server adds (from the zone or upstream).
    pub chase: Option<Name>,
}

/// The cluster zone.
pub struct Zone {
    config: ZoneConfig,
    origin: Name,
    /// Services by namespace and name, and by cluster IP.
    services: ServiceTable,
    /// Service → its slices, by slice name.
    slices: HashMap<ObjectKey, Vec<(Arc<str>, SliceInfo)>>,
    /// Slice → its Service.
    slice_service: HashMap<ObjectKey, ObjectKey>,
    /// Every Service's list of ports, once: most Services of a cluster have one of a few.
    port_lists: HashSet<Arc<[NamedPort]>>,
    /// Namespace → how many Services it has (its key is the one copy of the name every key shares).
    namespaces: HashMap<Arc<str>, usize>,
    /// A headless Service's endpoint address → the Services and host labels naming it.
    endpoint_names: HashMap<IpAddr, Vec<(ObjectKey, Box<str>)>>,
    /// The SOA serial: the time of the last change.
    serial: u32,
    /// Moved on by every change, for the answer cache.
    generation: crate::cache::Generation,
}

/// A lowercase name from labels joined under `origin`; `None` if not a valid name.
fn name_under(labels: &[&str], origin: &Name) -> Option<Name> {
    let relative = Name::from_labels(labels.iter().map(|l| l.as_bytes())).ok()?;
    relative.append_domain(origin).ok()
}

fn now_serial() -> u32 {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    u32::try_from(secs % u64::from(u32::MAX)).unwrap_or(0)
}

fn address_record(name: Name, ttl: u32, ip: IpAddr) -> Record {
    let rdata = match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    };
    Record::from_rdata(name, ttl, rdata)
}

/// Whether `ip` answers a question of `qtype` (ANY takes both families).
fn family_matches(ip: &IpAddr, qtype: RecordType) -> bool {
    match qtype {
        RecordType::A => ip.is_ipv4(),
        RecordType::AAAA => ip.is_ipv6(),
        RecordType::ANY => true,
        _ => false,
    }
}

/// The address a reverse name stands for: `d.c.b.a.in-addr.arpa.` or 32 nibbles under `ip6.arpa.`.
pub fn reverse_address(name: &Name) -> Option<IpAddr> {
    let text = name.to_ascii().to_lowercase();
    let text = text.trim_end_matches('.');
    if let Some(v4) = text.strip_suffix(".in-addr.arpa") {
        let mut octets: Vec<&str> = v4.split('.').collect();
        if octets.len() != 4 {
            return None;
        }
        octets.reverse();
        return octets.join(".").parse().ok();
    }
    let v6 = text.strip_suffix(".ip6.arpa")?;
    let nibbles: Vec<&str> = v6.split('.').collect();
    if nibbles.len() != 32 || nibbles.iter().any(|n| n.len() != 1) {
        return None;
    }
    let hex: String = nibbles.iter().rev().copied().collect();
    let groups: Vec<&str> = (0..8).map(|i| &hex[i * 4..i * 4 + 4]).collect();
    groups.join(":").parse().ok()
}

impl Zone {
    /// An empty zone.
    pub fn new(config: ZoneConfig) -> Zone {
        let origin = Name::from_ascii(format!("{}.", config.domain.trim_end_matches('.')))
            .unwrap_or_else(|_| Name::root())
            .to_lowercase();
        Zone {
            config,
            origin,
            services: ServiceTable::default(),
            slices: HashMap::new(),
            slice_service: HashMap::new(),
            port_lists: HashSet::new(),
            namespaces: HashMap::new(),
            endpoint_names: HashMap::new(),
            serial: now_serial(),
            generation: crate::cache::Generation::default(),
        }
    }

    /// The zone's apex (`cluster.local.`).
    pub fn origin(&self) -> &Name {
        &self.origin
    }

    /// The zone's change counter, which every change moves on (the answer cache compares with it).
    pub fn generation(&self) -> crate::cache::Generation {
        self.generation.clone()
    }

    /// How many Services and EndpointSlices the zone holds.
    pub fn counts(&self) -> (usize, usize) {
        (self.services.len(), self.slice_service.len())
    }

    /// Sets (or with `None` removes) a Service.
    pub fn set_service(&mut self, key: ObjectKey, info: Option<ServiceInfo>) {
        let key = self.shared(key);
        let before = self.reverse_entries(&key);
        if info.as_ref().is_some_and(|i| !i.resolves_to_endpoints())
            && let Some(slices) = self.slices.remove(&key)
        {
            for (name, _) in slices {
                self.slice_service.remove(&(key.0.clone(), name));
            }
        }
        let replaced = match info {
            Some(mut info) => {
                info.ports = self.shared_ports(info.ports);
                self.services.insert(key.0.clone(), &key.1, info)
            }
            None => self.services.remove(&key.0, &key.1),
        };
        let had = replaced.is_some();
        if let Some(old) = replaced
            && Arc::strong_count(&old.ports) == 2
        {
            // Only the set and `old` hold the list: no Service has it any more.
            self.port_lists.remove(&old.ports);
        }
        let has = self.services.get(&key.0, &key.1).is_some();
        if has && !had {
            *self.namespaces.entry(key.0.clone()).or_default() += 1;
        } else if had && !has {
            let count = self.namespaces.entry(key.0.clone()).or_default();
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.namespaces.remove(&key.0);
            }
        }
        if had || has {
            self.changed(&key, before);
        }
    }

    /// Sets (or with `None` removes) an EndpointSlice, with the Service it belongs to.
    pub fn set_slice(&mut self, key: ObjectKey, slice: Option<(ObjectKey, SliceInfo)>) {
        let key = self.shared(key);
        let slice = slice.map(|(service, info)| (self.shared(service), info));
        let old = self.slice_service.remove(&key);
        // A slice of a Service that resolves without endpoints (ClusterIP, ExternalName) is not kept.
        let new = slice.filter(|((namespace, name), _)| {
            self.services.get(namespace, name).is_none_or(|s| s.info.resolves_to_endpoints())
        });
        let in_place = matches!((&old, &new), (Some(old), Some((service, _))) if old == service);
        if in_place && let Some((service, info)) = new {
            // An update in place: one change to the Service, seen from before the old slice went.
            let before = self.reverse_entries(&service);
            self.remove_slice_entry(&service, &key.1);
            self.insert_slice_entry(key, service.clone(), info);
            self.changed(&service, before);
            return;
        }
        if let Some(service) = old {
            let before = self.reverse_entries(&service);
            self.remove_slice_entry(&service, &key.1);
            self.changed(&service, before);
        }
        if let Some((service, info)) = new {
            let before = self.reverse_entries(&service);
            self.insert_slice_entry(key, service.clone(), info);
            self.changed(&service, before);
        }
    }

    /// Drops the slice `name` from `service`'s list (and the list, when it empties).
    fn remove_slice_entry(&mut self, service: &ObjectKey, name: &str) {
        if let Some(slices) = self.slices.get_mut(service) {
            slices.retain(|(own, _)| &**own != name);
            if slices.is_empty() {
                self.slices.remove(service);
            }
        }
    }

    /// Adds the slice `key` to `service`'s list, kept sorted by name.
    fn insert_slice_entry(&mut self, key: ObjectKey, service: ObjectKey, info: SliceInfo) {
        let slices = self.slices.entry(service.clone()).or_default();
        let at = slices.partition_point(|(name, _)| *name < key.1);
        slices.insert(at, (key.1.clone(), info));
        self.slice_service.insert(key, service);
    }

    /// The zone's copy of a list of ports (`ports` becomes it when the zone has none).
    fn shared_ports(&mut self, ports: Arc<[NamedPort]>) -> Arc<[NamedPort]> {
        if let Some(shared) = self.port_lists.get(&ports) {
            return shared.clone();
        }
        self.port_lists.insert(ports.clone());
        ports
    }

    /// `key` with its namespace the zone's own copy, when it has one, so that keys share it.
    fn shared(&self, (namespace, name): ObjectKey) -> ObjectKey {
        let namespace = self.namespaces.get_key_value(&namespace).map_or(namespace, |(ns, _)| ns.clone());
        (namespace, name)
    }

    /// Removes every Service `keep` does not hold (after a relist applied the ones it named).
    pub fn retain_services(&mut self, keep: &HashSet<ObjectKey>) {
        let keep: HashSet<(&str, &str)> = keep.iter().map(|(namespace, name)| (&**namespace, &**name)).collect();
        let gone: Vec<ObjectKey> = self
            .services
            .iter()
            .filter(|s| !keep.contains(&(&**s.namespace, s.name)))
            .map(|s| (s.namespace.clone(), s.name.into()))
            .collect();
        for key in gone {
            self.set_service(key, None);
        }
        self.shrink();
    }

    /// Removes every EndpointSlice `keep` does not hold (after a relist applied the ones it named).
    pub fn retain_slices(&mut self, keep: &HashSet<ObjectKey>) {
        let gone: Vec<ObjectKey> = self.slice_service.keys().filter(|k| !keep.contains(*k)).cloned().collect();
        for key in gone {
            self.set_slice(key, None);
        }
        self.shrink();
    }

    /// Gives back the room a relist left in the maps (slices that came before their Services, then dropped).
    fn shrink(&mut self) {
        self.services.shrink_to_fit();
        self.slices.shrink_to_fit();
        self.slice_service.shrink_to_fit();
        self.endpoint_names.shrink_to_fit();
    }

    /// The endpoint names headless Service `key` gives now: each address, with the host label under the
    /// Service's name that names it. (Cluster IPs are the [`ServiceTable`]'s to index.)
    fn reverse_entries(&self, key: &ObjectKey) -> Vec<(IpAddr, Box<str>)> {
        let Some(service) = self.services.get(&key.0, &key.1) else { return Vec::new() };
        if service.info.kind != ServiceKind::Headless {
            return Vec::new();
        }
        self.usable_endpoints(key, service.info)
            .into_iter()
            .filter_map(|e| Some((e, e.host_label()?)))
            .flat_map(|(e, host)| e.ips.iter().map(move |ip| (*ip, host.clone())))
            .collect()
    }

    /// Records a change to Service `key` (its Service or slices), whose reverse names were `before`: retires
    /// cached answers and brings the reverse index up to date.
    fn changed(&mut self, key: &ObjectKey, before: Vec<(IpAddr, Box<str>)>) {
        self.serial = self.serial.wrapping_add(1).max(now_serial());
        self.generation.fetch_add(1, std::sync::atomic::Ordering::Release);
        for (ip, _) in before {
            if let Some(names) = self.endpoint_names.get_mut(&ip) {
                names.retain(|(owner, _)| owner != key);
                if names.is_empty() {
                    self.endpoint_names.remove(&ip);
                }
            }
        }
        for (ip, host) in self.reverse_entries(key) {
            let names = self.endpoint_names.entry(ip).or_default();
            if !names.iter().any(|(owner, h)| owner == key && *h == host) {
                // Nearly every address has one name: no room kept for more.
                names.reserve_exact(1);
                names.push((key.clone(), host));
                names.sort();
            }
        }
    }

    /// The names pointing at `ip`, sorted: its Service's (a cluster IP), its headless endpoints'.
    fn reverse_names(&self, ip: &IpAddr) -> Vec<Name> {
        let mut names: Vec<Name> =
            self.services.by_cluster_ip(ip).and_then(|s| self.service_name(s.namespace, s.name)).into_iter().collect();
        for ((namespace, name), host) in self.endpoint_names.get(ip).into_iter().flatten() {
            names.extend(self.service_name(namespace, name).and_then(|service| name_under(&[host], &service)));
        }
        names.sort();
        names.dedup();
        names
    }

    /// `<svc>.<ns>.svc.<zone>.`
    fn service_name(&self, namespace: &str, name: &str) -> Option<Name> {
        name_under(&[name, namespace, "svc"], &self.origin)
    }

    /// The endpoints a name of `service` resolves to: ready ones (every one with `publishNotReadyAddresses`),
    /// one per address across slices.
    fn usable_endpoints<'a>(&'a self, key: &ObjectKey, service: &ServiceInfo) -> Vec<&'a EndpointInfo> {
        let mut seen: Vec<IpAddr> = Vec::new();
        let mut out = Vec::new();
        for (_, slice) in self.slices.get(key).into_iter().flatten() {
            for endpoint in &slice.endpoints {
                if !(endpoint.ready || service.publish_not_ready) || endpoint.ips.is_empty() {
                    continue;
                }
                if endpoint.ips.iter().any(|ip| seen.contains(ip)) {
                    continue;
                }
                seen.extend(endpoint.ips.iter().copied());
                out.push(endpoint);
            }
        }
        out
    }

    /// The port number an endpoint of `service` serves a named port on.
    fn endpoint_port(&self, key: &ObjectKey, port: &NamedPort) -> Option<u16> {
        self.slices
            .get(key)
            .into_iter()
            .flatten()
            .flat_map(|(_, slice)| &slice.ports)
            .find(|p| p.name == port.name && p.protocol == port.protocol)
            .map(|p| p.port)
    }

    fn soa(&self) -> Record {
        let mname = name_under(&["ns", "dns"], &self.origin).unwrap_or_else(|| self.origin.clone());
        let rname = name_under(&["hostmaster"], &self.origin).unwrap_or_else(|| self.origin.clone());
        let ttl = self.config.ttl;
        Record::from_rdata(
            self.origin.clone(),
            ttl,
            RData::SOA(SOA::new(mname, rname, self.serial, 7200, 1800, 86400, ttl)),
        )
    }

    fn reply(&self, code: ResponseCode, answers: Vec<Record>, additionals: Vec<Record>) -> Answer {
        let soa = answers.is_empty().then(|| self.soa());
        Answer { code, answers, additionals, soa, chase: None }
    }

    fn no_data(&self) -> Answer {
        self.reply(ResponseCode::NoError, Vec::new(), Vec::new())
    }

    fn no_name(&self) -> Answer {
        self.reply(ResponseCode::NXDomain, Vec::new(), Vec::new())
    }

    /// The zone's answer to `qtype` at `qname`; `None` when the name is not the zone's (outside the cluster
    /// domain, or a reverse name of an address the zone does not know): the server forwards it.
    pub fn lookup(&self, qname: &Name, qtype: RecordType) -> Option<Answer> {
        let qname = qname.to_lowercase();
        let ttl = self.config.ttl;
        if let Some(ip) = reverse_address(&qname) {
            let names = self.reverse_names(&ip);
            if names.is_empty() {
                return None;
            }
            if qtype != RecordType::PTR && qtype != RecordType::ANY {
                return Some(self.no_data());
            }
            let answers =
                names.into_iter().map(|n| Record::from_rdata(qname.clone(), ttl, RData::PTR(PTR(n)))).collect();
            return Some(self.reply(ResponseCode::NoError, answers, Vec::new()));
        }
        if !self.origin.zone_of(&qname) {
            return None;
        }
        let depth = usize::from(qname.num_labels() - self.origin.num_labels());
        let all: Vec<String> = qname.iter().map(|l| String::from_utf8_lossy(l).into_owned()).collect();
        let labels: Vec<&str> = all[..depth].iter().map(String::as_str).collect();
        Some(match labels.as_slice() {
            [] => match qtype {
                RecordType::SOA => self.reply(ResponseCode::NoError, vec![self.soa()], Vec::new()),
                RecordType::NS => {
                    let ns = name_under(&["ns", "dns"], &self.origin).unwrap_or_else(|| self.origin.clone());
                    let answer = Record::from_rdata(self.origin.clone(), ttl, RData::NS(NS(ns)));
                    self.reply(ResponseCode::NoError, vec![answer], Vec::new())
                }
                _ => self.no_data(),
            },
            ["dns-version"] => match qtype {
                RecordType::TXT | RecordType::ANY => {
                    let txt = RData::TXT(TXT::new(vec![SCHEMA_VERSION.to_string()]));
                    self.reply(ResponseCode::NoError, vec![Record::from_rdata(qname.clone(), ttl, txt)], Vec::new())
                }
                _ => self.no_data(),
            },
            ["svc"] | ["pod"] => self.no_data(),
            [namespace, "svc"] | [namespace, "pod"] => {
                if self.namespaces.contains_key(*namespace) {
                    self.no_data()
                } else {
                    self.no_name()
                }
            }
            [pod, _namespace, "pod"] => self.pod(&qname, pod, qtype),
            [service, namespace, "svc"] => self.service(&qname, namespace, service, qtype),
            [first, service, namespace, "svc"] => self.endpoint_or_protocol(namespace, service, first, qtype),
            [port, protocol, service, namespace, "svc"] => self.srv(&qname, namespace, service, port, protocol, qtype),
            _ => self.no_name(),
        })
    }

    /// `<a-b-c-d>.<ns>.pod`: the address the label spells.
    fn pod(&self, qname: &Name, label: &str, qtype: RecordType) -> Answer {
        let v4 = label.replace('-', ".").parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4);
        let ip = v4.or_else(|| label.replace('-', ":").parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6));
        match ip {
            None => self.no_name(),
            Some(ip) if family_matches(&ip, qtype) => {
                self.reply(ResponseCode::NoError, vec![address_record(qname.clone(), self.config.ttl, ip)], Vec::new())
            }
            Some(_) => self.no_data(),
        }
    }

    /// `<svc>.<ns>.svc`.
    fn service(&self, qname: &Name, namespace: &str, name: &str, qtype: RecordType) -> Answer {
        let ttl = self.config.ttl;
        let Some(service) = self.services.get(namespace, name).map(|s| s.info) else { return self.no_name() };
        match &service.kind {
            ServiceKind::ClusterIp(ips) => {
                let answers = ips
                    .as_slice()
                    .iter()
                    .filter(|ip| family_matches(ip, qtype))
                    .map(|ip| address_record(qname.clone(), ttl, *ip));
                self.reply(ResponseCode::NoError, answers.collect(), Vec::new())
            }
            ServiceKind::Headless => {
                let endpoints = self.usable_endpoints(&(namespace.into(), name.into()), service);
                if endpoints.is_empty() {
                    return self.no_name();
                }
                let mut ips: Vec<IpAddr> = endpoints.iter().flat_map(|e| e.ips.iter().copied()).collect();
                ips.sort();
                ips.dedup();
                let answers =
                    ips.iter().filter(|ip| family_matches(ip, qtype)).map(|ip| address_record(qname.clone(), ttl, *ip));
                self.reply(ResponseCode::NoError, answers.collect(), Vec::new())
            }
            ServiceKind::ExternalName(target) => {
                let Ok(target) = Name::from_ascii(format!("{target}.")) else { return self.no_data() };
                let cname = Record::from_rdata(qname.clone(), ttl, RData::CNAME(CNAME(target.clone())));
                let chase = matches!(qtype, RecordType::A | RecordType::AAAA | RecordType::ANY).then_some(target);
                Answer { chase, ..self.reply(ResponseCode::NoError, vec![cname], Vec::new()) }
            }
        }
    }

    /// `<hostname>.<svc>.<ns>.svc` (a headless Service's endpoint), or `_<proto>.<svc>.<ns>.svc` (a name above
    /// SRV records, which exists without records of its own).
    fn endpoint_or_protocol(&self, namespace: &str, name: &str, label: &str, qtype: RecordType) -> Answer {
        let Some(service) = self.services.get(namespace, name).map(|s| s.info) else { return self.no_name() };
        if let Some(protocol) = label.strip_prefix('_') {
            return if service.ports.iter().any(|p| p.protocol == protocol) { self.no_data() } else { self.no_name() };
        }
        if service.kind != ServiceKind::Headless {
            return self.no_name();
        }
        let Some(service_name) = self.service_name(namespace, name) else { return self.no_name() };
        let Some(qname) = name_under(&[label], &service_name) else { return self.no_name() };
        let endpoints = self.usable_endpoints(&(namespace.into(), name.into()), service);
        let matching: Vec<&&EndpointInfo> =
            endpoints.iter().filter(|e| e.host_label().as_deref() == Some(label)).collect();
        if matching.is_empty() {
            return self.no_name();
        }
        let ttl = self.config.ttl;
        let answers = matching
            .iter()
            .flat_map(|e| &e.ips)
            .filter(|ip| family_matches(ip, qtype))
            .map(|ip| address_record(qname.clone(), ttl, *ip))
            .collect();
        self.reply(ResponseCode::NoError, answers, Vec::new())
    }

    /// `_<port>._<proto>.<svc>.<ns>.svc`: SRV.
    fn srv(&self, qname: &Name, namespace: &str, name: &str, port: &str, protocol: &str, qtype: RecordType) -> Answer {
        let Some(service) = self.services.get(namespace, name).map(|s| s.info) else { return self.no_name() };
        let (Some(port), Some(protocol)) = (port.strip_prefix('_'), protocol.strip_prefix('_')) else {
            return self.no_name();
        };
        let Some(named) = service.ports.iter().find(|p| *p.name == *port && p.protocol == protocol) else {
            return self.no_name();
        };
        if qtype != RecordType::SRV && qtype != RecordType::ANY {
            return self.no_data();
        }
        let ttl = self.config.ttl;
        let Some(service_name) = self.service_name(namespace, name) else { return self.no_name() };
        // Targets with their addresses.
        let targets: Vec<(Name, u16, Vec<IpAddr>)> = match &service.kind {
            ServiceKind::ClusterIp(ips) => vec![(service_name, named.port, ips.as_slice().to_vec())],
            ServiceKind::Headless => {
                let key = (namespace.into(), name.into());
                let Some(target_port) = self.endpoint_port(&key, named) else { return self.no_data() };
                self.usable_endpoints(&key, service)
                    .into_iter()
                    .filter_map(|e| {
                        Some((name_under(&[&e.host_label()?], &service_name)?, target_port, e.ips.to_vec()))
                    })
                    .collect()
            }
            ServiceKind::ExternalName(_) => return self.no_data(),
        };
        if targets.is_empty() {
            return self.no_name();
        }
        let weight = u16::try_from(100 / targets.len()).unwrap_or(1).max(1);
        let mut answers = Vec::new();
        let mut additionals = Vec::new();
        for (target, port, ips) in targets {
            let srv = SRV::new(0, weight, port, target.clone());
            answers.push(Record::from_rdata(qname.clone(), ttl, RData::SRV(srv)));
            additionals.extend(ips.into_iter().map(|ip| address_record(target.clone(), ttl, ip)));
        }
        self.reply(ResponseCode::NoError, answers, additionals)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ns: &str, name: &str) -> ObjectKey {
        (ns.into(), name.into())
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
    }

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap_or_else(|_| Name::root())
    }

    fn http() -> Vec<NamedPort> {
        vec![NamedPort { name: "http".into(), protocol: "tcp", port: 80 }]
    }

    fn endpoint(address: &str, hostname: Option<&str>, ready: bool) -> EndpointInfo {
        EndpointInfo { ips: vec![ip(address)].into(), hostname: hostname.map(Into::into), ready }
    }

    fn zone() -> Zone {
        let mut zone = Zone::new(ZoneConfig::default());
        let cluster_ip = ServiceInfo {
            kind: ServiceKind::ClusterIp(vec![ip("10.43.0.20")].into()),
            ports: http().into(),
            publish_not_ready: false,
        };
        zone.set_service(key("default", "numbers-api"), Some(cluster_ip));
        let headless = ServiceInfo { kind: ServiceKind::Headless, ports: http().into(), publish_not_ready: false };
        zone.set_service(key("shop", "db"), Some(headless));
        let slice = SliceInfo {
            ports: vec![NamedPort { name: "http".into(), protocol: "tcp", port: 8080 }].into(),
            endpoints: vec![
                endpoint("10.42.0.5", Some("db-0"), true),
                endpoint("10.42.0.6", None, true),
                endpoint("10.42.0.7", Some("db-2"), false),
            ]
            .into(),
        };
        zone.set_slice(key("shop", "db-abc"), Some((key("shop", "db"), slice)));
        let external = ServiceInfo {
            kind: ServiceKind::ExternalName("api.example.test".into()),
            ports: Vec::new().into(),
            publish_not_ready: false,
        };
        zone.set_service(key("default", "legacy"), Some(external));
        zone
    }

    fn rdatas(answer: &Answer) -> Vec<String> {
        answer.answers.iter().map(|r| r.data.to_string()).collect()
    }

    fn ask(zone: &Zone, qname: &str, qtype: RecordType) -> Answer {
        zone.lookup(&name(qname), qtype).unwrap_or_else(|| panic!("{qname} is the zone's"))
    }

    #[test]
    fn a_cluster_ip_service_has_its_address_srv_per_named_port_and_ptr() {
        let zone = zone();
        let a = ask(&zone, "Numbers-API.default.svc.cluster.local.", RecordType::A);
        assert_eq!((a.code, rdatas(&a)), (ResponseCode::NoError, vec!["10.43.0.20".to_string()]));
        assert_eq!(a.answers[0].ttl, 5);
        let aaaa = ask(&zone, "numbers-api.default.svc.cluster.local.", RecordType::AAAA);
        assert!(aaaa.code == ResponseCode::NoError && aaaa.answers.is_empty() && aaaa.soa.is_some(), "NODATA");
        let srv = ask(&zone, "_http._tcp.numbers-api.default.svc.cluster.local.", RecordType::SRV);
        assert_eq!(rdatas(&srv), ["0 100 80 numbers-api.default.svc.cluster.local."]);
        assert_eq!(srv.additionals.len(), 1);
        let no_port = ask(&zone, "_grpc._tcp.numbers-api.default.svc.cluster.local.", RecordType::SRV);
        assert_eq!(no_port.code, ResponseCode::NXDomain);
        let ptr = ask(&zone, "20.0.43.10.in-addr.arpa.", RecordType::PTR);
        assert_eq!(rdatas(&ptr), ["numbers-api.default.svc.cluster.local."]);
        assert!(zone.lookup(&name("1.0.43.10.in-addr.arpa."), RecordType::PTR).is_none(), "not ours: forwarded");
    }

    #[test]
    fn a_headless_service_resolves_to_ready_endpoints_by_name_and_hostname() {
        let mut zone = zone();
        let a = ask(&zone, "db.shop.svc.cluster.local.", RecordType::A);
        assert_eq!(rdatas(&a), ["10.42.0.5", "10.42.0.6"], "not-ready 10.42.0.7 left out");
        let host = ask(&zone, "db-0.db.shop.svc.cluster.local.", RecordType::A);
        assert_eq!(rdatas(&host), ["10.42.0.5"]);
        let by_address = ask(&zone, "10-42-0-6.db.shop.svc.cluster.local.", RecordType::A);
        assert_eq!(rdatas(&by_address), ["10.42.0.6"]);
        assert_eq!(ask(&zone, "db-2.db.shop.svc.cluster.local.", RecordType::A).code, ResponseCode::NXDomain);
        let srv = ask(&zone, "_http._tcp.db.shop.svc.cluster.local.", RecordType::SRV);
        assert_eq!(
            rdatas(&srv),
            ["0 50 8080 db-0.db.shop.svc.cluster.local.", "0 50 8080 10-42-0-6.db.shop.svc.cluster.local."]
        );
        let ptr = ask(&zone, "5.0.42.10.in-addr.arpa.", RecordType::PTR);
        assert_eq!(rdatas(&ptr), ["db-0.db.shop.svc.cluster.local."]);
        assert_eq!(ask(&zone, "_tcp.db.shop.svc.cluster.local.", RecordType::A).code, ResponseCode::NoError);

        // publishNotReadyAddresses: every endpoint.
        let publish = ServiceInfo { kind: ServiceKind::Headless, ports: http().into(), publish_not_ready: true };
        zone.set_service(key("shop", "db"), Some(publish));
        assert_eq!(rdatas(&ask(&zone, "db.shop.svc.cluster.local.", RecordType::A)).len(), 3);
        // No endpoints at all: NXDOMAIN.
        zone.set_slice(key("shop", "db-abc"), None);
        assert_eq!(ask(&zone, "db.shop.svc.cluster.local.", RecordType::A).code, ResponseCode::NXDomain);
        assert!(zone.lookup(&name("5.0.42.10.in-addr.arpa."), RecordType::PTR).is_none(), "PTR gone with it");
    }

    #[test]
    fn external_name_is_a_cname_to_chase() {
        let zone = zone();
        let a = ask(&zone, "legacy.default.svc.cluster.local.", RecordType::A);
        assert_eq!(rdatas(&a), ["api.example.test."]);
        assert_eq!(a.chase, Some(name("api.example.test.")));
        let txt = ask(&zone, "legacy.default.svc.cluster.local.", RecordType::TXT);
        assert_eq!((rdatas(&txt), txt.chase), (vec!["api.example.test.".to_string()], None));
    }

    #[test]
    fn nxdomain_and_nodata_follow_what_exists() {
        let mut zone = zone();
        for missing in [
            "nothing.default.svc.cluster.local.",
            "numbers-api.nowhere.svc.cluster.local.",
            "nowhere.svc.cluster.local.",
            "a.b.c.d.e.f.cluster.local.",
            "example.com.default.svc.cluster.local.",
            "x.numbers-api.default.svc.cluster.local.",
        ] {
            let answer = ask(&zone, missing, RecordType::A);
            assert_eq!(answer.code, ResponseCode::NXDomain, "{missing}");
            assert!(answer.soa.is_some(), "{missing}: the SOA for negative caching");
        }
        for empty in ["cluster.local.", "svc.cluster.local.", "default.svc.cluster.local.", "pod.cluster.local."] {
            let answer = ask(&zone, empty, RecordType::A);
            assert_eq!((answer.code, answer.answers.len()), (ResponseCode::NoError, 0), "{empty}");
        }
        let version = ask(&zone, "dns-version.cluster.local.", RecordType::TXT);
        assert_eq!(rdatas(&version), ["1.1.0"]);
        let pod = ask(&zone, "10-42-0-9.default.pod.cluster.local.", RecordType::A);
        assert_eq!(rdatas(&pod), ["10.42.0.9"]);
        assert!(zone.lookup(&name("example.com."), RecordType::A).is_none(), "outside the zone: forwarded");
        zone.set_service(key("default", "numbers-api"), None);
        assert_eq!(ask(&zone, "numbers-api.default.svc.cluster.local.", RecordType::A).code, ResponseCode::NXDomain);
        assert!(zone.lookup(&name("20.0.43.10.in-addr.arpa."), RecordType::PTR).is_none());
        assert_eq!(ask(&zone, "default.svc.cluster.local.", RecordType::A).code, ResponseCode::NoError, "legacy");
    }

    #[test]
    fn a_relist_drops_what_went_while_the_watch_was_away() {
        let mut zone = zone();
        let kept = ServiceInfo {
            kind: ServiceKind::ClusterIp(vec![ip("10.43.0.20")].into()),
            ports: http().into(),
            publish_not_ready: false,
        };
        // The relist names numbers-api (applied again as it comes) and no slice.
        zone.set_service(key("default", "numbers-api"), Some(kept));
        zone.retain_services(&HashSet::from([key("default", "numbers-api")]));
        zone.retain_slices(&HashSet::new());
        assert_eq!(zone.counts(), (1, 0));
        assert_eq!(ask(&zone, "numbers-api.default.svc.cluster.local.", RecordType::A).code, ResponseCode::NoError);
        assert_eq!(ask(&zone, "db.shop.svc.cluster.local.", RecordType::A).code, ResponseCode::NXDomain);
        assert_eq!(
            ask(&zone, "shop.svc.cluster.local.", RecordType::A).code,
            ResponseCode::NXDomain,
            "no Services left"
        );
        assert!(zone.lookup(&name("5.0.42.10.in-addr.arpa."), RecordType::PTR).is_none());
        assert!(zone.lookup(&name("20.0.43.10.in-addr.arpa."), RecordType::PTR).is_some());
    }

    #[test]
    fn services_share_one_copy_of_a_port_list_until_none_has_it() {
        let mut zone = Zone::new(ZoneConfig::default());
        let service = |address: &str| ServiceInfo {
            kind: ServiceKind::ClusterIp(vec![ip(address)].into()),
            ports: http().into(),
            publish_not_ready: false,
        };
        zone.set_service(key("a", "one"), Some(service("10.43.0.1")));
        zone.set_service(key("a", "two"), Some(service("10.43.0.2")));
        assert_eq!(zone.port_lists.len(), 1);
        let ports = |name: &str| zone.services.get("a", name).map(|s| s.info.ports.clone());
        assert!(matches!((ports("one"), ports("two")), (Some(one), Some(two)) if Arc::ptr_eq(&one, &two)));
        zone.set_service(key("a", "one"), None);
        assert_eq!(zone.port_lists.len(), 1, "two still has it");
        zone.set_service(key("a", "two"), Some(ServiceInfo { ports: Vec::new().into(), ..service("10.43.0.2") }));
        assert_eq!(zone.port_lists.len(), 1, "only the empty list is left");
        zone.set_service(key("a", "two"), None);
        assert!(zone.port_lists.is_empty());
        assert_eq!(zone.lookup(&name("2.0.43.10.in-addr.arpa."), RecordType::PTR), None, "its PTR went with it");
    }

    #[test]
    fn only_headless_services_keep_their_slices() {
        let mut zone = Zone::new(ZoneConfig::default());
        let slice = || SliceInfo { ports: http().into(), endpoints: vec![endpoint("10.42.0.5", None, true)].into() };
        // A slice that comes before its Service is kept until the Service says what it is.
        zone.set_slice(key("default", "web-1"), Some((key("default", "web"), slice())));
        assert_eq!(zone.counts(), (0, 1));
        let cluster_ip = ServiceInfo {
            kind: ServiceKind::ClusterIp(vec![ip("10.43.0.40")].into()),
            ports: http().into(),
            publish_not_ready: false,
        };
        zone.set_service(key("default", "web"), Some(cluster_ip));
        assert_eq!(zone.counts(), (1, 0), "a ClusterIP Service's slice is let go");
        zone.set_slice(key("default", "web-2"), Some((key("default", "web"), slice())));
        assert_eq!(zone.counts(), (1, 0), "and later ones are not kept");
        assert_eq!(rdatas(&ask(&zone, "web.default.svc.cluster.local.", RecordType::A)), ["10.43.0.40"]);
        assert_eq!(
            rdatas(&ask(&zone, "_http._tcp.web.default.svc.cluster.local.", RecordType::SRV)),
            ["0 100 80 web.default.svc.cluster.local."],
            "SRV from the Service's own port"
        );

        let headless = ServiceInfo { kind: ServiceKind::Headless, ports: http().into(), publish_not_ready: false };
        zone.set_service(key("default", "db"), Some(headless));
        zone.set_slice(key("default", "db-1"), Some((key("default", "db"), slice())));
        assert_eq!(zone.counts(), (2, 1));
        assert_eq!(rdatas(&ask(&zone, "db.default.svc.cluster.local.", RecordType::A)), ["10.42.0.5"]);
    }

    #[test]
    fn a_dual_stack_service_answers_each_family_and_both_ptrs() {
        let mut zone = zone();
        let dual = ServiceInfo {
            kind: ServiceKind::ClusterIp(vec![ip("10.43.0.30"), ip("fd00:43::30")].into()),
            ports: Vec::new().into(),
            publish_not_ready: false,
        };
        zone.set_service(key("default", "dual"), Some(dual));
        assert_eq!(rdatas(&ask(&zone, "dual.default.svc.cluster.local.", RecordType::A)), ["10.43.0.30"]);
        assert_eq!(rdatas(&ask(&zone, "dual.default.svc.cluster.local.", RecordType::AAAA)), ["fd00:43::30"]);
        let v6 = "0.3.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.3.4.0.0.0.0.d.f.ip6.arpa.";
        assert_eq!(rdatas(&ask(&zone, v6, RecordType::PTR)), ["dual.default.svc.cluster.local."]);
    }

    #[test]
    fn reverse_names_parse_for_both_families() {
        assert_eq!(reverse_address(&name("4.3.2.1.in-addr.arpa.")), Some(ip("1.2.3.4")));
        let v6 = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.";
        assert_eq!(reverse_address(&name(v6)), Some(ip("fd00::1")));
        assert_eq!(reverse_address(&name("3.2.1.in-addr.arpa.")), None);
    }
}
