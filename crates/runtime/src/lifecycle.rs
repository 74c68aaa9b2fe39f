//! Starting, inspecting, stopping and removing containers from the agent's side. Everything is read back from
//! the state directory, so a restarted agent re-adopts running containers by calling [`inspect`] on their
//! directories: no in-memory handle is needed.

use std::path::Path;
use std::time::Duration;

use chrono::Utc;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tokio::process::Command;

use crate::error::{Error, Result};
use crate::record::{self, CONFIG, ConfigRecord, EXIT, ExitRecord, RUNNING, RunningRecord};
use crate::spec::{ContainerSpec, Started, State};

const STOP_POLL: Duration = Duration::from_millis(20);
/// How long to wait for the supervisor to record the exit after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// Starts `spec.argv` under a supervisor run as `shim_exe shim start <state_dir>` (the `skiff` binary, or any
/// binary whose `main` hands `shim …` arguments to [`crate::shim_main`]). Returns once the process runs: the
/// supervisor has entered the namespaces, applied the mounts and spawned it. Failures to do so (executable not
/// found, bad netns, bad mount) come back as [`Error::Start`] and leave nothing running.
pub async fn start(spec: &ContainerSpec, shim_exe: &Path) -> Result<Started> {
    spec.validate()?;
    let dir = &spec.state_dir;
    tokio::fs::create_dir_all(dir).await.map_err(Error::io(format!("creating {}", dir.display())))?;
    if dir.join(RUNNING).exists() || dir.join(EXIT).exists() {
        return Err(Error::StateDirInUse(dir.clone()));
    }
    if let Some(parent) = spec.log_path.parent() {
        tokio::fs::create_dir_all(parent).await.map_err(Error::io(format!("creating {}", parent.display())))?;
    }
    let shim_exe = std::path::absolute(shim_exe).map_err(Error::io("resolving the shim executable"))?;
    record::write(dir, CONFIG, &ConfigRecord { spec: spec.clone(), shim_exe: shim_exe.clone() })?;
    let output = Command::new(&shim_exe)
        .arg("shim")
        .arg("start")
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(Error::io(format!("running {}", shim_exe.display())))?;
    let report = String::from_utf8_lossy(&output.stdout);
    let report = report.trim();
    if !output.status.success() || report != "ok" {
        let message = report.strip_prefix("error: ").unwrap_or(report);
        let message = if message.is_empty() {
            format!("supervisor failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr).trim())
        } else {
            message.to_string()
        };
        return Err(Error::Start { id: spec.id.clone(), message });
    }
    let running: RunningRecord = record::read(dir, RUNNING)?
        .ok_or_else(|| Error::Start { id: spec.id.clone(), message: "supervisor reported no process".into() })?;
    tracing::debug!(id = %spec.id, pid = running.pid, shim = running.shim_pid, "container started");
    Ok(Started { pid: running.pid, started_at: running.started_at })
}

/// The container's state as recorded in `state_dir`; works from any process at any time (re-adoption).
pub fn inspect(state_dir: &Path) -> Result<State> {
    if let Some(state) = exited(state_dir)? {
        return Ok(state);
    }
    let Some(run) = record::read::<RunningRecord>(state_dir, RUNNING)? else {
        return Ok(State::Unknown);
    };
    if record::alive(run.pid, run.start_ticks) || record::alive(run.shim_pid, run.shim_start_ticks) {
        // A live supervisor with a dead child is about to write exit.json: still running until it does.
        return Ok(State::Running { pid: run.pid, started_at: run.started_at });
    }
    // The supervisor may have recorded the exit and gone between our two reads.
    if let Some(state) = exited(state_dir)? {
        return Ok(state);
    }
    Ok(State::Exited {
        code: 255,
        signal: None,
        started_at: run.started_at,
        finished_at: Utc::now(),
        message: Some("the container's supervisor exited without recording the exit status".into()),
    })
}

fn exited(state_dir: &Path) -> Result<Option<State>> {
    let Some(exit) = record::read::<ExitRecord>(state_dir, EXIT)? else {
        return Ok(None);
    };
    let started_at = record::read::<RunningRecord>(state_dir, RUNNING)?.map_or(exit.finished_at, |r| r.started_at);
    Ok(Some(State::Exited {
        code: exit.code,
        signal: exit.signal,
        started_at,
        finished_at: exit.finished_at,
        message: None,
    }))
}

/// Sends `signal` to the container's main process, as `runc kill` does (SIGKILL goes to its whole process
/// group, standing in for the end of a pid namespace). Checks the recorded start time first, so a reused pid is
/// never signalled.
pub fn signal(state_dir: &Path, signal: Signal) -> Result<()> {
    let Some(run) = record::read::<RunningRecord>(state_dir, RUNNING)? else {
        return Err(Error::NotRunning);
    };
    if !record::alive(run.pid, run.start_ticks) {
        return Err(Error::NotRunning);
    }
    let pid = Pid::from_raw(run.pid);
    let sent = if signal == Signal::SIGKILL { killpg(pid, signal) } else { kill(pid, signal) };
    match sent {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(e) => Err(Error::sys(format!("sending {signal} to container {}", run.pid))(e)),
    }
}

/// Graceful stop: SIGTERM, up to `grace` for the process to end, then SIGKILL. Returns the final state
/// (normally [`State::Exited`]); a container that is not running is left alone.
pub async fn stop(state_dir: &Path, grace: Duration) -> Result<State> {
    if !matches!(inspect(state_dir)?, State::Running { .. }) {
        return inspect(state_dir);
    }
    let _ = signal(state_dir, Signal::SIGTERM);
    if let Some(state) = wait_exit(state_dir, grace).await? {
        return Ok(state);
    }
    tracing::debug!(dir = %state_dir.display(), "grace period over, killing container");
    let _ = signal(state_dir, Signal::SIGKILL);
    Ok(wait_exit(state_dir, KILL_WAIT).await?.unwrap_or(inspect(state_dir)?))
}

/// Waits up to `timeout` for the container to be recorded as exited.
pub async fn wait_exit(state_dir: &Path, timeout: Duration) -> Result<Option<State>> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let state = inspect(state_dir)?;
        if !matches!(state, State::Running { .. }) {
            return Ok(Some(state));
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(STOP_POLL).await;
    }
}

/// Deletes the state directory of a container that is not running (the log file is the caller's).
pub fn remove(state_dir: &Path) -> Result<()> {
    if matches!(inspect(state_dir)?, State::Running { .. }) {
        return Err(Error::StillRunning);
    }
    match std::fs::remove_dir_all(state_dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(Error::Io { context: format!("removing {}", state_dir.display()), source: e })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inspect_reads_records_and_detects_a_lost_supervisor() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(inspect(dir.path()).expect("inspect"), State::Unknown);
        // A record whose processes do not exist (start time 1 never matches): the supervisor is gone.
        let now = Utc::now();
        let run = RunningRecord { pid: 1, start_ticks: u64::MAX, started_at: now, shim_pid: 1, shim_start_ticks: 1 };
        record::write(dir.path(), RUNNING, &run).expect("write");
        assert!(matches!(inspect(dir.path()).expect("inspect"), State::Exited { code: 255, message: Some(_), .. }));
        assert!(matches!(signal(dir.path(), Signal::SIGTERM), Err(Error::NotRunning)));
        record::write(dir.path(), EXIT, &ExitRecord { code: 137, signal: Some(9), finished_at: now }).expect("write");
        assert_eq!(
            inspect(dir.path()).expect("inspect"),
            State::Exited { code: 137, signal: Some(9), started_at: now, finished_at: now, message: None }
        );
        remove(dir.path()).expect("remove");
        assert!(!dir.path().exists());
    }

    #[test]
    fn inspect_sees_a_live_process_as_running() {
        let dir = tempfile::tempdir().expect("tempdir");
        let me = std::process::id() as i32;
        let (_, ticks) = record::proc_stat(me).expect("stat");
        let run =
            RunningRecord { pid: me, start_ticks: ticks, started_at: Utc::now(), shim_pid: me, shim_start_ticks: 0 };
        record::write(dir.path(), RUNNING, &run).expect("write");
        assert!(matches!(inspect(dir.path()).expect("inspect"), State::Running { pid, .. } if pid == me));
        assert!(matches!(remove(dir.path()), Err(Error::StillRunning)));
    }
}
