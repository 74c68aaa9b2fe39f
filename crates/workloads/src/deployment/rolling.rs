//! The RollingUpdate strategy (upstream's `rolling.go`): grow the new ReplicaSet up to `maxSurge` above the
//! desired count, shrink old ones (unhealthy replicas first) while at least `replicas - maxUnavailable` pods
//! stay available, and clean up history once the rollout is complete.

use k8s_openapi::api::apps::v1::ReplicaSet;
use kube::runtime::controller::Action;

use super::progress;
use super::sync::{Sync, all, replace_in};
use super::util::{self, available, desired, max_unavailable, rs_replicas, spec_sum, status_sum};
use crate::error::Error;

/// Upstream's `maxScaledDown` for a rollout: how many old replicas may go now (old unhealthy ones included).
pub(crate) fn max_scaled_down(all_replicas: i32, desired: i32, max_unavailable: i32, new_rs: &ReplicaSet) -> i32 {
    let min_available = desired - max_unavailable;
    let new_unavailable = rs_replicas(new_rs) - new_rs.status.as_ref().map_or(0, available);
    all_replicas - min_available - new_unavailable
}

impl Sync<'_> {
    /// Upstream's `rolloutRolling`.
    pub(super) async fn rollout_rolling(&mut self, sets: &[ReplicaSet]) -> Result<Action, Error> {
        let (mut new_rs, mut old) = self.all_sets_and_sync_revision(sets, true).await?;
        let Some(mut new) = new_rs.take() else { return self.sync_rollout_status(None, &old).await };
        if self.reconcile_new(&mut new, &old).await? {
            return self.sync_rollout_status(Some(&new), &old).await;
        }
        if self.reconcile_old(&new, &mut old).await? {
            return self.sync_rollout_status(Some(&new), &old).await;
        }
        let status = self.d.status.clone().unwrap_or_default();
        if progress::complete(&self.d, &status) {
            self.cleanup(&old).await?;
        }
        self.sync_rollout_status(Some(&new), &old).await
    }

    /// Upstream's `reconcileNewReplicaSet`: true when the new ReplicaSet was scaled.
    async fn reconcile_new(&self, new: &mut ReplicaSet, old: &[ReplicaSet]) -> Result<bool, Error> {
        let want = desired(&self.d);
        let target = if rs_replicas(new) > want {
            want
        } else if rs_replicas(new) == want {
            return Ok(false);
        } else {
            util::new_rs_new_replicas(&self.d, &all(Some(new), old), new)?
        };
        let (scaled, updated) = self.scale_and_record(new, target).await?;
        *new = updated;
        Ok(scaled)
    }

    /// Upstream's `reconcileOldReplicaSets`: true when an old ReplicaSet was scaled down.
    async fn reconcile_old(&self, new: &ReplicaSet, old: &mut [ReplicaSet]) -> Result<bool, Error> {
        let old_count = spec_sum(&old.iter().filter(|rs| rs_replicas(rs) > 0).collect::<Vec<_>>());
        if old_count == 0 {
            return Ok(false);
        }
        let all_count = spec_sum(&all(Some(new), old));
        let max_down = max_scaled_down(all_count, desired(&self.d), max_unavailable(&self.d), new);
        if max_down <= 0 {
            return Ok(false);
        }
        let cleaned = self.cleanup_unhealthy(old, max_down).await?;
        let scaled = self.scale_down_old(new, old).await?;
        Ok(cleaned + scaled > 0)
    }

    /// Upstream's `cleanupUnhealthyReplicas`: old replicas that are not available go first, oldest set first.
    async fn cleanup_unhealthy(&self, old: &mut [ReplicaSet], max_cleanup: i32) -> Result<i32, Error> {
        util::sort_by_creation(old);
        let mut total = 0;
        for slot in old.iter_mut() {
            if total >= max_cleanup {
                break;
            }
            let rs = &*slot;
            let replicas = rs_replicas(rs);
            let healthy = rs.status.as_ref().map_or(0, available);
            if replicas == 0 || replicas == healthy {
                continue;
            }
            let down = (max_cleanup - total).min(replicas - healthy);
            let (_, updated) = self.scale_and_record(rs, replicas - down).await?;
            *slot = updated;
            total += down;
        }
        Ok(total)
    }

    /// Upstream's `scaleDownOldReplicaSetsForRollingUpdate`: only what keeps `replicas - maxUnavailable`
    /// pods available.
    async fn scale_down_old(&self, new: &ReplicaSet, old: &mut [ReplicaSet]) -> Result<i32, Error> {
        let min_available = desired(&self.d) - max_unavailable(&self.d);
        let available_count = status_sum(&all(Some(new), old), available);
        if available_count <= min_available {
            return Ok(0);
        }
        util::sort_by_creation(old);
        let budget = available_count - min_available;
        let mut total = 0;
        let mut updates = Vec::new();
        for rs in old.iter() {
            if total >= budget {
                break;
            }
            if rs_replicas(rs) == 0 {
                continue;
            }
            let down = rs_replicas(rs).min(budget - total);
            let (_, updated) = self.scale_and_record(rs, rs_replicas(rs) - down).await?;
            updates.push(updated);
            total += down;
        }
        let mut none = None;
        for updated in updates {
            replace_in(&mut none, old, updated);
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{ReplicaSetSpec, ReplicaSetStatus};

    #[test]
    fn unavailable_new_pods_hold_back_scale_down() {
        let new = |replicas, available| ReplicaSet {
            spec: Some(ReplicaSetSpec { replicas: Some(replicas), ..Default::default() }),
            status: Some(ReplicaSetStatus { replicas, available_replicas: Some(available), ..Default::default() }),
            ..Default::default()
        };
        // 10 replicas, maxUnavailable 2, 13 pods in all, 5 new pods none available: nothing may go.
        assert_eq!(max_scaled_down(13, 10, 2, &new(5, 0)), 0);
        // Once the 5 are available, 5 old may go.
        assert_eq!(max_scaled_down(13, 10, 2, &new(5, 5)), 5);
    }
}
