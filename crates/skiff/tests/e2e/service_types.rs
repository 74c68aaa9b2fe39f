//! The upstream conformance scenarios about Service objects themselves (sig-network `service.go`): type changes
//! with their allocations, the status subresource lifecycle, listing across namespaces, and EndpointSlice CRUD.

use super::cluster::Cluster;

fn json(c: &Cluster, args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&c.ok(args)).expect("kubectl printed JSON")
}

#[test]
fn type_changes_allocate_and_release_addresses() {
    let c = Cluster::start();
    c.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: t\nspec:\n  selector:\n    app: t\n  ports:\n  - port: 80\n",
    );
    // ClusterIP -> ExternalName: the cluster IP is released (the client clears it, as upstream requires).
    c.ok(&[
        "patch",
        "svc",
        "t",
        "--type=merge",
        "-p",
        r#"{"spec":{"type":"ExternalName","externalName":"db.example.com","clusterIP":"","clusterIPs":null}}"#,
    ]);
    let s = json(&c, &["get", "svc", "t", "-o", "json"]);
    assert_eq!(s["spec"]["type"], "ExternalName");
    assert!(s["spec"]["clusterIP"].is_null() || s["spec"]["clusterIP"] == "", "{s}");
    // ExternalName -> ClusterIP: a fresh IP.
    c.ok(&["patch", "svc", "t", "--type=merge", "-p", r#"{"spec":{"type":"ClusterIP","externalName":null}}"#]);
    let s = json(&c, &["get", "svc", "t", "-o", "json"]);
    assert!(s["spec"]["clusterIP"].as_str().unwrap().starts_with("10.43."), "{s}");
    // ClusterIP -> NodePort: a node port appears, the IP stays.
    let ip = s["spec"]["clusterIP"].clone();
    c.ok(&["patch", "svc", "t", "--type=merge", "-p", r#"{"spec":{"type":"NodePort"}}"#]);
    let s = json(&c, &["get", "svc", "t", "-o", "json"]);
    assert_eq!(s["spec"]["clusterIP"], ip);
    let np = s["spec"]["ports"][0]["nodePort"].as_u64().unwrap();
    assert!((30000..=32767).contains(&np));
    // NodePort -> ExternalName releases the node port: another Service can take it.
    c.ok(&[
        "patch",
        "svc",
        "t",
        "--type=merge",
        "-p",
        r#"{"spec":{"type":"ExternalName","externalName":"db.example.com","clusterIP":"","clusterIPs":null}}"#,
    ]);
    let s = json(&c, &["get", "svc", "t", "-o", "json"]);
    assert!(s["spec"]["ports"][0]["nodePort"].is_null(), "{s}");
    c.ok_stdin(
        &["apply", "-f", "-"],
        &format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: taker\nspec:\n  type: NodePort\n  ports:\n  - port: 80\n    nodePort: {np}\n"),
    );
    // ExternalName -> NodePort.
    c.ok(&["patch", "svc", "t", "--type=merge", "-p", r#"{"spec":{"type":"NodePort","externalName":null}}"#]);
    let s = json(&c, &["get", "svc", "t", "-o", "json"]);
    assert_ne!(s["spec"]["ports"][0]["nodePort"].as_u64().unwrap(), np);
}

#[test]
fn status_lifecycle_and_cross_namespace_listing() {
    let c = Cluster::start();
    c.ok(&["create", "namespace", "other"]);
    // A load balancer class Skiff's own ServiceLB leaves alone, so this test plays the load balancer.
    c.ok_stdin(
        &["apply", "-n", "other", "-f", "-"],
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: lb\nspec:\n  type: LoadBalancer\n  loadBalancerClass: example.com/external\n  ports:\n  - port: 8080\n",
    );
    assert!(c.ok(&["get", "svc", "lb", "-n", "other"]).contains("<pending>"));
    c.ok(&[
        "patch",
        "svc",
        "lb",
        "-n",
        "other",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"loadBalancer":{"ingress":[{"ip":"192.0.2.10"}]}}}"#,
    ]);
    let row = c.ok(&["get", "svc", "lb", "-n", "other"]);
    assert!(row.contains("192.0.2.10"), "{row}");
    // A main-resource write cannot change status; a status write cannot change spec.
    c.ok(&["patch", "svc", "lb", "-n", "other", "--type=merge", "-p", r#"{"status":{"loadBalancer":{}}}"#]);
    assert!(c.ok(&["get", "svc", "lb", "-n", "other"]).contains("192.0.2.10"));
    c.ok(&[
        "patch",
        "svc",
        "lb",
        "-n",
        "other",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"spec":{"ports":[{"port":9999}]}}"#,
    ]);
    assert_eq!(c.ok(&["get", "svc", "lb", "-n", "other", "-o", "jsonpath={.spec.ports[0].port}"]), "8080");

    let all = c.ok(&["get", "svc", "-A"]);
    assert!(all.lines().any(|l| l.starts_with("other ") && l.contains("lb")), "{all}");
    assert!(all.lines().any(|l| l.starts_with("default ") && l.contains("kubernetes")), "{all}");
}

#[test]
fn endpointslice_api_operations() {
    let c = Cluster::start();
    let slice = "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: manual-1\n  labels:\n    kubernetes.io/service-name: manual\naddressType: IPv4\nports:\n- name: http\n  port: 8080\n  protocol: TCP\nendpoints:\n- addresses: [\"10.42.0.5\"]\n  conditions:\n    ready: true\n";
    c.ok_stdin(&["create", "-f", "-"], slice);
    c.ok_stdin(&["create", "-f", "-"], &slice.replace("manual-1", "manual-2").replace("10.42.0.5", "10.42.0.6"));
    let table = c.ok(&["get", "endpointslices", "-l", "kubernetes.io/service-name=manual"]);
    assert!(table.contains("manual-1") && table.contains("IPv4") && table.contains("10.42.0.6"), "{table}");
    c.ok(&[
        "patch",
        "endpointslice",
        "manual-1",
        "--type=merge",
        "-p",
        r#"{"endpoints":[{"addresses":["10.42.0.7"],"conditions":{"ready":false}}]}"#,
    ]);
    assert_eq!(c.ok(&["get", "endpointslice", "manual-1", "-o", "jsonpath={.endpoints[0].addresses[0]}"]), "10.42.0.7");
    let err = c.fails(&["patch", "endpointslice", "manual-1", "--type=merge", "-p", r#"{"addressType":"IPv6"}"#]);
    assert!(err.contains("addressType") && err.contains("immutable"), "{err}");
    c.ok(&["delete", "endpointslices", "-l", "kubernetes.io/service-name=manual"]);
    assert!(!c.ok(&["get", "endpointslices"]).contains("manual"));
}
