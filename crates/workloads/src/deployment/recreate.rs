//! The Recreate strategy (upstream's `recreate.go`): scale every old ReplicaSet to zero, wait until none of
//! their pods is left (terminating pods included), then create and scale up the new ReplicaSet.

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::runtime::controller::Action;

use super::progress;
use super::sync::Sync;
use super::util::{actual, desired, rs_replicas, status_sum};
use crate::error::Error;
use crate::labels::to_query;
use crate::ownership::controller_of;

/// Upstream's `oldPodsRunning` over the pods of the old ReplicaSets: any not yet Succeeded or Failed.
pub(crate) fn old_pods_running(old: &[ReplicaSet], pods: &[Pod]) -> bool {
    if status_sum(&old.iter().collect::<Vec<_>>(), actual) > 0 {
        return true;
    }
    let old_uids: Vec<&str> = old.iter().filter_map(|rs| rs.metadata.uid.as_deref()).collect();
    pods.iter()
        .filter(|p| controller_of(&p.metadata).is_some_and(|r| old_uids.contains(&r.uid.as_str())))
        .any(|p| !matches!(p.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed")))
}

impl Sync<'_> {
    /// Upstream's `rolloutRecreate`.
    pub(super) async fn rollout_recreate(&mut self, sets: &[ReplicaSet]) -> Result<Action, Error> {
        let (mut new_rs, mut old) = self.all_sets_and_sync_revision(sets, false).await?;
        let mut scaled_down = false;
        for rs in old.iter_mut().filter(|rs| rs_replicas(rs) > 0) {
            let (scaled, updated) = self.scale_and_record(rs, 0).await?;
            scaled_down |= scaled;
            *rs = updated;
        }
        if scaled_down {
            return self.sync_rollout_status(new_rs.as_ref(), &old).await;
        }
        if self.old_pods_running(&old).await? {
            return self.sync_rollout_status(new_rs.as_ref(), &old).await;
        }
        if new_rs.is_none() {
            (new_rs, old) = self.all_sets_and_sync_revision(sets, true).await?;
        }
        if let Some(rs) = new_rs.as_mut() {
            *rs = self.scale_and_record(rs, desired(&self.d)).await?.1;
        }
        let status = self.d.status.clone().unwrap_or_default();
        if progress::complete(&self.d, &status) {
            self.cleanup(&old).await?;
        }
        self.sync_rollout_status(new_rs.as_ref(), &old).await
    }

    /// Lists the Deployment's pods from the API (not a cache: Recreate must not start early).
    async fn old_pods_running(&self, old: &[ReplicaSet]) -> Result<bool, Error> {
        if status_sum(&old.iter().collect::<Vec<_>>(), actual) > 0 {
            return Ok(true);
        }
        let Some(selector) = self.d.spec.as_ref().map(|s| &s.selector) else { return Ok(false) };
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &self.ns);
        let pods = api.list(&ListParams::default().labels(&to_query(selector))).await?;
        Ok(old_pods_running(old, &pods.items))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::ReplicaSetStatus;
    use k8s_openapi::api::core::v1::PodStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

    fn pod(owner: &str, phase: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                owner_references: Some(vec![OwnerReference {
                    uid: owner.into(),
                    controller: Some(true),
                    kind: "ReplicaSet".into(),
                    ..Default::default()
                }]),
                ..Default::default()
            },
            spec: None,
            status: Some(PodStatus { phase: Some(phase.into()), ..Default::default() }),
        }
    }

    #[test]
    fn terminal_or_foreign_pods_do_not_block() {
        let old = ReplicaSet {
            metadata: ObjectMeta { uid: Some("old".into()), ..Default::default() },
            status: Some(ReplicaSetStatus { replicas: 0, ..Default::default() }),
            ..Default::default()
        };
        assert!(!old_pods_running(std::slice::from_ref(&old), &[pod("old", "Succeeded"), pod("new", "Running")]));
        assert!(old_pods_running(std::slice::from_ref(&old), &[pod("old", "Running")]));
        assert!(old_pods_running(std::slice::from_ref(&old), &[pod("old", "Pending")]));
    }
}
