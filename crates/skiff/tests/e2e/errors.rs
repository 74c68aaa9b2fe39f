//! Bad input is refused with a Kubernetes `Status` naming the field, and nothing is written.

use super::cluster::Cluster;

fn svc(name: &str, spec: &str) -> String {
    format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n{spec}")
}

#[test]
fn invalid_services_are_refused_with_field_paths_and_nothing_is_written() {
    let c = Cluster::start();
    let cases: &[(&str, String, &str)] = &[
        ("bad-port", svc("bad-port", "  ports:\n  - port: 70000\n"), "spec.ports[0].port"),
        ("Bad_Name", svc("Bad_Name", "  ports:\n  - port: 80\n"), "metadata.name"),
        ("bad-type", svc("bad-type", "  type: Magic\n  ports:\n  - port: 80\n"), "spec.type"),
        ("bad-ext", svc("bad-ext", "  type: ExternalName\n  externalName: \"not a name!\"\n"), "spec.externalName"),
        ("no-ports", svc("no-ports", "  selector:\n    app: x\n"), "spec.ports"),
        (
            "dup-ports",
            svc("dup-ports", "  ports:\n  - name: a\n    port: 80\n  - name: b\n    port: 80\n"),
            "spec.ports[1]",
        ),
        (
            "bad-np",
            svc("bad-np", "  type: NodePort\n  ports:\n  - port: 80\n    nodePort: 80\n"),
            "spec.ports[0].nodePort",
        ),
        ("bad-ip", svc("bad-ip", "  clusterIP: 10.99.0.5\n  ports:\n  - port: 80\n"), "spec.clusterIPs[0]"),
    ];
    for (name, manifest, field) in cases {
        let err = c.fails_stdin(&["apply", "-f", "-"], manifest);
        assert!(
            err.contains("is invalid") && err.contains(field),
            "{name}: expected an Invalid error on {field}, got: {err}"
        );
        let get = c.kubectl(&["get", "svc", name]);
        assert!(!get.status.success(), "{name} was written despite the error");
    }
    // An unknown field is refused under kubectl's default strict validation.
    let err = c.fails_stdin(&["apply", "-f", "-"], &svc("typo", "  portz:\n  - port: 80\n  ports:\n  - port: 80\n"));
    assert!(err.contains("unknown field") && err.contains("portz"), "{err}");
    assert!(!c.kubectl(&["get", "svc", "typo"]).status.success());
}

#[test]
fn allocations_are_exclusive_and_released() {
    let c = Cluster::start();
    c.ok_stdin(
        &["apply", "-f", "-"],
        &svc("one", "  type: NodePort\n  clusterIP: 10.43.0.50\n  ports:\n  - port: 80\n    nodePort: 30050\n"),
    );
    let err = c.fails_stdin(&["apply", "-f", "-"], &svc("two", "  clusterIP: 10.43.0.50\n  ports:\n  - port: 80\n"));
    assert!(err.contains("provided IP is already allocated"), "{err}");
    let err = c.fails_stdin(
        &["apply", "-f", "-"],
        &svc("three", "  type: NodePort\n  ports:\n  - port: 80\n    nodePort: 30050\n"),
    );
    assert!(err.contains("provided port is already allocated"), "{err}");
    // NodePort -> ExternalName frees the port; deleting frees the IP.
    c.ok(&["patch", "svc", "one", "--type=merge", "-p", r#"{"spec":{"type":"ExternalName","externalName":"example.com","clusterIP":"","clusterIPs":null,"ports":null}}"#]);
    c.ok_stdin(&["apply", "-f", "-"], &svc("three", "  type: NodePort\n  ports:\n  - port: 80\n    nodePort: 30050\n"));
    c.ok(&["delete", "svc", "one"]);
    c.ok_stdin(&["apply", "-f", "-"], &svc("two", "  clusterIP: 10.43.0.50\n  ports:\n  - port: 80\n"));
    // clusterIP is immutable.
    let err =
        c.fails(&["patch", "svc", "two", "-p", r#"{"spec":{"clusterIP":"10.43.0.51","clusterIPs":["10.43.0.51"]}}"#]);
    assert!(err.contains("spec.clusterIPs[0]") && err.contains("may not change once set"), "{err}");
}

#[test]
fn requests_without_the_token_are_unauthorized() {
    let c = Cluster::start();
    let base = format!("https://127.0.0.1:{}", c.port);
    let no_token = c.kubectl(&[
        "--token",
        "",
        "--server",
        &base,
        "--insecure-skip-tls-verify",
        "--kubeconfig",
        "/dev/null",
        "get",
        "svc",
    ]);
    assert!(!no_token.status.success());
    let wrong = c.kubectl(&[
        "--token",
        "wrong",
        "--server",
        &base,
        "--insecure-skip-tls-verify",
        "--kubeconfig",
        "/dev/null",
        "get",
        "svc",
    ]);
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(!wrong.status.success() && stderr.contains("provide credentials"), "{stderr}");
    // The real token over TLS with the CA from the kubeconfig works.
    assert!(c.ok(&["get", "svc"]).contains("kubernetes"));
}

#[test]
fn stale_updates_conflict_and_missing_namespaces_are_not_found() {
    let c = Cluster::start();
    c.ok(&["create", "configmap", "cfg", "--from-literal=a=1"]);
    let mut obj: serde_json::Value = serde_json::from_str(&c.ok(&["get", "cm", "cfg", "-o", "json"])).unwrap();
    c.ok(&["label", "cm", "cfg", "bump=1"]);
    obj["data"]["a"] = "2".into();
    let err = c.fails_stdin(&["replace", "-f", "-"], &obj.to_string());
    assert!(err.contains("the object has been modified"), "{err}");
    assert_eq!(c.ok(&["get", "cm", "cfg", "-o", "jsonpath={.data.a}"]), "1");
    let err = c.fails(&["create", "configmap", "x", "-n", "nowhere", "--from-literal=a=1"]);
    assert!(err.contains("namespaces \"nowhere\" not found"), "{err}");
}

#[test]
fn local_load_balancers_get_a_health_check_node_port() {
    let c = Cluster::start();
    c.ok_stdin(
        &["apply", "-f", "-"],
        &svc("local-lb", "  type: LoadBalancer\n  externalTrafficPolicy: Local\n  ports:\n  - port: 80\n"),
    );
    let hc: u16 = c.ok(&["get", "svc", "local-lb", "-o", "jsonpath={.spec.healthCheckNodePort}"]).parse().unwrap();
    let np: u16 = c.ok(&["get", "svc", "local-lb", "-o", "jsonpath={.spec.ports[0].nodePort}"]).parse().unwrap();
    assert!((30000..=32767).contains(&hc) && hc != np, "{hc} {np}");
    // An invalid Service claims nothing: its requested node port stays free for the next one.
    let err = c.fails_stdin(
        &["apply", "-f", "-"],
        &svc("bad", "  type: NodePort\n  ports:\n  - port: 0\n    nodePort: 30555\n"),
    );
    assert!(err.contains("spec.ports[0].port"), "{err}");
    c.ok_stdin(&["apply", "-f", "-"], &svc("good", "  type: NodePort\n  ports:\n  - port: 80\n    nodePort: 30555\n"));
}
