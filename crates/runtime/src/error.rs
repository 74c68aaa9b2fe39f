//! The one error type of the runtime: every fallible call says what it was doing and keeps the cause.

use std::path::PathBuf;

/// Errors from starting, inspecting, stopping, exec'ing into containers and reading their logs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or process operation failed; `context` says which.
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A system call (namespaces, signals, mounts) failed.
    #[error("{context}")]
    Sys {
        context: String,
        #[source]
        source: nix::errno::Errno,
    },
    /// One of the JSON records in a state directory cannot be read.
    #[error("corrupt container record {path}")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// The spec cannot be run (empty argv, bad hostname, ...).
    #[error("invalid container spec: {0}")]
    InvalidSpec(String),
    /// The state directory already belongs to a container that was started.
    #[error("state directory {0} is already in use by a container")]
    StateDirInUse(PathBuf),
    /// The supervisor could not start the process (executable not found, namespace setup failed, ...).
    #[error("starting container {id}: {message}")]
    Start { id: String, message: String },
    /// The operation needs a running container.
    #[error("container is not running")]
    NotRunning,
    /// The operation needs a container that is not running.
    #[error("container is still running")]
    StillRunning,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }

    pub(crate) fn sys(context: impl Into<String>) -> impl FnOnce(nix::errno::Errno) -> Error {
        let context = context.into();
        move |source| Error::Sys { context, source }
    }
}
