//! Running one CNI plugin binary the way the spec describes: parameters in `CNI_*` environment variables, the
//! network configuration on stdin, a result or an error object on stdout.
//!
//! Each invocation runs on a dedicated OS thread that first enters the plugins' network namespace when one is
//! configured (the "node" namespace in tests; the agent's own namespace otherwise), so the child process starts
//! there and the async runtime's threads never change namespace.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::netns::{self, NetnsError};
use crate::result::PluginError;

/// The PATH given to plugins when the agent has none; plugins call `iptables` through it.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A CNI operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Add,
    Check,
    Del,
    Version,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Add => "ADD",
            Op::Check => "CHECK",
            Op::Del => "DEL",
            Op::Version => "VERSION",
        }
    }
}

/// Why running a plugin failed.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("plugin {plugin:?} not found in {dirs:?}")]
    NotFound { plugin: String, dirs: Vec<PathBuf> },
    #[error("plugin {plugin} {op}: spawn or wait failed")]
    Spawn {
        plugin: String,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("plugin {plugin} {op} failed with code {code}: {msg}{}", if details.is_empty() { String::new() } else { format!(" ({details})") })]
    Plugin { plugin: String, op: &'static str, code: u32, msg: String, details: String },
    #[error("plugin {plugin} {op} exited with {status} and no error object: {stderr}")]
    Crashed { plugin: String, op: &'static str, status: String, stderr: String },
    #[error("plugin {plugin} {op} printed output that is not JSON: {output:?}")]
    BadOutput {
        plugin: String,
        op: &'static str,
        output: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("enter the plugin network namespace")]
    Netns(#[from] NetnsError),
    #[error("the plugin thread went away")]
    ThreadLost,
}

/// One call of one plugin.
#[derive(Debug, Clone)]
pub struct Invocation<'a> {
    pub op: Op,
    pub container_id: &'a str,
    /// `CNI_NETNS`; `None` leaves it empty (allowed for DEL when the namespace is gone).
    pub netns: Option<&'a Path>,
    pub ifname: &'a str,
    /// `CNI_ARGS` (`K=V;K=V`).
    pub args: &'a str,
}

/// Where plugins are found and in which namespace they run.
#[derive(Debug, Clone)]
pub struct Runner {
    pub plugin_dirs: Vec<PathBuf>,
    /// The network namespace the plugins run in; `None` = the agent's own.
    pub plugin_netns: Option<PathBuf>,
}

impl Runner {
    /// Finds the binary for a plugin `type`.
    pub fn find(&self, plugin: &str) -> Result<PathBuf, ExecError> {
        let valid = !plugin.is_empty() && !plugin.contains('/') && plugin != "." && plugin != "..";
        valid
            .then(|| self.plugin_dirs.iter().map(|d| d.join(plugin)).find(|p| p.is_file()))
            .flatten()
            .ok_or_else(|| ExecError::NotFound { plugin: plugin.into(), dirs: self.plugin_dirs.clone() })
    }

    /// Runs plugin `plugin` with `config` on stdin; returns the JSON it printed (`None` for empty output, as DEL
    /// usually gives).
    pub async fn run(&self, plugin: &str, inv: &Invocation<'_>, config: &Value) -> Result<Option<Value>, ExecError> {
        let binary = self.find(plugin)?;
        let cni_path =
            std::env::join_paths(&self.plugin_dirs).map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
        let mut env: Vec<(&'static str, String)> = vec![
            ("CNI_COMMAND", inv.op.as_str().into()),
            ("CNI_CONTAINERID", inv.container_id.into()),
            ("CNI_NETNS", inv.netns.map(|p| p.to_string_lossy().into_owned()).unwrap_or_default()),
            ("CNI_IFNAME", inv.ifname.into()),
            ("CNI_ARGS", inv.args.into()),
            ("CNI_PATH", cni_path),
        ];
        if std::env::var_os("PATH").is_none() {
            env.push(("PATH", DEFAULT_PATH.into()));
        }
        let stdin = config.to_string().into_bytes();
        let netns = self.plugin_netns.clone();
        let op = inv.op.as_str();
        let name = plugin.to_string();

        let output = run_on_thread(binary, Vec::new(), env, stdin, netns, &name, op).await?;
        let result = interpret(&name, op, output);
        tracing::debug!(plugin, op, container_id = inv.container_id, ok = result.is_ok(), "ran cni plugin");
        result
    }

    /// Runs a helper tool (`iptables`, `ip`) in the plugins' namespace and returns its output, whatever its status.
    pub async fn tool(&self, program: &str, args: &[&str]) -> Result<std::process::Output, ExecError> {
        let env = if std::env::var_os("PATH").is_none() { vec![("PATH", DEFAULT_PATH.into())] } else { Vec::new() };
        let args = args.iter().map(|a| a.to_string()).collect();
        run_on_thread(program.into(), args, env, Vec::new(), self.plugin_netns.clone(), program, "run").await
    }
}

async fn run_on_thread(
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
    stdin: Vec<u8>,
    netns: Option<PathBuf>,
    name: &str,
    op: &'static str,
) -> Result<std::process::Output, ExecError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = tx.send(spawn_and_wait(&program, &args, &env, &stdin, netns.as_deref()));
    });
    match rx.await {
        Ok(Ok(output)) => Ok(output),
        Ok(Err(SpawnError::Netns(e))) => Err(ExecError::Netns(e)),
        Ok(Err(SpawnError::Io(source))) => Err(ExecError::Spawn { plugin: name.into(), op, source }),
        Err(_) => Err(ExecError::ThreadLost),
    }
}

enum SpawnError {
    Netns(NetnsError),
    Io(std::io::Error),
}

fn spawn_and_wait(
    binary: &Path,
    args: &[String],
    env: &[(&'static str, String)],
    stdin: &[u8],
    netns: Option<&Path>,
) -> Result<std::process::Output, SpawnError> {
    if let Some(ns) = netns {
        netns::enter(ns).map_err(SpawnError::Netns)?;
    }
    let mut child = Command::new(binary)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(SpawnError::Io)?;
    if let Some(mut pipe) = child.stdin.take() {
        // A plugin that exits without reading stdin gives EPIPE; its exit status tells the real story.
        let _ = pipe.write_all(stdin);
    }
    child.wait_with_output().map_err(SpawnError::Io)
}

fn interpret(plugin: &str, op: &'static str, output: std::process::Output) -> Result<Option<Value>, ExecError> {
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        if let Some(e) = PluginError::parse(&output.stdout) {
            return Err(ExecError::Plugin { plugin: plugin.into(), op, code: e.code, msg: e.msg, details: e.details });
        }
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
        let stderr = if stderr.is_empty() { stdout.trim().to_string() } else { stderr };
        return Err(ExecError::Crashed { plugin: plugin.into(), op, status: output.status.to_string(), stderr });
    }
    if stdout.trim().is_empty() {
        return Ok(None);
    }
    serde_json::from_str(&stdout).map(Some).map_err(|source| ExecError::BadOutput {
        plugin: plugin.into(),
        op,
        output: stdout.into_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use std::process::{ExitStatus, Output};

    fn output(code: i32, stdout: &str, stderr: &str) -> Output {
        Output { status: ExitStatus::from_raw(code << 8), stdout: stdout.into(), stderr: stderr.into() }
    }

    #[test]
    fn interprets_results_errors_and_crashes() {
        let ok = interpret("bridge", "ADD", output(0, r#"{"cniVersion":"1.0.0","ips":[]}"#, ""));
        assert!(matches!(ok, Ok(Some(v)) if v["cniVersion"] == "1.0.0"));
        assert!(matches!(interpret("bridge", "DEL", output(0, "", "")), Ok(None)));
        let err = interpret("host-local", "ADD", output(1, r#"{"code":11,"msg":"range is full"}"#, ""));
        match err {
            Err(e @ ExecError::Plugin { code: 11, .. }) => {
                assert_eq!(e.to_string(), "plugin host-local ADD failed with code 11: range is full")
            }
            other => panic!("unexpected {other:?}"),
        }
        let crash = interpret("bridge", "ADD", output(2, "", "panic: boom\n"));
        assert!(matches!(crash, Err(ExecError::Crashed { ref stderr, .. }) if stderr == "panic: boom"));
        let bad = interpret("bridge", "ADD", output(0, "hello", ""));
        assert!(matches!(bad, Err(ExecError::BadOutput { .. })));
    }

    #[tokio::test]
    async fn runs_a_real_plugin_for_version() -> Result<(), ExecError> {
        let runner = Runner { plugin_dirs: vec!["/usr/lib/cni".into()], plugin_netns: None };
        let inv = Invocation { op: Op::Version, container_id: "", netns: None, ifname: "", args: "" };
        let out = runner.run("bridge", &inv, &serde_json::json!({"cniVersion": "1.0.0"})).await?;
        let versions = out.map(|v| v["supportedVersions"].clone()).unwrap_or_default();
        assert!(versions.as_array().is_some_and(|a| a.iter().any(|v| v == "1.0.0")), "{versions}");
        Ok(())
    }

    #[test]
    fn missing_plugins_and_path_tricks_are_not_found() {
        let runner = Runner { plugin_dirs: vec!["/usr/lib/cni".into()], plugin_netns: None };
        assert!(runner.find("bridge").is_ok());
        assert!(matches!(runner.find("no-such-plugin"), Err(ExecError::NotFound { .. })));
        assert!(matches!(runner.find("../cni/bridge"), Err(ExecError::NotFound { .. })));
    }
}
