//! The supervisor proper: namespaces, mounts and hostname, then the process, its log and its exit record.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use nix::mount::{MsFlags, mount};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sched::{CloneFlags, setns, unshare};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::{Pid, sethostname, setsid};

use crate::logs::{CriWriter, LogStream};
use crate::record::{self, CONFIG, ConfigRecord, EXIT, ExitRecord, RUNNING, RunningRecord};
use crate::spec::{ContainerSpec, Mount};

/// After the process exits, how long to keep copying output still held open by processes it left behind.
const DRAIN: Duration = Duration::from_millis(500);
/// Poll period when pidfds are unavailable.
const FALLBACK_TICK: u16 = 100;

pub(super) fn run(dir: &Path) -> ExitCode {
    // Our own session: no terminal signals from the agent's, and we survive its process group being killed.
    let _ = setsid();
    match prepare_and_spawn(dir) {
        Ok((child, log)) => {
            println!("ok");
            let _ = std::io::stdout().flush();
            let exit = supervise(child, log);
            match record::write(dir, EXIT, &exit) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("recording exit: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(message) => {
            println!("error: {message}");
            let _ = std::io::stdout().flush();
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}

fn prepare_and_spawn(dir: &Path) -> Result<(Child, File), String> {
    let config: ConfigRecord = record::read(dir, CONFIG)
        .map_err(|e| format!("reading config: {e}"))?
        .ok_or_else(|| format!("no {CONFIG} in {}", dir.display()))?;
    let spec = config.spec;
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&spec.log_path)
        .map_err(|e| format!("opening log {}: {e}", spec.log_path.display()))?;
    enter_namespaces(&spec)?;
    let program = &spec.argv[0];
    let child = Command::new(program)
        .args(&spec.argv[1..])
        .env_clear()
        .envs(spec.effective_env(false))
        .current_dir(spec.cwd())
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("exec {program:?}: {e}"))?;
    let pid = child.id() as i32;
    let own = std::process::id() as i32;
    let ticks = |pid| record::proc_stat(pid).map(|(_, t)| t).unwrap_or_default();
    let running = RunningRecord {
        pid,
        start_ticks: ticks(pid),
        started_at: Utc::now(),
        shim_pid: own,
        shim_start_ticks: ticks(own),
    };
    if let Err(e) = record::write(dir, RUNNING, &running) {
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        return Err(format!("recording pid: {e}"));
    }
    Ok((child, log))
}

/// Joins the pod's network namespace and gives the container its own mount and UTS namespaces.
fn enter_namespaces(spec: &ContainerSpec) -> Result<(), String> {
    if let Some(netns) = &spec.netns {
        let ns = File::open(netns).map_err(|e| format!("opening netns {}: {e}", netns.display()))?;
        setns(ns.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| format!("joining netns {}: {e}", netns.display()))?;
    }
    unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS).map_err(|e| format!("unshare: {e}"))?;
    // Private propagation: nothing we mount leaks back to the host's namespace.
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(|e| format!("making mounts private: {e}"))?;
    for m in &spec.mounts {
        bind(m)?;
    }
    sethostname(&spec.hostname).map_err(|e| format!("setting hostname: {e}"))
}

fn bind(m: &Mount) -> Result<(), String> {
    let what = format!("{} on {}", m.source.display(), m.target.display());
    ensure_target(m).map_err(|e| format!("creating mount point {}: {e}", m.target.display()))?;
    mount(Some(&m.source), &m.target, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
        .map_err(|e| format!("bind mounting {what}: {e}"))?;
    if m.read_only {
        let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
        mount(None::<&str>, &m.target, None::<&str>, flags, None::<&str>)
            .map_err(|e| format!("making {what} read-only: {e}"))?;
    }
    Ok(())
}

/// Containers share the node's root filesystem, so a missing mount point is created on it (an empty directory
/// or file, matching the source) and left there.
fn ensure_target(m: &Mount) -> std::io::Result<()> {
    if m.target.exists() {
        return Ok(());
    }
    if m.source.is_dir() {
        return std::fs::create_dir_all(&m.target);
    }
    if let Some(parent) = m.target.parent() {
        std::fs::create_dir_all(parent)?;
    }
    OpenOptions::new().create(true).truncate(false).write(true).open(&m.target).map(drop)
}

/// Copies output into the log until the process exits (and its output is drained), then reports the exit.
fn supervise(mut child: Child, log: File) -> ExitRecord {
    let pid = child.id() as i32;
    let pidfd: Option<OwnedFd> = rustix::process::Pid::from_raw(pid)
        .and_then(|p| rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok());
    let mut streams = [
        child.stdout.take().map(|s| (LogStream::Stdout, Box::new(s) as Box<dyn ReadFd>)),
        child.stderr.take().map(|s| (LogStream::Stderr, Box::new(s) as Box<dyn ReadFd>)),
    ];
    let mut writer = CriWriter::new(log);
    let mut status: Option<ExitStatus> = None;
    let mut drain_until: Option<Instant> = None;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if status.is_none()
            && let Ok(Some(s)) = child.try_wait()
        {
            status = Some(s);
            // Like the end of a pid namespace: whatever the process left in its group goes with it.
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            drain_until = Some(Instant::now() + DRAIN);
        }
        let open = streams.iter().any(Option::is_some);
        if !open && status.is_some() || drain_until.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        if !open {
            status = child.wait().ok();
            continue;
        }
        let timeout = match (drain_until, &pidfd) {
            (Some(d), _) => {
                PollTimeout::try_from(d.saturating_duration_since(Instant::now())).unwrap_or(PollTimeout::ZERO)
            }
            (None, Some(_)) => PollTimeout::NONE,
            (None, None) => PollTimeout::from(FALLBACK_TICK),
        };
        let ready = {
            let mut fds: Vec<PollFd> =
                streams.iter().flatten().map(|(_, s)| PollFd::new(s.fd(), PollFlags::POLLIN)).collect();
            let watch_exit = status.is_none() && pidfd.is_some();
            if let (true, Some(p)) = (watch_exit, &pidfd) {
                fds.push(PollFd::new(p.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, timeout) {
                Ok(_) => fds.iter().map(|f| f.revents().is_some_and(|r| !r.is_empty())).collect::<Vec<_>>(),
                Err(_) => Vec::new(),
            }
        };
        let mut ready = ready.into_iter();
        for slot in streams.iter_mut() {
            let Some((stream, source)) = slot else { continue };
            if !ready.next().unwrap_or(false) {
                continue;
            }
            let stream = *stream;
            match source.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = writer.finish(stream, Utc::now());
                    *slot = None;
                }
                Ok(n) => {
                    if let Err(e) = writer.push(stream, &buf[..n], Utc::now()) {
                        eprintln!("writing log: {e}");
                    }
                }
            }
        }
    }
    for stream in [LogStream::Stdout, LogStream::Stderr] {
        let _ = writer.finish(stream, Utc::now());
    }
    let status = status.or_else(|| child.wait().ok());
    let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    let signal = status.and_then(|s| s.signal());
    let code = match (status.and_then(|s| s.code()), signal) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        (None, None) => 255,
    };
    ExitRecord { code, signal, finished_at: Utc::now() }
}

/// A readable pipe we can also poll.
trait ReadFd: Read {
    fn fd(&self) -> std::os::fd::BorrowedFd<'_>;
}

impl<T: Read + AsFd> ReadFd for T {
    fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.as_fd()
    }
}
