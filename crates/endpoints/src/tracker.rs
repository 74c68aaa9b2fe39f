//! Upstream's `TriggerTimeTracker`: the `endpoints.kubernetes.io/last-change-trigger-time` a sync writes is the
//! earliest change not yet reflected — a pod's `Ready` condition `lastTransitionTime` that moved since the last
//! sync, or the Service's creation time the first time it is synced.

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::jiff::Timestamp;

use crate::ObjectKey;
use crate::pod::PodInfo;

#[derive(Default)]
struct ServiceState {
    service: Option<Timestamp>,
    pods: HashMap<String, Timestamp>,
}

#[derive(Default)]
pub struct TriggerTimes {
    state: Mutex<HashMap<ObjectKey, ServiceState>>,
}

impl TriggerTimes {
    /// The trigger time for this sync of `service` over `pods`, remembering what it has seen.
    pub fn compute(&self, key: &ObjectKey, service: &Service, pods: &[std::sync::Arc<PodInfo>]) -> Option<Timestamp> {
        let mut all = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let state = all.entry(key.clone()).or_default();
        let mut earliest: Option<Timestamp> = None;
        let mut pods_now = HashMap::with_capacity(pods.len());
        for pod in pods {
            let Some(changed) = pod.ready_changed else { continue };
            if state.pods.get(&pod.name).is_none_or(|seen| changed > *seen) {
                earliest = Some(earliest.map_or(changed, |e| e.min(changed)));
            }
            pods_now.insert(pod.name.clone(), changed);
        }
        let created = service.metadata.creation_timestamp.as_ref().map(|t| t.0);
        if let Some(created) = created
            && state.service.is_none_or(|seen| created > seen)
        {
            earliest = Some(earliest.map_or(created, |e| e.min(created)));
        }
        state.pods = pods_now;
        state.service = created;
        earliest
    }

    pub fn forget(&self, key: &ObjectKey) {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn pod(name: &str, ready_changed: &str) -> Arc<PodInfo> {
        let pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "ns"},
            "status": {"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": ready_changed}]}
        }))
        .expect("a pod");
        Arc::new(PodInfo::from_pod(&pod).expect("named"))
    }

    #[test]
    fn earliest_unreflected_change() {
        let tracker = TriggerTimes::default();
        let key = ObjectKey::new("ns", "s");
        let service: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "s", "namespace": "ns", "creationTimestamp": "2024-01-01T00:00:00Z"}
        }))
        .expect("a service");
        let a = pod("a", "2024-01-01T00:00:05Z");
        let first = tracker.compute(&key, &service, std::slice::from_ref(&a));
        assert_eq!(first.map(|t| t.to_string()).as_deref(), Some("2024-01-01T00:00:00Z"));
        assert_eq!(tracker.compute(&key, &service, std::slice::from_ref(&a)), None, "nothing changed");
        let b = pod("b", "2024-01-01T00:00:09Z");
        let later = tracker.compute(&key, &service, &[a, b]);
        assert_eq!(later.map(|t| t.to_string()).as_deref(), Some("2024-01-01T00:00:09Z"));
    }
}
