//! `kubectl exec` on the node: a process started by the `shim exec` helper inside a running container's
//! network, UTS and mount namespaces, with the container's environment and working directory. Its stdio is
//! either pipes or, with `tty`, a pseudo-terminal whose master side the caller reads and writes (stdout and
//! stderr merged, as on a real terminal) and can resize.

use std::io::ErrorKind;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::pin::Pin;
use std::process::{ExitStatus, Stdio};
use std::task::{Context, Poll};

use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
use rustix::termios::{Winsize, tcsetwinsize};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};

use crate::error::{Error, Result};
use crate::record::{self, CONFIG, ConfigRecord};
use crate::spec::State;

/// A process running inside a container. Await `child.wait()` for its exit; see [`exit_code`].
#[derive(Debug)]
pub struct ExecProcess {
    /// The process itself (stdio already taken into `io`). Killed if dropped while running.
    pub child: Child,
    pub io: ExecIo,
}

/// The process's standard streams.
#[derive(Debug)]
pub enum ExecIo {
    /// Plain pipes; `stdin` is `None` unless requested (the process then reads `/dev/null`).
    Pipes { stdin: Option<ChildStdin>, stdout: ChildStdout, stderr: ChildStderr },
    /// A terminal: `output` ends (EOF) when the process and everything holding the terminal have exited.
    Tty { input: tokio::fs::File, output: PtyReader, resize: TtyResize },
}

/// Runs `argv` in the container of `state_dir`. `stdin` gives the process a pipe (or, with `tty`, the
/// terminal's input is kept either way). Fails with [`Error::NotRunning`] unless the container runs; a program
/// that cannot be found still starts the helper, which exits 127 with the reason on stderr.
pub async fn exec(state_dir: &Path, argv: &[String], tty: bool, stdin: bool) -> Result<ExecProcess> {
    if argv.is_empty() {
        return Err(Error::InvalidSpec("exec needs a command".into()));
    }
    if !matches!(crate::inspect(state_dir)?, State::Running { .. }) {
        return Err(Error::NotRunning);
    }
    let config: ConfigRecord = record::read(state_dir, CONFIG)?.ok_or(Error::NotRunning)?;
    let mut cmd = Command::new(&config.shim_exe);
    cmd.arg("shim").arg("exec").arg(state_dir);
    if tty {
        cmd.arg("--tty");
    }
    cmd.arg("--").args(argv).kill_on_drop(true);
    let spawn_err = Error::io(format!("spawning {}", config.shim_exe.display()));
    if tty {
        let (master, slave) = open_pty().map_err(Error::io("allocating a terminal"))?;
        let clone = |fd: &OwnedFd| fd.try_clone().map_err(Error::io("duplicating terminal"));
        cmd.stdin(Stdio::from(clone(&slave)?)).stdout(Stdio::from(clone(&slave)?)).stderr(Stdio::from(slave));
        let child = cmd.spawn().map_err(spawn_err)?;
        // `cmd` still holds the slave descriptors: drop it so the master sees EOF when the process ends.
        drop(cmd);
        let input = tokio::fs::File::from_std(std::fs::File::from(clone(&master)?));
        let output = PtyReader(tokio::fs::File::from_std(std::fs::File::from(clone(&master)?)));
        return Ok(ExecProcess { child, io: ExecIo::Tty { input, output, resize: TtyResize(master) } });
    }
    cmd.stdin(if stdin { Stdio::piped() } else { Stdio::null() }).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(spawn_err)?;
    let missing = || Error::Io { context: "exec stdio".into(), source: ErrorKind::BrokenPipe.into() };
    let io = ExecIo::Pipes {
        stdin: child.stdin.take(),
        stdout: child.stdout.take().ok_or_else(missing)?,
        stderr: child.stderr.take().ok_or_else(missing)?,
    };
    Ok(ExecProcess { child, io })
}

/// The exit code to report for a finished process: its status, or 128 + signal.
pub fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status.code().or_else(|| status.signal().map(|s| 128 + s)).unwrap_or(255)
}

/// Allocates a pseudo-terminal; both ends close on exec so only the child we hand the slave to keeps it.
fn open_pty() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
    grantpt(&master)?;
    unlockpt(&master)?;
    let name = ptsname(&master, Vec::new())?;
    let path = std::ffi::OsStr::from_bytes(name.as_bytes());
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(rustix::fs::OFlags::NOCTTY.bits() as i32)
        .open(path)?;
    tcsetwinsize(&master, Winsize { ws_row: 24, ws_col: 80, ws_xpixel: 0, ws_ypixel: 0 })?;
    Ok((master, slave.into()))
}

/// Changes the terminal size of a `tty` exec (the `resize` channel of `kubectl exec -t`).
#[derive(Debug)]
pub struct TtyResize(OwnedFd);

impl TtyResize {
    pub fn resize(&self, cols: u16, rows: u16) -> Result<()> {
        tcsetwinsize(&self.0, Winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 })
            .map_err(|e| Error::Io { context: "resizing terminal".into(), source: e.into() })
    }
}

/// The output side of a terminal. Linux reports the slave's last close as `EIO`; this turns it into EOF.
#[derive(Debug)]
pub struct PtyReader(tokio::fs::File);

impl AsyncRead for PtyReader {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        match Pin::new(&mut self.0).poll_read(cx, buf) {
            Poll::Ready(Err(e)) if e.raw_os_error() == Some(rustix::io::Errno::IO.raw_os_error()) => {
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}
