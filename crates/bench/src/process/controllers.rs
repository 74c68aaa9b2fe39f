//! A `skiff controllers --kubeconfig FILE` process of the benchmark's own, so the controllers' memory can be read
//! apart from the API server's; stopped by its pid when the guard drops.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{log_file, log_tail, peak_rss_kib, rss_kib, terminate};
use crate::BenchError;

/// A running `skiff controllers`.
pub struct Controllers {
    child: Child,
    log: PathBuf,
}

impl Controllers {
    /// Spawns `binary controllers --kubeconfig kubeconfig`, logging warnings and errors to `log`. The process has
    /// no readiness endpoint; [`Controllers::check_running`] tells whether it is still up.
    pub fn start(binary: &Path, kubeconfig: &Path, log: &Path) -> Result<Self, BenchError> {
        let file = log_file(log)?;
        let child = Command::new(binary)
            .arg("controllers")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .map_err(|source| BenchError::Spawn { what: "skiff controllers", path: binary.into(), source })?;
        Ok(Self { child, log: log.to_path_buf() })
    }

    /// An error when the process has exited.
    pub fn check_running(&mut self) -> Result<(), BenchError> {
        match self.child.try_wait() {
            Ok(Some(status)) => Err(BenchError::Exited { what: "skiff controllers", status, log: self.log_tail() }),
            _ => Ok(()),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The resident set size now, in KiB.
    pub fn rss_kib(&self) -> Result<u64, BenchError> {
        rss_kib(self.pid())
    }

    /// The peak resident set size so far, in KiB.
    pub fn peak_rss_kib(&self) -> Result<u64, BenchError> {
        peak_rss_kib(self.pid())
    }

    /// The last lines of the log.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log, 30)
    }

    /// Stops the process with SIGTERM (SIGKILL after 10 s).
    pub fn stop(mut self) {
        terminate(&mut self.child, Duration::from_secs(10));
    }
}

impl Drop for Controllers {
    fn drop(&mut self) {
        terminate(&mut self.child, Duration::from_secs(10));
    }
}
