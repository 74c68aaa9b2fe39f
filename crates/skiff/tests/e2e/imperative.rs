//! Imperative commands: create (protobuf bodies), expose, scale, dry runs, generateName.

use super::cluster::{Cluster, example};

#[test]
fn create_expose_and_scale() {
    let c = Cluster::start();
    // kubectl 1.33 sends these as protobuf.
    c.ok(&["create", "deployment", "web-deploy", "--image=nigelpoulton/k8sbook:latest", "--port=8080", "--replicas=2"]);
    c.ok(&["create", "namespace", "lab"]);
    c.ok(&["create", "service", "nodeport", "np", "--tcp=80:8080", "--node-port=30123"]);
    c.ok(&["create", "service", "externalname", "ext", "--external-name=example.com"]);
    c.ok(&["create", "secret", "generic", "s", "--from-literal=password=hunter2"]);
    assert_eq!(c.ok(&["get", "secret", "s", "-o", "jsonpath={.data.password}"]), "aHVudGVyMg==");
    assert_eq!(c.ok(&["get", "svc", "np", "-o", "jsonpath={.spec.ports[0].nodePort}"]), "30123");
    assert_eq!(c.ok(&["get", "ns", "lab", "-o", "jsonpath={.status.phase}"]), "Active");

    // expose reads the deployment's selector and port.
    c.ok(&["expose", "deployment", "web-deploy", "--name=hello-svc", "--target-port=8080", "--type=NodePort"]);
    let svc: serde_json::Value = serde_json::from_str(&c.ok(&["get", "svc", "hello-svc", "-o", "json"])).unwrap();
    assert_eq!(svc["spec"]["selector"]["app"], "web-deploy");
    assert_eq!(svc["spec"]["ports"][0]["port"], 8080);
    let np = svc["spec"]["ports"][0]["nodePort"].as_u64().unwrap();
    assert!((30000..=32767).contains(&np), "{np}");

    // scale through the scale subresource, with and without a precondition.
    c.ok(&["scale", "deployment", "web-deploy", "--replicas=3"]);
    assert_eq!(c.ok(&["get", "deploy", "web-deploy", "-o", "jsonpath={.spec.replicas}"]), "3");
    c.ok(&["scale", "deployment", "web-deploy", "--current-replicas=3", "--replicas=1"]);
    assert_eq!(c.ok(&["get", "deploy", "web-deploy", "-o", "jsonpath={.spec.replicas}"]), "1");
    let err = c.fails(&["scale", "deployment", "web-deploy", "--current-replicas=5", "--replicas=2"]);
    assert!(err.contains("Expected replicas to be 5, was 1"), "{err}");

    // Server-side dry run writes nothing.
    c.ok(&["apply", "--dry-run=server", "-f", &example("ch03/numbers/api-service.yaml")]);
    assert!(!c.kubectl(&["get", "svc", "numbers-api"]).status.success());

    // generateName.
    let out = c.ok_stdin(
        &["create", "-f", "-", "-o", "name"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  generateName: gen-\n",
    );
    assert!(out.trim().starts_with("configmap/gen-") && out.trim().len() == "configmap/gen-".len() + 5, "{out}");
}
