//! `kubectl logs`: the kubelet's `/containerLogs/{namespace}/{pod}/{container}` endpoint. The backend's byte
//! stream goes out as a chunked `text/plain` body, so `--follow` streams until the container ends or the
//! client disconnects (dropping the body drops the backend's stream).

use crate::backend::{BackendError, LogOptions};

fn flag(query: &[(String, String)], key: &str) -> bool {
    query.iter().any(|(k, v)| k == key && matches!(v.as_str(), "true" | "1"))
}

fn int(query: &[(String, String)], key: &str) -> Result<Option<i64>, BackendError> {
    match query.iter().find(|(k, v)| k == key && !v.is_empty()) {
        None => Ok(None),
        Some((_, v)) => {
            v.parse::<i64>().map(Some).map_err(|_| BackendError::BadRequest(format!("invalid value {v:?} for {key}")))
        }
    }
}

/// The kubelet's log query parameters.
pub fn options(query: &[(String, String)]) -> Result<LogOptions, BackendError> {
    let options = LogOptions {
        follow: flag(query, "follow"),
        previous: flag(query, "previous"),
        timestamps: flag(query, "timestamps"),
        tail_lines: int(query, "tailLines")?,
        since_seconds: int(query, "sinceSeconds")?,
        since_time: query.iter().find(|(k, v)| k == "sinceTime" && !v.is_empty()).map(|(_, v)| v.clone()),
        limit_bytes: int(query, "limitBytes")?,
    };
    if options.tail_lines.is_some_and(|n| n < 0) {
        return Err(BackendError::BadRequest("tailLines must be greater than or equal to 0".into()));
    }
    if options.limit_bytes.is_some_and(|n| n < 1) {
        return Err(BackendError::BadRequest("limitBytes must be greater than 0".into()));
    }
    if options.since_seconds.is_some_and(|n| n < 1) {
        return Err(BackendError::BadRequest("sinceSeconds must be greater than 0".into()));
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn query_parameters_become_options() {
        let o =
            options(&q(&[("follow", "true"), ("tailLines", "2"), ("timestamps", "1"), ("limitBytes", "10")])).unwrap();
        assert!(o.follow && o.timestamps && !o.previous);
        assert_eq!(o.tail_lines, Some(2));
        assert_eq!(o.limit_bytes, Some(10));
        assert_eq!(options(&q(&[])).unwrap(), LogOptions::default());
        assert!(matches!(options(&q(&[("tailLines", "x")])), Err(BackendError::BadRequest(_))));
        assert!(options(&q(&[("tailLines", "-1")])).is_err());
    }
}
