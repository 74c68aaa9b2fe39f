//! A throwaway etcd for tests: its own process on free loopback ports with a temporary data dir, killed
//! (by pid, SIGKILL) when dropped, also when the test panics.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use skiff_store::EtcdStore;

/// Where the etcd binary is (`SKIFF_TEST_ETCD` overrides Debian's `/usr/bin/etcd`).
fn etcd_binary() -> PathBuf {
    std::env::var_os("SKIFF_TEST_ETCD").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/usr/bin/etcd"))
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub struct EtcdServer {
    child: Child,
    pub endpoint: String,
    dir: tempfile::TempDir,
}

impl EtcdServer {
    pub async fn start() -> anyhow::Result<Self> {
        let bin = etcd_binary();
        if !bin.exists() {
            // Fail, never skip: CI installs etcd (Debian package `etcd-server`).
            panic!(
                "etcd binary {} not found: install etcd (apt-get install etcd-server) or set SKIFF_TEST_ETCD",
                bin.display()
            );
        }
        let dir = tempfile::tempdir()?;
        let (client, peer) = (free_port()?, free_port()?);
        let endpoint = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log = std::fs::File::create(dir.path().join("etcd.log"))?;
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
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut server = EtcdServer { child, endpoint, dir };
        server.wait_ready().await?;
        Ok(server)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("etcd exited with {status} before it was ready; log:\n{}", read_log(&self.log_path()));
            }
            let attempt = tokio::time::timeout(Duration::from_secs(2), self.connect()).await;
            if let Ok(Ok(_)) = attempt {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("etcd at {} not ready after 30s; log:\n{}", self.endpoint, read_log(&self.log_path()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn connect(&self) -> anyhow::Result<EtcdStore> {
        Ok(EtcdStore::connect(std::slice::from_ref(&self.endpoint)).await?)
    }
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        // Our own child, by pid.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
