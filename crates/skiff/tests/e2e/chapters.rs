//! The seeds' "try it now" exercises, each chapter in its own order, with the real kubectl against one fresh
//! `skiff server` (and its node agent) in a network namespace of the test's own, using the manifests in
//! `examples/`. Each step asserts what the chapter says the reader sees. Nothing leaves the namespaces: the
//! ExternalName target and the hand-written endpoint address of listing 3.6 are only looked up, never contacted
//! (the node has no upstream resolvers, and no request is sent while the placeholder address is the endpoint).

use std::process::Stdio;

use super::cluster::{Cluster, NODE_IP, Outside, Running, eventually, example};

/// `kubectl port-forward deploy/<deployment> <local>:<remote>`, stopped when dropped.
fn port_forward(c: &Cluster, deployment: &str, ports: &str) -> Running {
    let child = c
        .kubectl_cmd()
        .args(["port-forward", &format!("deploy/{deployment}"), ports])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl port-forward");
    Running(child)
}

/// The Go button of the numbers website at `url`: the page it answers with.
fn press_go(c: &Cluster, url: &str) -> String {
    let out = c.node_cmd("curl").args(["-s", "-m", "10", "-X", "POST", url]).output().expect("curl runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The Go button through a port forward to the website on `local_port` (a fresh forward, as the chapter starts
/// one per exercise).
fn press_go_forwarded(c: &Cluster, local_port: u16, expect: &str) -> String {
    let _forward = port_forward(c, "numbers-web", &format!("{local_port}:80"));
    let url = format!("http://localhost:{local_port}/");
    eventually(30, &format!("the Go button to show {expect:?}"), || {
        let page = press_go(c, &url);
        page.contains(expect).then_some(page)
    })
}

/// `kubectl exec deploy/sleep-1 -- sh -c <script>`: stdout and stderr, and whether it succeeded.
fn in_sleep_1(c: &Cluster, script: &str) -> (bool, String) {
    c.sh_in("deploy/sleep-1", script)
}

fn endpoints_of(c: &Cluster, service: &str) -> String {
    c.ok(&["get", "endpoints", service, "-o", "jsonpath={.subsets[*].addresses[*].ip}"])
}

/// Chapter 3 ("Connecting Pods over the network with Services"), §3.1–§3.5, every exercise in the book's order.
#[test]
fn chapter_3_every_try_it_now_in_order() {
    let c = Cluster::start_node(&[]);

    // §3.1: two Pods reach each other by the IP address kubectl reports.
    c.ok(&["apply", "-f", &example("ch03/sleep/sleep1.yaml"), "-f", &example("ch03/sleep/sleep2.yaml")]);
    c.ok(&["wait", "--for=condition=Ready", "pod", "-l", "app=sleep-2", "--timeout=60s"]);
    c.ok(&["wait", "--for=condition=Ready", "pod", "-l", "app=sleep-1", "--timeout=60s"]);
    let sleep_2_ip = c.ok(&["get", "pod", "-l", "app=sleep-2", "--output", "jsonpath={.items[0].status.podIP}"]);
    let (ok, ping) = in_sleep_1(&c, &format!("ping -c 2 {sleep_2_ip}"));
    assert!(ok && ping.contains("2 packets transmitted, 2 received"), "{ping}");

    // §3.1: the replacement Pod has a new IP address.
    c.ok(&["delete", "pods", "-l", "app=sleep-2"]);
    let replaced_ip = eventually(60, "the replacement Pod's IP", || {
        let out = c.ok(&["get", "pod", "-l", "app=sleep-2", "--output", "jsonpath={.items[*].status.podIP}"]);
        let ips: Vec<&str> = out.split_whitespace().collect();
        (ips.len() == 1 && ips[0] != sleep_2_ip).then(|| ips[0].to_string())
    });
    c.ok(&["wait", "--for=condition=Ready", "pod", "-l", "app=sleep-2", "--timeout=60s"]);
    let (ok, ping) = in_sleep_1(&c, &format!("ping -c 1 -W 2 {replaced_ip}"));
    assert!(ok && ping.contains("1 received"), "the new address answers: {ping}");
    let (ok, ping) = in_sleep_1(&c, &format!("ping -c 1 -W 1 {sleep_2_ip}"));
    assert!(!ok, "the old address is gone: {ping}");

    // §3.1: a Service gives sleep-2 a name; ping resolves it to the Service's IP but gets no reply (a ClusterIP
    // serves the Service's ports, not ICMP).
    c.ok(&["apply", "-f", &example("ch03/sleep/sleep2-service.yaml")]);
    let sleep_2_svc = c.ok(&["get", "svc", "sleep-2", "-o", "jsonpath={.spec.clusterIP}"]);
    assert!(sleep_2_svc.parse::<std::net::Ipv4Addr>().is_ok(), "a ClusterIP: {sleep_2_svc:?}");
    assert!(c.ok(&["get", "svc", "sleep-2"]).contains(&sleep_2_svc));
    let (ok, ping) = in_sleep_1(&c, "ping -c 1 -W 2 sleep-2");
    assert!(!ok, "no reply from a Service IP: {ping}");
    assert!(ping.contains(&format!("sleep-2.default.svc.cluster.local ({sleep_2_svc})")), "resolved: {ping}");
    assert!(ping.contains("1 packets transmitted, 0 received"), "{ping}");

    // §3.2: the website and the API without a Service: the Go button fails, naming http://numbers-api.
    c.ok(&["apply", "-f", &example("ch03/numbers/api.yaml"), "-f", &example("ch03/numbers/web.yaml")]);
    c.ok(&["wait", "--for=condition=Ready", "pod", "-l", "app=numbers-web", "--timeout=60s"]);
    c.ok(&["wait", "--for=condition=Ready", "pod", "-l", "app=numbers-api", "--timeout=60s"]);
    let page = press_go_forwarded(&c, 18080, "RNG service unavailable!");
    assert!(page.contains("http://numbers-api/rng"), "{page}");

    // §3.2: the API's Service fixes the app.
    c.ok(&["apply", "-f", &example("ch03/numbers/api-service.yaml")]);
    let api_ip = c.ok(&["get", "svc", "numbers-api", "-o", "jsonpath={.spec.clusterIP}"]);
    assert!(api_ip.parse::<std::net::Ipv4Addr>().is_ok(), "a ClusterIP: {api_ip:?}");
    let row = c.ok(&["get", "svc", "numbers-api"]);
    assert!(row.contains("ClusterIP") && row.contains(&api_ip) && row.contains("80/TCP"), "{row}");
    press_go_forwarded(&c, 18081, "Here it is:");

    // §3.2: the API Pod is replaced: a new Pod IP, the same Service IP, and the app keeps working.
    let columns = "custom-columns=NAME:metadata.name,POD_IP:status.podIP";
    let before = c.ok(&["get", "pod", "-l", "app=numbers-api", "-o", columns]);
    c.ok(&["delete", "pod", "-l", "app=numbers-api"]);
    let after = eventually(60, "a replacement API Pod with its IP", || {
        let now = c.ok(&["get", "pod", "-l", "app=numbers-api", "-o", columns]);
        let rows: Vec<&str> = now.lines().skip(1).collect();
        (rows.len() == 1 && !before.contains(rows[0]) && !rows[0].contains("<none>")).then_some(now)
    });
    let old_ip = before.lines().nth(1).and_then(|r| r.split_whitespace().nth(1)).expect("the old Pod's IP");
    let new_ip = after.lines().nth(1).and_then(|r| r.split_whitespace().nth(1)).expect("the new Pod's IP");
    assert_ne!(old_ip, new_ip, "{before}\n{after}");
    c.ok(&["wait", "--for=condition=Ready", "pod", "-l", "app=numbers-api", "--timeout=60s"]);
    assert_eq!(c.ok(&["get", "svc", "numbers-api", "-o", "jsonpath={.spec.clusterIP}"]), api_ip);
    press_go_forwarded(&c, 18082, "Here it is:");

    // §3.3: a LoadBalancer Service for the website: an external address, and the site on port 8080 from the
    // node's localhost (as Docker Desktop does) and from a client outside the node. The book's jsonpath prints
    // every field of the ingress: since Kubernetes 1.30 that is the IP and the `ipMode` (VIP) that upstream's
    // API server fills in.
    c.ok(&["apply", "-f", &example("ch03/numbers/web-service.yaml")]);
    let book = eventually(30, "the LoadBalancer's address", || {
        let url =
            c.ok(&["get", "svc", "numbers-web", "-o", "jsonpath=http://{.status.loadBalancer.ingress[0].*}:8080"]);
        (url != "http://:8080").then_some(url)
    });
    // (kubectl walks the object's fields in Go's map order: either way round.)
    let fields = book.strip_prefix("http://").and_then(|b| b.strip_suffix(":8080")).unwrap_or_default();
    let mut fields: Vec<&str> = fields.split_whitespace().collect();
    fields.sort();
    assert_eq!(fields, [NODE_IP, "VIP"], "{book}");
    let url = c.ok(&["get", "svc", "numbers-web", "-o", "jsonpath=http://{.status.loadBalancer.ingress[0].ip}:8080"]);
    assert_eq!(url, format!("http://{NODE_IP}:8080"));
    let row = c.ok(&["get", "svc", "numbers-web"]);
    assert!(row.contains("LoadBalancer") && row.contains(NODE_IP) && row.contains("8080:"), "{row}");
    let page = eventually(20, "the website on localhost:8080", || c.node_curl("http://localhost:8080/"));
    assert!(page.contains("Go"), "{page}");
    assert!(press_go(&c, "http://localhost:8080/").contains("Here it is:"));
    let outside = Outside::new(&c);
    let (status, page) = eventually(20, "the website from outside the node", || {
        let got = outside.curl(&url);
        (got.0 == 200).then_some(got)
    });
    assert!(status == 200 && page.contains("Go"), "{page}");
    // Listing 3.4's NodePort Service (no exercise in the book, but its file is there to try): port 30080 on
    // the node's address, from outside.
    c.ok(&["apply", "-f", &example("ch03/numbers-services/web-service-nodePort.yaml")]);
    let row = c.ok(&["get", "svc", "numbers-web-node"]);
    assert!(row.contains("NodePort") && row.contains("8080:30080/TCP"), "{row}");
    eventually(20, "the NodePort from outside", || (outside.curl("http://192.168.91.1:30080/").0 == 200).then_some(()));
    let page = eventually(20, "the NodePort from the node's localhost", || c.node_curl("http://localhost:30080/"));
    assert!(page.contains("Go"), "{page}");

    // §3.4: ExternalName replaces the API's Service: the name becomes a CNAME (looked up, never contacted).
    c.ok(&["delete", "svc", "numbers-api"]);
    c.ok(&["apply", "-f", &example("ch03/numbers-services/api-service-externalName.yaml")]);
    let row = c.ok(&["get", "svc", "numbers-api"]);
    assert!(row.contains("ExternalName") && row.contains("raw.githubusercontent.com"), "{row}");
    // §3.4: any Pod can look the Service up.
    let (_, lookup) = eventually(10, "the CNAME", || {
        let got = in_sleep_1(&c, "nslookup -type=CNAME numbers-api | tail -n 5");
        got.1.contains("canonical name = raw.githubusercontent.com").then_some(got)
    });
    assert!(lookup.contains("numbers-api.default.svc.cluster.local"), "{lookup}");

    // §3.4: the headless Service of listing 3.6: no selector, a hand-written Endpoints; the name resolves to the
    // Service's own ClusterIP, and the endpoint shows the placeholder address (which nothing here contacts).
    c.ok(&["delete", "svc", "numbers-api"]);
    c.ok(&["apply", "-f", &example("ch03/numbers-services/api-service-headless.yaml")]);
    let headless_ip = c.ok(&["get", "svc", "numbers-api", "-o", "jsonpath={.spec.clusterIP}"]);
    assert!(headless_ip.parse::<std::net::Ipv4Addr>().is_ok(), "a ClusterIP: {headless_ip:?}");
    let row = c.ok(&["get", "svc", "numbers-api"]);
    assert!(row.contains("ClusterIP") && row.contains(&headless_ip), "{row}");
    assert!(c.ok(&["get", "endpoints", "numbers-api"]).contains("192.168.123.234:80"));
    let (_, lookup) = eventually(10, "numbers-api to resolve to its ClusterIP", || {
        let got = in_sleep_1(&c, "nslookup numbers-api | grep \"^[^*]\"");
        got.1.contains(&format!("Address: {headless_ip}")).then_some(got)
    });
    assert!(lookup.contains("numbers-api.default.svc.cluster.local"), "{lookup}");
    assert!(!lookup.contains("192.168.123.234"), "the ClusterIP, not the endpoint: {lookup}");

    // §3.5: the endpoints follow the Pods: a replacement's IP, and no addresses once the Deployment is gone.
    assert_eq!(endpoints_of(&c, "sleep-2"), replaced_ip);
    c.ok(&["delete", "pods", "-l", "app=sleep-2"]);
    let third_ip = eventually(60, "the endpoint to follow the replacement", || {
        let now = endpoints_of(&c, "sleep-2");
        (!now.is_empty() && now != replaced_ip).then_some(now)
    });
    let pod_ip = c.ok(&["get", "pod", "-l", "app=sleep-2", "-o", "jsonpath={.items[*].status.podIP}"]);
    assert_eq!(third_ip, pod_ip);
    c.ok(&["delete", "deploy", "sleep-2"]);
    eventually(60, "the endpoint to have no addresses", || endpoints_of(&c, "sleep-2").is_empty().then_some(()));
    let row = c.ok(&["get", "endpoints", "sleep-2"]);
    assert!(row.contains("sleep-2") && row.contains("<none>"), "the Endpoints stays, empty: {row}");

    // §3.5: namespaces: kube-dns in kube-system, and fully qualified names with the namespace in them.
    let default = c.ok(&["get", "svc", "--namespace", "default"]);
    assert!(default.contains("kubernetes") && default.contains("numbers-web"), "{default}");
    let system = c.ok(&["get", "svc", "-n", "kube-system"]);
    assert!(system.contains("kube-dns") && system.contains("10.43.0.10") && system.contains("53/UDP,53/TCP,9153/TCP"));
    let (_, fqdn) = in_sleep_1(&c, "nslookup numbers-api.default.svc.cluster.local | grep \"^[^*]\"");
    assert!(fqdn.contains(&format!("Address: {headless_ip}")), "{fqdn}");
    let (_, dns) = in_sleep_1(&c, "nslookup kube-dns.kube-system.svc.cluster.local | grep \"^[^*]\"");
    assert!(dns.contains("Address: 10.43.0.10"), "{dns}");

    // §3.5: clean-up: Deployments take their Pods; Services go separately, and `kubernetes` comes back.
    c.ok(&["delete", "deploy", "--all"]);
    c.ok(&["delete", "svc", "--all"]);
    let all = eventually(60, "only the kubernetes Service left", || {
        let all = c.ok(&["get", "all"]);
        let pods_gone = !all.contains("pod/");
        (pods_gone && all.contains("service/kubernetes") && !all.contains("numbers-web")).then_some(all)
    });
    assert!(!all.contains("deployment.apps/"), "{all}");
}

/// The blog chapter (Service networking, part 1): `test-svc` with a named `targetPort`, reached from the node by
/// its ClusterIP and from a Pod by IP and by name; kube-dns in kube-system; the resolv.conf every Pod gets.
#[test]
fn the_blog_chapter_reaches_test_svc_from_the_node_and_from_a_pod() {
    let c = Cluster::start_node(&[]);
    c.ok(&["apply", "-f", &example("lab/lab-web.yaml")]);
    c.ok(&["create", "-f", &example("lab/test-svc.yaml")]);
    c.ok(&["create", "deployment", "lab-sleeper", "--image=kiamol/ch03-sleep"]);
    c.ok(&["wait", "--for=condition=Ready", "pod", "-l", "app=lab-web", "--timeout=60s"]);
    c.ok(&["wait", "--for=condition=Ready", "pod", "-l", "app=lab-sleeper", "--timeout=60s"]);
    let services = c.ok(&["get", "services"]);
    let ip = c.ok(&["get", "svc", "test-svc", "-o", "jsonpath={.spec.clusterIP}"]);
    assert!(ip.parse::<std::net::Ipv4Addr>().is_ok(), "a ClusterIP: {ip:?}");
    assert!(services.contains("test-svc") && services.contains(&ip) && services.contains("80/TCP"), "{services}");
    assert!(services.contains("kubernetes") && services.contains("10.43.0.1 "), "{services}");

    // From the node, by the virtual IP. A node's own connection needs a route to leave by before the proxy's
    // DNAT turns the virtual IP into a pod's; a real node has its default route, this namespace gets one to lo
    // (where a packet that is not DNATed goes nowhere).
    let netns = c.netns().expect("a node cluster");
    let route = std::process::Command::new("ip").args(["-n", netns, "route", "add", "default", "dev", "lo"]).status();
    assert!(route.is_ok_and(|s| s.success()), "a default route in the node's namespace");
    let page = eventually(20, "nginx through the ClusterIP", || c.node_curl(&format!("http://{ip}")));
    assert!(page.contains("Welcome to nginx!"), "{page}");
    // From a Pod, by IP and by name.
    let sleeper = c.ok(&["get", "pod", "-l", "app=lab-sleeper", "-o", "jsonpath={.items[0].metadata.name}"]);
    for url in [format!("http://{ip}"), "http://test-svc".to_string()] {
        let page = c.ok(&["exec", &sleeper, "--", "curl", "-s", "-m", "5", &url]);
        assert!(page.contains("Welcome to nginx!"), "{url}: {page}");
    }

    // kube-dns, as the chapter lists it, and the resolv.conf that points Pods at it.
    let system = c.ok(&["get", "services", "-n", "kube-system"]);
    let row = system.lines().find(|l| l.starts_with("kube-dns ")).unwrap_or_else(|| panic!("{system}"));
    let columns: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(columns[1..5], ["ClusterIP", "10.43.0.10", "<none>", "53/UDP,53/TCP,9153/TCP"], "{row}");
    let resolv = c.ok(&["exec", &sleeper, "--", "cat", "/etc/resolv.conf"]);
    let lines: Vec<&str> = resolv.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).collect();
    assert_eq!(
        lines,
        [
            "nameserver 10.43.0.10",
            "search default.svc.cluster.local svc.cluster.local cluster.local",
            "options ndots:5"
        ],
        "{resolv}"
    );
}

/// Chapter 6's Services: `web-deploy` exposed imperatively as the NodePort `hello-svc` (what `describe` shows),
/// deleted, then declared in `svc.yml` on NodePort 30001 with its Endpoints object, and reached on that port.
#[test]
fn chapter_6_exposes_web_deploy_imperatively_then_declaratively() {
    let c = Cluster::start_node(&[]);
    c.ok(&["apply", "-f", &example("ch06/deploy.yml")]);
    c.ok(&["rollout", "status", "deploy/web-deploy", "--timeout=90s"]);
    let out =
        c.ok(&["expose", "deployment", "web-deploy", "--name=hello-svc", "--target-port=8080", "--type=NodePort"]);
    assert_eq!(out.trim(), "service/hello-svc exposed");
    let describe = eventually(30, "describe to list the endpoints", || {
        let d = c.ok(&["describe", "svc", "hello-svc"]);
        d.lines().any(|l| l.starts_with("Endpoints:") && l.contains(":8080")).then_some(d)
    });
    for field in ["Name:", "Namespace:", "Labels:", "Selector:", "Type:", "IP:", "Port:", "NodePort:", "Endpoints:"] {
        assert!(describe.lines().any(|l| l.starts_with(field)), "describe lacks {field}\n{describe}");
    }
    assert!(describe.contains("app=hello-world") && describe.contains("NodePort"), "{describe}");
    c.ok(&["delete", "svc", "hello-svc"]);

    c.ok(&["apply", "-f", &example("ch06/svc.yml")]);
    let row = c.ok(&["get", "svc", "hello-svc"]);
    assert!(row.contains("NodePort") && row.contains("8080:30001/TCP"), "{row}");
    let mut pods: Vec<String> = c
        .ok(&["get", "pods", "-l", "app=hello-world", "-o", "jsonpath={.items[*].status.podIP}"])
        .split_whitespace()
        .map(|ip| format!("{ip}:8080"))
        .collect();
    pods.sort();
    assert_eq!(pods.len(), 10, "{pods:?}");
    eventually(30, "the Endpoints of every pod", || {
        let ep = c.ok(&["get", "ep", "hello-svc", "-o", "jsonpath={range .subsets[*].addresses[*]}{.ip}:8080 {end}"]);
        let mut addresses: Vec<String> = ep.split_whitespace().map(String::from).collect();
        addresses.sort();
        (addresses == pods).then_some(())
    });
    // `get ep` shows the first three and counts the rest, as upstream's kubectl does.
    let row = c.ok(&["get", "ep", "hello-svc"]);
    assert!(row.contains("hello-svc") && row.contains("+ 7 more..."), "{row}");
    let page = eventually(20, "the app on the NodePort", || c.node_curl(&format!("http://{NODE_IP}:30001/")));
    assert!(page.contains("Hello from The Kubernetes Book!"), "{page}");
    c.ok(&["delete", "-f", &example("ch06/deploy.yml")]);
    c.ok(&["delete", "-f", &example("ch06/svc.yml")]);
    assert!(!c.ok(&["get", "svc"]).contains("hello-svc"));
}
