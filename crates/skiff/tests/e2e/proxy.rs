//! The service proxy through the real binary: a ClusterIP reaches the Service's pods from another pod, follows
//! the endpoints when the pods are scaled away and back, and an unserved port of the ClusterIP is refused. The
//! node runs in a network namespace of the test's own; traffic goes only to addresses inside it.

use std::time::Instant;

use super::cluster::{Cluster, NODE_IP, eventually};

fn curl_from_sleep(c: &Cluster, url: &str) -> std::process::Output {
    c.kubectl(&["exec", "deploy/sleep-1", "--", "curl", "-s", "-m", "3", url])
}

/// `url` is refused at once (curl's "couldn't connect"), not left to time out.
fn assert_refused(c: &Cluster, url: &str) {
    let started = Instant::now();
    let out = curl_from_sleep(c, url);
    assert_eq!(out.status.code(), Some(7), "curl: couldn't connect to {url}: {out:?}");
    assert!(started.elapsed().as_secs() < 3, "{url} refused in {:?}", started.elapsed());
}

#[test]
fn cluster_ips_route_to_ready_pods() {
    let c = Cluster::start_node(&[]);
    let cluster_ip = c.numbers_api_and_sleep();
    assert!(cluster_ip.starts_with("10.43."), "{cluster_ip}");

    // Pod → ClusterIP → the numbers-api pod.
    let answer = eventually(20, "the ClusterIP to answer", || {
        let out = curl_from_sleep(&c, &format!("http://{cluster_ip}/rng"));
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    });
    assert!(answer.chars().any(|ch| ch.is_ascii_digit()), "{answer}");
    let rules = c.node_cmd("nft").args(["list", "table", "inet", "skiff"]).output().expect("nft runs");
    let rules = String::from_utf8_lossy(&rules.stdout);
    assert!(rules.contains(&format!("{cluster_ip} . tcp . 80 : goto service-")), "{rules}");

    // A port the ClusterIP does not serve is refused, not left to time out.
    assert_refused(&c, &format!("http://{cluster_ip}:81/"));

    // No pods: the rules follow the endpoints, and the Service refuses at once; pods back, traffic back.
    c.ok(&["scale", "deploy/numbers-api", "--replicas=0"]);
    eventually(30, "the Service to have no endpoints in the rules", || {
        let out = c.node_cmd("nft").args(["list", "map", "inet", "skiff", "no-endpoint-services"]).output().ok()?;
        String::from_utf8_lossy(&out.stdout)
            .contains(&format!("{cluster_ip} . tcp . 80 : goto reject-chain"))
            .then_some(())
    });
    assert_refused(&c, &format!("http://{cluster_ip}/rng"));
    c.ok(&["scale", "deploy/numbers-api", "--replicas=1"]);
    eventually(60, "the ClusterIP to answer again", || {
        curl_from_sleep(&c, &format!("http://{cluster_ip}/rng")).status.success().then_some(())
    });
}

/// `--disable-proxy` (k3s's `--disable-kube-proxy`): the node programs no Service rules, while pods and the
/// node's DNS server run as usual.
#[test]
fn a_node_without_its_proxy_still_runs_pods_and_dns() {
    let c = Cluster::start_node(&["--disable-proxy"]);
    let cluster_ip = c.numbers_api_and_sleep();
    // The node's DNS server answers pods at the node's address (the ClusterIP 10.43.0.10 needs a proxy).
    let server = format!("@{NODE_IP}");
    let answer = eventually(20, "the node's DNS to answer", || {
        let out = c.kubectl(&[
            "exec",
            "deploy/sleep-1",
            "--",
            "dig",
            &server,
            "+short",
            "+time=2",
            "+tries=1",
            "numbers-api.default.svc.cluster.local",
        ]);
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        (!text.is_empty()).then_some(text)
    });
    assert_eq!(answer, cluster_ip);
    let table = c.node_cmd("nft").args(["list", "table", "inet", "skiff"]).output().expect("nft runs");
    assert!(!table.status.success(), "no Service rules: {}", String::from_utf8_lossy(&table.stdout));
}
