//! Packets through the proxy's rules, from the node: which endpoint a ClusterIP connection reaches, how long a
//! connection's first packet takes to be answered, and `wrk` throughput.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;

use crate::BenchError;

/// Connections opened at once per probe round: with 10 endpoints balanced at random, 16 fresh connections all
/// miss a given endpoint with probability 0.9^16 ≈ 19 %, so once the rules are in, a round finds it with 81 %.
const ROUND: usize = 16;

/// One connection to `target`: the endpoint address the listener says it was reached on.
pub async fn reached(target: SocketAddr) -> Option<Ipv4Addr> {
    let mut stream =
        tokio::time::timeout(Duration::from_millis(200), tokio::net::TcpStream::connect(target)).await.ok()?.ok()?;
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_millis(200), stream.read_to_string(&mut answer)).await.ok()?.ok()?;
    answer.trim().parse().ok()
}

/// Opens rounds of connections to `target` until one reaches `want`; when it did, or `None` by `deadline`.
pub async fn until_reached(target: SocketAddr, want: Ipv4Addr, deadline: Instant) -> Option<Instant> {
    while Instant::now() < deadline {
        let round = futures::future::join_all((0..ROUND).map(|_| reached(target))).await;
        if round.contains(&Some(want)) {
            return Some(Instant::now());
        }
    }
    None
}

/// Times `n` TCP handshakes (connect() returning), one after another, to targets chosen by `pick`; in ms.
pub fn handshake_times(n: usize, mut pick: impl FnMut(usize) -> SocketAddr) -> Result<Vec<f64>, BenchError> {
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let target = pick(i);
        let started = Instant::now();
        let stream = TcpStream::connect_timeout(&target, Duration::from_secs(5))
            .map_err(|e| BenchError::Check(format!("connecting to {target}: {e}")))?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        drop(stream);
    }
    Ok(times)
}

/// What one `wrk` run measured.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Wrk {
    pub requests_per_sec: f64,
    pub p99_ms: f64,
}

/// Runs `wrk --latency` for `seconds` with `connections` connections on one thread against `url`.
pub fn wrk(url: &str, seconds: u64, connections: usize) -> Result<Wrk, BenchError> {
    let output = Command::new("wrk")
        .args(["-t1", &format!("-c{connections}"), &format!("-d{seconds}s"), "--latency", url])
        .output()
        .map_err(|source| BenchError::Spawn { what: "wrk (apt-get install wrk)", path: "wrk".into(), source })?;
    let text = String::from_utf8_lossy(&output.stdout);
    parse_wrk(&text)
        .ok_or_else(|| BenchError::Check(format!("wrk {url}: {text}{}", String::from_utf8_lossy(&output.stderr))))
}

/// Reads `Requests/sec:` and the `99%` line of the latency distribution from wrk's report; `None` when a
/// request failed (wrk's `Non-2xx` or socket error lines) or the report is incomplete.
pub fn parse_wrk(text: &str) -> Option<Wrk> {
    if text.contains("Non-2xx") || text.contains("Socket errors") {
        return None;
    }
    let requests_per_sec = text.lines().find_map(|l| l.trim().strip_prefix("Requests/sec:"))?.trim().parse().ok()?;
    let p99 = text.lines().find_map(|l| l.trim().strip_prefix("99%"))?.trim();
    let p99_ms = duration_ms(p99)?;
    Some(Wrk { requests_per_sec, p99_ms })
}

/// wrk's `1.23ms`, `456.00us`, `2.01s`.
fn duration_ms(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor = match unit {
        "us" => 0.001,
        "ms" => 1.0,
        "s" => 1000.0,
        "m" => 60_000.0,
        _ => return None,
    };
    Some(number * factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "Running 5s test @ http://10.43.0.12:8080/hostname
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   612.34us  201.10us   5.01ms   90.12%
    Req/Sec    26.01k     1.20k   28.90k    70.00%
  Latency Distribution
     50%  580.00us
     75%  650.00us
     90%  760.00us
     99%    1.42ms
  129432 requests in 5.00s, 15.43MB read
Requests/sec:  25886.40
Transfer/sec:      3.09MB
";

    #[test]
    fn wrk_reports_are_read_and_failures_rejected() {
        assert_eq!(parse_wrk(REPORT), Some(Wrk { requests_per_sec: 25886.40, p99_ms: 1.42 }));
        let failed =
            REPORT.replace("Requests/sec", "  Socket errors: connect 0, read 3, write 0, timeout 0\nRequests/sec");
        assert_eq!(parse_wrk(&failed), None);
        assert_eq!(duration_ms("456.00us"), Some(0.456));
        assert_eq!(duration_ms("2.5s"), Some(2500.0));
        assert_eq!(duration_ms("fast"), None);
    }
}
