//! The `paths` of a group/version document: for every resource the collection (list, create, deletecollection),
//! the item (read, replace, patch, delete), the all-namespaces list and each subresource, shaped like upstream's
//! generated operations (`x-kubernetes-action`, `x-kubernetes-group-version-kind`, upstream operation ids and
//! query parameters).
//!
//! PATCH request bodies advertise JSON patch, merge patch and apply patch but deliberately **not**
//! `application/strategic-merge-patch+json`: see the crate documentation.

use serde_json::{Map, Value, json};
use skiff_api::resource::{ResourceType, Subresource};

use super::schemas::SchemaSet;

/// The PATCH body content types advertised for every patch operation.
pub const PATCH_CONTENT_TYPES: &[&str] =
    &["application/json-patch+json", "application/merge-patch+json", "application/apply-patch+yaml"];

/// Adds every path of one resource to `paths`.
pub(crate) fn add_resource(r: &ResourceType, schemas: &mut SchemaSet, paths: &mut Map<String, Value>) {
    let gvk = (r.group, r.version, r.kind);
    let ids = Ids::new(r);
    let collection = if r.namespaced {
        format!("{}/namespaces/{{namespace}}/{}", r.group_version_path(), r.plural)
    } else {
        format!("{}/{}", r.group_version_path(), r.plural)
    };
    let item = format!("{collection}/{{name}}");
    let kind_ref = schemas.kind_ref(r.group, r.version, r.kind);
    let list_ref = schemas.list_ref(r.group, r.version, r.kind);
    let status_ref = schemas.status_ref();
    let delete_options_ref = schemas.delete_options_ref(r.group, r.version);
    let patch_ref = schemas.patch_ref();

    let mut ops = Map::new();
    ops.insert("get".into(), list_op(&ids.id("list", ""), gvk, &list_ref));
    ops.insert("post".into(), create_op(&ids.id("create", ""), gvk, &kind_ref));
    let mut delete_collection =
        delete_op(&ids.collection_id(), gvk, &status_ref, &delete_options_ref, "deletecollection");
    if let Some(Value::Array(params)) = delete_collection.get_mut("parameters") {
        params.extend(list_params());
    }
    ops.insert("delete".into(), delete_collection);
    paths.insert(collection.clone(), path_item(ops, r.namespaced, false));

    let mut ops = Map::new();
    ops.insert("get".into(), read_op(&ids.id("read", ""), gvk, &kind_ref));
    ops.insert("put".into(), replace_op(&ids.id("replace", ""), gvk, &kind_ref));
    ops.insert("patch".into(), patch_op(&ids.id("patch", ""), gvk, &kind_ref, &patch_ref));
    ops.insert("delete".into(), delete_op(&ids.id("delete", ""), gvk, &status_ref, &delete_options_ref, "delete"));
    paths.insert(item.clone(), path_item(ops, r.namespaced, true));

    if r.namespaced {
        let mut ops = Map::new();
        let id = format!("list{}{}{}ForAllNamespaces", ids.group, ids.version, r.kind);
        ops.insert("get".into(), list_op(&id, gvk, &list_ref));
        paths.insert(format!("{}/{}", r.group_version_path(), r.plural), path_item(ops, false, false));
    }

    for sub in r.subresources {
        let ops = subresource_ops(sub, &ids, schemas, &patch_ref);
        if !ops.is_empty() {
            paths.insert(format!("{item}/{}", sub.name), path_item(ops, r.namespaced, true));
        }
    }
}

fn subresource_ops(sub: &Subresource, ids: &Ids, schemas: &mut SchemaSet, patch_ref: &str) -> Map<String, Value> {
    let suffix = capitalize(sub.name);
    let gvk = sub.kind;
    let mut ops = Map::new();
    if sub.kind.2.ends_with("Options") {
        // Streaming subresources (exec, attach, portforward): upstream's `connect` operations answer a string.
        let params = connect_params(sub.name);
        for (verb, method, prefix) in [("get", "get", "connectGet"), ("create", "post", "connectPost")] {
            if sub.verbs.contains(&verb) {
                let mut op = operation(&ids.id(prefix, &suffix), "connect", gvk, params.clone());
                op.insert("responses".into(), string_responses("*/*"));
                ops.insert(method.into(), Value::Object(op));
            }
        }
        return ops;
    }
    if sub.name == "log" {
        let mut op = operation(&ids.id("read", &suffix), "get", gvk, log_params());
        op.insert("responses".into(), string_responses("text/plain"));
        ops.insert("get".into(), Value::Object(op));
        return ops;
    }
    let kind_ref = schemas.kind_ref(gvk.0, gvk.1, gvk.2);
    for verb in sub.verbs {
        let (method, op) = match *verb {
            "get" => ("get", read_op(&ids.id("read", &suffix), gvk, &kind_ref)),
            "update" => ("put", replace_op(&ids.id("replace", &suffix), gvk, &kind_ref)),
            "patch" => ("patch", patch_op(&ids.id("patch", &suffix), gvk, &kind_ref, patch_ref)),
            "create" => ("post", create_op(&ids.id("create", &suffix), gvk, &kind_ref)),
            _ => continue,
        };
        ops.insert(method.into(), op);
    }
    ops
}

/// Upstream's operation id parts: `patch` + `AppsV1` + `Namespaced` + `Deployment` + `Scale`.
struct Ids {
    group: String,
    version: String,
    scope: &'static str,
    kind: &'static str,
}

impl Ids {
    fn new(r: &ResourceType) -> Self {
        let group = if r.group.is_empty() {
            "Core".to_string()
        } else {
            r.group.trim_end_matches(".k8s.io").split('.').map(capitalize).collect()
        };
        let scope = if r.namespaced { "Namespaced" } else { "" };
        Ids { group, version: capitalize(r.version), scope, kind: r.kind }
    }

    fn id(&self, verb: &str, suffix: &str) -> String {
        format!("{verb}{}{}{}{}{suffix}", self.group, self.version, self.scope, self.kind)
    }

    fn collection_id(&self) -> String {
        format!("delete{}{}Collection{}{}", self.group, self.version, self.scope, self.kind)
    }
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn path_item(mut ops: Map<String, Value>, namespaced: bool, named: bool) -> Value {
    let mut params = Vec::new();
    if named {
        params.push(path_param("name", "name of the object"));
    }
    if namespaced {
        params.push(path_param("namespace", "object name and auth scope, such as for teams and projects"));
    }
    params.push(query("pretty", "string", "If 'true', then the output is pretty printed."));
    ops.insert("parameters".into(), Value::Array(params));
    Value::Object(ops)
}

fn operation(id: &str, action: &str, gvk: (&str, &str, &str), parameters: Vec<Value>) -> Map<String, Value> {
    let (group, version, kind) = gvk;
    let tag = format!("{}_{version}", if group.is_empty() { "core" } else { group.trim_end_matches(".k8s.io") });
    let mut op = Map::new();
    op.insert("tags".into(), json!([tag.replace('.', "_")]));
    op.insert("description".into(), Value::String(format!("{action} {kind}")));
    op.insert("operationId".into(), Value::String(id.to_string()));
    op.insert("parameters".into(), Value::Array(parameters));
    op.insert("x-kubernetes-action".into(), Value::String(action.to_string()));
    op.insert("x-kubernetes-group-version-kind".into(), json!({"group": group, "version": version, "kind": kind}));
    op
}

fn with(mut op: Map<String, Value>, body: Option<Value>, responses: Value) -> Value {
    if let Some(body) = body {
        op.insert("requestBody".into(), body);
    }
    op.insert("responses".into(), responses);
    Value::Object(op)
}

fn list_op(id: &str, gvk: (&str, &str, &str), list_ref: &str) -> Value {
    with(operation(id, "list", gvk, list_params()), None, ok_responses(list_ref, &[]))
}

fn create_op(id: &str, gvk: (&str, &str, &str), kind_ref: &str) -> Value {
    let params = vec![dry_run(), field_manager(), field_validation()];
    with(operation(id, "post", gvk, params), Some(object_body(kind_ref)), ok_responses(kind_ref, &["201", "202"]))
}

fn read_op(id: &str, gvk: (&str, &str, &str), kind_ref: &str) -> Value {
    with(operation(id, "get", gvk, Vec::new()), None, ok_responses(kind_ref, &[]))
}

fn replace_op(id: &str, gvk: (&str, &str, &str), kind_ref: &str) -> Value {
    let params = vec![dry_run(), field_manager(), field_validation()];
    with(operation(id, "put", gvk, params), Some(object_body(kind_ref)), ok_responses(kind_ref, &["201"]))
}

fn patch_op(id: &str, gvk: (&str, &str, &str), kind_ref: &str, patch_ref: &str) -> Value {
    let params = vec![
        dry_run(),
        field_manager(),
        field_validation(),
        query(
            "force",
            "boolean",
            "Force is going to \"force\" Apply requests. It must be unset for non-apply patches.",
        ),
    ];
    let content: Map<String, Value> =
        PATCH_CONTENT_TYPES.iter().map(|ct| (ct.to_string(), json!({"schema": {"$ref": patch_ref}}))).collect();
    let body = json!({"content": content, "required": true});
    with(operation(id, "patch", gvk, params), Some(body), ok_responses(kind_ref, &["201"]))
}

fn delete_op(id: &str, gvk: (&str, &str, &str), status_ref: &str, options_ref: &str, action: &str) -> Value {
    let params = vec![
        dry_run(),
        query("gracePeriodSeconds", "integer", "The duration in seconds before the object should be deleted."),
        query("orphanDependents", "boolean", "Deprecated: please use the PropagationPolicy."),
        query("propagationPolicy", "string", "Whether and how garbage collection will be performed."),
    ];
    let body = json!({"content": {"*/*": {"schema": {"$ref": options_ref}}}});
    with(operation(id, action, gvk, params), Some(body), ok_responses(status_ref, &["202"]))
}

fn object_body(kind_ref: &str) -> Value {
    json!({"content": {"*/*": {"schema": {"$ref": kind_ref}}}, "required": true})
}

fn ok_responses(schema_ref: &str, extra_codes: &[&str]) -> Value {
    let mut responses = Map::new();
    for code in std::iter::once("200").chain(extra_codes.iter().copied()) {
        let description = match code {
            "201" => "Created",
            "202" => "Accepted",
            _ => "OK",
        };
        responses.insert(
            code.into(),
            json!({"description": description, "content": {"application/json": {"schema": {"$ref": schema_ref}}}}),
        );
    }
    responses.insert("401".into(), json!({"description": "Unauthorized"}));
    Value::Object(responses)
}

fn string_responses(content_type: &str) -> Value {
    json!({"200": {"description": "OK", "content": {content_type: {"schema": {"type": "string"}}}},
           "401": {"description": "Unauthorized"}})
}

fn path_param(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "path", "description": description, "required": true,
           "schema": {"type": "string", "uniqueItems": true}})
}

fn query(name: &str, ty: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "description": description, "schema": {"type": ty, "uniqueItems": true}})
}

fn dry_run() -> Value {
    query("dryRun", "string", "When present, indicates that modifications should not be persisted. Valid value: All")
}

fn field_manager() -> Value {
    query("fieldManager", "string", "fieldManager is a name associated with the actor or entity making these changes.")
}

fn field_validation() -> Value {
    query(
        "fieldValidation",
        "string",
        "fieldValidation instructs the server on how to handle objects in the request containing unknown or \
         duplicate fields. Valid values are: Ignore, Warn, Strict.",
    )
}

fn list_params() -> Vec<Value> {
    [
        ("allowWatchBookmarks", "boolean"),
        ("continue", "string"),
        ("fieldSelector", "string"),
        ("labelSelector", "string"),
        ("limit", "integer"),
        ("resourceVersion", "string"),
        ("resourceVersionMatch", "string"),
        ("sendInitialEvents", "boolean"),
        ("timeoutSeconds", "integer"),
        ("watch", "boolean"),
    ]
    .iter()
    .map(|(name, ty)| query(name, ty, name))
    .collect()
}

fn log_params() -> Vec<Value> {
    [
        ("container", "string"),
        ("follow", "boolean"),
        ("insecureSkipTLSVerifyBackend", "boolean"),
        ("limitBytes", "integer"),
        ("previous", "boolean"),
        ("sinceSeconds", "integer"),
        ("tailLines", "integer"),
        ("timestamps", "boolean"),
    ]
    .iter()
    .map(|(name, ty)| query(name, ty, name))
    .collect()
}

fn connect_params(subresource: &str) -> Vec<Value> {
    let names: &[(&str, &str)] = match subresource {
        "portforward" => &[("ports", "integer")],
        "exec" => &[
            ("command", "string"),
            ("container", "string"),
            ("stderr", "boolean"),
            ("stdin", "boolean"),
            ("stdout", "boolean"),
            ("tty", "boolean"),
        ],
        _ => &[
            ("container", "string"),
            ("stderr", "boolean"),
            ("stdin", "boolean"),
            ("stdout", "boolean"),
            ("tty", "boolean"),
        ],
    };
    names.iter().map(|(name, ty)| query(name, ty, name)).collect()
}
