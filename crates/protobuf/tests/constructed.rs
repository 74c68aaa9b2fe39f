//! Bodies built from k8s-pb messages, encoded with prost and wrapped exactly as client-go does (`k8s\0` +
//! `runtime.Unknown` with every field present), with non-pointer Go fields set to their zero values the way
//! gogo-protobuf marshals them. Expected JSON is what Kubernetes prints for the same object.

use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use prost::Message;
use serde_json::json;
use skiff_protobuf::{DecodeError, decode};

fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta { api_version: Some(api_version.into()), kind: Some(kind.into()) }),
        raw: Some(raw),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut body = b"k8s\0".to_vec();
    body.extend(unknown.encode_to_vec());
    body
}

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

fn labels(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// ObjectMeta as gogo marshals it: every non-pointer field present, creationTimestamp an empty message.
fn object_meta(name: &str, label: &[(&str, &str)]) -> meta::ObjectMeta {
    meta::ObjectMeta {
        name: s(name),
        generate_name: s(""),
        namespace: s(""),
        self_link: s(""),
        uid: s(""),
        resource_version: s(""),
        generation: Some(0),
        creation_timestamp: Some(meta::Time::default()),
        labels: labels(label),
        ..Default::default()
    }
}

fn int_or_string_int(v: i32) -> IntOrString {
    IntOrString { r#type: Some(0), int_val: Some(v), str_val: s("") }
}

fn int_or_string_str(v: &str) -> IntOrString {
    IntOrString { r#type: Some(1), int_val: Some(0), str_val: s(v) }
}

#[test]
fn deployment_like_kubectl_create_deployment() {
    let container = core::Container {
        name: s("nginx"),
        image: s("nginx"),
        working_dir: s(""),
        ports: vec![core::ContainerPort {
            name: s(""),
            host_port: Some(0),
            container_port: Some(8080),
            protocol: s(""),
            host_ip: s(""),
        }],
        resources: Some(core::ResourceRequirements::default()),
        termination_message_path: s(""),
        image_pull_policy: s(""),
        stdin: Some(false),
        stdin_once: Some(false),
        tty: Some(false),
        ..Default::default()
    };
    let deployment = apps::Deployment {
        metadata: Some(object_meta("web", &[("app", "web")])),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(1),
            selector: Some(meta::LabelSelector { match_labels: labels(&[("app", "web")]), ..Default::default() }),
            template: Some(core::PodTemplateSpec {
                metadata: Some(object_meta("", &[("app", "web")])),
                spec: Some(core::PodSpec {
                    containers: vec![container],
                    restart_policy: s(""),
                    dns_policy: s(""),
                    service_account_name: s(""),
                    host_network: Some(false),
                    ..Default::default()
                }),
            }),
            strategy: Some(apps::DeploymentStrategy { r#type: s(""), rolling_update: None }),
            min_ready_seconds: Some(0),
            paused: Some(false),
            ..Default::default()
        }),
        status: Some(apps::DeploymentStatus { replicas: Some(0), ready_replicas: Some(0), ..Default::default() }),
    };
    let decoded = decode(&envelope("apps/v1", "Deployment", deployment.encode_to_vec())).expect("decode");
    assert_eq!(
        decoded,
        json!({
            "kind": "Deployment",
            "apiVersion": "apps/v1",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [
                        {"name": "nginx", "image": "nginx", "ports": [{"containerPort": 8080}], "resources": {}}
                    ]}
                },
                "strategy": {}
            },
            "status": {}
        })
    );
}

fn service_port(name: &str, port: i32, target: IntOrString, node_port: i32) -> core::ServicePort {
    core::ServicePort {
        name: s(name),
        protocol: s("TCP"),
        app_protocol: None,
        port: Some(port),
        target_port: Some(target),
        node_port: Some(node_port),
    }
}

#[test]
fn nodeport_service_with_int_and_named_target_ports() {
    let service = core::Service {
        metadata: Some(object_meta("web", &[("app", "web")])),
        spec: Some(core::ServiceSpec {
            ports: vec![
                service_port("http", 80, int_or_string_int(8080), 30080),
                service_port("metrics", 9090, int_or_string_str("metrics"), 0),
                // no targetPort given: gogo still writes the zero IntOrString; Kubernetes defaults it to `port`
                service_port("plain", 7000, int_or_string_int(0), 0),
            ],
            selector: labels(&[("app", "web")]),
            cluster_ip: s(""),
            r#type: s("NodePort"),
            external_name: s(""),
            session_affinity: s(""),
            load_balancer_ip: s(""),
            external_traffic_policy: s(""),
            health_check_node_port: Some(0),
            publish_not_ready_addresses: Some(false),
            allocate_load_balancer_node_ports: Some(false),
            ..Default::default()
        }),
        status: Some(core::ServiceStatus {
            load_balancer: Some(core::LoadBalancerStatus::default()),
            conditions: vec![],
        }),
    };
    let decoded = decode(&envelope("v1", "Service", service.encode_to_vec())).expect("decode");
    assert_eq!(
        decoded,
        json!({
            "kind": "Service",
            "apiVersion": "v1",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "ports": [
                    {"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080, "nodePort": 30080},
                    {"name": "metrics", "protocol": "TCP", "port": 9090, "targetPort": "metrics"},
                    {"name": "plain", "protocol": "TCP", "port": 7000}
                ],
                "selector": {"app": "web"},
                "type": "NodePort",
                // a *bool set to false is meaningful and kept
                "allocateLoadBalancerNodePorts": false
            },
            "status": {"loadBalancer": {}}
        })
    );
}

#[test]
fn namespace_configmap_and_secret() {
    let namespace = core::Namespace {
        metadata: Some(object_meta("team-a", &[])),
        spec: Some(core::NamespaceSpec::default()),
        status: Some(core::NamespaceStatus { phase: s(""), conditions: vec![] }),
    };
    let decoded = decode(&envelope("v1", "Namespace", namespace.encode_to_vec())).expect("decode");
    assert_eq!(
        decoded,
        json!({"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": "team-a"}, "spec": {}, "status": {}})
    );

    let config_map = core::ConfigMap {
        metadata: Some(object_meta("cfg", &[])),
        immutable: None,
        data: labels(&[("a", "1"), ("empty", ""), ("multi", "x\ny\n")]),
        binary_data: [("blob".to_string(), vec![0u8, 1, 2, 255])].into(),
    };
    let decoded = decode(&envelope("v1", "ConfigMap", config_map.encode_to_vec())).expect("decode");
    assert_eq!(
        decoded,
        json!({
            "kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "cfg"},
            "data": {"a": "1", "empty": "", "multi": "x\ny\n"},
            "binaryData": {"blob": "AAEC/w=="}
        })
    );

    let secret = core::Secret {
        metadata: Some(object_meta("sec", &[])),
        immutable: Some(false),
        data: [("password".to_string(), b"s3cr3t".to_vec()), ("empty".to_string(), vec![])].into(),
        string_data: Default::default(),
        r#type: s("kubernetes.io/tls"),
    };
    let decoded = decode(&envelope("v1", "Secret", secret.encode_to_vec())).expect("decode");
    // The same object through k8s-openapi's serde (the Kubernetes JSON shape) must agree.
    let expected = k8s_openapi::api::core::v1::Secret {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some("sec".into()),
            ..Default::default()
        },
        immutable: Some(false),
        data: Some(
            [
                ("password".to_string(), k8s_openapi::ByteString(b"s3cr3t".to_vec())),
                ("empty".to_string(), k8s_openapi::ByteString(vec![])),
            ]
            .into(),
        ),
        type_: Some("kubernetes.io/tls".into()),
        ..Default::default()
    };
    assert_eq!(decoded, serde_json::to_value(expected).expect("serialize"));
    assert_eq!(decoded["data"]["password"], "czNjcjN0");
}

#[test]
fn times_quantities_managed_fields_and_pointer_zeros() {
    let mut metadata = object_meta("node-1", &[]);
    metadata.creation_timestamp = Some(meta::Time { seconds: Some(1_700_000_000), nanos: Some(123_456_789) });
    metadata.managed_fields = vec![meta::ManagedFieldsEntry {
        manager: s("kubectl"),
        operation: s("Update"),
        api_version: s("v1"),
        time: Some(meta::Time { seconds: Some(0), nanos: Some(0) }),
        fields_type: s("FieldsV1"),
        fields_v1: Some(meta::FieldsV1 { raw: Some(br#"{"f:spec":{"f:unschedulable":{}}}"#.to_vec()) }),
        subresource: s(""),
    }];
    let node = core::Node {
        metadata: Some(metadata),
        spec: Some(core::NodeSpec {
            unschedulable: Some(true),
            taints: vec![core::Taint { key: s("k"), value: s(""), effect: s("NoSchedule"), time_added: None }],
            ..Default::default()
        }),
        status: Some(core::NodeStatus {
            capacity: [("cpu".to_string(), Quantity { string: s("4") }), ("memory".into(), Quantity { string: s("") })]
                .into(),
            daemon_endpoints: Some(core::NodeDaemonEndpoints {
                kubelet_endpoint: Some(core::DaemonEndpoint { port: Some(10250) }),
            }),
            ..Default::default()
        }),
    };
    let decoded = decode(&envelope("v1", "Node", node.encode_to_vec())).expect("decode");
    assert_eq!(decoded["metadata"]["creationTimestamp"], "2023-11-14T22:13:20Z");
    // an explicitly encoded epoch is not Go's zero time
    assert_eq!(decoded["metadata"]["managedFields"][0]["time"], "1970-01-01T00:00:00Z");
    assert_eq!(decoded["metadata"]["managedFields"][0]["fieldsV1"], json!({"f:spec": {"f:unschedulable": {}}}));
    assert_eq!(decoded["spec"], json!({"unschedulable": true, "taints": [{"key": "k", "effect": "NoSchedule"}]}));
    assert_eq!(decoded["status"]["capacity"], json!({"cpu": "4", "memory": "0"}));
    assert_eq!(decoded["status"]["daemonEndpoints"], json!({"kubeletEndpoint": {"Port": 10250}}));

    let lease = k8s_pb::api::coordination::v1::Lease {
        metadata: Some(object_meta("lock", &[])),
        spec: Some(k8s_pb::api::coordination::v1::LeaseSpec {
            holder_identity: s("a"),
            lease_duration_seconds: Some(15),
            renew_time: Some(meta::MicroTime { seconds: Some(1_700_000_000), nanos: Some(5_000) }),
            lease_transitions: Some(0),
            ..Default::default()
        }),
    };
    let decoded = decode(&envelope("coordination.k8s.io/v1", "Lease", lease.encode_to_vec())).expect("decode");
    assert_eq!(
        decoded["spec"],
        json!({
            "holderIdentity": "a", "leaseDurationSeconds": 15,
            "renewTime": "2023-11-14T22:13:20.000005Z", "leaseTransitions": 0
        })
    );

    let strategy = apps::DeploymentStrategy {
        r#type: s("RollingUpdate"),
        rolling_update: Some(apps::RollingUpdateDeployment {
            max_unavailable: Some(int_or_string_int(0)),
            max_surge: Some(int_or_string_str("25%")),
        }),
    };
    let deployment = apps::Deployment {
        spec: Some(apps::DeploymentSpec { replicas: Some(0), strategy: Some(strategy), ..Default::default() }),
        ..Default::default()
    };
    let decoded = decode(&envelope("apps/v1", "Deployment", deployment.encode_to_vec())).expect("decode");
    assert_eq!(
        decoded["spec"],
        json!({"replicas": 0, "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}}})
    );
}

#[test]
fn endpoint_slices_scale_and_delete_options() {
    use k8s_pb::api::discovery::v1 as discovery;
    let slice = discovery::EndpointSlice {
        metadata: Some(object_meta("web-abc", &[])),
        address_type: s("IPv4"),
        endpoints: vec![discovery::Endpoint {
            addresses: vec!["10.0.0.5".into()],
            conditions: Some(discovery::EndpointConditions {
                ready: Some(false),
                serving: Some(true),
                terminating: Some(false),
            }),
            ..Default::default()
        }],
        ports: vec![discovery::EndpointPort { name: s(""), protocol: s("TCP"), port: Some(8080), app_protocol: None }],
    };
    let decoded = decode(&envelope("discovery.k8s.io/v1", "EndpointSlice", slice.encode_to_vec())).expect("decode");
    assert_eq!(decoded["endpoints"][0]["conditions"], json!({"ready": false, "serving": true, "terminating": false}));
    assert_eq!(decoded["ports"], json!([{"name": "", "protocol": "TCP", "port": 8080}]));

    let scale = k8s_pb::api::autoscaling::v1::Scale {
        metadata: Some(object_meta("web", &[])),
        spec: Some(k8s_pb::api::autoscaling::v1::ScaleSpec { replicas: Some(0) }),
        status: None,
    };
    let decoded = decode(&envelope("autoscaling/v1", "Scale", scale.encode_to_vec())).expect("decode");
    assert_eq!(
        decoded,
        json!({"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": {"name": "web"}, "spec": {"replicas": 0}})
    );

    let options = meta::DeleteOptions {
        grace_period_seconds: Some(0),
        propagation_policy: s("Background"),
        dry_run: vec!["All".into()],
        ..Default::default()
    };
    let decoded = decode(&envelope("v1", "DeleteOptions", options.encode_to_vec())).expect("decode");
    assert_eq!(
        decoded,
        json!({
            "kind": "DeleteOptions", "apiVersion": "v1",
            "gracePeriodSeconds": 0, "propagationPolicy": "Background", "dryRun": ["All"]
        })
    );
}

#[test]
fn unknown_fields_are_skipped_and_unsupported_kinds_refused() {
    let mut raw = core::Namespace { metadata: Some(object_meta("x", &[])), ..Default::default() }.encode_to_vec();
    raw.extend([0xf8, 0x3e, 0x01]); // field 999, varint 1: from a newer Kubernetes
    let decoded = decode(&envelope("v1", "Namespace", raw)).expect("decode");
    assert_eq!(decoded, json!({"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": "x"}}));

    let job = k8s_pb::api::batch::v1::Job::default();
    match decode(&envelope("batch/v1", "Job", job.encode_to_vec())) {
        Err(e @ DecodeError::UnsupportedKind { .. }) => {
            assert_eq!(
                e.to_string(),
                "protobuf bodies of kind Job (batch/v1) are not supported by this server; send JSON instead"
            );
        }
        other => panic!("expected UnsupportedKind, got {other:?}"),
    }

    let mut gzip = envelope("v1", "Namespace", vec![]);
    gzip.extend([0x1a, 0x04, b'g', b'z', b'i', b'p']);
    assert!(matches!(decode(&gzip), Err(DecodeError::UnsupportedEncoding(e)) if e == "gzip"));

    // A string field sent as a varint is malformed, not a panic.
    let mut wrong = envelope("v1", "Namespace", vec![0x0a, 0x02, 0x08, 0x01]);
    assert!(matches!(decode(&wrong), Err(DecodeError::WireTypeMismatch { .. })));
    wrong.truncate(wrong.len() - 1);
    assert!(decode(&wrong).is_err());
}
