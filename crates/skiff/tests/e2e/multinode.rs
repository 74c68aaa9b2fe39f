//! Many nodes: three network namespaces on a LAN bridge the test creates (in a namespace of its own), node 1
//! running `skiff server` with its agent, nodes 2 and 3 running `skiff agent` against it over the LAN. Pods on
//! different nodes reach each other by their own IPs (no NAT: the server sees the client pod's address), a
//! Service balances over pods on every node, each node's pods resolve names through their own node's DNS, and a
//! NodePort answers on a node that runs none of its pods. Traffic stays on the test's LAN; every namespace,
//! process and node-made object goes away on drop (`skiff teardown` on each node first).

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::cluster::{eventually, output_text, tail};

/// The LAN: 192.168.60.0/24, node N at 192.168.60.N.
fn node_ip(n: usize) -> String {
    format!("192.168.60.{n}")
}

const API_PORT: u16 = 16443;

struct Nodes {
    dir: tempfile::TempDir,
    /// Extra flags for the server and for every agent.
    server_flags: Vec<String>,
    agent_flags: Vec<String>,
    lan: String,
    /// Node namespaces, node 1 first.
    netns: Vec<String>,
    /// The server (node 1), then the agents.
    processes: Vec<Child>,
}

fn run(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip runs");
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl Nodes {
    fn start(count: usize) -> Nodes {
        Nodes::start_with(count, &[], &[])
    }

    fn start_with(count: usize, server_flags: &[&str], agent_flags: &[&str]) -> Nodes {
        Nodes::launch(count, server_flags, agent_flags, true)
    }

    /// `count` node namespaces on the LAN, with only the server (node 1) started.
    fn server_only(count: usize) -> Nodes {
        Nodes::launch(count, &[], &[], false)
    }

    fn launch(count: usize, server_flags: &[&str], agent_flags: &[&str], agents: bool) -> Nodes {
        let dir = tempfile::tempdir().expect("temp dir");
        let tag: String =
            dir.path().file_name().unwrap_or_default().to_string_lossy().replace(['.', '_'], "")[..6].to_lowercase();
        let lan = format!("sklan{tag}");
        let mut nodes = Nodes {
            dir,
            server_flags: server_flags.iter().map(|f| f.to_string()).collect(),
            agent_flags: agent_flags.iter().map(|f| f.to_string()).collect(),
            lan: lan.clone(),
            netns: Vec::new(),
            processes: Vec::new(),
        };
        run(&["netns", "add", &lan]);
        run(&["-n", &lan, "link", "add", "br0", "type", "bridge"]);
        run(&["-n", &lan, "link", "set", "br0", "up"]);
        for n in 1..=count {
            let ns = format!("skn{tag}{n}");
            run(&["netns", "add", &ns]);
            nodes.netns.push(ns.clone());
            run(&["-n", &ns, "link", "set", "lo", "up"]);
            let port = format!("n{n}");
            run(&["-n", &lan, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns]);
            run(&["-n", &lan, "link", "set", &port, "master", "br0", "up"]);
            run(&["-n", &ns, "addr", "add", &format!("{}/24", node_ip(n)), "dev", "eth0"]);
            run(&["-n", &ns, "link", "set", "eth0", "up"]);
        }
        // No upstream resolvers: nothing a test resolves may leave the LAN.
        std::fs::write(nodes.path("resolv.conf"), "# e2e: no upstream resolvers\n").expect("resolv.conf");
        nodes.start_server();
        let started = if agents { count } else { 1 };
        for n in 2..=started {
            nodes.start_agent(n);
        }
        eventually(60, &format!("{started} Ready nodes"), || {
            let out = nodes.ok(&[
                "get",
                "nodes",
                "-o",
                "jsonpath={range .items[*]}{.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}",
            ]);
            (out.lines().filter(|l| *l == "True").count() == started).then_some(())
        });
        nodes
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A command inside node `n`'s namespace.
    fn in_node(&self, n: usize, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.netns[n - 1], program]);
        cmd
    }

    fn log_file(&self, name: &str) -> std::fs::File {
        std::fs::OpenOptions::new().create(true).append(true).open(self.path(name)).expect("a log file")
    }

    fn start_server(&mut self) {
        let resolv = self.path("resolv.conf");
        let child = self
            .in_node(1, env!("CARGO_BIN_EXE_skiff"))
            .args(["server", "--node-name", "node-1", "--bind-address", "0.0.0.0"])
            .args(["--https-listen-port", &API_PORT.to_string(), "--node-ip", &node_ip(1)])
            .args(["--advertise-address", &node_ip(1)])
            .arg("--data-dir")
            .arg(self.path("node-1"))
            .arg("--write-kubeconfig")
            .arg(self.path("kubeconfig.yaml"))
            .arg("--resolv-conf")
            .arg(&resolv)
            .args(&self.server_flags)
            .stdout(Stdio::null())
            .stderr(self.log_file("node-1.log"))
            .spawn()
            .expect("skiff server starts");
        self.processes.push(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !(self.path("kubeconfig.yaml").exists() && self.kubectl(&["get", "--raw", "/readyz"]).status.success()) {
            assert!(Instant::now() < deadline, "the server did not become ready:\n{}", self.log(1));
            std::thread::sleep(Duration::from_millis(50));
        }
        // The agents reach the server over the LAN.
        let local = std::fs::read_to_string(self.path("kubeconfig.yaml")).expect("the kubeconfig");
        let remote =
            local.replace(&format!("https://127.0.0.1:{API_PORT}"), &format!("https://{}:{API_PORT}", node_ip(1)));
        assert_ne!(local, remote, "the kubeconfig names the server at 127.0.0.1:{API_PORT}");
        std::fs::write(self.path("agent-kubeconfig.yaml"), remote).expect("the agents' kubeconfig");
    }

    fn start_agent(&mut self, n: usize) {
        let child = self
            .in_node(n, env!("CARGO_BIN_EXE_skiff"))
            .args(["agent", "--node-name", &format!("node-{n}"), "--node-ip", &node_ip(n)])
            .arg("--kubeconfig")
            .arg(self.path("agent-kubeconfig.yaml"))
            .arg("--server-data-dir")
            .arg(self.path("node-1"))
            .arg("--data-dir")
            .arg(self.path(&format!("node-{n}")).join("agent"))
            .arg("--resolv-conf")
            .arg(self.path("resolv.conf"))
            .args(&self.agent_flags)
            .stdout(Stdio::null())
            .stderr(self.log_file(&format!("node-{n}.log")))
            .spawn()
            .expect("skiff agent starts");
        if self.processes.len() > n - 1 {
            self.processes[n - 1] = child;
        } else {
            self.processes.push(child);
        }
    }

    /// Stops node `n`'s server or agent (SIGTERM: its pods and rules stay until teardown).
    fn stop(&mut self, n: usize) {
        terminate(&mut self.processes[n - 1]);
    }

    /// Node `n` fails: its agent is killed (SIGKILL) and its link to the LAN goes down, so nothing on it answers.
    fn fail(&mut self, n: usize) {
        let _ = self.processes[n - 1].kill();
        let _ = self.processes[n - 1].wait();
        run(&["-n", &self.lan, "link", "set", &format!("n{n}"), "down"]);
    }

    /// Node `n` comes back: its link up, its agent started again.
    fn recover(&mut self, n: usize) {
        run(&["-n", &self.lan, "link", "set", &format!("n{n}"), "up"]);
        self.start_agent(n);
    }

    /// `skiff agent --server … --token <token>` on node `n`, as a machine joins: no kubeconfig, no server data
    /// dir. Started in the background (its process replaces node `n`'s), or run to its end with `wait`.
    fn join_cmd(&self, n: usize, token: &str) -> Command {
        let mut cmd = self.in_node(n, env!("CARGO_BIN_EXE_skiff"));
        cmd.args(["agent", "--node-name", &format!("node-{n}"), "--node-ip", &node_ip(n)])
            .args(["--server", &format!("https://{}:{API_PORT}", node_ip(1)), "--token", token])
            .arg("--data-dir")
            .arg(self.path(&format!("node-{n}")).join("agent"))
            .arg("--resolv-conf")
            .arg(self.path("resolv.conf"))
            .args(&self.agent_flags);
        cmd
    }

    fn log(&self, n: usize) -> String {
        std::fs::read_to_string(self.path(&format!("node-{n}.log"))).unwrap_or_default()
    }

    /// kubectl on node 1.
    fn kubectl(&self, args: &[&str]) -> Output {
        self.in_node(1, "kubectl")
            .env("KUBECONFIG", self.path("kubeconfig.yaml"))
            .env("HOME", self.dir.path())
            .arg("--cache-dir")
            .arg(self.path("cache"))
            .args(args)
            .output()
            .expect("kubectl runs")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(out.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim_end().to_string()
    }

    fn apply(&self, manifest: &str) {
        let path = self.path("manifest.yaml");
        std::fs::write(&path, manifest).expect("the manifest");
        self.ok(&["apply", "-f", &path.to_string_lossy()]);
    }

    /// `curl -s -m 3 <url>` from node `n` itself.
    fn curl_from_node(&self, n: usize, url: &str) -> Option<String> {
        let out = self.in_node(n, "curl").args(["-s", "-m", "3", url]).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `sh -c <script>` in pod `pod`: stdout and stderr, and whether it succeeded.
    fn in_pod(&self, pod: &str, script: &str) -> (bool, String) {
        let out = self.kubectl(&["exec", pod, "--", "sh", "-c", script]);
        (out.status.success(), output_text(&out))
    }
}

/// Stops a process with SIGTERM (SIGKILL after 10 s) and reaps it.
fn terminate(child: &mut Child) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && !matches!(child.try_wait(), Ok(Some(_))) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for child in self.processes.iter_mut().rev() {
            terminate(child);
        }
        for (i, ns) in self.netns.iter().enumerate() {
            let data_dir = self.dir.path().join(format!("node-{}", i + 1));
            let _ = Command::new("ip")
                .args(["netns", "exec", ns, env!("CARGO_BIN_EXE_skiff"), "teardown", "--data-dir"])
                .arg(&data_dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.lan]).status();
    }
}

/// A netexec pod pinned to node `n` (`spec.nodeName`), labelled `app: echo, on: node-<n>`.
fn echo_pod(n: usize) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: echo-{n}\n  labels: {{app: echo, on: node-{n}}}\nspec:\n  \
         nodeName: node-{n}\n  containers:\n  - name: netexec\n    image: registry.k8s.io/e2e-test-images/agnhost:2.53\n    \
         args: [netexec, --http-port=8080]\n    readinessProbe:\n      httpGet: {{path: /healthz, port: 8080}}\n      \
         periodSeconds: 1\n---\n"
    )
}

/// A sleep pod (the chapters' client, with the node's tools) pinned to node `n`.
fn client_pod(n: usize) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: client-{n}\nspec:\n  nodeName: node-{n}\n  containers:\n  - \
         name: sleep\n    image: kiamol/ch03-sleep\n---\n"
    )
}

fn pod_ip(nodes: &Nodes, pod: &str) -> String {
    nodes.ok(&["get", "pod", pod, "-o", "jsonpath={.status.podIP}"])
}

fn routes(nodes: &Nodes, n: usize) -> Vec<String> {
    let out = nodes.in_node(n, "ip").args(["route", "show", "proto", "186"]).output().expect("ip runs");
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(|l| l.trim().to_string()).collect();
    lines.sort();
    lines
}

#[test]
fn three_nodes_route_pods_to_each_other_and_serve_services_across_nodes() {
    let mut nodes = Nodes::start(3);

    // Every node has a pod CIDR of its own, and routes to the other two through their addresses.
    let cidrs = nodes.ok(&["get", "nodes", "-o", "jsonpath={range .items[*]}{.metadata.name}={.spec.podCIDR} {end}"]);
    let cidr_of = |n: usize| -> String {
        let key = format!("node-{n}=");
        cidrs.split_whitespace().find_map(|c| c.strip_prefix(&key)).unwrap_or_else(|| panic!("{cidrs}")).to_string()
    };
    let all: std::collections::BTreeSet<String> = (1..=3).map(cidr_of).collect();
    assert_eq!(all.len(), 3, "distinct pod CIDRs: {cidrs}");
    for n in 1..=3 {
        let want: Vec<String> = {
            let mut want: Vec<String> =
                (1..=3).filter(|m| *m != n).map(|m| format!("{} via {} dev eth0", cidr_of(m), node_ip(m))).collect();
            want.sort();
            want
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while routes(&nodes, n) != want {
            assert!(
                Instant::now() < deadline,
                "node-{n}'s routes {:?}, not {want:?}:\n{}",
                routes(&nodes, n),
                tail(&nodes.log(n), 20)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    let mut manifest: String = (1..=3).map(echo_pod).collect();
    manifest += &client_pod(1);
    manifest += &client_pod(2);
    manifest += "apiVersion: v1\nkind: Service\nmetadata:\n  name: echo\nspec:\n  selector: {app: echo}\n  ports:\n  - \
                 {port: 80, targetPort: 8080}\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: echo-one\nspec:\n  \
                 type: NodePort\n  selector: {on: node-1}\n  ports:\n  - {port: 80, targetPort: 8080, nodePort: 30123}\n";
    nodes.apply(&manifest);
    for pod in ["echo-1", "echo-2", "echo-3", "client-1", "client-2"] {
        nodes.ok(&["wait", "--for=condition=Ready", &format!("pod/{pod}"), "--timeout=90s"]);
    }
    let client_ip = pod_ip(&nodes, "client-1");

    // Pod to pod across nodes, by IP: ping, and HTTP where the server sees the client pod's own address.
    for n in [2, 3] {
        let ip = pod_ip(&nodes, &format!("echo-{n}"));
        let (ok, ping) = nodes.in_pod("client-1", &format!("ping -c 1 -W 2 {ip}"));
        assert!(ok && ping.contains("1 received"), "client-1 → echo-{n} ({ip}): {ping}");
        let (_, seen) = nodes.in_pod("client-1", &format!("curl -s -m 3 http://{ip}:8080/clientip"));
        assert!(seen.starts_with(&format!("{client_ip}:")), "no NAT between pods: {seen}");
    }

    // A Service over pods on every node, from a pod on node 1 by name; node 2's pod resolves it through its own
    // node's DNS.
    let hostnames = eventually(30, "all three pods behind the Service", || {
        let (_, out) = nodes.in_pod("client-1", "for i in $(seq 30); do curl -s -m 2 http://echo/hostname; echo; done");
        let seen: std::collections::BTreeSet<String> = out.lines().map(|l| l.trim().to_string()).collect();
        (["echo-1", "echo-2", "echo-3"].iter().all(|h| seen.contains(*h))).then_some(seen)
    });
    assert!(hostnames.iter().all(|h| h.starts_with("echo-")), "{hostnames:?}");
    let service_ip = nodes.ok(&["get", "svc", "echo", "-o", "jsonpath={.spec.clusterIP}"]);
    let (_, lookup) = nodes.in_pod("client-2", "nslookup echo");
    assert!(lookup.contains(&format!("Address: {service_ip}")), "{lookup}");
    let dns_nodes = nodes.ok(&[
        "get",
        "endpointslices",
        "-n",
        "kube-system",
        "-l",
        "kubernetes.io/service-name=kube-dns",
        "-o",
        "jsonpath={range .items[*]}{.endpoints[0].nodeName}={.endpoints[0].addresses[0]} {end}",
    ]);
    for n in 1..=3 {
        assert!(dns_nodes.contains(&format!("node-{n}={}", node_ip(n))), "each node's DNS: {dns_nodes}");
    }

    // The NodePort of a Service whose only pod runs on node 1 answers on nodes 2 and 3 too.
    for n in [1, 2, 3] {
        let url = format!("http://{}:30123/hostname", node_ip(n));
        let answer = eventually(20, &format!("the NodePort on node-{n}"), || nodes.curl_from_node(3, &url));
        assert_eq!(answer.trim(), "echo-1", "{url}");
    }

    // A node that leaves (its agent stopped, its Node deleted) takes its route with it.
    nodes.stop(3);
    nodes.ok(&["delete", "node", "node-3"]);
    let only_2 = vec![format!("{} via {} dev eth0", cidr_of(2), node_ip(2))];
    eventually(20, "node-1 to drop the route to node-3", || (routes(&nodes, 1) == only_2).then_some(()));
}

/// How many pods matching `selector` are Ready, by node, and how many are terminating.
fn pods_by_node(nodes: &Nodes, selector: &str) -> (std::collections::BTreeMap<String, usize>, usize) {
    let out = nodes.ok(&[
        "get",
        "pods",
        "-l",
        selector,
        "-o",
        "jsonpath={range .items[*]}{.spec.nodeName} {.status.conditions[?(@.type==\"Ready\")].status} \
         {.metadata.deletionTimestamp}{\"\\n\"}{end}",
    ]);
    let mut ready = std::collections::BTreeMap::new();
    let mut terminating = 0;
    for line in out.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            [_, _, _deleted] => terminating += 1,
            [node, "True"] => *ready.entry(node.to_string()).or_insert(0) += 1,
            _ => {}
        }
    }
    (ready, terminating)
}

#[test]
fn a_failed_node_loses_its_endpoints_its_pods_move_and_it_comes_back_without_duplicates() {
    let fast = ["--node-status-update-frequency", "1s"];
    let server = [&fast[..], &["--node-monitor-grace-period", "4s"]].concat();
    let mut nodes = Nodes::start_with(3, &server, &fast);
    let mut manifest: String = (1..=3).map(echo_pod).collect();
    manifest += &client_pod(1);
    manifest += "apiVersion: v1\nkind: Service\nmetadata:\n  name: echo\nspec:\n  selector: {app: echo}\n  ports:\n  - \
                 {port: 80, targetPort: 8080}\n";
    nodes.apply(&manifest);
    for pod in ["echo-1", "echo-2", "echo-3", "client-1"] {
        nodes.ok(&["wait", "--for=condition=Ready", &format!("pod/{pod}"), "--timeout=90s"]);
    }
    // A Deployment the scheduler spreads one pod per node (the fewest pods first).
    nodes.apply(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: mover\nspec:\n  replicas: 3\n  selector:\n    \
         matchLabels: {app: mover}\n  template:\n    metadata:\n      labels: {app: mover}\n    spec:\n      \
         tolerations:\n      - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, \
         tolerationSeconds: 6}\n      containers:\n      - name: sleep\n        image: kiamol/ch03-sleep\n",
    );
    let spread = eventually(60, "one Ready mover pod per node", || {
        let (ready, _) = pods_by_node(&nodes, "app=mover");
        (ready.len() == 3).then_some(ready)
    });
    assert!(spread.values().all(|n| *n == 1), "{spread:?}");
    let echo_3 = pod_ip(&nodes, "echo-3");
    let endpoints =
        |nodes: &Nodes| nodes.ok(&["get", "endpoints", "echo", "-o", "jsonpath={.subsets[*].addresses[*].ip}"]);
    eventually(20, "echo-3 among the endpoints", || endpoints(&nodes).contains(&echo_3).then_some(()));

    // Node 3 fails: within the grace period and a look, it is unreachable and echo-3 leaves the endpoints.
    let failed = Instant::now();
    nodes.fail(3);
    eventually(20, "echo-3 to leave the endpoints", || (!endpoints(&nodes).contains(&echo_3)).then_some(()));
    let gone_after = failed.elapsed();
    assert!(gone_after < Duration::from_secs(10), "endpoints updated {gone_after:?} after the failure (grace 4 s)");
    let ready =
        nodes.ok(&["get", "node", "node-3", "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"]);
    assert_eq!(ready, "Unknown");
    let taints = nodes.ok(&["get", "node", "node-3", "-o", "jsonpath={.spec.taints[*].key}"]);
    assert!(taints.contains("node.kubernetes.io/unreachable"), "{taints}");
    // Traffic to the Service keeps succeeding, on the pods that are left.
    let (_, out) =
        nodes.in_pod("client-1", "for i in $(seq 20); do curl -s -m 2 http://echo/hostname || echo FAILED; echo; done");
    let answers: Vec<&str> = out.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    assert_eq!(answers.len(), 20, "{out}");
    assert!(answers.iter().all(|a| *a == "echo-1" || *a == "echo-2"), "{out}");

    // After its toleration of the unreachable taint (6 s here; the API server's default is 300 s), the
    // Deployment's pod on node 3 is evicted and replaced on a healthy node.
    let moved = eventually(60, "the mover pod replaced on a healthy node", || {
        let (ready, terminating) = pods_by_node(&nodes, "app=mover");
        let healthy: usize = ready.iter().filter(|(node, _)| *node != "node-3").map(|(_, n)| n).sum();
        (healthy == 3 && terminating == 1).then_some(ready)
    });
    assert!(!moved.contains_key("node-3"), "{moved:?}");

    // Node 3 comes back: Ready again, untainted, the evicted pod finished there, no duplicate left.
    nodes.recover(3);
    eventually(30, "node-3 Ready again", || {
        let ready =
            nodes.ok(&["get", "node", "node-3", "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"]);
        let taints = nodes.ok(&["get", "node", "node-3", "-o", "jsonpath={.spec.taints[*].key}"]);
        (ready == "True" && !taints.contains("unreachable")).then_some(())
    });
    eventually(60, "exactly three mover pods, none terminating", || {
        let (ready, terminating) = pods_by_node(&nodes, "app=mover");
        let all = nodes.ok(&["get", "pods", "-l", "app=mover", "-o", "name"]);
        (terminating == 0 && all.lines().count() == 3 && ready.values().sum::<usize>() == 3).then_some(())
    });
}

#[test]
fn a_machine_joins_with_the_token_the_server_prints_and_a_bad_token_changes_nothing() {
    let mut nodes = Nodes::server_only(2);
    let token = std::fs::read_to_string(nodes.path("node-1").join("node-token")).expect("the node token");
    let token = token.trim().to_string();
    assert!(token.starts_with("K10") && token.contains("::server:"), "{token}");
    let (hash, secret) = token.trim_start_matches("K10").split_once("::server:").expect("hash and secret");

    // Bad tokens: each fails at once with a clear message, and no Node appears.
    let other_ca = format!("K10{}::server:{secret}", "0".repeat(64));
    let wrong_secret = format!("K10{hash}::server:not-the-secret");
    for (bad, says) in [
        (other_ca.as_str(), "another CA"),
        (wrong_secret.as_str(), "refused the join token (401 Unauthorized)"),
        ("not-a-token", "a join token looks like K10<CA hash>::server:<secret>"),
    ] {
        let out = nodes.join_cmd(2, bad).output().expect("skiff agent runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "joined with {bad:?}");
        assert!(stderr.contains(says), "{bad:?}: {stderr}");
    }
    assert_eq!(nodes.ok(&["get", "nodes", "-o", "name"]), "node/node-1", "a bad token made no Node");

    // The right token: node 2 joins, gets a pod CIDR and a route, runs a pod, and serves its logs and exec
    // through the API server (its streaming certificate was signed at the join, and it accepts the token the
    // API server presents).
    let child = nodes.join_cmd(2, &token).stdout(Stdio::null()).stderr(nodes.log_file("node-2.log")).spawn();
    nodes.processes.push(child.expect("skiff agent starts"));
    eventually(60, "node-2 Ready", || {
        let ready = nodes.kubectl(&[
            "get",
            "node",
            "node-2",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ]);
        (String::from_utf8_lossy(&ready.stdout) == "True").then_some(())
    });
    nodes.apply(&(echo_pod(2) + &client_pod(1)));
    nodes.ok(&["wait", "--for=condition=Ready", "pod/echo-2", "pod/client-1", "--timeout=90s"]);
    let hostname = nodes.ok(&["exec", "echo-2", "--", "cat", "/etc/hostname"]);
    assert_eq!(hostname.trim(), "echo-2");
    let logs = nodes.ok(&["logs", "echo-2"]);
    assert!(!logs.is_empty(), "logs through the joined node's streaming server");
    let ip = pod_ip(&nodes, "echo-2");
    let (_, seen) = nodes.in_pod("client-1", &format!("curl -s -m 3 http://{ip}:8080/hostname"));
    assert_eq!(seen.trim(), "echo-2", "pod traffic to the joined node");
    // The joined node holds none of the server's secrets.
    let agent_dir = nodes.path("node-2").join("agent");
    for secret_file in ["ca.key", "admin.token", "join.secret"] {
        let found =
            std::process::Command::new("find").arg(&agent_dir).args(["-name", secret_file]).output().expect("find");
        assert!(String::from_utf8_lossy(&found.stdout).trim().is_empty(), "{secret_file} on the joined node");
    }
}
