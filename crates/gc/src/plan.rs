//! What to do with a dependent once each of its owners has been looked up: upstream's `attemptToDeleteItem`
//! decision, as a pure function. The collector performs the result.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use crate::graph::{FOREGROUND, ORPHAN};

/// What an owner reference points at right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnerState {
    /// The owner exists (same uid) and is not deleting its dependents.
    Solid,
    /// No object with that uid exists where the reference says.
    Dangling,
    /// The owner exists and is being deleted in the foreground: it waits for this dependent.
    WaitingForDependents,
}

/// How a deletion propagates, as `DeleteOptions.propagationPolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Propagation {
    Background,
    Foreground,
    Orphan,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The object has a live owner and no stale reference: nothing to do.
    Keep,
    /// The object has a live owner: drop the references (by uid) to owners that are gone or waiting for it.
    RemoveOwners(Vec<String>),
    /// No live owner is left: delete the object. `unblock` first sets `blockOwnerDeletion: false` on these
    /// references, which breaks a cycle of foreground deletions waiting on each other.
    Delete { policy: Propagation, unblock: Vec<String> },
}

/// Decides for one dependent. `has_dependents`: the object owns something itself; `dependent_deleting_dependents`:
/// one of those is itself in a foreground deletion; `finalizers`: the object's own.
pub fn decide(
    owners: &[(OwnerReference, OwnerState)],
    has_dependents: bool,
    dependent_deleting_dependents: bool,
    finalizers: &[String],
) -> Decision {
    let uids_in = |state: OwnerState| -> Vec<String> {
        owners.iter().filter(|(_, s)| *s == state).map(|(o, _)| o.uid.clone()).collect()
    };
    let solid = uids_in(OwnerState::Solid);
    let dangling = uids_in(OwnerState::Dangling);
    let waiting = uids_in(OwnerState::WaitingForDependents);
    if owners.is_empty() {
        return Decision::Keep;
    }
    if !solid.is_empty() {
        if dangling.is_empty() && waiting.is_empty() {
            return Decision::Keep;
        }
        return Decision::RemoveOwners(dangling.into_iter().chain(waiting).collect());
    }
    if !waiting.is_empty() && has_dependents {
        let unblock = if dependent_deleting_dependents {
            owners.iter().filter(|(o, _)| o.block_owner_deletion == Some(true)).map(|(o, _)| o.uid.clone()).collect()
        } else {
            Vec::new()
        };
        return Decision::Delete { policy: Propagation::Foreground, unblock };
    }
    let has = |f: &str| finalizers.iter().any(|x| x == f);
    let policy = if has(ORPHAN) {
        Propagation::Orphan
    } else if has(FOREGROUND) {
        Propagation::Foreground
    } else {
        Propagation::Background
    };
    Decision::Delete { policy, unblock: Vec::new() }
}

/// The ownerReferences left after removing `uids`.
pub fn without_owners(owners: &[OwnerReference], uids: &[String]) -> Vec<OwnerReference> {
    owners.iter().filter(|o| !uids.contains(&o.uid)).cloned().collect()
}

/// The ownerReferences with `blockOwnerDeletion` cleared on `uids`.
pub fn unblocked(owners: &[OwnerReference], uids: &[String]) -> Vec<OwnerReference> {
    owners
        .iter()
        .map(|o| {
            let mut o = o.clone();
            if uids.contains(&o.uid) {
                o.block_owner_deletion = Some(false);
            }
            o
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::tests::owner_ref;

    fn with(states: &[(&str, OwnerState)]) -> Vec<(OwnerReference, OwnerState)> {
        states.iter().map(|(uid, s)| (owner_ref("ReplicaSet", uid, uid, true), *s)).collect()
    }

    fn bg() -> Decision {
        Decision::Delete { policy: Propagation::Background, unblock: vec![] }
    }

    #[test]
    fn an_object_with_a_live_owner_stays() {
        assert_eq!(decide(&with(&[("a", OwnerState::Solid)]), false, false, &[]), Decision::Keep);
        assert_eq!(decide(&[], true, false, &[]), Decision::Keep);
    }

    #[test]
    fn a_second_live_owner_keeps_it_and_only_the_dangling_reference_goes() {
        let owners =
            with(&[("a", OwnerState::Dangling), ("b", OwnerState::Solid), ("c", OwnerState::WaitingForDependents)]);
        assert_eq!(decide(&owners, false, false, &[]), Decision::RemoveOwners(vec!["a".into(), "c".into()]));
    }

    #[test]
    fn all_owners_gone_deletes_in_the_background_unless_its_finalizers_say_otherwise() {
        let owners = with(&[("a", OwnerState::Dangling), ("b", OwnerState::Dangling)]);
        assert_eq!(decide(&owners, true, false, &[]), bg());
        let orphan = decide(&owners, true, false, &[ORPHAN.into()]);
        assert_eq!(orphan, Decision::Delete { policy: Propagation::Orphan, unblock: vec![] });
        let fg = decide(&owners, false, false, &[FOREGROUND.into()]);
        assert_eq!(fg, Decision::Delete { policy: Propagation::Foreground, unblock: vec![] });
    }

    #[test]
    fn a_waiting_owner_cascades_in_the_foreground_through_dependents_that_own_things() {
        let owners = with(&[("a", OwnerState::WaitingForDependents)]);
        assert_eq!(
            decide(&owners, true, false, &[]),
            Decision::Delete { policy: Propagation::Foreground, unblock: vec![] }
        );
        // A leaf just goes.
        assert_eq!(decide(&owners, false, false, &[]), bg());
        // A cycle of foreground deletions is broken by unblocking.
        let cycle = decide(&owners, true, true, &[]);
        assert_eq!(cycle, Decision::Delete { policy: Propagation::Foreground, unblock: vec!["a".into()] });
    }

    #[test]
    fn reference_edits_touch_only_the_named_uids() {
        let owners: Vec<_> =
            with(&[("a", OwnerState::Solid), ("b", OwnerState::Solid)]).into_iter().map(|(o, _)| o).collect();
        let left = without_owners(&owners, &["a".into()]);
        assert_eq!(left.iter().map(|o| o.uid.as_str()).collect::<Vec<_>>(), ["b"]);
        let un = unblocked(&owners, &["b".into()]);
        assert_eq!(un[0].block_owner_deletion, Some(true));
        assert_eq!(un[1].block_owner_deletion, Some(false));
    }
}
