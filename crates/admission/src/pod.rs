//! Pods and pod templates: `ValidatePodSpec` (containers, ports, volumes, probes, policies) under any path
//! prefix, so workloads reuse it for `spec.template.spec`, and `ValidatePodUpdate`'s rule that a pod's spec is
//! immutable except for images, a shorter deadline and added tolerations.

mod defaults;

use serde_json::Value;
use skiff_api::{FieldError, FieldErrorKind};

pub use defaults::{default_pod, default_pod_spec};

use crate::json::{arr, has, int, normalized, s, str_map};
use crate::meta::{validate_labels, validate_unique_dns1123_label};
use crate::names;
use crate::service::validate_port_num_or_name;

const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
const POD_UPDATE_FORBIDDEN: &str = "pod updates may not change fields other than `spec.containers[*].image`,\
`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing \
tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

pub fn validate_pod(pod: &Value) -> Vec<FieldError> {
    validate_pod_spec(pod.get("spec").unwrap_or(&Value::Null), "spec")
}

/// `ValidatePodSpec` with every path under `at` (`spec`, `spec.template.spec`).
pub fn validate_pod_spec(spec: &Value, at: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let volumes = arr(spec, "volumes");
    errs.extend(validate_volumes(volumes, &format!("{at}.volumes")));
    let volume_names: Vec<&str> = volumes.iter().map(|v| s(v, "name")).collect();
    let mut container_names: Vec<&str> = Vec::new();
    let containers = arr(spec, "containers");
    if containers.is_empty() {
        errs.push(FieldError::required(format!("{at}.containers"), ""));
    }
    for key in ["containers", "initContainers"] {
        for (i, c) in arr(spec, key).iter().enumerate() {
            errs.extend(validate_container(c, &format!("{at}.{key}[{i}]"), &mut container_names, &volume_names));
        }
    }
    match s(spec, "restartPolicy") {
        "Always" | "OnFailure" | "Never" => {}
        "" => errs.push(FieldError::required(format!("{at}.restartPolicy"), "")),
        p => errs.push(FieldError::not_supported(format!("{at}.restartPolicy"), p, &["Always", "Never", "OnFailure"])),
    }
    match s(spec, "dnsPolicy") {
        "ClusterFirst" | "ClusterFirstWithHostNet" | "Default" => {}
        "None" => {
            if !has(spec, "dnsConfig") {
                errs.push(FieldError::required(
                    format!("{at}.dnsConfig"),
                    "must provide `dnsConfig` when `dnsPolicy` is None",
                ));
            }
        }
        "" => errs.push(FieldError::required(format!("{at}.dnsPolicy"), "")),
        p => errs.push(FieldError::not_supported(
            format!("{at}.dnsPolicy"),
            p,
            &["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"],
        )),
    }
    errs.extend(validate_labels(&str_map(spec, "nodeSelector"), &format!("{at}.nodeSelector")));
    for field in ["serviceAccountName", "nodeName"] {
        let v = s(spec, field);
        if !v.is_empty() {
            for msg in names::is_dns1123_subdomain(v) {
                errs.push(FieldError::invalid(format!("{at}.{field}"), v, msg));
            }
        }
    }
    for field in ["hostname", "subdomain"] {
        let v = s(spec, field);
        if !v.is_empty() {
            for msg in names::is_dns1123_label(v) {
                errs.push(FieldError::invalid(format!("{at}.{field}"), v, msg));
            }
        }
    }
    if let Some(d) = int(spec, "activeDeadlineSeconds")
        && !(1..=i64::from(i32::MAX)).contains(&d)
    {
        errs.push(FieldError::invalid(
            format!("{at}.activeDeadlineSeconds"),
            d,
            names::inclusive_range_error(1, i64::from(i32::MAX)),
        ));
    }
    if let Some(g) = int(spec, "terminationGracePeriodSeconds")
        && g < 0
    {
        errs.push(FieldError::invalid(
            format!("{at}.terminationGracePeriodSeconds"),
            g,
            "must be greater than or equal to 0",
        ));
    }
    for (i, t) in arr(spec, "tolerations").iter().enumerate() {
        errs.extend(validate_toleration(t, &format!("{at}.tolerations[{i}]")));
    }
    errs
}

fn validate_container<'a>(c: &'a Value, at: &str, seen: &mut Vec<&'a str>, volumes: &[&str]) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name = s(c, "name");
    if name.is_empty() {
        errs.push(FieldError::required(format!("{at}.name"), ""));
    } else {
        errs.extend(validate_unique_dns1123_label(name, &format!("{at}.name"), seen));
    }
    let image = s(c, "image");
    if image.is_empty() {
        errs.push(FieldError::required(format!("{at}.image"), ""));
    } else if image.trim() != image {
        errs.push(FieldError::invalid(format!("{at}.image"), image, "must not have leading or trailing whitespace"));
    }
    match s(c, "imagePullPolicy") {
        "Always" | "IfNotPresent" | "Never" => {}
        "" => errs.push(FieldError::required(format!("{at}.imagePullPolicy"), "")),
        p => errs.push(FieldError::not_supported(
            format!("{at}.imagePullPolicy"),
            p,
            &["Always", "IfNotPresent", "Never"],
        )),
    }
    match s(c, "terminationMessagePolicy") {
        "File" | "FallbackToLogsOnError" => {}
        "" => errs.push(FieldError::required(
            format!("{at}.terminationMessagePolicy"),
            "must be 'File' or 'FallbackToLogsOnError'",
        )),
        p => errs.push(FieldError::invalid(
            format!("{at}.terminationMessagePolicy"),
            p,
            "must be 'File' or 'FallbackToLogsOnError'",
        )),
    }
    errs.extend(validate_container_ports(arr(c, "ports"), &format!("{at}.ports")));
    for (i, e) in arr(c, "env").iter().enumerate() {
        let name = s(e, "name");
        let path = format!("{at}.env[{i}].name");
        if name.is_empty() {
            errs.push(FieldError::required(path, ""));
        } else if name.chars().any(|ch| !ch.is_ascii() || ch.is_ascii_control() || ch == '=') {
            errs.push(FieldError::invalid(
                path,
                name,
                "a valid environment variable name must consist only of printable ASCII characters other than '='",
            ));
        }
    }
    let mut mount_paths: Vec<&str> = Vec::new();
    for (i, m) in arr(c, "volumeMounts").iter().enumerate() {
        let path = format!("{at}.volumeMounts[{i}]");
        let name = s(m, "name");
        if name.is_empty() {
            errs.push(FieldError::required(format!("{path}.name"), ""));
        } else if !volumes.contains(&name) {
            errs.push(FieldError {
                kind: FieldErrorKind::NotFound,
                field: format!("{path}.name"),
                value: Some(name.into()),
                detail: String::new(),
            });
        }
        let mount_path = s(m, "mountPath");
        if mount_path.is_empty() {
            errs.push(FieldError::required(format!("{path}.mountPath"), ""));
        } else if mount_paths.contains(&mount_path) {
            errs.push(FieldError::invalid(format!("{path}.mountPath"), mount_path, "must be unique"));
        } else {
            mount_paths.push(mount_path);
        }
    }
    for (probe, single_success) in [("livenessProbe", true), ("readinessProbe", false), ("startupProbe", true)] {
        if let Some(p) = c.get(probe).filter(|p| p.is_object()) {
            errs.extend(validate_probe(p, &format!("{at}.{probe}"), single_success));
        }
    }
    errs
}

fn validate_container_ports(ports: &[Value], at: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        let path = format!("{at}[{i}]");
        let name = s(p, "name");
        if !name.is_empty() {
            let msgs = names::is_valid_port_name(name);
            if !msgs.is_empty() {
                errs.extend(msgs.into_iter().map(|m| FieldError::invalid(format!("{path}.name"), name, m)));
            } else if seen.contains(&name) {
                errs.push(FieldError::duplicate(format!("{path}.name"), name));
            } else {
                seen.push(name);
            }
        }
        match int(p, "containerPort").unwrap_or(0) {
            0 => errs.push(FieldError::required(format!("{path}.containerPort"), "")),
            n => errs.extend(
                names::is_valid_port_num(n)
                    .into_iter()
                    .map(|m| FieldError::invalid(format!("{path}.containerPort"), n, m)),
            ),
        }
        if let Some(h) = int(p, "hostPort").filter(|h| *h != 0) {
            errs.extend(
                names::is_valid_port_num(h).into_iter().map(|m| FieldError::invalid(format!("{path}.hostPort"), h, m)),
            );
        }
        match s(p, "protocol") {
            "" => errs.push(FieldError::required(format!("{path}.protocol"), "")),
            proto if !PROTOCOLS.contains(&proto) => {
                errs.push(FieldError::not_supported(format!("{path}.protocol"), proto, PROTOCOLS));
            }
            _ => {}
        }
    }
    errs
}

fn validate_probe(p: &Value, at: &str, single_success: bool) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let handlers: Vec<&str> = ["exec", "httpGet", "tcpSocket", "grpc"].into_iter().filter(|h| has(p, h)).collect();
    match handlers.as_slice() {
        [] => errs.push(FieldError::required(at, "must specify a handler type")),
        [_] => {}
        [_, second, ..] => {
            errs.push(FieldError::forbidden(format!("{at}.{second}"), "may not specify more than 1 handler type"));
        }
    }
    if let Some(h) = p.get("httpGet").filter(|h| h.is_object()) {
        errs.extend(validate_port_num_or_name(h.get("port"), &format!("{at}.httpGet.port")));
    }
    if let Some(t) = p.get("tcpSocket").filter(|h| h.is_object()) {
        errs.extend(validate_port_num_or_name(t.get("port"), &format!("{at}.tcpSocket.port")));
    }
    if let Some(e) = p.get("exec").filter(|h| h.is_object())
        && arr(e, "command").is_empty()
    {
        errs.push(FieldError::required(format!("{at}.exec.command"), ""));
    }
    for f in ["initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold", "failureThreshold"] {
        if let Some(v) = int(p, f)
            && v < 0
        {
            errs.push(FieldError::invalid(format!("{at}.{f}"), v, "must be greater than or equal to 0"));
        }
    }
    if single_success
        && let Some(v) = int(p, "successThreshold")
        && v != 1
    {
        errs.push(FieldError::invalid(format!("{at}.successThreshold"), v, "must be 1"));
    }
    errs
}

fn validate_volumes(volumes: &[Value], at: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for (i, v) in volumes.iter().enumerate() {
        let path = format!("{at}[{i}]");
        let name = s(v, "name");
        if name.is_empty() {
            errs.push(FieldError::required(format!("{path}.name"), ""));
        } else {
            errs.extend(validate_unique_dns1123_label(name, &format!("{path}.name"), &mut seen));
        }
        let sources: Vec<&str> = v
            .as_object()
            .into_iter()
            .flat_map(|m| m.iter())
            .filter(|(k, val)| k.as_str() != "name" && !val.is_null())
            .map(|(k, _)| k.as_str())
            .collect();
        match sources.as_slice() {
            [] => errs.push(FieldError::required(path.clone(), "must specify a volume type")),
            [_] => {}
            [_, second, ..] => {
                errs.push(FieldError::forbidden(format!("{path}.{second}"), "may not specify more than 1 volume type"));
            }
        }
        if let Some(cm) = v.get("configMap").filter(|x| x.is_object())
            && s(cm, "name").is_empty()
        {
            errs.push(FieldError::required(format!("{path}.configMap.name"), ""));
        }
        if let Some(sec) = v.get("secret").filter(|x| x.is_object())
            && s(sec, "secretName").is_empty()
        {
            errs.push(FieldError::required(format!("{path}.secret.secretName"), ""));
        }
        for src in ["configMap", "secret", "projected", "downwardAPI"] {
            if let Some(mode) = v.get(src).and_then(|x| int(x, "defaultMode"))
                && !(0..=0o777).contains(&mode)
            {
                errs.push(FieldError::invalid(
                    format!("{path}.{src}.defaultMode"),
                    mode,
                    "must be a number between 0 and 0777 (octal), both inclusive",
                ));
            }
        }
        if let Some(hp) = v.get("hostPath").filter(|x| x.is_object())
            && s(hp, "path").is_empty()
        {
            errs.push(FieldError::required(format!("{path}.hostPath.path"), ""));
        }
    }
    errs
}

fn validate_toleration(t: &Value, at: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let key = s(t, "key");
    if !key.is_empty() {
        errs.extend(crate::meta::validate_label_name(key, &format!("{at}.key")));
    }
    match s(t, "operator") {
        "" | "Equal" => {
            if key.is_empty() {
                errs.push(FieldError::invalid(
                    format!("{at}.operator"),
                    s(t, "operator"),
                    "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
                ));
            }
            let value = s(t, "value");
            for msg in names::is_label_value(value) {
                errs.push(FieldError::invalid(format!("{at}.value"), value, msg));
            }
        }
        "Exists" => {
            if !s(t, "value").is_empty() {
                errs.push(FieldError::invalid(
                    format!("{at}.operator"),
                    t.clone(),
                    "value must be empty when `operator` is 'Exists'",
                ));
            }
        }
        op => errs.push(FieldError::not_supported(format!("{at}.operator"), op, &["Equal", "Exists"])),
    }
    if has(t, "tolerationSeconds") && s(t, "effect") != "NoExecute" {
        errs.push(FieldError::invalid(
            format!("{at}.effect"),
            s(t, "effect"),
            "effect must be 'NoExecute' when `tolerationSeconds` is set",
        ));
    }
    match s(t, "effect") {
        "" | "NoSchedule" | "PreferNoSchedule" | "NoExecute" => {}
        e => errs.push(FieldError::not_supported(
            format!("{at}.effect"),
            e,
            &["NoExecute", "NoSchedule", "PreferNoSchedule"],
        )),
    }
    errs
}

/// `ValidatePodUpdate`'s spec rule: after masking the fields a pod may change, old and new specs must match.
pub fn validate_pod_update(old: &Value, new: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let old_spec = old.get("spec").cloned().unwrap_or(Value::Null);
    let mut munged = new.get("spec").cloned().unwrap_or(Value::Null);
    for key in ["containers", "initContainers"] {
        let old_images: Vec<Value> =
            arr(&old_spec, key).iter().map(|c| c.get("image").cloned().unwrap_or(Value::Null)).collect();
        if let Some(list) = munged.get_mut(key).and_then(Value::as_array_mut)
            && list.len() == old_images.len()
        {
            for (c, image) in list.iter_mut().zip(old_images) {
                crate::json::set(c, "image", image);
            }
        }
    }
    let (old_deadline, new_deadline) = (int(&old_spec, "activeDeadlineSeconds"), int(&munged, "activeDeadlineSeconds"));
    match (old_deadline, new_deadline) {
        (Some(_), None) => errs.push(FieldError::invalid(
            "spec.activeDeadlineSeconds",
            Value::Null,
            "must not update from a positive integer to nil value",
        )),
        (Some(o), Some(n)) if n > o => {
            errs.push(FieldError::invalid(
                "spec.activeDeadlineSeconds",
                n,
                "must be less than or equal to previous value",
            ));
        }
        _ => {}
    }
    if new_deadline.is_some() {
        match old_spec.get("activeDeadlineSeconds") {
            Some(v) => crate::json::set(&mut munged, "activeDeadlineSeconds", v.clone()),
            None => crate::json::remove(&mut munged, "activeDeadlineSeconds"),
        }
    }
    let old_tolerations = arr(&old_spec, "tolerations");
    let new_tolerations = arr(&munged, "tolerations");
    if old_tolerations.iter().all(|t| new_tolerations.iter().any(|n| normalized(n) == normalized(t))) {
        crate::json::set(&mut munged, "tolerations", Value::Array(old_tolerations.to_vec()));
    }
    if int(&old_spec, "terminationGracePeriodSeconds").is_some_and(|g| g < 0)
        && int(&munged, "terminationGracePeriodSeconds") == Some(1)
        && let Some(v) = old_spec.get("terminationGracePeriodSeconds")
    {
        crate::json::set(&mut munged, "terminationGracePeriodSeconds", v.clone());
    }
    if normalized(&munged) != normalized(&old_spec) {
        errs.push(FieldError::forbidden("spec", POD_UPDATE_FORBIDDEN));
    }
    errs
}

#[cfg(test)]
mod tests;
