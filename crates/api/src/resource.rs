//! The resources Skiff serves: one [`ResourceType`] per group/version/resource, in discovery order.
//!
//! Discovery, OpenAPI, the HTTP router, the store's key layout and Tables all read this one table, so adding a
//! resource is adding a row here (plus its admission and printing rules).

/// A subresource of a resource (`pods/status`, `deployments/scale`, `pods/exec`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subresource {
    pub name: &'static str,
    /// The response kind: `(group, version, kind)`.
    pub kind: (&'static str, &'static str, &'static str),
    pub verbs: &'static [&'static str],
}

/// One resource at one group/version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceType {
    /// API group; `""` for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// The plural resource name used in URLs (`services`).
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub subresources: &'static [Subresource],
    /// Whether a spec change bumps `metadata.generation` (upstream: every kind with a spec/status split).
    pub has_generation: bool,
}

/// The verbs every served resource supports on its main endpoint.
pub const VERBS: &[&str] = &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];
const STATUS_VERBS: &[&str] = &["get", "patch", "update"];
const STREAM_VERBS: &[&str] = &["create", "get"];

const fn status(group: &'static str, version: &'static str, kind: &'static str) -> Subresource {
    Subresource { name: "status", kind: (group, version, kind), verbs: STATUS_VERBS }
}

const SCALE: Subresource = Subresource { name: "scale", kind: ("autoscaling", "v1", "Scale"), verbs: STATUS_VERBS };

/// Every resource Skiff serves, in the order discovery lists them.
pub static RESOURCES: &[ResourceType] = &[
    ResourceType {
        group: "",
        version: "v1",
        kind: "Namespace",
        plural: "namespaces",
        singular: "namespace",
        namespaced: false,
        short_names: &["ns"],
        categories: &[],
        subresources: &[
            status("", "v1", "Namespace"),
            Subresource { name: "finalize", kind: ("", "v1", "Namespace"), verbs: &["update"] },
        ],
        has_generation: false,
    },
    ResourceType {
        group: "",
        version: "v1",
        kind: "Pod",
        plural: "pods",
        singular: "pod",
        namespaced: true,
        short_names: &["po"],
        categories: &["all"],
        subresources: &[
            Subresource { name: "binding", kind: ("", "v1", "Binding"), verbs: &["create"] },
            Subresource { name: "exec", kind: ("", "v1", "PodExecOptions"), verbs: STREAM_VERBS },
            Subresource { name: "log", kind: ("", "v1", "Pod"), verbs: &["get"] },
            Subresource { name: "portforward", kind: ("", "v1", "PodPortForwardOptions"), verbs: STREAM_VERBS },
            status("", "v1", "Pod"),
        ],
        has_generation: true,
    },
    ResourceType {
        group: "",
        version: "v1",
        kind: "Service",
        plural: "services",
        singular: "service",
        namespaced: true,
        short_names: &["svc"],
        categories: &["all"],
        subresources: &[status("", "v1", "Service")],
        has_generation: true,
    },
    ResourceType {
        group: "",
        version: "v1",
        kind: "Endpoints",
        plural: "endpoints",
        singular: "endpoints",
        namespaced: true,
        short_names: &["ep"],
        categories: &[],
        subresources: &[],
        has_generation: false,
    },
    ResourceType {
        group: "",
        version: "v1",
        kind: "Node",
        plural: "nodes",
        singular: "node",
        namespaced: false,
        short_names: &["no"],
        categories: &[],
        subresources: &[status("", "v1", "Node")],
        has_generation: false,
    },
    ResourceType {
        group: "",
        version: "v1",
        kind: "Event",
        plural: "events",
        singular: "event",
        namespaced: true,
        short_names: &["ev"],
        categories: &[],
        subresources: &[],
        has_generation: false,
    },
    ResourceType {
        group: "",
        version: "v1",
        kind: "ConfigMap",
        plural: "configmaps",
        singular: "configmap",
        namespaced: true,
        short_names: &["cm"],
        categories: &[],
        subresources: &[],
        has_generation: false,
    },
    ResourceType {
        group: "",
        version: "v1",
        kind: "Secret",
        plural: "secrets",
        singular: "secret",
        namespaced: true,
        short_names: &[],
        categories: &[],
        subresources: &[],
        has_generation: false,
    },
    ResourceType {
        group: "",
        version: "v1",
        kind: "ServiceAccount",
        plural: "serviceaccounts",
        singular: "serviceaccount",
        namespaced: true,
        short_names: &["sa"],
        categories: &[],
        subresources: &[],
        has_generation: false,
    },
    ResourceType {
        group: "apps",
        version: "v1",
        kind: "Deployment",
        plural: "deployments",
        singular: "deployment",
        namespaced: true,
        short_names: &["deploy"],
        categories: &["all"],
        subresources: &[SCALE, status("apps", "v1", "Deployment")],
        has_generation: true,
    },
    ResourceType {
        group: "apps",
        version: "v1",
        kind: "ReplicaSet",
        plural: "replicasets",
        singular: "replicaset",
        namespaced: true,
        short_names: &["rs"],
        categories: &["all"],
        subresources: &[SCALE, status("apps", "v1", "ReplicaSet")],
        has_generation: true,
    },
    ResourceType {
        group: "discovery.k8s.io",
        version: "v1",
        kind: "EndpointSlice",
        plural: "endpointslices",
        singular: "endpointslice",
        namespaced: true,
        short_names: &[],
        categories: &[],
        subresources: &[],
        has_generation: false,
    },
    ResourceType {
        group: "events.k8s.io",
        version: "v1",
        kind: "Event",
        plural: "events",
        singular: "event",
        namespaced: true,
        short_names: &["ev"],
        categories: &[],
        subresources: &[],
        has_generation: false,
    },
    ResourceType {
        group: "coordination.k8s.io",
        version: "v1",
        kind: "Lease",
        plural: "leases",
        singular: "lease",
        namespaced: true,
        short_names: &[],
        categories: &[],
        subresources: &[],
        has_generation: false,
    },
];

impl ResourceType {
    /// `apps/v1`, or `v1` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.to_string() } else { format!("{}/{}", self.group, self.version) }
    }

    /// `services`, `deployments.apps`: the name upstream uses in messages (`deployments.apps "x" not found`).
    pub fn qualified_plural(&self) -> String {
        if self.group.is_empty() { self.plural.to_string() } else { format!("{}.{}", self.plural, self.group) }
    }

    /// The kind of a list of this resource (`ServiceList`).
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// The URL prefix of this resource's group/version: `/api/v1` or `/apis/apps/v1`.
    pub fn group_version_path(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        }
    }

    /// The store key prefix of this resource, ending in `/`: `/registry/services/`,
    /// `/registry/apps/deployments/`. Events of the core and `events.k8s.io` groups share one prefix, as
    /// upstream, since they are the same objects seen through two versions.
    pub fn storage_prefix(&self) -> String {
        match (self.group, self.plural) {
            ("" | "events.k8s.io", "events") => "/registry/events/".to_string(),
            ("", plural) => format!("/registry/{plural}/"),
            (group, plural) => format!("/registry/{group}/{plural}/"),
        }
    }

    /// The store key of one object.
    pub fn storage_key(&self, namespace: Option<&str>, name: &str) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("{}{ns}/{name}", self.storage_prefix()),
            _ => format!("{}{name}", self.storage_prefix()),
        }
    }

    /// The key prefix of every object of this resource in one namespace (or all of them with `None`).
    pub fn storage_list_prefix(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("{}{ns}/", self.storage_prefix()),
            _ => self.storage_prefix(),
        }
    }

    pub fn subresource(&self, name: &str) -> Option<&'static Subresource> {
        // `RESOURCES` is 'static, so find the row again to hand out a 'static reference.
        lookup(self.group, self.version, self.plural)?.subresources.iter().find(|s| s.name == name)
    }
}

/// The resource served at `group/version/plural`.
pub fn lookup(group: &str, version: &str, plural: &str) -> Option<&'static ResourceType> {
    RESOURCES.iter().find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resource of a kind in a group/version (`apps/v1`, `Deployment`).
pub fn lookup_kind(api_version: &str, kind: &str) -> Option<&'static ResourceType> {
    let (group, version) = split_api_version(api_version);
    RESOURCES.iter().find(|r| r.group == group && r.version == version && r.kind == kind)
}

/// `apps/v1` → (`apps`, `v1`); `v1` → (``, `v1`).
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    api_version.split_once('/').unwrap_or(("", api_version))
}

/// The API groups served, in discovery order (the core group `""` first), each with its versions.
pub fn groups() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for r in RESOURCES {
        match out.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, versions)) if !versions.contains(&r.version) => versions.push(r.version),
            Some(_) => {}
            None => out.push((r.group, vec![r.version])),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_find_rows_and_keys_nest_by_namespace() {
        let svc = lookup("", "v1", "services").expect("services are served");
        assert_eq!(svc.storage_key(Some("default"), "web"), "/registry/services/default/web");
        assert_eq!(svc.storage_list_prefix(Some("default")), "/registry/services/default/");
        let ns = lookup_kind("v1", "Namespace").expect("namespaces are served");
        assert_eq!(ns.storage_key(Some("ignored"), "kube-system"), "/registry/namespaces/kube-system");
        let deploy = lookup_kind("apps/v1", "Deployment").expect("deployments are served");
        assert_eq!(deploy.qualified_plural(), "deployments.apps");
        assert_eq!(deploy.subresource("scale").map(|s| s.kind.2), Some("Scale"));
        assert!(lookup("", "v1", "widgets").is_none());
    }

    #[test]
    fn both_event_versions_share_storage_and_groups_are_ordered() {
        let core = lookup("", "v1", "events").expect("core events");
        let new = lookup("events.k8s.io", "v1", "events").expect("events.k8s.io events");
        assert_eq!(core.storage_prefix(), new.storage_prefix());
        let groups = groups();
        assert_eq!(groups[0].0, "");
        assert!(groups.iter().any(|(g, v)| *g == "apps" && v == &vec!["v1"]));
    }

    #[test]
    fn no_two_prefixes_overlap() {
        for a in RESOURCES {
            for b in RESOURCES {
                if a.storage_prefix() != b.storage_prefix() {
                    assert!(!a.storage_prefix().starts_with(&b.storage_prefix()), "{} inside {}", a.plural, b.plural);
                }
            }
        }
    }
}
