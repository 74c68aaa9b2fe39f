//! The zone's Services, packed for memory: one dense array of entries, every Service's name in one string, and
//! two tables of 4-byte indexes into the array, by namespace and name and by cluster IP.
//!
//! Hand-written, and why: a `HashMap<(namespace, name), ServiceInfo>` and a `HashMap<IpAddr, (namespace, name)>`
//! keep each whole entry in their buckets, and a hash table of a power-of-two bucket count is between 44 % and
//! 87 % full, so at 1,000 Services both maps held 2,048 buckets of 57 to 81 bytes, besides a small allocation
//! per name. Here a bucket is 4 bytes and a control byte, an entry lies once in the array, and names cost their
//! bytes. Removal moves the last entry into the hole and repoints its indexes; the names string is rebuilt when
//! more than half of it belongs to Services that are gone.

use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::Arc;

use hashbrown::HashTable;

use crate::zone::{ServiceInfo, ServiceKind};

/// One Service: its namespace (the zone's shared copy), where its name lies in the names string, what DNS reads.
struct Entry {
    namespace: Arc<str>,
    name_at: u32,
    name_length: u16,
    info: ServiceInfo,
}

/// A Service in the table.
#[derive(Clone, Copy)]
pub struct ServiceRef<'a> {
    pub namespace: &'a Arc<str>,
    pub name: &'a str,
    pub info: &'a ServiceInfo,
}

/// The Services of the zone, by namespace and name and by cluster IP.
pub struct ServiceTable {
    entries: Vec<Entry>,
    /// Every entry's name, back to back.
    names: String,
    /// Bytes of `names` no entry refers to any more.
    unused: usize,
    /// Entry indexes, by the hash of (namespace, name).
    by_name: HashTable<u32>,
    /// An entry index shifted left once, plus which of its cluster IPs (0 or 1), by the hash of that IP. One
    /// entry per IP: when two Services claim an address (a relist applies the new one before removing the old),
    /// the later one has it.
    by_cluster_ip: HashTable<u32>,
    hasher: RandomState,
}

fn cluster_ips(info: &ServiceInfo) -> &[IpAddr] {
    match &info.kind {
        ServiceKind::ClusterIp(ips) => ips.as_slice(),
        _ => &[],
    }
}

/// `entry`'s name in `names`.
fn name_in<'a>(names: &'a str, entry: &Entry) -> &'a str {
    let at = entry.name_at as usize;
    &names[at..at + usize::from(entry.name_length)]
}

/// The cluster IP a slot of the IP index stands for.
fn slot_ip(entries: &[Entry], slot: u32) -> Option<&IpAddr> {
    cluster_ips(&entries[(slot >> 1) as usize].info).get((slot & 1) as usize)
}

impl Default for ServiceTable {
    fn default() -> Self {
        ServiceTable {
            entries: Vec::new(),
            names: String::new(),
            unused: 0,
            by_name: HashTable::new(),
            by_cluster_ip: HashTable::new(),
            hasher: RandomState::new(),
        }
    }
}

impl ServiceTable {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn name_of(&self, entry: &Entry) -> &str {
        name_in(&self.names, entry)
    }

    fn hash_name(&self, namespace: &str, name: &str) -> u64 {
        self.hasher.hash_one((namespace, name))
    }

    fn hash_ip(&self, ip: &IpAddr) -> u64 {
        self.hasher.hash_one(ip)
    }

    /// Where Service `name` of `namespace` is in `entries`.
    fn position(&self, namespace: &str, name: &str) -> Option<usize> {
        let hash = self.hash_name(namespace, name);
        self.by_name
            .find(hash, |&i| {
                let entry = &self.entries[i as usize];
                &*entry.namespace == namespace && self.name_of(entry) == name
            })
            .map(|&i| i as usize)
    }

    fn at(&self, index: usize) -> ServiceRef<'_> {
        let entry = &self.entries[index];
        ServiceRef { namespace: &entry.namespace, name: self.name_of(entry), info: &entry.info }
    }

    /// Service `name` of `namespace`.
    pub fn get(&self, namespace: &str, name: &str) -> Option<ServiceRef<'_>> {
        self.position(namespace, name).map(|i| self.at(i))
    }

    /// The Service that has `ip` as a cluster IP.
    pub fn by_cluster_ip(&self, ip: &IpAddr) -> Option<ServiceRef<'_>> {
        let slot = self.find_ip(ip)?;
        Some(self.at((slot >> 1) as usize))
    }

    fn find_ip(&self, ip: &IpAddr) -> Option<u32> {
        self.by_cluster_ip.find(self.hash_ip(ip), |&slot| slot_ip(&self.entries, slot) == Some(ip)).copied()
    }

    /// Every Service, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = ServiceRef<'_>> {
        (0..self.entries.len()).map(|i| self.at(i))
    }

    /// Sets Service `name` of `namespace` (`namespace` is the zone's shared copy); what it replaced.
    pub fn insert(&mut self, namespace: Arc<str>, name: &str, info: ServiceInfo) -> Option<ServiceInfo> {
        if let Some(index) = self.position(&namespace, name) {
            self.unindex_ips(index);
            let old = std::mem::replace(&mut self.entries[index].info, info);
            self.index_ips(index);
            return Some(old);
        }
        let (Ok(name_at), Ok(name_length)) = (u32::try_from(self.names.len()), u16::try_from(name.len())) else {
            // Past 4 GiB of names, or a name no API server accepts: not kept.
            return None;
        };
        self.names.push_str(name);
        let index = self.entries.len();
        let hash = self.hash_name(&namespace, name);
        self.entries.push(Entry { namespace, name_at, name_length, info });
        let Self { entries, names, by_name, hasher, .. } = self;
        by_name.insert_unique(hash, index as u32, |&i| {
            let entry = &entries[i as usize];
            hasher.hash_one((&*entry.namespace, name_in(names, entry)))
        });
        self.index_ips(index);
        None
    }

    /// Removes Service `name` of `namespace`; what it was.
    pub fn remove(&mut self, namespace: &str, name: &str) -> Option<ServiceInfo> {
        let index = self.position(namespace, name)?;
        self.unindex_ips(index);
        let hash = self.hash_name(namespace, name);
        if let Ok(slot) = self.by_name.find_entry(hash, |&i| i as usize == index) {
            slot.remove();
        }
        let last = self.entries.len() - 1;
        if index != last {
            // The last entry moves into the hole: its indexes follow it.
            let moved = self.at(last);
            let hash = self.hash_name(moved.namespace, moved.name);
            let ip_hashes: Vec<(u64, u32)> =
                cluster_ips(moved.info).iter().enumerate().map(|(k, ip)| (self.hash_ip(ip), k as u32)).collect();
            if let Some(slot) = self.by_name.find_mut(hash, |&i| i as usize == last) {
                *slot = index as u32;
            }
            for (hash, k) in ip_hashes {
                let from = (last as u32) << 1 | k;
                if let Some(slot) = self.by_cluster_ip.find_mut(hash, |&s| s == from) {
                    *slot = (index as u32) << 1 | k;
                }
            }
        }
        let entry = self.entries.swap_remove(index);
        self.unused += usize::from(entry.name_length);
        if self.unused > self.names.len() / 2 {
            self.compact_names();
        }
        Some(entry.info)
    }

    /// Puts entry `index`'s cluster IPs in the IP index (taking an address from another Service that has it).
    fn index_ips(&mut self, index: usize) {
        let ips: Vec<(u64, IpAddr)> =
            cluster_ips(&self.entries[index].info).iter().map(|ip| (self.hash_ip(ip), *ip)).collect();
        for (k, (hash, ip)) in ips.into_iter().enumerate() {
            let slot = (index as u32) << 1 | k as u32;
            let Self { entries, by_cluster_ip, hasher, .. } = self;
            match by_cluster_ip.find_mut(hash, |&s| slot_ip(entries, s) == Some(&ip)) {
                Some(taken) => *taken = slot,
                None => {
                    by_cluster_ip
                        .insert_unique(hash, slot, |&s| slot_ip(entries, s).map_or(0, |ip| hasher.hash_one(ip)));
                }
            }
        }
    }

    /// Takes entry `index`'s cluster IPs out of the IP index, where it still holds them.
    fn unindex_ips(&mut self, index: usize) {
        let hashes: Vec<u64> = cluster_ips(&self.entries[index].info).iter().map(|ip| self.hash_ip(ip)).collect();
        for (k, hash) in hashes.into_iter().enumerate() {
            let slot = (index as u32) << 1 | k as u32;
            if let Ok(found) = self.by_cluster_ip.find_entry(hash, |&s| s == slot) {
                found.remove();
            }
        }
    }

    /// Rewrites the names string with only the names in use.
    fn compact_names(&mut self) {
        let mut names = String::with_capacity(self.names.len() - self.unused);
        for entry in &mut self.entries {
            let name = name_in(&self.names, entry);
            // Shorter than before, so it fits in a u32 as before.
            entry.name_at = names.len() as u32;
            names.push_str(name);
        }
        self.names = names;
        self.unused = 0;
    }

    /// Gives back room the table does not use.
    pub fn shrink_to_fit(&mut self) {
        self.entries.shrink_to_fit();
        self.names.shrink_to_fit();
        let Self { entries, names, by_name, by_cluster_ip, hasher, .. } = self;
        by_name.shrink_to_fit(|&i| {
            let entry = &entries[i as usize];
            hasher.hash_one((&*entry.namespace, name_in(names, entry)))
        });
        by_cluster_ip.shrink_to_fit(|&s| slot_ip(entries, s).map_or(0, |ip| hasher.hash_one(ip)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zone::ClusterIps;

    fn service(ips: &[&str]) -> ServiceInfo {
        let ips: Vec<IpAddr> = ips.iter().map(|ip| ip.parse().expect("an address")).collect();
        ServiceInfo {
            kind: ServiceKind::ClusterIp(ClusterIps::from(ips)),
            ports: Vec::new().into(),
            publish_not_ready: false,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    fn owner(table: &ServiceTable, address: &str) -> Option<String> {
        table.by_cluster_ip(&ip(address)).map(|s| format!("{}/{}", s.namespace, s.name))
    }

    #[test]
    fn services_are_found_by_name_and_cluster_ip_across_removals_that_move_entries() {
        let mut table = ServiceTable::default();
        let ns: Arc<str> = "default".into();
        for i in 0..100 {
            let v4 = format!("10.43.0.{i}");
            let v6 = format!("fd00:43::{i:x}");
            table.insert(ns.clone(), &format!("svc-{i}"), service(&[&v4, &v6]));
        }
        // Removing from the front moves the last entries into the holes, and rebuilds the names once most are gone.
        for i in 0..80 {
            assert!(table.remove("default", &format!("svc-{i}")).is_some());
        }
        assert_eq!(table.len(), 20);
        for i in 80..100 {
            let name = format!("svc-{i}");
            assert_eq!(table.get("default", &name).map(|s| s.name), Some(name.as_str()));
            assert_eq!(owner(&table, &format!("10.43.0.{i}")), Some(format!("default/{name}")));
            assert_eq!(owner(&table, &format!("fd00:43::{i:x}")), Some(format!("default/{name}")));
        }
        assert!(table.get("default", "svc-3").is_none());
        assert_eq!(owner(&table, "10.43.0.3"), None);
        // 590 bytes of names at first; no more than half of what is kept belongs to removed Services.
        assert!(table.names.len() <= 2 * 20 * 6, "the names of removed Services are let go: {}", table.names.len());
        table.shrink_to_fit();
        assert_eq!(owner(&table, "10.43.0.99"), Some("default/svc-99".into()));
    }

    #[test]
    fn an_address_belongs_to_the_service_that_claimed_it_last() {
        let mut table = ServiceTable::default();
        let ns: Arc<str> = "default".into();
        table.insert(ns.clone(), "old", service(&["10.43.0.5"]));
        table.insert(ns.clone(), "new", service(&["10.43.0.5"]));
        assert_eq!(owner(&table, "10.43.0.5"), Some("default/new".into()));
        table.remove("default", "old");
        assert_eq!(owner(&table, "10.43.0.5"), Some("default/new".into()), "the old one's removal leaves it");
        // A Service that changes address gives up the old one.
        let replaced = table.insert(ns, "new", service(&["10.43.0.6"]));
        assert!(replaced.is_some());
        assert_eq!(owner(&table, "10.43.0.5"), None);
        assert_eq!(owner(&table, "10.43.0.6"), Some("default/new".into()));
        assert_eq!(table.get("default", "new").map(|s| cluster_ips(s.info).to_vec()), Some(vec![ip("10.43.0.6")]));
    }
}
