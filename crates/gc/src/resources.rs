//! The resources the server serves, found through discovery: which ones the garbage collector watches, which ones
//! the namespace controller empties, and how an ownerReference's `apiVersion` + `kind` maps to a resource.

use std::collections::HashMap;

use kube::Client;
use kube::discovery::{ApiCapabilities, ApiResource, Discovery, Scope, verbs};

use crate::Error;

/// Resources the garbage collector leaves alone, as upstream's `DefaultIgnoredResources`: events are many,
/// short-lived and never own anything.
const IGNORED: &[(&str, &str)] = &[("", "events"), ("events.k8s.io", "events")];

/// One served resource (its preferred version) and what it supports.
#[derive(Clone, Debug)]
pub struct Resource {
    pub api: ApiResource,
    pub namespaced: bool,
    pub verbs: Vec<String>,
}

impl Resource {
    pub fn new(api: ApiResource, namespaced: bool, verbs: &[&str]) -> Self {
        Self { api, namespaced, verbs: verbs.iter().map(|v| (*v).to_string()).collect() }
    }

    pub fn supports(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == verb)
    }

    /// `plural.group` (or just `plural` for the core group), as upstream writes a GroupResource.
    pub fn group_resource(&self) -> String {
        if self.api.group.is_empty() {
            self.api.plural.clone()
        } else {
            format!("{}.{}", self.api.plural, self.api.group)
        }
    }

    fn ignored_by_gc(&self) -> bool {
        IGNORED.iter().any(|(g, p)| self.api.group == *g && self.api.plural == *p)
    }
}

/// Every served resource, indexed by position (the garbage collector's graph refers to resources by index).
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    resources: Vec<Resource>,
    by_kind: HashMap<(String, String), usize>,
}

impl Catalog {
    pub fn new(resources: Vec<Resource>) -> Self {
        let mut by_kind = HashMap::new();
        for (i, r) in resources.iter().enumerate() {
            by_kind.entry((r.api.group.clone(), r.api.kind.clone())).or_insert(i);
        }
        Self { resources, by_kind }
    }

    /// Asks the server for every group's preferred version and its resources (subresources left out).
    pub async fn discover(client: &Client) -> Result<Self, Error> {
        let discovery = Discovery::new(client.clone()).run().await.map_err(Error::Discovery)?;
        let mut resources = Vec::new();
        for group in discovery.groups() {
            for (api, caps) in group.recommended_resources() {
                resources.push(from_discovery(api, &caps));
            }
        }
        Ok(Self::new(resources))
    }

    pub fn get(&self, index: usize) -> Option<&Resource> {
        self.resources.get(index)
    }

    /// The resources the garbage collector watches: listable, watchable and deletable, events excluded.
    pub fn collectable(&self) -> impl Iterator<Item = (usize, &Resource)> {
        self.resources.iter().enumerate().filter(|(_, r)| {
            r.supports(verbs::LIST) && r.supports(verbs::WATCH) && r.supports(verbs::DELETE) && !r.ignored_by_gc()
        })
    }

    /// The namespaced resources a terminating namespace must be emptied of.
    pub fn namespaced_deletable(&self) -> impl Iterator<Item = &Resource> {
        self.resources.iter().filter(|r| {
            r.namespaced
                && r.supports(verbs::LIST)
                && (r.supports(verbs::DELETE) || r.supports(verbs::DELETE_COLLECTION))
        })
    }

    /// The resource an ownerReference points at, by the group of its `apiVersion` and its `kind` (any version of
    /// a group maps to the served one, as upstream's RESTMapper does).
    pub fn for_kind(&self, api_version: &str, kind: &str) -> Option<(usize, &Resource)> {
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        let i = *self.by_kind.get(&(group.to_string(), kind.to_string()))?;
        Some((i, self.resources.get(i)?))
    }
}

fn from_discovery(api: ApiResource, caps: &ApiCapabilities) -> Resource {
    Resource { api, namespaced: caps.scope == Scope::Namespaced, verbs: caps.operations.clone() }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn resource(group: &str, version: &str, kind: &str, plural: &str, namespaced: bool) -> Resource {
        let api_version = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
        let api = ApiResource {
            group: group.into(),
            version: version.into(),
            api_version,
            kind: kind.into(),
            plural: plural.into(),
        };
        Resource::new(api, namespaced, &["list", "watch", "delete", "deletecollection", "get", "patch"])
    }

    pub fn catalog() -> Catalog {
        Catalog::new(vec![
            resource("", "v1", "Pod", "pods", true),
            resource("apps", "v1", "ReplicaSet", "replicasets", true),
            resource("apps", "v1", "Deployment", "deployments", true),
            resource("", "v1", "Event", "events", true),
            resource("", "v1", "Node", "nodes", false),
            Resource::new(
                ApiResource {
                    group: "".into(),
                    version: "v1".into(),
                    api_version: "v1".into(),
                    kind: "ComponentStatus".into(),
                    plural: "componentstatuses".into(),
                },
                false,
                &["get", "list"],
            ),
        ])
    }

    #[test]
    fn owner_kinds_resolve_by_group_whatever_the_version() {
        let c = catalog();
        assert_eq!(c.for_kind("apps/v1", "ReplicaSet").map(|(i, _)| i), Some(1));
        assert_eq!(c.for_kind("apps/v1beta2", "ReplicaSet").map(|(i, _)| i), Some(1));
        assert_eq!(c.for_kind("v1", "Pod").map(|(i, _)| i), Some(0));
        assert!(c.for_kind("extensions/v1beta1", "ReplicaSet").is_none());
        assert!(c.for_kind("v1", "ReplicaSet").is_none());
    }

    #[test]
    fn events_and_unwatchable_resources_are_not_collected() {
        let c = catalog();
        let names: Vec<_> = c.collectable().map(|(_, r)| r.api.plural.as_str()).collect();
        assert_eq!(names, ["pods", "replicasets", "deployments", "nodes"]);
    }

    #[test]
    fn namespaces_are_emptied_of_namespaced_kinds_only() {
        let c = catalog();
        let names: Vec<_> = c.namespaced_deletable().map(Resource::group_resource).collect();
        assert_eq!(names, ["pods", "replicasets.apps", "deployments.apps", "events"]);
    }
}
