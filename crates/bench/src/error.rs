//! The one error type of the benchmark.

use std::path::PathBuf;
use std::process::ExitStatus;

/// Why a benchmark run could not produce numbers.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("starting {what} ({path}): {source}")]
    Spawn {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} exited early with {status}; log tail:\n{log}")]
    Exited { what: &'static str, status: ExitStatus, log: String },
    #[error("{what} was not ready within {secs} s; log tail:\n{log}")]
    NotReady { what: &'static str, secs: u64, log: String },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no VmRSS line in /proc/{pid}/status")]
    NoRss { pid: u32 },
    #[error("kubeconfig {path}: {source}")]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("kube client: {0}")]
    Kube(#[from] kube::Error),
    #[error("building a request: {0}")]
    Http(#[from] http::Error),
    #[error("decoding a response: {0}")]
    Json(#[from] serde_json::Error),
    #[error("unexpected result: {0}")]
    Check(String),
    #[error("a worker task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}
