//! Pod predicates the controllers count with (upstream's `podutil.IsPodReady`, `IsPodAvailable`,
//! `controller.IsPodActive`) and the order in which a ReplicaSet deletes pods when it scales down
//! (upstream's `ActivePodsWithRanks`): unscheduled before scheduled, pending before unknown before running,
//! not ready before ready, pods doubled up on a node first, then recently ready, often restarted and young pods
//! (ready time and age compared on a logarithmic scale, as upstream's `LogarithmicScaleDown`).

use std::cmp::Ordering;
use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

/// Not finished and not being deleted.
pub fn is_active(pod: &Pod) -> bool {
    let phase = phase(pod);
    phase != "Succeeded" && phase != "Failed" && pod.metadata.deletion_timestamp.is_none()
}

fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or_default()
}

/// The pod's `Ready` condition is `True`.
pub fn is_ready(pod: &Pod) -> bool {
    ready_condition(pod).is_some_and(|(status, _)| status == "True")
}

fn ready_condition(pod: &Pod) -> Option<(&str, Option<Timestamp>)> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    let c = conditions.iter().find(|c| c.type_ == "Ready")?;
    Some((c.status.as_str(), c.last_transition_time.as_ref().map(|t| t.0)))
}

/// When the pod became Ready (the Ready condition's last transition), if it is Ready.
pub fn ready_since(pod: &Pod) -> Option<Timestamp> {
    ready_condition(pod).filter(|(s, _)| *s == "True").and_then(|(_, t)| t)
}

/// Ready for at least `min_ready_seconds` (upstream's `IsPodAvailable`).
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    if !is_ready(pod) {
        return false;
    }
    if min_ready_seconds <= 0 {
        return true;
    }
    ready_since(pod).is_some_and(|t| available_at(t, min_ready_seconds) < now)
}

/// How long until a Ready but not yet available pod becomes available, if it will.
pub fn until_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> Option<Duration> {
    if min_ready_seconds <= 0 || is_available(pod, min_ready_seconds, now) {
        return None;
    }
    let at = available_at(ready_since(pod)?, min_ready_seconds);
    let nanos = at.as_nanosecond() - now.as_nanosecond();
    Some(Duration::from_nanos(u64::try_from(nanos.max(0)).unwrap_or(0)))
}

fn available_at(ready: Timestamp, min_ready_seconds: i32) -> Timestamp {
    let nanos = ready.as_nanosecond() + i128::from(min_ready_seconds) * 1_000_000_000;
    Timestamp::from_nanosecond(nanos).unwrap_or(ready)
}

fn node(pod: &Pod) -> &str {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).unwrap_or_default()
}

fn phase_ordinal(pod: &Pod) -> u8 {
    match phase(pod) {
        "Unknown" => 1,
        "Running" => 2,
        _ => 0,
    }
}

fn max_restarts(pod: &Pod) -> i32 {
    let statuses = pod.status.as_ref().and_then(|s| s.container_statuses.as_ref());
    statuses.into_iter().flatten().map(|c| c.restart_count).max().unwrap_or(0)
}

/// Upstream's `logarithmicRankDiff`: compares how long ago two instants were, on a power-of-two scale.
fn log_rank(t: Timestamp, now: Timestamp) -> i64 {
    let d = now.as_nanosecond() - t.as_nanosecond();
    if d <= 0 { -1 } else { i64::from(127 - d.leading_zeros()) }
}

/// Orders two instants for deletion: "zero or later first", or on the log scale when both are known.
fn recent_first(a: Option<Timestamp>, b: Option<Timestamp>, now: Timestamp, uids: (&str, &str)) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(a), Some(b)) if a == b => Ordering::Equal,
        (Some(a), Some(b)) => match log_rank(a, now).cmp(&log_rank(b, now)) {
            Ordering::Equal => uids.0.cmp(uids.1),
            other => other,
        },
    }
}

/// Sorts `pods` so that the ones to delete first come first. `rank` is, per node, how many related pods
/// run there (pods doubled up on a node are deleted first).
pub fn sort_for_deletion(pods: &mut [&Pod], now: Timestamp) {
    let mut per_node: HashMap<&str, usize> = HashMap::new();
    for p in pods.iter().filter(|p| !node(p).is_empty()) {
        *per_node.entry(node(p)).or_default() += 1;
    }
    let rank = |p: &Pod| per_node.get(node(p)).copied().unwrap_or(0);
    pods.sort_by(|a, b| deletion_order(a, b, rank(a), rank(b), now));
}

fn deletion_order(a: &Pod, b: &Pod, rank_a: usize, rank_b: usize, now: Timestamp) -> Ordering {
    let uid = |p: &Pod| p.metadata.uid.clone().unwrap_or_default();
    let (ua, ub) = (uid(a), uid(b));
    // 1. Unassigned < assigned.
    (!node(a).is_empty())
        .cmp(&!node(b).is_empty())
        // 2. Pending < Unknown < Running.
        .then_with(|| phase_ordinal(a).cmp(&phase_ordinal(b)))
        // 3. Not ready < ready.
        .then_with(|| is_ready(a).cmp(&is_ready(b)))
        // 4. Doubled up on a node < not doubled up.
        .then_with(|| rank_b.cmp(&rank_a))
        // 5. Ready for less time < more time.
        .then_with(|| {
            if is_ready(a) && is_ready(b) {
                recent_first(ready_since(a), ready_since(b), now, (&ua, &ub))
            } else {
                Ordering::Equal
            }
        })
        // 6. More restarts < fewer restarts.
        .then_with(|| max_restarts(b).cmp(&max_restarts(a)))
        // 7. Newer < older.
        .then_with(|| {
            let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
            recent_first(created(a), created(b), now, (&ua, &ub))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn ts(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    fn pod(name: &str, node: &str, phase: &str, ready_at: Option<i64>, created: i64) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(name.into()),
                creation_timestamp: Some(Time(ts(created))),
                ..Default::default()
            },
            spec: Some(PodSpec { node_name: (!node.is_empty()).then(|| node.into()), ..Default::default() }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready_at.is_some() { "True" } else { "False" }.into(),
                    last_transition_time: ready_at.map(|t| Time(ts(t))),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn availability_waits_for_min_ready_seconds() {
        let p = pod("a", "n", "Running", Some(1000), 900);
        assert!(is_ready(&p));
        assert!(is_available(&p, 0, ts(1000)));
        assert!(!is_available(&p, 10, ts(1005)));
        assert!(is_available(&p, 10, ts(1011)));
        assert_eq!(until_available(&p, 10, ts(1005)), Some(Duration::from_secs(5)));
        assert_eq!(until_available(&p, 10, ts(1011)), None);
        let not_ready = pod("b", "n", "Running", None, 900);
        assert!(!is_available(&not_ready, 0, ts(1000)));
    }

    #[test]
    fn activity() {
        let mut p = pod("a", "n", "Running", None, 0);
        assert!(is_active(&p));
        p.metadata.deletion_timestamp = Some(Time(ts(5)));
        assert!(!is_active(&p));
        assert!(!is_active(&pod("b", "n", "Succeeded", None, 0)));
    }

    #[test]
    fn deletion_prefers_unscheduled_then_not_ready_then_newest() {
        let now = ts(1_000_000);
        let old_ready = pod("old-ready", "n1", "Running", Some(10), 1);
        let new_ready = pod("new-ready", "n2", "Running", Some(999_990), 999_980);
        let not_ready = pod("not-ready", "n3", "Running", None, 1);
        let pending = pod("pending", "n4", "Pending", None, 1);
        let unscheduled = pod("unscheduled", "", "Pending", None, 1);
        let mut pods = vec![&old_ready, &new_ready, &not_ready, &pending, &unscheduled];
        sort_for_deletion(&mut pods, now);
        let names: Vec<_> = pods.iter().filter_map(|p| p.metadata.name.as_deref()).collect();
        assert_eq!(names, ["unscheduled", "pending", "not-ready", "new-ready", "old-ready"]);
    }

    #[test]
    fn doubled_up_pods_go_first() {
        let now = ts(1_000_000);
        let a = pod("a", "n1", "Running", Some(10), 1);
        let b = pod("b", "n1", "Running", Some(10), 1);
        let c = pod("c", "n2", "Running", Some(10), 1);
        let mut pods = vec![&c, &a, &b];
        sort_for_deletion(&mut pods, now);
        assert_eq!(pods[2].metadata.name.as_deref(), Some("c"));
    }
}
