//! The ruleset in a real kernel: a throw-away node network namespace with a bridge and two pod namespaces
//! running tiny TCP servers; the proxy's table is applied there with `nft -f -`, and connections to ClusterIPs
//! reach the pods, spread over both, from the node and from a pod (hairpin included); an unserved port and a
//! Service without endpoints are refused at once. Traffic only goes to addresses inside these namespaces, and
//! every namespace goes away on drop, also when a test fails.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sched::{CloneFlags, setns};
use skiff_proxy::model::{Endpoint, Protocol, ServicePort};
use skiff_proxy::ruleset::{Container, Data, ElementChange, Key, Ruleset, RulesetConfig};
use skiff_proxy::{conntrack, inspect, netlink, nft};

/// A network namespace, deleted on drop.
struct Netns(String);

impl Netns {
    fn new(role: &str) -> Netns {
        let name = format!("skp-{role}-{}", std::process::id() % 100_000);
        ip(&["netns", "add", &name]);
        Netns(name)
    }

    fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", &self.0];
        all.extend_from_slice(args);
        ip(&all);
    }

    /// Runs `f` on a thread that has entered this namespace (processes it starts are in it too).
    fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.0);
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).expect("the namespace file");
            setns(ns.as_fd(), CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
        .join()
        .expect("the namespace thread")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip runs");
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// The node (bridge 10.42.0.1/24, forwarding and bridge netfilter on), two pods, 10.42.0.2 and 10.42.0.3,
/// each answering TCP on 8080 with its name, and a client outside the cluster: 192.168.77.2 on a veth to the
/// node's 192.168.77.1, routing the load balancer address 192.168.200.100 through the node. On 8081 the pods
/// answer with their name and the client address they see; on UDP 8080, every datagram with their name.
struct Node {
    node: Netns,
    pods: Vec<Netns>,
    outside: Netns,
}

const POD_IPS: [&str; 2] = ["10.42.0.2", "10.42.0.3"];

impl Node {
    /// `tag` keeps the namespaces of tests running side by side apart.
    fn new(tag: &str) -> Node {
        let node = Netns::new(&format!("{tag}node"));
        node.ip(&["link", "set", "lo", "up"]);
        node.ip(&["link", "add", "br0", "type", "bridge"]);
        node.ip(&["addr", "add", "10.42.0.1/24", "dev", "br0"]);
        node.ip(&["link", "set", "br0", "up"]);
        // Node-originated traffic to a ClusterIP needs a route to leave by before DNAT rewrites it.
        node.ip(&["route", "add", "default", "dev", "br0"]);
        node.run(|| {
            std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").expect("ip_forward");
            // Pod-to-pod replies cross the bridge; the node's conntrack must see them to undo the DNAT.
            std::fs::write("/proc/sys/net/bridge/bridge-nf-call-iptables", "1").expect("bridge-nf-call-iptables");
            // 127.0.0.1 NodePorts and LoadBalancer ports: a DNATed packet from localhost may leave lo.
            std::fs::write("/proc/sys/net/ipv4/conf/all/route_localnet", "1").expect("route_localnet");
        });
        let outside = Netns::new(&format!("{tag}out"));
        let uplink = format!("skpo{tag}-{}", std::process::id() % 10000);
        node.ip(&["link", "add", &uplink, "type", "veth", "peer", "name", "eth0", "netns", &outside.0]);
        node.ip(&["addr", "add", "192.168.77.1/24", "dev", &uplink]);
        node.ip(&["link", "set", &uplink, "up"]);
        outside.ip(&["link", "set", "lo", "up"]);
        outside.ip(&["addr", "add", "192.168.77.2/24", "dev", "eth0"]);
        outside.ip(&["link", "set", "eth0", "up"]);
        outside.ip(&["route", "add", "192.168.200.100/32", "via", "192.168.77.1"]);
        let mut pods = Vec::new();
        for (i, pod_ip) in POD_IPS.iter().enumerate() {
            let pod = Netns::new(&format!("{tag}pod{i}"));
            let veth = format!("skpv{tag}{i}-{}", std::process::id() % 10000);
            node.ip(&["link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &pod.0]);
            node.ip(&["link", "set", &veth, "master", "br0", "up"]);
            // As the CNI bridge plugin's hairpinMode does: a pod reaching itself through its Service.
            node.ip(&["link", "set", &veth, "type", "bridge_slave", "hairpin", "on"]);
            pod.ip(&["link", "set", "lo", "up"]);
            pod.ip(&["addr", "add", &format!("{pod_ip}/24"), "dev", "eth0"]);
            pod.ip(&["link", "set", "eth0", "up"]);
            pod.ip(&["route", "add", "default", "via", "10.42.0.1"]);
            let addr: SocketAddr = format!("{pod_ip}:8080").parse().expect("an address");
            let name = format!("pod{i}");
            let listener = pod.run(move || TcpListener::bind(addr).expect("bind in the pod"));
            let client_ip: SocketAddr = format!("{pod_ip}:8081").parse().expect("an address");
            let client_ip = pod.run(move || TcpListener::bind(client_ip).expect("bind in the pod"));
            let label = name.clone();
            let udp_addr: SocketAddr = format!("{pod_ip}:8080").parse().expect("an address");
            let udp = pod.run(move || UdpSocket::bind(udp_addr).expect("bind UDP in the pod"));
            let udp_name = name.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 64];
                while let Ok((_, from)) = udp.recv_from(&mut buf) {
                    let _ = udp.send_to(udp_name.as_bytes(), from);
                }
            });
            std::thread::spawn(move || {
                for mut conn in listener.incoming().flatten() {
                    let _ = conn.write_all(name.as_bytes());
                }
            });
            // As agnhost netexec's /clientip: who the pod sees as the client.
            std::thread::spawn(move || {
                for mut conn in client_ip.incoming().flatten() {
                    let peer = conn.peer_addr().map(|a| a.ip().to_string()).unwrap_or_default();
                    let _ = conn.write_all(format!("{label} {peer}").as_bytes());
                }
            });
            pods.push(pod);
        }
        Node { node, pods, outside }
    }
}

fn service(name: &str, cluster_ip: &str, port: u16, endpoints: &[&str]) -> ServicePort {
    ServicePort {
        namespace: "default".into(),
        service: name.into(),
        cluster_ips: vec![cluster_ip.parse().expect("an IP")],
        port,
        endpoints: endpoints
            .iter()
            .map(|ip| Endpoint { ip: ip.parse::<IpAddr>().expect("an IP"), port: 8080, local: true })
            .collect(),
        ..Default::default()
    }
}

fn config() -> RulesetConfig {
    RulesetConfig {
        table: "skiff-test".into(),
        cluster_cidr: "10.42.0.0/16".parse().expect("a CIDR"),
        service_cidr: "10.43.0.0/16".parse().expect("a CIDR"),
    }
}

/// Connects (from `source`, when given) and reads the answer: the pod's name, or the connect error's kind.
fn fetch(to: &str, source: Option<&str>) -> Result<String, ErrorKind> {
    let to: SocketAddr = to.parse().expect("an address");
    let socket = match source {
        Some(ip) => {
            let s = bound::Socket::bound(ip);
            s.connect(to).map(|()| s.into_std())
        }
        None => TcpStream::connect_timeout(&to, Duration::from_secs(3)),
    };
    let mut stream = socket.map_err(|e| e.kind())?;
    stream.set_read_timeout(Some(Duration::from_secs(3))).map_err(|e| e.kind())?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).map_err(|e| e.kind())?;
    Ok(answer)
}

/// Binding a client socket before connecting, with nix (std has no bind-then-connect for TCP clients).
mod bound {
    use std::net::{SocketAddr, TcpStream};
    use std::os::fd::OwnedFd;

    use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrIn, bind, connect, socket};

    pub struct Socket(OwnedFd);

    impl Socket {
        pub fn bound(ip: &str) -> Socket {
            let fd = socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).expect("a socket");
            let addr: std::net::SocketAddrV4 = format!("{ip}:0").parse().expect("an address");
            bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &SockaddrIn::from(addr)).expect("bind");
            Socket(fd)
        }

        pub fn connect(&self, to: SocketAddr) -> std::io::Result<()> {
            let SocketAddr::V4(v4) = to else { unreachable!("IPv4 only") };
            connect(std::os::fd::AsRawFd::as_raw_fd(&self.0), &SockaddrIn::from(v4)).map_err(std::io::Error::from)
        }

        pub fn into_std(self) -> TcpStream {
            TcpStream::from(self.0)
        }
    }
}

#[test]
fn cluster_ips_reach_ready_pods_and_refuse_fast_otherwise() {
    let node = Node::new("c");
    let services = vec![
        service("web", "10.43.0.10", 80, &POD_IPS),
        service("empty", "10.43.0.11", 80, &[]),
        service("only-pod1", "10.43.0.12", 80, &[POD_IPS[1]]),
    ];
    let script = Ruleset::new(&config(), services).full_script();
    node.node.run(move || nft::apply(&script)).expect("the ruleset applies");

    // From the node: both pods answer the ClusterIP, randomly.
    let spread = node.node.run(|| {
        let mut seen = BTreeMap::new();
        for _ in 0..40 {
            *seen.entry(fetch("10.43.0.10:80", None)).or_insert(0) += 1;
        }
        seen
    });
    assert_eq!(spread.len(), 2, "both endpoints answer: {spread:?}");
    assert!(spread.values().all(|n| *n >= 5), "an even-ish spread over 40 connections: {spread:?}");
    assert!(spread.keys().all(Result::is_ok), "{spread:?}");

    // No endpoints, or a port the ClusterIP does not serve: refused at once, not a timeout.
    let refusals = node.node.run(|| {
        let started = Instant::now();
        (fetch("10.43.0.11:80", None), fetch("10.43.0.10:81", None), started.elapsed())
    });
    assert_eq!(refusals.0, Err(ErrorKind::ConnectionRefused), "a Service without endpoints");
    assert_eq!(refusals.1, Err(ErrorKind::ConnectionRefused), "an unserved port");
    assert!(refusals.2 < Duration::from_secs(1), "refused in {:?}", refusals.2);

    // From a pod: to the other pod through the Service, and to itself (hairpin, masqueraded).
    let from_pod0 = node.pods[0].run(|| {
        (fetch("10.43.0.12:80", Some("10.42.0.2")), {
            let mut hairpin = Vec::new();
            for _ in 0..20 {
                hairpin.push(fetch("10.43.0.10:80", Some("10.42.0.2")));
            }
            hairpin
        })
    });
    assert_eq!(from_pod0.0, Ok("pod1".to_string()));
    assert!(from_pod0.1.contains(&Ok("pod0".to_string())), "hairpin reaches the pod itself: {:?}", from_pod0.1);
    assert!(from_pod0.1.iter().all(Result::is_ok), "{:?}", from_pod0.1);

    // Replacing the table is one transaction; deleting it leaves the Service unreachable.
    node.node.run(|| nft::delete_table("skiff-test")).expect("the table goes");
    let after = node.node.run(|| fetch("10.43.0.12:80", None));
    assert!(after.is_err(), "no rules, no Service: {after:?}");
}

#[test]
fn node_ports_load_balancers_and_external_ips_from_outside_and_from_localhost() {
    let node = Node::new("n");
    let mut node_port = service("nodeport", "10.43.0.20", 80, &POD_IPS);
    node_port.node_port = Some(30080);
    let mut balanced = service("balanced", "10.43.0.21", 8080, &[POD_IPS[0]]);
    balanced.node_port = Some(30081);
    balanced.external_ips = vec!["192.168.200.100".parse().expect("an IP")];
    balanced.localhost = true;
    let mut empty = service("empty", "10.43.0.22", 80, &[]);
    empty.node_port = Some(30082);
    let script = Ruleset::new(&config(), vec![node_port, balanced, empty]).full_script();
    node.node.run(move || nft::apply(&script)).expect("the ruleset applies");

    // From outside: the NodePort on the node's address (both pods), the load balancer's address and NodePort.
    let from_outside = node.outside.run(|| {
        let spread: std::collections::BTreeSet<_> = (0..30).map(|_| fetch("192.168.77.1:30080", None)).collect();
        let started = Instant::now();
        let refused = fetch("192.168.77.1:30082", None);
        (spread, fetch("192.168.200.100:8080", None), fetch("192.168.77.1:30081", None), refused, started.elapsed())
    });
    let both: std::collections::BTreeSet<_> = [Ok("pod0".to_string()), Ok("pod1".to_string())].into();
    assert_eq!(from_outside.0, both, "a NodePort from outside reaches both pods");
    assert_eq!(from_outside.1, Ok("pod0".to_string()), "the load balancer address");
    assert_eq!(from_outside.2, Ok("pod0".to_string()), "a LoadBalancer Service's NodePort");
    assert_eq!(from_outside.3, Err(ErrorKind::ConnectionRefused), "a NodePort without endpoints");
    assert!(from_outside.4 < Duration::from_secs(1), "refused in {:?}", from_outside.4);
    // From the node itself: localhost on the LoadBalancer's port and on a NodePort, and the node's own address.
    let from_node = node
        .node
        .run(|| (fetch("127.0.0.1:8080", None), fetch("127.0.0.1:30080", None), fetch("192.168.77.1:30081", None)));
    assert_eq!(from_node.0, Ok("pod0".to_string()), "localhost:8080 reaches the LoadBalancer Service");
    assert!(from_node.1.is_ok(), "localhost reaches a NodePort: {:?}", from_node.1);
    assert_eq!(from_node.2, Ok("pod0".to_string()), "the node's own address on a NodePort");
    // A pod reaches a NodePort through the node's address too.
    let from_pod = node.pods[1].run(|| fetch("192.168.77.1:30081", Some("10.42.0.3")));
    assert_eq!(from_pod, Ok("pod0".to_string()));
}

/// The table as `nft` lists it, one normalised line per rule, element or declaration, sorted: equal for two
/// tables with the same content whatever order it was created in.
fn listing(node: &Netns) -> Vec<String> {
    let out =
        node.run(|| Command::new("nft").args(["list", "table", "inet", "skiff-test"]).output().expect("nft runs"));
    assert!(out.status.success(), "nft list: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).replace("elements = { ", "elements = {\n");
    let mut lines: Vec<String> = text
        .lines()
        .flat_map(|l| l.split(", "))
        .map(|l| l.trim().trim_end_matches(',').trim_end_matches(" }").to_string())
        .filter(|l| !l.is_empty() && l != "}")
        .collect();
    lines.sort();
    lines
}

/// A listing with endpoint slot numbers, offsets and endpoint map names blanked out.
fn without_slots(listing: &[String]) -> Vec<String> {
    let mut out: Vec<String> = listing
        .iter()
        .map(|line| {
            let line = line.split(" offset ").next().unwrap_or(line);
            let line = line.split(" map @endpoints-").next().unwrap_or(line);
            match line.split_once(" : ") {
                Some((slot, rest)) if slot.chars().all(|c| c.is_ascii_digit()) => format!("_ : {rest}"),
                _ if line.starts_with("map endpoints-") => "map endpoints-_ {".to_string(),
                _ => line.to_string(),
            }
        })
        .collect();
    out.sort();
    out
}

#[test]
fn incremental_updates_follow_endpoints_and_leave_the_table_a_full_sync_would_write() {
    let node = Node::new("i");
    let apply = |node: &Node, script: String| node.node.run(move || nft::apply(&script)).expect("the update applies");
    let mut applied = Ruleset::new(&config(), vec![service("web", "10.43.0.30", 80, &[POD_IPS[0]])]);
    apply(&node, applied.full_script());
    assert_eq!(node.node.run(|| fetch("10.43.0.30:80", None)), Ok("pod0".to_string()));

    let steps: Vec<Vec<ServicePort>> = vec![
        // A second endpoint, and a new Service.
        vec![service("web", "10.43.0.30", 80, &POD_IPS), service("api", "10.43.0.31", 80, &[POD_IPS[1]])],
        // The first endpoint goes; the new Service loses its endpoints.
        vec![service("web", "10.43.0.30", 80, &[POD_IPS[1]]), service("api", "10.43.0.31", 80, &[])],
        // The new Service gets one back on another address, then the first Service goes altogether.
        vec![service("api", "10.43.0.32", 80, &[POD_IPS[0]])],
    ];
    let mut answers = Vec::new();
    for ports in steps {
        let update = applied.plan_to(ports.clone());
        let script = update.script().expect("every step changes something");
        assert!(!script.contains("table"), "an update, not a replacement: {script}");
        apply(&node, script);
        applied.commit(update);
        answers.push(node.node.run(|| {
            // 20 connections, unless the first fails (a dropped address costs the connect timeout each time).
            let first = fetch("10.43.0.30:80", None);
            let more = if first.is_ok() { 19 } else { 0 };
            let spread: std::collections::BTreeSet<_> =
                std::iter::once(first).chain((0..more).map(|_| fetch("10.43.0.30:80", None))).collect();
            (spread, fetch("10.43.0.31:80", None), fetch("10.43.0.32:80", None))
        }));
        // What the updates built is what a full sync of the mirror builds, and what it would build from scratch
        // up to which endpoint slots each Service was given.
        let incremental = listing(&node.node);
        apply(&node, applied.full_script());
        assert_eq!(incremental, listing(&node.node));
        apply(&node, Ruleset::new(&config(), ports).full_script());
        assert_eq!(without_slots(&incremental), without_slots(&listing(&node.node)));
        apply(&node, applied.full_script());
    }
    let pods = |names: &[&str]| names.iter().map(|n| Ok(n.to_string())).collect::<std::collections::BTreeSet<_>>();
    assert_eq!(answers[0].0, pods(&["pod0", "pod1"]), "the new endpoint takes traffic");
    assert_eq!(answers[0].1, Ok("pod1".to_string()), "the new Service answers");
    assert_eq!(answers[1].0, pods(&["pod1"]), "the removed endpoint gets none");
    assert_eq!(answers[1].1, Err(ErrorKind::ConnectionRefused), "no endpoints: refused");
    assert_eq!(answers[2].2, Ok("pod0".to_string()), "the Service on its new address");
    assert_eq!(answers[2].0.len(), 1, "a removed Service does not answer: {:?}", answers[2].0);
    assert!(answers[2].0.iter().all(Result::is_err), "a removed Service does not answer: {:?}", answers[2].0);
}

/// The same service port with its endpoints on `port`, and only the first `local` of them on this node.
fn on_port(mut service: ServicePort, port: u16, local: usize) -> ServicePort {
    for (i, endpoint) in service.endpoints.iter_mut().enumerate() {
        endpoint.port = port;
        endpoint.local = i < local;
    }
    service
}

#[test]
fn session_affinity_and_traffic_policies() {
    let node = Node::new("p");
    let mut sticky = service("sticky", "10.43.0.40", 80, &POD_IPS);
    sticky.affinity_timeout = Some(60);
    let mut cluster = on_port(service("cluster", "10.43.0.41", 80, &POD_IPS), 8081, 2);
    cluster.node_port = Some(30090);
    let mut local = on_port(service("local", "10.43.0.42", 80, &POD_IPS), 8081, 1);
    (local.node_port, local.external_local, local.health_check_node_port) = (Some(30091), true, Some(32000));
    let mut elsewhere = on_port(service("elsewhere", "10.43.0.43", 80, &POD_IPS), 8081, 0);
    (elsewhere.node_port, elsewhere.external_local) = (Some(30092), true);
    let mut internal = on_port(service("internal", "10.43.0.44", 80, &POD_IPS), 8081, 1);
    internal.internal_local = true;
    let mut internal_elsewhere = on_port(service("internal-elsewhere", "10.43.0.45", 80, &POD_IPS), 8081, 0);
    internal_elsewhere.internal_local = true;
    let ports = vec![sticky, cluster, local, elsewhere, internal, internal_elsewhere];
    let script = Ruleset::new(&config(), ports.clone()).full_script();
    node.node.run(move || nft::apply(&script)).expect("the ruleset applies");

    // Read back from the kernel (what `skiff explain` shows): each port's chains and where its ClusterIP
    // traffic goes, through per-endpoint chains (affinity) and a local-endpoints chain (internal policy Local).
    let programmed = node.node.run(move || {
        ports.iter().map(|p| inspect::programmed("skiff-test", p).expect("nft lists the table")).collect::<Vec<_>>()
    });
    let addresses = |port: u16, n: usize| -> Vec<SocketAddr> {
        POD_IPS[..n].iter().map(|ip| SocketAddr::new(ip.parse().expect("an IP"), port)).collect()
    };
    let routes: Vec<_> = programmed
        .iter()
        .map(|p| (p.cluster_ip_verdict.as_deref().and_then(|v| v.split('-').next()), p.backends.clone()))
        .collect();
    assert_eq!(
        routes,
        [
            (Some("goto service"), addresses(8080, 2)),
            (Some("goto service"), addresses(8081, 2)),
            (Some("goto service"), addresses(8081, 2)),
            (Some("goto service"), addresses(8081, 2)),
            (Some("goto local"), addresses(8081, 1)),
            (Some("drop"), vec![]),
        ]
    );
    let external: Vec<_> = programmed.iter().map(|p| p.external_chain.as_ref().map(|(_, present)| *present)).collect();
    // No endpoint here for `externalTrafficPolicy: Local`: no way in from outside on this node.
    assert_eq!(external, [None, Some(true), Some(true), Some(false), None, None]);
    let node_ports: Vec<_> =
        programmed.iter().map(|p| p.node_port_verdict.as_deref().and_then(|v| v.split('-').next())).collect();
    assert_eq!(node_ports, [None, Some("goto external"), Some("goto external"), Some("drop"), None, None]);
    let gone = service("gone", "10.43.0.46", 80, &POD_IPS);
    let gone = node.node.run(move || inspect::programmed("skiff-test", &gone)).expect("nft lists the table");
    assert!(gone.cluster_ip_verdict.is_none() && gone.backends.is_empty(), "{gone:?}");
    let many = |to: &'static str, n: usize| -> std::collections::BTreeSet<Result<String, ErrorKind>> {
        (0..n).map(|_| fetch(to, None)).collect()
    };

    // ClientIP affinity: every connection from one client lands on the same pod.
    let sticky = node.node.run(move || many("10.43.0.40:80", 20));
    assert_eq!(sticky.len(), 1, "one pod for one client: {sticky:?}");
    assert!(sticky.iter().all(Result::is_ok), "{sticky:?}");

    let from_outside = node.outside.run(move || {
        let started = Instant::now();
        let dropped = fetch("192.168.77.1:30092", None);
        (many("192.168.77.1:30090", 20), many("192.168.77.1:30091", 20), dropped, started.elapsed())
    });
    // externalTrafficPolicy Cluster: both pods, and they see the node (masqueraded), not the client.
    let masqueraded: std::collections::BTreeSet<_> =
        ["pod0 10.42.0.1", "pod1 10.42.0.1"].iter().map(|s| Ok(s.to_string())).collect();
    assert_eq!(from_outside.0, masqueraded);
    // externalTrafficPolicy Local: only this node's pod, and it sees the real client address.
    assert_eq!(from_outside.1, [Ok("pod0 192.168.77.2".to_string())].into());
    // No endpoint on this node: an outside client gets nothing here (its balancer's health check steers it away).
    assert!(matches!(from_outside.2, Err(ErrorKind::TimedOut | ErrorKind::WouldBlock)), "{:?}", from_outside.2);
    assert!(from_outside.3 >= Duration::from_secs(2), "dropped, not refused: {:?}", from_outside.3);

    // Pods still use every endpoint of an externalTrafficPolicy Local Service, on its ClusterIP and NodePort.
    let from_pod = node.pods[1].run(|| {
        let set = |to: &str| -> std::collections::BTreeSet<_> {
            (0..20).map(|_| fetch(to, Some("10.42.0.3")).map(|a| a[..4].to_string())).collect()
        };
        (set("10.43.0.43:80"), set("192.168.77.1:30091"))
    });
    let both: std::collections::BTreeSet<_> = [Ok("pod0".to_string()), Ok("pod1".to_string())].into();
    assert_eq!(from_pod.0, both, "the ClusterIP of a Service with no endpoint here");
    assert_eq!(from_pod.1, both, "the NodePort from a pod");

    // internalTrafficPolicy Local: only this node's endpoint; none here means dropped, not rerouted.
    let internal = node.node.run(move || {
        let started = Instant::now();
        (many("10.43.0.44:80", 20), fetch("10.43.0.45:80", None), started.elapsed())
    });
    assert_eq!(internal.0.len(), 1, "{:?}", internal.0);
    assert!(internal.0.iter().all(|a| a.as_ref().is_ok_and(|a| a.starts_with("pod0 "))), "{:?}", internal.0);
    assert!(matches!(internal.1, Err(ErrorKind::TimedOut | ErrorKind::WouldBlock)), "{:?}", internal.1);
}

/// Sends a datagram from `socket` to `to` and waits up to a second for the answer.
fn ask(socket: &UdpSocket, to: &str) -> Result<String, ErrorKind> {
    socket.set_read_timeout(Some(Duration::from_secs(1))).map_err(|e| e.kind())?;
    socket.send_to(b"who", to).map_err(|e| e.kind())?;
    let mut buf = [0u8; 64];
    let n = socket.recv(&mut buf).map_err(|e| e.kind())?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[test]
fn element_only_updates_go_over_netlink_and_leave_the_table_a_full_sync_would_write() {
    let node = Node::new("n");
    let table = config().table;
    let web = |endpoint: &str, node_port: u16, external: &[&str]| {
        let mut web = service("web", "10.43.0.30", 80, &[endpoint]);
        web.node_port = Some(node_port);
        web.external_ips = external.iter().filter_map(|ip| ip.parse().ok()).collect();
        vec![web]
    };
    let mut applied = Ruleset::new(&config(), web(POD_IPS[0], 30080, &[]));
    let script = applied.full_script();
    node.node.run(move || nft::apply(&script)).expect("the table applies");
    assert_eq!(node.node.run(|| fetch("10.43.0.30:80", None)), Ok("pod0".to_string()));
    let steps = [
        // The endpoint replaced: its slot in the endpoint map and its hairpin pair.
        web(POD_IPS[1], 30080, &[]),
        // The NodePort moves (a verdict map element), and an external IP comes (another).
        web(POD_IPS[1], 30081, &["192.168.77.100"]),
    ];
    for ports in steps {
        let update = applied.plan_to(ports);
        let changes = update.element_changes().expect("only elements change");
        let (batch, acks) = netlink::encode(&table, &changes);
        node.node.run(move || netlink::send_batch(&batch, acks)).expect("the kernel takes the batch");
        applied.commit(update);
        let over_netlink = listing(&node.node);
        let script = applied.full_script();
        node.node.run(move || nft::apply(&script)).expect("the full table applies");
        assert_eq!(over_netlink, listing(&node.node));
    }
    assert_eq!(node.node.run(|| fetch("10.43.0.30:80", None)), Ok("pod1".to_string()), "the new endpoint answers");

    // A drop verdict, and a batch the kernel refuses: deleting what is not there fails it all.
    let drop = Data::Drop;
    let changes = [ElementChange {
        set: Container::Shared("no-endpoint-nodeports"),
        add: true,
        key: Key::NodePort(Protocol::Tcp, 30099),
        data: Some(&drop),
    }];
    let (batch, acks) = netlink::encode(&table, &changes);
    node.node.run(move || netlink::send_batch(&batch, acks)).expect("a drop element");
    assert!(listing(&node.node).contains(&"tcp . 30099 : drop".to_string()), "{:?}", listing(&node.node));
    let before = listing(&node.node);
    let ip = "10.42.0.9".parse().unwrap_or(std::net::Ipv4Addr::UNSPECIFIED);
    let changes = [
        ElementChange { set: Container::Shared("hairpin-endpoints"), add: true, key: Key::Pair(ip, ip), data: None },
        ElementChange { set: Container::Shared("cluster-ips"), add: false, key: Key::Address(ip), data: None },
    ];
    let (batch, acks) = netlink::encode(&table, &changes);
    let refused = node.node.run(move || netlink::send_batch(&batch, acks));
    assert_eq!(refused.map_err(|e| e.kind()), Err(ErrorKind::NotFound));
    assert_eq!(listing(&node.node), before, "nothing of a refused batch applies");
}

#[test]
fn udp_clients_follow_their_endpoint_when_conntrack_is_cleaned_and_tcp_shares_the_port() {
    let node = Node::new("u");
    let apply = |node: &Node, script: String| node.node.run(move || nft::apply(&script)).expect("the rules apply");
    let dns = |endpoints: &[&str]| {
        let mut udp = service("dns", "10.43.0.50", 53, endpoints);
        (udp.protocol, udp.port_name) = (Protocol::Udp, "dns".into());
        let mut tcp = service("dns", "10.43.0.50", 53, &[POD_IPS[1]]);
        tcp.port_name = "dns-tcp".into();
        vec![udp, tcp]
    };
    let mut applied = Ruleset::new(&config(), dns(&[]));
    apply(&node, applied.full_script());
    // One client socket throughout: the same 5-tuple, as a resolver reusing its port.
    let client = node.node.run(|| UdpSocket::bind("10.42.0.1:0").expect("a client socket"));
    let client = std::sync::Arc::new(client);
    let ask_dns = |node: &Node| {
        let client = client.clone();
        node.node.run(move || ask(&client, "10.43.0.50:53"))
    };
    // Rejected at once, not a timeout (from the node itself the rejection fails the send: EPERM).
    let rejected = ask_dns(&node);
    assert!(matches!(rejected, Err(ErrorKind::ConnectionRefused | ErrorKind::PermissionDenied)), "{rejected:?}");

    // The first endpoint: the cleanup forgets what conntrack remembered of the rejected flow.
    let mut step = |node: &Node, endpoints: &[&str], clean: bool| {
        let update = applied.plan_to(dns(endpoints));
        apply(node, update.script().expect("a change"));
        let stale = conntrack::stale_udp_flows(update.port_changes(&applied));
        applied.commit(update);
        let started = Instant::now();
        if clean {
            assert_eq!(node.node.run(move || conntrack::delete(&stale)), 0, "every conntrack filter runs");
        }
        started.elapsed()
    };
    step(&node, &[POD_IPS[0]], true);
    assert_eq!(ask_dns(&node), Ok("pod0".to_string()));
    // TCP on the same port is a service port of its own, with its own endpoint.
    assert_eq!(node.node.run(|| fetch("10.43.0.50:53", None)), Ok("pod1".to_string()));

    // pod0 leaves the Service. Without the cleanup, conntrack keeps sending this client to it — upstream's
    // black hole when the pod is gone. With it, the next datagram goes to the remaining endpoint.
    step(&node, &[POD_IPS[1]], false);
    assert_eq!(ask_dns(&node), Ok("pod0".to_string()), "the stale entry still points at the departed endpoint");
    step(&node, &[POD_IPS[0], POD_IPS[1]], false);
    let took = step(&node, &[POD_IPS[1]], true);
    assert!(took < Duration::from_secs(1), "cleaned in {took:?}");
    assert_eq!(ask_dns(&node), Ok("pod1".to_string()), "the client follows its endpoint");
    assert_eq!(node.node.run(|| fetch("10.43.0.50:53", None)), Ok("pod1".to_string()), "TCP unaffected");
}
