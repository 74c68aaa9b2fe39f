//! Cases ported from upstream `TestValidateServiceCreate` / `TestValidateServiceUpdate` (validation_test.go) and
//! the strategy tests: each tweaks upstream's `makeValidService` and lists the fields that must be reported.

use serde_json::{Value, json};

use super::*;

/// Upstream `makeValidService`.
fn valid() -> Value {
    json!({
        "metadata": {"name": "valid", "namespace": "valid", "labels": {}, "annotations": {}, "resourceVersion": "1"},
        "spec": {
            "selector": {"key": "val"},
            "sessionAffinity": "None",
            "type": "ClusterIP",
            "ports": [{"name": "p", "protocol": "TCP", "port": 8675, "targetPort": 8675}],
            "internalTrafficPolicy": "Cluster"
        }
    })
}

fn run(svc: &Value) -> Vec<String> {
    let rt = skiff_api::resource::lookup("", "v1", "services").expect("services");
    crate::validate_create(rt, svc).into_iter().map(|e| e.field).collect()
}

type Tweak = fn(&mut Value);

fn lb(s: &mut Value) {
    s["spec"]["type"] = json!("LoadBalancer");
    s["spec"]["externalTrafficPolicy"] = json!("Cluster");
    s["spec"]["allocateLoadBalancerNodePorts"] = json!(true);
}

fn node_port(s: &mut Value) {
    s["spec"]["type"] = json!("NodePort");
    s["spec"]["externalTrafficPolicy"] = json!("Cluster");
}

fn external_name(s: &mut Value) {
    s["spec"]["type"] = json!("ExternalName");
    s["spec"]["externalName"] = json!("foo.bar.example.com");
    crate::json::remove(&mut s["spec"], "internalTrafficPolicy");
}

fn headless(s: &mut Value) {
    s["spec"]["clusterIP"] = json!("None");
    s["spec"]["clusterIPs"] = json!(["None"]);
}

fn two_ports(s: &mut Value) {
    s["spec"]["ports"] = json!([
        {"name": "p", "protocol": "TCP", "port": 12345, "targetPort": 12345},
        {"name": "q", "protocol": "TCP", "port": 12346, "targetPort": 12346}
    ]);
}

#[test]
fn validate_service_create_table() {
    let cases: Vec<(&str, Tweak, &[&str])> = vec![
        ("valid", |_| {}, &[]),
        ("missing namespace", |s| s["metadata"]["namespace"] = json!(""), &["metadata.namespace"]),
        ("invalid namespace", |s| s["metadata"]["namespace"] = json!("-123"), &["metadata.namespace"]),
        ("missing name", |s| s["metadata"]["name"] = json!(""), &["metadata.name"]),
        ("invalid name", |s| s["metadata"]["name"] = json!("-123"), &["metadata.name"]),
        ("name starting with digit", |s| s["metadata"]["name"] = json!("1web"), &["metadata.name"]),
        ("too long name", |s| s["metadata"]["name"] = json!("a".repeat(64)), &["metadata.name"]),
        ("invalid generateName", |s| s["metadata"]["generateName"] = json!("-123"), &["metadata.generateName"]),
        (
            "too long generateName",
            |s| s["metadata"]["generateName"] = json!("a".repeat(65)),
            &["metadata.generateName"],
        ),
        (
            "invalid label",
            |s| s["metadata"]["labels"]["NoUppercaseOrSpecialCharsLike=Equals"] = json!("bar"),
            &["metadata.labels"],
        ),
        (
            "invalid annotation",
            |s| s["metadata"]["annotations"]["NoSpecialCharsLike=Equals"] = json!("bar"),
            &["metadata.annotations"],
        ),
        ("nil selector", |s| crate::json::remove(&mut s["spec"], "selector"), &[]),
        ("invalid selector", |s| s["spec"]["selector"]["NoSpecialCharsLike=Equals"] = json!("bar"), &["spec.selector"]),
        ("missing session affinity", |s| s["spec"]["sessionAffinity"] = json!(""), &["spec.sessionAffinity"]),
        ("unsupported session affinity", |s| s["spec"]["sessionAffinity"] = json!("Sticky"), &["spec.sessionAffinity"]),
        ("missing type", |s| s["spec"]["type"] = json!(""), &["spec.type"]),
        ("unsupported type", |s| s["spec"]["type"] = json!("Balanced"), &["spec.type"]),
        ("missing ports", |s| s["spec"]["ports"] = json!([]), &["spec.ports"]),
        (
            "missing ports but headless",
            |s| {
                s["spec"]["ports"] = json!([]);
                headless(s);
            },
            &[],
        ),
        ("empty port[0] name", |s| s["spec"]["ports"][0]["name"] = json!(""), &[]),
        (
            "empty port[1] name",
            |s| {
                two_ports(s);
                s["spec"]["ports"][1]["name"] = json!("");
            },
            &["spec.ports[1].name"],
        ),
        (
            "empty multi-port port[0] name",
            |s| {
                two_ports(s);
                s["spec"]["ports"][0]["name"] = json!("");
            },
            &["spec.ports[0].name"],
        ),
        ("invalid port name", |s| s["spec"]["ports"][0]["name"] = json!("INVALID"), &["spec.ports[0].name"]),
        ("missing protocol", |s| s["spec"]["ports"][0]["protocol"] = json!(""), &["spec.ports[0].protocol"]),
        ("invalid protocol", |s| s["spec"]["ports"][0]["protocol"] = json!("INVALID"), &["spec.ports[0].protocol"]),
        ("SCTP protocol", |s| s["spec"]["ports"][0]["protocol"] = json!("SCTP"), &[]),
        (
            "invalid cluster ip",
            |s| {
                s["spec"]["clusterIP"] = json!("invalid");
                s["spec"]["clusterIPs"] = json!(["invalid"]);
            },
            &["spec.clusterIPs[0]"],
        ),
        ("missing port", |s| s["spec"]["ports"][0]["port"] = json!(0), &["spec.ports[0].port"]),
        ("invalid port", |s| s["spec"]["ports"][0]["port"] = json!(65536), &["spec.ports[0].port"]),
        ("invalid target port", |s| s["spec"]["ports"][0]["targetPort"] = json!(0), &["spec.ports[0].targetPort"]),
        ("named target port", |s| s["spec"]["ports"][0]["targetPort"] = json!("http"), &[]),
        (
            "invalid named target port",
            |s| s["spec"]["ports"][0]["targetPort"] = json!("-http-"),
            &["spec.ports[0].targetPort"],
        ),
        ("valid port headless", |s| headless(s), &[]),
        (
            "invalid port headless",
            |s| {
                headless(s);
                s["spec"]["ports"][0]["port"] = json!(11722);
                s["spec"]["ports"][0]["targetPort"] = json!(65536);
            },
            &["spec.ports[0].targetPort"],
        ),
        (
            "invalid publicIPs localhost",
            |s| {
                s["spec"]["externalTrafficPolicy"] = json!("Cluster");
                s["spec"]["externalIPs"] = json!(["127.0.0.1"]);
            },
            &["spec.externalIPs[0]"],
        ),
        (
            "invalid publicIPs unspecified",
            |s| {
                s["spec"]["externalTrafficPolicy"] = json!("Cluster");
                s["spec"]["externalIPs"] = json!(["0.0.0.0"]);
            },
            &["spec.externalIPs[0]"],
        ),
        (
            "invalid publicIPs link-local",
            |s| {
                s["spec"]["externalTrafficPolicy"] = json!("Cluster");
                s["spec"]["externalIPs"] = json!(["169.254.1.1"]);
            },
            &["spec.externalIPs[0]"],
        ),
        (
            "invalid publicIPs host",
            |s| {
                s["spec"]["externalTrafficPolicy"] = json!("Cluster");
                s["spec"]["externalIPs"] = json!(["myhost.mydomain"]);
            },
            &["spec.externalIPs[0]"],
        ),
        (
            "valid publicIPs",
            |s| {
                s["spec"]["externalTrafficPolicy"] = json!("Cluster");
                s["spec"]["externalIPs"] = json!(["1.2.3.4"]);
            },
            &[],
        ),
        (
            "externalIPs without externalTrafficPolicy",
            |s| s["spec"]["externalIPs"] = json!(["1.2.3.4"]),
            &["spec.externalTrafficPolicy"],
        ),
        (
            "dup port name",
            |s| {
                two_ports(s);
                s["spec"]["ports"][1]["name"] = json!("p");
            },
            &["spec.ports[1].name"],
        ),
        (
            "valid load balancer protocol UDP",
            |s| {
                lb(s);
                s["spec"]["ports"][0]["protocol"] = json!("UDP");
            },
            &[],
        ),
        (
            "load balancer with mix protocol",
            |s| {
                lb(s);
                two_ports(s);
                s["spec"]["ports"][1]["protocol"] = json!("UDP");
            },
            &[],
        ),
        ("valid cluster ip - none", headless, &[]),
        (
            "valid cluster ip - ipv4",
            |s| {
                s["spec"]["clusterIP"] = json!("1.2.3.4");
                s["spec"]["clusterIPs"] = json!(["1.2.3.4"]);
            },
            &[],
        ),
        ("valid type - nodeport", node_port, &[]),
        ("valid type - loadbalancer", lb, &[]),
        (
            "loadbalancer without allocateLoadBalancerNodePorts",
            |s| {
                lb(s);
                crate::json::remove(&mut s["spec"], "allocateLoadBalancerNodePorts");
            },
            &["allocateLoadBalancerNodePorts"],
        ),
        (
            "allocateLoadBalancerNodePorts on ClusterIP",
            |s| s["spec"]["allocateLoadBalancerNodePorts"] = json!(true),
            &["spec.allocateLoadBalancerNodePorts"],
        ),
        (
            "valid type=NodePort service with NodePort",
            |s| {
                node_port(s);
                s["spec"]["ports"][0]["nodePort"] = json!(30123);
            },
            &[],
        ),
        (
            "invalid cluster service with NodePort",
            |s| s["spec"]["ports"][0]["nodePort"] = json!(30123),
            &["spec.ports[0].nodePort"],
        ),
        (
            "duplicate nodeports",
            |s| {
                node_port(s);
                two_ports(s);
                s["spec"]["ports"][0]["nodePort"] = json!(30001);
                s["spec"]["ports"][1]["nodePort"] = json!(30001);
            },
            &["spec.ports[1].nodePort"],
        ),
        (
            "duplicate nodeports (different protocols)",
            |s| {
                node_port(s);
                two_ports(s);
                s["spec"]["ports"][0]["nodePort"] = json!(30001);
                s["spec"]["ports"][1]["nodePort"] = json!(30001);
                s["spec"]["ports"][1]["protocol"] = json!("UDP");
            },
            &[],
        ),
        (
            "invalid duplicate ports (with same protocol)",
            |s| {
                two_ports(s);
                s["spec"]["ports"][1]["port"] = json!(12345);
            },
            &["spec.ports[1]"],
        ),
        (
            "valid duplicate ports (with different protocols)",
            |s| {
                two_ports(s);
                s["spec"]["ports"][1]["port"] = json!(12345);
                s["spec"]["ports"][1]["protocol"] = json!("UDP");
            },
            &[],
        ),
        (
            "valid LoadBalancer source range annotation",
            |s| {
                lb(s);
                s["metadata"]["annotations"][LB_SOURCE_RANGES_ANNOTATION] = json!("1.2.3.4/8,  5.6.7.8/16");
            },
            &[],
        ),
        (
            "empty LoadBalancer source range annotation",
            |s| {
                lb(s);
                s["metadata"]["annotations"][LB_SOURCE_RANGES_ANNOTATION] = json!("");
            },
            &[],
        ),
        (
            "invalid LoadBalancer source range annotation (hostname)",
            |s| {
                lb(s);
                s["metadata"]["annotations"][LB_SOURCE_RANGES_ANNOTATION] = json!("foo.bar");
            },
            &["metadata.annotations[service.beta.kubernetes.io/load-balancer-source-ranges]"],
        ),
        (
            "invalid LoadBalancer source range annotation (invalid CIDR)",
            |s| {
                lb(s);
                s["metadata"]["annotations"][LB_SOURCE_RANGES_ANNOTATION] = json!("1.2.3.4/33");
            },
            &["metadata.annotations[service.beta.kubernetes.io/load-balancer-source-ranges]"],
        ),
        (
            "invalid source range for non LoadBalancer type service",
            |s| s["spec"]["loadBalancerSourceRanges"] = json!(["1.2.3.4/8", "5.6.7.8/16"]),
            &["spec.LoadBalancerSourceRanges"],
        ),
        (
            "valid LoadBalancer source range",
            |s| {
                lb(s);
                s["spec"]["loadBalancerSourceRanges"] = json!(["1.2.3.4/8", "5.6.7.8/16"]);
            },
            &[],
        ),
        (
            "empty LoadBalancer source range",
            |s| {
                lb(s);
                s["spec"]["loadBalancerSourceRanges"] = json!(["   "]);
            },
            &["spec.LoadBalancerSourceRanges[0]"],
        ),
        (
            "invalid LoadBalancer source range",
            |s| {
                lb(s);
                s["spec"]["loadBalancerSourceRanges"] = json!(["foo.bar"]);
            },
            &["spec.LoadBalancerSourceRanges[0]"],
        ),
        ("valid ExternalName", external_name, &[]),
        (
            "valid ExternalName (trailing dot)",
            |s| {
                external_name(s);
                s["spec"]["externalName"] = json!("foo.bar.example.com.");
            },
            &[],
        ),
        (
            "invalid ExternalName clusterIP (valid IP)",
            |s| {
                external_name(s);
                s["spec"]["clusterIP"] = json!("1.2.3.4");
                s["spec"]["clusterIPs"] = json!(["1.2.3.4"]);
            },
            &["spec.clusterIPs"],
        ),
        (
            "invalid ExternalName clusterIP (None)",
            |s| {
                external_name(s);
                headless(s);
            },
            &["spec.clusterIPs"],
        ),
        (
            "invalid ExternalName (not a DNS name)",
            |s| {
                external_name(s);
                s["spec"]["externalName"] = json!("-123");
            },
            &["spec.externalName"],
        ),
        (
            "invalid ExternalName (uppercase)",
            |s| {
                external_name(s);
                s["spec"]["externalName"] = json!("Foo.Example.com");
            },
            &["spec.externalName"],
        ),
        (
            "missing ExternalName",
            |s| {
                external_name(s);
                s["spec"]["externalName"] = json!("");
            },
            &["spec.externalName"],
        ),
        (
            "ExternalName with ipFamilies and policy",
            |s| {
                external_name(s);
                s["spec"]["ipFamilies"] = json!(["IPv4"]);
                s["spec"]["ipFamilyPolicy"] = json!("SingleStack");
            },
            &["spec.ipFamilies", "spec.ipFamilyPolicy"],
        ),
        (
            "LoadBalancer type cannot have None ClusterIP",
            |s| {
                lb(s);
                headless(s);
            },
            &["spec.clusterIPs[0]"],
        ),
        (
            "invalid node port with clusterIP None",
            |s| {
                node_port(s);
                headless(s);
            },
            &["spec.clusterIPs[0]"],
        ),
        (
            "valid ClientIP affinity",
            |s| {
                s["spec"]["sessionAffinity"] = json!("ClientIP");
                s["spec"]["sessionAffinityConfig"] = json!({"clientIP": {"timeoutSeconds": 10800}});
            },
            &[],
        ),
        (
            "ClientIP affinity without config",
            |s| s["spec"]["sessionAffinity"] = json!("ClientIP"),
            &["spec.sessionAffinityConfig"],
        ),
        (
            "invalid ClientIP timeout 0",
            |s| {
                s["spec"]["sessionAffinity"] = json!("ClientIP");
                s["spec"]["sessionAffinityConfig"] = json!({"clientIP": {"timeoutSeconds": 0}});
            },
            &["spec.sessionAffinityConfig.clientIP.timeoutSeconds"],
        ),
        (
            "invalid ClientIP timeout too big",
            |s| {
                s["spec"]["sessionAffinity"] = json!("ClientIP");
                s["spec"]["sessionAffinityConfig"] = json!({"clientIP": {"timeoutSeconds": 86401}});
            },
            &["spec.sessionAffinityConfig.clientIP.timeoutSeconds"],
        ),
        (
            "None affinity with config",
            |s| s["spec"]["sessionAffinityConfig"] = json!({"clientIP": {"timeoutSeconds": 90}}),
            &["spec.sessionAffinityConfig"],
        ),
        (
            "invalid externalTraffic field",
            |s| {
                lb(s);
                s["spec"]["externalTrafficPolicy"] = json!("invalid");
            },
            &["spec.externalTrafficPolicy"],
        ),
        (
            "externalTrafficPolicy on ClusterIP",
            |s| s["spec"]["externalTrafficPolicy"] = json!("Local"),
            &["spec.externalTrafficPolicy"],
        ),
        (
            "nil internalTrafficPolicy",
            |s| crate::json::remove(&mut s["spec"], "internalTrafficPolicy"),
            &["spec.internalTrafficPolicy"],
        ),
        (
            "invalid internalTrafficPolicy",
            |s| s["spec"]["internalTrafficPolicy"] = json!("invalid"),
            &["spec.internalTrafficPolicy"],
        ),
        ("Local internalTrafficPolicy", |s| s["spec"]["internalTrafficPolicy"] = json!("Local"), &[]),
        (
            "valid healthCheckNodePort",
            |s| {
                lb(s);
                s["spec"]["externalTrafficPolicy"] = json!("Local");
                s["spec"]["healthCheckNodePort"] = json!(34567);
            },
            &[],
        ),
        (
            "missing healthCheckNodePort",
            |s| {
                lb(s);
                s["spec"]["externalTrafficPolicy"] = json!("Local");
            },
            &["spec.healthCheckNodePort"],
        ),
        (
            "healthCheckNodePort with externalTrafficPolicy Cluster",
            |s| {
                lb(s);
                s["spec"]["healthCheckNodePort"] = json!(34567);
            },
            &["spec.healthCheckNodePort"],
        ),
        ("invalid ipFamilies", |s| s["spec"]["ipFamilies"] = json!(["not-a-family"]), &["spec.ipFamilies[0]"]),
        ("duplicate ipFamilies", |s| s["spec"]["ipFamilies"] = json!(["IPv4", "IPv4"]), &["spec.ipFamilies[1]"]),
        ("invalid ipFamilyPolicy", |s| s["spec"]["ipFamilyPolicy"] = json!("Wide"), &["spec.ipFamilyPolicy"]),
        (
            "clusterIPs[0] must match clusterIP",
            |s| {
                s["spec"]["clusterIP"] = json!("10.0.0.1");
                s["spec"]["clusterIPs"] = json!(["10.0.0.2"]);
            },
            &["spec.clusterIPs"],
        ),
        ("clusterIP without clusterIPs", |s| s["spec"]["clusterIP"] = json!("10.0.0.1"), &["spec.clusterIPs"]),
        ("clusterIPs without clusterIP", |s| s["spec"]["clusterIPs"] = json!(["10.0.0.1"]), &["spec.clusterIPs"]),
        (
            "None must be the only clusterIP",
            |s| {
                s["spec"]["clusterIP"] = json!("None");
                s["spec"]["clusterIPs"] = json!(["None", "10.0.0.1"]);
            },
            &["spec.clusterIPs"],
        ),
        (
            "two IPv4 clusterIPs",
            |s| {
                s["spec"]["clusterIP"] = json!("10.0.0.1");
                s["spec"]["clusterIPs"] = json!(["10.0.0.1", "10.0.0.2"]);
            },
            &["spec.clusterIPs"],
        ),
        (
            "dual-stack clusterIPs",
            |s| {
                s["spec"]["clusterIP"] = json!("10.0.0.1");
                s["spec"]["clusterIPs"] = json!(["10.0.0.1", "fd00::1"]);
                s["spec"]["ipFamilies"] = json!(["IPv4", "IPv6"]);
                s["spec"]["ipFamilyPolicy"] = json!("PreferDualStack");
            },
            &[],
        ),
        (
            "clusterIP family does not match ipFamilies",
            |s| {
                s["spec"]["clusterIP"] = json!("fd00::1");
                s["spec"]["clusterIPs"] = json!(["fd00::1"]);
                s["spec"]["ipFamilies"] = json!(["IPv4"]);
            },
            &["spec.clusterIPs[0]"],
        ),
        (
            "loadBalancerClass on ClusterIP",
            |s| s["spec"]["loadBalancerClass"] = json!("example.com/lb"),
            &["spec.loadBalancerClass"],
        ),
        (
            "invalid loadBalancerClass",
            |s| {
                lb(s);
                s["spec"]["loadBalancerClass"] = json!("a/b/c");
            },
            &["spec.loadBalancerClass"],
        ),
        (
            "invalid trafficDistribution",
            |s| s["spec"]["trafficDistribution"] = json!("Nearby"),
            &["spec.trafficDistribution"],
        ),
        ("valid appProtocol", |s| s["spec"]["ports"][0]["appProtocol"] = json!("kubernetes.io/h2c"), &[]),
        (
            "invalid appProtocol",
            |s| s["spec"]["ports"][0]["appProtocol"] = json!("a/b/c"),
            &["spec.ports[0].appProtocol"],
        ),
    ];
    let mut failures = Vec::new();
    for (name, tweak, want) in cases {
        let mut svc = valid();
        tweak(&mut svc);
        let got = run(&svc);
        if got != want {
            failures.push(format!("{name}: got {got:?}, want {want:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn messages_match_upstream() {
    let mut svc = valid();
    svc["spec"]["ports"][0]["port"] = json!(0);
    svc["spec"]["ports"][0]["protocol"] = json!("HTTP");
    svc["spec"]["type"] = json!("Balanced");
    let got: Vec<String> = validate(&svc).iter().map(ToString::to_string).collect();
    assert_eq!(
        got,
        vec![
            "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
            "spec.ports[0].protocol: Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
            "spec.type: Unsupported value: \"Balanced\": supported values: \"ClusterIP\", \"ExternalName\", \
         \"LoadBalancer\", \"NodePort\"",
        ]
    );
    let mut svc = valid();
    svc["spec"]["ports"][0]["nodePort"] = json!(30000);
    assert_eq!(
        validate(&svc)[0].to_string(),
        "spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"
    );
}

#[test]
fn defaults_match_set_defaults_service() {
    let mut svc = json!({"metadata": {"name": "web", "namespace": "default"},
        "spec": {"ports": [{"port": 80}, {"port": 443, "targetPort": "https", "protocol": "UDP"}]}});
    default(&mut svc);
    let spec = &svc["spec"];
    assert_eq!(spec["type"], "ClusterIP");
    assert_eq!(spec["sessionAffinity"], "None");
    assert_eq!(spec["ports"][0]["protocol"], "TCP");
    assert_eq!(spec["ports"][0]["targetPort"], 80);
    assert_eq!(spec["ports"][1]["targetPort"], "https");
    assert_eq!(spec["ports"][1]["protocol"], "UDP");
    assert_eq!(spec["internalTrafficPolicy"], "Cluster");
    assert_eq!(spec["ipFamilyPolicy"], "SingleStack");
    assert_eq!(spec["ipFamilies"], json!(["IPv4"]));
    assert!(spec.get("externalTrafficPolicy").is_none());
    assert!(spec.get("allocateLoadBalancerNodePorts").is_none());

    let mut svc = json!({"spec": {"type": "LoadBalancer", "sessionAffinity": "ClientIP", "ports": [{"port": 80}]}});
    default(&mut svc);
    assert_eq!(svc["spec"]["externalTrafficPolicy"], "Cluster");
    assert_eq!(svc["spec"]["allocateLoadBalancerNodePorts"], true);
    assert_eq!(svc["spec"]["sessionAffinityConfig"], json!({"clientIP": {"timeoutSeconds": 10800}}));

    let mut svc = json!({"spec": {"type": "ExternalName", "externalName": "example.com"}});
    default(&mut svc);
    assert!(svc["spec"].get("ipFamilies").is_none());
    assert!(svc["spec"].get("internalTrafficPolicy").is_none());

    let mut svc = json!({"spec": {"clusterIP": "None", "ports": [{"port": 80}]}});
    default(&mut svc);
    assert_eq!(svc["spec"]["clusterIPs"], json!(["None"]));
    assert_eq!(svc["spec"]["ipFamilyPolicy"], "RequireDualStack");

    let mut svc = json!({"spec": {"clusterIP": "fd00::10", "selector": {"a": "b"}, "ports": [{"port": 80}]}});
    default(&mut svc);
    assert_eq!(svc["spec"]["ipFamilies"], json!(["IPv6"]));
}

#[test]
fn defaulted_services_validate() {
    for ty in ["ClusterIP", "NodePort", "LoadBalancer"] {
        let mut svc = json!({"metadata": {"name": "web", "namespace": "default"},
            "spec": {"type": ty, "ports": [{"port": 80}], "selector": {"app": "web"}}});
        default(&mut svc);
        assert!(validate(&svc).is_empty(), "{ty}: {:?}", validate(&svc));
    }
}

fn allocated() -> Value {
    let mut s = valid();
    s["spec"]["clusterIP"] = json!("10.0.0.10");
    s["spec"]["clusterIPs"] = json!(["10.0.0.10"]);
    s["spec"]["ipFamilies"] = json!(["IPv4"]);
    s["spec"]["ipFamilyPolicy"] = json!("SingleStack");
    s
}

#[test]
fn cluster_ip_is_immutable() {
    let old = allocated();
    let mut new = allocated();
    new["spec"]["clusterIP"] = json!("10.0.0.11");
    new["spec"]["clusterIPs"] = json!(["10.0.0.11"]);
    let errs = validate_update(&old, &new);
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].field, "spec.clusterIPs[0]");
    assert_eq!(errs[0].detail, "may not change once set");
    let mut cleared = allocated();
    cleared["spec"]["clusterIPs"] = json!([]);
    cleared["spec"]["clusterIP"] = json!("");
    assert_eq!(validate_update(&old, &cleared)[0].detail, "primary clusterIP can not be unset");
    assert!(validate_update(&old, &allocated()).is_empty());
}

#[test]
fn switching_to_external_name_wipes_allocated_fields() {
    let mut old = allocated();
    node_port(&mut old);
    old["spec"]["ports"][0]["nodePort"] = json!(30080);
    let mut new = old.clone();
    new["spec"]["type"] = json!("ExternalName");
    new["spec"]["externalName"] = json!("example.com");
    crate::json::remove(&mut new["spec"], "internalTrafficPolicy");
    prepare_update(&old, &mut new);
    let spec = &new["spec"];
    for gone in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy", "externalTrafficPolicy"] {
        assert!(spec.get(gone).is_none(), "{gone} should be wiped: {spec}");
    }
    assert!(spec["ports"][0].get("nodePort").is_none());
    assert!(validate(&new).is_empty(), "{:?}", validate(&new));
    assert!(validate_update(&old, &new).is_empty());
}

#[test]
fn old_clients_keep_cluster_ips() {
    let old = allocated();
    let mut new = allocated();
    crate::json::remove(&mut new["spec"], "clusterIPs");
    prepare_update(&old, &mut new);
    assert_eq!(new["spec"]["clusterIPs"], json!(["10.0.0.10"]));
    let mut to_cluster = allocated();
    node_port(&mut to_cluster);
    to_cluster["spec"]["ports"][0]["nodePort"] = json!(30080);
    let mut back = to_cluster.clone();
    back["spec"]["type"] = json!("ClusterIP");
    prepare_update(&to_cluster, &mut back);
    assert!(back["spec"]["ports"][0].get("nodePort").is_none());
    assert!(back["spec"].get("externalTrafficPolicy").is_none());
    assert!(validate(&back).is_empty(), "{:?}", validate(&back));
}

#[test]
fn health_check_node_port_is_immutable_while_needed() {
    let mut old = allocated();
    lb(&mut old);
    old["spec"]["externalTrafficPolicy"] = json!("Local");
    old["spec"]["healthCheckNodePort"] = json!(31000);
    let mut new = old.clone();
    new["spec"]["healthCheckNodePort"] = json!(31001);
    assert_eq!(validate_update(&old, &new)[0].to_string(), "spec.healthCheckNodePort: Forbidden: field is immutable");
}
