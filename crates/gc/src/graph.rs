//! The owner → dependents graph, keyed by uid, as upstream's `GraphBuilder` keeps it. Watch events go in through
//! [`Graph::observe`] and [`Graph::forget`]; what comes out is the work those changes call for (check a dependent
//! whose owner went away, orphan the dependents of an owner marked `orphan`, …). No I/O here.

use std::collections::{HashMap, HashSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::DynamicObject;

/// Finalizer that makes the garbage collector delete dependents before their owner (`Foreground`).
pub const FOREGROUND: &str = "foregroundDeletion";
/// Finalizer that makes the garbage collector release dependents before their owner goes (`Orphan`).
pub const ORPHAN: &str = "orphan";

/// Which object a node is: the catalog index of its resource, where it lives and its uid.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Identity {
    pub resource: usize,
    pub namespace: Option<String>,
    pub name: String,
    pub uid: String,
}

/// What the graph keeps of one object.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub identity: Identity,
    pub owners: Vec<OwnerReference>,
    /// `deletionTimestamp` is set.
    pub deleting: bool,
    pub finalizers: Vec<String>,
    pub resource_version: Option<String>,
}

impl Node {
    /// The node for a watched object; `None` when it has no uid or name (never the case for stored objects).
    pub fn from_object(resource: usize, obj: &DynamicObject) -> Option<Self> {
        let meta = &obj.metadata;
        Some(Self {
            identity: Identity {
                resource,
                namespace: meta.namespace.clone(),
                name: meta.name.clone()?,
                uid: meta.uid.clone()?,
            },
            owners: meta.owner_references.clone().unwrap_or_default(),
            deleting: meta.deletion_timestamp.is_some(),
            finalizers: meta.finalizers.clone().unwrap_or_default(),
            resource_version: meta.resource_version.clone(),
        })
    }

    fn has_finalizer(&self, f: &str) -> bool {
        self.finalizers.iter().any(|x| x == f)
    }

    /// Being deleted in the foreground: its dependents go first.
    pub fn deleting_dependents(&self) -> bool {
        self.deleting && self.has_finalizer(FOREGROUND)
    }

    /// Being deleted with its dependents orphaned.
    pub fn orphaning(&self) -> bool {
        self.deleting && self.has_finalizer(ORPHAN)
    }

    fn owner(&self, uid: &str) -> Option<&OwnerReference> {
        self.owners.iter().find(|o| o.uid == uid)
    }
}

/// Work for the collector's queue, by uid.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Work {
    /// Check the object: delete it if its owners are gone, or if it is deleting its dependents, see whether
    /// they are gone.
    Delete(String),
    /// Remove the object's uid from its dependents' ownerReferences, then its `orphan` finalizer.
    Orphan(String),
}

#[derive(Debug, Default)]
pub struct Graph {
    nodes: HashMap<String, Node>,
    /// Owner uid → uids of the objects that name it (whether or not the owner has been seen).
    dependents: HashMap<String, HashSet<String>>,
}

fn blocks(o: &OwnerReference) -> bool {
    o.block_owner_deletion == Some(true)
}

impl Graph {
    pub fn node(&self, uid: &str) -> Option<&Node> {
        self.nodes.get(uid)
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The observed objects that name `owner` in their ownerReferences.
    pub fn dependents(&self, owner: &str) -> Vec<&Node> {
        let Some(deps) = self.dependents.get(owner) else { return Vec::new() };
        let mut out: Vec<&Node> = deps.iter().filter_map(|d| self.nodes.get(d)).collect();
        out.sort_by(|a, b| a.identity.name.cmp(&b.identity.name));
        out
    }

    /// The dependents whose reference to `owner` has `blockOwnerDeletion: true`: a foreground deletion waits
    /// for these.
    pub fn blocking_dependents(&self, owner: &str) -> Vec<&Node> {
        self.dependents(owner).into_iter().filter(|d| d.owner(owner).is_some_and(blocks)).collect()
    }

    /// An object was added or changed.
    pub fn observe(&mut self, node: Node) -> Vec<Work> {
        let uid = node.identity.uid.clone();
        let old = self.nodes.remove(&uid);
        let mut work = Vec::new();
        let old_owners = old.as_ref().map(|o| o.owners.as_slice()).unwrap_or_default();
        for before in old_owners {
            let after = node.owner(&before.uid);
            if after.is_none()
                && let Some(deps) = self.dependents.get_mut(&before.uid)
            {
                deps.remove(&uid);
            }
            // A removed or unblocked reference may be what a foreground deletion waits for.
            let unblocked = after.is_none_or(|a| blocks(before) && !blocks(a));
            if unblocked && self.nodes.get(&before.uid).is_some_and(Node::deleting_dependents) {
                push(&mut work, Work::Delete(before.uid.clone()));
            }
        }
        for owner in &node.owners {
            let added = !old_owners.iter().any(|o| o.uid == owner.uid);
            if !added {
                continue;
            }
            self.dependents.entry(owner.uid.clone()).or_default().insert(uid.clone());
            // An owner never seen may be gone already (upstream's virtual node); one deleting its dependents
            // wants this one gone too.
            if self.nodes.get(&owner.uid).is_none_or(Node::deleting_dependents) {
                push(&mut work, Work::Delete(uid.clone()));
            }
        }
        let was = |f: fn(&Node) -> bool| old.as_ref().is_some_and(f);
        if node.orphaning() && !was(Node::orphaning) {
            push(&mut work, Work::Orphan(uid.clone()));
        }
        if node.deleting_dependents() && !was(Node::deleting_dependents) {
            push(&mut work, Work::Delete(uid.clone()));
            for dep in self.dependents(&uid) {
                push(&mut work, Work::Delete(dep.identity.uid.clone()));
            }
        }
        self.nodes.insert(uid, node);
        work
    }

    /// An object is gone: its dependents must be checked, and owners waiting for it may now finish.
    pub fn forget(&mut self, uid: &str) -> Vec<Work> {
        let Some(node) = self.nodes.remove(uid) else { return Vec::new() };
        let mut work = Vec::new();
        for dep in self.dependents(uid) {
            push(&mut work, Work::Delete(dep.identity.uid.clone()));
        }
        if self.dependents.get(uid).is_some_and(HashSet::is_empty) {
            self.dependents.remove(uid);
        }
        for owner in &node.owners {
            if let Some(deps) = self.dependents.get_mut(&owner.uid) {
                deps.remove(uid);
                if deps.is_empty() && !self.nodes.contains_key(&owner.uid) {
                    self.dependents.remove(&owner.uid);
                }
            }
            if self.nodes.get(&owner.uid).is_some_and(Node::deleting_dependents) {
                push(&mut work, Work::Delete(owner.uid.clone()));
            }
        }
        work
    }

    /// After a (re)list of one resource: forgets the nodes of that resource the list no longer holds (deletions
    /// missed while the watch was down).
    pub fn forget_unlisted(&mut self, resource: usize, listed: &HashSet<String>) -> Vec<Work> {
        let stale: Vec<String> = self
            .nodes
            .values()
            .filter(|n| n.identity.resource == resource && !listed.contains(&n.identity.uid))
            .map(|n| n.identity.uid.clone())
            .collect();
        stale.iter().flat_map(|uid| self.forget(uid)).collect()
    }
}

fn push(work: &mut Vec<Work>, w: Work) {
    if !work.contains(&w) {
        work.push(w);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn owner_ref(kind: &str, name: &str, uid: &str, block: bool) -> OwnerReference {
        OwnerReference {
            api_version: if kind == "Pod" { "v1".into() } else { "apps/v1".into() },
            kind: kind.into(),
            name: name.into(),
            uid: uid.into(),
            controller: Some(true),
            block_owner_deletion: Some(block),
        }
    }

    pub fn node(resource: usize, name: &str, owners: Vec<OwnerReference>) -> Node {
        Node {
            identity: Identity { resource, namespace: Some("default".into()), name: name.into(), uid: uid(name) },
            owners,
            deleting: false,
            finalizers: Vec::new(),
            resource_version: None,
        }
    }

    pub fn uid(name: &str) -> String {
        format!("uid-{name}")
    }

    fn del(name: &str) -> Work {
        Work::Delete(uid(name))
    }

    /// deploy → rs → pod, all observed.
    fn chain() -> Graph {
        let mut g = Graph::default();
        g.observe(node(2, "deploy", vec![]));
        g.observe(node(1, "rs", vec![owner_ref("Deployment", "deploy", &uid("deploy"), true)]));
        g.observe(node(0, "pod", vec![owner_ref("ReplicaSet", "rs", &uid("rs"), true)]));
        g
    }

    #[test]
    fn a_dependent_whose_owner_was_never_seen_is_checked() {
        let mut g = Graph::default();
        let work = g.observe(node(0, "pod", vec![owner_ref("ReplicaSet", "rs", "missing", true)]));
        assert_eq!(work, [del("pod")]);
        // Seen again unchanged: nothing new.
        assert!(g.observe(node(0, "pod", vec![owner_ref("ReplicaSet", "rs", "missing", true)])).is_empty());
    }

    #[test]
    fn deleting_an_owner_checks_its_dependents_only() {
        let mut g = chain();
        assert_eq!(g.forget(&uid("deploy")), [del("rs")]);
        assert_eq!(g.dependents(&uid("rs")).len(), 1);
        assert!(g.forget("nope").is_empty());
    }

    #[test]
    fn foreground_marks_check_the_owner_and_every_dependent() {
        let mut g = chain();
        let mut d = node(2, "deploy", vec![]);
        d.deleting = true;
        d.finalizers = vec![FOREGROUND.into()];
        assert_eq!(g.observe(d.clone()), [del("deploy"), del("rs")]);
        assert_eq!(g.blocking_dependents(&uid("deploy")).len(), 1);
        // The dependent going away wakes the waiting owner.
        assert_eq!(g.forget(&uid("rs")), [del("pod"), del("deploy")]);
        assert!(g.blocking_dependents(&uid("deploy")).is_empty());
    }

    #[test]
    fn unblocking_a_reference_wakes_a_waiting_owner() {
        let mut g = chain();
        let mut d = node(2, "deploy", vec![]);
        d.deleting = true;
        d.finalizers = vec![FOREGROUND.into()];
        g.observe(d);
        let unblocked = node(1, "rs", vec![owner_ref("Deployment", "deploy", &uid("deploy"), false)]);
        assert_eq!(g.observe(unblocked), [del("deploy")]);
        assert!(g.blocking_dependents(&uid("deploy")).is_empty());
        assert_eq!(g.dependents(&uid("deploy")).len(), 1);
    }

    #[test]
    fn orphan_marks_queue_orphaning_once() {
        let mut g = chain();
        let mut rs = node(1, "rs", vec![owner_ref("Deployment", "deploy", &uid("deploy"), true)]);
        rs.deleting = true;
        rs.finalizers = vec![ORPHAN.into()];
        assert_eq!(g.observe(rs.clone()), [Work::Orphan(uid("rs"))]);
        assert!(g.observe(rs).is_empty());
    }

    #[test]
    fn removing_a_reference_drops_the_dependent_from_the_owner() {
        let mut g = chain();
        g.observe(node(0, "pod", vec![]));
        assert!(g.dependents(&uid("rs")).is_empty());
    }

    #[test]
    fn a_relist_forgets_what_it_no_longer_holds() {
        let mut g = chain();
        let listed: HashSet<String> = [uid("deploy")].into();
        // Resource 1 (replicasets) relisted without the rs: it is forgotten and its pod checked.
        assert_eq!(g.forget_unlisted(1, &HashSet::new()), [del("pod")]);
        assert!(g.forget_unlisted(2, &listed).is_empty());
        assert!(g.node(&uid("rs")).is_none());
        assert_eq!(g.len(), 2);
    }
}
