//! Issue 3's scenarios through the real binary and kubectl: controllers make Deployments, ReplicaSets, pods,
//! endpoints and garbage collection move by themselves. A stand-in kubelet ([`FakeKubelet`]) plays the node.

use std::time::Duration;

use super::cluster::{Cluster, eventually, example};
use super::kubelet::{FakeKubelet, set_ready};

fn lines(s: String) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

fn deployment(name: &str, image: &str, replicas: u32, labels: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  replicas: {replicas}\n  strategy:\n    rollingUpdate:\n      maxSurge: 1\n      maxUnavailable: 0\n  selector:\n    matchLabels:\n      app: {name}\n  template:\n    metadata:\n      labels:\n        app: {name}\n{labels}    spec:\n      containers:\n      - name: web\n        image: {image}\n        ports:\n        - name: http\n          containerPort: 8080\n"
    )
}

#[test]
fn rollouts_follow_readiness_and_can_be_undone() {
    let c = Cluster::start();
    let _kubelet = FakeKubelet::start(&c, "node-1", 1, Duration::from_millis(200));
    c.ok_stdin(&["apply", "-f", "-"], &deployment("web", "nginx:1", 3, ""));
    c.ok(&["rollout", "status", "deployment/web", "--timeout=30s"]);
    let pods = lines(c.ok(&["get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].spec.nodeName}"]));
    assert_eq!(pods, vec!["node-1"; 3]);

    // A new image: new pods start not ready, so the old ReplicaSet must keep all 3 until they are.
    let patch = r#"{"spec":{"template":{"metadata":{"labels":{"skiff.test/ready":"false"}},"spec":{"containers":[{"name":"web","image":"nginx:2"}]}}}}"#;
    c.ok(&["patch", "deployment", "web", "-p", patch]);
    let new_pod = eventually(15, "a pod of the new ReplicaSet", || {
        let out =
            c.ok(&["get", "pods", "-l", "app=web,skiff.test/ready=false", "-o", "jsonpath={.items[*].metadata.name}"]);
        lines(out).into_iter().next()
    });
    std::thread::sleep(Duration::from_millis(500));
    let ready_old =
        c.ok(&["get", "pods", "-l", "app=web,!skiff.test/ready", "-o", "jsonpath={.items[*].metadata.name}"]);
    assert_eq!(lines(ready_old).len(), 3, "maxUnavailable 0: the old pods stay until new ones are Ready");
    // Each new pod that turns Ready lets one old pod go, until the rollout completes.
    let mut readied = std::collections::BTreeSet::new();
    readied.insert(new_pod.clone());
    set_ready(&c, &new_pod, true);
    eventually(60, "the rollout to finish", || {
        let out =
            c.ok(&["get", "pods", "-l", "app=web,skiff.test/ready=false", "-o", "jsonpath={.items[*].metadata.name}"]);
        for p in lines(out) {
            if readied.insert(p.clone()) {
                set_ready(&c, &p, true);
            }
        }
        let status = c.kubectl(&["rollout", "status", "deployment/web", "--timeout=1s"]);
        status.status.success().then_some(())
    });
    eventually(10, "only new pods once the old ones finish terminating", || {
        let images = c.ok(&["get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].spec.containers[0].image}"]);
        (lines(images) == vec!["nginx:2"; 3]).then_some(())
    });
    let rs = c.ok(&["get", "rs", "-l", "app=web", "-o", "jsonpath={range .items[*]}{.spec.replicas}{\" \"}{end}"]);
    let mut counts = lines(rs);
    counts.sort();
    assert_eq!(counts, vec!["0", "3"]);
    let history = c.ok(&["rollout", "history", "deployment/web"]);
    assert!(history.contains('1') && history.contains('2'), "{history}");
    let describe = c.ok(&["describe", "deployment", "web"]);
    assert!(describe.contains("ScalingReplicaSet"), "{describe}");

    // Undo returns to the first template and reuses its ReplicaSet.
    c.ok(&["rollout", "undo", "deployment/web"]);
    c.ok(&["rollout", "status", "deployment/web", "--timeout=30s"]);
    let images = c.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image}"]);
    assert_eq!(images, "nginx:1");
    assert_eq!(lines(c.ok(&["get", "rs", "-l", "app=web", "-o", "name"])).len(), 2, "undo reuses the old ReplicaSet");

    // Scaling.
    c.ok(&["scale", "deployment", "web", "--replicas=5"]);
    eventually(20, "5 ready replicas", || {
        (c.ok(&["get", "deploy", "web", "-o", "jsonpath={.status.readyReplicas}"]) == "5").then_some(())
    });
    c.ok(&["scale", "deployment", "web", "--replicas=1"]);
    eventually(20, "1 pod", || (lines(c.ok(&["get", "pods", "-l", "app=web", "-o", "name"])).len() == 1).then_some(()));
}

#[test]
fn endpoints_follow_selectors_readiness_and_named_ports() {
    let c = Cluster::start();
    let _kubelet = FakeKubelet::start(&c, "node-1", 1, Duration::from_millis(1500));
    c.ok_stdin(&["apply", "-f", "-"], &deployment("web", "nginx", 2, "        tier: front\n"));
    let svc = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector:\n    app: web\n    tier: front\n  ports:\n  - name: http\n    port: 80\n    targetPort: http\n  - name: admin\n    port: 9000\n    targetPort: 9000\n";
    c.ok_stdin(&["apply", "-f", "-"], svc);
    // A pod with an extra label matches; one missing `tier` does not.
    c.ok_stdin(&["apply", "-f", "-"], "apiVersion: v1\nkind: Pod\nmetadata:\n  name: extra\n  labels:\n    app: web\n    tier: front\n    colour: blue\nspec:\n  containers:\n  - name: c\n    image: nginx\n    ports:\n    - name: http\n      containerPort: 8081\n");
    c.ok_stdin(&["apply", "-f", "-"], "apiVersion: v1\nkind: Pod\nmetadata:\n  name: missing\n  labels:\n    app: web\nspec:\n  containers:\n  - name: c\n    image: nginx\n");
    let ready = eventually(20, "three ready endpoints", || {
        let out = c.ok(&[
            "get",
            "endpoints",
            "web",
            "-o",
            "jsonpath={range .subsets[*].addresses[*]}{.targetRef.name}{\" \"}{end}",
        ]);
        // One subset per distinct port set: the same pod can appear in several.
        let mut names = lines(out);
        names.sort();
        names.dedup();
        (names.len() == 3).then_some(names)
    });
    assert!(ready.contains(&"extra".to_string()) && !ready.contains(&"missing".to_string()), "{ready:?}");
    // The named target port resolves per pod: 8080 for the Deployment's pods, 8081 for `extra`.
    let slices = c.ok(&["get", "endpointslices", "-l", "kubernetes.io/service-name=web", "-o", "json"]);
    let slices: serde_json::Value = serde_json::from_str(&slices).unwrap();
    let mut http_ports: Vec<u64> = slices["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| !s["endpoints"].as_array().is_none_or(Vec::is_empty))
        .flat_map(|s| {
            s["ports"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| p["name"] == "http")
                .map(|p| p["port"].as_u64().unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    http_ports.sort();
    assert_eq!(http_ports, vec![8080, 8081], "{slices}");
    let describe = c.ok(&["describe", "svc", "web"]);
    assert!(describe.contains("Endpoints:") && describe.contains(":8080"), "{describe}");

    // Not ready moves the address to notReadyAddresses; ready again brings it back.
    set_ready(&c, "extra", false);
    eventually(10, "extra to be not ready", || {
        let out = c.ok(&[
            "get",
            "endpoints",
            "web",
            "-o",
            "jsonpath={range .subsets[*].notReadyAddresses[*]}{.targetRef.name}{\" \"}{end}",
        ]);
        lines(out).contains(&"extra".to_string()).then_some(())
    });
    set_ready(&c, "extra", true);
    // Deleting a pod bound to a node makes its endpoint terminating until the kubelet finishes.
    c.ok(&["delete", "pod", "extra", "--wait=false"]);
    eventually(10, "a terminating endpoint", || {
        let out = c.ok(&[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=web",
            "-o",
            "jsonpath={range .items[*].endpoints[*]}{.targetRef.name}={.conditions.terminating} {end}",
        ]);
        out.contains("extra=true").then_some(())
    });
    eventually(10, "extra to leave the endpoints", || {
        let out = c.ok(&["get", "endpoints", "web", "-o", "jsonpath={.subsets[*].addresses[*].targetRef.name}"]);
        (!out.contains("extra")).then_some(())
    });
}

#[test]
fn blue_green_by_selector_and_mirrored_endpoints() {
    let c = Cluster::start();
    let _kubelet = FakeKubelet::start(&c, "node-1", 1, Duration::from_millis(100));
    c.ok_stdin(&["apply", "-f", "-"], &deployment("blue", "web:v1", 1, "        version: v1\n        role: web\n"));
    c.ok_stdin(&["apply", "-f", "-"], &deployment("green", "web:v2", 1, "        version: v2\n        role: web\n"));
    c.ok_stdin(&["apply", "-f", "-"], "apiVersion: v1\nkind: Service\nmetadata:\n  name: app\nspec:\n  selector:\n    role: web\n    version: v1\n  ports:\n  - port: 80\n    targetPort: 8080\n");
    let owner = |c: &Cluster| {
        let out = c.ok(&["get", "endpoints", "app", "-o", "jsonpath={.subsets[*].addresses[*].targetRef.name}"]);
        lines(out).into_iter().next()
    };
    let blue = eventually(20, "blue endpoints", || owner(&c).filter(|n| n.starts_with("blue-")));
    c.ok(&["patch", "svc", "app", "-p", r#"{"spec":{"selector":{"version":"v2"}}}"#]);
    let green = eventually(10, "green endpoints", || owner(&c).filter(|n| n.starts_with("green-")));
    assert_ne!(blue, green);

    // The seeds' selector-less Service with hand-written Endpoints is mirrored into an EndpointSlice.
    c.ok(&["apply", "-f", &example("ch03/numbers-services/api-service-headless.yaml")]);
    eventually(10, "a mirrored slice", || {
        let out = c.ok(&[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=numbers-api",
            "-o",
            "jsonpath={.items[*].endpoints[*].addresses[*]}",
        ]);
        (out.trim() == "192.168.123.234").then_some(())
    });
    c.ok(&["delete", "endpoints", "numbers-api"]);
    eventually(10, "the mirrored slice to go", || {
        c.ok(&["get", "endpointslices", "-l", "kubernetes.io/service-name=numbers-api", "-o", "name"])
            .trim()
            .is_empty()
            .then_some(())
    });
}

#[test]
fn cascade_deletes_of_deployments_and_namespaces() {
    let c = Cluster::start();
    let _kubelet = FakeKubelet::start(&c, "node-1", 1, Duration::from_millis(100));
    c.ok_stdin(&["apply", "-f", "-"], &deployment("web", "nginx", 2, ""));
    c.ok(&["rollout", "status", "deployment/web", "--timeout=30s"]);
    c.ok(&["delete", "deployment", "web"]);
    eventually(20, "ReplicaSets and pods to be collected", || {
        let rs = c.ok(&["get", "rs", "-o", "name"]);
        let pods = c.ok(&["get", "pods", "-o", "name"]);
        (rs.trim().is_empty() && pods.trim().is_empty()).then_some(())
    });

    c.ok(&["create", "namespace", "lab"]);
    c.ok_stdin(&["apply", "-n", "lab", "-f", "-"], &deployment("web", "nginx", 1, ""));
    c.ok(&["create", "configmap", "cfg", "-n", "lab", "--from-literal=a=1"]);
    c.ok(&["rollout", "status", "deployment/web", "-n", "lab", "--timeout=30s"]);
    c.ok(&["delete", "namespace", "lab", "--timeout=60s"]);
    assert!(!c.kubectl(&["get", "namespace", "lab"]).status.success());

    // LoadBalancer Services get the addresses of the nodes that serve them.
    c.ok(&["apply", "-f", &example("ch03/numbers/web-service.yaml")]);
    eventually(10, "an external IP", || {
        let out = c.ok(&["get", "svc", "numbers-web", "-o", "jsonpath={.status.loadBalancer.ingress[*].ip}"]);
        (out.trim() == "10.99.0.1").then_some(())
    });
}

#[test]
fn replicasets_adopt_orphans_and_release_pods_that_stop_matching() {
    let c = Cluster::start();
    let _kubelet = FakeKubelet::start(&c, "node-1", 1, Duration::from_millis(50));
    c.ok_stdin(&["apply", "-f", "-"], "apiVersion: v1\nkind: Pod\nmetadata:\n  name: orphan\n  labels:\n    app: adopt\nspec:\n  containers:\n  - name: c\n    image: nginx\n");
    let rs = "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata:\n  name: adopt\nspec:\n  replicas: 2\n  selector:\n    matchLabels:\n      app: adopt\n  template:\n    metadata:\n      labels:\n        app: adopt\n    spec:\n      containers:\n      - name: c\n        image: nginx\n";
    c.ok_stdin(&["apply", "-f", "-"], rs);
    eventually(20, "the orphan to be adopted", || {
        let owner = c.ok(&["get", "pod", "orphan", "-o", "jsonpath={.metadata.ownerReferences[0].name}"]);
        (owner == "adopt").then_some(())
    });
    eventually(20, "exactly 2 pods (the orphan counts)", || {
        (lines(c.ok(&["get", "pods", "-l", "app=adopt", "-o", "name"])).len() == 2).then_some(())
    });
    // A pod whose labels stop matching is released, and a replacement is made.
    c.ok(&["label", "pod", "orphan", "--overwrite", "app=gone"]);
    eventually(20, "the pod to be released and replaced", || {
        let owners = c.ok(&["get", "pod", "orphan", "-o", "jsonpath={.metadata.ownerReferences}"]);
        let count = lines(c.ok(&["get", "pods", "-l", "app=adopt", "-o", "name"])).len();
        (owners.trim().is_empty() && count == 2).then_some(())
    });
}
