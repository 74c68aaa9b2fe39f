//! Adoption and release by controller reference (upstream's `ControllerRefManager.ClaimObject`): an owner
//! keeps what it controls and still selects, releases what it controls but no longer selects, and adopts
//! orphans it selects. The decision is pure; the patches that carry it out are merge patches pinned to the
//! object's resourceVersion, so a stale cache yields a conflict rather than a lost update.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use serde_json::{Value, json};

/// What an owner does with one candidate object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Claim {
    /// Controlled by the owner and selected: it is the owner's.
    Keep,
    /// An orphan the owner selects: adopt it.
    Adopt,
    /// Controlled by the owner but no longer selected: release it.
    Release,
    /// Someone else's, or not to be touched now.
    Ignore,
}

/// The controller reference of an object, if any.
pub(crate) fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references.iter().flatten().find(|r| r.controller == Some(true))
}

/// Upstream's `ClaimObject` decision for `obj`, given its owner's UID and whether the owner is being deleted.
pub(crate) fn decide(owner_uid: &str, owner_deleting: bool, obj: &ObjectMeta, selected: bool) -> Claim {
    match controller_of(obj) {
        Some(r) if r.uid != owner_uid => Claim::Ignore,
        Some(_) if selected => Claim::Keep,
        Some(_) if owner_deleting => Claim::Ignore,
        Some(_) => Claim::Release,
        None if owner_deleting || !selected || obj.deletion_timestamp.is_some() => Claim::Ignore,
        None => Claim::Adopt,
    }
}

/// A controller reference to `owner` (controller and blockOwnerDeletion set, as upstream's `NewControllerRef`).
pub(crate) fn controller_ref(api_version: &str, kind: &str, owner: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
        name: owner.name.clone().unwrap_or_default(),
        uid: owner.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The merge patch that adds `owner` as controller of `obj`.
pub(crate) fn adopt_patch(obj: &ObjectMeta, owner: OwnerReference) -> Value {
    let mut refs: Vec<OwnerReference> = obj.owner_references.clone().unwrap_or_default();
    refs.retain(|r| r.uid != owner.uid);
    refs.push(owner);
    json!({"metadata": {"ownerReferences": refs, "resourceVersion": obj.resource_version}})
}

/// The merge patch that removes the reference to `owner_uid` from `obj`.
pub(crate) fn release_patch(obj: &ObjectMeta, owner_uid: &str) -> Value {
    let refs: Vec<&OwnerReference> = obj.owner_references.iter().flatten().filter(|r| r.uid != owner_uid).collect();
    let refs = if refs.is_empty() { Value::Null } else { json!(refs) };
    json!({"metadata": {"ownerReferences": refs, "resourceVersion": obj.resource_version}})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(controller_uid: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            name: Some("p".into()),
            resource_version: Some("7".into()),
            owner_references: controller_uid.map(|uid| {
                vec![OwnerReference {
                    api_version: "apps/v1".into(),
                    kind: "ReplicaSet".into(),
                    name: "rs".into(),
                    uid: uid.into(),
                    controller: Some(true),
                    block_owner_deletion: Some(true),
                }]
            }),
            ..Default::default()
        }
    }

    #[test]
    fn decisions_follow_claim_object() {
        assert_eq!(decide("me", false, &meta(Some("me")), true), Claim::Keep);
        assert_eq!(decide("me", false, &meta(Some("me")), false), Claim::Release);
        assert_eq!(decide("me", true, &meta(Some("me")), false), Claim::Ignore);
        assert_eq!(decide("me", false, &meta(Some("other")), true), Claim::Ignore);
        assert_eq!(decide("me", false, &meta(None), true), Claim::Adopt);
        assert_eq!(decide("me", false, &meta(None), false), Claim::Ignore);
        assert_eq!(decide("me", true, &meta(None), true), Claim::Ignore);
    }

    #[test]
    fn patches_pin_the_resource_version() {
        let owner = ObjectMeta { name: Some("rs".into()), uid: Some("me".into()), ..Default::default() };
        let p = adopt_patch(&meta(None), controller_ref("apps/v1", "ReplicaSet", &owner));
        assert_eq!(p["metadata"]["resourceVersion"], "7");
        assert_eq!(p["metadata"]["ownerReferences"][0]["uid"], "me");
        assert_eq!(p["metadata"]["ownerReferences"][0]["blockOwnerDeletion"], true);
        let r = release_patch(&meta(Some("me")), "me");
        assert_eq!(r["metadata"]["ownerReferences"], Value::Null);
    }
}
