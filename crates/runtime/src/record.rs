//! The files in a container's state directory, shared by the agent side and the supervisor:
//! `config.json` (written by `start`), `running.json` (written by the supervisor once the process runs) and
//! `exit.json` (written by the supervisor when it ends). Every write is atomic (temp file + rename), so a reader
//! never sees half a record, and a process is only believed alive when its recorded start time matches `/proc`.

use std::fs;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::spec::ContainerSpec;

pub(crate) const CONFIG: &str = "config.json";
pub(crate) const RUNNING: &str = "running.json";
pub(crate) const EXIT: &str = "exit.json";
pub(crate) const SHIM_LOG: &str = "shim.log";

/// The spec plus the executable that supervises it (also used for `exec`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ConfigRecord {
    pub spec: ContainerSpec,
    pub shim_exe: PathBuf,
}

/// The running process and its supervisor, each with its start time in clock ticks since boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RunningRecord {
    pub pid: i32,
    pub start_ticks: u64,
    pub started_at: DateTime<Utc>,
    pub shim_pid: i32,
    pub shim_start_ticks: u64,
}

/// How the process ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ExitRecord {
    pub code: i32,
    pub signal: Option<i32>,
    pub finished_at: DateTime<Utc>,
}

pub(crate) fn write<T: Serialize>(dir: &Path, name: &str, value: &T) -> Result<()> {
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let data = serde_json::to_vec_pretty(value).map_err(|source| Error::Corrupt { path: path.clone(), source })?;
    fs::write(&tmp, data).map_err(Error::io(format!("writing {}", tmp.display())))?;
    fs::rename(&tmp, &path).map_err(Error::io(format!("renaming {}", path.display())))
}

/// Reads a record; `Ok(None)` when the file does not exist.
pub(crate) fn read<T: DeserializeOwned>(dir: &Path, name: &str) -> Result<Option<T>> {
    let path = dir.join(name);
    match fs::read(&path) {
        Ok(data) => serde_json::from_slice(&data).map(Some).map_err(|source| Error::Corrupt { path, source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::Io { context: format!("reading {}", path.display()), source: e }),
    }
}

/// Process state letter and start time (field 22 of `/proc/<pid>/stat`), or `None` if there is no such process.
pub(crate) fn proc_stat(pid: i32) -> Option<(char, u64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat)
}

fn parse_stat(stat: &str) -> Option<(char, u64)> {
    // The command name (field 2) may contain spaces and parentheses; everything after the last ')' is regular.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// True when `pid` is a live (not zombie) process that started at `start_ticks`.
pub(crate) fn alive(pid: i32, start_ticks: u64) -> bool {
    matches!(proc_stat(pid), Some((state, ticks)) if ticks == start_ticks && state != 'Z' && state != 'X')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_stat_handles_odd_command_names() {
        let line = "1234 (my) (x y) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_stat(line), Some(('S', 987654)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn alive_checks_start_time_of_this_process() {
        let me = std::process::id() as i32;
        let (state, ticks) = proc_stat(me).expect("own stat");
        assert_ne!(state, 'Z');
        assert!(alive(me, ticks));
        assert!(!alive(me, ticks + 1));
    }

    #[test]
    fn records_round_trip_and_missing_is_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rec = ExitRecord { code: 3, signal: None, finished_at: Utc::now() };
        write(dir.path(), EXIT, &rec).expect("write");
        assert_eq!(read::<ExitRecord>(dir.path(), EXIT).expect("read"), Some(rec));
        assert_eq!(read::<ExitRecord>(dir.path(), RUNNING).expect("read"), None);
        fs::write(dir.path().join(RUNNING), b"{").expect("write");
        assert!(matches!(read::<RunningRecord>(dir.path(), RUNNING), Err(Error::Corrupt { .. })));
    }
}
