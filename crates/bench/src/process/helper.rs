//! A helper process of the benchmark's own beside the server — `skiff controllers` or `skiff agent` — so its
//! memory can be read apart from the API server's; stopped by its pid when the guard drops.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{log_file, log_tail, peak_rss_kib, rss_kib, terminate};
use crate::BenchError;

/// A running `skiff controllers` or `skiff agent`.
pub struct Helper {
    child: Child,
    log: PathBuf,
    what: &'static str,
}

impl Helper {
    /// Spawns `binary controllers --kubeconfig kubeconfig`, logging warnings and errors to `log`. The process has
    /// no readiness endpoint; [`Helper::check_running`] tells whether it is still up.
    pub fn controllers(binary: &Path, kubeconfig: &Path, log: &Path) -> Result<Self, BenchError> {
        Self::spawn(
            binary,
            "skiff controllers",
            vec!["controllers".into(), "--kubeconfig".into(), kubeconfig.into()],
            log,
            "warn",
        )
    }

    /// Spawns `binary agent` for the server whose data dir is `server_data_dir`, as node `node_name` on
    /// 127.0.0.1 with its streaming server on `agent_port`, logging what `rust_log` selects, with `extra` flags
    /// appended (such as `--disable-proxy`).
    #[allow(clippy::too_many_arguments)]
    pub fn agent(
        binary: &Path,
        kubeconfig: &Path,
        server_data_dir: &Path,
        node_name: &str,
        agent_port: u16,
        log: &Path,
        rust_log: &str,
        extra: &[&str],
    ) -> Result<Self, BenchError> {
        let mut args: Vec<OsString> = vec!["agent".into(), "--kubeconfig".into(), kubeconfig.into()];
        args.extend(["--server-data-dir".into(), server_data_dir.into()]);
        args.extend(["--node-ip", "127.0.0.1", "--node-name", node_name].map(OsString::from));
        args.extend(["--agent-port".into(), agent_port.to_string().into()]);
        args.extend(extra.iter().map(OsString::from));
        Self::spawn(binary, "skiff agent", args, log, rust_log)
    }

    fn spawn(
        binary: &Path,
        what: &'static str,
        args: Vec<OsString>,
        log: &Path,
        rust_log: &str,
    ) -> Result<Self, BenchError> {
        let file = log_file(log)?;
        let child = Command::new(binary)
            .args(args)
            .env("RUST_LOG", rust_log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .map_err(|source| BenchError::Spawn { what, path: binary.into(), source })?;
        Ok(Self { child, log: log.to_path_buf(), what })
    }

    /// An error when the process has exited.
    pub fn check_running(&mut self) -> Result<(), BenchError> {
        match self.child.try_wait() {
            Ok(Some(status)) => Err(BenchError::Exited { what: self.what, status, log: self.log_tail() }),
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

impl Drop for Helper {
    fn drop(&mut self) {
        terminate(&mut self.child, Duration::from_secs(10));
    }
}
