//! An etcd of the benchmark's own: Debian's `etcd` on two free loopback ports (client and peer) with a temporary
//! data dir, killed by its pid when the guard drops.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{free_port, log_file, log_tail, rss_kib};
use crate::BenchError;

const READY_DEADLINE: Duration = Duration::from_secs(30);

/// A running single-member etcd.
pub struct Etcd {
    child: Child,
    dir: tempfile::TempDir,
    client_port: u16,
}

impl Etcd {
    /// Starts `binary` and waits until `GET /health` reports healthy.
    pub async fn start(binary: &Path, work_dir: &Path) -> Result<Self, BenchError> {
        let dir = tempfile::Builder::new().prefix("skiff-bench-etcd-").tempdir_in(work_dir).map_err(|source| {
            BenchError::Io { what: "creating a temp dir in", path: work_dir.to_path_buf(), source }
        })?;
        let client_port = free_port()?;
        let mut peer_port = free_port()?;
        while peer_port == client_port {
            peer_port = free_port()?;
        }
        let client = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let log = log_file(&dir.path().join("etcd.log"))?;
        let child = Command::new(binary)
            .args(["--name", "bench"])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("bench={peer}")])
            .args(["--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|source| BenchError::Spawn { what: "etcd", path: binary.into(), source })?;
        let mut etcd = Self { child, dir, client_port };
        etcd.wait_healthy().await?;
        Ok(etcd)
    }

    async fn wait_healthy(&mut self) -> Result<(), BenchError> {
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(BenchError::Exited { what: "etcd", status, log: self.log_tail() });
            }
            if let Ok(Ok(body)) = tokio::time::timeout(Duration::from_secs(2), health(self.client_port)).await
                && is_healthy(&body)
            {
                return Ok(());
            }
            if started.elapsed() > READY_DEADLINE {
                return Err(BenchError::NotReady {
                    what: "etcd",
                    secs: READY_DEADLINE.as_secs(),
                    log: self.log_tail(),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The `--datastore-endpoint` for skiff.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// etcd's resident set size now, in KiB.
    pub fn rss_kib(&self) -> Result<u64, BenchError> {
        rss_kib(self.child.id())
    }

    fn log_tail(&self) -> String {
        log_tail(&self.dir.path().join("etcd.log"), 30)
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.0 `GET /health` on loopback; returns the whole response.
async fn health(port: u16) -> std::io::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    Ok(response)
}

/// Whether an etcd `/health` response says the member is healthy (`{"health":"true"}`).
fn is_healthy(response: &str) -> bool {
    response.starts_with("HTTP/1.")
        && response.contains(" 200 ")
        && response.replace(' ', "").contains(r#""health":"true""#)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_responses() {
        let ok = "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n{\"health\":\"true\"}";
        assert!(is_healthy(ok));
        let down = "HTTP/1.0 503 Service Unavailable\r\n\r\n{\"health\":\"false\"}";
        assert!(!is_healthy(down));
        assert!(!is_healthy("HTTP/1.0 200 OK\r\n\r\n{\"health\":\"false\"}"));
        assert!(!is_healthy(""));
    }

    #[tokio::test]
    async fn debian_etcd_starts_and_stops() {
        let binary = Path::new("/usr/bin/etcd");
        if !binary.exists() {
            eprintln!("skipping: no {}", binary.display());
            return;
        }
        let work = tempfile::tempdir().expect("temp dir");
        let etcd = Etcd::start(binary, work.path()).await.expect("etcd starts");
        let pid = etcd.child.id();
        assert!(etcd.rss_kib().expect("rss") > 1024);
        assert!(etcd.endpoint().starts_with("http://127.0.0.1:"));
        drop(etcd);
        assert!(!Path::new(&format!("/proc/{pid}")).exists() || rss_kib(pid).is_err());
    }
}
