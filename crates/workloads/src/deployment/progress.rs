//! Deployment status and conditions (upstream's `sync.go` `calculateStatus` and `progress.go`
//! `syncRolloutStatus`), as pure functions of the Deployment, its ReplicaSets and the time:
//! `Available` (`MinimumReplicasAvailable` / `MinimumReplicasUnavailable`) and `Progressing`
//! (`NewReplicaSetCreated`, `FoundNewReplicaSet`, `ReplicaSetUpdated`, `NewReplicaSetAvailable`,
//! `ProgressDeadlineExceeded`), the fields `kubectl rollout status` reads.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::util::{actual, available, desired, max_unavailable, ready, spec_sum, status_sum};

pub(crate) const AVAILABLE: &str = "Available";
pub(crate) const PROGRESSING: &str = "Progressing";
pub(crate) const REPLICA_FAILURE: &str = "ReplicaFailure";
pub(crate) const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
pub(crate) const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
pub(crate) const RS_UPDATED: &str = "ReplicaSetUpdated";
pub(crate) const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
pub(crate) const TIMED_OUT: &str = "ProgressDeadlineExceeded";
pub(crate) const FAILED_RS_CREATE: &str = "ReplicaSetCreateError";
pub(crate) const PAUSED: &str = "DeploymentPaused";
pub(crate) const RESUMED: &str = "DeploymentResumed";

/// A condition stamped `now` (upstream's `NewDeploymentCondition`).
pub(crate) fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

pub(crate) fn get_condition<'a>(status: Option<&'a DeploymentStatus>, type_: &str) -> Option<&'a DeploymentCondition> {
    status?.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

/// Upstream's `SetDeploymentCondition`: no change for the same status and reason; the transition time is
/// kept while the status stays.
pub(crate) fn set_condition(status: &mut DeploymentStatus, mut c: DeploymentCondition) {
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    if let Some(current) = conditions.iter().find(|x| x.type_ == c.type_) {
        if current.status == c.status && current.reason == c.reason {
            return;
        }
        if current.status == c.status {
            c.last_transition_time = current.last_transition_time.clone();
        }
    }
    conditions.retain(|x| x.type_ != c.type_);
    conditions.push(c);
}

pub(crate) fn remove_condition(status: &mut DeploymentStatus, type_: &str) {
    if let Some(conditions) = status.conditions.as_mut() {
        conditions.retain(|c| c.type_ != type_);
        if conditions.is_empty() {
            status.conditions = None;
        }
    }
}

/// `spec.progressDeadlineSeconds`, unless unset or "infinite" (MaxInt32).
pub(crate) fn progress_deadline(d: &Deployment) -> Option<i32> {
    d.spec.as_ref()?.progress_deadline_seconds.filter(|s| *s != i32::MAX)
}

/// Upstream's `calculateStatus`: counts from the ReplicaSets and the `Available` condition.
pub(crate) fn calculate(
    all: &[&ReplicaSet],
    new_rs: Option<&ReplicaSet>,
    d: &Deployment,
    now: Timestamp,
) -> DeploymentStatus {
    let available_count = status_sum(all, available);
    let unavailable = (spec_sum(all) - available_count).max(0);
    let old = d.status.as_ref();
    let mut status = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: Some(status_sum(all, actual)),
        updated_replicas: Some(new_rs.map_or(0, |rs| status_sum(&[rs], actual))),
        ready_replicas: Some(status_sum(all, ready)),
        available_replicas: Some(available_count),
        unavailable_replicas: Some(unavailable),
        collision_count: old.and_then(|s| s.collision_count),
        conditions: old.and_then(|s| s.conditions.clone()),
        terminating_replicas: old.and_then(|s| s.terminating_replicas),
    };
    if available_count >= desired(d) - max_unavailable(d) {
        let c = condition(
            AVAILABLE,
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.".into(),
            now,
        );
        set_condition(&mut status, c);
    } else {
        let c = condition(
            AVAILABLE,
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.".into(),
            now,
        );
        set_condition(&mut status, c);
    }
    status
}

fn n(v: Option<i32>) -> i32 {
    v.unwrap_or(0)
}

/// Upstream's `DeploymentComplete`.
pub(crate) fn complete(d: &Deployment, status: &DeploymentStatus) -> bool {
    let want = desired(d);
    n(status.updated_replicas) == want
        && n(status.replicas) == want
        && n(status.available_replicas) == want
        && status.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
}

/// Upstream's `DeploymentProgressing`: more updated, ready or available replicas, or fewer old ones.
fn progressing(d: &Deployment, new: &DeploymentStatus) -> bool {
    let old = d.status.clone().unwrap_or_default();
    let old_old = n(old.replicas) - n(old.updated_replicas);
    let new_old = n(new.replicas) - n(new.updated_replicas);
    n(new.updated_replicas) > n(old.updated_replicas)
        || new_old < old_old
        || n(new.ready_replicas) > n(old.ready_replicas)
        || n(new.available_replicas) > n(old.available_replicas)
}

fn deadline_of(c: &DeploymentCondition, seconds: i32) -> Option<Timestamp> {
    let from = c.last_update_time.as_ref()?.0;
    Timestamp::from_nanosecond(from.as_nanosecond() + i128::from(seconds) * 1_000_000_000).ok()
}

/// Upstream's `DeploymentTimedOut`.
fn timed_out(d: &Deployment, now: Timestamp) -> bool {
    let Some(seconds) = progress_deadline(d) else { return false };
    let Some(c) = get_condition(d.status.as_ref(), PROGRESSING) else { return false };
    match c.reason.as_deref() {
        Some(NEW_RS_AVAILABLE) => false,
        Some(TIMED_OUT) => true,
        _ => deadline_of(c, seconds).is_some_and(|at| at < now),
    }
}

/// Upstream's `syncRolloutStatus` without the write: the status to store, with `Progressing` estimated and
/// ReplicaSet failures carried over.
pub(crate) fn rollout_status(
    all: &[&ReplicaSet],
    new_rs: Option<&ReplicaSet>,
    d: &Deployment,
    now: Timestamp,
) -> DeploymentStatus {
    let mut status = calculate(all, new_rs, d, now);
    if progress_deadline(d).is_none() {
        remove_condition(&mut status, PROGRESSING);
    }
    let current = get_condition(d.status.as_ref(), PROGRESSING);
    let is_complete = n(status.replicas) == n(status.updated_replicas)
        && current.is_some_and(|c| c.reason.as_deref() == Some(NEW_RS_AVAILABLE));
    let name = d.metadata.name.clone().unwrap_or_default();
    let subject = |what: &str| match new_rs.and_then(|rs| rs.metadata.name.clone()) {
        Some(rs) => format!("ReplicaSet \"{rs}\" {what}"),
        None => format!("Deployment \"{name}\" {what}"),
    };
    if progress_deadline(d).is_some() && !is_complete {
        if complete(d, &status) {
            let c = condition(PROGRESSING, "True", NEW_RS_AVAILABLE, subject("has successfully progressed."), now);
            set_condition(&mut status, c);
        } else if progressing(d, &status) {
            let mut c = condition(PROGRESSING, "True", RS_UPDATED, subject("is progressing."), now);
            if let Some(current) = current {
                if current.status == "True" {
                    c.last_transition_time = current.last_transition_time.clone();
                }
                remove_condition(&mut status, PROGRESSING);
            }
            set_condition(&mut status, c);
        } else if timed_out(d, now) {
            let c = condition(PROGRESSING, "False", TIMED_OUT, subject("has timed out progressing."), now);
            set_condition(&mut status, c);
        }
    }
    let failure = new_rs
        .into_iter()
        .chain(all.iter().copied())
        .filter_map(|rs| rs.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == REPLICA_FAILURE).cloned())
        .next();
    match failure {
        Some(f) => set_condition(
            &mut status,
            DeploymentCondition {
                type_: REPLICA_FAILURE.into(),
                status: f.status,
                reason: f.reason,
                message: f.message,
                last_update_time: f.last_transition_time.clone(),
                last_transition_time: f.last_transition_time,
            },
        ),
        None => remove_condition(&mut status, REPLICA_FAILURE),
    }
    status
}

/// Whether two statuses are the same, with absent counts read as zero (the API omits zeros).
pub(crate) fn same_status(old: Option<&DeploymentStatus>, new: &DeploymentStatus) -> bool {
    let norm = |s: &DeploymentStatus| {
        let z = |v: Option<i32>| Some(v.unwrap_or(0));
        DeploymentStatus {
            available_replicas: z(s.available_replicas),
            collision_count: s.collision_count,
            conditions: s.conditions.clone().filter(|c| !c.is_empty()),
            observed_generation: Some(s.observed_generation.unwrap_or(0)),
            ready_replicas: z(s.ready_replicas),
            replicas: z(s.replicas),
            terminating_replicas: s.terminating_replicas,
            unavailable_replicas: z(s.unavailable_replicas),
            updated_replicas: z(s.updated_replicas),
        }
    };
    old.is_some_and(|old| norm(old) == norm(new))
}

/// Upstream's `requeueStuckDeployment`: when to look again for a rollout that may time out.
pub(crate) fn requeue_after(d: &Deployment, status: &DeploymentStatus, now: Timestamp) -> Option<Duration> {
    let seconds = progress_deadline(d)?;
    let current = get_condition(d.status.as_ref(), PROGRESSING)?;
    if complete(d, status) || current.reason.as_deref() == Some(TIMED_OUT) {
        return None;
    }
    let at = deadline_of(current, seconds)?;
    let nanos = at.as_nanosecond() - now.as_nanosecond();
    if nanos < 1_000_000_000 {
        return Some(Duration::from_secs(1));
    }
    Some(Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX)) + Duration::from_secs(1))
}

#[cfg(test)]
mod tests;
