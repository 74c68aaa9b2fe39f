//! Asking DNS servers: single questions with hickory-proto's message type (for readiness and change
//! visibility), and `dnsperf` (Debian's package) for throughput and, with `-v`, per-question latency.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

use crate::BenchError;

/// A server's answer to an A question.
#[derive(Clone, Debug)]
pub struct Answer {
    pub code: ResponseCode,
    pub addresses: Vec<Ipv4Addr>,
}

/// Asks `server` for the A records of `name` once, waiting at most 200 ms.
pub fn ask(server: SocketAddr, name: &str) -> Option<Answer> {
    let socket = UdpSocket::bind("127.0.0.1:0").ok()?;
    socket.set_read_timeout(Some(Duration::from_millis(200))).ok()?;
    let id = rand::random::<u16>();
    let mut question = Message::new(id, MessageType::Query, OpCode::Query);
    question.metadata.recursion_desired = true;
    question.add_query(Query::query(Name::from_str(&format!("{name}.")).ok()?, RecordType::A));
    socket.send_to(&question.to_vec().ok()?, server).ok()?;
    let mut buffer = [0u8; 4096];
    loop {
        let (length, _) = socket.recv_from(&mut buffer).ok()?;
        let Ok(reply) = Message::from_vec(&buffer[..length]) else { continue };
        if reply.metadata.id != id {
            continue;
        }
        let addresses = reply
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(a.0),
                _ => None,
            })
            .collect();
        return Some(Answer { code: reply.metadata.response_code, addresses });
    }
}

/// What one `dnsperf` run reported.
#[derive(Clone, Debug, Default)]
pub struct PerfRun {
    pub queries_per_sec: f64,
    pub lost_percent: f64,
    /// Per-question latencies (only with `verbose`), in ms.
    pub latencies_ms: Vec<f64>,
}

/// Runs `dnsperf` against `server` with the questions in `questions` for `seconds`, at most `rate` questions per
/// second (`None`: as fast as it goes), from 16 clients (so that the kernel spreads them evenly over a server's sockets); `verbose` records every question's latency.
pub fn dnsperf(
    server: SocketAddr,
    questions: &Path,
    seconds: u64,
    rate: Option<u64>,
    verbose: bool,
) -> Result<PerfRun, BenchError> {
    let mut cmd = Command::new("dnsperf");
    cmd.args(["-s", &server.ip().to_string(), "-p", &server.port().to_string()])
        .arg("-d")
        .arg(questions)
        .args(["-l", &seconds.to_string(), "-c", "16"])
        .args(["-Q", &rate.unwrap_or(10_000_000).to_string()]);
    if verbose {
        cmd.arg("-v");
    }
    let out = cmd.stdin(Stdio::null()).output().map_err(|source| BenchError::Spawn {
        what: "dnsperf",
        path: "dnsperf".into(),
        source,
    })?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(BenchError::Check(format!(
            "dnsperf failed ({}): {}{}",
            out.status,
            text,
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    parse_dnsperf(&text).ok_or_else(|| BenchError::Check(format!("no summary in dnsperf's output:\n{text}")))
}

/// The summary (and, when `-v` printed them, each answer's latency) of dnsperf's output.
pub fn parse_dnsperf(text: &str) -> Option<PerfRun> {
    let field = |label: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .and_then(|rest| rest.split_whitespace().next().map(str::to_string))
    };
    let queries_per_sec = field("Queries per second:")?.parse().ok()?;
    let lost_percent = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Queries lost:"))
        .and_then(|rest| rest.split('(').nth(1))
        .and_then(|p| p.trim_end_matches(['%', ')']).parse().ok())
        .unwrap_or(0.0);
    let latencies_ms = text
        .lines()
        .filter(|l| l.starts_with("> "))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .map(|secs| secs * 1000.0)
        .collect();
    Some(PerfRun { queries_per_sec, lost_percent, latencies_ms })
}

/// What the allocator of a Skiff process says of its memory, and what its answer cache holds, in KiB.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Heap {
    /// Live allocations (`skiff_allocator_allocated_bytes`).
    pub allocated_kib: u64,
    /// The allocator's pages in memory (`skiff_allocator_resident_bytes`).
    pub resident_kib: u64,
    /// The answer cache's buffer (`skiff_dns_cache_bytes`) and its entries (`coredns_cache_entries`).
    pub cache_kib: u64,
    pub cache_entries: u64,
}

impl std::fmt::Display for Heap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} KiB (allocator resident {} KiB; answer cache {} answers, {} KiB)",
            self.allocated_kib, self.resident_kib, self.cache_entries, self.cache_kib
        )
    }
}

/// The [`Heap`] of the Skiff process whose metrics listen at `metrics`; `None` when they cannot be read.
pub fn heap(metrics: SocketAddr) -> Option<Heap> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&metrics, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let value = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.split_whitespace().next() == Some(name))?;
        line.split_whitespace().nth(1)?.parse::<f64>().ok().map(|v| v as u64)
    };
    Some(Heap {
        allocated_kib: value("skiff_allocator_allocated_bytes")? / 1024,
        resident_kib: value("skiff_allocator_resident_bytes").unwrap_or(0) / 1024,
        cache_kib: value("skiff_dns_cache_bytes").unwrap_or(0) / 1024,
        cache_entries: value("coredns_cache_entries").unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dnsperf_summary_and_verbose_latencies() {
        let text = "[Status] Sending queries (to 127.0.0.1:53)\n> NOERROR p-00001.default.svc.cluster.local A \
                    0.000235\n> NXDOMAIN x.default.svc.cluster.local A 0.001500\nStatistics:\n\n  Queries sent:         \
                    2\n  Queries lost:         1 (0.50%)\n  Queries per second:   226715.775427\n";
        let run = parse_dnsperf(text).expect("a summary");
        assert!((run.queries_per_sec - 226_715.775_427).abs() < 1e-6);
        assert!((run.lost_percent - 0.5).abs() < 1e-9);
        assert_eq!(run.latencies_ms.len(), 2);
        assert!((run.latencies_ms[1] - 1.5).abs() < 1e-9);
        assert!(parse_dnsperf("nothing").is_none());
    }
}
