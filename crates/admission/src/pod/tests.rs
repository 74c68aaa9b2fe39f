//! Representative cases from upstream `TestValidatePodSpec`, `TestValidateContainers` and `TestValidatePodUpdate`.

use serde_json::{Value, json};

use super::*;

fn pod() -> Value {
    let mut p = json!({"metadata": {"name": "p", "namespace": "default"}, "spec": {
        "containers": [{"name": "ctr", "image": "image:1", "ports": [{"name": "http", "containerPort": 80}],
                        "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
        "volumes": [{"name": "data"}]}});
    default_pod(&mut p);
    p
}

fn fields(errs: Vec<FieldError>) -> Vec<String> {
    errs.into_iter().map(|e| e.field).collect()
}

#[test]
fn validate_pod_spec_table() {
    type Tweak = fn(&mut Value);
    let cases: Vec<(&str, Tweak, &[&str])> = vec![
        ("valid", |_| {}, &[]),
        ("no containers", |p| p["spec"]["containers"] = json!([]), &["spec.containers"]),
        ("missing name", |p| p["spec"]["containers"][0]["name"] = json!(""), &["spec.containers[0].name"]),
        ("invalid name", |p| p["spec"]["containers"][0]["name"] = json!("Ctr_1"), &["spec.containers[0].name"]),
        (
            "duplicate names",
            |p| {
                let c = p["spec"]["containers"][0].clone();
                p["spec"]["containers"].as_array_mut().expect("array").push(c);
            },
            &["spec.containers[1].name"],
        ),
        (
            "duplicate name across init containers",
            |p| {
                let mut c = p["spec"]["containers"][0].clone();
                crate::json::remove(&mut c, "ports");
                p["spec"]["initContainers"] = json!([c]);
            },
            &["spec.initContainers[0].name"],
        ),
        ("missing image", |p| p["spec"]["containers"][0]["image"] = json!(""), &["spec.containers[0].image"]),
        ("image with spaces", |p| p["spec"]["containers"][0]["image"] = json!(" img "), &["spec.containers[0].image"]),
        (
            "bad pull policy",
            |p| p["spec"]["containers"][0]["imagePullPolicy"] = json!("Sometimes"),
            &["spec.containers[0].imagePullPolicy"],
        ),
        (
            "zero container port",
            |p| p["spec"]["containers"][0]["ports"][0]["containerPort"] = json!(0),
            &["spec.containers[0].ports[0].containerPort"],
        ),
        (
            "container port too big",
            |p| p["spec"]["containers"][0]["ports"][0]["containerPort"] = json!(65536),
            &["spec.containers[0].ports[0].containerPort"],
        ),
        (
            "port name not an IANA name",
            |p| p["spec"]["containers"][0]["ports"][0]["name"] = json!("a-very-long-port-name"),
            &["spec.containers[0].ports[0].name"],
        ),
        (
            "duplicate port names",
            |p| {
                p["spec"]["containers"][0]["ports"] = json!([{"name": "a", "containerPort": 1, "protocol": "TCP"}, {"name": "a", "containerPort": 2, "protocol": "TCP"}]);
            },
            &["spec.containers[0].ports[1].name"],
        ),
        (
            "bad port protocol",
            |p| p["spec"]["containers"][0]["ports"][0]["protocol"] = json!("HTTP"),
            &["spec.containers[0].ports[0].protocol"],
        ),
        ("bad restart policy", |p| p["spec"]["restartPolicy"] = json!("Sometimes"), &["spec.restartPolicy"]),
        ("bad dns policy", |p| p["spec"]["dnsPolicy"] = json!("Google"), &["spec.dnsPolicy"]),
        ("dns policy None without config", |p| p["spec"]["dnsPolicy"] = json!("None"), &["spec.dnsConfig"]),
        (
            "mount of a missing volume",
            |p| p["spec"]["containers"][0]["volumeMounts"][0]["name"] = json!("nope"),
            &["spec.containers[0].volumeMounts[0].name"],
        ),
        (
            "duplicate volumes",
            |p| p["spec"]["volumes"] = json!([{"name": "data", "emptyDir": {}}, {"name": "data", "emptyDir": {}}]),
            &["spec.volumes[1].name"],
        ),
        (
            "two volume sources",
            |p| p["spec"]["volumes"][0]["hostPath"] = json!({"path": "/x", "type": ""}),
            &["spec.volumes[0].hostPath"],
        ),
        (
            "configMap volume without name",
            |p| p["spec"]["volumes"] = json!([{"name": "data", "configMap": {"defaultMode": 420}}]),
            &["spec.volumes[0].configMap.name"],
        ),
        ("bad node name", |p| p["spec"]["nodeName"] = json!("Node_1"), &["spec.nodeName"]),
        ("deadline zero", |p| p["spec"]["activeDeadlineSeconds"] = json!(0), &["spec.activeDeadlineSeconds"]),
        (
            "probe without handler",
            |p| p["spec"]["containers"][0]["livenessProbe"] = json!({"periodSeconds": 10}),
            &["spec.containers[0].livenessProbe"],
        ),
        (
            "liveness success threshold",
            |p| p["spec"]["containers"][0]["livenessProbe"] = json!({"tcpSocket": {"port": 80}, "successThreshold": 2}),
            &["spec.containers[0].livenessProbe.successThreshold"],
        ),
        (
            "readiness probe on a named port",
            |p| p["spec"]["containers"][0]["readinessProbe"] = json!({"httpGet": {"port": "http"}}),
            &[],
        ),
        (
            "toleration with seconds but no NoExecute",
            |p| p["spec"]["tolerations"] = json!([{"key": "a", "operator": "Exists", "tolerationSeconds": 5}]),
            &["spec.tolerations[0].effect"],
        ),
        (
            "empty env name",
            |p| p["spec"]["containers"][0]["env"] = json!([{"value": "x"}]),
            &["spec.containers[0].env[0].name"],
        ),
    ];
    let mut failures = Vec::new();
    for (name, tweak, want) in cases {
        let mut p = pod();
        tweak(&mut p);
        let got = fields(validate_pod(&p));
        if got != want {
            failures.push(format!("{name}: got {got:?}, want {want:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn container_messages() {
    let mut p = pod();
    p["spec"]["containers"][0]["image"] = json!("");
    p["spec"]["restartPolicy"] = json!("Sometimes");
    let got: Vec<String> = validate_pod(&p).iter().map(ToString::to_string).collect();
    assert_eq!(
        got,
        vec![
            "spec.containers[0].image: Required value",
            "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"Never\", \"OnFailure\"",
        ]
    );
}

#[test]
fn pod_updates_may_change_only_images_deadlines_and_tolerations() {
    let old = pod();
    let mut new = pod();
    new["spec"]["containers"][0]["image"] = json!("image:2");
    new["spec"]["activeDeadlineSeconds"] = json!(60);
    new["spec"]["tolerations"].as_array_mut().expect("array").push(json!({"key": "x", "operator": "Exists"}));
    assert!(validate_pod_update(&old, &new).is_empty(), "{:?}", validate_pod_update(&old, &new));

    let mut new = pod();
    new["spec"]["containers"][0]["ports"][0]["containerPort"] = json!(81);
    let errs = validate_pod_update(&old, &new);
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].field, "spec");
    assert!(errs[0].detail.starts_with("pod updates may not change fields other than `spec.containers[*].image`"));

    let mut longer = pod();
    longer["spec"]["activeDeadlineSeconds"] = json!(30);
    let mut longest = longer.clone();
    longest["spec"]["activeDeadlineSeconds"] = json!(60);
    assert_eq!(validate_pod_update(&longer, &longest)[0].detail, "must be less than or equal to previous value");

    let mut fewer = pod();
    fewer["spec"]["tolerations"] = json!([]);
    assert_eq!(validate_pod_update(&old, &fewer)[0].field, "spec");
}
