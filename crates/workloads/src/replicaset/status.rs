//! Upstream's `calculateStatus` for a ReplicaSet: counts over its active pods, and the `ReplicaFailure`
//! condition set while creating or deleting pods fails and removed once a sync succeeds.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use crate::labels::matches;
use crate::pods::{is_available, is_ready};

/// The status of `rs` with `pods` (active, owned); `failure` is the error of this sync's create/delete.
pub(crate) fn calculate(rs: &ReplicaSet, pods: &[Arc<Pod>], failure: Option<&str>, now: Timestamp) -> ReplicaSetStatus {
    let spec = rs.spec.as_ref();
    let min_ready = spec.and_then(|s| s.min_ready_seconds).unwrap_or(0);
    let template_labels = spec.and_then(|s| s.template.as_ref()).and_then(|t| t.metadata.as_ref()?.labels.clone());
    let template_selector =
        LabelSelector { match_labels: Some(template_labels.unwrap_or_default()), match_expressions: None };
    let count = |f: &dyn Fn(&Pod) -> bool| i32::try_from(pods.iter().filter(|p| f(p)).count()).unwrap_or(i32::MAX);
    let mut conditions = rs.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    let has_failure = conditions.iter().any(|c| c.type_ == "ReplicaFailure");
    match failure {
        Some(message) if !has_failure => {
            let replicas = spec.and_then(|s| s.replicas).unwrap_or(1);
            let diff = i64::try_from(pods.len()).unwrap_or(i64::MAX) - i64::from(replicas);
            let reason = match diff {
                d if d < 0 => "FailedCreate",
                d if d > 0 => "FailedDelete",
                _ => "",
            };
            conditions.push(ReplicaSetCondition {
                type_: "ReplicaFailure".into(),
                status: "True".into(),
                reason: Some(reason.into()),
                message: Some(message.into()),
                last_transition_time: Some(Time(now)),
            });
        }
        None if has_failure => conditions.retain(|c| c.type_ != "ReplicaFailure"),
        _ => {}
    }
    ReplicaSetStatus {
        replicas: i32::try_from(pods.len()).unwrap_or(i32::MAX),
        fully_labeled_replicas: Some(count(&|p| matches(Some(&template_selector), p.metadata.labels.as_ref()))),
        ready_replicas: Some(count(&|p| is_ready(p))),
        available_replicas: Some(count(&|p| is_available(p, min_ready, now))),
        observed_generation: rs.metadata.generation,
        conditions: (!conditions.is_empty()).then_some(conditions),
        terminating_replicas: rs.status.as_ref().and_then(|s| s.terminating_replicas),
    }
}

/// Whether `new` differs from the stored status in what upstream compares.
pub(crate) fn changed(old: Option<&ReplicaSetStatus>, new: &ReplicaSetStatus) -> bool {
    let Some(old) = old else { return true };
    let zero = |v: Option<i32>| v.unwrap_or(0);
    old.replicas != new.replicas
        || zero(old.fully_labeled_replicas) != zero(new.fully_labeled_replicas)
        || zero(old.ready_replicas) != zero(new.ready_replicas)
        || zero(old.available_replicas) != zero(new.available_replicas)
        || zero_gen(old.observed_generation) != zero_gen(new.observed_generation)
        || old.conditions.as_deref().unwrap_or_default() != new.conditions.as_deref().unwrap_or_default()
}

fn zero_gen(v: Option<i64>) -> i64 {
    v.unwrap_or(0)
}

/// A merge patch that writes every field of `status` (a cleared field is written as `null`).
pub(crate) fn patch(status: &ReplicaSetStatus) -> Value {
    json!({"status": {
        "replicas": status.replicas,
        "fullyLabeledReplicas": status.fully_labeled_replicas,
        "readyReplicas": status.ready_replicas,
        "availableReplicas": status.available_replicas,
        "observedGeneration": status.observed_generation,
        "conditions": status.conditions,
    }})
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::ReplicaSetSpec;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus, PodTemplateSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use std::collections::BTreeMap;

    fn labels(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
        Some(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    fn pod(ready_at: Option<i64>, l: &[(&str, &str)]) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta { labels: labels(l), ..Default::default() },
            spec: None,
            status: Some(PodStatus {
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready_at.is_some() { "True" } else { "False" }.into(),
                    last_transition_time: ready_at.and_then(|t| Timestamp::from_second(t).ok()).map(Time),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        })
    }

    fn rs(min_ready: i32) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta { generation: Some(4), ..Default::default() },
            spec: Some(ReplicaSetSpec {
                replicas: Some(3),
                min_ready_seconds: Some(min_ready),
                template: Some(PodTemplateSpec {
                    metadata: Some(ObjectMeta { labels: labels(&[("app", "web"), ("v", "1")]), ..Default::default() }),
                    spec: None,
                }),
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn counts_and_observed_generation() {
        let now = Timestamp::from_second(1000).unwrap_or(Timestamp::UNIX_EPOCH);
        let pods = [pod(Some(995), &[("app", "web"), ("v", "1")]), pod(Some(100), &[("app", "web")]), pod(None, &[])];
        let s = calculate(&rs(10), &pods, None, now);
        assert_eq!(s.replicas, 3);
        assert_eq!(s.fully_labeled_replicas, Some(1));
        assert_eq!(s.ready_replicas, Some(2));
        assert_eq!(s.available_replicas, Some(1), "one pod has been ready for less than minReadySeconds");
        assert_eq!(s.observed_generation, Some(4));
        assert!(changed(None, &s));
        assert!(!changed(Some(&s), &s));
    }

    #[test]
    fn replica_failure_comes_and_goes() {
        let now = Timestamp::from_second(1000).unwrap_or(Timestamp::UNIX_EPOCH);
        let mut set = rs(0);
        let s = calculate(&set, &[], Some("quota exceeded"), now);
        let c = &s.conditions.clone().unwrap_or_default()[0];
        assert_eq!((c.type_.as_str(), c.reason.as_deref()), ("ReplicaFailure", Some("FailedCreate")));
        set.status = Some(s);
        let cleared = calculate(&set, &[], None, now);
        assert_eq!(cleared.conditions, None);
        assert_eq!(patch(&cleared)["status"]["conditions"], Value::Null);
    }
}
