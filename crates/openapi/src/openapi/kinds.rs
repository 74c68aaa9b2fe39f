//! The table from a served kind (group, version, kind) to the `k8s-openapi` type whose `schemars` impl describes it.
//!
//! The group, version and kind of every row come from the type's own `k8s_openapi::Resource` constants, so a row
//! cannot name the wrong type. A kind served by `RESOURCES` but missing here gets an open object schema (see
//! [`super::schemas`]); a unit test keeps every served kind in this table.

use k8s_openapi::api::{apps, autoscaling, batch, coordination, core, discovery, events, networking, policy, rbac};
use k8s_openapi::{ListableResource, Resource};
use schemars::{JsonSchema, Schema, SchemaGenerator};

/// One kind with a schema: its GVK, its list kind and a function adding its schema to a generator.
pub(crate) struct KindSchema {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// `ServiceList`, or `None` for kinds that are never listed (`Scale`, `Binding`).
    pub list_kind: Option<&'static str>,
    /// Registers the kind's schema (and everything it references) and returns a `$ref` to it.
    pub subschema: fn(&mut SchemaGenerator) -> Schema,
}

fn subschema<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

const fn listable<T: ListableResource + JsonSchema>() -> KindSchema {
    KindSchema {
        group: T::GROUP,
        version: T::VERSION,
        kind: T::KIND,
        list_kind: Some(T::LIST_KIND),
        subschema: subschema::<T>,
    }
}

const fn unlisted<T: Resource + JsonSchema>() -> KindSchema {
    KindSchema { group: T::GROUP, version: T::VERSION, kind: T::KIND, list_kind: None, subschema: subschema::<T> }
}

/// Every kind Skiff can describe: the served resources, the kinds of their subresources, and a few common kinds
/// so that adding a row to `RESOURCES` usually needs no change here.
pub(crate) static KINDS: &[KindSchema] = &[
    listable::<core::v1::Namespace>(),
    listable::<core::v1::Pod>(),
    listable::<core::v1::Service>(),
    listable::<core::v1::Endpoints>(),
    listable::<core::v1::Node>(),
    listable::<core::v1::Event>(),
    listable::<core::v1::ConfigMap>(),
    listable::<core::v1::Secret>(),
    listable::<core::v1::ServiceAccount>(),
    listable::<core::v1::ReplicationController>(),
    listable::<core::v1::PersistentVolumeClaim>(),
    listable::<core::v1::PersistentVolume>(),
    listable::<core::v1::LimitRange>(),
    listable::<core::v1::ResourceQuota>(),
    unlisted::<core::v1::Binding>(),
    listable::<apps::v1::Deployment>(),
    listable::<apps::v1::ReplicaSet>(),
    listable::<apps::v1::StatefulSet>(),
    listable::<apps::v1::DaemonSet>(),
    listable::<apps::v1::ControllerRevision>(),
    unlisted::<autoscaling::v1::Scale>(),
    listable::<autoscaling::v1::HorizontalPodAutoscaler>(),
    listable::<autoscaling::v2::HorizontalPodAutoscaler>(),
    listable::<batch::v1::Job>(),
    listable::<batch::v1::CronJob>(),
    listable::<discovery::v1::EndpointSlice>(),
    listable::<events::v1::Event>(),
    listable::<coordination::v1::Lease>(),
    listable::<networking::v1::Ingress>(),
    listable::<networking::v1::NetworkPolicy>(),
    listable::<policy::v1::PodDisruptionBudget>(),
    listable::<rbac::v1::Role>(),
    listable::<rbac::v1::RoleBinding>(),
    listable::<rbac::v1::ClusterRole>(),
    listable::<rbac::v1::ClusterRoleBinding>(),
];

/// The schema row of a kind, if `k8s-openapi` describes it.
pub(crate) fn find(group: &str, version: &str, kind: &str) -> Option<&'static KindSchema> {
    KINDS.iter().find(|k| k.group == group && k.version == version && k.kind == kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_served_kind_and_subresource_object_kind_has_a_schema() {
        for r in skiff_api::resource::RESOURCES {
            assert!(find(r.group, r.version, r.kind).is_some(), "no schema for {}/{} {}", r.group, r.version, r.kind);
            for s in r.subresources {
                let (g, v, k) = s.kind;
                // Connect subresources answer with streams, not objects (upstream: `type: string`).
                if !k.ends_with("Options") {
                    assert!(find(g, v, k).is_some(), "no schema for {}/{} subresource kind {k}", r.plural, s.name);
                }
            }
        }
    }

    #[test]
    fn rows_carry_the_types_own_gvk() {
        let scale = find("autoscaling", "v1", "Scale").expect("scale row");
        assert_eq!(scale.list_kind, None);
        let deploy = find("apps", "v1", "Deployment").expect("deployment row");
        assert_eq!(deploy.list_kind, Some("DeploymentList"));
        let mut generator = schemars::generate::SchemaSettings::openapi3().into_generator();
        let reference = (deploy.subschema)(&mut generator);
        assert_eq!(
            reference.get("$ref").and_then(|v| v.as_str()),
            Some("#/components/schemas/io.k8s.api.apps.v1.Deployment")
        );
    }
}
