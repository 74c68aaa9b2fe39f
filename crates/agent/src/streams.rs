//! The agent's side of `kubectl logs`, `exec` and `port-forward`: a `skiff-streams` backend over the pods this
//! node runs. The API server proxies those requests here (authenticated with a bearer token, over TLS with a
//! certificate from the cluster CA); this module finds the pod's container on disk and runs the command in it,
//! reads its log file, or dials the pod's port from the node.

use std::path::{Path, PathBuf};

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use skiff_streams::{BackendError, BoxDuplex, ExecRequest, ExecSession, LogOptions, LogStream, PodRef};

/// Serves streams for the pods under `<agent dir>/pods/`.
pub struct AgentBackend {
    pub dir: PathBuf,
    pub client: kube::Client,
}

fn not_found(what: impl std::fmt::Display) -> BackendError {
    BackendError::NotFound(what.to_string())
}

impl AgentBackend {
    async fn pod(&self, pod: &PodRef) -> Result<Pod, BackendError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace);
        api.get_opt(&pod.name)
            .await
            .map_err(|e| BackendError::Internal(e.to_string()))?
            .ok_or_else(|| not_found(format!("pod {}/{} not found", pod.namespace, pod.name)))
    }

    /// The attempts of one container, oldest first.
    fn attempts(&self, uid: &str, container: &str) -> Vec<(u32, PathBuf)> {
        crate::pods::attempts(&self.dir.join("pods").join(uid), container)
    }
}

fn log_dir(dir: &Path, uid: &str) -> PathBuf {
    dir.join("pods").join(uid).join("logs")
}

#[async_trait::async_trait]
impl skiff_streams::Backend for AgentBackend {
    async fn exec(&self, req: ExecRequest) -> Result<ExecSession, BackendError> {
        let pod = self.pod(&req.pod).await?;
        let uid = pod.metadata.uid.unwrap_or_default();
        let (_, state_dir) = self
            .attempts(&uid, &req.container)
            .pop()
            .ok_or_else(|| not_found(format!("container {} is not running", req.container)))?;
        let process = skiff_runtime::exec(&state_dir, &req.command, req.tty, req.stdin)
            .await
            .map_err(|e| BackendError::BadRequest(e.to_string()))?;
        let mut child = process.child;
        let mut session = match process.io {
            skiff_runtime::ExecIo::Pipes { stdin, stdout, stderr } => ExecSession {
                stdin: stdin.map(|s| Box::new(s) as skiff_streams::backend::BoxWrite),
                stdout: Some(Box::new(stdout)),
                stderr: Some(Box::new(stderr)),
                resize: None,
                exit: futures::future::ready(Ok(0)).boxed(),
            },
            skiff_runtime::ExecIo::Tty { input, output, resize } => {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<skiff_streams::TerminalSize>();
                tokio::spawn(async move {
                    while let Some(size) = rx.recv().await {
                        let _ = resize.resize(size.width, size.height);
                    }
                });
                ExecSession {
                    stdin: Some(Box::new(input)),
                    stdout: Some(Box::new(output)),
                    stderr: None,
                    resize: Some(tx),
                    exit: futures::future::ready(Ok(0)).boxed(),
                }
            }
        };
        session.exit = async move {
            let status = child.wait().await.map_err(|e| BackendError::Internal(e.to_string()))?;
            Ok(skiff_runtime::exit_code(status))
        }
        .boxed();
        Ok(session)
    }

    async fn port_forward(&self, pod: &PodRef, port: u16) -> Result<BoxDuplex, BackendError> {
        let found = self.pod(pod).await?;
        let ip =
            found.status.and_then(|s| s.pod_ip).ok_or_else(|| not_found(format!("pod {} has no IP yet", pod.name)))?;
        let stream = tokio::net::TcpStream::connect((ip.as_str(), port)).await.map_err(|e| {
            BackendError::Internal(format!(
                "failed to connect to localhost:{port} inside namespace of pod {}: {e}",
                pod.name
            ))
        })?;
        Ok(Box::new(stream))
    }

    async fn logs(&self, pod: &PodRef, container: &str, options: LogOptions) -> Result<LogStream, BackendError> {
        let found = self.pod(pod).await?;
        let uid = found.metadata.uid.unwrap_or_default();
        let attempts = self.attempts(&uid, container);
        let chosen = if options.previous { attempts.len().checked_sub(2) } else { attempts.len().checked_sub(1) };
        let (attempt, state_dir) = chosen.and_then(|i| attempts.get(i).cloned()).ok_or_else(|| {
            BackendError::BadRequest(format!(
                "previous terminated container \"{container}\" in pod \"{}\" not found",
                pod.name
            ))
        })?;
        let path = skiff_runtime::container_log_path(&log_dir(&self.dir, &uid), container, attempt);
        let opts = skiff_runtime::LogOptions {
            follow: options.follow,
            tail_lines: options.tail_lines,
            since_seconds: options.since_seconds,
            since_time: options
                .since_time
                .as_deref()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.to_utc()),
            timestamps: options.timestamps,
            limit_bytes: options.limit_bytes,
            state_dir: Some(state_dir),
        };
        let stream = skiff_runtime::read_logs(&path, opts).await.map_err(|e| not_found(e.to_string()))?;
        Ok(stream.map(|item| item.map_err(|e| std::io::Error::other(e.to_string()))).boxed())
    }
}
