//! What both controllers share around kube-rs's `Controller`: a per-object exponential backoff for failed
//! reconciles (upstream's workqueue rate limiter: 5 ms doubling, capped), and event recording that logs
//! instead of failing when the event cannot be written.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

const BASE: Duration = Duration::from_millis(5);
const CAP: Duration = Duration::from_secs(60);

/// Failures per object key, for exponential backoff.
#[derive(Default)]
pub(crate) struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// Records a failure and returns how long to wait before the next try.
    pub(crate) fn failed(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = failures.entry(key.to_string()).or_default();
        let delay = BASE.saturating_mul(2u32.saturating_pow(*n)).min(CAP);
        *n = n.saturating_add(1);
        delay
    }

    /// Forgets the failures of a key after a successful reconcile.
    pub(crate) fn succeeded(&self, key: &str) {
        self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(key);
    }
}

/// Records events as one controller (`deployment-controller`, `replicaset-controller`). Every note is its
/// own event, as upstream's messages are ("Created pod: web-x", "Created pod: web-y"): kube-rs's recorder
/// would fold events that differ only by note into one series, so each publish uses a fresh recorder.
#[derive(Clone)]
pub(crate) struct Events {
    client: Client,
    reporter: Reporter,
}

impl Events {
    pub(crate) fn new(client: Client, controller: &str) -> Self {
        Self { client, reporter: Reporter { controller: controller.to_string(), instance: None } }
    }

    /// Publishes a Normal event; a failure is logged, never returned.
    pub(crate) async fn normal(&self, regarding: &ObjectReference, reason: &str, note: String) {
        self.publish(regarding, EventType::Normal, reason, note).await;
    }

    /// Publishes a Warning event; a failure is logged, never returned.
    pub(crate) async fn warning(&self, regarding: &ObjectReference, reason: &str, note: String) {
        self.publish(regarding, EventType::Warning, reason, note).await;
    }

    async fn publish(&self, regarding: &ObjectReference, type_: EventType, reason: &str, note: String) {
        let event =
            Event { type_, reason: reason.to_string(), note: Some(note), action: reason.to_string(), secondary: None };
        let recorder = Recorder::new(self.client.clone(), self.reporter.clone());
        if let Err(error) = recorder.publish(&event, regarding).await {
            tracing::warn!(%error, reason, "recording an event failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_resets() {
        let b = Backoff::default();
        assert_eq!(b.failed("a"), Duration::from_millis(5));
        assert_eq!(b.failed("a"), Duration::from_millis(10));
        assert_eq!(b.failed("a"), Duration::from_millis(20));
        assert_eq!(b.failed("other"), Duration::from_millis(5));
        for _ in 0..40 {
            b.failed("a");
        }
        assert_eq!(b.failed("a"), CAP);
        b.succeeded("a");
        assert_eq!(b.failed("a"), Duration::from_millis(5));
    }
}
