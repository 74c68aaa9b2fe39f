//! Cluster DNS through the real binary, asked from inside a pod with `nslookup` (the seeds' exercises) and
//! `dig`: Service names short and fully qualified, `kube-dns` in `kube-system` with its endpoint
//! visible through kubectl, a new Service resolving at once, ExternalName as a CNAME (its target is never
//! contacted: the node has no upstream resolvers), a headless Service following its pods, SRV and PTR. The node
//! runs in a network namespace of the test's own.

use super::cluster::{Cluster, NODE_IP, eventually};

fn nslookup(c: &Cluster, args: &str) -> String {
    let out = c.kubectl(&["exec", "deploy/sleep-1", "--", "sh", "-c", &format!("nslookup {args}")]);
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// `dig` in the sleep pod, at the cluster DNS Service.
fn dig(c: &Cluster, args: &[&str]) -> String {
    let mut all = vec!["exec", "deploy/sleep-1", "--", "dig", "@10.43.0.10", "+time=3", "+tries=1"];
    all.extend(args);
    String::from_utf8_lossy(&c.kubectl(&all).stdout).into_owned()
}

#[test]
fn pods_find_services_by_name() {
    let c = Cluster::start_node(&[]);
    let cluster_ip = c.numbers_api_and_sleep();

    // The DNS Service, as upstream names it, with this node's endpoint.
    let dns_ip = c.ok(&["get", "svc", "kube-dns", "-n", "kube-system", "-o", "jsonpath={.spec.clusterIP}"]);
    assert_eq!(dns_ip, "10.43.0.10");
    let endpoint = eventually(20, "the node's DNS endpoint", || {
        let out = c.ok(&[
            "get",
            "endpointslices",
            "-n",
            "kube-system",
            "-l",
            "kubernetes.io/service-name=kube-dns",
            "-o",
            "jsonpath={.items[0].endpoints[0].addresses[0]} {.items[0].endpoints[0].nodeName}",
        ]);
        (!out.trim().is_empty()).then_some(out)
    });
    assert_eq!(endpoint.trim(), format!("{NODE_IP} node-1"));

    // The seeds' lookups: the short name (through the pod's search path), the FQDN, kube-dns itself.
    let short = eventually(20, "numbers-api to resolve", || {
        let answer = nslookup(&c, "numbers-api");
        answer.contains(&format!("Address: {cluster_ip}")).then_some(answer)
    });
    assert!(short.contains("numbers-api.default.svc.cluster.local"), "{short}");
    let fqdn = nslookup(&c, "numbers-api.default.svc.cluster.local");
    assert!(fqdn.contains(&format!("Address: {cluster_ip}")), "{fqdn}");
    let kube_dns = nslookup(&c, "kube-dns.kube-system.svc.cluster.local");
    assert!(kube_dns.contains("Address: 10.43.0.10"), "{kube_dns}");
    // (The bare name's last try goes upstream, which this node has none of: only the cluster name is certain.)
    let missing = nslookup(&c, "no-such-service.default.svc.cluster.local");
    assert!(missing.contains("NXDOMAIN"), "{missing}");
    // Conformance "DNS for the cluster": the API's own Service by a partial name.
    let api = nslookup(&c, "kubernetes.default");
    assert!(api.contains("Address: 10.43.0.1"), "{api}");

    // A new Service resolves as soon as it exists; a deleted one stops.
    c.ok(&["create", "service", "clusterip", "fresh", "--tcp=8080:8080"]);
    let fresh_ip = c.ok(&["get", "svc", "fresh", "-o", "jsonpath={.spec.clusterIP}"]);
    let answer = dig(&c, &["+short", "fresh.default.svc.cluster.local"]);
    assert_eq!(answer.trim(), fresh_ip, "resolved right after the create");
    c.ok(&["delete", "service", "fresh"]);
    eventually(5, "the deleted Service to stop resolving", || {
        dig(&c, &["fresh.default.svc.cluster.local"]).contains("status: NXDOMAIN").then_some(())
    });

    // SRV for the named port, PTR for the ClusterIP.
    let srv = dig(&c, &["+short", "_http._tcp.kube-dns.kube-system.svc.cluster.local", "SRV"]);
    assert!(srv.is_empty(), "kube-dns has no port named http: {srv}");
    let srv = dig(&c, &["+short", "_dns-tcp._tcp.kube-dns.kube-system.svc.cluster.local", "SRV"]);
    assert_eq!(srv.trim(), "0 100 53 kube-dns.kube-system.svc.cluster.local.");
    let ptr = dig(&c, &["+short", "-x", &cluster_ip]);
    assert_eq!(ptr.trim(), "numbers-api.default.svc.cluster.local.");

    // ExternalName: the CNAME (the target is not chased anywhere: this node has no upstream).
    c.ok(&["create", "service", "externalname", "legacy", "--external-name", "api.example.test"]);
    let cname = eventually(5, "the ExternalName CNAME", || {
        let answer = nslookup(&c, "-type=CNAME legacy.default.svc.cluster.local");
        answer.contains("canonical name = api.example.test").then_some(answer)
    });
    assert!(cname.contains("legacy.default.svc.cluster.local"), "{cname}");

    // A headless Service answers with its ready pods, and NXDOMAIN once there are none.
    let headless = "apiVersion: v1\nkind: Service\nmetadata:\n  name: numbers-headless\nspec:\n  clusterIP: None\n  \
                    selector:\n    app: numbers-api\n  ports:\n  - name: http\n    port: 80\n";
    let manifest = tempfile::NamedTempFile::new().expect("a manifest file");
    std::fs::write(manifest.path(), headless).expect("write the manifest");
    c.ok(&["apply", "-f", &manifest.path().to_string_lossy()]);
    let pod_ip = c.ok(&["get", "pod", "-l", "app=numbers-api", "-o", "jsonpath={.items[0].status.podIP}"]);
    eventually(10, "the headless Service to resolve to the pod", || {
        let answer = dig(&c, &["+short", "numbers-headless.default.svc.cluster.local"]);
        (answer.trim() == pod_ip).then_some(())
    });
    // A pod with a hostname and the headless Service as its subdomain has its own name under the Service.
    let named = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: api-0\n  labels:\n    app: numbers-api\nspec:\n  \
                 hostname: api-0\n  subdomain: numbers-headless\n  containers:\n  - name: api\n    image: \
                 kiamol/ch03-numbers-api\n";
    std::fs::write(manifest.path(), named).expect("write the manifest");
    c.ok(&["apply", "-f", &manifest.path().to_string_lossy()]);
    c.ok(&["wait", "--for=condition=Ready", "pod/api-0", "--timeout=60s"]);
    let named_ip = c.ok(&["get", "pod", "api-0", "-o", "jsonpath={.status.podIP}"]);
    eventually(10, "api-0.numbers-headless to resolve to its pod", || {
        let answer = dig(&c, &["+short", "api-0.numbers-headless.default.svc.cluster.local"]);
        (answer.trim() == named_ip).then_some(())
    });
    let srv = dig(&c, &["+short", "_http._tcp.numbers-headless.default.svc.cluster.local", "SRV"]);
    assert!(srv.contains("api-0.numbers-headless.default.svc.cluster.local."), "SRV per endpoint: {srv}");
    c.ok(&["delete", "pod", "api-0", "--wait=false"]);

    // The server's metrics, on the DNS Service's metrics port of this node.
    let metrics = c.node_curl(&format!("http://{NODE_IP}:9153/metrics")).unwrap_or_default();
    assert!(metrics.contains("coredns_dns_requests_total{type=\"A\"}"), "{metrics}");
    assert!(metrics.contains("coredns_dns_responses_total{rcode=\"NXDOMAIN\"}"), "{metrics}");

    c.ok(&["scale", "deploy/numbers-api", "--replicas=0"]);
    eventually(30, "the headless Service to have no address", || {
        dig(&c, &["numbers-headless.default.svc.cluster.local"]).contains("status: NXDOMAIN").then_some(())
    });
}
