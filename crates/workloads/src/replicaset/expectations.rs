//! Upstream's `ControllerExpectations`, keyed by pod name: after a reconcile creates or deletes pods, the
//! ReplicaSet does not manage replicas again until its pod cache has seen those creates and deletes (or five
//! minutes pass), so a cache that lags behind our own writes never makes it create or delete twice.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::Resource;
use kube::runtime::watcher::Event;

/// Upstream's `ExpectationsTimeout`.
const TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug)]
struct Pending {
    creates: HashSet<String>,
    deletes: HashSet<String>,
    since: Instant,
}

/// Creates and deletes per ReplicaSet (`namespace/name`) that the pod cache has not shown yet.
#[derive(Debug, Default)]
pub(crate) struct Expectations {
    pending: Mutex<HashMap<String, Pending>>,
}

fn pod_key(pod: &impl Resource) -> String {
    let meta = pod.meta();
    format!("{}/{}", meta.namespace.as_deref().unwrap_or_default(), meta.name.as_deref().unwrap_or_default())
}

impl Expectations {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether the ReplicaSet may manage its replicas: nothing pending, or pending for too long.
    pub(crate) fn satisfied(&self, rs: &str) -> bool {
        let mut pending = self.lock();
        match pending.get(rs) {
            None => true,
            Some(p) if p.creates.is_empty() && p.deletes.is_empty() => {
                pending.remove(rs);
                true
            }
            Some(p) if p.since.elapsed() > TIMEOUT => {
                pending.remove(rs);
                true
            }
            Some(_) => false,
        }
    }

    /// Expects the cache to show the pods `created` (namespace/name keys) and the deletion of `deleted`.
    pub(crate) fn expect(&self, rs: &str, created: Vec<String>, deleted: Vec<String>) {
        if created.is_empty() && deleted.is_empty() {
            return;
        }
        let mut pending = self.lock();
        let p = pending.entry(rs.to_string()).or_insert_with(|| Pending {
            creates: HashSet::new(),
            deletes: HashSet::new(),
            since: Instant::now(),
        });
        p.since = Instant::now();
        p.creates.extend(created);
        p.deletes.extend(deleted);
    }

    /// Marks one pod as seen by the cache (its creation and its deletion), for writes whose watch event may
    /// already have gone by when the expectation was recorded.
    pub(crate) fn seen(&self, rs: &str, pod: &str, created: bool) {
        if let Some(p) = self.lock().get_mut(rs) {
            if created {
                p.creates.remove(pod);
            } else {
                p.deletes.remove(pod);
            }
        }
    }

    /// Forgets a ReplicaSet's expectations.
    pub(crate) fn forget(&self, rs: &str) {
        self.lock().remove(rs);
    }

    /// Lowers expectations by what the pod watch shows. A fresh list (`InitDone`) makes the cache whole
    /// again, so everything pending is satisfied by it.
    pub(crate) fn observe<K: Resource>(&self, event: &Event<K>) {
        let mut pending = self.lock();
        if pending.is_empty() {
            return;
        }
        match event {
            Event::Apply(pod) | Event::InitApply(pod) => {
                let key = pod_key(pod);
                let deleting = pod.meta().deletion_timestamp.is_some();
                for p in pending.values_mut() {
                    p.creates.remove(&key);
                    if deleting {
                        p.deletes.remove(&key);
                    }
                }
            }
            Event::Delete(pod) => {
                let key = pod_key(pod);
                for p in pending.values_mut() {
                    p.creates.remove(&key);
                    p.deletes.remove(&key);
                }
            }
            Event::InitDone => pending.clear(),
            Event::Init => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
    use k8s_openapi::jiff::Timestamp;

    fn pod(name: &str, deleting: bool) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                deletion_timestamp: deleting.then_some(Time(Timestamp::UNIX_EPOCH)),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn creates_and_deletes_must_be_observed() {
        let e = Expectations::default();
        assert!(e.satisfied("ns/rs"));
        e.expect("ns/rs", vec!["ns/a".into(), "ns/b".into()], vec!["ns/c".into()]);
        assert!(!e.satisfied("ns/rs"));
        e.observe(&Event::Apply(pod("a", false)));
        e.observe(&Event::Apply(pod("b", false)));
        assert!(!e.satisfied("ns/rs"), "the delete is still pending");
        e.observe(&Event::Apply(pod("c", false)));
        assert!(!e.satisfied("ns/rs"), "a live pod is not a deletion");
        e.observe(&Event::Apply(pod("c", true)));
        assert!(e.satisfied("ns/rs"));
    }

    #[test]
    fn relist_and_delete_events_satisfy() {
        let e = Expectations::default();
        e.expect("ns/rs", vec!["ns/a".into()], vec![]);
        e.observe(&Event::Delete(pod("a", false)));
        assert!(e.satisfied("ns/rs"));
        e.expect("ns/rs", vec!["ns/x".into()], vec![]);
        e.observe(&Event::<Pod>::InitDone);
        assert!(e.satisfied("ns/rs"));
        e.expect("ns/rs", vec!["ns/y".into()], vec![]);
        e.forget("ns/rs");
        assert!(e.satisfied("ns/rs"));
    }
}
