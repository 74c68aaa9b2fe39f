//! The printed result of the controllers scenario: one row per metric with the median over runs and the target,
//! then the per-run values of the rows that have a target.

use super::{Goal, MedianRow, mebibytes, median_report, median_row, ms};
use crate::controllers::{CtlSample, CtlSettings};
use crate::run::mib;

fn seconds(v: f64) -> String {
    format!("{:.2} s", v / 1000.0)
}

fn rows(settings: &CtlSettings) -> Vec<MedianRow<CtlSample>> {
    vec![
        median_row(
            format!(
                "write {} Services + {} pods + Ready patches",
                settings.services,
                settings.services * settings.pods
            ),
            None,
            |s| s.writes_ms,
            seconds,
        ),
        median_row("all slices ready, from first create", None, |s| s.converged_ms, seconds),
        median_row("  after the last Ready patch", None, |s| s.converged_after_writes_ms, ms),
        median_row(format!("Ready flip → slice seen, p50 ({} flips)", settings.flips), None, |s| s.flip_p50_ms, ms),
        median_row("  p99", Some(Goal::Below("< 20 ms", 20.0)), |s| s.flip_p99_ms, ms),
        median_row("  max", None, |s| s.flip_max_ms, ms),
        median_row("  after the patch response, p50", None, |s| s.flip_after_response_p50_ms, ms),
        median_row("  after the patch response, p99", None, |s| s.flip_after_response_p99_ms, ms),
        median_row(
            "controllers RSS, idle before load",
            Some(Goal::Below("< 100 MiB", 100.0)),
            |s| mib(s.ctl_idle_rss_kib),
            mebibytes,
        ),
        median_row(
            "controllers RSS after load",
            Some(Goal::Below("< 100 MiB", 100.0)),
            |s| mib(s.ctl_rss_after_kib),
            mebibytes,
        ),
        median_row("  controllers peak RSS (VmHWM)", None, |s| mib(s.ctl_peak_rss_kib), mebibytes),
        median_row("server RSS, idle before load", None, |s| mib(s.server_idle_rss_kib), mebibytes),
        median_row("server RSS after load", None, |s| mib(s.server_rss_after_kib), mebibytes),
    ]
}

/// Renders the controllers table.
pub fn render(settings: &CtlSettings, samples: &[CtlSample]) -> String {
    let title = format!(
        "controllers (sqlite, separate `skiff controllers` process): medians of {} run(s); {} Services × {} pods, \
         {} concurrent writers, {} readiness flips",
        samples.len(),
        settings.services,
        settings.pods,
        settings.concurrency,
        settings.flips
    );
    median_report(
        &title,
        &rows(settings),
        samples,
        "sqlite",
        &[
            ("flip p99 per run (ms)", |s| s.flip_p99_ms),
            ("all slices ready per run (ms)", |s| s.converged_ms),
            ("controllers RSS after load per run (MiB)", |s| mib(s.ctl_rss_after_kib)),
        ],
    )
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
