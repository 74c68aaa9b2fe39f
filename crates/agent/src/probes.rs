//! Readiness, liveness and startup probes, with the kubelet's semantics: one prober task per probe of a running
//! container instance, probing every `periodSeconds` from `initialDelaySeconds` after the container started; a
//! result flips only after `successThreshold` / `failureThreshold` consecutive outcomes. Readiness starts out
//! failed, liveness passed, startup not yet passed; liveness and readiness wait until the startup probe has
//! passed. A failed liveness or startup probe kills the container (`terminationGracePeriodSeconds` of the probe,
//! else of the pod) and the pod loop restarts it by its `restartPolicy`.
//!
//! The pod loop asks [`Probes::observe`] for a container's [`Health`] on every sync; that call starts the probers
//! for a new container instance (and stops those of the previous one). A result that changes wakes the pod loop.

pub mod check;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::events::{EventType, Events};
use k8s_openapi::api::core::v1::{ObjectReference, Probe};
use tokio::task::AbortHandle;

use check::Outcome;

/// What the probes say of one container instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    /// The startup probe has passed (or there is none).
    pub started: bool,
    /// The readiness probe passes (or there is none) and the container has started.
    pub ready: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Startup,
    Liveness,
    Readiness,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Startup => "Startup",
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
        }
    }
}

/// Consecutive outcomes against the thresholds: the reported result flips only once a run is long enough.
#[derive(Debug, Clone)]
pub struct Tracker {
    success_threshold: u32,
    failure_threshold: u32,
    result: bool,
    last: Option<bool>,
    run: u32,
}

impl Tracker {
    pub fn new(probe: &Probe, initial: bool) -> Tracker {
        Tracker {
            success_threshold: probe.success_threshold.unwrap_or(1).max(1) as u32,
            failure_threshold: probe.failure_threshold.unwrap_or(3).max(1) as u32,
            result: initial,
            last: None,
            run: 0,
        }
    }

    /// Records one outcome; returns the new result when it flipped.
    pub fn record(&mut self, passed: bool) -> Option<bool> {
        if self.last == Some(passed) {
            self.run = self.run.saturating_add(1);
        } else {
            self.last = Some(passed);
            self.run = 1;
        }
        let threshold = if passed { self.success_threshold } else { self.failure_threshold };
        if self.run >= threshold && self.result != passed {
            self.result = passed;
            return Some(passed);
        }
        None
    }

    pub fn result(&self) -> bool {
        self.result
    }
}

/// One container instance to probe.
#[derive(Debug, Clone)]
pub struct Instance {
    /// `<pod uid>/<container name>`.
    pub key: String,
    /// The attempt number (a new one restarts the probers).
    pub attempt: u32,
    pub target: check::Target,
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// The pod, for events.
    pub pod: ObjectReference,
    /// The pod's `terminationGracePeriodSeconds` (a probe may set its own).
    pub grace: Duration,
}

struct Entry {
    attempt: u32,
    health: Arc<Mutex<Health>>,
    tasks: Vec<AbortHandle>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The probers of every running container of this node.
pub struct Probes {
    entries: Mutex<HashMap<String, Entry>>,
    changed: Arc<tokio::sync::Notify>,
    events: Events,
}

impl Probes {
    /// `changed` is notified whenever a probe result changes (or a probe kills its container).
    pub fn new(events: Events, changed: Arc<tokio::sync::Notify>) -> Probes {
        Probes { entries: Mutex::new(HashMap::new()), changed, events }
    }

    /// The health of a running container instance; starts its probers the first time it is seen.
    pub fn observe(&self, instance: Instance) -> Health {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = entries.get(&instance.key)
            && entry.attempt == instance.attempt
        {
            return *entry.health.lock().unwrap_or_else(PoisonError::into_inner);
        }
        let container = &instance.target.container;
        let health = Arc::new(Mutex::new(Health {
            started: container.startup_probe.is_none(),
            ready: container.startup_probe.is_none() && container.readiness_probe.is_none(),
        }));
        let mut tasks = Vec::new();
        for (kind, probe) in [
            (Kind::Startup, &container.startup_probe),
            (Kind::Liveness, &container.liveness_probe),
            (Kind::Readiness, &container.readiness_probe),
        ] {
            if let Some(probe) = probe {
                let prober = Prober {
                    kind,
                    probe: probe.clone(),
                    instance: instance.clone(),
                    health: health.clone(),
                    changed: self.changed.clone(),
                    events: self.events.clone(),
                };
                tasks.push(tokio::spawn(prober.run()).abort_handle());
            }
        }
        let now = *health.lock().unwrap_or_else(PoisonError::into_inner);
        entries.insert(instance.key.clone(), Entry { attempt: instance.attempt, health, tasks });
        now
    }

    /// Stops the probers of `key` (`<uid>/<container>`), e.g. because the container is no longer running.
    pub fn forget(&self, key: &str) {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).remove(key);
    }

    /// Stops the probers of every container of a pod.
    pub fn forget_pod(&self, uid: &str) {
        let prefix = format!("{uid}/");
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).retain(|k, _| !k.starts_with(&prefix));
    }
}

struct Prober {
    kind: Kind,
    probe: Probe,
    instance: Instance,
    health: Arc<Mutex<Health>>,
    changed: Arc<tokio::sync::Notify>,
    events: Events,
}

impl Prober {
    fn health(&self) -> Health {
        *self.health.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn run(self) {
        let period = Duration::from_secs(self.probe.period_seconds.unwrap_or(10).max(1) as u64);
        let delay = Duration::from_secs(self.probe.initial_delay_seconds.unwrap_or(0).max(0) as u64);
        let since_start = (chrono::Utc::now() - self.instance.started_at).to_std().unwrap_or_default();
        tokio::time::sleep(delay.saturating_sub(since_start)).await;
        let mut tracker = Tracker::new(&self.probe, self.kind == Kind::Liveness);
        loop {
            // Liveness and readiness wait for the startup probe; a passed startup probe is done.
            let started = self.health().started;
            if self.kind == Kind::Startup && started {
                return;
            }
            if self.kind != Kind::Startup && !started {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            let outcome = check::run(&self.probe, &self.instance.target).await;
            let passed = outcome == Outcome::Success;
            if let Outcome::Failure(reason) = &outcome {
                tracing::debug!(container = %self.instance.key, probe = self.kind.name(), %reason, "probe failed");
                // One event per failing streak; a streak failing the same way again counts on the same event.
                if tracker.last != Some(false) {
                    self.event(EventType::Warning, "Unhealthy", format!("{} probe failed: {reason}", self.kind.name()))
                        .await;
                }
            }
            if let Some(result) = tracker.record(passed) {
                self.apply(result).await;
                if !result && self.kind != Kind::Readiness {
                    return;
                }
            }
            tokio::time::sleep(period).await;
        }
    }

    /// A result flipped: update the health, and kill the container on a failed liveness or startup probe.
    async fn apply(&self, result: bool) {
        {
            let mut health = self.health.lock().unwrap_or_else(PoisonError::into_inner);
            match self.kind {
                Kind::Startup => {
                    health.started = result;
                    health.ready = result && self.instance.target.container.readiness_probe.is_none();
                }
                Kind::Readiness => health.ready = result && health.started,
                Kind::Liveness => {}
            }
        }
        if !result && self.kind != Kind::Readiness {
            let name = &self.instance.target.container.name;
            self.event(
                EventType::Normal,
                "Killing",
                format!("Container {name} failed {} probe, will be restarted", self.kind.name().to_lowercase()),
            )
            .await;
            let grace = self
                .probe
                .termination_grace_period_seconds
                .map(|s| Duration::from_secs(s.max(1) as u64))
                .unwrap_or(self.instance.grace);
            let dir: PathBuf = self.instance.target.state_dir.clone();
            if let Err(e) = skiff_runtime::stop(&dir, grace).await {
                tracing::warn!(container = %self.instance.key, error = %e, "killing an unhealthy container failed");
            }
        }
        self.changed.notify_one();
    }

    async fn event(&self, type_: EventType, reason: &str, note: String) {
        if let Err(e) = self.events.publish(&self.instance.pod, type_, reason, note).await {
            tracing::debug!(error = %e, reason, "publishing a probe event failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_flip_only_after_their_threshold() {
        let probe = Probe { success_threshold: Some(2), failure_threshold: Some(3), ..Default::default() };
        let mut t = Tracker::new(&probe, false);
        assert_eq!(t.record(true), None);
        assert_eq!(t.record(false), None, "a failure breaks the success run");
        assert_eq!(t.record(true), None);
        assert_eq!(t.record(true), Some(true));
        assert_eq!(t.record(true), None, "no flip without a change");
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), Some(false));
        assert!(!t.result());
    }

    #[test]
    fn defaults_are_one_success_three_failures() {
        let mut t = Tracker::new(&Probe::default(), true);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), Some(false));
        assert_eq!(t.record(true), Some(true));
    }
}
