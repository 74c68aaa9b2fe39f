//! The proxy's view of the cluster: every Service and EndpointSlice, kept from watch events and grouped by the
//! Service they belong to, and the keys of the Services whose view changed since the sync loop last looked. A sync
//! then recomputes those Services only, so its cost follows the change and not the cluster. A watch that restarts
//! (a relist) marks every Service it knew of and every one it now knows of, since objects deleted while it was away
//! send no event. Objects are kept slimmed to what routing reads (no managed fields, annotations or target
//! references), which at 10,000 Services is most of their size.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::runtime::watcher;

use crate::model::{ServicePort, service_ports};

/// A Service's namespace and name.
pub type ServiceKey = (String, String);

/// The label that ties an EndpointSlice to its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// An object the proxy caches: which Service it belongs to, and how to slim it.
pub trait Routed: kube::Resource<DynamicType = ()> + Sized {
    /// The Service this object belongs to; `None`: not routed.
    fn service(&self) -> Option<ServiceKey>;
    /// Drops what routing never reads.
    fn slim(&mut self);

    fn namespaced_name(&self) -> ServiceKey {
        (self.namespace().unwrap_or_default(), self.name_any())
    }
}

/// Drops the metadata routing never reads (the owning Service is taken from the labels before this).
fn slim_metadata(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    meta.annotations = None;
    meta.labels = None;
}

impl Routed for Service {
    fn service(&self) -> Option<ServiceKey> {
        Some(self.namespaced_name())
    }

    fn slim(&mut self) {
        slim_metadata(&mut self.metadata);
    }
}

impl Routed for EndpointSlice {
    fn service(&self) -> Option<ServiceKey> {
        let name = self.labels().get(SERVICE_NAME_LABEL)?;
        Some((self.namespace().unwrap_or_default(), name.clone()))
    }

    fn slim(&mut self) {
        slim_metadata(&mut self.metadata);
        for endpoint in &mut self.endpoints {
            endpoint.target_ref = None;
            endpoint.hints = None;
            endpoint.deprecated_topology = None;
        }
    }
}

/// The objects of one kind, by the Service they belong to.
struct Objects<K> {
    /// Object → its Service.
    service_of: HashMap<ServiceKey, ServiceKey>,
    /// Service → its objects, by name.
    by_service: HashMap<ServiceKey, BTreeMap<String, Arc<K>>>,
    /// A relist in progress: what it has listed so far.
    relisting: Option<Vec<K>>,
    /// Whether a first list has completed.
    synced: bool,
}

impl<K> Default for Objects<K> {
    fn default() -> Self {
        Objects { service_of: HashMap::new(), by_service: HashMap::new(), relisting: None, synced: false }
    }
}

impl<K: Routed> Objects<K> {
    fn remove(&mut self, object: &ServiceKey, dirty: &mut HashSet<ServiceKey>) {
        if let Some(service) = self.service_of.remove(object) {
            if let Some(objects) = self.by_service.get_mut(&service) {
                objects.remove(&object.1);
                if objects.is_empty() {
                    self.by_service.remove(&service);
                }
            }
            dirty.insert(service);
        }
    }

    fn apply(&mut self, mut object: K, dirty: &mut HashSet<ServiceKey>) {
        let name = object.namespaced_name();
        self.remove(&name, dirty);
        if let Some(service) = object.service() {
            object.slim();
            self.by_service.entry(service.clone()).or_default().insert(name.1.clone(), Arc::new(object));
            self.service_of.insert(name, service.clone());
            dirty.insert(service);
        }
    }

    fn event(&mut self, event: watcher::Event<K>, dirty: &mut HashSet<ServiceKey>) {
        match event {
            watcher::Event::Apply(object) => self.apply(object, dirty),
            watcher::Event::Delete(object) => self.remove(&object.namespaced_name(), dirty),
            watcher::Event::Init => self.relisting = Some(Vec::new()),
            watcher::Event::InitApply(object) => self.relisting.get_or_insert_default().push(object),
            watcher::Event::InitDone => {
                dirty.extend(self.by_service.keys().cloned());
                self.service_of.clear();
                self.by_service.clear();
                for object in self.relisting.take().unwrap_or_default() {
                    self.apply(object, dirty);
                }
                self.synced = true;
            }
        }
    }

    fn of(&self, service: &ServiceKey) -> impl Iterator<Item = &Arc<K>> {
        self.by_service.get(service).into_iter().flat_map(BTreeMap::values)
    }
}

/// Services and EndpointSlices, and the Services changed since the last [`Caches::take_changed`].
#[derive(Default)]
pub struct Caches {
    services: Objects<Service>,
    slices: Objects<EndpointSlice>,
    dirty: HashSet<ServiceKey>,
}

/// The caches, shared between the watches that fill them and the sync loop.
pub type SharedCaches = Arc<Mutex<Caches>>;

impl Caches {
    /// Takes in a Service watch event.
    pub fn service_event(&mut self, event: watcher::Event<Service>) {
        self.services.event(event, &mut self.dirty);
    }

    /// Takes in an EndpointSlice watch event.
    pub fn slice_event(&mut self, event: watcher::Event<EndpointSlice>) {
        self.slices.event(event, &mut self.dirty);
    }

    /// Whether both kinds have been listed once.
    pub fn synced(&self) -> bool {
        self.services.synced && self.slices.synced
    }

    /// The Services changed since the last call (only once both kinds are listed: before, nothing is complete).
    pub fn take_changed(&mut self) -> HashSet<ServiceKey> {
        if self.synced() { std::mem::take(&mut self.dirty) } else { HashSet::new() }
    }

    /// The routed service ports of one Service as seen from `node`; none when it is gone or not routed.
    pub fn service_ports(&self, service: &ServiceKey, node: &str) -> Vec<ServicePort> {
        let Some(object) = self.services.of(service).next() else { return Vec::new() };
        let slices: Vec<&EndpointSlice> = self.slices.of(service).map(|s| &**s).collect();
        service_ports(object, &slices, node)
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
        let ports = caches.service_ports(&key(name), "node");
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
        let mut caches = Caches::default();
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
        assert!(caches.service_ports(&key("web"), "node").is_empty());
    }

    #[test]
    fn a_relist_marks_what_went_while_the_watch_was_away() {
        let mut caches = Caches::default();
        listed(&mut caches, vec![service("web"), service("api")], vec![slice("web-1", "web", "10.42.0.2")]);
        caches.take_changed();
        // "api" was deleted while the watch was down: only the relist can tell.
        listed(&mut caches, vec![service("web")], vec![slice("web-1", "web", "10.42.0.2")]);
        assert_eq!(caches.take_changed(), [key("web"), key("api")].into());
        assert!(caches.service_ports(&key("api"), "node").is_empty());
        assert_eq!(endpoints(&caches, "web"), ["10.42.0.2"]);
    }
}
