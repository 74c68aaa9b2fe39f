//! The processes under test: a `skiff server` in a fresh temporary data dir ([`Skiff`]) and, for the etcd runs, an
//! etcd of its own ([`etcd::Etcd`]). Both listen on free loopback ports only, and both are stopped by their pid when
//! the guard drops, so an error anywhere in a run leaves nothing behind.

pub mod etcd;
pub mod helper;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::BenchError;

/// How long a server may take to answer `/readyz` before the run fails.
const READY_DEADLINE: Duration = Duration::from_secs(30);
/// Pause between two `/readyz` probes (bounds the measurement error of the start-up time).
const PROBE_INTERVAL: Duration = Duration::from_millis(2);

/// A free TCP port on 127.0.0.1 (the kernel picks it; the listener is closed again at once).
pub fn free_port() -> Result<u16, BenchError> {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).map_err(|source| BenchError::Io {
        what: "binding",
        path: PathBuf::from("127.0.0.1:0"),
        source,
    })
}

/// The resident set size, in KiB, from the `VmRSS:` line of a `/proc/PID/status` text.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    parse_status_kib(status, "VmRSS:")
}

/// A `KEY:   N kB` line of a `/proc/PID/status` text (such as `VmRSS:` or the peak, `VmHWM:`), in KiB.
pub fn parse_status_kib(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    let mut fields = line[key.len()..].split_whitespace();
    let value: u64 = fields.next()?.parse().ok()?;
    match fields.next() {
        Some("kB") | None => Some(value),
        Some(_) => None,
    }
}

/// Runs `skiff teardown` on an agent's data dir: removes the nftables table, pods, links and files the node made.
pub fn teardown(skiff: &Path, data_dir: &Path) -> Result<(), BenchError> {
    let status = Command::new(skiff).arg("teardown").arg("--data-dir").arg(data_dir).stdout(Stdio::null()).status();
    match status {
        Ok(s) if s.success() => Ok(()),
        other => Err(BenchError::Check(format!("skiff teardown failed: {other:?}"))),
    }
}

/// The resident set size of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> Result<u64, BenchError> {
    parse_vm_rss(&proc_status(pid)?).ok_or(BenchError::NoRss { pid })
}

/// The peak resident set size (`VmHWM`) of process `pid` so far, in KiB.
pub fn peak_rss_kib(pid: u32) -> Result<u64, BenchError> {
    parse_status_kib(&proc_status(pid)?, "VmHWM:").ok_or(BenchError::NoRss { pid })
}

/// The text of `/proc/PID/status`.
pub fn proc_status(pid: u32) -> Result<String, BenchError> {
    let path = PathBuf::from(format!("/proc/{pid}/status"));
    std::fs::read_to_string(&path).map_err(|source| BenchError::Io { what: "reading", path, source })
}

/// The last `n` lines of a log file, for error messages.
pub fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn log_file(path: &Path) -> Result<std::fs::File, BenchError> {
    std::fs::File::create(path).map_err(|source| BenchError::Io { what: "creating", path: path.to_path_buf(), source })
}

/// Sends SIGTERM to `child` by its pid, waits up to `grace`, then SIGKILLs it.
fn terminate(child: &mut Child, grace: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A running `skiff server --disable-agent` on a free loopback port, in its own temporary data dir (with the
/// controllers in-process unless started with `--disable-controllers`, see [`Skiff::start_with`]).
pub struct Skiff {
    child: Child,
    dir: tempfile::TempDir,
    /// The HTTPS port it listens on.
    pub port: u16,
}

impl Skiff {
    /// Spawns `binary` (on the etcd at `datastore_endpoint`, or on SQLite when `None`) and waits until `GET /readyz`
    /// answers 200. Returns the server and the time from just before the spawn until that answer.
    pub async fn start(
        binary: &Path,
        work_dir: &Path,
        datastore_endpoint: Option<&str>,
    ) -> Result<(Self, Duration), BenchError> {
        Self::start_with(binary, work_dir, datastore_endpoint, &[]).await
    }

    /// As [`Skiff::start`], with `extra` flags appended to `skiff server` (such as `--disable-controllers`).
    pub async fn start_with(
        binary: &Path,
        work_dir: &Path,
        datastore_endpoint: Option<&str>,
        extra: &[&str],
    ) -> Result<(Self, Duration), BenchError> {
        let dir = tempfile::Builder::new().prefix("skiff-bench-").tempdir_in(work_dir).map_err(|source| {
            BenchError::Io { what: "creating a temp dir in", path: work_dir.to_path_buf(), source }
        })?;
        let port = free_port()?;
        // The probe client is built before the clock starts; /readyz is public, so it needs no token, and the CA
        // does not exist yet, so it skips verification (loopback only).
        let probe = probe_client(port)?;
        let log = log_file(&dir.path().join("server.log"))?;
        let mut cmd = Command::new(binary);
        cmd.args(["server", "--disable-agent", "--bind-address", "127.0.0.1"])
            .args(["--https-listen-port", &port.to_string()])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--write-kubeconfig")
            .arg(dir.path().join("kubeconfig.yaml"))
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(endpoint) = datastore_endpoint {
            cmd.args(["--datastore-endpoint", endpoint]);
        }
        let started = Instant::now();
        let child = cmd.spawn().map_err(|source| BenchError::Spawn { what: "skiff", path: binary.into(), source })?;
        let mut server = Self { child, dir, port };
        server.wait_ready(&probe, started).await?;
        Ok((server, started.elapsed()))
    }

    async fn wait_ready(&mut self, probe: &kube::Client, started: Instant) -> Result<(), BenchError> {
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(BenchError::Exited { what: "skiff server", status, log: self.log_tail() });
            }
            let request = http::Request::get("/readyz").body(Vec::new())?;
            if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(5), probe.request_text(request)).await {
                return Ok(());
            }
            if started.elapsed() > READY_DEADLINE {
                return Err(BenchError::NotReady {
                    what: "skiff server",
                    secs: READY_DEADLINE.as_secs(),
                    log: self.log_tail(),
                });
            }
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's resident set size now, in KiB.
    pub fn rss_kib(&self) -> Result<u64, BenchError> {
        rss_kib(self.pid())
    }

    /// The server's temporary directory (data dir, kubeconfig, logs); removed when the server is dropped.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The admin kubeconfig the server wrote (CA and bearer token).
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig.yaml")
    }

    /// The last lines of the server's log.
    pub fn log_tail(&self) -> String {
        log_tail(&self.dir.path().join("server.log"), 30)
    }

    /// A kube-rs client authenticated as the admin, from the written kubeconfig. Each call opens its own
    /// connection pool, so separate clients are separate connections.
    pub async fn client(&self) -> Result<kube::Client, BenchError> {
        let path = self.kubeconfig();
        let kubeconfig =
            Kubeconfig::read_from(&path).map_err(|source| BenchError::Kubeconfig { path: path.clone(), source })?;
        let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(|source| BenchError::Kubeconfig { path, source })?;
        config.read_timeout = Some(Duration::from_secs(120));
        Ok(kube::Client::try_from(config)?)
    }

    /// Stops the server with SIGTERM (SIGKILL after 10 s) and removes its data dir.
    pub fn stop(mut self) {
        terminate(&mut self.child, Duration::from_secs(10));
    }
}

impl Drop for Skiff {
    fn drop(&mut self) {
        terminate(&mut self.child, Duration::from_secs(10));
    }
}

/// An unauthenticated client for `https://127.0.0.1:port` that does not verify the serving certificate.
fn probe_client(port: u16) -> Result<kube::Client, BenchError> {
    let url: http::Uri =
        format!("https://127.0.0.1:{port}").parse().map_err(|e: http::uri::InvalidUri| BenchError::Http(e.into()))?;
    let mut config = kube::Config::new(url);
    config.accept_invalid_certs = true;
    config.connect_timeout = Some(Duration::from_secs(2));
    config.read_timeout = Some(Duration::from_secs(5));
    Ok(kube::Client::try_from(config)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_in_kib() {
        let status = "Name:\tskiff\nVmPeak:\t  200000 kB\nVmRSS:\t   23456 kB\nRssAnon:\t 10000 kB\n";
        assert_eq!(parse_vm_rss(status), Some(23456));
        assert_eq!(parse_vm_rss("Name:\tskiff\n"), None);
        assert_eq!(parse_vm_rss("VmRSS:\t 12 MB\n"), None);
        assert_eq!(parse_status_kib(status, "VmPeak:"), Some(200000));
        assert_eq!(parse_status_kib(status, "VmHWM:"), None);
    }

    #[test]
    fn peak_rss_is_at_least_the_current_rss() {
        let pid = std::process::id();
        let peak = peak_rss_kib(pid).expect("own peak");
        let now = rss_kib(pid).expect("own rss");
        assert!(peak >= now, "peak {peak} KiB < current {now} KiB");
    }

    #[test]
    fn rss_of_this_process_is_plausible() {
        let kib = rss_kib(std::process::id()).expect("own rss");
        assert!(kib > 100 && kib < 4 * 1024 * 1024, "{kib} KiB");
    }

    #[test]
    fn free_ports_are_bindable() {
        let port = free_port().expect("a port");
        assert!(port > 0);
        assert!(TcpListener::bind(("127.0.0.1", port)).is_ok());
    }

    #[test]
    fn log_tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("log");
        std::fs::write(&path, "a\nb\nc\nd\n").expect("write");
        assert_eq!(log_tail(&path, 2), "c\nd");
        assert_eq!(log_tail(&dir.path().join("missing"), 2), "");
    }
}
