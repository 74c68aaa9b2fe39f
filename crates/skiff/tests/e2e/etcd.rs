//! Skiff on etcd (`--datastore-endpoint`): one API server survives restarts with its objects and ClusterIPs, and
//! two API servers on one etcd serve one cluster — reads, watches and Service IP allocation agree across them.
//!
//! Each test starts its own etcd (Debian's `/usr/bin/etcd`, or `SKIFF_TEST_ETCD`) on free loopback ports with a
//! temporary data dir; it is killed by pid when the test ends, also when it panics.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use skiff_store::test_util::EtcdServer;

use super::cluster::{Cluster, eventually, example, tail};

/// A throwaway etcd for one test ([`EtcdServer`] from `skiff_store::test_util`); a missing etcd binary fails
/// the test, never skips it.
pub fn start_etcd() -> EtcdServer {
    EtcdServer::start().unwrap_or_else(|e| panic!("{e}"))
}

/// A `kubectl get -w` in the background, killed when dropped; its stdout lines arrive on a channel.
pub struct Watch {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Watch {
    pub fn start(c: &Cluster, args: &[&str]) -> Self {
        let mut child =
            c.kubectl_cmd().args(args).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("kubectl runs");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Self { child, lines }
    }

    /// Waits for a line whose first whitespace-separated fields are `want`'s.
    pub fn expect(&self, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = Vec::new();
        loop {
            match self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line)
                    if line.split_whitespace().zip(want.split_whitespace()).all(|(a, b)| a == b)
                        && line.split_whitespace().count() >= want.split_whitespace().count() =>
                {
                    return;
                }
                Ok(line) => seen.push(line),
                Err(_) => panic!("watch never showed {want:?}; it showed:\n{}", seen.join("\n")),
            }
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const SVC_COLUMNS: &str =
    "custom-columns=N:.metadata.name,IP:.spec.clusterIP,UID:.metadata.uid,RV:.metadata.resourceVersion";

#[test]
fn a_cluster_on_etcd_serves_kubectl_and_survives_restarts() {
    let etcd = start_etcd();
    let mut c = Cluster::start_with(&["--datastore-endpoint", etcd.endpoint()]);
    c.ok(&["apply", "-f", &example("ch03/numbers/api-service.yaml"), "-f", &example("ch03/numbers/api.yaml")]);

    let svc = c.ok(&["get", "svc", "numbers-api", "-o", "jsonpath={.spec.clusterIP}"]);
    assert!(svc.starts_with("10.43."), "clusterIP {svc:?}");
    assert!(c.ok(&["get", "deploy"]).contains("numbers-api"));
    let described = c.ok(&["describe", "svc", "numbers-api"]);
    assert!(
        described.lines().any(|l| l.starts_with("IP:") && l.trim_end().ends_with(&format!(" {svc}"))),
        "{described}"
    );
    assert!(described.contains("app=numbers-api"), "{described}");
    let described = c.ok(&["describe", "deploy", "numbers-api"]);
    assert!(described.contains("kiamol/ch03-numbers-api"), "{described}");

    let watch = Watch::start(
        &c,
        &["get", "deploy", "-w", "-o", "custom-columns=N:.metadata.name,IMG:.spec.template.spec.containers[0].image"],
    );
    watch.expect("numbers-api kiamol/ch03-numbers-api");
    c.ok(&["set", "image", "deploy/numbers-api", "api=kiamol/ch03-numbers-api:v2"]);
    watch.expect("numbers-api kiamol/ch03-numbers-api:v2");
    drop(watch);

    // The data lives in etcd, not in the data dir: it comes back after a clean restart and after SIGKILL.
    let before = c.ok(&["get", "svc", "-o", SVC_COLUMNS]);
    assert!(before.contains("kubernetes") && before.contains("numbers-api"), "{before}");
    let deploy = c.ok(&[
        "get",
        "deploy",
        "numbers-api",
        "-o",
        "jsonpath={.metadata.uid} {.spec.template.spec.containers[0].image}",
    ]);
    c.restart();
    assert_eq!(c.ok(&["get", "svc", "-o", SVC_COLUMNS]), before);
    c.kill();
    c.restart();
    assert_eq!(c.ok(&["get", "svc", "-o", SVC_COLUMNS]), before);
    let after = c.ok(&[
        "get",
        "deploy",
        "numbers-api",
        "-o",
        "jsonpath={.metadata.uid} {.spec.template.spec.containers[0].image}",
    ]);
    assert_eq!(after, deploy);
    assert!(after.ends_with(":v2"), "{after}");

    // The allocation survived too: a new Service gets an address no other Service holds.
    c.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: fresh\nspec:\n  ports:\n  - port: 80\n",
    );
    assert_distinct_ips(&c, 3 + 1);
}

/// Asserts that there are `n` Services (the test's, `kubernetes` and `kube-system/kube-dns`), each with its own
/// ClusterIP.
fn assert_distinct_ips(c: &Cluster, n: usize) {
    let ips = c.ok(&["get", "svc", "-A", "-o", "jsonpath={range .items[*]}{.spec.clusterIP}{\"\\n\"}{end}"]);
    let list: Vec<&str> = ips.lines().collect();
    let distinct: BTreeSet<&str> = list.iter().copied().collect();
    assert_eq!(list.len(), n, "expected {n} Services:\n{ips}");
    assert_eq!(distinct.len(), n, "duplicate ClusterIPs:\n{ips}");
}

#[test]
fn two_api_servers_on_one_etcd_serve_one_cluster() {
    let etcd = start_etcd();
    let endpoint = etcd.endpoint();
    let flags = ["--datastore-endpoint", endpoint, "--token", "shared-e2e-token"];
    let a = Cluster::start_with(&flags);
    let b = Cluster::start_sharing_ca(&a, &flags);

    // One kubeconfig (A's CA and token) works against both servers.
    let raw_b = a.ok(&["--server", &b.server_url(), "get", "--raw", "/readyz"]);
    assert_eq!(raw_b.trim(), "ok");

    // A write through A is read through B.
    a.ok(&["create", "configmap", "from-a", "--from-literal=k=1"]);
    assert_eq!(b.ok(&["get", "cm", "from-a", "-o", "jsonpath={.data.k}"]), "1");
    let uid_a = a.ok(&["get", "cm", "from-a", "-o", "jsonpath={.metadata.uid}"]);
    assert_eq!(b.ok(&["get", "cm", "from-a", "-o", "jsonpath={.metadata.uid}"]), uid_a);

    // A watch on B follows create, patch and delete made through A.
    // The table's columns are EVENT NAME DATA (the number of keys) AGE.
    let watch = Watch::start(&b, &["get", "cm", "-w", "--output-watch-events"]);
    watch.expect("ADDED from-a 1");
    a.ok(&["create", "configmap", "watched", "--from-literal=k=1"]);
    watch.expect("ADDED watched 1");
    a.ok(&["patch", "cm", "watched", "-p", r#"{"data":{"k2":"2"}}"#]);
    watch.expect("MODIFIED watched 2");
    a.ok(&["delete", "cm", "watched"]);
    watch.expect("DELETED watched 2");
    drop(watch);

    // Concurrent Service creates through both servers never hand out one ClusterIP twice.
    const EACH: usize = 30;
    let started = Instant::now();
    std::thread::scope(|s| {
        for (server, tag) in [(&a, "a"), (&b, "b")] {
            for half in 0..2 {
                s.spawn(move || {
                    let docs: Vec<String> = (half * EACH / 2..(half + 1) * EACH / 2)
                        .map(|i| {
                            format!(
                                "apiVersion: v1\nkind: Service\nmetadata:\n  name: svc-{tag}-{i}\nspec:\n  ports:\n  - port: 80\n"
                            )
                        })
                        .collect();
                    // One Service per kubectl call, so the two servers really interleave.
                    for doc in docs {
                        let out = server.kubectl_stdin(&["create", "-f", "-"], &doc);
                        assert!(
                            out.status.success(),
                            "create through {tag} failed: {}\nserver log:\n{}",
                            String::from_utf8_lossy(&out.stderr),
                            tail(&server.log(), 30)
                        );
                    }
                });
            }
        }
    });
    eprintln!("{} Service creates through two servers took {:?}", 2 * EACH, started.elapsed());
    // 60 new Services plus `kubernetes`, seen the same through both servers.
    assert_distinct_ips(&a, 2 * EACH + 2);
    assert_distinct_ips(&b, 2 * EACH + 2);
    let cols = ["get", "svc", "-o", "custom-columns=N:.metadata.name,IP:.spec.clusterIP", "--sort-by=.metadata.name"];
    assert_eq!(a.ok(&cols), b.ok(&cols));
}

/// The controllers' holder of `kube-system/skiff-controllers`, as `kubectl` reads it through `c`.
fn controllers_leader(c: &Cluster) -> String {
    c.ok(&["get", "lease", "-n", "kube-system", "skiff-controllers", "-o", "jsonpath={.spec.holderIdentity}"])
}

#[test]
fn two_servers_run_the_controllers_once_and_the_survivor_takes_over() {
    let etcd = start_etcd();
    let flags = ["--datastore-endpoint", etcd.endpoint(), "--token", "shared-e2e-token"];
    let a = Cluster::start_with(&flags);
    let b = Cluster::start_sharing_ca(&a, &flags);
    let identity = |c: &Cluster| c.data_dir().display().to_string();
    let leader = eventually(20, "a leader", || Some(controllers_leader(&a)).filter(|l| !l.is_empty()));
    assert!(leader.ends_with(&identity(&a)) || leader.ends_with(&identity(&b)), "{leader}");
    // It stays with one server: the other keeps trying and does not take it while it is renewed.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(controllers_leader(&b), leader);

    // The controllers work (a Deployment's ReplicaSet makes its pods) wherever they run.
    a.ok(&["create", "deployment", "first", "--image=kiamol/ch03-sleep", "--replicas=2"]);
    eventually(30, "first's two pods", || {
        (b.ok(&["get", "pods", "-l", "app=first", "-o", "name"]).lines().count() == 2).then_some(())
    });

    // Stop the leader with SIGKILL (no chance to give the Lease up): the survivor takes over once it expires.
    let (mut dead, survivor) = if leader.ends_with(&identity(&a)) { (a, b) } else { (b, a) };
    let survivor_identity = identity(&survivor);
    let killed = Instant::now();
    dead.kill();
    let new = eventually(40, "the survivor to lead", || {
        Some(controllers_leader(&survivor)).filter(|l| l.ends_with(&survivor_identity))
    });
    assert!(new.ends_with(&survivor_identity));
    survivor.ok(&["create", "deployment", "second", "--image=kiamol/ch03-sleep", "--replicas=2"]);
    eventually(30, "second's two pods", || {
        (survivor.ok(&["get", "pods", "-l", "app=second", "-o", "name"]).lines().count() == 2).then_some(())
    });
    let took = killed.elapsed();
    assert!(took < Duration::from_secs(30), "took over after {took:?} (the Lease lasts 15 s)");
    eprintln!("the surviving server led the controllers {took:?} after the leader was killed");
}
