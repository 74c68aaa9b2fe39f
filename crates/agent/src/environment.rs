//! The environment a container starts with, as the kubelet builds it: the Service environment variables
//! (`<SVC>_SERVICE_HOST`, `<SVC>_SERVICE_PORT` and the docker-link forms) for the Services of the pod's namespace
//! plus the `kubernetes` Service, then `envFrom`, then `env` (with `valueFrom` and `$(VAR)` references), and the
//! `command`/`args` expansion that uses them.

use std::collections::BTreeMap;

use base64::Engine;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Service};

/// What `valueFrom` and `envFrom` may read.
#[derive(Default)]
pub struct Sources<'a> {
    pub config_maps: BTreeMap<String, &'a ConfigMap>,
    pub secrets: BTreeMap<String, &'a Secret>,
    /// The pod's IP and its node's IP and name, for `fieldRef`.
    pub pod_ip: String,
    pub host_ip: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvError {
    #[error("configmap {0:?} not found")]
    ConfigMapNotFound(String),
    #[error("secret {0:?} not found")]
    SecretNotFound(String),
    #[error("couldn't find key {key} in {kind} {name}")]
    KeyNotFound { kind: &'static str, name: String, key: String },
    #[error("unsupported fieldRef {0:?}")]
    UnsupportedField(String),
}

fn env_name(service: &str) -> String {
    service.to_uppercase().replace('-', "_")
}

/// The Service variables for one Service (nothing for headless and ExternalName Services).
fn service_vars(svc: &Service, out: &mut Vec<(String, String)>) {
    let Some(spec) = &svc.spec else { return };
    let Some(ip) = spec.cluster_ip.as_deref().filter(|ip| !ip.is_empty() && *ip != "None") else { return };
    let ports = spec.ports.clone().unwrap_or_default();
    let Some(first) = ports.first() else { return };
    let name = env_name(svc.metadata.name.as_deref().unwrap_or_default());
    out.push((format!("{name}_SERVICE_HOST"), ip.to_string()));
    out.push((format!("{name}_SERVICE_PORT"), first.port.to_string()));
    for p in &ports {
        if let Some(pname) = p.name.as_deref().filter(|n| !n.is_empty()) {
            out.push((format!("{name}_SERVICE_PORT_{}", env_name(pname)), p.port.to_string()));
        }
    }
    let proto = |p: &k8s_openapi::api::core::v1::ServicePort| p.protocol.clone().unwrap_or_else(|| "TCP".into());
    out.push((format!("{name}_PORT"), format!("{}://{ip}:{}", proto(first).to_lowercase(), first.port)));
    for p in &ports {
        let proto = proto(p);
        let prefix = format!("{name}_PORT_{}_{}", p.port, proto.to_uppercase());
        out.push((prefix.clone(), format!("{}://{ip}:{}", proto.to_lowercase(), p.port)));
        out.push((format!("{prefix}_PROTO"), proto.to_lowercase()));
        out.push((format!("{prefix}_PORT"), p.port.to_string()));
        out.push((format!("{prefix}_ADDR"), ip.to_string()));
    }
}

/// The Service variables of a pod: every Service of its namespace when `enableServiceLinks` (the default), and
/// always the `kubernetes` Service of `default`. `services` are the Services of the pod's namespace and `default`.
pub fn service_links(pod: &Pod, services: &[Service]) -> Vec<(String, String)> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let links = pod.spec.as_ref().and_then(|s| s.enable_service_links).unwrap_or(true);
    let mut chosen: BTreeMap<String, &Service> = BTreeMap::new();
    for svc in services {
        let svc_ns = svc.metadata.namespace.as_deref().unwrap_or("default");
        let name = svc.metadata.name.clone().unwrap_or_default();
        let master = svc_ns == "default" && name == "kubernetes";
        if master || (links && svc_ns == ns) {
            chosen.entry(name).or_insert(svc);
        }
    }
    let mut out = Vec::new();
    for svc in chosen.values() {
        service_vars(svc, &mut out);
    }
    out
}

/// Expands `$(VAR)` references against `vars`; `$$(VAR)` escapes to a literal `$(VAR)`; unknown references stay.
pub fn expand(input: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = input;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some(body) = tail.strip_prefix("$(")
            && let Some(end) = body.find(')')
        {
            let name = &body[..end];
            match vars.get(name) {
                Some(v) => out.push_str(v),
                None => out.push_str(&tail[..end + 3]),
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

fn field_ref(pod: &Pod, path: &str, sources: &Sources) -> Result<String, EnvError> {
    let meta = &pod.metadata;
    let spec = pod.spec.clone().unwrap_or_default();
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec.node_name.unwrap_or_default(),
        "spec.serviceAccountName" => spec.service_account_name.unwrap_or_default(),
        "status.podIP" | "status.podIPs" => sources.pod_ip.clone(),
        "status.hostIP" | "status.hostIPs" => sources.host_ip.clone(),
        other => {
            let labels = |prefix: &str, map: &Option<BTreeMap<String, String>>| {
                other
                    .strip_prefix(prefix)
                    .map(|k| k.trim_start_matches("['").trim_end_matches("']").to_string())
                    .map(|k| map.as_ref().and_then(|m| m.get(&k).cloned()).unwrap_or_default())
            };
            labels("metadata.labels", &meta.labels)
                .or_else(|| labels("metadata.annotations", &meta.annotations))
                .ok_or_else(|| EnvError::UnsupportedField(other.into()))?
        }
    })
}

fn secret_value(secret: &Secret, key: &str) -> Option<String> {
    if let Some(v) = secret.data.as_ref().and_then(|d| d.get(key)) {
        return Some(String::from_utf8_lossy(&v.0).into_owned());
    }
    secret.string_data.as_ref().and_then(|d| d.get(key).cloned())
}

/// The environment of one container, in order (later entries win, as in the kubelet).
pub fn container_env(
    pod: &Pod,
    container: &Container,
    links: &[(String, String)],
    sources: &Sources,
) -> Result<Vec<(String, String)>, EnvError> {
    let mut vars: BTreeMap<String, String> = links.iter().cloned().collect();
    let mut order: Vec<String> = links.iter().map(|(k, _)| k.clone()).collect();
    let mut set = |k: String, v: String, vars: &mut BTreeMap<String, String>| {
        if !vars.contains_key(&k) {
            order.push(k.clone());
        }
        vars.insert(k, v);
    };
    for from in container.env_from.clone().unwrap_or_default() {
        let prefix = from.prefix.unwrap_or_default();
        if let Some(cm) = from.config_map_ref {
            let name = cm.name;
            match sources.config_maps.get(&name) {
                Some(map) => {
                    for (k, v) in map.data.clone().unwrap_or_default() {
                        set(format!("{prefix}{k}"), v, &mut vars);
                    }
                }
                None if cm.optional == Some(true) => {}
                None => return Err(EnvError::ConfigMapNotFound(name)),
            }
        }
        if let Some(sr) = from.secret_ref {
            let name = sr.name;
            match sources.secrets.get(&name) {
                Some(secret) => {
                    for (k, v) in secret.data.clone().unwrap_or_default() {
                        set(format!("{prefix}{k}"), String::from_utf8_lossy(&v.0).into_owned(), &mut vars);
                    }
                }
                None if sr.optional == Some(true) => {}
                None => return Err(EnvError::SecretNotFound(name)),
            }
        }
    }
    for env in container.env.clone().unwrap_or_default() {
        let value = match (env.value, env.value_from) {
            (Some(v), _) => expand(&v, &vars),
            (None, None) => String::new(),
            (None, Some(from)) => {
                if let Some(f) = from.field_ref {
                    field_ref(pod, &f.field_path, sources)?
                } else if let Some(k) = from.config_map_key_ref {
                    match sources.config_maps.get(&k.name).and_then(|m| m.data.as_ref()?.get(&k.key).cloned()) {
                        Some(v) => v,
                        None if k.optional == Some(true) => continue,
                        None if !sources.config_maps.contains_key(&k.name) => {
                            return Err(EnvError::ConfigMapNotFound(k.name));
                        }
                        None => return Err(EnvError::KeyNotFound { kind: "configmap", name: k.name, key: k.key }),
                    }
                } else if let Some(k) = from.secret_key_ref {
                    match sources.secrets.get(&k.name).and_then(|s| secret_value(s, &k.key)) {
                        Some(v) => v,
                        None if k.optional == Some(true) => continue,
                        None if !sources.secrets.contains_key(&k.name) => return Err(EnvError::SecretNotFound(k.name)),
                        None => return Err(EnvError::KeyNotFound { kind: "secret", name: k.name, key: k.key }),
                    }
                } else {
                    String::new()
                }
            }
        };
        set(env.name, value, &mut vars);
    }
    Ok(order.into_iter().filter_map(|k| vars.get(&k).map(|v| (k.clone(), v.clone()))).collect())
}

/// Decodes base64 Secret data given as a string (for callers holding raw JSON).
pub fn decode_secret_value(encoded: &str) -> Option<String> {
    base64::engine::general_purpose::STANDARD.decode(encoded).ok().map(|b| String::from_utf8_lossy(&b).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(ns: &str, name: &str, ip: &str, ports: serde_json::Value) -> Service {
        serde_json::from_value(
            json!({"metadata": {"name": name, "namespace": ns}, "spec": {"clusterIP": ip, "ports": ports}}),
        )
        .unwrap()
    }

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(
            json!({"metadata": {"name": "p", "namespace": "shop", "labels": {"app": "x"}}, "spec": spec}),
        )
        .unwrap()
    }

    #[test]
    fn service_links_cover_the_namespace_and_the_master_service() {
        let services = vec![
            svc("default", "kubernetes", "10.43.0.1", json!([{"name": "https", "port": 443, "protocol": "TCP"}])),
            svc("shop", "numbers-api", "10.43.5.6", json!([{"port": 80, "protocol": "TCP"}])),
            svc("shop", "headless", "None", json!([{"port": 80}])),
            svc("other", "elsewhere", "10.43.9.9", json!([{"port": 80}])),
        ];
        let vars: BTreeMap<_, _> = service_links(&pod(json!({"containers": []})), &services).into_iter().collect();
        assert_eq!(vars["NUMBERS_API_SERVICE_HOST"], "10.43.5.6");
        assert_eq!(vars["NUMBERS_API_SERVICE_PORT"], "80");
        assert_eq!(vars["NUMBERS_API_PORT"], "tcp://10.43.5.6:80");
        assert_eq!(vars["NUMBERS_API_PORT_80_TCP_ADDR"], "10.43.5.6");
        assert_eq!(vars["KUBERNETES_SERVICE_PORT_HTTPS"], "443");
        assert!(!vars.keys().any(|k| k.starts_with("HEADLESS") || k.starts_with("ELSEWHERE")));
        let no_links = pod(json!({"containers": [], "enableServiceLinks": false}));
        let vars: BTreeMap<_, _> = service_links(&no_links, &services).into_iter().collect();
        assert!(vars.contains_key("KUBERNETES_SERVICE_HOST") && !vars.contains_key("NUMBERS_API_SERVICE_HOST"));
    }

    #[test]
    fn env_value_from_and_expansion() {
        let cm: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": "cfg"}, "data": {"MODE": "fast", "LEVEL": "3"}}))
                .unwrap();
        let secret: Secret =
            serde_json::from_value(json!({"metadata": {"name": "s"}, "data": {"PASSWORD": "aHVudGVyMg=="}})).unwrap();
        let p = pod(json!({"nodeName": "n1", "containers": [{"name": "c", "image": "x",
        "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}],
        "env": [
            {"name": "GREETING", "value": "hello $(CFG_MODE) $$(CFG_MODE) $(MISSING)"},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "s", "key": "PASSWORD"}}},
            {"name": "LVL", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "LEVEL"}}}
        ]}]}));
        let container = p.spec.as_ref().unwrap().containers[0].clone();
        let sources = Sources {
            config_maps: [("cfg".to_string(), &cm)].into(),
            secrets: [("s".to_string(), &secret)].into(),
            pod_ip: "10.42.0.9".into(),
            host_ip: "192.0.2.1".into(),
        };
        let env: BTreeMap<_, _> = container_env(&p, &container, &[], &sources).unwrap().into_iter().collect();
        assert_eq!(env["GREETING"], "hello fast $(CFG_MODE) $(MISSING)");
        assert_eq!(env["POD"], "p");
        assert_eq!(env["APP"], "x");
        assert_eq!(env["IP"], "10.42.0.9");
        assert_eq!(env["PW"], "hunter2");
        assert_eq!(env["LVL"], "3");
        let missing = pod(
            json!({"containers": [{"name": "c", "image": "x", "env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k"}}}]}]}),
        );
        let c = missing.spec.as_ref().unwrap().containers[0].clone();
        assert_eq!(
            container_env(&missing, &c, &[], &Sources::default()),
            Err(EnvError::ConfigMapNotFound("nope".into()))
        );
    }
}
