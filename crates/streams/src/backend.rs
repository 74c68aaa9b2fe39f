//! What the stream server asks of the node: run a command in a container, dial a port in a pod, read a
//! container's log. The agent implements [`Backend`] over its runtime; tests implement it over local processes.

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

/// A failure the backend reports; each maps onto a Kubernetes `Status` reason and HTTP code.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    /// The pod or container does not exist on this node (404).
    #[error("{0}")]
    NotFound(String),
    /// The request cannot be served as asked, e.g. a container that is not running (400).
    #[error("{0}")]
    BadRequest(String),
    /// Anything else (500).
    #[error("{0}")]
    Internal(String),
}

impl BackendError {
    pub fn code(&self) -> u16 {
        match self {
            Self::NotFound(_) => 404,
            Self::BadRequest(_) => 400,
            Self::Internal(_) => 500,
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "NotFound",
            Self::BadRequest(_) => "BadRequest",
            Self::Internal(_) => "InternalError",
        }
    }

    /// The `metav1.Status` body of an HTTP error response.
    pub fn to_status(&self) -> Value {
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": self.to_string(), "reason": self.reason(), "code": self.code(),
        })
    }
}

/// The pod a request is about, as named in the URL (`uid` only when the caller pinned one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    pub uid: Option<String>,
}

/// `kubectl exec`'s request: the command and which standard streams the client attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRequest {
    pub pod: PodRef,
    pub container: String,
    pub command: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// A terminal size sent on the resize channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TerminalSize {
    pub width: u16,
    pub height: u16,
}

pub type BoxRead = Box<dyn AsyncRead + Send + Unpin>;
pub type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// A byte stream both ways: a connection to a port inside a pod.
pub trait Duplex: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Duplex for T {}
pub type BoxDuplex = Box<dyn Duplex>;

/// A container's log bytes as `kubectl logs` prints them.
pub type LogStream = BoxStream<'static, Result<Bytes, std::io::Error>>;

/// A started exec: its pipes (`None` for the streams the client did not ask for), where resize events go,
/// and its exit code. Dropping the session must end the process (e.g. tokio's `kill_on_drop`).
pub struct ExecSession {
    pub stdin: Option<BoxWrite>,
    pub stdout: Option<BoxRead>,
    pub stderr: Option<BoxRead>,
    pub resize: Option<mpsc::UnboundedSender<TerminalSize>>,
    /// Resolves to the exit code (0–255; 128+N for a process killed by signal N).
    pub exit: BoxFuture<'static, Result<i32, BackendError>>,
}

impl ExecSession {
    /// A session over a tokio child whose stdio was set up with `Stdio::piped()` as requested.
    pub fn from_child(mut child: tokio::process::Child) -> Self {
        let stdin = child.stdin.take().map(|s| Box::new(s) as BoxWrite);
        let stdout = child.stdout.take().map(|s| Box::new(s) as BoxRead);
        let stderr = child.stderr.take().map(|s| Box::new(s) as BoxRead);
        let exit = Box::pin(async move {
            let status = child.wait().await.map_err(|e| BackendError::Internal(format!("waiting for exec: {e}")))?;
            Ok(exit_code(status))
        });
        Self { stdin, stdout, stderr, resize: None, exit }
    }
}

/// The shell convention for an exit status: the code, or 128 + the signal that killed the process.
pub fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => 1,
    }
}

/// `kubectl logs` options, as the kubelet's `/containerLogs` endpoint takes them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub tail_lines: Option<i64>,
    pub since_seconds: Option<i64>,
    /// RFC 3339, as sent.
    pub since_time: Option<String>,
    pub limit_bytes: Option<i64>,
}

/// The node side of the streaming endpoints.
#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Starts `req.command` in the container.
    async fn exec(&self, req: ExecRequest) -> Result<ExecSession, BackendError>;

    /// Opens a TCP connection to `port` inside the pod's network namespace.
    async fn port_forward(&self, pod: &PodRef, port: u16) -> Result<BoxDuplex, BackendError>;

    /// The container's log; with `follow` the stream stays open until the container ends or the client goes.
    async fn logs(&self, pod: &PodRef, container: &str, options: LogOptions) -> Result<LogStream, BackendError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn child_sessions_report_exit_codes_and_signals() {
        let child = tokio::process::Command::new("sh").args(["-c", "exit 7"]).spawn().unwrap();
        assert_eq!(ExecSession::from_child(child).exit.await.unwrap(), 7);
        let child = tokio::process::Command::new("sh").args(["-c", "kill -9 $$"]).spawn().unwrap();
        assert_eq!(ExecSession::from_child(child).exit.await.unwrap(), 137);
    }

    #[test]
    fn errors_map_to_status_codes() {
        let e = BackendError::NotFound("pod \"x\" not found".into());
        let status = e.to_status();
        assert_eq!(status["code"], 404);
        assert_eq!(status["reason"], "NotFound");
        assert_eq!(status["message"], "pod \"x\" not found");
        assert_eq!(BackendError::BadRequest(String::new()).code(), 400);
    }
}
