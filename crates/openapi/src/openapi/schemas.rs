//! `components.schemas` of one group/version document, generated from `k8s-openapi`'s `schemars` impls.
//!
//! A [`SchemaSet`] wraps a `schemars` generator with the OpenAPI 3.0 settings (`$ref`s point at
//! `#/components/schemas/…`, `type: [X, "null"]` becomes `nullable`, a `$ref` with a description becomes
//! `allOf: [{$ref}]` as upstream writes it). Paths ask it for `$ref`s to kinds; it records which GVKs each schema
//! serves and, on [`SchemaSet::finish`], adds the list kinds (which `k8s-openapi` has no schema for), stamps
//! `x-kubernetes-group-version-kind` on every kind, and runs [`to_openapi3`] over the result as a last guard
//! against JSON Schema 2020-12 constructs that OpenAPI 3.0 readers (kube-openapi's `spec3`) do not know.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{DeleteOptions, ListMeta, Patch, Status};
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{Map, Value, json};

use super::kinds;

/// Where `$ref`s point in an OpenAPI 3 document.
pub const SCHEMA_REF_PREFIX: &str = "#/components/schemas/";

/// The schemas of one document under construction.
pub(crate) struct SchemaSet {
    generator: SchemaGenerator,
    /// Schemas built here rather than by `schemars`: list kinds and open objects for kinds without a schema.
    extra: Map<String, Value>,
    /// Schema name → the GVKs it is served as, in first-seen order.
    gvks: BTreeMap<String, Vec<(String, String, String)>>,
}

impl SchemaSet {
    pub(crate) fn new() -> Self {
        SchemaSet { generator: SchemaSettings::openapi3().into_generator(), extra: Map::new(), gvks: BTreeMap::new() }
    }

    /// The `$ref` of a kind's schema, registering the schema and its GVK.
    pub(crate) fn kind_ref(&mut self, group: &str, version: &str, kind: &str) -> String {
        let name = match kinds::find(group, version, kind) {
            Some(row) => {
                let reference = (row.subschema)(&mut self.generator);
                ref_name(reference.as_value()).unwrap_or_else(|| fallback_name(group, version, kind))
            }
            None => fallback_name(group, version, kind),
        };
        if !self.generator.definitions().contains_key(&name) && !self.extra.contains_key(&name) {
            self.extra.insert(name.clone(), open_object(kind));
        }
        self.add_gvk(&name, group, version, kind);
        format!("{SCHEMA_REF_PREFIX}{name}")
    }

    /// The `$ref` of a kind's list (`ServiceList`), built from the item schema and `ListMeta`.
    pub(crate) fn list_ref(&mut self, group: &str, version: &str, kind: &str) -> String {
        let item_ref = self.kind_ref(group, version, kind);
        let list_kind = kinds::find(group, version, kind)
            .and_then(|row| row.list_kind)
            .map(str::to_string)
            .unwrap_or_else(|| format!("{kind}List"));
        let item_name = item_ref.trim_start_matches(SCHEMA_REF_PREFIX);
        let name = match item_name.rsplit_once('.') {
            Some((prefix, _)) => format!("{prefix}.{list_kind}"),
            None => list_kind.clone(),
        };
        if !self.extra.contains_key(&name) {
            let list_meta = self.meta_ref::<ListMeta>();
            let schema = list_schema(kind, &list_kind, &item_ref, &list_meta);
            self.extra.insert(name.clone(), schema);
        }
        self.add_gvk(&name, group, version, &list_kind);
        format!("{SCHEMA_REF_PREFIX}{name}")
    }

    /// The `$ref` of `meta/v1` `Status`, the answer of deletes.
    pub(crate) fn status_ref(&mut self) -> String {
        let reference = self.meta_ref::<Status>();
        self.add_gvk(reference.trim_start_matches(SCHEMA_REF_PREFIX), "", "v1", "Status");
        reference
    }

    /// The `$ref` of `DeleteOptions`, served (as upstream) under every group/version that has deletes.
    pub(crate) fn delete_options_ref(&mut self, group: &str, version: &str) -> String {
        let reference = self.meta_ref::<DeleteOptions>();
        let name = reference.trim_start_matches(SCHEMA_REF_PREFIX).to_string();
        self.add_gvk(&name, group, version, "DeleteOptions");
        reference
    }

    /// The `$ref` of the `Patch` body schema.
    pub(crate) fn patch_ref(&mut self) -> String {
        self.meta_ref::<Patch>()
    }

    fn meta_ref<T: JsonSchema>(&mut self) -> String {
        let reference = self.generator.subschema_for::<T>();
        let name = ref_name(reference.as_value()).unwrap_or_else(|| T::schema_name().into_owned());
        format!("{SCHEMA_REF_PREFIX}{name}")
    }

    fn add_gvk(&mut self, name: &str, group: &str, version: &str, kind: &str) {
        let gvk = (group.to_string(), version.to_string(), kind.to_string());
        let list = self.gvks.entry(name.to_string()).or_default();
        if !list.contains(&gvk) {
            list.push(gvk);
        }
    }

    /// Every schema registered so far, OpenAPI 3.0 shaped, with the GVK extensions.
    pub(crate) fn finish(mut self) -> Map<String, Value> {
        let mut schemas = self.generator.take_definitions(true);
        for (name, schema) in std::mem::take(&mut self.extra) {
            schemas.entry(name).or_insert(schema);
        }
        let mut hoisted = Map::new();
        for schema in schemas.values_mut() {
            to_openapi3(schema, &mut hoisted);
        }
        for (name, schema) in hoisted {
            schemas.entry(name).or_insert(schema);
        }
        for (name, gvks) in &self.gvks {
            if let Some(Value::Object(schema)) = schemas.get_mut(name) {
                let list = gvks.iter().map(|(g, v, k)| json!({"group": g, "version": v, "kind": k})).collect();
                schema.insert("x-kubernetes-group-version-kind".into(), Value::Array(list));
                drop_required_metadata(schema);
            }
        }
        schemas
    }
}

/// `k8s-openapi` lists `metadata` as required on every kind (its Rust field is not optional); upstream's schemas
/// do not (`kubectl explain` would print `metadata -required-`).
fn drop_required_metadata(schema: &mut Map<String, Value>) {
    if let Some(Value::Array(required)) = schema.get_mut("required") {
        required.retain(|field| field != "metadata");
        if required.is_empty() {
            schema.remove("required");
        }
    }
}

/// The schema name a `{"$ref": "#/components/schemas/NAME"}` points at.
fn ref_name(reference: &Value) -> Option<String> {
    let target = reference.get("$ref")?.as_str()?;
    Some(rewrite_ref(target).trim_start_matches(SCHEMA_REF_PREFIX).to_string())
}

/// A schema name in upstream's style for a kind `k8s-openapi` does not describe.
fn fallback_name(group: &str, version: &str, kind: &str) -> String {
    let group = if group.is_empty() { "core" } else { group.trim_end_matches(".k8s.io") };
    format!("io.k8s.api.{group}.{version}.{kind}")
}

fn open_object(kind: &str) -> Value {
    json!({
        "description": format!("{kind} (no schema available; any fields are accepted)."),
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

fn list_schema(kind: &str, list_kind: &str, item_ref: &str, list_meta_ref: &str) -> Value {
    let string_field = |description: &str| json!({"description": description, "type": "string"});
    json!({
        "description": format!("{list_kind} is a list of {kind} objects."),
        "type": "object",
        "properties": {
            "apiVersion": string_field("APIVersion defines the versioned schema of this representation of an object."),
            "items": {
                "description": format!("List of {kind} objects."),
                "type": "array",
                "items": {"allOf": [{"$ref": item_ref}], "default": {}},
            },
            "kind": string_field("Kind is a string value representing the REST resource this object represents."),
            "metadata": {
                "allOf": [{"$ref": list_meta_ref}],
                "default": {},
                "description": "Standard list metadata.",
            },
        },
        "required": ["items"],
    })
}

/// Points a JSON Schema `$defs`/`definitions` reference at `components.schemas`.
fn rewrite_ref(target: &str) -> String {
    for prefix in ["#/$defs/", "#/definitions/"] {
        if let Some(name) = target.strip_prefix(prefix) {
            return format!("{SCHEMA_REF_PREFIX}{name}");
        }
    }
    target.to_string()
}

/// Rewrites one schema (and its subschemas) from JSON Schema 2020-12 into what OpenAPI 3.0 allows: `$ref`s into
/// `components.schemas`, nested `$defs` hoisted into `hoisted`, `type: [X, "null"]` → `type: X, nullable: true`,
/// `const` → single-value `enum`, `examples` → `example`. Walks schema keywords only, so a property named `const`
/// stays a property.
pub(crate) fn to_openapi3(schema: &mut Value, hoisted: &mut Map<String, Value>) {
    let Value::Object(obj) = schema else { return };
    if let Some(Value::String(target)) = obj.get_mut("$ref") {
        *target = rewrite_ref(target);
    }
    for key in ["$defs", "definitions"] {
        if let Some(Value::Object(defs)) = obj.remove(key) {
            for (name, mut def) in defs {
                to_openapi3(&mut def, hoisted);
                hoisted.entry(name).or_insert(def);
            }
        }
    }
    if let Some(Value::Array(types)) = obj.get("type") {
        let nullable = types.iter().any(|t| t == "null");
        let rest: Vec<Value> = types.iter().filter(|t| *t != "null").cloned().collect();
        match rest.len() {
            0 => {
                obj.remove("type");
            }
            1 => {
                obj.insert("type".into(), rest.into_iter().next().unwrap_or(Value::Null));
            }
            // OpenAPI 3.0 has no type unions: leave the value unconstrained.
            _ => {
                obj.remove("type");
            }
        }
        if nullable {
            obj.insert("nullable".into(), Value::Bool(true));
        }
    }
    if let Some(value) = obj.remove("const") {
        obj.insert("enum".into(), Value::Array(vec![value]));
    }
    if let Some(Value::Array(examples)) = obj.remove("examples")
        && let Some(first) = examples.into_iter().next()
    {
        obj.insert("example".into(), first);
    }
    for key in ["properties", "patternProperties"] {
        if let Some(Value::Object(props)) = obj.get_mut(key) {
            props.values_mut().for_each(|s| to_openapi3(s, hoisted));
        }
    }
    for key in ["items", "additionalProperties", "not"] {
        match obj.get_mut(key) {
            Some(Value::Array(list)) => list.iter_mut().for_each(|s| to_openapi3(s, hoisted)),
            Some(s @ Value::Object(_)) => to_openapi3(s, hoisted),
            _ => {}
        }
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(Value::Array(list)) = obj.get_mut(key) {
            list.iter_mut().for_each(|s| to_openapi3(s, hoisted));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_2020_12_constructs_without_touching_property_names() {
        let mut schema = json!({
            "type": "object",
            "properties": {
                "const": {"type": ["string", "null"]},
                "mode": {"const": "x"},
                "child": {"$ref": "#/$defs/io.example.Child"},
            },
            "$defs": {"io.example.Child": {"type": "object", "examples": [1, 2]}},
        });
        let mut hoisted = Map::new();
        to_openapi3(&mut schema, &mut hoisted);
        assert_eq!(schema["properties"]["const"], json!({"type": "string", "nullable": true}));
        assert_eq!(schema["properties"]["mode"], json!({"enum": ["x"]}));
        assert_eq!(schema["properties"]["child"]["$ref"], "#/components/schemas/io.example.Child");
        assert!(schema.get("$defs").is_none());
        assert_eq!(hoisted["io.example.Child"], json!({"type": "object", "example": 1}));
    }

    #[test]
    fn lists_and_kinds_get_gvk_extensions_and_references_resolve() {
        let mut set = SchemaSet::new();
        let list = set.list_ref("", "v1", "Service");
        assert_eq!(list, "#/components/schemas/io.k8s.api.core.v1.ServiceList");
        let schemas = set.finish();
        let svc = &schemas["io.k8s.api.core.v1.Service"];
        assert_eq!(svc["x-kubernetes-group-version-kind"], json!([{"group": "", "version": "v1", "kind": "Service"}]));
        let list = &schemas["io.k8s.api.core.v1.ServiceList"];
        assert_eq!(list["x-kubernetes-group-version-kind"][0]["kind"], "ServiceList");
        assert!(schemas.contains_key("io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"));
        assert!(svc.get("required").is_none(), "metadata is not required upstream");
        assert_eq!(list["required"], json!(["items"]));
        // A described reference is wrapped in allOf, as upstream writes it.
        let spec = &svc["properties"]["spec"];
        assert_eq!(spec["allOf"][0]["$ref"], "#/components/schemas/io.k8s.api.core.v1.ServiceSpec");
        assert!(spec.get("$ref").is_none());
    }

    #[test]
    fn unknown_kinds_get_an_open_object() {
        let mut set = SchemaSet::new();
        let reference = set.kind_ref("example.com", "v1", "Widget");
        let schemas = set.finish();
        let widget = &schemas[reference.trim_start_matches(SCHEMA_REF_PREFIX)];
        assert_eq!(widget["x-kubernetes-preserve-unknown-fields"], true);
        assert_eq!(widget["x-kubernetes-group-version-kind"][0]["group"], "example.com");
    }
}
