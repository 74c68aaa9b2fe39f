//! ConfigMaps and Secrets: key syntax, the 1 MiB total, `immutable`, Secret types and `stringData`.

use base64::Engine;
use serde_json::{Map, Value, json};
use skiff_api::FieldError;

use crate::json::{obj, remove, s, set, set_default};
use crate::names;

const MAX_SIZE: usize = 1024 * 1024;

fn check_keys(data: Option<&Map<String, Value>>, field: &str, errs: &mut Vec<FieldError>) {
    for key in data.into_iter().flat_map(|m| m.keys()) {
        for msg in names::is_config_map_key(key) {
            errs.push(FieldError::invalid(format!("{field}[{key}]"), key.as_str(), msg));
        }
    }
}

fn size(data: Option<&Map<String, Value>>, decode: bool) -> usize {
    data.into_iter()
        .flat_map(|m| m.values())
        .map(|v| {
            let s = v.as_str().unwrap_or("");
            if decode {
                base64::engine::general_purpose::STANDARD.decode(s).map_or(s.len(), |b| b.len())
            } else {
                s.len()
            }
        })
        .sum()
}

pub fn validate_config_map(cm: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let (data, binary) = (obj(cm, "data"), obj(cm, "binaryData"));
    check_keys(data, "data", &mut errs);
    for key in data.into_iter().flat_map(|m| m.keys()) {
        if binary.is_some_and(|b| b.contains_key(key)) {
            errs.push(FieldError::invalid(
                format!("data[{key}]"),
                key.as_str(),
                "duplicate of key present in binaryData",
            ));
        }
    }
    check_keys(binary, "binaryData", &mut errs);
    if size(data, false) + size(binary, true) > MAX_SIZE {
        errs.push(FieldError::too_long("", MAX_SIZE));
    }
    errs
}

fn immutable_update(old: &Value, new: &Value, fields: &[&str]) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if old.get("immutable").and_then(Value::as_bool) != Some(true) {
        return errs;
    }
    for f in fields {
        if !crate::json::same(old.get(*f), new.get(*f)) {
            errs.push(FieldError::forbidden(*f, "field is immutable when `immutable` is set"));
        }
    }
    if new.get("immutable").and_then(Value::as_bool) != Some(true) {
        errs.push(FieldError::forbidden("immutable", "field is immutable when `immutable` is set"));
    }
    errs
}

pub fn validate_config_map_update(old: &Value, new: &Value) -> Vec<FieldError> {
    immutable_update(old, new, &["data", "binaryData"])
}

/// Secrets default to `Opaque`; `stringData` is merged into `data` (base64-encoded), as upstream's conversion
/// does, so it is never stored.
pub fn default_secret(secret: &mut Value) {
    set_default(secret, "type", json!("Opaque"));
    let Some(string_data) = obj(secret, "stringData").cloned() else {
        remove(secret, "stringData");
        return;
    };
    let mut data = obj(secret, "data").cloned().unwrap_or_default();
    for (k, v) in string_data {
        let encoded = base64::engine::general_purpose::STANDARD.encode(v.as_str().unwrap_or(""));
        data.insert(k, Value::String(encoded));
    }
    set(secret, "data", Value::Object(data));
    remove(secret, "stringData");
}

pub fn validate_secret(secret: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let data = obj(secret, "data");
    check_keys(data, "data", &mut errs);
    if size(data, true) > MAX_SIZE {
        errs.push(FieldError::too_long("data", MAX_SIZE));
    }
    let has_key = |k: &str| data.is_some_and(|d| d.contains_key(k));
    let require = |k: &str, errs: &mut Vec<FieldError>| {
        if !has_key(k) {
            errs.push(FieldError::required(format!("data[{k}]"), ""));
        }
    };
    match s(secret, "type") {
        "kubernetes.io/service-account-token" => {
            let key = "kubernetes.io/service-account.name";
            let name = secret.pointer("/metadata/annotations").and_then(|a| a.get(key)).and_then(Value::as_str);
            if name.is_none_or(str::is_empty) {
                errs.push(FieldError::required(format!("metadata.annotations[{key}]"), ""));
            }
        }
        "kubernetes.io/dockercfg" => require(".dockercfg", &mut errs),
        "kubernetes.io/dockerconfigjson" => require(".dockerconfigjson", &mut errs),
        "kubernetes.io/basic-auth" if !has_key("username") && !has_key("password") => {
            errs.push(FieldError::required("data[username]", ""));
            errs.push(FieldError::required("data[password]", ""));
        }
        "kubernetes.io/ssh-auth" => require("ssh-privatekey", &mut errs),
        "kubernetes.io/tls" => {
            require("tls.crt", &mut errs);
            require("tls.key", &mut errs);
        }
        _ => {}
    }
    errs
}

pub fn validate_secret_update(old: &Value, new: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let (o, n) = (s(old, "type"), s(new, "type"));
    if o != n {
        errs.push(FieldError::invalid("type", n, "field is immutable"));
    }
    errs.extend(immutable_update(old, new, &["data"]));
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_map_keys_and_size() {
        assert!(validate_config_map(&json!({"data": {"app.properties": "x", "KEY_1": "y"}})).is_empty());
        let errs = validate_config_map(&json!({"data": {"a/b": "x"}, "binaryData": {"c": "eA=="}}));
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "data[a/b]");
        let big = "x".repeat(MAX_SIZE + 1);
        assert_eq!(validate_config_map(&json!({"data": {"a": big}}))[0].detail, "must have at most 1048576 bytes");
        let errs = validate_config_map(&json!({"data": {"a": "x"}, "binaryData": {"a": "eA=="}}));
        assert_eq!(errs[0].detail, "duplicate of key present in binaryData");
    }

    #[test]
    fn immutable_config_maps_stay_put() {
        let old = json!({"immutable": true, "data": {"a": "1"}});
        let new = json!({"immutable": true, "data": {"a": "2"}});
        assert_eq!(
            validate_config_map_update(&old, &new)[0].to_string(),
            "data: Forbidden: field is immutable when `immutable` is set"
        );
        assert_eq!(validate_config_map_update(&old, &json!({"data": {"a": "1"}}))[0].field, "immutable");
        assert!(validate_config_map_update(&json!({"data": {}}), &new).is_empty());
    }

    #[test]
    fn secrets_merge_string_data_and_check_types() {
        let mut secret = json!({"data": {"a": "eA=="}, "stringData": {"b": "hello"}});
        default_secret(&mut secret);
        assert_eq!(secret, json!({"type": "Opaque", "data": {"a": "eA==", "b": "aGVsbG8="}}));
        let tls = json!({"type": "kubernetes.io/tls", "data": {"tls.crt": ""}});
        let errs = validate_secret(&tls);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].to_string(), "data[tls.key]: Required value");
        let old = json!({"type": "Opaque"});
        assert_eq!(validate_secret_update(&old, &tls)[0].detail, "field is immutable");
        let sa = json!({"type": "kubernetes.io/service-account-token"});
        assert_eq!(validate_secret(&sa)[0].field, "metadata.annotations[kubernetes.io/service-account.name]");
    }
}
