//! The status conditions a terminating namespace carries, as upstream's `namespace_resources_deleter`
//! `updateNamespaceStatusFunc` writes them: all five, each `False` when nothing is wrong.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::NamespaceCondition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// What one pass over a namespace's content found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Content {
    /// Group-resource (`pods`, `replicasets.apps`) → objects still there.
    pub remaining: BTreeMap<String, usize>,
    /// Finalizer → objects still there that carry it.
    pub finalizers: BTreeMap<String, usize>,
    /// Group-resources whose listing or deletion failed, with the error.
    pub failures: BTreeMap<String, String>,
}

impl Content {
    pub fn is_empty(&self) -> bool {
        self.remaining.is_empty() && self.failures.is_empty()
    }
}

fn condition(type_: &str, problem: Option<(&str, String)>, ok: (&str, &str)) -> NamespaceCondition {
    let (status, reason, message) = match problem {
        Some((reason, message)) => ("True", reason.to_string(), message),
        None => ("False", ok.0.to_string(), ok.1.to_string()),
    };
    NamespaceCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason),
        message: Some(message),
        last_transition_time: None,
    }
}

/// The five deletion conditions for `content` (or for a failed discovery, `discovery_error`).
pub fn conditions(discovery_error: Option<&str>, content: &Content) -> Vec<NamespaceCondition> {
    let listed = |m: &BTreeMap<String, usize>, sep: &str| {
        m.iter().map(|(k, n)| format!("{k} {sep} {n} resource instances")).collect::<Vec<_>>().join(", ")
    };
    let failures = (!content.failures.is_empty()).then(|| {
        let all: Vec<String> = content.failures.iter().map(|(gr, e)| format!("{gr}: {e}")).collect();
        (
            "ContentDeletionFailed",
            format!("Failed to delete all resource types, {} remaining: {}", all.len(), all.join(", ")),
        )
    });
    let remaining = (!content.remaining.is_empty()).then(|| {
        ("SomeResourcesRemain", format!("Some resources are remaining: {}", listed(&content.remaining, "has")))
    });
    let finalizers = (!content.finalizers.is_empty()).then(|| {
        (
            "SomeFinalizersRemain",
            format!("Some content in the namespace has finalizers remaining: {}", listed(&content.finalizers, "in")),
        )
    });
    vec![
        condition(
            "NamespaceDeletionDiscoveryFailure",
            discovery_error.map(|e| ("DiscoveryFailed", format!("Discovery failed for some groups: {e}"))),
            ("ResourcesDiscovered", "All resources successfully discovered"),
        ),
        condition(
            "NamespaceDeletionGroupVersionParsingFailure",
            None,
            ("ParsedGroupVersions", "All legacy kube types successfully parsed"),
        ),
        condition(
            "NamespaceDeletionContentFailure",
            failures,
            ("ContentDeleted", "All content successfully deleted, may be waiting on finalization"),
        ),
        condition("NamespaceContentRemaining", remaining, ("ContentRemoved", "All content successfully removed")),
        condition(
            "NamespaceFinalizersRemaining",
            finalizers,
            ("ContentHasNoFinalizers", "All content-preserving finalizers finished"),
        ),
    ]
}

/// Merges `wanted` into the namespace's current conditions: a condition whose status, reason and message are
/// unchanged keeps its `lastTransitionTime`; a changed one gets `now`. `None` when nothing changed.
pub fn merge(
    current: &[NamespaceCondition],
    wanted: Vec<NamespaceCondition>,
    now: Time,
) -> Option<Vec<NamespaceCondition>> {
    let mut changed = false;
    let mut out: Vec<NamespaceCondition> =
        current.iter().filter(|c| !wanted.iter().any(|w| w.type_ == c.type_)).cloned().collect();
    for mut w in wanted {
        match current.iter().find(|c| c.type_ == w.type_) {
            Some(c) if c.status == w.status && c.reason == w.reason && c.message == w.message => {
                w.last_transition_time = c.last_transition_time.clone();
            }
            _ => {
                changed = true;
                w.last_transition_time = Some(now.clone());
            }
        }
        out.push(w);
    }
    changed.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find<'a>(cs: &'a [NamespaceCondition], t: &str) -> &'a NamespaceCondition {
        cs.iter().find(|c| c.type_ == t).unwrap_or_else(|| panic!("no {t}"))
    }

    #[test]
    fn remaining_content_and_finalizers_are_reported_as_upstream_words_them() {
        let content = Content {
            remaining: [("pods".to_string(), 2), ("replicasets.apps".to_string(), 1)].into(),
            finalizers: [("example.com/hold".to_string(), 1)].into(),
            failures: BTreeMap::new(),
        };
        let cs = conditions(None, &content);
        assert_eq!(cs.len(), 5);
        let remaining = find(&cs, "NamespaceContentRemaining");
        assert_eq!(remaining.status, "True");
        assert_eq!(
            remaining.message.as_deref(),
            Some(
                "Some resources are remaining: pods has 2 resource instances, replicasets.apps has 1 resource instances"
            )
        );
        let fin = find(&cs, "NamespaceFinalizersRemaining");
        assert_eq!(
            fin.message.as_deref(),
            Some("Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances")
        );
        assert_eq!(find(&cs, "NamespaceDeletionContentFailure").reason.as_deref(), Some("ContentDeleted"));
        assert!(!content.is_empty());
    }

    #[test]
    fn an_empty_namespace_has_every_condition_false() {
        let cs = conditions(None, &Content::default());
        assert!(cs.iter().all(|c| c.status == "False"));
        assert_eq!(find(&cs, "NamespaceContentRemaining").reason.as_deref(), Some("ContentRemoved"));
        let failed = conditions(Some("apps/v1: timeout"), &Content::default());
        assert_eq!(find(&failed, "NamespaceDeletionDiscoveryFailure").status, "True");
    }

    #[test]
    fn merging_keeps_transition_times_of_unchanged_conditions() {
        let t0 = Time(k8s_openapi::jiff::Timestamp::from_second(1000).unwrap_or_default());
        let t1 = Time(k8s_openapi::jiff::Timestamp::from_second(2000).unwrap_or_default());
        let first = merge(&[], conditions(None, &Content::default()), t0.clone()).unwrap_or_default();
        assert_eq!(first.len(), 5);
        assert!(merge(&first, conditions(None, &Content::default()), t1.clone()).is_none());
        let content = Content { remaining: [("pods".to_string(), 1)].into(), ..Content::default() };
        let second = merge(&first, conditions(None, &content), t1.clone()).unwrap_or_default();
        assert_eq!(find(&second, "NamespaceContentRemaining").last_transition_time, Some(t1));
        assert_eq!(find(&second, "NamespaceDeletionContentFailure").last_transition_time, Some(t0));
    }
}
