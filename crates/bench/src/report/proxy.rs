//! The printed result of the proxy scenario: one column per size, then the ratios the targets are stated in
//! (first-packet p99 at the largest size against the smallest; ClusterIP throughput against direct).

use std::fmt::Write as _;

use crate::proxy::{ProxySample, ProxySettings};
use crate::run::mib;

fn mark(ok: bool) -> &'static str {
    if ok { " ✓" } else { " ✗" }
}

/// A row: label, target (text and upper bound, judged at the largest size), value and unit.
type Row = (&'static str, Option<(&'static str, f64)>, fn(&ProxySample) -> Option<f64>, &'static str);

/// Renders the proxy table.
pub fn render(settings: &ProxySettings, samples: &[ProxySample]) -> String {
    let mut out = format!(
        "proxy (sqlite, separate `skiff agent`, {} endpoints per Service, {} changes and {} handshakes per size)\n\n",
        settings.endpoints_per_service, settings.changes, settings.handshakes
    );
    let largest = samples.iter().map(|s| s.services).max().unwrap_or(0);
    let rows: Vec<Row> = vec![
        ("write the Services and slices", None, |s| Some(s.populate_ms), "ms"),
        ("full sync: agent start → ClusterIPs answer", Some(("≤ 5000 ms", 5000.0)), |s| Some(s.full_sync_ms), "ms"),
        ("  of which the nft apply", None, |s| s.full_apply_ms, "ms"),
        ("endpoint change → new endpoint answers, p50", None, |s| Some(s.programming(50.0)), "ms"),
        ("  p99", Some(("≤ 50 ms", 50.0)), |s| Some(s.programming(99.0)), "ms"),
        ("  max", None, |s| Some(s.programming(100.0)), "ms"),
        ("  of which the kernel write (agent log), p50", None, |s| Some(s.partial_apply(50.0)), "ms"),
        ("    p99", None, |s| Some(s.partial_apply(99.0)), "ms"),
        ("TCP handshake via ClusterIP, p50", None, |s| Some(s.handshake_cluster_ip(50.0)), "ms"),
        ("  p99", None, |s| Some(s.handshake_cluster_ip(99.0)), "ms"),
        ("TCP handshake to the endpoint directly, p50", None, |s| Some(s.handshake_direct(50.0)), "ms"),
        ("  p99", None, |s| Some(s.handshake_direct(99.0)), "ms"),
        ("agent RSS after the full sync", Some(("≤ 100 MiB", 100.0)), |s| Some(mib(s.agent_rss_kib)), "MiB"),
        (
            "  after the endpoint changes",
            Some(("≤ 100 MiB", 100.0)),
            |s| Some(mib(s.agent_rss_after_changes_kib)),
            "MiB",
        ),
        ("  agent peak RSS (VmHWM)", None, |s| Some(mib(s.agent_peak_rss_kib)), "MiB"),
    ];
    let _ = write!(out, "| metric | target |");
    for s in samples {
        let _ = write!(out, " {} Services |", s.services);
    }
    let _ = write!(out, "\n|---|---|");
    for _ in samples {
        let _ = write!(out, "---|");
    }
    out.push('\n');
    for (label, target, cell, unit) in rows {
        let _ = write!(out, "| {label} | {} |", target.map_or("—", |t| t.0));
        for s in samples {
            let text = match cell(s) {
                Some(v) if v.is_finite() => {
                    let digits = if v < 1.0 { 3 } else { 1 };
                    // Targets are stated for the largest size.
                    let judged = target.filter(|_| s.services == largest).map_or("", |t| mark(v <= t.1));
                    format!("{v:.digits$} {unit}{judged}")
                }
                _ => "—".to_string(),
            };
            let _ = write!(out, " {text} |");
        }
        out.push('\n');
    }
    if let (Some(small), Some(large)) =
        (samples.iter().min_by_key(|s| s.services), samples.iter().max_by_key(|s| s.services))
        && small.services < large.services
    {
        let ratio = large.handshake_cluster_ip(99.0) / small.handshake_cluster_ip(99.0);
        let _ = writeln!(
            out,
            "\nfirst-packet (handshake) p99 via ClusterIP, {} vs {} Services: {ratio:.2}× (target within ±10 %){}",
            large.services,
            small.services,
            mark((0.9..=1.1).contains(&ratio))
        );
    }
    if let Some(sample) = samples.iter().find(|s| !s.wrk.is_empty())
        && let Some((direct, through)) = sample.wrk_medians()
    {
        let ratio = through.requests_per_sec / direct.requests_per_sec;
        let _ = writeln!(
            out,
            "\nwrk against one agnhost netexec pod ({} Services programmed; 1 thread, 16 connections, {} s, medians of \
             {} alternating runs):\n\n| path | requests/s | p99 |\n|---|---|---|\n| pod IP directly | {:.0} | {:.2} ms |\n\
             | ClusterIP | {:.0} | {:.2} ms |\n\nClusterIP / direct: {ratio:.3}× (target ≥ 0.95×){}",
            sample.services,
            settings.wrk_seconds,
            sample.wrk.len(),
            direct.requests_per_sec,
            direct.p99_ms,
            through.requests_per_sec,
            through.p99_ms,
            mark(ratio >= 0.95)
        );
        let runs: Vec<String> =
            sample.wrk.iter().map(|(d, c)| format!("{:.0}/{:.0}", d.requests_per_sec, c.requests_per_sec)).collect();
        let _ = writeln!(out, "per run, direct/ClusterIP requests/s: {}", runs.join(" "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::probe::Wrk;
    use std::time::Duration;

    fn sample(services: usize, programming: &[f64], handshake_p99: f64) -> ProxySample {
        ProxySample {
            services,
            full_sync_ms: services as f64 / 2.0,
            programming_ms: programming.to_vec(),
            handshake_cluster_ip_ms: vec![0.05, handshake_p99],
            handshake_direct_ms: vec![0.04, 0.05],
            agent_rss_kib: 40 * 1024,
            agent_rss_after_changes_kib: 42 * 1024,
            agent_peak_rss_kib: 50 * 1024,
            ..Default::default()
        }
    }

    #[test]
    fn columns_per_size_targets_judged_at_the_largest_and_ratios() {
        let settings = ProxySettings {
            skiff: "skiff".into(),
            work_dir: "/tmp".into(),
            sizes: vec![100, 10000],
            endpoints_per_service: 10,
            changes: 2,
            handshakes: 2,
            wrk_seconds: 5,
            concurrency: 8,
            settle: Duration::ZERO,
            seed: 1,
        };
        let mut large = sample(10000, &[5.0, 60.0], 0.105);
        let w = |r| Wrk { requests_per_sec: r, p99_ms: 1.0 };
        large.wrk = vec![(w(1000.0), w(990.0)), (w(1000.0), w(900.0)), (w(1000.0), w(960.0))];
        let text = render(&settings, &[sample(100, &[5.0, 6.0], 0.1), large]);
        let line = |needle: &str| text.lines().find(|l| l.contains(needle)).expect(needle).to_string();
        assert!(line("full sync").contains("| 50.0 ms | 5000.0 ms ✓ |"), "{text}");
        let p99 = text.lines().find(|l| l.starts_with("|   p99 | ≤ 50 ms")).expect("p99 row");
        assert!(p99.contains("| 6.0 ms | 60.0 ms ✗ |"), "{text}");
        assert!(line("first-packet").contains("1.05× (target within ±10 %) ✓"), "{text}");
        assert!(line("ClusterIP / direct").contains("0.960× (target ≥ 0.95×) ✓"), "{text}");
    }
}
