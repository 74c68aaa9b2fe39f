//! Pod defaulting: `SetDefaults_PodSpec` and friends (shared with pod templates), `SetDefaults_Pod` and what the
//! default admission plugins add to pods (service account, default tolerations, priority).

use serde_json::{Value, json};

use crate::json::{arr, child, has, items_mut, s, set, set_default};

/// Defaults of a pod spec, as applied to pods and to the templates of workloads.
pub fn default_pod_spec(spec: &mut Value) {
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    let host_network = spec.get("hostNetwork").and_then(Value::as_bool) == Some(true);
    for key in ["initContainers", "containers"] {
        for c in items_mut(spec, key) {
            default_container(c, host_network);
        }
    }
    for v in items_mut(spec, "volumes") {
        default_volume(v);
    }
}

/// Pod-only defaults: `SetDefaults_Pod`, the ServiceAccount, DefaultTolerationSeconds and Priority admission
/// plugins, and the initial status `PrepareForCreate` gives a pod.
pub fn default_pod(pod: &mut Value) {
    let spec = child(pod, "spec");
    default_pod_spec(spec);
    for key in ["initContainers", "containers"] {
        for c in items_mut(spec, key) {
            requests_from_limits(c);
        }
    }
    set_default(spec, "enableServiceLinks", json!(true));
    set_default(spec, "serviceAccountName", json!("default"));
    let sa = s(spec, "serviceAccountName").to_string();
    set_default(spec, "serviceAccount", json!(sa));
    if !has(spec, "priority") && s(spec, "priorityClassName").is_empty() {
        set(spec, "priority", json!(0));
    }
    set_default(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
    default_tolerations(spec);
    let qos = qos_class(spec);
    let status = child(pod, "status");
    set_default(status, "phase", json!("Pending"));
    set_default(status, "qosClass", json!(qos));
}

fn default_container(c: &mut Value, host_network: bool) {
    let image = s(c, "image").to_string();
    set_default(c, "imagePullPolicy", json!(if pulls_always(&image) { "Always" } else { "IfNotPresent" }));
    set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
    set_default(c, "terminationMessagePolicy", json!("File"));
    set_default(c, "resources", json!({}));
    for p in items_mut(c, "ports") {
        set_default(p, "protocol", json!("TCP"));
        if host_network && let Some(port) = p.get("containerPort").cloned() {
            set_default(p, "hostPort", port);
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(probe).filter(|p| p.is_object()) {
            default_probe(p);
        }
    }
    for hook in ["postStart", "preStop"] {
        if let Some(h) = c.pointer_mut(&format!("/lifecycle/{hook}/httpGet")).filter(|h| h.is_object()) {
            default_http_get(h);
        }
    }
    for e in items_mut(c, "env") {
        if let Some(f) = e.pointer_mut("/valueFrom/fieldRef").filter(|f| f.is_object()) {
            set_default(f, "apiVersion", json!("v1"));
        }
    }
}

/// `:latest` or no tag pulls every time; a digest without a tag does not.
fn pulls_always(image: &str) -> bool {
    let (name, digest) = match image.split_once('@') {
        Some((n, _)) => (n, true),
        None => (image, false),
    };
    let last = name.rsplit('/').next().unwrap_or(name);
    match last.split_once(':') {
        Some((_, tag)) => tag == "latest",
        None => !digest,
    }
}

fn default_probe(p: &mut Value) {
    set_default(p, "timeoutSeconds", json!(1));
    set_default(p, "periodSeconds", json!(10));
    set_default(p, "successThreshold", json!(1));
    set_default(p, "failureThreshold", json!(3));
    if let Some(h) = p.get_mut("httpGet").filter(|h| h.is_object()) {
        default_http_get(h);
    }
}

fn default_http_get(h: &mut Value) {
    set_default(h, "path", json!("/"));
    set_default(h, "scheme", json!("HTTP"));
}

fn default_volume(v: &mut Value) {
    let has_source = v.as_object().is_some_and(|m| m.iter().any(|(k, val)| k != "name" && !val.is_null()));
    if !has_source {
        set(v, "emptyDir", json!({}));
    }
    for source in ["configMap", "secret", "projected", "downwardAPI"] {
        if let Some(src) = v.get_mut(source).filter(|s| s.is_object()) {
            set_default(src, "defaultMode", json!(420));
        }
    }
    if let Some(hp) = v.get_mut("hostPath").filter(|s| s.is_object()) {
        set_default(hp, "type", json!(""));
    }
}

fn requests_from_limits(c: &mut Value) {
    let Some(limits) = c.pointer("/resources/limits").and_then(Value::as_object).cloned() else { return };
    let requests = child(child(c, "resources"), "requests");
    for (k, v) in limits {
        if requests.get(&k).is_none() {
            set(requests, &k, v);
        }
    }
}

fn default_tolerations(spec: &mut Value) {
    let tolerations = arr(spec, "tolerations").to_vec();
    let mut out = tolerations.clone();
    for key in ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"] {
        let tolerated = tolerations.iter().any(|t| {
            let effect = s(t, "effect");
            (effect.is_empty() || effect == "NoExecute") && (s(t, "key") == key || s(t, "key").is_empty())
        });
        if !tolerated {
            out.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
        }
    }
    if out.len() != tolerations.len() {
        set(spec, "tolerations", Value::Array(out));
    }
}

/// Upstream's QoS class: BestEffort with no requests or limits at all, Guaranteed when every container limits
/// cpu and memory to exactly what it requests, else Burstable.
fn qos_class(spec: &Value) -> &'static str {
    let containers: Vec<&Value> = ["initContainers", "containers"].iter().flat_map(|k| arr(spec, k)).collect();
    let res = |c: &Value, kind: &str| c.pointer(&format!("/resources/{kind}")).and_then(Value::as_object).cloned();
    let cpu_mem = |m: &Option<serde_json::Map<String, Value>>| {
        m.iter().flat_map(|m| m.iter()).filter(|(k, _)| *k == "cpu" || *k == "memory").count()
    };
    let any = containers.iter().any(|c| cpu_mem(&res(c, "requests")) + cpu_mem(&res(c, "limits")) > 0);
    if !any {
        return "BestEffort";
    }
    let guaranteed = containers.iter().all(|c| {
        let (req, lim) = (res(c, "requests"), res(c, "limits"));
        ["cpu", "memory"].iter().all(|k| {
            let l = lim.as_ref().and_then(|m| m.get(*k));
            l.is_some() && req.as_ref().and_then(|m| m.get(*k)).is_none_or(|r| Some(r) == l)
        })
    });
    if guaranteed { "Guaranteed" } else { "Burstable" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_pull_policy_follows_the_tag() {
        assert!(pulls_always("nginx"));
        assert!(pulls_always("nginx:latest"));
        assert!(pulls_always("localhost:5000/nginx"));
        assert!(!pulls_always("localhost:5000/nginx:1.25"));
        assert!(!pulls_always("nginx@sha256:abc"));
        assert!(pulls_always("nginx:latest@sha256:abc"));
    }

    #[test]
    fn pods_get_upstream_defaults() {
        let mut pod = json!({"spec": {"containers": [{"name": "c", "image": "nginx:1.25",
            "ports": [{"containerPort": 80}],
            "livenessProbe": {"httpGet": {"port": 80}},
            "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}],
            "volumes": [{"name": "v"}, {"name": "cm", "configMap": {"name": "x"}}]}});
        default_pod(&mut pod);
        let spec = &pod["spec"];
        assert_eq!(spec["restartPolicy"], "Always");
        assert_eq!(spec["dnsPolicy"], "ClusterFirst");
        assert_eq!(spec["terminationGracePeriodSeconds"], 30);
        assert_eq!(spec["schedulerName"], "default-scheduler");
        assert_eq!(spec["enableServiceLinks"], true);
        assert_eq!(spec["serviceAccountName"], "default");
        assert_eq!(spec["securityContext"], json!({}));
        let c = &spec["containers"][0];
        assert_eq!(c["imagePullPolicy"], "IfNotPresent");
        assert_eq!(c["terminationMessagePath"], "/dev/termination-log");
        assert_eq!(c["terminationMessagePolicy"], "File");
        assert_eq!(c["ports"][0]["protocol"], "TCP");
        assert_eq!(c["livenessProbe"]["timeoutSeconds"], 1);
        assert_eq!(c["livenessProbe"]["periodSeconds"], 10);
        assert_eq!(c["livenessProbe"]["successThreshold"], 1);
        assert_eq!(c["livenessProbe"]["failureThreshold"], 3);
        assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/");
        assert_eq!(c["resources"]["requests"], json!({"cpu": "1", "memory": "1Gi"}));
        assert_eq!(spec["volumes"][0]["emptyDir"], json!({}));
        assert_eq!(spec["volumes"][1]["configMap"]["defaultMode"], 420);
        assert_eq!(spec["tolerations"].as_array().map(Vec::len), Some(2));
        assert_eq!(pod["status"]["phase"], "Pending");
        assert_eq!(pod["status"]["qosClass"], "Guaranteed");
        let once = pod.clone();
        default_pod(&mut pod);
        assert_eq!(pod, once, "defaulting is idempotent");
    }

    #[test]
    fn qos_classes() {
        assert_eq!(qos_class(&json!({"containers": [{"name": "a"}]})), "BestEffort");
        assert_eq!(qos_class(&json!({"containers": [{"resources": {"requests": {"cpu": "1"}}}]})), "Burstable");
    }
}
