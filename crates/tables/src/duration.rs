//! Ages and timestamps as upstream prints them: `k8s.io/apimachinery/pkg/util/duration.HumanDuration` and the
//! printers' `translateTimestampSince` (`<unknown>` for a missing timestamp).

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;

/// Parses a `metav1.Time` / `metav1.MicroTime` value (RFC 3339). `null`, missing, empty or the Go zero time
/// (`0001-01-01T00:00:00Z`) all read as "no timestamp", like Go's `IsZero`.
pub fn parse_time(value: Option<&Value>) -> Option<DateTime<Utc>> {
    let text = value?.as_str()?;
    let parsed = DateTime::parse_from_rfc3339(text).ok()?.with_timezone(&Utc);
    (parsed != DateTime::<Utc>::MIN_UTC && parsed.timestamp() != GO_ZERO_TIME).then_some(parsed)
}

/// Unix seconds of Go's zero `time.Time` (`0001-01-01T00:00:00Z`).
const GO_ZERO_TIME: i64 = -62_135_596_800;

/// The time elapsed from `timestamp` to `now`, in upstream's short form; `<unknown>` without a timestamp.
pub fn since(timestamp: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    match timestamp {
        Some(t) => human_duration(now - t),
        None => "<unknown>".to_string(),
    }
}

/// A succinct representation of `d` with ~2–3 significant figures (`5s`, `3m12s`, `70m`, `5h3m`, `2d3h`, `45d`,
/// `2y1d`, `9y`). Up to one second in the future still reads `0s` (clock skew); further is `<invalid>`.
pub fn human_duration(d: TimeDelta) -> String {
    // Go's `int(d.Seconds())` truncates towards zero, as `num_seconds` does.
    let seconds = d.num_seconds();
    if seconds < -1 {
        return "<invalid>".to_string();
    } else if seconds < 0 {
        return "0s".to_string();
    } else if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = d.num_minutes();
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 { format!("{minutes}m") } else { format!("{minutes}m{s}s") };
    } else if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = d.num_hours();
    if hours < 8 {
        let m = minutes % 60;
        if m == 0 { format!("{hours}h") } else { format!("{hours}h{m}m") }
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 24 * 8 {
        let h = hours % 24;
        if h == 0 { format!("{}d", hours / 24) } else { format!("{}d{h}h", hours / 24) }
    } else if hours < 24 * 365 * 2 {
        format!("{}d", hours / 24)
    } else if hours < 24 * 365 * 8 {
        let days = (hours / 24) % 365;
        if days == 0 { format!("{}y", hours / 24 / 365) } else { format!("{}y{days}d", hours / 24 / 365) }
    } else {
        format!("{}y", hours / 24 / 365)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn secs(n: i64) -> TimeDelta {
        TimeDelta::seconds(n)
    }

    // The cases of upstream's `TestHumanDuration`, plus the boundaries between the branches.
    #[test]
    fn matches_upstream_cases() {
        let cases = [
            (secs(1), "1s"),
            (secs(70), "70s"),
            (secs(190), "3m10s"),
            (TimeDelta::minutes(70), "70m"),
            (TimeDelta::hours(47), "47h"),
            (TimeDelta::hours(49), "2d1h"),
            (TimeDelta::hours(8 * 24 + 2), "8d"),
            (TimeDelta::hours(367 * 24), "367d"),
            (TimeDelta::hours(365 * 2 * 24 + 25), "2y1d"),
            (TimeDelta::hours(365 * 8 * 24 + 2), "8y"),
        ];
        for (d, want) in cases {
            assert_eq!(human_duration(d), want, "{d:?}");
        }
    }

    #[test]
    fn branch_boundaries() {
        assert_eq!(human_duration(secs(0)), "0s");
        assert_eq!(human_duration(secs(119)), "119s");
        assert_eq!(human_duration(secs(120)), "2m");
        assert_eq!(human_duration(secs(192)), "3m12s");
        assert_eq!(human_duration(secs(599)), "9m59s");
        assert_eq!(human_duration(secs(600)), "10m");
        assert_eq!(human_duration(TimeDelta::minutes(179)), "179m");
        assert_eq!(human_duration(TimeDelta::minutes(180)), "3h");
        assert_eq!(human_duration(TimeDelta::minutes(5 * 60 + 3)), "5h3m");
        assert_eq!(human_duration(TimeDelta::hours(8)), "8h");
        assert_eq!(human_duration(TimeDelta::hours(51)), "2d3h");
        assert_eq!(human_duration(TimeDelta::hours(48)), "2d");
        assert_eq!(human_duration(TimeDelta::hours(365 * 2 * 24)), "2y");
    }

    #[test]
    fn future_times_tolerate_one_second_of_skew() {
        assert_eq!(human_duration(TimeDelta::milliseconds(-1500)), "0s");
        assert_eq!(human_duration(secs(-1)), "0s");
        assert_eq!(human_duration(secs(-2)), "<invalid>");
    }

    #[test]
    fn missing_or_zero_timestamps_are_unknown() {
        let now = DateTime::parse_from_rfc3339("2024-05-01T12:00:00Z").map(|t| t.with_timezone(&Utc));
        let Ok(now) = now else { panic!("bad test time") };
        assert_eq!(since(parse_time(None), now), "<unknown>");
        assert_eq!(since(parse_time(Some(&Value::Null)), now), "<unknown>");
        assert_eq!(since(parse_time(Some(&json!("0001-01-01T00:00:00Z"))), now), "<unknown>");
        assert_eq!(since(parse_time(Some(&json!("2024-05-01T11:56:48Z"))), now), "3m12s");
        // MicroTime, as in events' eventTime.
        assert_eq!(since(parse_time(Some(&json!("2024-05-01T11:59:55.123456Z"))), now), "4s");
    }
}
