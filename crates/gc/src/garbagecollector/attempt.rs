//! The collector's I/O: upstream's `attemptToDeleteItem`, `processDeletingDependentsItem` and
//! `orphanDependents`. Every decision is taken on live reads (the graph only says what to look at), and every write
//! is pinned to the resourceVersion read (merge patch) or the uid read (delete precondition).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, PropagationPolicy};
use serde_json::json;

use super::Collector;
use crate::Error;
use crate::graph::{FOREGROUND, Identity, Node, ORPHAN, Work};
use crate::plan::{self, Decision, OwnerState, Propagation};

/// Bound on the absent-owner cache; past it the cache starts afresh.
const ABSENT_CACHE: usize = 10_000;

impl Collector {
    /// Checks one object: deletes it when no owner of it is left, drops references to owners that are gone, or
    /// (if it is deleting its dependents) finishes its foreground deletion once they are gone.
    pub(super) async fn attempt_to_delete(&self, uid: &str) -> Result<(), Error> {
        let Some(node) = self.graph().node(uid).cloned() else { return Ok(()) };
        if node.deleting && !node.deleting_dependents() {
            return Ok(());
        }
        let Some(latest) = self.live(&node.identity).await? else {
            // Gone already: act as its deletion event will (upstream's virtual delete event).
            let work = self.graph().forget(uid);
            self.enqueue(work);
            return Ok(());
        };
        let Some(latest) = Node::from_object(node.identity.resource, &latest) else { return Ok(()) };
        if latest.deleting_dependents() {
            return self.process_deleting_dependents(&latest).await;
        }
        if latest.deleting || latest.owners.is_empty() {
            return Ok(());
        }
        let mut owners = Vec::with_capacity(latest.owners.len());
        for owner in &latest.owners {
            let Some(state) = self.owner_state(&latest.identity, owner).await? else { return Ok(()) };
            owners.push((owner.clone(), state));
        }
        let (has_dependents, cycle) = {
            let graph = self.graph();
            let deps = graph.dependents(uid);
            (!deps.is_empty(), deps.iter().any(|d| d.deleting_dependents()))
        };
        let decision = plan::decide(&owners, has_dependents, cycle, &latest.finalizers);
        tracing::debug!(name = %latest.identity.name, ?decision, "garbage collector decided");
        match decision {
            Decision::Keep => Ok(()),
            Decision::RemoveOwners(uids) => {
                self.set_owners(&latest, plan::without_owners(&latest.owners, &uids), rv(&latest)).await
            }
            Decision::Delete { policy, unblock } => {
                if !unblock.is_empty() {
                    self.set_owners(&latest, plan::unblocked(&latest.owners, &unblock), rv(&latest)).await?;
                }
                self.delete(&latest.identity, policy).await
            }
        }
    }

    /// An owner deleted in the foreground: done (finalizer removed) once no dependent blocks it; otherwise the
    /// blocking dependents are checked (they are deleted since this owner now waits for them).
    async fn process_deleting_dependents(&self, owner: &Node) -> Result<(), Error> {
        let blocking: Vec<Node> = self.graph().blocking_dependents(&owner.identity.uid).into_iter().cloned().collect();
        if blocking.is_empty() {
            return self.remove_finalizer(&owner.identity, FOREGROUND).await;
        }
        for dep in blocking.iter().filter(|d| !d.deleting_dependents()) {
            self.queue.add(Work::Delete(dep.identity.uid.clone()));
        }
        Ok(())
    }

    /// An owner deleted with `Orphan`: its uid leaves every dependent's ownerReferences, then its `orphan`
    /// finalizer goes (and with it, the owner).
    pub(super) async fn orphan_dependents(&self, uid: &str) -> Result<(), Error> {
        let (owner, dependents) = {
            let graph = self.graph();
            let Some(owner) = graph.node(uid).cloned() else { return Ok(()) };
            let deps: Vec<Identity> = graph.dependents(uid).into_iter().map(|d| d.identity.clone()).collect();
            (owner, deps)
        };
        if !owner.orphaning() {
            return Ok(());
        }
        for dep in dependents {
            let Some(obj) = self.live(&dep).await? else { continue };
            let Some(latest) = Node::from_object(dep.resource, &obj) else { continue };
            if latest.owners.iter().any(|o| o.uid == uid) {
                let left = plan::without_owners(&latest.owners, &[uid.to_string()]);
                match self.set_owners(&latest, left, rv(&latest)).await {
                    Err(Error::Api { source: kube::Error::Api(s), .. }) if s.code == 404 => {}
                    other => other?,
                }
            }
        }
        self.remove_finalizer(&owner.identity, ORPHAN).await
    }

    /// The object as stored now, if it is still the one with this uid.
    async fn live(&self, id: &Identity) -> Result<Option<DynamicObject>, Error> {
        let Some(api) = self.api(id) else { return Ok(None) };
        let obj = api.get_opt(&id.name).await.map_err(|source| Error::api("get", id, source))?;
        Ok(obj.filter(|o| o.metadata.uid.as_deref() == Some(id.uid.as_str())))
    }

    /// Looks one owner up live (upstream's `isDangling`). `None`: the reference can never resolve (a
    /// cluster-scoped object naming a namespaced owner): an event says so and the object is left alone.
    async fn owner_state(&self, dependent: &Identity, owner: &OwnerReference) -> Result<Option<OwnerState>, Error> {
        if self.absent.lock().unwrap_or_else(std::sync::PoisonError::into_inner).contains(&owner.uid) {
            return Ok(Some(OwnerState::Dangling));
        }
        let Some((resource, r)) = self.catalog.for_kind(&owner.api_version, &owner.kind) else {
            let note = format!(
                "ownerRef [{}/{}, name: {}] names a kind the server does not serve",
                owner.api_version, owner.kind, owner.name
            );
            self.warn(dependent, "OwnerRefInvalidKind", note).await;
            return Err(Error::UnknownKind { api_version: owner.api_version.clone(), kind: owner.kind.clone() });
        };
        let namespace = match (r.namespaced, &dependent.namespace) {
            (true, Some(ns)) => Some(ns.clone()),
            (true, None) => {
                let note = format!(
                    "ownerRef [{}/{}, name: {}, uid: {}] is namespaced, which a cluster-scoped object cannot reference",
                    owner.api_version, owner.kind, owner.name, owner.uid
                );
                self.warn(dependent, "OwnerRefInvalidNamespace", note).await;
                return Ok(None);
            }
            (false, _) => None,
        };
        let id = Identity { resource, namespace, name: owner.name.clone(), uid: owner.uid.clone() };
        let Some(found) = self.live(&id).await? else {
            let mut absent = self.absent.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if absent.len() >= ABSENT_CACHE {
                absent.clear();
            }
            absent.insert(owner.uid.clone());
            return Ok(Some(OwnerState::Dangling));
        };
        let waiting = Node::from_object(resource, &found).is_some_and(|n| n.deleting_dependents());
        Ok(Some(if waiting { OwnerState::WaitingForDependents } else { OwnerState::Solid }))
    }

    /// Deletes with a uid precondition; an object already gone is fine.
    async fn delete(&self, id: &Identity, policy: Propagation) -> Result<(), Error> {
        let Some(api) = self.api(id) else { return Ok(()) };
        let params = DeleteParams {
            propagation_policy: Some(match policy {
                Propagation::Background => PropagationPolicy::Background,
                Propagation::Foreground => PropagationPolicy::Foreground,
                Propagation::Orphan => PropagationPolicy::Orphan,
            }),
            preconditions: Some(Preconditions { uid: Some(id.uid.clone()), resource_version: None }),
            ..DeleteParams::default()
        };
        tracing::info!(name = %id.name, namespace = ?id.namespace, ?policy, "deleting an object whose owners are gone");
        match api.delete(&id.name, &params).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(source) => Err(Error::api("delete", id, source)),
        }
    }

    async fn set_owners(&self, node: &Node, owners: Vec<OwnerReference>, rv: Option<String>) -> Result<(), Error> {
        let patch = json!({"metadata": {"resourceVersion": rv, "ownerReferences": owners}});
        self.merge_patch(&node.identity, patch).await
    }

    /// Removes one finalizer from the object (read, then a patch pinned to what was read).
    async fn remove_finalizer(&self, id: &Identity, finalizer: &str) -> Result<(), Error> {
        let Some(obj) = self.live(id).await? else { return Ok(()) };
        let finalizers = obj.metadata.finalizers.clone().unwrap_or_default();
        if !finalizers.iter().any(|f| f == finalizer) {
            return Ok(());
        }
        let left: Vec<&String> = finalizers.iter().filter(|f| *f != finalizer).collect();
        let patch = json!({"metadata": {"resourceVersion": obj.metadata.resource_version, "finalizers": left}});
        tracing::info!(name = %id.name, namespace = ?id.namespace, finalizer, "removing finalizer");
        match self.merge_patch(id, patch).await {
            Err(Error::Api { source: kube::Error::Api(s), .. }) if s.code == 404 => Ok(()),
            other => other,
        }
    }

    async fn merge_patch(&self, id: &Identity, patch: serde_json::Value) -> Result<(), Error> {
        let Some(api): Option<Api<DynamicObject>> = self.api(id) else { return Ok(()) };
        api.patch(&id.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(|_| ())
            .map_err(|source| Error::api("patch", id, source))
    }
}

fn rv(node: &Node) -> Option<String> {
    node.resource_version.clone()
}
