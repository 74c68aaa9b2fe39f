//! One sync of one Deployment (upstream's `syncDeployment` and `sync.go`): claiming ReplicaSets, finding or
//! creating the new one and keeping revisions, scaling (proportionally across ReplicaSets while paused or on a
//! `spec.replicas` change), cleaning up history, and writing the status.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use super::Context;
use super::progress::{self, FAILED_RS_CREATE, FOUND_NEW_RS, NEW_RS_CREATED, PAUSED, PROGRESSING, RESUMED, TIMED_OUT};
use super::util::{self, desired, max_surge, rs_replicas};
use crate::error::{Error, is_already_exists, is_not_found};
use crate::hash::compute_hash;
use crate::labels::{POD_TEMPLATE_HASH, matches, selects_everything, with_label};
use crate::ownership::{Claim, adopt_patch, controller_of, controller_ref, decide, release_patch};

/// The state of one sync: the Deployment as it is being changed, and its APIs.
pub(crate) struct Sync<'a> {
    pub(super) ctx: &'a Context,
    pub(super) d: Deployment,
    pub(super) ns: String,
    pub(super) name: String,
    pub(super) rs_api: Api<ReplicaSet>,
    d_api: Api<Deployment>,
    pub(super) reference: ObjectReference,
}

/// The new ReplicaSet (if any) and the old ones.
pub(crate) type Sets = (Option<ReplicaSet>, Vec<ReplicaSet>);

/// The new ReplicaSet followed by the old ones, as upstream's `allRSs`.
pub(crate) fn all<'s>(new_rs: Option<&'s ReplicaSet>, old: &'s [ReplicaSet]) -> Vec<&'s ReplicaSet> {
    old.iter().chain(new_rs).collect()
}

impl<'a> Sync<'a> {
    pub(crate) fn new(ctx: &'a Context, d: Deployment) -> Result<Self, Error> {
        let ns = d.namespace().ok_or(Error::Unnamed("Deployment"))?;
        let name = d.name_any();
        let reference = d.object_ref(&());
        Ok(Self {
            rs_api: Api::namespaced(ctx.client.clone(), &ns),
            d_api: Api::namespaced(ctx.client.clone(), &ns),
            ctx,
            d,
            ns,
            name,
            reference,
        })
    }

    /// Upstream's `syncDeployment`.
    pub(crate) async fn run(mut self) -> Result<Action, Error> {
        let selector = self.d.spec.as_ref().map(|s| s.selector.clone()).unwrap_or_default();
        if selects_everything(&selector) {
            let note = "This deployment is selecting all pods. A non-empty selector is required.".to_string();
            self.ctx.events.warning(&self.reference, "SelectingAll", note).await;
            let status = self.d.status.get_or_insert_with(Default::default);
            if status.observed_generation < self.d.metadata.generation {
                status.observed_generation = self.d.metadata.generation;
                self.update_status().await?;
            }
            return Ok(Action::await_change());
        }
        let sets = self.claim_replica_sets().await?;
        if self.d.metadata.deletion_timestamp.is_some() {
            let (new_rs, old) = self.all_sets_and_sync_revision(&sets, false).await?;
            return self.sync_status(new_rs.as_ref(), &old).await;
        }
        self.check_paused_conditions().await?;
        let paused = self.d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
        if paused || self.is_scaling_event(&sets).await? {
            return self.sync(&sets, paused).await;
        }
        if util::is_recreate(&self.d) { self.rollout_recreate(&sets).await } else { self.rollout_rolling(&sets).await }
    }

    /// Upstream's `getReplicaSetsForDeployment`: the ReplicaSets of the namespace this Deployment controls
    /// after adopting orphans its selector matches and releasing those it no longer matches.
    async fn claim_replica_sets(&self) -> Result<Vec<ReplicaSet>, Error> {
        let uid = self.d.metadata.uid.clone().unwrap_or_default();
        let deleting = self.d.metadata.deletion_timestamp.is_some();
        let selector = self.d.spec.as_ref().map(|s| &s.selector);
        let mut owned = Vec::new();
        let mut rechecked = false;
        for rs in self.ctx.sets.state().into_iter().filter(|rs| rs.namespace().as_deref() == Some(self.ns.as_str())) {
            let selected = matches(selector, rs.metadata.labels.as_ref());
            let patch = match decide(&uid, deleting, &rs.metadata, selected) {
                Claim::Keep => {
                    owned.push(rs.as_ref().clone());
                    continue;
                }
                Claim::Ignore => continue,
                Claim::Adopt => {
                    if !rechecked {
                        let fresh = self.d_api.get(&self.name).await?;
                        if fresh.metadata.uid != self.d.metadata.uid || fresh.metadata.deletion_timestamp.is_some() {
                            return Err(Error::Precondition(format!("{}/{} is being deleted", self.ns, self.name)));
                        }
                        rechecked = true;
                    }
                    adopt_patch(&rs.metadata, controller_ref("apps/v1", "Deployment", &self.d.metadata))
                }
                Claim::Release => release_patch(&rs.metadata, &uid),
            };
            match self.rs_api.patch(&rs.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await {
                Ok(updated) if selected => owned.push(updated),
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(Error::Api(e)),
            }
        }
        Ok(owned)
    }

    /// Upstream's `checkPausedConditions`: `Progressing` Unknown while paused, and on resume.
    async fn check_paused_conditions(&mut self) -> Result<(), Error> {
        if progress::progress_deadline(&self.d).is_none() {
            return Ok(());
        }
        let current = progress::get_condition(self.d.status.as_ref(), PROGRESSING);
        if current.is_some_and(|c| c.reason.as_deref() == Some(TIMED_OUT)) {
            return Ok(());
        }
        let paused_exists = current.is_some_and(|c| c.reason.as_deref() == Some(PAUSED));
        let paused = self.d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
        let now = Timestamp::now();
        let c = match (paused, paused_exists) {
            (true, false) => progress::condition(PROGRESSING, "Unknown", PAUSED, "Deployment is paused".into(), now),
            (false, true) => progress::condition(PROGRESSING, "Unknown", RESUMED, "Deployment is resumed".into(), now),
            _ => return Ok(()),
        };
        progress::set_condition(self.d.status.get_or_insert_with(Default::default), c);
        self.update_status().await
    }

    /// Upstream's `isScalingEvent`: an active ReplicaSet was sized for another `spec.replicas`.
    async fn is_scaling_event(&mut self, sets: &[ReplicaSet]) -> Result<bool, Error> {
        let (new_rs, old) = self.all_sets_and_sync_revision(sets, false).await?;
        let want = desired(&self.d);
        let all = all(new_rs.as_ref(), &old);
        Ok(all
            .iter()
            .filter(|rs| rs_replicas(rs) > 0)
            .any(|rs| util::desired_annotation(rs).is_some_and(|d| d != want)))
    }

    /// Upstream's `sync`: scaling and cleanup only (paused Deployments and scaling events).
    async fn sync(&mut self, sets: &[ReplicaSet], paused: bool) -> Result<Action, Error> {
        let (mut new_rs, mut old) = self.all_sets_and_sync_revision(sets, false).await?;
        self.scale(&mut new_rs, &mut old).await?;
        if paused {
            self.cleanup(&old).await?;
        }
        self.sync_status(new_rs.as_ref(), &old).await
    }

    /// Upstream's `getAllReplicaSetsAndSyncRevision`.
    pub(super) async fn all_sets_and_sync_revision(
        &mut self,
        sets: &[ReplicaSet],
        create: bool,
    ) -> Result<Sets, Error> {
        let found = util::find_new(&self.d, sets);
        let old: Vec<ReplicaSet> =
            sets.iter().enumerate().filter(|(i, _)| Some(*i) != found).map(|(_, rs)| rs.clone()).collect();
        let new_rs = self.new_replica_set(found.map(|i| &sets[i]), &old, create).await?;
        Ok((new_rs, old))
    }

    /// Upstream's `getNewReplicaSet`: the existing new ReplicaSet with its revision and annotations brought up
    /// to date, or (when `create`) a new one named by the template hash.
    async fn new_replica_set(
        &mut self,
        existing: Option<&ReplicaSet>,
        old: &[ReplicaSet],
        create: bool,
    ) -> Result<Option<ReplicaSet>, Error> {
        let new_revision = old.iter().map(util::revision).max().unwrap_or(0) + 1;
        let has_deadline = progress::progress_deadline(&self.d).is_some();
        let min_ready = self.d.spec.as_ref().and_then(|s| s.min_ready_seconds);
        if let Some(existing) = existing {
            let mut copy = existing.clone();
            let annotated = util::set_new_rs_annotations(&self.d, &mut copy, new_revision, true);
            let spec = copy.spec.get_or_insert_with(Default::default);
            if annotated || spec.min_ready_seconds.unwrap_or(0) != min_ready.unwrap_or(0) {
                spec.min_ready_seconds = min_ready;
                return Ok(Some(self.rs_api.replace(&copy.name_any(), &PostParams::default(), &copy).await?));
            }
            let revision = copy.annotations().get(util::REVISION).cloned().unwrap_or_default();
            let mut needs_update = util::set_deployment_revision(&mut self.d, &revision);
            if has_deadline && progress::get_condition(self.d.status.as_ref(), PROGRESSING).is_none() {
                let message = format!("Found new replica set \"{}\"", copy.name_any());
                let c = progress::condition(PROGRESSING, "True", FOUND_NEW_RS, message, Timestamp::now());
                progress::set_condition(self.d.status.get_or_insert_with(Default::default), c);
                needs_update = true;
            }
            if needs_update {
                self.update_status().await?;
            }
            return Ok(Some(copy));
        }
        if !create {
            return Ok(None);
        }
        let spec = self.d.spec.clone().unwrap_or_default();
        let collisions = self.d.status.as_ref().and_then(|s| s.collision_count);
        let hash = compute_hash(&spec.template, collisions);
        let mut template = spec.template.clone();
        let meta = template.metadata.get_or_insert_with(Default::default);
        meta.labels.get_or_insert_with(BTreeMap::new).insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let labels = meta.labels.clone();
        let mut rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(format!("{}-{hash}", self.name)),
                namespace: Some(self.ns.clone()),
                owner_references: Some(vec![controller_ref("apps/v1", "Deployment", &self.d.metadata)]),
                labels,
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: min_ready,
                selector: with_label(&spec.selector, POD_TEMPLATE_HASH, &hash),
                template: Some(template),
            }),
            status: None,
        };
        let replicas = util::new_rs_new_replicas(&self.d, &all(Some(&rs), old), &rs)?;
        if let Some(s) = rs.spec.as_mut() {
            s.replicas = Some(replicas);
        }
        util::set_new_rs_annotations(&self.d, &mut rs, new_revision, false);
        let rs_name = rs.name_any();
        let (created, already_existed) = match self.rs_api.create(&PostParams::default(), &rs).await {
            Ok(created) => (created, false),
            Err(e) if is_already_exists(&e) => {
                let found = self.rs_api.get(&rs_name).await?;
                let ours = controller_of(&found.metadata).is_some_and(|r| Some(&r.uid) == self.d.metadata.uid.as_ref());
                let same = found
                    .spec
                    .as_ref()
                    .and_then(|s| s.template.as_ref())
                    .is_some_and(|t| util::equal_ignore_hash(t, &spec.template));
                if !(ours && same) {
                    // A hash collision: bump collisionCount so that the next sync picks another name.
                    let status = self.d.status.get_or_insert_with(Default::default);
                    status.collision_count = Some(status.collision_count.unwrap_or(0) + 1);
                    self.update_status().await?;
                    return Err(Error::Api(e));
                }
                (found, true)
            }
            Err(e) => {
                let message = format!("Failed to create new replica set \"{rs_name}\": {e}");
                if has_deadline {
                    let c =
                        progress::condition(PROGRESSING, "False", FAILED_RS_CREATE, message.clone(), Timestamp::now());
                    progress::set_condition(self.d.status.get_or_insert_with(Default::default), c);
                    let _ = self.update_status().await;
                }
                self.ctx.events.warning(&self.reference, FAILED_RS_CREATE, message).await;
                return Err(Error::Api(e));
            }
        };
        if !already_existed && replicas > 0 {
            let note = format!("Scaled up replica set {rs_name} from 0 to {replicas}");
            self.ctx.events.normal(&self.reference, "ScalingReplicaSet", note).await;
        }
        let mut needs_update = util::set_deployment_revision(&mut self.d, &new_revision.to_string());
        if !already_existed && has_deadline {
            let message = format!("Created new replica set \"{rs_name}\"");
            let c = progress::condition(PROGRESSING, "True", NEW_RS_CREATED, message, Timestamp::now());
            progress::set_condition(self.d.status.get_or_insert_with(Default::default), c);
            needs_update = true;
        }
        if needs_update {
            self.update_status().await?;
        }
        Ok(Some(created))
    }

    /// Upstream's `scaleReplicaSetAndRecordEvent`.
    pub(super) async fn scale_and_record(&self, rs: &ReplicaSet, replicas: i32) -> Result<(bool, ReplicaSet), Error> {
        if rs_replicas(rs) == replicas {
            return Ok((false, rs.clone()));
        }
        self.scale_replica_set(rs, replicas).await
    }

    /// Upstream's `scaleReplicaSet`: writes the size and the replicas annotations; an event when the size changed.
    pub(super) async fn scale_replica_set(&self, rs: &ReplicaSet, replicas: i32) -> Result<(bool, ReplicaSet), Error> {
        let want = desired(&self.d);
        let max = want + max_surge(&self.d);
        let resize = rs_replicas(rs) != replicas;
        if !resize && !util::replicas_annotations_need_update(rs, want, max) {
            return Ok((false, rs.clone()));
        }
        let old = rs_replicas(rs);
        let mut copy = rs.clone();
        copy.spec.get_or_insert_with(Default::default).replicas = Some(replicas);
        util::set_replicas_annotations(&mut copy, want, max);
        let updated = self.rs_api.replace(&copy.name_any(), &PostParams::default(), &copy).await?;
        if resize {
            let direction = if old < replicas { "up" } else { "down" };
            let note = format!("Scaled {direction} replica set {} from {old} to {replicas}", rs.name_any());
            self.ctx.events.normal(&self.reference, "ScalingReplicaSet", note).await;
        }
        Ok((resize, updated))
    }

    /// Upstream's `scale`: one active ReplicaSet takes all replicas; a saturated new one means old ones go to
    /// zero; otherwise a rolling Deployment's change in size is shared out in proportion.
    async fn scale(&self, new_rs: &mut Option<ReplicaSet>, old: &mut [ReplicaSet]) -> Result<(), Error> {
        let want = desired(&self.d);
        if let Some(target) = active_or_latest(new_rs.as_ref(), old) {
            if rs_replicas(&target) != want {
                let (_, updated) = self.scale_and_record(&target, want).await?;
                replace_in(new_rs, old, updated);
            }
            return Ok(());
        }
        if util::is_saturated(&self.d, new_rs.as_ref()) {
            for rs in old.iter_mut().filter(|rs| rs_replicas(rs) > 0) {
                *rs = self.scale_and_record(rs, 0).await?.1;
            }
            return Ok(());
        }
        if util::is_recreate(&self.d) {
            return Ok(());
        }
        let mut sets: Vec<ReplicaSet> =
            all(new_rs.as_ref(), old).into_iter().filter(|rs| rs_replicas(rs) > 0).cloned().collect();
        let allowed = if want > 0 { want + max_surge(&self.d) } else { 0 };
        let to_add = allowed - util::spec_sum(&sets.iter().collect::<Vec<_>>());
        let created = |rs: &ReplicaSet| rs.metadata.creation_timestamp.as_ref().map(|t| t.0);
        if to_add > 0 {
            // Largest first; among equals, newest first.
            sets.sort_by(|a, b| rs_replicas(b).cmp(&rs_replicas(a)).then_with(|| created(b).cmp(&created(a))));
        } else if to_add < 0 {
            // Largest first; among equals, oldest first.
            sets.sort_by(|a, b| rs_replicas(b).cmp(&rs_replicas(a)).then_with(|| created(a).cmp(&created(b))));
        }
        let mut added = 0;
        let mut sizes = Vec::with_capacity(sets.len());
        for rs in &sets {
            let share = util::proportion(rs, &self.d, to_add, added);
            sizes.push(rs_replicas(rs) + share);
            added += share;
        }
        if let Some(first) = sizes.first_mut() {
            *first = (*first + to_add - added).max(0);
        }
        for (rs, size) in sets.iter().zip(sizes) {
            let (_, updated) = self.scale_replica_set(rs, size).await?;
            replace_in(new_rs, old, updated);
        }
        Ok(())
    }

    /// Upstream's `cleanupDeployment`: deletes the oldest idle ReplicaSets beyond `revisionHistoryLimit`.
    pub(super) async fn cleanup(&self, old: &[ReplicaSet]) -> Result<(), Error> {
        let Some(limit) = self.d.spec.as_ref().and_then(|s| s.revision_history_limit).filter(|l| *l != i32::MAX) else {
            return Ok(());
        };
        let mut cleanable: Vec<ReplicaSet> =
            old.iter().filter(|rs| rs.metadata.deletion_timestamp.is_none()).cloned().collect();
        let excess = i64::try_from(cleanable.len()).unwrap_or(i64::MAX) - i64::from(limit);
        if excess <= 0 {
            return Ok(());
        }
        util::sort_by_revision(&mut cleanable);
        for rs in cleanable.iter().take(usize::try_from(excess).unwrap_or(0)) {
            let status = rs.status.clone().unwrap_or_default();
            let observed = status.observed_generation.unwrap_or(0) >= rs.metadata.generation.unwrap_or(0);
            if status.replicas != 0 || rs_replicas(rs) != 0 || !observed {
                continue;
            }
            match self.rs_api.delete(&rs.name_any(), &DeleteParams::default()).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(Error::Api(e)),
            }
        }
        Ok(())
    }

    /// Upstream's `syncDeploymentStatus`: writes the calculated status if it changed.
    pub(super) async fn sync_status(
        &mut self,
        new_rs: Option<&ReplicaSet>,
        old: &[ReplicaSet],
    ) -> Result<Action, Error> {
        let status = progress::calculate(&all(new_rs, old), new_rs, &self.d, Timestamp::now());
        self.write_status_if_changed(status).await?;
        Ok(Action::await_change())
    }

    /// Upstream's `syncRolloutStatus`: status, `Progressing` estimated, and a requeue to notice a deadline.
    pub(super) async fn sync_rollout_status(
        &mut self,
        new_rs: Option<&ReplicaSet>,
        old: &[ReplicaSet],
    ) -> Result<Action, Error> {
        let now = Timestamp::now();
        let status = progress::rollout_status(&all(new_rs, old), new_rs, &self.d, now);
        let requeue = progress::requeue_after(&self.d, &status, now);
        self.write_status_if_changed(status).await?;
        Ok(requeue.map_or_else(Action::await_change, Action::requeue))
    }

    async fn write_status_if_changed(
        &mut self,
        status: k8s_openapi::api::apps::v1::DeploymentStatus,
    ) -> Result<(), Error> {
        if progress::same_status(self.d.status.as_ref(), &status) {
            return Ok(());
        }
        self.d.status = Some(status);
        self.update_status().await
    }

    /// Writes the Deployment's status (and revision annotation) with its resourceVersion.
    pub(super) async fn update_status(&mut self) -> Result<(), Error> {
        self.d = self.d_api.replace_status(&self.name, &PostParams::default(), &self.d).await?;
        Ok(())
    }
}

/// Upstream's `FindActiveOrLatest`: the only active ReplicaSet, or the newest when none is active.
fn active_or_latest(new_rs: Option<&ReplicaSet>, old: &[ReplicaSet]) -> Option<ReplicaSet> {
    let mut sorted = old.to_vec();
    util::sort_by_creation(&mut sorted);
    sorted.reverse();
    let actives: Vec<&ReplicaSet> = sorted.iter().chain(new_rs).filter(|rs| rs_replicas(rs) > 0).collect();
    match actives.len() {
        0 => new_rs.cloned().or_else(|| sorted.first().cloned()),
        1 => actives.first().map(|rs| (*rs).clone()),
        _ => None,
    }
}

/// Puts an updated ReplicaSet back in place of its older copy.
pub(super) fn replace_in(new_rs: &mut Option<ReplicaSet>, old: &mut [ReplicaSet], updated: ReplicaSet) {
    let same = |rs: &ReplicaSet| rs.metadata.uid == updated.metadata.uid;
    if let Some(rs) = new_rs.as_mut().filter(|rs| same(rs)) {
        *rs = updated;
    } else if let Some(rs) = old.iter_mut().find(|rs| same(rs)) {
        *rs = updated;
    }
}
