use super::*;
use k8s_openapi::api::apps::v1::{DeploymentSpec, ReplicaSetSpec, ReplicaSetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

fn ts(s: i64) -> Timestamp {
    Timestamp::from_second(s).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn d(replicas: i32, status: Option<DeploymentStatus>) -> Deployment {
    Deployment {
        metadata: ObjectMeta { name: Some("web".into()), generation: Some(2), ..Default::default() },
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            progress_deadline_seconds: Some(600),
            ..Default::default()
        }),
        status,
    }
}

fn rs(name: &str, replicas: i32, ready: i32, available: i32) -> ReplicaSet {
    ReplicaSet {
        metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
        spec: Some(ReplicaSetSpec { replicas: Some(replicas), ..Default::default() }),
        status: Some(ReplicaSetStatus {
            replicas,
            ready_replicas: Some(ready),
            available_replicas: Some(available),
            ..Default::default()
        }),
    }
}

fn reason(s: &DeploymentStatus, type_: &str) -> Option<String> {
    get_condition(Some(s), type_).and_then(|c| c.reason.clone())
}

#[test]
fn counts_and_availability() {
    let (old, new) = (rs("old", 2, 2, 2), rs("new", 2, 1, 0));
    let s = calculate(&[&old, &new], Some(&new), &d(3, None), ts(100));
    assert_eq!(
        (s.replicas, s.updated_replicas, s.ready_replicas, s.available_replicas),
        (Some(4), Some(2), Some(3), Some(2))
    );
    assert_eq!(s.unavailable_replicas, Some(2));
    assert_eq!(s.observed_generation, Some(2));
    // maxUnavailable 25% of 3 = 0: 2 available < 3.
    assert_eq!(reason(&s, AVAILABLE).as_deref(), Some("MinimumReplicasUnavailable"));
}

#[test]
fn progressing_then_complete_then_kept() {
    let new = rs("new", 3, 1, 1);
    let start = DeploymentStatus {
        conditions: Some(vec![condition(PROGRESSING, "True", NEW_RS_CREATED, "x".into(), ts(1))]),
        ..Default::default()
    };
    let s = rollout_status(&[&new], Some(&new), &d(3, Some(start)), ts(10));
    assert_eq!(reason(&s, PROGRESSING).as_deref(), Some(RS_UPDATED));
    let c =
        get_condition(Some(&s), PROGRESSING).cloned().unwrap_or_else(|| condition("", "", "", String::new(), ts(0)));
    assert_eq!(c.last_transition_time, Some(Time(ts(1))), "still True: transition time kept");
    assert_eq!(c.message.as_deref(), Some("ReplicaSet \"new\" is progressing."));

    let done = rs("new", 3, 3, 3);
    let s2 = rollout_status(&[&done], Some(&done), &d(3, Some(s.clone())), ts(20));
    assert_eq!(reason(&s2, PROGRESSING).as_deref(), Some(NEW_RS_AVAILABLE));
    assert_eq!(reason(&s2, AVAILABLE).as_deref(), Some("MinimumReplicasAvailable"));
    assert!(complete(&d(3, None), &s2));
    assert!(same_status(Some(&s2), &rollout_status(&[&done], Some(&done), &d(3, Some(s2.clone())), ts(30))));
    assert_eq!(requeue_after(&d(3, Some(s2.clone())), &s2, ts(30)), None);
}

#[test]
fn no_progress_past_the_deadline_times_out() {
    let new = rs("new", 3, 0, 0);
    let stuck = calculate(&[&new], Some(&new), &d(3, None), ts(0));
    let mut stuck = stuck;
    set_condition(&mut stuck, condition(PROGRESSING, "True", RS_UPDATED, "x".into(), ts(0)));
    let dep = d(3, Some(stuck.clone()));
    let early = rollout_status(&[&new], Some(&new), &dep, ts(100));
    assert_eq!(reason(&early, PROGRESSING).as_deref(), Some(RS_UPDATED));
    let wait = requeue_after(&dep, &early, ts(100)).unwrap_or_default();
    assert_eq!(wait.as_secs(), 501);
    let late = rollout_status(&[&new], Some(&new), &dep, ts(700));
    let c = get_condition(Some(&late), PROGRESSING).cloned();
    assert_eq!(c.as_ref().map(|c| c.status.as_str()), Some("False"));
    assert_eq!(c.and_then(|c| c.reason), Some(TIMED_OUT.to_string()));
}

#[test]
fn replica_failures_are_carried_over() {
    let mut new = rs("new", 3, 0, 0);
    if let Some(s) = new.status.as_mut() {
        s.conditions = Some(vec![k8s_openapi::api::apps::v1::ReplicaSetCondition {
            type_: REPLICA_FAILURE.into(),
            status: "True".into(),
            reason: Some("FailedCreate".into()),
            message: Some("quota".into()),
            last_transition_time: Some(Time(ts(5))),
        }]);
    }
    let s = rollout_status(&[&new], Some(&new), &d(3, None), ts(10));
    assert_eq!(reason(&s, REPLICA_FAILURE).as_deref(), Some("FailedCreate"));
}
