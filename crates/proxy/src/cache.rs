//! The proxy's view of the cluster: every Service and EndpointSlice, kept from watch events and grouped by the
//! Service they belong to, and the keys of the Services whose view changed since the sync loop last looked. A sync
//! then recomputes those Services only, so its cost follows the change and not the cluster. A watch that restarts
//! (a relist) marks every Service it knew of and every one it now knows of, since objects deleted while it was away
//! send no event. Objects are kept as records of what routing reads (a Service's ports without endpoints, a
//! slice's ports and usable endpoints), made as each event arrives: whole objects at 10,000 Services × 10
//! endpoints are over a hundred megabytes, the records a tenth of that.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;
use kube::runtime::watcher;

use crate::model::{ServicePort, SliceEndpoints, service_templates};

/// A Service's namespace and name.
pub type ServiceKey = (String, String);

/// The label that ties an EndpointSlice to its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// An object the proxy caches: which Service it belongs to, and the record of it that routing reads.
pub trait Routed: kube::Resource<DynamicType = ()> + Sized {
    /// What the cache keeps of the object.
    type Record;
    /// The Service this object belongs to; `None`: not routed.
    fn service(&self) -> Option<ServiceKey>;
    /// What routing reads of the object, as seen from `node`.
    fn record(&self, node: &str) -> Self::Record;

    fn namespaced_name(&self) -> ServiceKey {
        (self.namespace().unwrap_or_default(), self.name_any())
    }
}

impl Routed for Service {
    /// The Service's ports without endpoints.
    type Record = Vec<ServicePort>;

    fn service(&self) -> Option<ServiceKey> {
        Some(self.namespaced_name())
    }

    fn record(&self, _node: &str) -> Vec<ServicePort> {
        service_templates(self)
    }
}

impl Routed for EndpointSlice {
    type Record = SliceEndpoints;

    fn service(&self) -> Option<ServiceKey> {
        let name = self.labels().get(SERVICE_NAME_LABEL)?;
        Some((self.namespace().unwrap_or_default(), name.clone()))
    }

    fn record(&self, node: &str) -> SliceEndpoints {
        SliceEndpoints::new(self, node)
    }
}

/// An object as the cache takes it in: its name, its Service, its record.
type Entry<R> = (ServiceKey, Option<ServiceKey>, R);

/// The records of one kind, by the Service they belong to.
struct Objects<K: Routed> {
    /// Object → its Service.
    service_of: HashMap<ServiceKey, ServiceKey>,
    /// Service → its objects' records, sorted by object name (a Service has one or a few: a map's nodes would
    /// be most of the size).
    by_service: HashMap<ServiceKey, Vec<(String, K::Record)>>,
    /// A relist in progress: what it has listed so far (as records: a whole list of objects at 10,000 Services
    /// is hundreds of megabytes).
    relisting: Option<Vec<Entry<K::Record>>>,
    /// Whether a first list has completed.
    synced: bool,
}

impl<K: Routed> Default for Objects<K> {
    fn default() -> Self {
        Objects { service_of: HashMap::new(), by_service: HashMap::new(), relisting: None, synced: false }
    }
}

impl<K: Routed> Objects<K> {
    fn remove(&mut self, object: &ServiceKey, dirty: &mut HashSet<ServiceKey>) {
        if let Some(service) = self.service_of.remove(object) {
            if let Some(objects) = self.by_service.get_mut(&service) {
                objects.retain(|(name, _)| *name != object.1);
                if objects.is_empty() {
                    self.by_service.remove(&service);
                }
            }
            dirty.insert(service);
        }
    }

    fn apply(&mut self, (name, service, record): Entry<K::Record>, dirty: &mut HashSet<ServiceKey>) {
        self.remove(&name, dirty);
        if let Some(service) = service {
            let objects = self.by_service.entry(service.clone()).or_default();
            let at = objects.partition_point(|(other, _)| *other < name.1);
            objects.insert(at, (name.1.clone(), record));
            objects.shrink_to_fit();
            self.service_of.insert(name, service.clone());
            dirty.insert(service);
        }
    }

    fn event(&mut self, event: watcher::Event<K>, node: &str, dirty: &mut HashSet<ServiceKey>) {
        let entry = |object: &K| (object.namespaced_name(), object.service(), object.record(node));
        match event {
            watcher::Event::Apply(object) => self.apply(entry(&object), dirty),
            watcher::Event::Delete(object) => self.remove(&object.namespaced_name(), dirty),
            watcher::Event::Init => self.relisting = Some(Vec::new()),
            watcher::Event::InitApply(object) => self.relisting.get_or_insert_default().push(entry(&object)),
            watcher::Event::InitDone => {
                dirty.extend(self.by_service.keys().cloned());
                self.service_of.clear();
                self.by_service.clear();
                for entry in self.relisting.take().unwrap_or_default() {
                    self.apply(entry, dirty);
                }
                self.synced = true;
            }
        }
    }

    fn of(&self, service: &ServiceKey) -> impl Iterator<Item = &K::Record> {
        self.by_service.get(service).into_iter().flatten().map(|(_, record)| record)
    }
}

/// Services and EndpointSlices as one node routes them, and the Services changed since the last
/// [`Caches::take_changed`].
pub struct Caches {
    node: String,
    services: Objects<Service>,
    slices: Objects<EndpointSlice>,
    dirty: HashSet<ServiceKey>,
}

/// The caches, shared between the watches that fill them and the sync loop.
pub type SharedCaches = Arc<Mutex<Caches>>;

impl Caches {
    /// Empty caches for the proxy of the node named `node`.
    pub fn new(node: impl Into<String>) -> Caches {
        Caches { node: node.into(), services: Objects::default(), slices: Objects::default(), dirty: HashSet::new() }
    }

    /// Takes in a Service watch event.
    pub fn service_event(&mut self, event: watcher::Event<Service>) {
        self.services.event(event, &self.node, &mut self.dirty);
    }

    /// Takes in an EndpointSlice watch event.
    pub fn slice_event(&mut self, event: watcher::Event<EndpointSlice>) {
        self.slices.event(event, &self.node, &mut self.dirty);
    }

    /// Whether both kinds have been listed once.
    pub fn synced(&self) -> bool {
        self.services.synced && self.slices.synced
    }

    /// The Services changed since the last call (only once both kinds are listed: before, nothing is complete).
    pub fn take_changed(&mut self) -> HashSet<ServiceKey> {
        if self.synced() { std::mem::take(&mut self.dirty) } else { HashSet::new() }
    }

    /// The routed service ports of one Service with their endpoints; none when it is gone or not routed.
    pub fn service_ports(&self, service: &ServiceKey) -> Vec<ServicePort> {
        let Some(templates) = self.services.of(service).next() else { return Vec::new() };
        let slices: Vec<&SliceEndpoints> = self.slices.of(service).collect();
        templates.iter().map(|template| template.with_endpoints(&slices)).collect()
    }
}

/// Locks the caches, also after a panic elsewhere (the data stays consistent: every change is one call).
pub fn lock(caches: &SharedCaches) -> std::sync::MutexGuard<'_, Caches> {
    caches.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ServiceSpec;
    use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn service(name: &str) -> Service {
        Service {
            metadata: ObjectMeta { name: Some(name.into()), namespace: Some("shop".into()), ..Default::default() },
            spec: Some(ServiceSpec {
                cluster_ip: Some("10.43.0.10".into()),
                ports: Some(vec![k8s_openapi::api::core::v1::ServicePort { port: 80, ..Default::default() }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn slice(name: &str, service: &str, ip: &str) -> EndpointSlice {
        EndpointSlice {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("shop".into()),
                labels: Some([(SERVICE_NAME_LABEL.to_string(), service.to_string())].into()),
                ..Default::default()
            },
            address_type: "IPv4".into(),
            endpoints: vec![Endpoint { addresses: vec![ip.into()], ..Default::default() }],
            ports: Some(vec![EndpointPort { port: Some(8080), ..Default::default() }]),
        }
    }

    fn key(name: &str) -> ServiceKey {
        ("shop".into(), name.into())
    }

    fn endpoints(caches: &Caches, name: &str) -> Vec<String> {
        let ports = caches.service_ports(&key(name));
        ports.iter().flat_map(|p| &p.endpoints).map(|e| e.ip.to_string()).collect()
    }

    fn listed(caches: &mut Caches, services: Vec<Service>, slices: Vec<EndpointSlice>) {
        caches.service_event(watcher::Event::Init);
        for s in services {
            caches.service_event(watcher::Event::InitApply(s));
        }
        caches.service_event(watcher::Event::InitDone);
        caches.slice_event(watcher::Event::Init);
        for s in slices {
            caches.slice_event(watcher::Event::InitApply(s));
        }
        caches.slice_event(watcher::Event::InitDone);
    }

    #[test]
    fn changes_mark_only_the_services_they_touch() {
        let mut caches = Caches::new("node");
        caches.service_event(watcher::Event::Init);
        caches.service_event(watcher::Event::InitApply(service("web")));
        caches.service_event(watcher::Event::InitDone);
        assert!(caches.take_changed().is_empty(), "nothing before both kinds are listed");
        listed(&mut caches, vec![service("web"), service("api")], vec![slice("web-1", "web", "10.42.0.2")]);
        assert_eq!(caches.take_changed(), [key("web"), key("api")].into());
        assert_eq!(endpoints(&caches, "web"), ["10.42.0.2"]);

        caches.slice_event(watcher::Event::Apply(slice("web-2", "web", "10.42.0.3")));
        assert_eq!(caches.take_changed(), [key("web")].into());
        assert_eq!(endpoints(&caches, "web"), ["10.42.0.2", "10.42.0.3"]);

        // A slice moving to another Service changes both.
        caches.slice_event(watcher::Event::Apply(slice("web-2", "api", "10.42.0.3")));
        assert_eq!(caches.take_changed(), [key("web"), key("api")].into());
        assert_eq!(endpoints(&caches, "api"), ["10.42.0.3"]);

        caches.service_event(watcher::Event::Delete(service("web")));
        assert_eq!(caches.take_changed(), [key("web")].into());
        assert!(caches.service_ports(&key("web")).is_empty());
    }

    #[test]
    fn a_relist_marks_what_went_while_the_watch_was_away() {
        let mut caches = Caches::new("node");
        listed(&mut caches, vec![service("web"), service("api")], vec![slice("web-1", "web", "10.42.0.2")]);
        caches.take_changed();
        // "api" was deleted while the watch was down: only the relist can tell.
        listed(&mut caches, vec![service("web")], vec![slice("web-1", "web", "10.42.0.2")]);
        assert_eq!(caches.take_changed(), [key("web"), key("api")].into());
        assert!(caches.service_ports(&key("api")).is_empty());
        assert_eq!(endpoints(&caches, "web"), ["10.42.0.2"]);
    }
}
