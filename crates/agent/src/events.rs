//! The kubelet's events (Pulled, Created, Started, Killing, Unhealthy, BackOff, Failed), correlated the way
//! upstream's event recorder does it: a repeat of the same event — same object and container, type, reason *and
//! message* — bumps the series count of the event already written instead of writing a new one.
//!
//! Written by hand on top of `Api<Event>` because kube-rs's `Recorder` keys its cache without the message: a
//! readiness probe that first failed with "connection refused" would have its later "statuscode: 500" failures
//! folded into that first event, message and all, so `kubectl get events` would never show them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

/// A repeat after this long starts a new event, as upstream's correlator forgets after its cache expires.
const SERIES_TTL: Duration = Duration::from_secs(6 * 60);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    uid: String,
    field_path: String,
    type_: EventType,
    reason: String,
    note: String,
}

struct Written {
    namespace: String,
    name: String,
    count: i32,
    last: Instant,
}

/// Publishes this node's events; cheap to clone.
#[derive(Clone)]
pub struct Events {
    client: kube::Client,
    node_name: String,
    written: Arc<Mutex<HashMap<Key, Written>>>,
}

impl Events {
    pub fn new(client: kube::Client, node_name: String) -> Events {
        Events { client, node_name, written: Arc::new(Mutex::new(HashMap::new())) }
    }

    /// Writes one event about `regarding` (a pod, with `fieldPath` naming the container), or counts a repeat.
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &str,
        note: String,
    ) -> Result<(), kube::Error> {
        let key = Key {
            uid: regarding.uid.clone().unwrap_or_default(),
            field_path: regarding.field_path.clone().unwrap_or_default(),
            type_,
            reason: reason.to_string(),
            note,
        };
        let repeat = self.repeat(&key);
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        match repeat {
            Some((namespace, name, count)) => {
                let series = json!({"series": EventSeries { count, last_observed_time: now }});
                Api::<Event>::namespaced(self.client.clone(), &namespace)
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&series))
                    .await?;
            }
            None => {
                let namespace = regarding.namespace.clone().unwrap_or_else(|| "default".into());
                let object = regarding.name.clone().unwrap_or_default();
                let event = Event {
                    metadata: ObjectMeta {
                        // Upstream's naming: the object's name and the time in hex nanoseconds.
                        name: Some(format!("{object}.{:x}", now.0.as_nanosecond())),
                        namespace: Some(namespace.clone()),
                        ..Default::default()
                    },
                    event_time: Some(now),
                    type_: Some(type_.as_str().into()),
                    reason: Some(key.reason.clone()),
                    action: Some(key.reason.clone()),
                    note: Some(key.note.clone()),
                    regarding: Some(regarding.clone()),
                    reporting_controller: Some("kubelet".into()),
                    reporting_instance: Some(self.node_name.clone()),
                    ..Default::default()
                };
                let created = Api::<Event>::namespaced(self.client.clone(), &namespace)
                    .create(&PostParams::default(), &event)
                    .await?;
                let name = created.metadata.name.unwrap_or_default();
                self.lock().insert(key, Written { namespace, name, count: 1, last: Instant::now() });
            }
        }
        Ok(())
    }

    /// The event to count a repeat on, with its new count; forgets expired series on the way.
    fn repeat(&self, key: &Key) -> Option<(String, String, i32)> {
        let mut written = self.lock();
        written.retain(|_, w| w.last.elapsed() < SERIES_TTL);
        let w = written.get_mut(key)?;
        w.count += 1;
        w.last = Instant::now();
        Some((w.namespace.clone(), w.name.clone(), w.count))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Written>> {
        self.written.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
