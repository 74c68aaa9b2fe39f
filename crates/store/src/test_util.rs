//! Test support (cargo feature `test-util`): a throwaway single-member etcd for the store's conformance suite
//! and the end-to-end tests. [`EtcdServer::start`] runs the etcd binary (Debian's `/usr/bin/etcd`, or
//! `SKIFF_TEST_ETCD`) on free loopback ports with a temporary data dir, waits until its `/health` reports a
//! leader, and dropping it kills the process (by pid, SIGKILL) and removes the data dir, also when a test
//! panics. A missing binary is an error, never a skip: CI installs etcd (Debian package `etcd-server`).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long etcd may take to elect itself leader.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a test etcd could not be started.
#[derive(Debug, thiserror::Error)]
pub enum EtcdServerError {
    #[error("etcd binary {0} not found: install etcd (apt-get install etcd-server) or set SKIFF_TEST_ETCD")]
    NotFound(PathBuf),
    #[error("starting etcd: {0}")]
    Io(#[from] std::io::Error),
    #[error("etcd exited with {status} before it was ready; log:\n{log}")]
    Exited { status: ExitStatus, log: String },
    #[error("etcd at {endpoint} not ready after {READY_TIMEOUT:?}; log:\n{log}")]
    NotReady { endpoint: String, log: String },
}

/// Where the etcd binary is (`SKIFF_TEST_ETCD` overrides Debian's `/usr/bin/etcd`).
pub fn etcd_binary() -> PathBuf {
    std::env::var_os("SKIFF_TEST_ETCD").map_or_else(|| PathBuf::from("/usr/bin/etcd"), PathBuf::from)
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A running test etcd; see the module docs.
pub struct EtcdServer {
    child: Child,
    port: u16,
    /// The client URL, kept as a one-element list for [`crate::EtcdStore::connect`].
    endpoints: Vec<String>,
    dir: tempfile::TempDir,
}

impl EtcdServer {
    /// Starts etcd and blocks (sleeping, no async runtime needed) until it is healthy.
    pub fn start() -> Result<Self, EtcdServerError> {
        let bin = etcd_binary();
        if !bin.exists() {
            return Err(EtcdServerError::NotFound(bin));
        }
        let dir = tempfile::tempdir()?;
        let (port, peer) = (free_port()?, free_port()?);
        let endpoint = format!("http://127.0.0.1:{port}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log = std::fs::File::create(log_path(dir.path()))?;
        let child = Command::new(&bin)
            .arg("--name=test")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={endpoint}"))
            .arg(format!("--advertise-client-urls={endpoint}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=test={peer_url}"))
            .arg("--logger=zap")
            .arg("--log-level=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let mut server = EtcdServer { child, port, endpoints: vec![endpoint], dir };
        server.wait_ready()?;
        Ok(server)
    }

    /// The client URL (`http://127.0.0.1:PORT`): the value for `--datastore-endpoint`.
    pub fn endpoint(&self) -> &str {
        &self.endpoints[0]
    }

    /// The client URLs, as [`crate::EtcdStore::connect`] takes them.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// What etcd has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(log_path(self.dir.path())).unwrap_or_default()
    }

    fn wait_ready(&mut self) -> Result<(), EtcdServerError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Err(EtcdServerError::Exited { status, log: self.log() });
            }
            if self.healthy() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(EtcdServerError::NotReady { endpoint: self.endpoint().to_string(), log: self.log() });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether etcd's `GET /health` says `"health":"true"` (it has a leader and serves requests).
    fn healthy(&self) -> bool {
        let Ok(mut conn) = TcpStream::connect(("127.0.0.1", self.port)) else { return false };
        let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
        let request = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
        let mut response = String::new();
        conn.write_all(request.as_bytes()).is_ok()
            && conn.read_to_string(&mut response).is_ok()
            && response.contains("\"health\":\"true\"")
    }
}

fn log_path(dir: &Path) -> PathBuf {
    dir.join("etcd.log")
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        // Our own child, by pid.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_health_until_dropped() {
        let server = EtcdServer::start().expect("etcd starts (install etcd-server or set SKIFF_TEST_ETCD)");
        assert!(server.endpoint().starts_with("http://127.0.0.1:"));
        assert_eq!(server.endpoints(), [server.endpoint().to_string()]);
        assert!(server.healthy());
        let (port, dir) = (server.port, server.dir.path().to_path_buf());
        drop(server);
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err(), "etcd still listening after drop");
        assert!(!dir.exists(), "data dir left behind");
    }
}
