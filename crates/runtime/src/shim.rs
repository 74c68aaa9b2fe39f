//! The supervisor ("shim") side, run as `<exe> shim <command> …` by a binary that hands those arguments to
//! [`shim_main`] before it starts any threads (setns into a mount namespace needs a single-threaded process).
//!
//! Process tree, a classic double fork done with plain `exec`s so no `unsafe` is needed:
//! `agent ─▶ shim start DIR ─▶ shim supervise DIR ─▶ container`. `start` spawns the supervisor, relays its
//! one-line report (`ok` or `error: …`) to the agent and exits at once, so the supervisor is re-parented to
//! init (or the nearest subreaper) and the agent never has to reap it. The supervisor calls `setsid`, enters
//! the pod's network namespace, unshares mount and UTS namespaces, applies the bind mounts and hostname, spawns
//! the container process in its own process group, writes `running.json`, then copies the process's output
//! into the CRI log until it exits and records `exit.json`. `shim exec DIR [--tty] -- ARGV` is the helper
//! behind [`crate::exec`]: it joins the container's namespaces and `exec`s ARGV in place.

mod enter;
mod supervise;

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use crate::record::SHIM_LOG;

/// Exit code of `shim exec` when it cannot enter the container (like `docker exec`'s 125-127 family).
pub const EXEC_ENTER_FAILED: u8 = 125;

/// Entry point for `skiff shim …`: pass the arguments after `shim`. Call it before creating any threads or
/// async runtime.
pub fn shim_main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let args: Vec<OsString> = args.into_iter().collect();
    let command = args.first().and_then(|a| a.to_str()).unwrap_or_default();
    let dir = args.get(1).map(PathBuf::from);
    match (command, dir) {
        ("start", Some(dir)) => start_supervisor(&dir),
        ("supervise", Some(dir)) => supervise::run(&dir),
        ("exec", Some(dir)) => enter::run(&dir, &args[2..]),
        _ => {
            eprintln!("usage: shim start|supervise DIR | shim exec DIR [--tty] -- ARGV...");
            ExitCode::from(64)
        }
    }
}

/// The first fork: spawn the supervisor detached from us, relay its report, and leave.
fn start_supervisor(dir: &Path) -> ExitCode {
    match spawn_supervisor(dir) {
        Ok(line) => {
            let line = line.trim();
            let line = if line.is_empty() { "error: supervisor exited before reporting" } else { line };
            println!("{line}");
            let _ = std::io::stdout().flush();
            if line == "ok" { ExitCode::SUCCESS } else { ExitCode::FAILURE }
        }
        Err(e) => {
            println!("error: spawning supervisor: {e}");
            ExitCode::FAILURE
        }
    }
}

fn spawn_supervisor(dir: &Path) -> std::io::Result<String> {
    let exe = std::env::current_exe()?;
    let diagnostics = std::fs::OpenOptions::new().create(true).append(true).open(dir.join(SHIM_LOG))?;
    let mut child = Command::new(exe)
        .arg("shim")
        .arg("supervise")
        .arg(dir)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(diagnostics)
        .spawn()?;
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        BufReader::new(out).read_line(&mut line)?;
    }
    // Not waited for on purpose: the supervisor outlives this process.
    Ok(line)
}
