//! The DNS server on loopback, asked with `dig`: cluster names from the zone, other names through a stub
//! upstream the test runs itself (nothing leaves loopback), truncation with a retry over TCP, and a dead
//! upstream answered with SERVFAIL quickly.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use hickory_proto::op::{Header, HeaderCounts, Message, MessageType, Metadata, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use skiff_dns::forward::Forwarder;
use skiff_dns::server::{Listeners, SharedZone, serve};
use skiff_dns::zone::{EndpointInfo, NamedPort, ServiceInfo, ServiceKind, SliceInfo, Zone, ZoneConfig};
use tokio_util::sync::CancellationToken;

/// An upstream that knows `*.example.test` (A 192.0.2.10) except names starting with `missing`.
struct Upstream;

#[async_trait::async_trait]
impl RequestHandler for Upstream {
    async fn handle_request<R: ResponseHandler, T: Time>(&self, request: &Request, mut handle: R) -> ResponseInfo {
        let mut metadata = Metadata::response_from_request(&request.metadata);
        let builder = MessageResponseBuilder::new(&request.queries, None);
        let Ok(info) = request.request_info() else {
            return ResponseInfo::from(Header { metadata, counts: HeaderCounts::default() });
        };
        let name = Name::from(info.query.name().clone());
        let text = name.to_ascii();
        let record = Record::from_rdata(name, 60, RData::A(A(Ipv4Addr::new(192, 0, 2, 10))));
        let answers: Vec<Record> = if text.ends_with("example.test.")
            && !text.starts_with("missing")
            && info.query.query_type() == RecordType::A
        {
            vec![record]
        } else {
            metadata.response_code = ResponseCode::NXDomain;
            Vec::new()
        };
        let response = builder.build(metadata, answers.iter(), [], [], []);
        handle.send_response(response).await.unwrap_or_else(|_| {
            ResponseInfo::from(Header {
                metadata: Metadata::response_from_request(&request.metadata),
                counts: HeaderCounts::default(),
            })
        })
    }
}

fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr()).map(|a| a.port()).unwrap_or(0)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

fn zone() -> Zone {
    let mut zone = Zone::new(ZoneConfig::default());
    let http = vec![NamedPort { name: "http".into(), protocol: "tcp", port: 80 }];
    zone.set_service(
        ("default".into(), "numbers-api".into()),
        Some(ServiceInfo {
            kind: ServiceKind::ClusterIp(vec![ip("10.43.0.20")].into()),
            ports: http.clone().into(),
            publish_not_ready: false,
        }),
    );
    zone.set_service(
        ("default".into(), "legacy".into()),
        Some(ServiceInfo {
            kind: ServiceKind::ExternalName("api.example.test".into()),
            ports: Vec::new().into(),
            publish_not_ready: false,
        }),
    );
    zone.set_service(
        ("default".into(), "many".into()),
        Some(ServiceInfo { kind: ServiceKind::Headless, ports: http.into(), publish_not_ready: false }),
    );
    let endpoints = (1..=100)
        .map(|i| EndpointInfo { ips: vec![ip(&format!("10.42.1.{i}"))].into(), hostname: None, ready: true })
        .collect();
    zone.set_slice(
        ("default".into(), "many-1".into()),
        Some((("default".into(), "many".into()), SliceInfo { ports: Box::new([]), endpoints })),
    );
    zone
}

/// Runs `dig` against `port` with `args`; its whole output.
fn dig(port: u16, args: &[&str]) -> String {
    let output =
        Command::new("dig").args(["@127.0.0.1", "-p", &port.to_string(), "+time=5", "+tries=1"]).args(args).output();
    output.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default()
}

fn short(port: u16, args: &[&str]) -> Vec<String> {
    let mut all = vec!["+short"];
    all.extend(args);
    dig(port, &all).lines().map(str::to_string).collect()
}

/// The server over [`zone`], forwarding to `upstreams`: its listeners, port and zone.
async fn start(upstreams: &[SocketAddr]) -> (Listeners, u16, SharedZone) {
    let port = free_port();
    let forwarder = Forwarder::new(upstreams).ok();
    let zone = Arc::new(RwLock::new(zone()));
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let listeners = serve(address, zone.clone(), forwarder, None, CancellationToken::new())
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    (listeners, port, zone)
}

/// A counter's value in the process's metrics, 0 when not there yet.
fn metric(line_start: &str) -> u64 {
    skiff_metrics::render()
        .lines()
        .find_map(|l| l.strip_prefix(line_start).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_names_from_memory_and_the_rest_from_upstream() {
    let upstream_port = free_port();
    let upstream_at = SocketAddr::from(([127, 0, 0, 1], upstream_port));
    let mut upstream = Server::new(Upstream);
    upstream.register_socket(tokio::net::UdpSocket::bind(upstream_at).await.unwrap_or_else(|e| panic!("bind: {e}")));
    let (server, port, _) = start(&[upstream_at]).await;

    let answers = tokio::task::spawn_blocking(move || {
        let a = short(port, &["numbers-api.default.svc.cluster.local", "A"]);
        let upper = short(port, &["NUMBERS-API.Default.SVC.cluster.local", "A"]);
        let srv = short(port, &["_http._tcp.numbers-api.default.svc.cluster.local", "SRV"]);
        let ptr = short(port, &["-x", "10.43.0.20"]);
        let nx = dig(port, &["nothing.default.svc.cluster.local", "A"]);
        let search_miss = dig(port, &["example.com.default.svc.cluster.local", "A"]);
        let external = short(port, &["legacy.default.svc.cluster.local", "A"]);
        let outside = short(port, &["www.example.test", "A"]);
        let outside_nx = dig(port, &["missing.example.test", "A"]);
        let version = short(port, &["dns-version.cluster.local", "TXT"]);
        (a, upper, srv, ptr, nx, search_miss, external, outside, outside_nx, version)
    })
    .await
    .unwrap_or_else(|e| panic!("dig: {e}"));
    let (a, upper, srv, ptr, nx, search_miss, external, outside, outside_nx, version) = answers;
    assert_eq!(a, ["10.43.0.20"]);
    assert_eq!(upper, ["10.43.0.20"], "names are case-insensitive");
    assert_eq!(srv, ["0 100 80 numbers-api.default.svc.cluster.local."]);
    assert_eq!(ptr, ["numbers-api.default.svc.cluster.local."]);
    assert!(nx.contains("status: NXDOMAIN") && nx.contains("flags: qr aa rd ra"), "{nx}");
    assert!(nx.contains("IN\tSOA\tns.dns.cluster.local. hostmaster.cluster.local."), "SOA for negative caching: {nx}");
    assert!(search_miss.contains("status: NXDOMAIN"), "a search-path miss is the zone's: {search_miss}");
    assert_eq!(external, ["api.example.test.", "192.0.2.10"], "the CNAME, then its target chased upstream");
    assert_eq!(outside, ["192.0.2.10"]);
    assert!(outside_nx.contains("status: NXDOMAIN"), "{outside_nx}");
    assert_eq!(version, ["\"1.1.0\""]);
    server.shutdown().await;
    let _ = upstream.shutdown_gracefully().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_answer_is_truncated_over_udp_and_complete_over_tcp() {
    let (server, port, _) = start(&[]).await;
    let (udp, fallback, tcp) = tokio::task::spawn_blocking(move || {
        let name = "many.default.svc.cluster.local";
        (
            dig(port, &["+ignore", "+noedns", name, "A"]),
            short(port, &["+noedns", name, "A"]),
            short(port, &["+tcp", name, "A"]),
        )
    })
    .await
    .unwrap_or_else(|e| panic!("dig: {e}"));
    assert!(udp.contains(" tc "), "100 addresses do not fit in 512 bytes: {udp}");
    assert_eq!(fallback.len(), 100, "dig retried over TCP and got all of them");
    assert_eq!(tcp.len(), 100);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_upstream_is_servfail_without_hanging() {
    // Nothing listens on this loopback port.
    let dead = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let (server, port, _) = start(&[dead]).await;
    let (took, reply, cluster) = tokio::task::spawn_blocking(move || {
        let began = Instant::now();
        let reply = dig(port, &["www.example.test", "A"]);
        (began.elapsed(), reply, short(port, &["numbers-api.default.svc.cluster.local", "A"]))
    })
    .await
    .unwrap_or_else(|e| panic!("dig: {e}"));
    assert!(reply.contains("status: SERVFAIL"), "{reply}");
    assert!(took < Duration::from_secs(3), "answered in {took:?}");
    assert_eq!(cluster, ["10.43.0.20"], "cluster names do not depend on upstream");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_question_comes_from_the_cache_until_the_zone_changes() {
    let (server, port, zone) = start(&[]).await;
    let name = "numbers-api.default.svc.cluster.local";
    let hits = "coredns_cache_hits_total{type=\"success\"}";
    let (first, second) = tokio::task::spawn_blocking(move || (short(port, &[name, "A"]), short(port, &[name, "A"])))
        .await
        .unwrap_or_else(|e| panic!("dig: {e}"));
    assert_eq!(first, ["10.43.0.20"]);
    assert_eq!(second, ["10.43.0.20"]);
    let after_two = metric(hits);
    assert!(after_two >= 1, "the second question was a cache hit");

    // The Service moves to another address: the very next answer has it.
    zone.write().unwrap_or_else(std::sync::PoisonError::into_inner).set_service(
        ("default".into(), "numbers-api".into()),
        Some(ServiceInfo {
            kind: ServiceKind::ClusterIp(vec![ip("10.43.0.21")].into()),
            ports: Vec::new().into(),
            publish_not_ready: false,
        }),
    );
    let (moved, upper) = tokio::task::spawn_blocking(move || {
        (short(port, &[name, "A"]), short(port, &["NUMBERS-api.default.svc.CLUSTER.local", "A"]))
    })
    .await
    .unwrap_or_else(|e| panic!("dig: {e}"));
    assert_eq!(moved, ["10.43.0.21"], "a zone change retires the cached answer");
    assert_eq!(upper, ["10.43.0.21"], "another letter case shares the entry");
    let reply = tokio::task::spawn_blocking(move || dig(port, &["NUMBERS-api.default.svc.CLUSTER.local", "A"]))
        .await
        .unwrap_or_else(|e| panic!("dig: {e}"));
    assert!(reply.contains("NUMBERS-api.default.svc.CLUSTER.local."), "the question as asked: {reply}");
    assert!(metric(hits) > after_two, "the case variant was a hit");
    server.shutdown().await;
}

/// The size dig reports of the response to `args`.
fn response_size(port: u16, args: &[&str]) -> Option<usize> {
    let reply = dig(port, args);
    reply.lines().find_map(|l| l.strip_prefix(";; MSG SIZE  rcvd: ")).and_then(|n| n.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_name_the_question_by_pointing_back_to_it() {
    let (server, port, _) = start(&[]).await;
    let sizes = tokio::task::spawn_blocking(move || {
        let a = ["+noedns", "numbers-api.default.svc.cluster.local", "A"];
        let srv = ["+noedns", "_http._tcp.numbers-api.default.svc.cluster.local", "SRV"];
        // Each twice: made, then from the cache.
        [response_size(port, &a), response_size(port, &a), response_size(port, &srv), response_size(port, &srv)]
    })
    .await
    .unwrap_or_else(|e| panic!("dig: {e}"));
    // Header 12; the question (its 39-byte name, type, class); the A record: a 2-byte pointer to the question's
    // name, type, class, TTL, length, address.
    let a = 12 + 39 + 4 + (2 + 10 + 4);
    // The SRV record's owner points to the question's name; its target is written out (RFC 2782 forbids
    // compressing it), and the name of the target's address in the additional section points to that.
    let srv = 12 + 50 + 4 + (2 + 10 + 6 + 39) + (2 + 10 + 4);
    assert_eq!(sizes, [Some(a), Some(a), Some(srv), Some(srv)]);
    server.shutdown().await;
}

/// A question on the wire: `id`, recursion desired, one question for `name` of `qtype`, class IN.
fn question(id: u16, name: &str, qtype: RecordType) -> Vec<u8> {
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name).unwrap_or_else(|e| panic!("{name}: {e}")), qtype));
    message.to_vec().unwrap_or_else(|e| panic!("encode: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_questions_from_many_clients_gets_every_answer_to_its_own_client() {
    let (server, port, _) = start(&[]).await;
    let answers = tokio::task::spawn_blocking(move || {
        let asked = [
            ("numbers-api.default.svc.cluster.local.", RecordType::A),
            ("_http._tcp.numbers-api.default.svc.cluster.local.", RecordType::SRV),
            ("nothere.default.svc.cluster.local.", RecordType::A),
        ];
        let clients: Vec<std::net::UdpSocket> =
            (0..4).map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"))).collect();
        // Every question is written before any answer is read, so the server finds many waiting at once.
        for (c, client) in clients.iter().enumerate() {
            for n in 0..30u16 {
                let (name, qtype) = asked[usize::from(n) % asked.len()];
                let id = u16::try_from(c).unwrap_or(0) * 1000 + n;
                client.send_to(&question(id, name, qtype), ("127.0.0.1", port)).unwrap_or_else(|e| panic!("{e}"));
            }
        }
        clients
            .iter()
            .map(|client| {
                client.set_read_timeout(Some(Duration::from_secs(5))).unwrap_or_else(|e| panic!("{e}"));
                let mut buffer = [0u8; 4096];
                let mut got = Vec::new();
                while let Ok(length) = client.recv(&mut buffer) {
                    let message =
                        Message::from_vec(&buffer[..length]).unwrap_or_else(|e| panic!("a well-formed answer: {e}"));
                    let name = message.queries.first().map(|q| q.name().to_string()).unwrap_or_default();
                    let data: Vec<String> = message.answers.iter().map(|r| r.data.to_string()).collect();
                    got.push((message.metadata.id, name, message.metadata.response_code, data));
                    if got.len() == 30 {
                        break;
                    }
                }
                got.sort_by_key(|answer| answer.0);
                got
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_else(|e| panic!("clients: {e}"));
    for (c, got) in answers.iter().enumerate() {
        assert_eq!(got.len(), 30, "client {c} got every answer: {got:?}");
        for (n, (id, name, code, data)) in got.iter().enumerate() {
            let n = u16::try_from(n).unwrap_or(0);
            assert_eq!(*id, u16::try_from(c).unwrap_or(0) * 1000 + n, "client {c}'s own answers");
            match n % 3 {
                0 => {
                    assert_eq!(name, "numbers-api.default.svc.cluster.local.");
                    assert_eq!(
                        (*code, data.as_slice()),
                        (ResponseCode::NoError, ["10.43.0.20".to_string()].as_slice())
                    );
                }
                1 => {
                    assert_eq!(name, "_http._tcp.numbers-api.default.svc.cluster.local.");
                    assert_eq!(data, &["0 100 80 numbers-api.default.svc.cluster.local.".to_string()]);
                }
                _ => assert_eq!((name.as_str(), *code), ("nothere.default.svc.cluster.local.", ResponseCode::NXDomain)),
            }
        }
    }
    server.shutdown().await;
}
