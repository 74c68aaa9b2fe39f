//! What Service traffic does through the real binary, with agnhost `netexec` pods: an even spread over three
//! replicas, session affinity switched on and off, a blue/green switch by selector and a proxy restart with no
//! failed request, a UDP client that follows its server across a pod replacement, and `externalTrafficPolicy:
//! Local` seen from a client outside the node (its address kept, a health check port that counts local
//! endpoints); the chapter 3 lab and the blue/green release from `examples/`, with `skiff explain` reading both. The node runs in a network namespace of the test's own, and the outside client in another one
//! joined to it by a veth; traffic goes only to addresses inside them.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::cluster::{Cluster, Outside, eventually, example};

/// `replicas` netexec pods labelled `app: echo, version: <version>`.
fn echo_deployment(version: &str, replicas: u32) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: echo-{version}\nspec:\n  replicas: {replicas}\n  \
         selector:\n    matchLabels: {{app: echo, version: {version}}}\n  template:\n    metadata:\n      labels: \
         {{app: echo, version: {version}}}\n    spec:\n      containers:\n      - name: netexec\n        image: \
         registry.k8s.io/e2e-test-images/agnhost:2.53\n        args: [netexec, --http-port=8080, --udp-port=8081]\n        \
         readinessProbe:\n          httpGet: {{path: /healthz, port: 8080}}\n          periodSeconds: 1\n"
    )
}

/// A LoadBalancer Service `echo` on 8080/TCP and 8081/UDP for the pods of `version`.
fn echo_service(version: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: echo\nspec:\n  type: LoadBalancer\n  selector: {{app: echo, \
         version: {version}}}\n  ports:\n  - {{name: http, port: 8080, targetPort: 8080, protocol: TCP}}\n  - {{name: \
         udp, port: 8081, targetPort: 8081, protocol: UDP}}\n{extra_spec}"
    )
}

fn wait_ready(c: &Cluster, selector: &str, count: usize) {
    eventually(90, &format!("{count} Ready pods {selector}"), || {
        let out = c.ok(&[
            "get",
            "pods",
            "-l",
            selector,
            "-o",
            "jsonpath={range .items[*]}{.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}",
        ]);
        (out.lines().filter(|l| *l == "True").count() == count).then_some(())
    });
}

/// Hostnames answered by `n` requests from the sleep pod to `url` (one exec, one curl per request).
fn hostnames_from_pod(c: &Cluster, url: &str, n: usize) -> BTreeMap<String, usize> {
    let script = format!("for i in $(seq {n}); do curl -s -m 2 {url}; echo; done");
    let out = c.ok(&["exec", "deploy/sleep-1", "--", "sh", "-c", &script]);
    let mut seen = BTreeMap::new();
    for line in out.lines() {
        *seen.entry(line.trim().to_string()).or_insert(0) += 1;
    }
    seen
}

/// One HTTP GET of `path` on `port` of the node's localhost (the LoadBalancer Service), from inside the node.
fn get_local(port: u16, path: &str) -> Result<String, String> {
    let mut stream = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2))
        .map_err(|e| format!("connect: {e}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).map_err(|e| e.to_string())?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: echo\r\nConnection: close\r\n\r\n").map_err(|e| e.to_string())?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).map_err(|e| format!("read: {e}"))?;
    match answer.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200") => Ok(body.to_string()),
        _ => Err(format!("answer: {answer:?}")),
    }
}

/// When a request was sent, and the hostname that answered it or what went wrong.
type Outcome = (Instant, Result<String, String>);

/// A client in the node sending a request every 20 ms to localhost:8080 until stopped; yields every outcome.
struct Load {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Vec<Outcome>>>,
}

impl Load {
    fn start(c: &Cluster) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let path = format!("/run/netns/{}", c.netns().expect("a node cluster"));
        let thread = std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).expect("the node's namespace");
            nix::sched::setns(std::os::fd::AsFd::as_fd(&ns), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            let mut outcomes = Vec::new();
            while !flag.load(Ordering::SeqCst) {
                outcomes.push((Instant::now(), get_local(8080, "/hostname")));
                std::thread::sleep(Duration::from_millis(20));
            }
            outcomes
        });
        Load { stop, thread: Some(thread) }
    }

    fn finish(mut self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().and_then(|t| t.join().ok()).unwrap_or_default()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn pod_names(c: &Cluster, selector: &str) -> Vec<String> {
    c.ok(&["get", "pods", "-l", selector, "-o", "jsonpath={.items[*].metadata.name}"])
        .split_whitespace()
        .map(String::from)
        .collect()
}

#[test]
fn spread_affinity_blue_green_and_a_proxy_restart_without_a_failed_request() {
    let mut c = Cluster::start_node(&[]);
    c.ok(&["apply", "-f", &example("ch03/sleep/sleep1.yaml")]);
    c.ok_stdin(&["apply", "-f", "-"], &format!("{}---\n{}", echo_deployment("blue", 3), echo_service("blue", "")));
    c.ok_stdin(&["apply", "-f", "-"], &echo_deployment("green", 1));
    wait_ready(&c, "app=echo,version=blue", 3);
    wait_ready(&c, "app=echo,version=green", 1);
    wait_ready(&c, "app=sleep-1", 1);
    let ip = c.ok(&["get", "svc", "echo", "-o", "jsonpath={.spec.clusterIP}"]);
    let url = format!("http://{ip}:8080/hostname");
    let blue = pod_names(&c, "version=blue");

    // From a pod: three replicas, 60 requests, every replica gets a fair share.
    let spread = eventually(30, "all three replicas to answer", || {
        let seen = hostnames_from_pod(&c, &url, 60);
        (seen.len() == 3).then_some(seen)
    });
    assert!(spread.keys().all(|h| blue.contains(h)), "{spread:?} from {blue:?}");
    assert!(spread.values().all(|n| *n >= 8), "an even spread: {spread:?}");

    // Session affinity: one client, one replica; off again, the spread returns.
    c.ok(&["patch", "svc", "echo", "-p", r#"{"spec":{"sessionAffinity":"ClientIP"}}"#]);
    eventually(20, "every request of one client on one replica", || {
        (hostnames_from_pod(&c, &url, 20).len() == 1).then_some(())
    });
    c.ok(&["patch", "svc", "echo", "-p", r#"{"spec":{"sessionAffinity":"None"}}"#]);
    eventually(20, "requests spread again", || (hostnames_from_pod(&c, &url, 20).len() > 1).then_some(()));

    // Blue/green: the selector moves to green under load; not one request fails, and green takes over.
    let green = pod_names(&c, "version=green");
    let load = Load::start(&c);
    std::thread::sleep(Duration::from_millis(500));
    c.ok(&["patch", "svc", "echo", "-p", r#"{"spec":{"selector":{"version":"green"}}}"#]);
    eventually(20, "green to answer on localhost:8080", || {
        c.in_node(|| get_local(8080, "/hostname")).ok().filter(|h| green.contains(h)).map(|_| ())
    });
    std::thread::sleep(Duration::from_millis(500));
    let outcomes = load.finish();
    let failed: Vec<_> = outcomes.iter().filter(|(_, o)| o.is_err()).collect();
    assert!(failed.is_empty(), "{} of {} requests failed during the switch: {failed:?}", failed.len(), outcomes.len());
    let last = &outcomes.last().expect("requests ran").1;
    assert!(last.as_ref().is_ok_and(|h| green.contains(h)), "{last:?}");

    // The server (and with it the node agent and its proxy) restarts: the rules stay in the kernel, so traffic
    // keeps flowing while it is down, and the restarted proxy takes over the table without a gap.
    let load = Load::start(&c);
    std::thread::sleep(Duration::from_millis(300));
    let down = Instant::now();
    c.restart_after(Duration::from_secs(1));
    let up = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let outcomes = load.finish();
    let during = outcomes.iter().filter(|(at, _)| *at > down && *at < up).count();
    assert!(during >= 20, "requests while the proxy was down: {during}");
    let failed: Vec<_> = outcomes.iter().filter(|(_, o)| o.is_err()).collect();
    assert!(failed.is_empty(), "{} of {} requests failed across the restart: {failed:?}", failed.len(), outcomes.len());
    let rules = c.node_cmd("nft").args(["list", "table", "inet", "skiff"]).output().expect("nft runs");
    assert!(String::from_utf8_lossy(&rules.stdout).contains(&format!("{ip} . tcp . 8080 : goto")));

    // The proxy's metrics: how long an endpoint change took to reach the kernel, and the table's size.
    let metrics = c.ok(&["get", "--raw", "/metrics"]);
    let count = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(-1.0)
    };
    assert!(count("kubeproxy_sync_full_proxy_rules_duration_seconds_count") >= 1.0, "{metrics}");
    assert!(count("skiff_proxy_service_ports ") >= 3.0, "kubernetes, echo/http, echo/udp: {metrics}");
    assert!(count("skiff_proxy_chains ") >= 2.0, "{metrics}");
    // The restarted server has seen no endpoint change yet; a new Service's first endpoints give a programming
    // latency (its trigger time is the Service's creation, which a restart cannot make look old).
    c.ok(&["create", "service", "clusterip", "echo-next", "--tcp=8080:8080"]);
    c.ok(&["set", "selector", "svc/echo-next", "app=echo,version=green"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = c.ok(&["get", "--raw", "/metrics"]);
        let programmed = metrics
            .lines()
            .find(|l| l.starts_with("kubeproxy_network_programming_duration_seconds_count"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
        if programmed.is_some_and(|n| n >= 1.0) {
            break;
        }
        if Instant::now() > deadline {
            let slices = c.ok(&["get", "endpointslices", "-o", "yaml"]);
            panic!("no network programming latency recorded:\n{metrics}\n{slices}\n{}", c.log());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_udp_client_follows_its_server_across_a_pod_replacement() {
    let c = Cluster::start_node(&[]);
    c.ok_stdin(&["apply", "-f", "-"], &format!("{}---\n{}", echo_deployment("blue", 1), echo_service("blue", "")));
    wait_ready(&c, "app=echo", 1);
    let node_port: u16 = c
        .ok(&["get", "svc", "echo", "-o", "jsonpath={.spec.ports[?(@.name==\"udp\")].nodePort}"])
        .parse()
        .expect("a node port");
    let first = pod_names(&c, "app=echo");

    // One socket throughout (one 5-tuple, so one conntrack entry), asking the NodePort on localhost.
    let client = Arc::new(c.in_node(|| UdpSocket::bind("127.0.0.1:0").expect("a UDP socket")));
    let ask = move |c: &Cluster| {
        let client = client.clone();
        c.in_node(move || {
            client.set_read_timeout(Some(Duration::from_millis(300))).ok()?;
            client.send_to(b"hostname", ("127.0.0.1", node_port)).ok()?;
            let mut buf = [0u8; 256];
            let n = client.recv(&mut buf).ok()?;
            Some(String::from_utf8_lossy(&buf[..n]).into_owned())
        })
    };
    let before = eventually(20, "the UDP NodePort to answer", || ask(&c));
    assert_eq!(vec![before], first);

    // The pod is replaced. The conntrack entry pointed at the old pod; once its endpoint is gone the entry is
    // deleted, so this same client reaches the new pod as soon as it is Ready instead of being black-holed.
    c.ok(&["delete", "pod", &first[0], "--wait=false"]);
    let replaced = Instant::now();
    let after = eventually(60, "the same UDP client to reach the new pod", || ask(&c).filter(|h| !first.contains(h)));
    let ready_to_answer = replaced.elapsed();
    assert_eq!(pod_names(&c, "app=echo"), vec![after.clone()], "answered by the replacement");
    assert!(ready_to_answer < Duration::from_secs(45), "{ready_to_answer:?}");
    for _ in 0..5 {
        assert_eq!(ask(&c), Some(after.clone()), "the client stays with the live pod");
    }
}

#[test]
fn external_traffic_policy_local_keeps_the_client_address_and_reports_local_endpoints() {
    let c = Cluster::start_node(&[]);
    let local = "  externalTrafficPolicy: Local\n";
    c.ok_stdin(&["apply", "-f", "-"], &format!("{}---\n{}", echo_deployment("blue", 1), echo_service("blue", local)));
    wait_ready(&c, "app=echo", 1);
    let outside = Outside::new(&c);
    let jsonpath = |path: &str| c.ok(&["get", "svc", "echo", "-o", &format!("jsonpath={path}")]);
    let node_port = jsonpath("{.spec.ports[?(@.name==\"http\")].nodePort}");
    let health_port = jsonpath("{.spec.healthCheckNodePort}");
    assert!(!health_port.is_empty(), "a LoadBalancer Service with the Local policy gets a health check port");

    // The pod sees the outside client's own address.
    let (status, client) = eventually(20, "the NodePort from outside", || {
        let got = outside.curl(&format!("http://192.168.91.1:{node_port}/clientip"));
        (got.0 == 200).then_some(got)
    });
    assert_eq!(status, 200);
    assert!(client.starts_with("192.168.91.2:"), "the client's address is kept: {client}");

    // The health check port answers with this node's endpoint count.
    let health_url = format!("http://192.168.91.1:{health_port}/healthz");
    let (status, body) = eventually(20, "the health check port", || {
        let got = outside.curl(&health_url);
        (got.0 == 200).then_some(got)
    });
    let body: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!((status, &body["localEndpoints"], &body["service"]["name"]), (200, &1.into(), &"echo".into()), "{body}");

    // No pods here: 503 with no local endpoints, so a load balancer would skip this node.
    c.ok(&["scale", "deploy/echo-blue", "--replicas=0"]);
    let body = eventually(30, "the health check to fail", || {
        let got = outside.curl(&health_url);
        (got.0 == 503).then_some(got.1)
    });
    assert!(body.contains(r#""localEndpoints":0"#), "{body}");

    // The Cluster policy masquerades: the pod sees the node, not the client; the health check port closes.
    c.ok(&["scale", "deploy/echo-blue", "--replicas=1"]);
    wait_ready(&c, "app=echo", 1);
    c.ok(&["patch", "svc", "echo", "-p", r#"{"spec":{"externalTrafficPolicy":"Cluster"}}"#]);
    let client = eventually(20, "a masqueraded answer", || {
        let got = outside.curl(&format!("http://192.168.91.1:{node_port}/clientip"));
        (got.0 == 200 && !got.1.starts_with("192.168.91.2:")).then_some(got.1)
    });
    assert!(client.starts_with("10.42."), "the node's pod-network address: {client}");
    eventually(20, "the health check port to close", || (outside.curl(&health_url).0 == 0).then_some(()));
}

/// Chapter 3's lab with our solution: two versions of the website run under one `app` label, and the Service that
/// also selects `version: v2` publishes only version 2 on 8088 (on the node's localhost, as the book's Docker
/// Desktop does), and its Go button gets a number from the API through the `numbers-api` Service.
#[test]
fn the_lab_publishes_only_version_2_of_the_website_on_8088() {
    let c = Cluster::start_node(&[]);
    c.ok(&[
        "apply",
        "-f",
        &example("lab/deployments.yaml"),
        "-f",
        &example("lab/numbers-api-service.yaml"),
        "-f",
        &example("lab/numbers-web-v2-service.yaml"),
    ]);
    wait_ready(&c, "app=lab-numbers-web", 2);
    wait_ready(&c, "app=lab-numbers-api", 1);
    let v2_ip =
        c.ok(&["get", "pods", "-l", "app=lab-numbers-web,version=v2", "-o", "jsonpath={.items[0].status.podIP}"]);
    eventually(30, "the v2 pod as the Service's only endpoint", || {
        let addresses =
            c.ok(&["get", "endpoints", "lab-numbers-web-v2", "-o", "jsonpath={.subsets[*].addresses[*].ip}"]);
        (addresses == v2_ip).then_some(())
    });
    eventually(20, "the website on localhost:8088", || c.in_node(|| get_local(8088, "/")).ok());
    for _ in 0..10 {
        let page = c.in_node(|| get_local(8088, "/")).unwrap_or_else(|e| panic!("localhost:8088: {e}"));
        assert!(page.contains("ch03-numbers-web:v2"), "only version 2 answers: {page}");
    }
    // The Go button: the website asks http://numbers-api for a number, by the name the lab's Service gives it.
    let number = eventually(30, "a number through the Go button", || {
        let out =
            c.node_cmd("curl").args(["-s", "-f", "-m", "10", "-X", "POST", "http://localhost:8088/"]).output().ok()?;
        let page = String::from_utf8_lossy(&out.stdout).into_owned();
        page.contains("Here it is:").then_some(page)
    });
    assert!(number.contains("ch03-numbers-web:v2"), "from version 2: {number}");

    // What the lab asks to look at closely, the labels: `skiff explain` shows the v1 pod as a near miss and the
    // v2 pod as the one backend this node's nftables DNATs to.
    let v1_pod =
        c.ok(&["get", "pods", "-l", "app=lab-numbers-web,version=v1", "-o", "jsonpath={.items[0].metadata.name}"]);
    let (ok, text, stderr) = explain(&c, "lab-numbers-web-v2");
    assert!(ok, "{stderr}");
    assert!(text.contains(&format!("  {v1_pod}  missing version=v2 (has version=v1)")), "{text}");
    assert!(text.contains(&format!("    backends: {v2_ip}:80\n")), "{text}");
    assert!(text.contains("from outside: chain external-"), "{text}");
    assert!(text.contains("lab-numbers-web-v2.default.svc.cluster.local  A "), "{text}");
    assert!(text.contains("Verdict: traffic to lab-numbers-web-v2 reaches 1 Ready endpoint(s)."), "{text}");
    let (ok, _, stderr) = explain(&c, "no-such-service");
    assert!(!ok && stderr.contains("services \"no-such-service\" not found"), "{stderr}");
}

/// `skiff explain svc <service>` on the node: whether it succeeded, its report and its errors.
fn explain(c: &Cluster, service: &str) -> (bool, String, String) {
    let kubeconfig = c.kubeconfig();
    let out = c
        .node_cmd(env!("CARGO_BIN_EXE_skiff"))
        .args(["explain", "svc", service, "--kubeconfig", &kubeconfig.to_string_lossy()])
        .output()
        .expect("skiff explain runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The blue/green release of `examples/blue-green/`: the Service's selector picks the blue pods (version 1 of
/// the website), applying `service-green.yaml` moves every request to green (version 2) without restarting a
/// pod, and applying `service-blue.yaml` again rolls back. `skiff explain` follows the switch.
#[test]
fn a_blue_green_release_by_selector_switches_and_rolls_back() {
    let c = Cluster::start_node(&[]);
    c.ok(&["apply", "-f", &example("blue-green/deployments.yaml"), "-f", &example("blue-green/service-blue.yaml")]);
    wait_ready(&c, "app=release-web", 4);
    let page = || c.in_node(|| get_local(8090, "/"));
    let is_blue = |p: &str| p.contains("kiamol/ch03-numbers-web;");
    let is_green = |p: &str| p.contains("kiamol/ch03-numbers-web:v2;");
    // Once `version` answers, ten requests in a row all get it.
    let switched_to = |secs: u64, version: &str, is: &dyn Fn(&str) -> bool| {
        eventually(secs, &format!("{version} on localhost:8090"), || page().ok().filter(|p| is(p)).map(|_| ()));
        for _ in 0..10 {
            let p = page().unwrap_or_else(|e| panic!("localhost:8090: {e}"));
            assert!(is(&p), "only {version} answers: {p}");
        }
    };
    switched_to(30, "blue", &is_blue);
    let pods_before = c.ok(&["get", "pods", "-l", "app=release-web", "-o", "jsonpath={.items[*].metadata.uid}"]);

    c.ok(&["apply", "-f", &example("blue-green/service-green.yaml")]);
    switched_to(20, "green", &is_green);
    let green_ips = c.ok(&["get", "pods", "-l", "version=green", "-o", "jsonpath={.items[*].status.podIP}"]);
    let (ok, text, stderr) = explain(&c, "release-web");
    assert!(ok, "{stderr}");
    assert_eq!(text.matches("missing version=green (has version=blue)").count(), 2, "{text}");
    let mut expected: Vec<std::net::SocketAddr> =
        green_ips.split_whitespace().map(|ip| format!("{ip}:80").parse().expect("a pod address")).collect();
    expected.sort();
    let expected: Vec<String> = expected.iter().map(ToString::to_string).collect();
    assert!(text.contains(&format!("    backends: {}\n", expected.join(" "))), "{text}");

    c.ok(&["apply", "-f", &example("blue-green/service-blue.yaml")]);
    switched_to(20, "blue", &is_blue);
    let pods_after = c.ok(&["get", "pods", "-l", "app=release-web", "-o", "jsonpath={.items[*].metadata.uid}"]);
    assert_eq!(pods_before, pods_after, "the switch restarted no pod");
}
