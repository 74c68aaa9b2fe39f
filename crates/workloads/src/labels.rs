//! `metav1.LabelSelector` evaluation over typed labels (upstream's `LabelSelectorAsSelector` + `Matches`), and
//! its string form for list requests.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// The label upstream adds to a Deployment's ReplicaSets, their selectors and their pods.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";

/// Whether `labels` satisfy `selector`. A missing selector matches nothing, an empty one everything.
pub fn matches(selector: Option<&LabelSelector>, labels: Option<&BTreeMap<String, String>>) -> bool {
    let Some(selector) = selector else { return false };
    let empty = BTreeMap::new();
    let labels = labels.unwrap_or(&empty);
    let by_labels = selector.match_labels.iter().flatten().all(|(k, v)| labels.get(k) == Some(v));
    let by_expressions = selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        match e.operator.as_str() {
            "In" => labels.get(&e.key).is_some_and(|v| values.contains(v)),
            "NotIn" => labels.get(&e.key).is_none_or(|v| !values.contains(v)),
            "Exists" => labels.contains_key(&e.key),
            "DoesNotExist" => !labels.contains_key(&e.key),
            _ => false,
        }
    });
    by_labels && by_expressions
}

/// Whether the selector selects everything (`{}`), which upstream refuses to act on for Deployments.
pub fn selects_everything(selector: &LabelSelector) -> bool {
    selector.match_labels.as_ref().is_none_or(BTreeMap::is_empty)
        && selector.match_expressions.as_ref().is_none_or(Vec::is_empty)
}

/// The selector as a `labelSelector` query string (`a=b,c in (d,e),!f`).
pub fn to_query(selector: &LabelSelector) -> String {
    let mut parts: Vec<String> = selector.match_labels.iter().flatten().map(|(k, v)| format!("{k}={v}")).collect();
    for e in selector.match_expressions.iter().flatten() {
        let values = e.values.as_deref().unwrap_or_default().join(",");
        parts.push(match e.operator.as_str() {
            "In" => format!("{} in ({values})", e.key),
            "NotIn" => format!("{} notin ({values})", e.key),
            "Exists" => e.key.clone(),
            _ => format!("!{}", e.key),
        });
    }
    parts.join(",")
}

/// A copy of `selector` that also requires `key=value` (upstream's `CloneSelectorAndAddLabel`).
pub fn with_label(selector: &LabelSelector, key: &str, value: &str) -> LabelSelector {
    let mut out = selector.clone();
    out.match_labels.get_or_insert_with(BTreeMap::new).insert(key.to_string(), value.to_string());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn match_labels_is_an_and_and_extra_labels_are_fine() {
        let sel = LabelSelector { match_labels: Some(map(&[("app", "web"), ("tier", "fe")])), ..Default::default() };
        assert!(matches(Some(&sel), Some(&map(&[("app", "web"), ("tier", "fe"), ("x", "y")]))));
        assert!(!matches(Some(&sel), Some(&map(&[("app", "web")]))));
        assert!(!matches(None, Some(&map(&[("app", "web")]))));
        assert!(matches(Some(&LabelSelector::default()), None));
    }

    #[test]
    fn expressions_and_query_string() {
        let sel = LabelSelector {
            match_labels: Some(map(&[("app", "web")])),
            match_expressions: Some(vec![
                LabelSelectorRequirement {
                    key: "env".into(),
                    operator: "In".into(),
                    values: Some(vec!["a".into(), "b".into()]),
                },
                LabelSelectorRequirement { key: "old".into(), operator: "DoesNotExist".into(), values: None },
            ]),
        };
        assert!(matches(Some(&sel), Some(&map(&[("app", "web"), ("env", "b")]))));
        assert!(!matches(Some(&sel), Some(&map(&[("app", "web"), ("env", "c")]))));
        assert!(!matches(Some(&sel), Some(&map(&[("app", "web"), ("env", "a"), ("old", "1")]))));
        assert_eq!(to_query(&sel), "app=web,env in (a,b),!old");
        let hashed = with_label(&sel, POD_TEMPLATE_HASH, "abc");
        assert_eq!(
            hashed.match_labels.as_ref().and_then(|m| m.get(POD_TEMPLATE_HASH)).map(String::as_str),
            Some("abc")
        );
        assert!(selects_everything(&LabelSelector::default()));
        assert!(!selects_everything(&sel));
    }
}
