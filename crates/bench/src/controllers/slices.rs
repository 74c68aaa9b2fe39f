//! Watching EndpointSlices: a task on its own connection forwards every slice change, reduced to a
//! [`SliceUpdate`] and stamped with its arrival time, over a channel; [`Readiness`] folds the updates into the
//! number of Services whose slices list exactly the expected number of ready endpoints.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams, WatchEvent, WatchParams};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::JoinHandle;

use crate::BenchError;

/// `kubernetes.io/service-name`: the Service an EndpointSlice belongs to.
const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";
/// How long one watch request may stay open before the task re-watches from the last resourceVersion.
const WATCH_TIMEOUT_SECS: u32 = 240;

/// One EndpointSlice as the watcher saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SliceUpdate {
    pub name: String,
    /// The `kubernetes.io/service-name` label.
    pub service: String,
    /// `true` for a DELETED event.
    pub deleted: bool,
    /// Every endpoint address with its `ready` condition (unset counts as ready, as upstream advises consumers).
    pub endpoints: Vec<(String, bool)>,
}

impl SliceUpdate {
    /// Reduces a slice to what the benchmark compares.
    pub fn from_slice(slice: &EndpointSlice, deleted: bool) -> Self {
        let service = slice.metadata.labels.as_ref().and_then(|l| l.get(LABEL_SERVICE_NAME)).cloned();
        let endpoints = slice
            .endpoints
            .iter()
            .flat_map(|e| {
                let ready = e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
                e.addresses.iter().map(move |a| (a.clone(), ready))
            })
            .collect();
        Self {
            name: slice.metadata.name.clone().unwrap_or_default(),
            service: service.unwrap_or_default(),
            deleted,
            endpoints,
        }
    }

    /// The `ready` condition of the endpoint at `ip`, if the slice lists it (and was not deleted).
    pub fn ready_of(&self, ip: &str) -> Option<bool> {
        if self.deleted {
            return None;
        }
        self.endpoints.iter().find(|(a, _)| a == ip).map(|(_, ready)| *ready)
    }

    fn ready_count(&self) -> usize {
        if self.deleted { 0 } else { self.endpoints.iter().filter(|(_, ready)| *ready).count() }
    }
}

/// Ready endpoints per Service, folded from slice updates.
#[derive(Debug)]
pub struct Readiness {
    target: usize,
    /// Slice name → (Service, ready endpoints in it).
    slices: HashMap<String, (String, usize)>,
    /// Service → its slices.
    by_service: HashMap<String, BTreeSet<String>>,
    at_target: BTreeSet<String>,
}

impl Readiness {
    /// Counts Services whose slices list exactly `target` ready endpoints.
    pub fn new(target: usize) -> Self {
        Self { target, slices: HashMap::new(), by_service: HashMap::new(), at_target: BTreeSet::new() }
    }

    /// Applies one update.
    pub fn apply(&mut self, update: &SliceUpdate) {
        if update.service.is_empty() {
            return;
        }
        if update.deleted {
            self.slices.remove(&update.name);
            if let Some(names) = self.by_service.get_mut(&update.service) {
                names.remove(&update.name);
            }
        } else {
            self.slices.insert(update.name.clone(), (update.service.clone(), update.ready_count()));
            self.by_service.entry(update.service.clone()).or_default().insert(update.name.clone());
        }
        let total = self.ready(&update.service);
        if total == self.target {
            self.at_target.insert(update.service.clone());
        } else {
            self.at_target.remove(&update.service);
        }
    }

    /// Ready endpoints over all slices of `service`.
    pub fn ready(&self, service: &str) -> usize {
        self.by_service
            .get(service)
            .map_or(0, |names| names.iter().filter_map(|n| self.slices.get(n)).map(|(_, count)| count).sum())
    }

    /// How many Services are at the target.
    pub fn services_at_target(&self) -> usize {
        self.at_target.len()
    }
}

/// A slice update and when it arrived.
pub type Arrival = (Instant, SliceUpdate);

/// Watches the EndpointSlices of `namespace` from now on (after a LIST for the current resourceVersion) and sends
/// every change down the returned channel. The task re-watches when the server ends a watch; it fails on a watch
/// error (such as 410 Gone) and stops when the receiver is dropped.
pub async fn watch(
    client: kube::Client,
    namespace: &str,
) -> Result<(UnboundedReceiver<Arrival>, JoinHandle<Result<(), BenchError>>), BenchError> {
    let api: Api<EndpointSlice> = Api::namespaced(client, namespace);
    let mut rv = api.list(&ListParams::default().limit(1)).await?.metadata.resource_version.unwrap_or_default();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        loop {
            let params = WatchParams::default().timeout(WATCH_TIMEOUT_SECS).disable_bookmarks();
            let stream = api.watch(&params, &rv).await?;
            futures::pin_mut!(stream);
            while let Some(event) = stream.try_next().await? {
                let arrived = Instant::now();
                let (slice, deleted) = match event {
                    WatchEvent::Added(s) | WatchEvent::Modified(s) => (s, false),
                    WatchEvent::Deleted(s) => (s, true),
                    WatchEvent::Bookmark(b) => {
                        rv = b.metadata.resource_version;
                        continue;
                    }
                    WatchEvent::Error(status) => {
                        return Err(BenchError::Check(format!("EndpointSlice watch error: {}", status.message)));
                    }
                };
                if let Some(v) = &slice.metadata.resource_version {
                    rv.clone_from(v);
                }
                if tx.send((arrived, SliceUpdate::from_slice(&slice, deleted))).is_err() {
                    return Ok(());
                }
            }
        }
    });
    Ok((rx, task))
}

/// Receives the next update before `deadline`; an error when the watch task ended or the deadline passed.
pub async fn next(
    rx: &mut UnboundedReceiver<Arrival>,
    deadline: Instant,
    waiting_for: &str,
) -> Result<Arrival, BenchError> {
    let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
    match tokio::time::timeout(left, rx.recv()).await {
        Ok(Some(arrival)) => Ok(arrival),
        Ok(None) => Err(BenchError::Check(format!("the EndpointSlice watch ended while waiting for {waiting_for}"))),
        Err(_) => Err(BenchError::Check(format!("timed out waiting for {waiting_for}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn slice(name: &str, service: &str, endpoints: &[(&str, Option<bool>)]) -> EndpointSlice {
        let endpoints: Vec<_> = endpoints
            .iter()
            .map(|(ip, ready)| match ready {
                Some(r) => json!({"addresses": [ip], "conditions": {"ready": r, "serving": r, "terminating": false}}),
                None => json!({"addresses": [ip]}),
            })
            .collect();
        serde_json::from_value(json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": name, "labels": {LABEL_SERVICE_NAME: service}},
            "endpoints": endpoints,
        }))
        .expect("slice")
    }

    #[test]
    fn updates_read_the_ready_condition() {
        let s = slice("s-1-abc", "s-1", &[("10.42.0.1", Some(true)), ("10.42.0.2", Some(false)), ("10.42.0.3", None)]);
        let u = SliceUpdate::from_slice(&s, false);
        assert_eq!(u.service, "s-1");
        assert_eq!(u.ready_of("10.42.0.1"), Some(true));
        assert_eq!(u.ready_of("10.42.0.2"), Some(false));
        assert_eq!(u.ready_of("10.42.0.3"), Some(true), "unset means ready");
        assert_eq!(u.ready_of("10.42.0.4"), None);
        assert_eq!(SliceUpdate::from_slice(&s, true).ready_of("10.42.0.1"), None);
    }

    #[test]
    fn readiness_counts_services_at_the_target_over_all_their_slices() {
        let mut r = Readiness::new(2);
        r.apply(&SliceUpdate::from_slice(&slice("a-1", "a", &[("1.1.1.1", Some(true))]), false));
        assert_eq!(r.services_at_target(), 0);
        r.apply(&SliceUpdate::from_slice(&slice("a-2", "a", &[("1.1.1.2", Some(true))]), false));
        assert_eq!((r.ready("a"), r.services_at_target()), (2, 1));
        r.apply(&SliceUpdate::from_slice(
            &slice("b-1", "b", &[("2.2.2.1", Some(true)), ("2.2.2.2", Some(false))]),
            false,
        ));
        assert_eq!(r.services_at_target(), 1);
        r.apply(&SliceUpdate::from_slice(
            &slice("b-1", "b", &[("2.2.2.1", Some(true)), ("2.2.2.2", Some(true))]),
            false,
        ));
        assert_eq!(r.services_at_target(), 2);
        r.apply(&SliceUpdate::from_slice(&slice("a-2", "a", &[]), true));
        assert_eq!((r.ready("a"), r.services_at_target()), (1, 1));
        r.apply(&SliceUpdate::from_slice(
            &slice("b-1", "b", &[("2.2.2.1", Some(true)), ("2.2.2.2", Some(true)), ("2.2.2.3", Some(true))]),
            false,
        ));
        assert_eq!(r.services_at_target(), 0, "more than the target is not converged");
    }
}
