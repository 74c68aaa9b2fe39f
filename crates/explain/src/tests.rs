use super::*;
use serde_json::json;

fn pod(name: &str, labels: serde_json::Value, ip: &str, ready: bool) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "spec": {"nodeName": "node-1", "containers": [{"name": "web", "ports": [{"name": "http", "containerPort": 80}]}]},
        "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
    }))
    .expect("a pod")
}

fn service(spec: serde_json::Value) -> Service {
    serde_json::from_value(json!({"metadata": {"name": "web-v2", "namespace": "default"}, "spec": spec}))
        .expect("a service")
}

fn slice(endpoints: serde_json::Value) -> EndpointSlice {
    serde_json::from_value(json!({
        "metadata": {"name": "web-v2-abc", "namespace": "default", "labels": {"kubernetes.io/service-name": "web-v2"}},
        "addressType": "IPv4",
        "ports": [{"port": 80, "protocol": "TCP"}],
        "endpoints": endpoints,
    }))
    .expect("a slice")
}

fn lab() -> Objects {
    Objects {
        service: service(json!({
            "type": "LoadBalancer", "clusterIP": "10.43.0.20", "clusterIPs": ["10.43.0.20"],
            "selector": {"app": "web", "version": "v2"},
            "ports": [{"port": 8088, "targetPort": 80, "nodePort": 31000, "protocol": "TCP"}],
        })),
        pods: vec![
            pod("web-v1-a", json!({"app": "web", "version": "v1"}), "10.42.0.5", true),
            pod("web-v2-b", json!({"app": "web", "version": "v2"}), "10.42.0.6", true),
            pod("api-c", json!({"app": "api"}), "10.42.0.7", true),
            pod("sleep-d", json!({"run": "sleep"}), "10.42.0.8", true),
        ],
        slices: vec![slice(json!([
            {"addresses": ["10.42.0.6"], "conditions": {"ready": true}, "nodeName": "node-1",
             "targetRef": {"kind": "Pod", "name": "web-v2-b", "namespace": "default"}}
        ]))],
    }
}

fn programmed(port: &ServicePort, backends: &[&str]) -> Programmed {
    let chain = skiff_proxy::ruleset::service_chain(port);
    Programmed {
        cluster_ip_verdict: Some(if backends.is_empty() {
            "goto reject-chain".into()
        } else {
            format!("goto {chain}")
        }),
        external_chain: port.is_external().then(|| (skiff_proxy::ruleset::external_chain(port), true)),
        node_port_verdict: port.node_port.map(|_| format!("goto {}", skiff_proxy::ruleset::external_chain(port))),
        backends: backends.iter().map(|b| b.parse().expect("an address")).collect(),
    }
}

#[test]
fn the_lab_service_shows_its_pod_the_version_1_near_miss_and_where_traffic_goes() {
    let text = report(&lab(), "cluster.local", &mut |port| Ok(programmed(port, &["10.42.0.6:80"])));
    assert!(text.contains("Selector:   app=web,version=v2"), "{text}");
    assert!(text.contains("matching the selector: 1\n  web-v2-b  10.42.0.6  Ready  node node-1"), "{text}");
    assert!(text.contains("  web-v1-a  missing version=v2 (has version=v1)"), "{text}");
    assert!(!text.contains("api-c"), "a pod with none of the selector's labels is no near miss: {text}");
    assert!(!text.contains("sleep-d"), "{text}");
    assert!(text.contains("1 Ready of 1\n  10.42.0.6  Ready  pod web-v2-b  node node-1  ports 80/TCP"), "{text}");
    assert!(text.contains("web-v2.default.svc.cluster.local  A 10.43.0.20"), "{text}");
    assert!(text.contains("8088/tcp: chain service-") && text.contains("-default/web-v2/tcp/\n"), "{text}");
    assert!(text.contains("from outside: chain external-"), "{text}");
    assert!(text.contains("    NodePort 31000: chain external-"), "{text}");
    assert!(text.contains("backends: 10.42.0.6:80"), "{text}");
    assert!(text.contains("Verdict: traffic to web-v2 reaches 1 Ready endpoint(s)."), "{text}");
}

#[test]
fn a_selector_no_pod_has_says_to_look_at_the_labels_and_shows_no_backends() {
    let mut objects = lab();
    objects.pods.retain(|p| p.metadata.name.as_deref() == Some("web-v1-a"));
    objects.slices.clear();
    let text = report(&objects, "cluster.local", &mut |port| Ok(programmed(port, &[])));
    assert!(text.contains("matching the selector: 0"), "{text}");
    assert!(text.contains("0 Ready of 0"), "{text}");
    assert!(text.contains("8088/tcp: refused at once (no endpoints)\n"), "{text}");
    assert!(text.contains("backends: none"), "{text}");
    assert!(text.contains("Verdict: no pod in default has all of the selector's labels; look closely"), "{text}");

    // No pod has even one of its labels: those that use its keys are the hint (a typo in a value).
    objects.pods = vec![
        pod("api-c", json!({"app": "wbe"}), "10.42.0.7", true),
        pod("sleep-d", json!({"run": "sleep"}), "10.42.0.8", true),
    ];
    let text = report(&objects, "cluster.local", &mut |port| Ok(programmed(port, &[])));
    assert!(
        text.contains(
            "label keys, but other values:\n  api-c  missing app=web (has app=wbe), version=v2 (no version label)\n"
        ),
        "{text}"
    );
    assert!(!text.contains("sleep-d"), "{text}");
    objects.pods.remove(0);
    let text = report(&objects, "cluster.local", &mut |port| Ok(programmed(port, &[])));
    assert!(
        text.contains("Verdict: no pod in default has any of the selector's labels (app=web,version=v2)"),
        "{text}"
    );
}

#[test]
fn a_matching_pod_without_the_named_target_port_and_a_not_ready_pod_are_called_out() {
    let mut objects = lab();
    let mut spec = objects.service.spec.take().expect("a spec");
    spec.ports = Some(vec![ApiServicePort {
        port: 80,
        target_port: Some(IntOrString::String("web".into())),
        ..Default::default()
    }]);
    objects.service.spec = Some(spec);
    objects.pods = vec![pod("web-v2-b", json!({"app": "web", "version": "v2"}), "10.42.0.6", false)];
    objects.slices.clear();
    let text = report(&objects, "cluster.local", &mut |_| Err("nft: not found".into()));
    assert!(text.contains("web-v2-b  10.42.0.6  NotReady"), "{text}");
    assert!(text.contains("has no container port named web (TCP)"), "{text}");
    assert!(text.contains("could not read the table: nft: not found"), "{text}");
    assert!(text.contains("has no container port named web, so it is no endpoint for port 80"), "{text}");
    assert!(text.contains("1 pod(s) match, but none is Ready"), "{text}");
}

#[test]
fn headless_external_name_and_selector_less_services_say_what_they_are() {
    let mut headless = lab();
    headless.service = service(json!({"clusterIP": "None", "selector": {"app": "web", "version": "v2"},
        "ports": [{"name": "http", "port": 80}]}));
    let mut named = slice(json!([
        {"addresses": ["10.42.0.6"], "hostname": "Web-0", "conditions": {"ready": true}},
        {"addresses": ["10.42.0.7"], "conditions": {"ready": true}},
        {"addresses": ["10.42.0.9"], "conditions": {"ready": false}},
    ]));
    named.ports = Some(vec![k8s_openapi::api::discovery::v1::EndpointPort {
        name: Some("http".into()),
        port: Some(8080),
        protocol: Some("TCP".into()),
        ..Default::default()
    }]);
    headless.slices = vec![named];
    let text = report(&headless, "cluster.local", &mut |_| panic!("a headless Service has no rules to read"));
    assert!(text.contains("IP:         None (headless)"), "{text}");
    assert!(text.contains("  web-v2.default.svc.cluster.local  A 10.42.0.6, A 10.42.0.7\n"), "{text}");
    assert!(text.contains("  web-0.web-v2.default.svc.cluster.local  A 10.42.0.6\n"), "{text}");
    assert!(text.contains("  10-42-0-7.web-v2.default.svc.cluster.local  A 10.42.0.7\n"), "{text}");
    assert!(!text.contains("10-42-0-9.web-v2"), "not Ready: {text}");
    let srv = "_http._tcp.web-v2.default.svc.cluster.local";
    assert!(text.contains(&format!("  {srv}  SRV 8080 web-0.web-v2.default.svc.cluster.local\n")), "{text}");
    assert!(text.contains(&format!("  {srv}  SRV 8080 10-42-0-7.web-v2.default.svc.cluster.local\n")), "{text}");
    assert!(text.contains("10.42.0.9  NotReady"), "{text}");
    assert!(text.contains("headless: no virtual IP"), "{text}");

    let mut alias = lab();
    alias.service = service(json!({"type": "ExternalName", "externalName": "api.example.com"}));
    let text = report(&alias, "cluster.local", &mut |_| panic!("an ExternalName has no rules to read"));
    assert!(text.contains("web-v2.default.svc.cluster.local  CNAME api.example.com"), "{text}");

    let mut by_hand = lab();
    by_hand.service = service(json!({"clusterIP": "10.43.0.30", "ports": [{"port": 80}]}));
    let text = report(&by_hand, "cluster.local", &mut |port| Ok(programmed(port, &["10.42.0.6:80"])));
    assert!(text.contains("Selector:   <none>") && text.contains("hand-written Endpoints"), "{text}");
    assert!(!text.contains("Near misses"), "{text}");
    assert!(text.contains("Verdict: traffic to web-v2 reaches 1 Ready endpoint(s)."), "{text}");
}

#[test]
fn an_address_in_two_slices_is_one_endpoint_a_terminating_one_is_not_ready_and_a_local_drop_is_the_verdict() {
    let mut objects = lab();
    objects.service = service(json!({
        "clusterIP": "10.43.0.20", "clusterIPs": ["10.43.0.20"], "internalTrafficPolicy": "Local",
        "selector": {"app": "web", "version": "v2"}, "ports": [{"port": 80}],
    }));
    let mut second = slice(json!([
        {"addresses": ["10.42.0.6"], "conditions": {"ready": true}},
        {"addresses": ["10.42.0.9"], "conditions": {"ready": true, "serving": true, "terminating": true}},
    ]));
    second.ports = Some(vec![k8s_openapi::api::discovery::v1::EndpointPort {
        name: Some("metrics".into()),
        port: Some(9090),
        ..Default::default()
    }]);
    objects.slices.push(second);
    let text = report(&objects, "cluster.local", &mut |_| {
        Ok(Programmed {
            cluster_ip_verdict: Some("drop".into()),
            external_chain: None,
            node_port_verdict: None,
            backends: Vec::new(),
        })
    });
    assert!(text.contains("1 Ready of 2\n"), "{text}");
    assert!(text.contains("  10.42.0.6  Ready  pod web-v2-b  node node-1  ports 80/TCP, metrics 9090/TCP\n"), "{text}");
    assert!(text.contains("  10.42.0.9  Terminating  ports metrics 9090/TCP\n"), "{text}");
    assert!(text.contains("80/tcp: dropped (no endpoint on this node for its Local traffic policy)"), "{text}");
    assert!(text.contains("Verdict: port 80/tcp: internalTrafficPolicy Local and no endpoint on this node"), "{text}");
}
