//! Strict decoding: the body is checked against the kind's OpenAPI schema, generated from the `k8s-openapi`
//! type through `schemars`, the way upstream's strict JSON decoder checks it against the Go struct.
//!
//! A value of the wrong JSON type is an error (upstream answers 400 with `json: cannot unmarshal …`); fields the
//! schema does not know are collected as paths (`spec.ports[0].bogus`) for the caller to refuse or warn about.
//! Missing required fields are not decoding errors: validation reports them with their field paths.

use std::collections::HashMap;
use std::sync::OnceLock;

use base64::Engine;
use k8s_openapi::api;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{Map, Value};
use skiff_api::ResourceType;

mod duplicates;
pub use duplicates::duplicate_fields;

/// Why a body could not be decoded at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A value of the wrong type, in upstream's words (`json: cannot unmarshal string into Go struct field …`).
    #[error("{0}")]
    Type(String),
    /// The body is not JSON.
    #[error("{0}")]
    Syntax(String),
    /// A kind this crate has no schema for.
    #[error("no schema for kind {0}")]
    UnknownKind(String),
}

/// One kind's schema: the root and its `$defs`.
struct KindSchema {
    root: Value,
    defs: Map<String, Value>,
}

fn schema_of<T: JsonSchema>() -> KindSchema {
    let mut generator = SchemaGenerator::default();
    let mut root = generator.root_schema_for::<T>().to_value();
    let defs = match root.as_object_mut().and_then(|m| m.remove("$defs")) {
        Some(Value::Object(defs)) => defs,
        _ => Map::new(),
    };
    KindSchema { root, defs }
}

fn schemas() -> &'static HashMap<(&'static str, &'static str), KindSchema> {
    static SCHEMAS: OnceLock<HashMap<(&'static str, &'static str), KindSchema>> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        let mut m = HashMap::new();
        m.insert(("", "Namespace"), schema_of::<api::core::v1::Namespace>());
        m.insert(("", "Pod"), schema_of::<api::core::v1::Pod>());
        m.insert(("", "Service"), schema_of::<api::core::v1::Service>());
        m.insert(("", "Endpoints"), schema_of::<api::core::v1::Endpoints>());
        m.insert(("", "Node"), schema_of::<api::core::v1::Node>());
        m.insert(("", "Event"), schema_of::<api::core::v1::Event>());
        m.insert(("", "ConfigMap"), schema_of::<api::core::v1::ConfigMap>());
        m.insert(("", "Secret"), schema_of::<api::core::v1::Secret>());
        m.insert(("", "ServiceAccount"), schema_of::<api::core::v1::ServiceAccount>());
        m.insert(("apps", "Deployment"), schema_of::<api::apps::v1::Deployment>());
        m.insert(("apps", "ReplicaSet"), schema_of::<api::apps::v1::ReplicaSet>());
        m.insert(("discovery.k8s.io", "EndpointSlice"), schema_of::<api::discovery::v1::EndpointSlice>());
        m.insert(("events.k8s.io", "Event"), schema_of::<api::events::v1::Event>());
        m.insert(("coordination.k8s.io", "Lease"), schema_of::<api::coordination::v1::Lease>());
        m
    })
}

/// Checks `obj` against the schema of `rt`'s kind. Returns the paths of fields the schema does not know.
pub fn decode_strict(rt: &ResourceType, obj: &Value) -> Result<Vec<String>, DecodeError> {
    let schema = schemas().get(&(rt.group, rt.kind)).ok_or_else(|| DecodeError::UnknownKind(rt.kind.to_string()))?;
    if !obj.is_object() {
        return Err(DecodeError::Type(format!(
            "json: cannot unmarshal {} into Go value of type {}.{}",
            json_type(obj),
            go_package(rt),
            rt.kind
        )));
    }
    let mut walk = Walk { defs: &schema.defs, unknown: Vec::new() };
    walk.check(&schema.root, obj, &mut Path { json: String::new(), go: String::new(), strukt: rt.kind.to_string() })?;
    Ok(walk.unknown)
}

fn go_package(rt: &ResourceType) -> &'static str {
    rt.version
}

/// Where the walk is: the JSON path with indices (for unknown fields), the dotted Go path without them and
/// the innermost struct (for type errors, as Go's `encoding/json` names them).
#[derive(Clone)]
struct Path {
    json: String,
    go: String,
    strukt: String,
}

impl Path {
    fn field(&self, key: &str) -> Path {
        let join = |p: &str| if p.is_empty() { key.to_string() } else { format!("{p}.{key}") };
        Path { json: join(&self.json), go: join(&self.go), strukt: self.strukt.clone() }
    }

    fn index(&self, i: usize) -> Path {
        Path { json: format!("{}[{i}]", self.json), go: self.go.clone(), strukt: self.strukt.clone() }
    }
}

struct Walk {
    defs: &'static Map<String, Value>,
    unknown: Vec<String>,
}

impl Walk {
    fn resolve(&self, schema: &'static Value, path: &mut Path) -> &'static Value {
        let mut schema = schema;
        for _ in 0..8 {
            let Some(name) = schema.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix("#/$defs/")) else {
                break;
            };
            let Some(def) = self.defs.get(name) else { break };
            if def.get("properties").is_some() {
                path.strukt = name.rsplit('.').next().unwrap_or(name).to_string();
            }
            schema = def;
        }
        schema
    }

    fn check(&mut self, schema: &'static Value, v: &Value, path: &mut Path) -> Result<(), DecodeError> {
        if v.is_null() {
            return Ok(());
        }
        let mut here = path.clone();
        let quantity = schema.get("$ref").and_then(Value::as_str).is_some_and(|r| r.ends_with(".Quantity"));
        let schema = self.resolve(schema, &mut here);
        if schema.get("x-kubernetes-int-or-string").and_then(Value::as_bool) == Some(true) {
            return match v {
                Value::String(_) => Ok(()),
                Value::Number(n) if quantity || n.is_i64() || n.is_u64() => Ok(()),
                _ => Err(self.type_error(v, &here, "intstr.IntOrString")),
            };
        }
        match schema.get("type").and_then(Value::as_str) {
            Some("object") => self.check_object(schema, v, &here),
            Some("array") => {
                let Value::Array(items) = v else {
                    return Err(self.type_error(v, &here, &go_type(schema, self.defs)));
                };
                if let Some(item_schema) = schema.get("items") {
                    for (i, item) in items.iter().enumerate() {
                        self.check(item_schema, item, &mut here.index(i))?;
                    }
                }
                Ok(())
            }
            Some("string") => {
                let Value::String(s) = v else { return Err(self.type_error(v, &here, "string")) };
                if schema.get("format").and_then(Value::as_str) == Some("byte")
                    && let Err(e) = base64::engine::general_purpose::STANDARD.decode(s)
                {
                    return Err(DecodeError::Type(base64_message(&e)));
                }
                Ok(())
            }
            Some("integer") => {
                let bits32 = schema.get("format").and_then(Value::as_str) == Some("int32");
                let ty = if bits32 { "int32" } else { "int64" };
                let fits = match v.as_i64() {
                    Some(i) => !bits32 || i32::try_from(i).is_ok(),
                    None => false,
                };
                if fits { Ok(()) } else { Err(self.type_error(v, &here, ty)) }
            }
            Some("number") => {
                if v.is_number() {
                    Ok(())
                } else {
                    Err(self.type_error(v, &here, "float64"))
                }
            }
            Some("boolean") => {
                if v.is_boolean() {
                    Ok(())
                } else {
                    Err(self.type_error(v, &here, "bool"))
                }
            }
            _ => Ok(()),
        }
    }

    fn check_object(&mut self, schema: &'static Value, v: &Value, path: &Path) -> Result<(), DecodeError> {
        let Value::Object(map) = v else {
            return Err(self.type_error(v, path, &go_type(schema, self.defs)));
        };
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            for (key, value) in map {
                match props.get(key) {
                    Some(prop) => self.check(prop, value, &mut path.field(key))?,
                    None => self.unknown.push(path.field(key).json),
                }
            }
        } else if let Some(item_schema) = schema.get("additionalProperties").filter(|s| s.is_object()) {
            for (key, value) in map {
                let mut at = path.clone();
                at.json = format!("{}.{key}", path.json);
                self.check(item_schema, value, &mut at)?;
            }
        }
        Ok(())
    }

    fn type_error(&self, v: &Value, path: &Path, go_ty: &str) -> DecodeError {
        let what = match v {
            Value::Number(n) if !(n.is_i64() || n.is_u64()) || go_ty.starts_with("int") => format!("number {n}"),
            other => json_type(other).to_string(),
        };
        if path.go.is_empty() {
            return DecodeError::Type(format!("json: cannot unmarshal {what} into Go value of type {go_ty}"));
        }
        DecodeError::Type(format!(
            "json: cannot unmarshal {what} into Go struct field {}.{} of type {go_ty}",
            path.strukt, path.go
        ))
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Go's name for the type a schema describes (`v1.ServicePort`, `[]string`, `map[string]string`).
fn go_type(schema: &Value, defs: &Map<String, Value>) -> String {
    if let Some(name) = schema.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix("#/$defs/")) {
        let short = name.rsplit('.').next().unwrap_or(name);
        let pkg = name.rsplit('.').nth(1).unwrap_or("v1");
        return match defs.get(name) {
            Some(def) if def.get("properties").is_none() && def.get("type").is_some() => go_type(def, defs),
            _ => format!("{pkg}.{short}"),
        };
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("array") => format!("[]{}", schema.get("items").map(|i| go_type(i, defs)).unwrap_or_default()),
        Some("object") => match schema.get("additionalProperties").filter(|s| s.is_object()) {
            Some(item) => format!("map[string]{}", go_type(item, defs)),
            None => "map[string]interface {}".to_string(),
        },
        Some("string") => "string".to_string(),
        Some("integer") => {
            if schema.get("format").and_then(Value::as_str) == Some("int32") { "int32" } else { "int64" }.to_string()
        }
        Some("number") => "float64".to_string(),
        Some("boolean") => "bool".to_string(),
        _ => "interface {}".to_string(),
    }
}

fn base64_message(e: &base64::DecodeError) -> String {
    match e {
        base64::DecodeError::InvalidByte(at, _) | base64::DecodeError::InvalidLastSymbol(at, _) => {
            format!("illegal base64 data at input byte {at}")
        }
        base64::DecodeError::InvalidLength(at) => format!("illegal base64 data at input byte {at}"),
        base64::DecodeError::InvalidPadding => "illegal base64 data at input byte 0".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use skiff_api::resource::lookup;

    fn svc() -> &'static ResourceType {
        lookup("", "v1", "services").expect("services")
    }

    #[test]
    fn clean_bodies_decode_with_no_unknown_fields() {
        let body = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "creationTimestamp": null, "labels": {"app": "web"}},
            "spec": {"ports": [{"port": 80, "targetPort": "http"}], "selector": {"app": "web"}, "clusterIP": null}
        });
        assert_eq!(decode_strict(svc(), &body), Ok(vec![]));
    }

    #[test]
    fn unknown_fields_are_listed_with_indices() {
        let body = json!({"metadata": {"name": "web"}, "spec": {"foo": 1, "ports": [{"port": 80, "bogus": true}]}});
        assert_eq!(decode_strict(svc(), &body), Ok(vec!["spec.foo".to_string(), "spec.ports[0].bogus".to_string()]));
    }

    #[test]
    fn type_errors_read_like_go() {
        let body = json!({"spec": {"ports": [{"port": "80"}]}});
        assert_eq!(
            decode_strict(svc(), &body),
            Err(DecodeError::Type(
                "json: cannot unmarshal string into Go struct field ServicePort.spec.ports.port of type int32".into()
            ))
        );
        let body = json!({"metadata": {"labels": {"a": 1}}});
        assert!(matches!(decode_strict(svc(), &body), Err(DecodeError::Type(m)) if m.contains("of type string")));
        let body = json!({"spec": {"ports": {"port": 80}}});
        assert!(matches!(decode_strict(svc(), &body), Err(DecodeError::Type(m)) if m.contains("[]v1.ServicePort")));
        let body = json!({"spec": {"ports": [{"port": 1.5}]}});
        assert!(matches!(decode_strict(svc(), &body), Err(DecodeError::Type(m)) if m.contains("number 1.5")));
    }

    #[test]
    fn quantities_take_any_number_and_int_or_strings_take_integers() {
        let pods = lookup("", "v1", "pods").expect("pods");
        let pod =
            json!({"spec": {"containers": [{"name": "c", "resources": {"limits": {"cpu": 0.5, "memory": "1Gi"}}}]}});
        assert_eq!(decode_strict(pods, &pod), Ok(vec![]));
        let probe = json!({"spec": {"containers": [{"name": "c", "livenessProbe": {"httpGet": {"port": 1.5}}}]}});
        assert!(decode_strict(pods, &probe).is_err());
    }

    #[test]
    fn secret_data_must_be_base64() {
        let rt = lookup("", "v1", "secrets").expect("secrets");
        assert_eq!(decode_strict(rt, &json!({"data": {"a": "aGVsbG8="}})), Ok(vec![]));
        assert!(matches!(
            decode_strict(rt, &json!({"data": {"a": "!!"}})),
            Err(DecodeError::Type(m)) if m.starts_with("illegal base64 data")
        ));
    }

    #[test]
    fn every_served_kind_has_a_schema() {
        for rt in skiff_api::RESOURCES {
            assert!(decode_strict(rt, &json!({"metadata": {"name": "x"}})).is_ok(), "{}", rt.kind);
        }
    }

    #[test]
    fn duplicates_are_found_in_raw_bodies() {
        let raw = br#"{"metadata": {"name": "a", "name": "b"}, "spec": {"ports": [{"port": 1, "port": 2}]}}"#;
        assert_eq!(duplicate_fields(raw), Ok(vec!["metadata.name".to_string(), "spec.ports[0].port".to_string()]));
        assert!(duplicate_fields(b"{").is_err());
    }
}
