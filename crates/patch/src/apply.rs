//! Server-side apply, minimum viable: create-or-merge without field ownership.
//!
//! Full server-side apply tracks which field manager owns which field (`managedFields`) and removes fields a
//! manager stops applying. Without ownership the only safe rule is the one kubectl relies on (see the second,
//! annotation-only apply it sends after a client-side apply): merge what the applied object mentions and
//! never delete anything else. Maps merge; lists with a merge key merge item by item; primitive merge lists
//! are unioned; every other list, and every scalar, is replaced by the applied value. `null` and patch
//! directives in an applied object have no meaning and are ignored.

use serde_json::{Map, Value};

use crate::PatchError;
use crate::schema::{self, FieldMeta, Strategy};

/// Applies an `application/apply-patch+yaml` body (already decoded to JSON). `original` is `None` when the
/// object does not exist yet: the result is then the applied object itself.
pub fn apply_patch(
    api_version: &str,
    kind: &str,
    original: Option<&Value>,
    applied: &Value,
) -> Result<Value, PatchError> {
    let Value::Object(applied) = applied else { return Err(PatchError::InvalidDocument) };
    let root = schema::root_type(api_version, kind).unwrap_or("Object");
    let base = match original {
        Some(Value::Object(map)) => map.clone(),
        _ => Map::new(),
    };
    apply_map(base, applied, root).map(Value::Object)
}

fn apply_map(
    mut original: Map<String, Value>,
    applied: &Map<String, Value>,
    ty: &str,
) -> Result<Map<String, Value>, PatchError> {
    for (key, value) in applied {
        if value.is_null() || is_directive(key) {
            continue;
        }
        let meta = schema::field(ty, key);
        match original.get_mut(key) {
            Some(slot) => {
                let merged = apply_value(std::mem::take(slot), value, meta)?;
                *slot = merged;
            }
            None => {
                original.insert(key.clone(), apply_value(Value::Null, value, meta)?);
            }
        }
    }
    Ok(original)
}

fn apply_value(original: Value, applied: &Value, meta: FieldMeta) -> Result<Value, PatchError> {
    match (original, applied) {
        (Value::Object(o), Value::Object(a)) if meta.strategy != Strategy::Replace => {
            Ok(Value::Object(apply_map(o, a, meta.ty)?))
        }
        (Value::Array(o), Value::Array(a)) if meta.strategy == Strategy::Merge => {
            Ok(Value::Array(apply_list(o, a, meta)?))
        }
        (_, Value::Object(a)) => Ok(Value::Object(apply_map(Map::new(), a, meta.ty)?)),
        (_, Value::Array(a)) => a
            .iter()
            .map(|item| apply_value(Value::Null, item, FieldMeta { strategy: Strategy::Default, ..meta }))
            .collect::<Result<_, _>>()
            .map(Value::Array),
        (_, scalar) => Ok(scalar.clone()),
    }
}

fn apply_list(mut original: Vec<Value>, applied: &[Value], meta: FieldMeta) -> Result<Vec<Value>, PatchError> {
    let item_meta = FieldMeta { strategy: Strategy::Default, ..meta };
    for item in applied {
        if meta.merge_key.is_empty() {
            if !original.contains(item) {
                original.push(apply_value(Value::Null, item, item_meta)?);
            }
            continue;
        }
        let wanted = item
            .get(meta.merge_key)
            .ok_or_else(|| PatchError::NoMergeKey { item: item.to_string(), key: meta.merge_key.to_string() })?;
        match original.iter().position(|o| o.get(meta.merge_key) == Some(wanted)) {
            Some(i) => {
                let merged = apply_value(std::mem::take(&mut original[i]), item, item_meta)?;
                original[i] = merged;
            }
            None => original.push(apply_value(Value::Null, item, item_meta)?),
        }
    }
    Ok(original)
}

fn is_directive(key: &str) -> bool {
    key == "$patch"
        || key == "$retainKeys"
        || key.starts_with("$setElementOrder/")
        || key.starts_with("$deleteFromPrimitiveList/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "uid": "u1", "resourceVersion": "5",
                "labels": {"app": "web"}, "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}\n"},
                "finalizers": ["a"]},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                    "containers": [
                        {"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 80, "protocol": "TCP"}],
                         "args": ["-a", "-b"]},
                        {"name": "sidecar", "image": "busybox"}]}}},
            "status": {"replicas": 2}
        })
    }

    #[test]
    fn creates_when_absent() {
        let applied = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "labels": null},
            "spec": {"ports": [{"port": 80}], "$patch": "replace"}});
        let out = apply_patch("v1", "Service", None, &applied).unwrap();
        assert_eq!(
            out,
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
            "spec": {"ports": [{"port": 80}]}})
        );
    }

    #[test]
    fn annotation_only_apply_keeps_the_spec() {
        // kubectl's second apply after a client-side apply (`fieldManager=kubectl-last-applied`).
        let applied = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web",
            "namespace": "default", "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"x\":1}\n"}}});
        let out = apply_patch("apps/v1", "Deployment", Some(&deployment()), &applied).unwrap();
        let mut expected = deployment();
        expected["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] = json!("{\"x\":1}\n");
        assert_eq!(out, expected);
    }

    #[test]
    fn merges_lists_by_key_and_replaces_atomic_lists() {
        let applied = json!({"metadata": {"finalizers": ["b", "a"]}, "spec": {"replicas": 3, "template": {"spec": {
            "containers": [{"name": "web", "image": "nginx:1.28", "args": ["-c"],
                "ports": [{"containerPort": 8080}]},
                {"name": "new", "image": "redis"}]}}}});
        let out = apply_patch("apps/v1", "Deployment", Some(&deployment()), &applied).unwrap();
        assert_eq!(out["spec"]["replicas"], 3);
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "b"]));
        let containers = &out["spec"]["template"]["spec"]["containers"];
        assert_eq!(containers.as_array().map(Vec::len), Some(3));
        assert_eq!(containers[0]["image"], "nginx:1.28");
        assert_eq!(containers[0]["args"], json!(["-c"]));
        assert_eq!(containers[0]["ports"], json!([{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 8080}]));
        assert_eq!(containers[1]["name"], "sidecar");
        assert_eq!(containers[2], json!({"name": "new", "image": "redis"}));
        assert_eq!(out["status"]["replicas"], 2);
    }

    #[test]
    fn nulls_never_delete() {
        let applied = json!({"metadata": {"labels": null}, "spec": {"replicas": null}});
        let out = apply_patch("apps/v1", "Deployment", Some(&deployment()), &applied).unwrap();
        assert_eq!(out, deployment());
    }

    #[test]
    fn merge_list_items_need_their_key() {
        let applied = json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}});
        let err = apply_patch("apps/v1", "Deployment", Some(&deployment()), &applied).unwrap_err();
        assert!(matches!(err, PatchError::NoMergeKey { .. }), "{err}");
        assert!(matches!(apply_patch("v1", "Pod", None, &json!([])), Err(PatchError::InvalidDocument)));
    }
}
