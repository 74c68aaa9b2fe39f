//! `shim exec DIR [--tty] -- ARGV`: join a running container's namespaces and become ARGV.
//!
//! Run as a fresh single-threaded process (joining a mount namespace requires it). The net, UTS and mount
//! namespace files of the container process are opened first, then joined; the program gets the container's
//! environment and working directory. With `--tty` stdio is a terminal: we start a session and reopen it so it
//! becomes our controlling terminal (^C reaches the program). Exit codes when the program cannot run:
//! 125 cannot enter the container, 126 cannot execute, 127 not found.

use std::ffi::OsString;
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitCode};

use nix::sched::{CloneFlags, setns};
use nix::unistd::setsid;

use super::EXEC_ENTER_FAILED;
use crate::record::{self, CONFIG, ConfigRecord, RUNNING, RunningRecord};

pub(super) fn run(dir: &Path, rest: &[OsString]) -> ExitCode {
    let tty = rest.first().is_some_and(|a| a == "--tty");
    let argv: Vec<&OsString> = rest.iter().skip_while(|a| *a != "--").skip(1).collect();
    let Some((program, args)) = argv.split_first() else {
        eprintln!("shim exec: no command given");
        return ExitCode::from(EXEC_ENTER_FAILED);
    };
    let config = match enter(dir, tty) {
        Ok(found) => found,
        Err(message) => {
            eprintln!("cannot exec in container: {message}");
            return ExitCode::from(EXEC_ENTER_FAILED);
        }
    };
    let spec = config.spec;
    let err = Command::new(program).args(args).env_clear().envs(spec.effective_env(tty)).current_dir(spec.cwd()).exec();
    eprintln!("exec {}: {err}", program.to_string_lossy());
    ExitCode::from(if err.kind() == std::io::ErrorKind::NotFound { 127 } else { 126 })
}

fn enter(dir: &Path, tty: bool) -> Result<ConfigRecord, String> {
    let read_err = |e: crate::Error| e.to_string();
    let config: ConfigRecord = record::read(dir, CONFIG).map_err(read_err)?.ok_or("no container config")?;
    let running: RunningRecord = record::read(dir, RUNNING).map_err(read_err)?.ok_or("container never started")?;
    if !record::alive(running.pid, running.start_ticks) {
        return Err("container is not running".into());
    }
    let open = |ns: &str| {
        File::open(format!("/proc/{}/ns/{ns}", running.pid)).map_err(|e| format!("opening {ns} namespace: {e}"))
    };
    let (net, uts, mnt) = (open("net")?, open("uts")?, open("mnt")?);
    if tty {
        setsid().map_err(|e| format!("setsid: {e}"))?;
        // Opening the terminal as a session leader without one makes it our controlling terminal.
        File::options().read(true).write(true).open("/proc/self/fd/0").map_err(|e| format!("opening terminal: {e}"))?;
    }
    for (file, flag, name) in [
        (&net, CloneFlags::CLONE_NEWNET, "net"),
        (&uts, CloneFlags::CLONE_NEWUTS, "uts"),
        (&mnt, CloneFlags::CLONE_NEWNS, "mnt"),
    ] {
        setns(file.as_fd(), flag).map_err(|e| format!("joining {name} namespace: {e}"))?;
    }
    Ok(config)
}
