//! State survives a restart (clean or SIGKILL) with the same data dir: objects, ClusterIPs and NodePorts.

use super::cluster::{Cluster, example};

#[test]
fn objects_and_allocations_survive_restarts() {
    let mut c = Cluster::start();
    c.ok(&["apply", "-f", &example("ch03/numbers/api-service.yaml"), "-f", &example("ch03/numbers/web-service.yaml")]);
    c.ok(&["apply", "-f", &example("ch03/numbers/api.yaml")]);
    let before = c.ok(&[
        "get",
        "svc",
        "-o",
        "custom-columns=N:.metadata.name,IP:.spec.clusterIP,NP:.spec.ports[*].nodePort,UID:.metadata.uid",
    ]);
    c.restart();
    let after = c.ok(&[
        "get",
        "svc",
        "-o",
        "custom-columns=N:.metadata.name,IP:.spec.clusterIP,NP:.spec.ports[*].nodePort,UID:.metadata.uid",
    ]);
    assert_eq!(before, after);
    assert!(c.ok(&["get", "deploy"]).contains("numbers-api"));

    // SIGKILL loses no acknowledged write.
    for i in 0..20 {
        c.ok(&["create", "configmap", &format!("cm-{i}"), "--from-literal=i=1"]);
    }
    c.kill();
    c.restart();
    let cms = c.ok(&["get", "cm", "-o", "name"]);
    for i in 0..20 {
        assert!(cms.contains(&format!("configmap/cm-{i}\n")), "cm-{i} lost:\n{cms}");
    }
    // Allocations were repaired, not duplicated: a new Service gets a fresh IP.
    c.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: fresh\nspec:\n  ports:\n  - port: 80\n",
    );
    let ips = c.ok(&["get", "svc", "-o", "jsonpath={range .items[*]}{.spec.clusterIP}{\"\\n\"}{end}"]);
    let mut list: Vec<&str> = ips.lines().collect();
    let n = list.len();
    list.sort();
    list.dedup();
    assert_eq!(list.len(), n, "duplicate ClusterIPs: {ips}");
}

#[test]
fn the_kubernetes_service_comes_back_after_delete_all() {
    let c = Cluster::start();
    c.ok(&["apply", "-f", &example("ch03/sleep/sleep2-service.yaml")]);
    c.ok(&["delete", "svc", "--all"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let out = c.kubectl(&["get", "svc", "kubernetes", "-o", "jsonpath={.spec.clusterIP}"]);
        if out.status.success() {
            assert_eq!(String::from_utf8_lossy(&out.stdout), "10.43.0.1");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "kubernetes service did not come back");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(!c.kubectl(&["get", "svc", "sleep-2"]).status.success());
    // Its Endpoints come back too (the endpoints controller removes them when the Service goes).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let out = c.kubectl(&["get", "endpoints", "kubernetes"]);
        if String::from_utf8_lossy(&out.stdout).contains(&format!("127.0.0.1:{}", c.port)) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "kubernetes endpoints did not come back");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let ns = c.ok(&["get", "ns", "-o", "name"]);
    for n in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(ns.contains(&format!("namespace/{n}")), "{ns}");
    }
}
