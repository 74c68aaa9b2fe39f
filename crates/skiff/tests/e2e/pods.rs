//! Pod lifecycle on a real node, through kubectl: readiness, liveness and startup probes (httpGet, tcpSocket,
//! exec) flipping Ready and restarting containers with upstream's backoff, ConfigMap env and volumes, graceful
//! deletion timing, pods surviving a server restart, and teardown leaving nothing behind. Each test's node runs in
//! a network namespace of its own; traffic goes only to pod IPs inside it.

use std::time::{Duration, Instant};

use super::cluster::{Cluster, eventually};

fn field(c: &Cluster, pod: &str, jsonpath: &str) -> String {
    c.ok(&["get", "pod", pod, "-o", &format!("jsonpath={{{jsonpath}}}")])
}

fn ready(c: &Cluster, pod: &str) -> String {
    field(c, pod, ".status.conditions[?(@.type==\"Ready\")].status")
}

const PROBED: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: probed
  labels: {app: probed}
spec:
  containers:
  - name: api
    image: kiamol/ch03-numbers-api
    env:
    - {name: FailAfterCallCount, value: "2"}
    readinessProbe:
      httpGet: {path: /healthz, port: 80}
      periodSeconds: 1
      failureThreshold: 1
  - name: tcp
    image: registry.k8s.io/e2e-test-images/agnhost:2.53
    args: [netexec, --http-port=8081]
    ports: [{name: web, containerPort: 8081}]
    readinessProbe:
      tcpSocket: {port: web}
      periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: probed
spec:
  selector: {app: probed}
  ports: [{port: 80}]
"#;

#[test]
fn readiness_probes_flip_ready_and_endpoints() {
    let c = Cluster::start_node(&[]);
    c.ok_stdin(&["apply", "-f", "-"], PROBED);
    c.ok(&["wait", "--for=condition=Ready", "pod/probed", "--timeout=60s"]);
    let ip = field(&c, "probed", ".status.podIP");
    eventually(20, "the ready endpoint", || {
        c.ok(&["get", "endpoints", "probed", "-o", "jsonpath={.subsets[0].addresses[0].ip}"]).eq(&ip).then_some(())
    });
    // Two calls make numbers-api unhealthy: /healthz fails, the readiness probe takes the pod out.
    for _ in 0..3 {
        c.node_curl(&format!("http://{ip}/rng"));
    }
    c.ok(&["wait", "--for=condition=Ready=false", "pod/probed", "--timeout=20s"]);
    let statuses = field(&c, "probed", ".status.containerStatuses[*].ready");
    // Sorted by name, as the kubelet reports them: api, then tcp.
    assert_eq!(statuses, "false true", "api is not ready, tcp is: {statuses}");
    assert_eq!(
        field(&c, "probed", ".status.conditions[?(@.type==\"Ready\")].message"),
        "containers with unready status: [api]"
    );
    eventually(20, "the address to move to notReadyAddresses", || {
        c.ok(&["get", "endpoints", "probed", "-o", "jsonpath={.subsets[0].notReadyAddresses[0].ip}"])
            .eq(&ip)
            .then_some(())
    });
    let events = c.ok(&["get", "events", "--field-selector", "involvedObject.name=probed"]);
    assert!(events.contains("Readiness probe failed: HTTP probe failed with statuscode: 500"), "{events}");
    // Healthy again: Ready again, and the container never restarted (readiness does not kill).
    c.node_curl(&format!("http://{ip}/reset")).expect("reset");
    c.ok(&["wait", "--for=condition=Ready", "pod/probed", "--timeout=20s"]);
    assert_eq!(field(&c, "probed", ".status.containerStatuses[0].restartCount"), "0");
}

const LIVENESS: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: liveness
spec:
  terminationGracePeriodSeconds: 2
  volumes: [{name: scratch, emptyDir: {}}]
  containers:
  - name: c
    image: busybox-not-in-catalog
    command: [sh, -c, 'touch /scratch/healthy; sleep 2; rm /scratch/healthy; sleep 600']
    volumeMounts: [{name: scratch, mountPath: /scratch}]
    livenessProbe:
      exec: {command: [cat, /scratch/healthy]}
      periodSeconds: 1
      failureThreshold: 2
"#;

#[test]
fn liveness_probes_restart_the_container_with_backoff() {
    let c = Cluster::start_node(&[]);
    c.ok_stdin(&["apply", "-f", "-"], LIVENESS);
    // The file goes after 2 s; two failed probes later the container is killed and restarted at once.
    eventually(30, "the first restart", || {
        (field(&c, "liveness", ".status.containerStatuses[0].restartCount") == "1").then_some(())
    });
    let first = Instant::now();
    assert_eq!(field(&c, "liveness", ".status.containerStatuses[0].lastState.terminated.exitCode"), "143");
    let events = c.ok(&["get", "events", "--field-selector", "involvedObject.name=liveness"]);
    assert!(events.contains("Liveness probe failed"), "{events}");
    assert!(events.contains("Container c failed liveness probe, will be restarted"), "{events}");
    // The second failure backs off 10 s before the next start.
    eventually(30, "CrashLoopBackOff", || {
        (field(&c, "liveness", ".status.containerStatuses[0].state.waiting.reason") == "CrashLoopBackOff").then_some(())
    });
    eventually(40, "the second restart", || {
        (field(&c, "liveness", ".status.containerStatuses[0].restartCount") == "2").then_some(())
    });
    let gap = first.elapsed();
    // ~2 s to fail again + ~2 s of grace + 10 s of backoff.
    assert!(gap >= Duration::from_secs(10), "the second restart came after {gap:?}");
}

const STARTUP: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: startup
spec:
  volumes: [{name: scratch, emptyDir: {}}]
  containers:
  - name: c
    image: busybox-not-in-catalog
    command: [sh, -c, 'sleep 3; touch /scratch/started; sleep 600']
    volumeMounts: [{name: scratch, mountPath: /scratch}]
    startupProbe:
      exec: {command: [test, -f, /scratch/started]}
      periodSeconds: 1
      failureThreshold: 30
    livenessProbe:
      exec: {command: [test, -f, /scratch/started]}
      periodSeconds: 1
      failureThreshold: 1
"#;

#[test]
fn a_startup_probe_holds_liveness_and_readiness_until_it_passes() {
    let c = Cluster::start_node(&[]);
    c.ok_stdin(&["apply", "-f", "-"], STARTUP);
    eventually(30, "the container to run", || {
        (!field(&c, "startup", ".status.containerStatuses[0].state.running.startedAt").is_empty()).then_some(())
    });
    let early = Instant::now();
    assert_eq!(field(&c, "startup", ".status.containerStatuses[0].started"), "false");
    assert_eq!(ready(&c, "startup"), "False");
    c.ok(&["wait", "--for=condition=Ready", "pod/startup", "--timeout=30s"]);
    assert!(early.elapsed() >= Duration::from_secs(1), "ready before the startup probe could pass");
    assert_eq!(field(&c, "startup", ".status.containerStatuses[0].started"), "true");
    // The liveness probe (failureThreshold 1) never ran while the file was missing.
    assert_eq!(field(&c, "startup", ".status.containerStatuses[0].restartCount"), "0");
}

const CONFIGURED: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  GREETING: hello
  app.conf: "mode=fast\n"
---
apiVersion: v1
kind: Pod
metadata:
  name: configured
spec:
  restartPolicy: Never
  volumes: [{name: conf, configMap: {name: settings}}]
  containers:
  - name: c
    image: busybox-not-in-catalog
    command: [sh, -c, 'echo "G=$GREETING W=$WHO"; cat /etc/app/app.conf; pwd']
    workingDir: /etc/app
    envFrom: [{configMapRef: {name: settings}}]
    env: [{name: WHO, valueFrom: {configMapKeyRef: {name: settings, key: GREETING}}}]
    volumeMounts: [{name: conf, mountPath: /etc/app}]
"#;

#[test]
fn configmaps_feed_env_and_volumes() {
    let c = Cluster::start_node(&[]);
    c.ok_stdin(&["apply", "-f", "-"], CONFIGURED);
    eventually(30, "the pod to succeed", || (field(&c, "configured", ".status.phase") == "Succeeded").then_some(()));
    let logs = c.ok(&["logs", "configured"]);
    assert_eq!(logs, "G=hello W=hello\nmode=fast\n/etc/app\n");
}

const GRACEFUL: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: stubborn
spec:
  terminationGracePeriodSeconds: 3
  containers:
  - name: c
    image: busybox-not-in-catalog
    command: [sh, -c, 'trap "" TERM; while true; do sleep 0.2; done']
---
apiVersion: v1
kind: Pod
metadata:
  name: polite
spec:
  terminationGracePeriodSeconds: 30
  containers:
  - name: c
    image: busybox-not-in-catalog
    command: [sh, -c, 'trap "exit 0" TERM; while true; do sleep 0.2; done']
"#;

#[test]
fn graceful_deletion_waits_for_the_grace_period_and_no_longer() {
    let c = Cluster::start_node(&[]);
    c.ok_stdin(&["apply", "-f", "-"], GRACEFUL);
    c.ok(&["wait", "--for=condition=Ready", "pod/stubborn", "pod/polite", "--timeout=60s"]);
    // Both deletions run at once: the one that ignores SIGTERM is killed after its 3 s, the other ends on TERM.
    let started = Instant::now();
    let polite = c.kubectl_cmd().args(["delete", "pod", "polite", "--timeout=60s"]).spawn().expect("kubectl");
    c.ok(&["delete", "pod", "stubborn", "--timeout=60s"]);
    let stubborn = started.elapsed();
    let polite = polite.wait_with_output().expect("kubectl");
    assert!(polite.status.success());
    assert!(stubborn >= Duration::from_millis(2800), "killed before its grace period: {stubborn:?}");
    assert!(stubborn < Duration::from_secs(12), "took {stubborn:?} for a 3 s grace period");
    assert!(started.elapsed() < Duration::from_secs(15), "the polite pod waited for its 30 s");
    assert!(c.ok(&["get", "pods", "-o", "name"]).trim().is_empty());
}

/// The pids of every container the node runs, from their state directories.
fn container_pids(c: &Cluster) -> Vec<i64> {
    let mut pids = Vec::new();
    let pods = c.data_dir().join("agent/pods");
    for pod in std::fs::read_dir(pods).into_iter().flatten().flatten() {
        for container in std::fs::read_dir(pod.path().join("containers")).into_iter().flatten().flatten() {
            for attempt in std::fs::read_dir(container.path()).into_iter().flatten().flatten() {
                let record = std::fs::read_to_string(attempt.path().join("running.json")).unwrap_or_default();
                let value: serde_json::Value = serde_json::from_str(&record).unwrap_or_default();
                if let Some(pid) = value["pid"].as_i64() {
                    pids.push(pid);
                }
            }
        }
    }
    pids
}

#[test]
fn pods_survive_a_server_restart_and_teardown_leaves_nothing() {
    let mut c = Cluster::start_node(&[]);
    c.ok(&["create", "deployment", "api", "--image=kiamol/ch03-numbers-api"]);
    c.ok(&["wait", "--for=condition=Available", "deployment/api", "--timeout=60s"]);
    let get = |c: &Cluster| {
        c.ok(&[
            "get",
            "pod",
            "-l",
            "app=api",
            "-o",
            "jsonpath={.items[0].metadata.name} {.items[0].status.podIP} {.items[0].status.containerStatuses[0].restartCount} {.items[0].status.containerStatuses[0].state.running.startedAt}",
        ])
    };
    let before = get(&c);
    let ip = before.split(' ').nth(1).expect("an IP").to_string();
    c.node_curl(&format!("http://{ip}/rng")).expect("the pod answers");
    let pids = container_pids(&c);
    assert_eq!(pids.len(), 1, "{pids:?}");

    // Stopped: the pod keeps serving. Restarted: the same pod, IP, restart count and start time.
    c.stop();
    c.node_curl(&format!("http://{ip}/rng")).expect("the pod answers while the server is down");
    c.restart();
    c.ok(&["wait", "--for=condition=Ready", "pod", "-l", "app=api", "--timeout=30s"]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(get(&c), before);
    assert_eq!(container_pids(&c), pids, "the container was not restarted");
    c.node_curl(&format!("http://{ip}/rng")).expect("the pod answers after the restart");

    // Teardown stops the containers and removes the namespaces, the bridge and the node's files.
    let uid = c.ok(&["get", "pod", "-l", "app=api", "-o", "jsonpath={.items[0].metadata.uid}"]);
    let netns = format!("skp-{}", uid.replace('-', "").chars().take(12).collect::<String>());
    assert!(std::path::Path::new("/run/netns").join(&netns).exists());
    c.stop();
    let status = c
        .node_cmd(env!("CARGO_BIN_EXE_skiff"))
        .args(["teardown", "--data-dir"])
        .arg(c.data_dir())
        .status()
        .expect("teardown runs");
    assert!(status.success());
    assert!(!std::path::Path::new("/run/netns").join(&netns).exists(), "the pod's netns is left");
    assert!(!c.data_dir().join("agent").exists(), "the agent's files are left");
    for pid in pids {
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "container process {pid} still runs");
    }
    let links = c.node_cmd("ip").args(["-o", "link"]).output().expect("ip link");
    let links = String::from_utf8_lossy(&links.stdout);
    assert!(!links.contains("skiff0") && !links.contains("veth"), "links are left: {links}");
    assert!(c.node_curl(&format!("http://{ip}/rng")).is_none(), "the pod still answers");
}
