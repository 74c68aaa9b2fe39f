//! Upstream's `manageReplicas`: the plan (how many pods to create, which to delete) is a pure function of the
//! ReplicaSet and its active pods; carrying it out creates pods from the template in slow-start batches
//! (1, 2, 4, … stopping at the first failing batch) and deletes the pods ranked first for deletion.

use std::sync::Arc;

use futures::future::join_all;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};

use super::Context;
use crate::error::{Error, is_not_found};
use crate::ownership::controller_ref;
use crate::pods::sort_for_deletion;

/// Upstream's `BurstReplicas`: at most this many creates or deletes per sync.
pub(crate) const BURST_REPLICAS: usize = 500;

/// What a sync does to the pod count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Plan {
    Nothing,
    /// Create this many pods.
    Create(usize),
    /// Delete these pods (names), in this order.
    Delete(Vec<String>),
}

/// The plan for `replicas` wanted and `pods` (active, owned) present.
pub(crate) fn plan(replicas: i32, pods: &[Arc<Pod>], now: Timestamp) -> Plan {
    let wanted = usize::try_from(replicas).unwrap_or(0);
    if pods.len() < wanted {
        return Plan::Create((wanted - pods.len()).min(BURST_REPLICAS));
    }
    if pods.len() == wanted {
        return Plan::Nothing;
    }
    let count = (pods.len() - wanted).min(BURST_REPLICAS);
    let mut ranked: Vec<&Pod> = pods.iter().map(AsRef::as_ref).collect();
    sort_for_deletion(&mut ranked, now);
    Plan::Delete(ranked.iter().take(count).filter_map(|p| p.metadata.name.clone()).collect())
}

/// A pod for the ReplicaSet (upstream's `GetPodFromTemplate`): the template's labels, annotations,
/// finalizers and spec, `generateName: <rs>-`, and a controller reference to the ReplicaSet.
pub(crate) fn pod_from_template(rs: &ReplicaSet) -> Pod {
    let template = rs.spec.as_ref().and_then(|s| s.template.clone()).unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", rs.name_any())),
            namespace: rs.namespace(),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![controller_ref("apps/v1", "ReplicaSet", &rs.metadata)]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    }
}

fn is_namespace_terminating(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 403 && s.message.contains("being terminated"))
}

/// Carries out `plan` for `rs` (whose key is `key`) and records what the pod cache must show before the next.
pub(crate) async fn execute(ctx: &Context, rs: &ReplicaSet, key: &str, plan: Plan) -> Result<(), Error> {
    let ns = rs.namespace().ok_or(Error::Unnamed("ReplicaSet"))?;
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let reference = rs.object_ref(&());
    match plan {
        Plan::Nothing => Ok(()),
        Plan::Create(count) => {
            let template = pod_from_template(rs);
            let post = PostParams::default();
            let mut remaining = count;
            let mut batch = 1usize;
            while remaining > 0 {
                let size = batch.min(remaining);
                let results = join_all((0..size).map(|_| api.create(&post, &template))).await;
                let mut failure = None;
                let mut created = Vec::new();
                for result in results {
                    match result {
                        Ok(pod) => {
                            let name = pod.name_any();
                            created.push(name.clone());
                            ctx.events.normal(&reference, "SuccessfulCreate", format!("Created pod: {name}")).await;
                        }
                        Err(e) if is_namespace_terminating(&e) => {}
                        Err(e) => {
                            ctx.events.warning(&reference, "FailedCreate", format!("Error creating: {e}")).await;
                            failure.get_or_insert(e);
                        }
                    }
                }
                expect(ctx, key, &ns, created, true);
                if let Some(e) = failure {
                    return Err(Error::Api(e));
                }
                remaining -= size;
                batch = batch.saturating_mul(2);
            }
            Ok(())
        }
        Plan::Delete(names) => {
            let params = DeleteParams::default();
            let results = join_all(names.iter().map(|n| api.delete(n, &params))).await;
            let mut failure = None;
            let mut deleted = Vec::new();
            for (name, result) in names.iter().zip(results) {
                match result {
                    Ok(_) => {
                        deleted.push(name.clone());
                        ctx.events.normal(&reference, "SuccessfulDelete", format!("Deleted pod: {name}")).await;
                    }
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => {
                        ctx.events.warning(&reference, "FailedDelete", format!("Error deleting: {e}")).await;
                        failure.get_or_insert(e);
                    }
                }
            }
            expect(ctx, key, &ns, deleted, false);
            failure.map_or(Ok(()), |e| Err(Error::Api(e)))
        }
    }
}

/// Records expectations, then clears those the cache already shows (its event may have gone by already).
fn expect(ctx: &Context, key: &str, ns: &str, names: Vec<String>, created: bool) {
    let keys: Vec<String> = names.iter().map(|n| format!("{ns}/{n}")).collect();
    if created {
        ctx.expectations.expect(key, keys.clone(), Vec::new());
    } else {
        ctx.expectations.expect(key, Vec::new(), keys.clone());
    }
    for (name, pod_key) in names.iter().zip(keys) {
        let cached = ctx.pods.get(&ObjectRef::new(name).within(ns));
        let seen = match &cached {
            Some(_) if created => true,
            Some(p) => p.meta().deletion_timestamp.is_some(),
            None => !created,
        };
        if seen {
            ctx.expectations.seen(key, &pod_key, created);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::ReplicaSetSpec;
    use k8s_openapi::api::core::v1::{PodSpec, PodStatus, PodTemplateSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
    use std::collections::BTreeMap;

    fn pod(name: &str, running: bool, created: i64) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(name.into()),
                creation_timestamp: Timestamp::from_second(created).ok().map(Time),
                ..Default::default()
            },
            spec: Some(PodSpec { node_name: Some("n".into()), ..Default::default() }),
            status: Some(PodStatus {
                phase: Some(if running { "Running" } else { "Pending" }.into()),
                ..Default::default()
            }),
        })
    }

    #[test]
    fn plan_creates_the_missing_and_deletes_pending_first() {
        let now = Timestamp::from_second(10_000).unwrap_or(Timestamp::UNIX_EPOCH);
        assert_eq!(plan(3, &[pod("a", true, 1)], now), Plan::Create(2));
        assert_eq!(plan(1, &[pod("a", true, 1)], now), Plan::Nothing);
        assert_eq!(plan(1000, &[], now), Plan::Create(BURST_REPLICAS));
        let pods = [pod("a", true, 1), pod("b", false, 1), pod("c", true, 2)];
        assert_eq!(plan(2, &pods, now), Plan::Delete(vec!["b".into()]));
        assert_eq!(plan(0, &pods, now).clone(), Plan::Delete(vec!["b".into(), "a".into(), "c".into()]));
    }

    #[test]
    fn pods_come_from_the_template_with_a_controller_ref() {
        let labels: BTreeMap<String, String> = [("app".to_string(), "web".to_string())].into();
        let rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some("web-abc".into()),
                namespace: Some("ns".into()),
                uid: Some("u1".into()),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                selector: LabelSelector { match_labels: Some(labels.clone()), ..Default::default() },
                template: Some(PodTemplateSpec {
                    metadata: Some(ObjectMeta { labels: Some(labels.clone()), ..Default::default() }),
                    spec: Some(PodSpec::default()),
                }),
                ..Default::default()
            }),
            status: None,
        };
        let p = pod_from_template(&rs);
        assert_eq!(p.metadata.generate_name.as_deref(), Some("web-abc-"));
        assert_eq!(p.metadata.labels, Some(labels));
        let r = &p.metadata.owner_references.unwrap_or_default()[0];
        assert_eq!(
            (r.kind.as_str(), r.uid.as_str(), r.controller, r.block_owner_deletion),
            ("ReplicaSet", "u1", Some(true), Some(true))
        );
    }
}
