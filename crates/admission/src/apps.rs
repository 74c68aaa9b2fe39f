//! Deployments and ReplicaSets (`apps/v1`): `SetDefaults_Deployment` / `SetDefaults_ReplicaSet` (with the pod
//! template's defaults) and `ValidateDeployment` / `ValidateReplicaSet`, including the selector rules.

use serde_json::{Value, json};
use skiff_api::FieldError;

use crate::json::{child, has, int, obj, s, same, set_default, str_map};
use crate::meta::{
    selector_is_empty, selector_matches, validate_annotations, validate_label_selector, validate_labels,
};
use crate::pod::{default_pod_spec, validate_pod_spec};

fn default_template(obj_: &mut Value) {
    let spec = child(obj_, "spec");
    default_pod_spec(child(child(spec, "template"), "spec"));
}

pub fn default_deployment(d: &mut Value) {
    default_template(d);
    let spec = child(d, "spec");
    set_default(spec, "replicas", json!(1));
    let strategy = child(spec, "strategy");
    set_default(strategy, "type", json!("RollingUpdate"));
    if s(strategy, "type") == "RollingUpdate" {
        let ru = child(strategy, "rollingUpdate");
        set_default(ru, "maxUnavailable", json!("25%"));
        set_default(ru, "maxSurge", json!("25%"));
    }
    set_default(spec, "revisionHistoryLimit", json!(10));
    set_default(spec, "progressDeadlineSeconds", json!(600));
}

pub fn default_replica_set(rs: &mut Value) {
    default_template(rs);
    set_default(child(rs, "spec"), "replicas", json!(1));
}

fn nonnegative(spec: &Value, field: &str, errs: &mut Vec<FieldError>) {
    if let Some(v) = int(spec, field)
        && v < 0
    {
        errs.push(FieldError::invalid(format!("spec.{field}"), v, "must be greater than or equal to 0"));
    }
}

/// What Deployments and ReplicaSets share: replicas, selector and template.
fn validate_workload(o: &Value, kind: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = o.get("spec").unwrap_or(&Value::Null);
    nonnegative(spec, "replicas", &mut errs);
    nonnegative(spec, "minReadySeconds", &mut errs);
    let template = spec.get("template").unwrap_or(&Value::Null);
    let template_labels = template.get("metadata").map(|m| str_map(m, "labels")).unwrap_or_default();
    match spec.get("selector").filter(|s| !s.is_null()) {
        None => errs.push(FieldError::required("spec.selector", "")),
        Some(sel) => {
            errs.extend(validate_label_selector(sel, "spec.selector"));
            if selector_is_empty(sel) {
                errs.push(FieldError::invalid(
                    "spec.selector",
                    sel.clone(),
                    format!("empty selector is invalid for {kind}"),
                ));
            } else if !selector_matches(sel, &template_labels) {
                let labels = template.pointer("/metadata/labels").cloned().unwrap_or(Value::Null);
                errs.push(FieldError::invalid(
                    "spec.template.metadata.labels",
                    labels,
                    "`selector` does not match template `labels`",
                ));
            }
        }
    }
    if !has(spec, "template") {
        errs.push(FieldError::required("spec.template", ""));
        return errs;
    }
    let meta = template.get("metadata").unwrap_or(&Value::Null);
    errs.extend(validate_labels(&str_map(meta, "labels"), "spec.template.metadata.labels"));
    errs.extend(validate_annotations(&str_map(meta, "annotations"), "spec.template.metadata.annotations"));
    let pod_spec = template.get("spec").unwrap_or(&Value::Null);
    errs.extend(validate_pod_spec(pod_spec, "spec.template.spec"));
    let restart = s(pod_spec, "restartPolicy");
    if restart != "Always" {
        errs.push(FieldError::not_supported("spec.template.spec.restartPolicy", restart, &["Always"]));
    }
    if has(pod_spec, "activeDeadlineSeconds") {
        errs.push(FieldError::forbidden(
            "spec.template.spec.activeDeadlineSeconds",
            "activeDeadlineSeconds in ReplicaSet is not Supported",
        ));
    }
    errs
}

pub fn validate_replica_set(rs: &Value) -> Vec<FieldError> {
    validate_workload(rs, "replicaset")
}

pub fn validate_deployment(d: &Value) -> Vec<FieldError> {
    let mut errs = validate_workload(d, "deployment");
    let spec = d.get("spec").unwrap_or(&Value::Null);
    let strategy = spec.get("strategy").unwrap_or(&Value::Null);
    match s(strategy, "type") {
        "Recreate" => {
            if has(strategy, "rollingUpdate") {
                errs.push(FieldError::forbidden(
                    "spec.strategy.rollingUpdate",
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        "RollingUpdate" => {
            if let Some(ru) = obj(strategy, "rollingUpdate") {
                let ru = Value::Object(ru.clone());
                errs.extend(validate_rolling_update(&ru));
            }
        }
        "" => errs.push(FieldError::required("spec.strategy.type", "")),
        t => errs.push(FieldError::not_supported("spec.strategy.type", t, &["Recreate", "RollingUpdate"])),
    }
    nonnegative(spec, "revisionHistoryLimit", &mut errs);
    if let Some(p) = int(spec, "progressDeadlineSeconds") {
        if p < 0 {
            errs.push(FieldError::invalid("spec.progressDeadlineSeconds", p, "must be greater than or equal to 0"));
        } else if p <= int(spec, "minReadySeconds").unwrap_or(0) {
            errs.push(FieldError::invalid("spec.progressDeadlineSeconds", p, "must be greater than minReadySeconds"));
        }
    }
    errs
}

/// An int-or-percent that is non-negative and at most 100%; `None` when it is not valid.
fn int_or_percent(v: Option<&Value>, at: &str, errs: &mut Vec<FieldError>) -> Option<i64> {
    match v {
        None | Some(Value::Null) => Some(0),
        Some(Value::String(p)) => {
            let n = p.strip_suffix('%').and_then(|n| n.parse::<i64>().ok());
            match n {
                None => {
                    errs.push(FieldError::invalid(
                        at,
                        p.as_str(),
                        "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%', \
                         or '93%', regex used for validation is '[0-9]+%')",
                    ));
                    None
                }
                Some(n) if n > 100 => {
                    errs.push(FieldError::invalid(at, p.as_str(), "must not be greater than 100%"));
                    None
                }
                Some(n) => Some(n),
            }
        }
        Some(other) => {
            let n = other.as_i64().unwrap_or(0);
            if n < 0 {
                errs.push(FieldError::invalid(at, n, "must be greater than or equal to 0"));
                return None;
            }
            Some(n)
        }
    }
}

fn validate_rolling_update(ru: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let at = "spec.strategy.rollingUpdate";
    let unavailable = int_or_percent(ru.get("maxUnavailable"), &format!("{at}.maxUnavailable"), &mut errs);
    let surge = int_or_percent(ru.get("maxSurge"), &format!("{at}.maxSurge"), &mut errs);
    if unavailable == Some(0) && surge == Some(0) {
        let v = ru.get("maxUnavailable").cloned().unwrap_or(json!(0));
        errs.push(FieldError::invalid(format!("{at}.maxUnavailable"), v, "may not be 0 when `maxSurge` is 0"));
    }
    errs
}

/// The selector of an `apps/v1` workload is immutable.
pub fn validate_update(old: &Value, new: &Value) -> Vec<FieldError> {
    let (o, n) = (old.pointer("/spec/selector"), new.pointer("/spec/selector"));
    if same(o, n) {
        return Vec::new();
    }
    vec![FieldError::invalid("spec.selector", n.cloned().unwrap_or(Value::Null), "field is immutable")]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment() -> Value {
        json!({"metadata": {"name": "web", "namespace": "default"}, "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}})
    }

    #[test]
    fn deployments_get_upstream_defaults() {
        let mut d = deployment();
        default_deployment(&mut d);
        let spec = &d["spec"];
        assert_eq!(spec["replicas"], 1);
        assert_eq!(
            spec["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        );
        assert_eq!(spec["revisionHistoryLimit"], 10);
        assert_eq!(spec["progressDeadlineSeconds"], 600);
        assert_eq!(spec["template"]["spec"]["restartPolicy"], "Always");
        assert_eq!(spec["template"]["spec"]["containers"][0]["imagePullPolicy"], "Always");
        assert!(spec["template"]["spec"].get("serviceAccountName").is_none(), "pod-only defaults stay off templates");
        assert!(validate_deployment(&d).is_empty(), "{:?}", validate_deployment(&d));
    }

    #[test]
    fn selector_must_match_template() {
        let mut d = deployment();
        d["spec"]["template"]["metadata"]["labels"] = json!({"app": "other"});
        default_deployment(&mut d);
        let errs = validate_deployment(&d);
        assert_eq!(errs.len(), 1);
        assert_eq!(
            errs[0].to_string(),
            "spec.template.metadata.labels: Invalid value: {\"app\":\"other\"}: `selector` does not match template `labels`"
        );
        let mut d = deployment();
        crate::json::remove(&mut d["spec"], "selector");
        default_deployment(&mut d);
        assert_eq!(validate_deployment(&d)[0].to_string(), "spec.selector: Required value");
        let mut d = deployment();
        d["spec"]["selector"] = json!({});
        default_deployment(&mut d);
        assert!(validate_deployment(&d)[0].detail.contains("empty selector is invalid for deployment"));
    }

    #[test]
    fn template_is_validated_under_its_path() {
        let mut d = deployment();
        d["spec"]["replicas"] = json!(-1);
        d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("");
        d["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
        default_deployment(&mut d);
        let fields: Vec<String> = validate_deployment(&d).into_iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            vec!["spec.replicas", "spec.template.spec.containers[0].image", "spec.template.spec.restartPolicy"]
        );
    }

    #[test]
    fn rolling_update_bounds() {
        let mut d = deployment();
        d["spec"]["strategy"] =
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "0%"}});
        default_deployment(&mut d);
        assert_eq!(validate_deployment(&d)[0].detail, "may not be 0 when `maxSurge` is 0");
        d["spec"]["strategy"] = json!({"type": "Recreate", "rollingUpdate": {}});
        assert_eq!(validate_deployment(&d)[0].field, "spec.strategy.rollingUpdate");
    }

    #[test]
    fn selector_is_immutable() {
        let old = deployment();
        let mut new = deployment();
        new["spec"]["selector"]["matchLabels"]["tier"] = json!("fe");
        assert_eq!(validate_update(&old, &new)[0].detail, "field is immutable");
        assert!(validate_update(&old, &deployment()).is_empty());
    }

    #[test]
    fn replica_sets_default_and_validate() {
        let mut rs = deployment();
        default_replica_set(&mut rs);
        assert_eq!(rs["spec"]["replicas"], 1);
        assert!(rs["spec"].get("strategy").is_none());
        assert!(validate_replica_set(&rs).is_empty());
    }
}
