//! Service IP and NodePort allocation, as upstream's Service REST storage does it.
//!
//! Each allocated ClusterIP and NodePort is a key in the store (`/registry/ranges/serviceips/<ip>`,
//! `/registry/ranges/servicenodeports/<port>`) whose value names the owning Service. Claiming one is a store
//! `create`, so two writers (even two API servers on one etcd) can never hold the same address: the loser sees
//! `AlreadyExists` and picks another. A write claims first and releases what it no longer needs only after the
//! Service itself is stored; a failed write gives its new claims back. [`ServiceAllocator::repair`] runs at
//! start-up and reconciles the keys with the Services that exist, so a crash between the two steps leaks nothing.
//!
//! Dynamic allocation prefers the upper part of each range and leaves the lower band for addresses users ask
//! for (upstream KEP-3070 / KEP-3668), which keeps `.1` (the `kubernetes` Service) and `.10` (cluster DNS) free.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;
use std::sync::Arc;

use ipnet::Ipv4Net;
use rand::Rng;
use serde_json::{Value, json};
use skiff_api::{ApiError, FieldError, object};
use skiff_store::{ListOptions, Store, StoreError};

const IP_PREFIX: &str = "/registry/ranges/serviceips/";
const PORT_PREFIX: &str = "/registry/ranges/servicenodeports/";

/// What one Service holds.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Holdings {
    pub ips: BTreeSet<Ipv4Addr>,
    pub ports: BTreeSet<u16>,
}

impl Holdings {
    /// The addresses a stored Service claims.
    pub fn of(svc: &Value) -> Self {
        let spec = &svc["spec"];
        let ips = spec["clusterIPs"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(std::iter::once(&spec["clusterIP"]))
            .filter_map(Value::as_str)
            .filter_map(|s| s.parse().ok())
            .collect();
        let mut ports: BTreeSet<u16> = spec["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["nodePort"].as_u64())
            .filter_map(|p| u16::try_from(p).ok())
            .filter(|p| *p != 0)
            .collect();
        if let Some(p) = spec["healthCheckNodePort"].as_u64().and_then(|p| u16::try_from(p).ok()).filter(|p| *p != 0) {
            ports.insert(p);
        }
        Self { ips, ports }
    }

    fn minus(&self, other: &Self) -> Self {
        Self { ips: &self.ips - &other.ips, ports: &self.ports - &other.ports }
    }
}

pub struct ServiceAllocator {
    store: Arc<dyn Store>,
    cidr: Ipv4Net,
    node_ports: RangeInclusive<u16>,
}

fn owner(svc: &Value) -> String {
    format!("{}/{}", object::namespace(svc).unwrap_or_default(), object::name(svc).unwrap_or_default())
}

fn backend(e: StoreError) -> ApiError {
    ApiError::Internal(format!("allocating service addresses: {e}"))
}

fn invalid(svc: &Value, causes: Vec<FieldError>) -> ApiError {
    ApiError::invalid("", "Service", object::name(svc).unwrap_or_default(), causes)
}

impl ServiceAllocator {
    pub fn new(store: Arc<dyn Store>, cidr: Ipv4Net, node_ports: RangeInclusive<u16>) -> Self {
        Self { store, cidr, node_ports }
    }

    /// Fills in and claims the addresses of a Service being written. `old` is the stored Service on update.
    /// Returns what was newly claimed (give it back with [`Self::release`] if the write fails) and what the
    /// old Service held that the new one does not (release it after the write succeeds).
    pub async fn allocate(&self, svc: &mut Value, old: Option<&Value>) -> Result<(Holdings, Holdings), ApiError> {
        let before = old.map(Holdings::of).unwrap_or_default();
        let who = owner(svc);
        let mut claimed = Holdings::default();
        let result = self.fill(svc, old, &before, &who, &mut claimed).await;
        if let Err(e) = result {
            self.release(&claimed).await;
            return Err(e);
        }
        let after = Holdings::of(svc);
        Ok((claimed, before.minus(&after)))
    }

    async fn fill(
        &self,
        svc: &mut Value,
        old: Option<&Value>,
        before: &Holdings,
        who: &str,
        claimed: &mut Holdings,
    ) -> Result<(), ApiError> {
        let kind = svc["spec"]["type"].as_str().unwrap_or("ClusterIP").to_string();
        if kind == "ExternalName" {
            return Ok(());
        }
        // Cluster IP: carried over from the old object when the client left it empty.
        let requested = svc["spec"]["clusterIP"]
            .as_str()
            .or_else(|| svc["spec"]["clusterIPs"][0].as_str())
            .unwrap_or("")
            .to_string();
        let old_ip = old.and_then(|o| o["spec"]["clusterIP"].as_str()).filter(|ip| !ip.is_empty()).map(String::from);
        let ip = match (requested.as_str(), old_ip) {
            ("None", _) => "None".to_string(),
            ("", Some(old_ip)) => old_ip,
            ("", None) => {
                let ip = self.claim_dynamic_ip(who).await?;
                claimed.ips.insert(ip);
                ip.to_string()
            }
            (wanted, _) => {
                let parsed: Ipv4Addr = wanted.parse().map_err(|_| {
                    invalid(svc, vec![FieldError::invalid("spec.clusterIPs[0]", wanted, "must be a valid IP address")])
                })?;
                if !before.ips.contains(&parsed) {
                    self.claim_ip(svc, parsed, who).await?;
                    claimed.ips.insert(parsed);
                }
                wanted.to_string()
            }
        };
        svc["spec"]["clusterIP"] = json!(ip);
        svc["spec"]["clusterIPs"] = json!([ip]);

        // Node ports, for NodePort and LoadBalancer Services.
        let wants_node_ports = kind == "NodePort"
            || (kind == "LoadBalancer" && svc["spec"]["allocateLoadBalancerNodePorts"].as_bool() != Some(false));
        let old_ports: Vec<Value> = old.and_then(|o| o["spec"]["ports"].as_array().cloned()).unwrap_or_default();
        let port_count = svc["spec"]["ports"].as_array().map_or(0, Vec::len);
        let mut used_here: BTreeMap<u16, String> = BTreeMap::new();
        for i in 0..port_count {
            let port = svc["spec"]["ports"][i].clone();
            let requested = port["nodePort"].as_u64().and_then(|p| u16::try_from(p).ok()).unwrap_or(0);
            let protocol = port["protocol"].as_str().unwrap_or("TCP").to_string();
            let node_port = if requested != 0 {
                // One Service may use the same node port for different protocols; anything else must be free.
                if !before.ports.contains(&requested) && !used_here.contains_key(&requested) {
                    self.claim_port(svc, &format!("spec.ports[{i}].nodePort"), requested, who).await?;
                    claimed.ports.insert(requested);
                }
                requested
            } else if !wants_node_ports {
                continue;
            } else if let Some(reused) = old_ports
                .iter()
                .find(|o| o["port"] == port["port"] && o["protocol"].as_str().unwrap_or("TCP") == protocol)
                .and_then(|o| o["nodePort"].as_u64())
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p != 0)
            {
                reused
            } else {
                let p = self.claim_dynamic_port(who).await?;
                claimed.ports.insert(p);
                p
            };
            used_here.insert(node_port, protocol);
            svc["spec"]["ports"][i]["nodePort"] = json!(node_port);
        }

        // A health-check node port for LoadBalancers that keep traffic local.
        let local = svc["spec"]["externalTrafficPolicy"].as_str() == Some("Local");
        if kind == "LoadBalancer" && local {
            let requested =
                svc["spec"]["healthCheckNodePort"].as_u64().and_then(|p| u16::try_from(p).ok()).unwrap_or(0);
            let carried =
                old.and_then(|o| o["spec"]["healthCheckNodePort"].as_u64()).and_then(|p| u16::try_from(p).ok());
            let hc = match (requested, carried) {
                (0, Some(p)) if p != 0 => p,
                (0, _) => {
                    let p = self.claim_dynamic_port(who).await?;
                    claimed.ports.insert(p);
                    p
                }
                (p, _) => {
                    if !before.ports.contains(&p) {
                        self.claim_port(svc, "spec.healthCheckNodePort", p, who).await?;
                        claimed.ports.insert(p);
                    }
                    p
                }
            };
            svc["spec"]["healthCheckNodePort"] = json!(hc);
        }
        Ok(())
    }

    async fn claim(&self, key: String, who: &str) -> Result<bool, ApiError> {
        match self.store.create(&key, who.as_bytes().to_vec()).await {
            Ok(_) => Ok(true),
            Err(StoreError::AlreadyExists(_)) => {
                // A claim left behind by an earlier, failed write of the same Service is ours to reuse.
                let current = self.store.get(&key).await.map_err(backend)?;
                Ok(current.is_some_and(|kv| kv.value == who.as_bytes()))
            }
            Err(e) => Err(backend(e)),
        }
    }

    async fn claim_ip(&self, svc: &Value, ip: Ipv4Addr, who: &str) -> Result<(), ApiError> {
        if !self.cidr.contains(&ip) || ip == self.cidr.network() || ip == self.cidr.broadcast() {
            return Err(invalid(
                svc,
                vec![FieldError::invalid(
                    "spec.clusterIPs[0]",
                    ip.to_string(),
                    format!("provided IP is not in the valid range. The range of valid IPs is {}", self.cidr),
                )],
            ));
        }
        if self.claim(format!("{IP_PREFIX}{ip}"), who).await? {
            Ok(())
        } else {
            Err(invalid(
                svc,
                vec![FieldError::invalid("spec.clusterIPs[0]", ip.to_string(), "provided IP is already allocated")],
            ))
        }
    }

    async fn claim_port(&self, svc: &Value, field: &str, port: u16, who: &str) -> Result<(), ApiError> {
        if !self.node_ports.contains(&port) {
            return Err(invalid(
                svc,
                vec![FieldError::invalid(
                    field,
                    port,
                    format!(
                        "provided port is not in the valid range. The range of valid ports is {}-{}",
                        self.node_ports.start(),
                        self.node_ports.end()
                    ),
                )],
            ));
        }
        if self.claim(format!("{PORT_PREFIX}{port}"), who).await? {
            Ok(())
        } else {
            Err(invalid(svc, vec![FieldError::invalid(field, port, "provided port is already allocated")]))
        }
    }

    async fn claim_dynamic_ip(&self, who: &str) -> Result<Ipv4Addr, ApiError> {
        let base = u32::from(self.cidr.network());
        let size = 1u64 << (32 - u32::from(self.cidr.prefix_len()));
        // Usable offsets are 1..size-1 (no network or broadcast address).
        let usable = size.saturating_sub(2);
        let band = (usable / 16).clamp(16, 256).min(usable);
        let candidates = |lo: u64, hi: u64| (lo..hi).map(move |o| Ipv4Addr::from(base + 1 + o as u32));
        self.claim_dynamic(IP_PREFIX, band, usable, candidates, who)
            .await?
            .ok_or_else(|| ApiError::Internal("failed to allocate a serviceIP: range is full".into()))
    }

    async fn claim_dynamic_port(&self, who: &str) -> Result<u16, ApiError> {
        let start = u64::from(*self.node_ports.start());
        let size = u64::from(*self.node_ports.end()) - start + 1;
        let band = (size / 32).clamp(16, 128).min(size);
        let candidates = |lo: u64, hi: u64| (lo..hi).map(move |o| (start + o) as u16);
        self.claim_dynamic(PORT_PREFIX, band, size, candidates, who)
            .await?
            .ok_or_else(|| ApiError::Internal("failed to allocate a nodePort: range is full".into()))
    }

    /// Claims a free value: random picks from the upper band first, then a scan of everything still free.
    async fn claim_dynamic<T, I>(
        &self,
        prefix: &str,
        band: u64,
        size: u64,
        candidates: impl Fn(u64, u64) -> I,
        who: &str,
    ) -> Result<Option<T>, ApiError>
    where
        T: std::fmt::Display + Copy,
        I: Iterator<Item = T>,
    {
        for _ in 0..16 {
            let offset = rand::rng().random_range(band.min(size.saturating_sub(1))..size.max(1));
            if let Some(v) = candidates(offset, offset + 1).next()
                && self.claim(format!("{prefix}{v}"), who).await?
            {
                return Ok(Some(v));
            }
        }
        let taken = self.taken(prefix).await?;
        for v in candidates(band, size).chain(candidates(0, band)) {
            if !taken.contains(&v.to_string()) && self.claim(format!("{prefix}{v}"), who).await? {
                return Ok(Some(v));
            }
        }
        Ok(None)
    }

    async fn taken(&self, prefix: &str) -> Result<BTreeSet<String>, ApiError> {
        let page =
            self.store.list(&ListOptions { prefix: prefix.into(), ..Default::default() }).await.map_err(backend)?;
        Ok(page.items.into_iter().map(|kv| kv.key[prefix.len()..].to_string()).collect())
    }

    /// Gives claims back (best effort: [`Self::repair`] catches anything left).
    pub async fn release(&self, held: &Holdings) {
        let keys = held
            .ips
            .iter()
            .map(|ip| format!("{IP_PREFIX}{ip}"))
            .chain(held.ports.iter().map(|p| format!("{PORT_PREFIX}{p}")));
        for key in keys {
            match self.store.delete(&key, None).await {
                Ok(_) | Err(StoreError::NotFound(_)) => {}
                Err(e) => tracing::warn!(key, error = %e, "releasing a service allocation failed"),
            }
        }
    }

    /// Makes the allocation keys agree with the Services that exist: claims what a Service holds but no key
    /// records, and frees keys no Service holds. Returns how many keys it changed.
    pub async fn repair(&self, services: &[Value]) -> Result<usize, ApiError> {
        let mut want: BTreeMap<String, String> = BTreeMap::new();
        for svc in services {
            let h = Holdings::of(svc);
            let who = owner(svc);
            for ip in h.ips.iter().filter(|ip| self.cidr.contains(*ip)) {
                want.insert(format!("{IP_PREFIX}{ip}"), who.clone());
            }
            for p in h.ports.iter().filter(|p| self.node_ports.contains(p)) {
                want.insert(format!("{PORT_PREFIX}{p}"), who.clone());
            }
        }
        let mut changed = 0;
        for prefix in [IP_PREFIX, PORT_PREFIX] {
            let page =
                self.store.list(&ListOptions { prefix: prefix.into(), ..Default::default() }).await.map_err(backend)?;
            for kv in page.items {
                match want.remove(&kv.key) {
                    Some(who) if who.as_bytes() == kv.value => {}
                    Some(who) => {
                        tracing::error!(key = kv.key, holder = %String::from_utf8_lossy(&kv.value), service = who,
                            "allocation held by another service; reassigning to the service that uses it");
                        self.store.update(&kv.key, who.into_bytes(), kv.mod_revision).await.map_err(backend)?;
                        changed += 1;
                    }
                    None => {
                        self.store.delete(&kv.key, Some(kv.mod_revision)).await.map_err(backend)?;
                        changed += 1;
                    }
                }
            }
        }
        for (key, who) in want {
            match self.store.create(&key, who.into_bytes()).await {
                Ok(_) => changed += 1,
                Err(StoreError::AlreadyExists(_)) => {}
                Err(e) => return Err(backend(e)),
            }
        }
        Ok(changed)
    }
}
