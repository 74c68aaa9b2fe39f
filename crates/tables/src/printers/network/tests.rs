use serde_json::{Value, json};

use super::*;
use crate::printers::tests::{at, now};

fn service(spec: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "default", "creationTimestamp": at(5)},
        "spec": spec,
        "status": {"loadBalancer": {}}
    })
}

fn cells(printer: Printer, obj: &Value) -> Vec<Value> {
    (printer.print)(obj, now()).cells
}

#[test]
fn cluster_ip_service() {
    let svc = service(json!({
        "type": "ClusterIP", "clusterIP": "10.96.0.13", "clusterIPs": ["10.96.0.13"],
        "selector": {"app": "web"},
        "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080},
                  {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53}]
    }));
    assert_eq!(
        cells(SERVICE, &svc),
        vec![
            json!("web"),
            json!("ClusterIP"),
            json!("10.96.0.13"),
            json!("<none>"),
            json!("80/TCP,53/UDP"),
            json!("5s"),
            json!("app=web")
        ]
    );
}

#[test]
fn node_port_and_external_ips() {
    let svc = service(json!({
        "type": "NodePort", "clusterIPs": ["10.96.0.20"], "externalIPs": ["192.0.2.10", "192.0.2.11"],
        "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}]
    }));
    let c = cells(SERVICE, &svc);
    assert_eq!(&c[3..5], &[json!("192.0.2.10,192.0.2.11"), json!("80:30080/TCP")]);
    assert_eq!(c[6], json!("<none>"));
}

#[test]
fn headless_service_without_ports() {
    let svc =
        service(json!({"type": "ClusterIP", "clusterIP": "None", "clusterIPs": ["None"], "selector": {"app": "db"}}));
    let c = cells(SERVICE, &svc);
    assert_eq!(&c[1..5], &[json!("ClusterIP"), json!("None"), json!("<none>"), json!("<none>")]);
}

#[test]
fn load_balancer_pending_then_assigned() {
    let mut svc = service(json!({
        "type": "LoadBalancer", "clusterIPs": ["10.96.0.30"],
        "ports": [{"port": 443, "protocol": "TCP", "nodePort": 31443}]
    }));
    assert_eq!(cells(SERVICE, &svc)[3], json!("<pending>"));
    svc["status"]["loadBalancer"]["ingress"] =
        json!([{"ip": "203.0.113.9"}, {"hostname": "lb.example.com"}, {"ip": "203.0.113.2"}, {"ip": "203.0.113.9"}]);
    assert_eq!(cells(SERVICE, &svc)[3], json!("203.0.113.2,203.0.113.9,lb.example.com"));
    svc["spec"]["externalIPs"] = json!(["192.0.2.1"]);
    assert_eq!(cells(SERVICE, &svc)[3], json!("203.0.113.2,203.0.113.9,lb.example.com,192.0.2.1"));
}

#[test]
fn external_name_and_untyped_services() {
    let svc = service(json!({"type": "ExternalName", "externalName": "db.example.com"}));
    let c = cells(SERVICE, &svc);
    assert_eq!(&c[1..5], &[json!("ExternalName"), json!("<none>"), json!("db.example.com"), json!("<none>")]);
    // Not defaulted: what upstream would print for an empty type.
    let svc = service(json!({"clusterIP": "10.96.0.40", "ports": [{"port": 80}]}));
    let c = cells(SERVICE, &svc);
    assert_eq!(&c[1..5], &[json!(""), json!("10.96.0.40"), json!("<unknown>"), json!("80/")]);
}

#[test]
fn service_columns_match_the_recorded_kubectl_sample() {
    let names: Vec<(&str, &str, u8)> = SERVICE.columns.iter().map(|c| (c.name, c.format, c.priority)).collect();
    assert_eq!(
        names,
        [
            ("Name", "name", 0),
            ("Type", "", 0),
            ("Cluster-IP", "", 0),
            ("External-IP", "", 0),
            ("Port(s)", "", 0),
            ("Age", "", 0),
            ("Selector", "", 1)
        ]
    );
}

fn endpoints(subsets: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Endpoints",
           "metadata": {"name": "web", "namespace": "default", "creationTimestamp": at(3600)}, "subsets": subsets})
}

#[test]
fn endpoints_list_ip_port_pairs() {
    let ep = endpoints(json!([{"addresses": [{"ip": "10.244.0.7"}, {"ip": "10.244.1.3"}],
                               "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}]));
    assert_eq!(cells(ENDPOINTS, &ep), vec![json!("web"), json!("10.244.0.7:8080,10.244.1.3:8080"), json!("60m")]);
    assert_eq!(cells(ENDPOINTS, &endpoints(json!([])))[1], json!("<none>"));
    assert_eq!(cells(ENDPOINTS, &json!({"metadata": {"name": "x"}}))[1], json!("<none>"));
}

#[test]
fn endpoints_truncate_after_three() {
    let ep = endpoints(json!([
        {"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"port": 80}, {"port": 443}]},
        {"addresses": [{"ip": "fd00::5"}]}
    ]));
    assert_eq!(cells(ENDPOINTS, &ep)[1], json!("10.0.0.1:80,10.0.0.2:80,10.0.0.1:443 + 2 more..."));
    let v6 = endpoints(json!([{"addresses": [{"ip": "fd00::5"}], "ports": [{"port": 80}]}]));
    assert_eq!(cells(ENDPOINTS, &v6)[1], json!("[fd00::5]:80"));
    let headless = endpoints(json!([{"addresses": [{"ip": "10.0.0.9"}]}]));
    assert_eq!(cells(ENDPOINTS, &headless)[1], json!("10.0.0.9"));
    let not_ready_only = endpoints(json!([{"notReadyAddresses": [{"ip": "10.0.0.9"}], "ports": [{"port": 80}]}]));
    assert_eq!(cells(ENDPOINTS, &not_ready_only)[1], json!(""));
}

#[test]
fn endpoint_slices() {
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "web-abcde", "namespace": "default", "creationTimestamp": at(49 * 3600)},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "metrics", "protocol": "TCP"}, {}],
        "endpoints": [
            {"addresses": ["10.244.0.7"], "conditions": {"ready": true}},
            {"addresses": ["10.244.1.3", "10.244.1.4"]},
            {"addresses": ["10.244.2.9"]},
            {"addresses": ["10.244.3.1"]}
        ]
    });
    assert_eq!(
        cells(ENDPOINT_SLICE, &slice),
        vec![
            json!("web-abcde"),
            json!("IPv4"),
            json!("8080,metrics,*"),
            json!("10.244.0.7,10.244.1.3,10.244.1.4 + 2 more..."),
            json!("2d1h")
        ]
    );
    let empty = json!({"metadata": {"name": "web-empty", "creationTimestamp": at(1)}, "addressType": "IPv6",
                       "ports": null, "endpoints": []});
    assert_eq!(
        cells(ENDPOINT_SLICE, &empty),
        vec![json!("web-empty"), json!("IPv6"), json!("<unset>"), json!("<unset>"), json!("1s")]
    );
    let many_ports = json!({"metadata": {"name": "p"}, "ports": [{"port": 1}, {"port": 2}, {"port": 3}, {"port": 4}]});
    assert_eq!(cells(ENDPOINT_SLICE, &many_ports)[2], json!("1,2,3 + 1 more..."));
}
