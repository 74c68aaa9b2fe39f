//! Cluster DNS through the real binary, asked from inside a pod with `nslookup` (the seeds' exercises) and
//! `dig`: Service names short and fully qualified, `kube-dns` in `kube-system` with its endpoint
//! visible through kubectl, a new Service resolving at once, ExternalName as a CNAME (its target is never
//! contacted: the node has no upstream resolvers), a headless Service following its pods, SRV and PTR. The node
//! runs in a network namespace of the test's own.

use super::cluster::{Cluster, NODE_IP, eventually, example};

fn nslookup(c: &Cluster, args: &str) -> String {
    in_pod(c, &format!("nslookup {args}"))
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
    // The answer cache's size and the allocator's count of the live heap, read when scraped.
    let value = |name: &str| -> f64 {
        let line = metrics.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_default();
        line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0.0)
    };
    assert!(value("coredns_cache_entries") >= 1.0, "the repeated questions above were kept: {metrics}");
    assert!(value("skiff_allocator_allocated_bytes") > 1e6, "{metrics}");

    c.ok(&["scale", "deploy/numbers-api", "--replicas=0"]);
    eventually(30, "the headless Service to have no address", || {
        dig(&c, &["numbers-headless.default.svc.cluster.local"]).contains("status: NXDOMAIN").then_some(())
    });
}

/// Runs `script` with `sh -c` in the sleep pod; stdout and stderr together.
fn in_pod(c: &Cluster, script: &str) -> String {
    c.sh_in("deploy/sleep-1", script).1
}

/// A selector-less headless Service `many` with one hand-written EndpointSlice of `n` Ready addresses (documentation
/// addresses: only their DNS records are ever looked at).
fn many_endpoints(n: usize) -> String {
    let endpoints: String =
        (1..=n).map(|i| format!("- addresses: [\"192.0.2.{i}\"]\n  conditions: {{ready: true}}\n")).collect();
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: many\nspec:\n  clusterIP: None\n  ports:\n  - name: http\n    \
         port: 80\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: many-1\n  labels:\n    \
         kubernetes.io/service-name: many\naddressType: IPv4\nports:\n- name: http\n  port: 80\nendpoints:\n{endpoints}"
    )
}

/// The upstream DNS conformance scenarios not covered above (sig-network `dns.go`: /etc/hosts, ExternalName
/// changes, partially qualified names, dnsPolicy None), the seed's selector-less Service from another namespace,
/// a headless Service following readiness (and one publishing unready addresses), and TCP after truncation.
#[test]
fn conformance_scenarios() {
    let c = Cluster::start_node(&[]);
    c.numbers_api_and_sleep();

    // DNS 1: the pod's /etc/hosts names it, as the kubelet writes it.
    let pod =
        c.ok(&["get", "pod", "-l", "app=sleep-1", "-o", "jsonpath={.items[0].metadata.name} {.items[0].status.podIP}"]);
    let (name, ip) = pod.split_once(' ').expect("name and IP");
    let hosts = in_pod(&c, "cat /etc/hosts");
    assert!(hosts.contains(&format!("{ip}\t{name}\n")) && hosts.contains("127.0.0.1\tlocalhost"), "{hosts}");

    // The seed's listing 3.6, in another namespace: a selector-less Service with hand-written Endpoints resolves to
    // its ClusterIP (by a partially qualified name through the search path: DNS 7), and kubectl shows the endpoint.
    c.ok(&["create", "namespace", "other"]);
    c.ok(&["apply", "-n", "other", "-f", &example("ch03/numbers-services/api-service-headless.yaml")]);
    let other_ip = c.ok(&["get", "svc", "numbers-api", "-n", "other", "-o", "jsonpath={.spec.clusterIP}"]);
    let endpoint =
        c.ok(&["get", "endpoints", "numbers-api", "-n", "other", "-o", "jsonpath={.subsets[0].addresses[0].ip}"]);
    assert_eq!(endpoint, "192.168.123.234");
    let pqdn = eventually(10, "numbers-api.other to resolve", || {
        let answer = nslookup(&c, "numbers-api.other");
        answer.contains(&format!("Address: {other_ip}")).then_some(answer)
    });
    assert!(pqdn.contains("numbers-api.other.svc.cluster.local"), "{pqdn}");
    let svc = in_pod(&c, "dig +search +short numbers-api.other.svc");
    assert_eq!(svc.trim(), other_ip, "the PQDN with svc");
    let srv = in_pod(&c, "dig +search +short _dns._udp.kube-dns.kube-system.svc SRV");
    assert_eq!(srv.trim(), "0 100 53 kube-dns.kube-system.svc.cluster.local.", "SRV by a PQDN");

    // DNS 2: an ExternalName is a CNAME that follows its externalName, and an A record once it is a ClusterIP
    // Service. (The targets are never looked up anywhere: the node has no upstream resolvers.)
    c.ok(&["create", "namespace", "alias"]);
    c.ok(&["apply", "-n", "alias", "-f", &example("ch03/numbers-services/api-service-externalName.yaml")]);
    let cname = |c: &Cluster| dig(c, &["+short", "numbers-api.alias.svc.cluster.local", "CNAME"]);
    eventually(10, "the seed's CNAME", || (cname(&c).trim() == "raw.githubusercontent.com.").then_some(()));
    c.ok(&["patch", "svc", "numbers-api", "-n", "alias", "-p", r#"{"spec":{"externalName":"api.example.test"}}"#]);
    eventually(10, "the CNAME to follow", || (cname(&c).trim() == "api.example.test.").then_some(()));
    c.ok(&[
        "patch",
        "svc",
        "numbers-api",
        "-n",
        "alias",
        "--type=merge",
        "-p",
        r#"{"spec":{"type":"ClusterIP","externalName":null,"ports":[{"port":80}]}}"#,
    ]);
    let alias_ip = c.ok(&["get", "svc", "numbers-api", "-n", "alias", "-o", "jsonpath={.spec.clusterIP}"]);
    assert!(!alias_ip.is_empty(), "a ClusterIP was allocated on the switch");
    eventually(10, "an A record after the switch", || {
        (dig(&c, &["+short", "numbers-api.alias.svc.cluster.local"]).trim() == alias_ip).then_some(())
    });

    // DNS 8: dnsPolicy None takes the pod's dnsConfig whole.
    let custom = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: custom-dns\nspec:\n  dnsPolicy: None\n  dnsConfig:\n    \
                  nameservers: [\"10.43.0.10\"]\n    searches: [\"resolv.conf.local\"]\n    options:\n    - name: ndots\n      \
                  value: \"2\"\n  containers:\n  - name: sleep\n    image: kiamol/ch03-sleep\n";
    c.ok_stdin(&["apply", "-f", "-"], custom);
    c.ok(&["wait", "--for=condition=Ready", "pod/custom-dns", "--timeout=60s"]);
    let resolv = c.ok(&["exec", "custom-dns", "--", "cat", "/etc/resolv.conf"]);
    assert!(resolv.contains("nameserver 10.43.0.10"), "{resolv}");
    assert!(resolv.contains("search resolv.conf.local"), "{resolv}");
    assert!(resolv.contains("options ndots:2"), "{resolv}");
    assert!(!resolv.contains("svc.cluster.local"), "none of the cluster's search path: {resolv}");
    let out = c.kubectl(&["exec", "custom-dns", "--", "nslookup", "numbers-api.default.svc.cluster.local"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("Address: 10.43."), "cluster DNS through the dnsConfig");

    // A headless Service follows its pod's readiness; one with publishNotReadyAddresses has it all along.
    let flip = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: flip\n  labels:\n    app: flip\nspec:\n  containers:\n  - \
                name: sleep\n    image: kiamol/ch03-sleep\n    readinessProbe:\n      exec:\n        command: [\"cat\", \
                \"/tmp/ready\"]\n      periodSeconds: 1\n      failureThreshold: 1\n---\napiVersion: v1\nkind: \
                Service\nmetadata:\n  name: flip\nspec:\n  clusterIP: None\n  selector:\n    app: flip\n  ports:\n  - \
                port: 80\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: flip-all\nspec:\n  clusterIP: None\n  \
                publishNotReadyAddresses: true\n  selector:\n    app: flip\n  ports:\n  - port: 80\n";
    c.ok_stdin(&["apply", "-f", "-"], flip);
    let flip_ip = eventually(60, "the flip pod to have an IP", || {
        let ip = c.ok(&["get", "pod", "flip", "-o", "jsonpath={.status.podIP}"]);
        (!ip.is_empty()).then_some(ip)
    });
    let answer = |name: &str| dig(&c, &["+short", &format!("{name}.default.svc.cluster.local")]).trim().to_string();
    eventually(20, "flip-all to publish the unready pod", || (answer("flip-all") == flip_ip).then_some(()));
    assert!(dig(&c, &["flip.default.svc.cluster.local"]).contains("status: NXDOMAIN"), "no ready endpoint yet");
    c.ok(&["exec", "flip", "--", "touch", "/tmp/ready"]);
    eventually(20, "flip to resolve once Ready", || (answer("flip") == flip_ip).then_some(()));
    c.ok(&["exec", "flip", "--", "rm", "/tmp/ready"]);
    eventually(20, "flip to drop the unready pod", || {
        dig(&c, &["flip.default.svc.cluster.local"]).contains("status: NXDOMAIN").then_some(())
    });
    assert_eq!(answer("flip-all"), flip_ip, "still published while unready");

    // An answer past 512 bytes is truncated over UDP, and dig asks again over TCP (through the Service's TCP port).
    c.ok_stdin(&["apply", "-f", "-"], &many_endpoints(40));
    eventually(10, "the 40 endpoints to resolve", || {
        let all = dig(&c, &["+noedns", "+short", "many.default.svc.cluster.local"]);
        (all.lines().count() == 40).then_some(())
    });
    let udp_only = dig(&c, &["+noedns", "+ignore", "many.default.svc.cluster.local"]);
    assert!(udp_only.contains(" tc "), "truncated over UDP: {udp_only}");
}
