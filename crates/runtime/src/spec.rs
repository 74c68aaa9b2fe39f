//! The public data of the runtime: what to run ([`ContainerSpec`]) and what became of it ([`Started`], [`State`]).

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// PATH given to a container whose environment has none (the usual image default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Everything needed to run one container as a process on this node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// The container's identity (for messages; the state directory is what names it on disk).
    pub id: String,
    /// The program and its arguments (already resolved from image entrypoint/cmd and `command`/`args`).
    pub argv: Vec<String>,
    /// The environment, in order; `PATH` and `HOSTNAME` are added when missing.
    pub env: Vec<(String, String)>,
    /// Working directory inside the container; `/` when unset.
    pub working_dir: Option<PathBuf>,
    /// The pod's network namespace (e.g. `/run/netns/<name>`); `None` keeps the host's (hostNetwork pods).
    pub netns: Option<PathBuf>,
    /// Hostname set in the container's own UTS namespace.
    pub hostname: String,
    /// Bind mounts applied in the container's private mount namespace, in order.
    pub mounts: Vec<Mount>,
    /// Where the supervisor writes stdout/stderr in the CRI log format.
    pub log_path: PathBuf,
    /// A directory owned by this container instance: its config, pid and exit records live here.
    pub state_dir: PathBuf,
    /// Keep stdin open. Not supported yet: the process always gets `/dev/null` (see crate docs).
    pub stdin: bool,
    /// Allocate a terminal. Not supported yet for the main process: output goes through pipes (see crate docs).
    pub tty: bool,
}

/// A bind mount of a host file or directory over a path seen by the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    pub source: PathBuf,
    pub target: PathBuf,
    pub read_only: bool,
}

/// What [`crate::start`] reports once the process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Started {
    pub pid: i32,
    pub started_at: DateTime<Utc>,
}

/// The state of a container as recorded in its state directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// The process is alive (checked against its recorded start time, so a reused pid does not count).
    Running { pid: i32, started_at: DateTime<Utc> },
    /// The process ended. `code` follows container runtimes: the exit status, or 128 + signal when killed.
    Exited {
        code: i32,
        signal: Option<i32>,
        started_at: DateTime<Utc>,
        finished_at: DateTime<Utc>,
        /// Set when the supervisor itself disappeared before it could record the real exit.
        message: Option<String>,
    },
    /// Nothing was ever started from this state directory.
    Unknown,
}

impl ContainerSpec {
    /// Checks what the supervisor cannot recover from later.
    pub fn validate(&self) -> Result<()> {
        if self.argv.first().is_none_or(|a| a.is_empty()) {
            return Err(Error::InvalidSpec("argv must name a program".into()));
        }
        if self.hostname.is_empty() || self.hostname.len() > 64 {
            return Err(Error::InvalidSpec(format!("hostname {:?} must be 1-64 characters", self.hostname)));
        }
        if self.state_dir.as_os_str().is_empty() || self.log_path.as_os_str().is_empty() {
            return Err(Error::InvalidSpec("state_dir and log_path are required".into()));
        }
        for m in &self.mounts {
            if !m.target.is_absolute() {
                return Err(Error::InvalidSpec(format!("mount target {} must be absolute", m.target.display())));
            }
        }
        Ok(())
    }

    /// The environment the process really gets: the spec's, plus `PATH`, `HOSTNAME` (and `TERM` for terminals)
    /// when missing, as container runtimes do.
    pub fn effective_env(&self, tty: bool) -> Vec<(String, String)> {
        let mut env = self.env.clone();
        let has = |env: &[(String, String)], k: &str| env.iter().any(|(n, _)| n == k);
        if !has(&env, "PATH") {
            env.push(("PATH".into(), DEFAULT_PATH.into()));
        }
        if !has(&env, "HOSTNAME") {
            env.push(("HOSTNAME".into(), self.hostname.clone()));
        }
        if tty && !has(&env, "TERM") {
            env.push(("TERM".into(), "xterm".into()));
        }
        env
    }

    /// The working directory the process starts in.
    pub fn cwd(&self) -> PathBuf {
        self.working_dir.clone().unwrap_or_else(|| PathBuf::from("/"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ContainerSpec {
        ContainerSpec {
            id: "c".into(),
            argv: vec!["sleep".into(), "1".into()],
            hostname: "pod-a".into(),
            log_path: "/tmp/x.log".into(),
            state_dir: "/tmp/x".into(),
            ..Default::default()
        }
    }

    #[test]
    fn validate_rejects_empty_argv_and_bad_hostname() {
        assert!(spec().validate().is_ok());
        let mut s = spec();
        s.argv.clear();
        assert!(matches!(s.validate(), Err(Error::InvalidSpec(_))));
        let mut s = spec();
        s.hostname = "x".repeat(65);
        assert!(matches!(s.validate(), Err(Error::InvalidSpec(_))));
        let mut s = spec();
        s.mounts.push(Mount { source: "/a".into(), target: "rel".into(), read_only: false });
        assert!(matches!(s.validate(), Err(Error::InvalidSpec(_))));
    }

    #[test]
    fn effective_env_adds_defaults_only_when_missing() {
        let mut s = spec();
        s.env = vec![("PATH".into(), "/bin".into())];
        let env = s.effective_env(true);
        assert_eq!(env[0], ("PATH".to_string(), "/bin".to_string()));
        assert!(env.contains(&("HOSTNAME".into(), "pod-a".into())));
        assert!(env.contains(&("TERM".into(), "xterm".into())));
        assert_eq!(env.iter().filter(|(k, _)| k == "PATH").count(), 1);
        assert!(!spec().effective_env(false).iter().any(|(k, _)| k == "TERM"));
    }
}
