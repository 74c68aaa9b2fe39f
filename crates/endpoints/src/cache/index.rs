//! An index from `(namespace, label key, label value)` to the names of the objects carrying that pair: pods by
//! their labels (to find a Service's pods) and Services by their selector's pairs (to find a pod's Services).

use std::collections::{BTreeMap, HashMap, HashSet};

#[derive(Debug, Default)]
pub struct LabelIndex {
    by_namespace: HashMap<String, HashMap<String, HashMap<String, HashSet<String>>>>,
}

impl LabelIndex {
    pub fn insert(&mut self, namespace: &str, labels: &BTreeMap<String, String>, name: &str) {
        let keys = self.by_namespace.entry(namespace.to_string()).or_default();
        for (key, value) in labels {
            keys.entry(key.clone()).or_default().entry(value.clone()).or_default().insert(name.to_string());
        }
    }

    pub fn remove(&mut self, namespace: &str, labels: &BTreeMap<String, String>, name: &str) {
        let Some(keys) = self.by_namespace.get_mut(namespace) else { return };
        for (key, value) in labels {
            let Some(values) = keys.get_mut(key) else { continue };
            if let Some(names) = values.get_mut(value) {
                names.remove(name);
                if names.is_empty() {
                    values.remove(value);
                }
            }
            if values.is_empty() {
                keys.remove(key);
            }
        }
        if keys.is_empty() {
            self.by_namespace.remove(namespace);
        }
    }

    /// The names carrying `key=value` in `namespace`.
    pub fn get(&self, namespace: &str, key: &str, value: &str) -> Option<&HashSet<String>> {
        self.by_namespace.get(namespace)?.get(key)?.get(value)
    }

    /// The smallest candidate set for an AND over `selector` (every match is in it); empty when a pair has none.
    pub fn candidates(&self, namespace: &str, selector: &BTreeMap<String, String>) -> Option<&HashSet<String>> {
        let mut best: Option<&HashSet<String>> = None;
        for (key, value) in selector {
            let set = self.get(namespace, key, value)?;
            if best.is_none_or(|b| set.len() < b.len()) {
                best = Some(set);
            }
        }
        best
    }

    pub fn clear(&mut self) {
        self.by_namespace.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn candidates_are_the_smallest_set_and_none_when_a_pair_is_missing() {
        let mut index = LabelIndex::default();
        index.insert("ns", &labels(&[("app", "web"), ("tier", "a")]), "p1");
        index.insert("ns", &labels(&[("app", "web"), ("tier", "b")]), "p2");
        index.insert("other", &labels(&[("app", "web"), ("tier", "a")]), "p3");
        let set = index.candidates("ns", &labels(&[("app", "web"), ("tier", "a")])).expect("candidates");
        assert_eq!(set.len(), 1);
        assert!(set.contains("p1"));
        assert!(index.candidates("ns", &labels(&[("app", "web"), ("tier", "c")])).is_none());
        index.remove("ns", &labels(&[("app", "web"), ("tier", "a")]), "p1");
        assert!(index.get("ns", "tier", "a").is_none());
        assert_eq!(index.get("ns", "app", "web").map(HashSet::len), Some(1));
    }
}
