//! skiff-runtime: the node's container runtime, where containers are plain processes. The agent hands
//! [`start`] a [`ContainerSpec`] (argv, env, the pod's network namespace, hostname, bind mounts, log path and a
//! per-container state directory) and the path of an executable that runs [`shim_main`] for `shim …`
//! arguments (the `skiff` binary). A detached supervisor ("shim", see [`shim`]) then puts the process in the
//! pod's network namespace plus private mount and UTS namespaces, writes its output to the log in the CRI
//! format and records its pid and, later, its exit in the state directory. Everything afterwards is read back
//! from that directory, so a restarted agent re-adopts containers: [`inspect`] gives the [`State`], [`stop`]
//! signals (TERM, grace, KILL), [`exec`] starts another process in the same namespaces (pipes or a terminal),
//! and [`read_logs`] streams the log as `kubectl logs` prints it.
//!
//! Files in a state directory: `config.json` (spec + shim path), `running.json` (pid, start time, supervisor
//! pid), `exit.json` (code, signal, finish time), `shim.log` (the supervisor's own diagnostics). Log files are
//! the agent's to name: kubelet's layout is `<pod log dir>/<container>/<restartCount>.log`, which makes the
//! previous instance's log (`--previous`) simply the file of `restartCount - 1` ([`container_log_path`]).
//!
//! Known limits, by design for now: the node's root filesystem is shared (a missing mount point is created on
//! it), there is no pid namespace (stopping signals the container's process group, and the supervisor kills
//! that group when the main process exits), and a container's own `stdin`/`tty` are not wired: it reads
//! `/dev/null` and writes through pipes (exec sessions do support both).

pub mod error;
pub mod exec;
mod lifecycle;
pub mod logs;
mod record;
pub mod shim;
pub mod spec;

use std::path::{Path, PathBuf};

pub use error::{Error, Result};
pub use exec::{ExecIo, ExecProcess, PtyReader, TtyResize, exec, exit_code};
pub use lifecycle::{inspect, remove, signal, start, stop, wait_exit};
pub use logs::{LogOptions, read_logs};
pub use shim::shim_main;
pub use spec::{ContainerSpec, Mount, Started, State};

/// Kubelet's log file for one run of a container: `<pod_log_dir>/<container>/<restart_count>.log`.
pub fn container_log_path(pod_log_dir: &Path, container: &str, restart_count: u32) -> PathBuf {
    pod_log_dir.join(container).join(format!("{restart_count}.log"))
}
