//! The printed result of the controllers scenario: one row per metric with the median over runs and the target,
//! then the per-run values of the rows that have a target.

use std::fmt::Write as _;

use super::{mebibytes, ms, pad};
use crate::controllers::{CtlSample, CtlSettings};
use crate::run::mib;
use crate::stats::median;

struct Row {
    label: String,
    target: Option<(&'static str, f64)>,
    value: fn(&CtlSample) -> f64,
    format: fn(f64) -> String,
}

fn seconds(v: f64) -> String {
    format!("{:.2} s", v / 1000.0)
}

fn rows(settings: &CtlSettings) -> Vec<Row> {
    let row = |label: String, target, value, format| Row { label, target, value, format };
    vec![
        row(
            format!(
                "write {} Services + {} pods + Ready patches",
                settings.services,
                settings.services * settings.pods
            ),
            None,
            |s| s.writes_ms,
            seconds,
        ),
        row("all slices ready, from first create".into(), None, |s| s.converged_ms, seconds),
        row("  after the last Ready patch".into(), None, |s| s.converged_after_writes_ms, ms),
        row(format!("Ready flip → slice seen, p50 ({} flips)", settings.flips), None, |s| s.flip_p50_ms, ms),
        row("  p99".into(), Some(("< 20 ms", 20.0)), |s| s.flip_p99_ms, ms),
        row("  max".into(), None, |s| s.flip_max_ms, ms),
        row("  after the patch response, p50".into(), None, |s| s.flip_after_response_p50_ms, ms),
        row("  after the patch response, p99".into(), None, |s| s.flip_after_response_p99_ms, ms),
        row(
            "controllers RSS, idle before load".into(),
            Some(("< 100 MiB", 100.0)),
            |s| mib(s.ctl_idle_rss_kib),
            mebibytes,
        ),
        row("controllers RSS after load".into(), Some(("< 100 MiB", 100.0)), |s| mib(s.ctl_rss_after_kib), mebibytes),
        row("  controllers peak RSS (VmHWM)".into(), None, |s| mib(s.ctl_peak_rss_kib), mebibytes),
        row("server RSS, idle before load".into(), None, |s| mib(s.server_idle_rss_kib), mebibytes),
        row("server RSS after load".into(), None, |s| mib(s.server_rss_after_kib), mebibytes),
    ]
}

/// Renders the controllers table.
pub fn render(settings: &CtlSettings, samples: &[CtlSample]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "controllers (sqlite, separate `skiff controllers` process): medians of {} run(s); {} Services × {} pods, \
         {} concurrent writers, {} readiness flips",
        samples.len(),
        settings.services,
        settings.pods,
        settings.concurrency,
        settings.flips
    );
    let _ = writeln!(out);
    let rows = rows(settings);
    let mut table = vec![vec!["metric".to_string(), "target".to_string(), "sqlite".to_string()]];
    for row in &rows {
        let values: Vec<f64> = samples.iter().map(row.value).collect();
        let cell = median(&values).map_or("—".to_string(), |v| {
            let mark = row.target.map_or("", |(_, limit)| if v < limit { " ✓" } else { " ✗" });
            format!("{}{mark}", (row.format)(v))
        });
        table.push(vec![row.label.clone(), row.target.map_or("—", |(text, _)| text).to_string(), cell]);
    }
    let widths: Vec<usize> = (0..3).map(|c| table.iter().map(|l| l[c].chars().count()).max().unwrap_or(0)).collect();
    for (i, line) in table.iter().enumerate() {
        let _ = writeln!(out, "| {} |", pad(line, &widths).join(" | "));
        if i == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            let _ = writeln!(out, "|-{}-|", rule.join("-|-"));
        }
    }
    let _ = writeln!(out);
    let per_run =
        |f: fn(&CtlSample) -> f64| samples.iter().map(|s| format!("{:.1}", f(s))).collect::<Vec<_>>().join(" ");
    let _ = writeln!(out, "flip p99 per run (ms): {}", per_run(|s| s.flip_p99_ms));
    let _ = writeln!(out, "all slices ready per run (ms): {}", per_run(|s| s.converged_ms));
    let _ = writeln!(out, "controllers RSS after load per run (MiB): {}", per_run(|s| mib(s.ctl_rss_after_kib)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn settings() -> CtlSettings {
        CtlSettings {
            skiff: "skiff".into(),
            work_dir: "/tmp".into(),
            runs: 3,
            services: 1000,
            pods: 10,
            flips: 500,
            concurrency: 8,
            settle: Duration::ZERO,
            seed: 1,
        }
    }

    fn sample(flip_p99_ms: f64, ctl_rss_mib: u64) -> CtlSample {
        CtlSample {
            writes_ms: 9000.0,
            converged_ms: 9500.0,
            converged_after_writes_ms: 500.0,
            flip_p50_ms: 4.0,
            flip_p99_ms,
            flip_max_ms: 40.0,
            flip_after_response_p50_ms: 2.0,
            flip_after_response_p99_ms: 8.0,
            ctl_idle_rss_kib: 20 * 1024,
            ctl_rss_after_kib: ctl_rss_mib * 1024,
            ctl_peak_rss_kib: 130 * 1024,
            server_idle_rss_kib: 25 * 1024,
            server_rss_after_kib: 90 * 1024,
        }
    }

    #[test]
    fn medians_and_targets() {
        let text = render(&settings(), &[sample(12.0, 60), sample(30.0, 120), sample(25.0, 110)]);
        let p99 = text.lines().find(|l| l.starts_with("|   p99")).expect("p99 row");
        assert!(p99.contains("25.0 ms ✗"), "{p99}");
        let after = text.lines().find(|l| l.contains("controllers RSS after load") && l.starts_with('|')).expect("row");
        assert!(after.contains("110.0 MiB ✗"), "{after}");
        let idle = text.lines().find(|l| l.contains("idle before load") && l.contains("controllers")).expect("row");
        assert!(idle.contains("20.0 MiB ✓"), "{idle}");
        assert!(text.contains("write 1000 Services + 10000 pods"), "{text}");
        assert!(text.contains("all slices ready, from first create") && text.contains("9.50 s"), "{text}");
        assert!(text.contains("flip p99 per run (ms): 12.0 30.0 25.0"), "{text}");
        let widths: Vec<usize> = text.lines().filter(|l| l.starts_with('|')).map(|l| l.chars().count()).collect();
        assert!(widths.iter().all(|w| *w == widths[0]), "{text}");
    }

    #[test]
    fn no_runs_show_dashes() {
        let text = render(&settings(), &[]);
        assert!(text.lines().filter(|l| l.starts_with("| ")).skip(1).all(|l| l.contains('—')), "{text}");
    }
}
