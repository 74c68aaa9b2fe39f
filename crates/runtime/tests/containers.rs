//! Containers for real, as root: each test makes its own network namespace (`skrt…`) and temp dirs, and its
//! guards kill what it started and delete the namespace even when an assertion fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use nix::sys::signal::Signal;
use skiff_runtime::{ContainerSpec, Error, ExecIo, LogOptions, Mount, State};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SHIM: &str = env!("CARGO_BIN_EXE_skiff-runtime-shim");

/// A network namespace created with `ip netns add` and deleted on drop.
struct Netns(String);

impl Netns {
    fn new() -> Netns {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!("skrt{}x{}", std::process::id() % 100_000, N.fetch_add(1, Ordering::SeqCst));
        let ok = Command::new("ip").args(["netns", "add", &name]).status().expect("ip").success();
        assert!(ok, "ip netns add {name}");
        Netns(name)
    }

    fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.0)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// A container's temp dir (state, log, mount sources); kills the container on drop.
struct Sandbox {
    dir: tempfile::TempDir,
    netns: Netns,
}

impl Sandbox {
    fn new() -> Sandbox {
        Sandbox { dir: tempfile::tempdir().expect("tempdir"), netns: Netns::new() }
    }

    fn spec(&self, name: &str, script: &str) -> ContainerSpec {
        ContainerSpec {
            id: name.into(),
            argv: vec!["sh".into(), "-c".into(), script.into()],
            env: vec![("GREETING".into(), "hi".into())],
            working_dir: Some(self.dir.path().to_path_buf()),
            netns: Some(self.netns.path()),
            hostname: format!("pod-{name}"),
            mounts: Vec::new(),
            log_path: self.dir.path().join(name).join("0.log"),
            state_dir: self.dir.path().join(name).join("state"),
            stdin: false,
            tty: false,
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        for entry in std::fs::read_dir(self.dir.path()).into_iter().flatten().flatten() {
            let state = entry.path().join("state");
            if state.is_dir() {
                // Identity-checked: only our own container's process group is signalled.
                let _ = skiff_runtime::signal(&state, Signal::SIGKILL);
                let deadline = Instant::now() + Duration::from_secs(3);
                while matches!(skiff_runtime::inspect(&state), Ok(State::Running { .. })) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }
}

async fn logs(path: &Path, opts: LogOptions) -> String {
    let stream = skiff_runtime::read_logs(path, opts).await.expect("open log");
    let chunks: Vec<_> =
        tokio::time::timeout(Duration::from_secs(15), stream.collect::<Vec<_>>()).await.expect("logs end");
    chunks.into_iter().map(|c| String::from_utf8(c.expect("log chunk").to_vec()).expect("utf8")).collect()
}

async fn exited(state_dir: &Path) -> State {
    skiff_runtime::wait_exit(state_dir, Duration::from_secs(15)).await.expect("inspect").expect("exited in time")
}

fn net_inode(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).expect("netns").ino()
}

#[tokio::test]
async fn private_files_hostname_and_netns_and_exit_code() {
    let sb = Sandbox::new();
    let resolv = sb.dir.path().join("resolv.conf");
    std::fs::write(&resolv, "nameserver 10.96.0.10\nsearch default.svc.cluster.local\noptions ndots:5\n").expect("w");
    let hostname_file = sb.dir.path().join("hostname");
    std::fs::write(&hostname_file, "pod-iso\n").expect("w");
    let host_resolv = std::fs::read("/etc/resolv.conf").unwrap_or_default();
    let host_name = nix::unistd::gethostname().expect("hostname");

    let mut spec = sb.spec(
        "iso",
        "cat /etc/resolv.conf; cat /etc/hostname; hostname; readlink /proc/self/ns/net; echo $GREETING $HOSTNAME; pwd; exit 3",
    );
    spec.mounts = vec![
        Mount { source: resolv.clone(), target: "/etc/resolv.conf".into(), read_only: true },
        Mount { source: hostname_file, target: "/etc/hostname".into(), read_only: true },
    ];
    let started = skiff_runtime::start(&spec, Path::new(SHIM)).await.expect("start");
    assert!(started.pid > 0);
    let state = exited(&spec.state_dir).await;
    let State::Exited { code, signal, started_at, finished_at, message } = state else { panic!("{state:?}") };
    assert_eq!((code, signal, message), (3, None, None));
    assert!(started_at <= finished_at);

    let out = logs(&spec.log_path, LogOptions::default()).await;
    assert!(out.contains("nameserver 10.96.0.10\n"), "{out}");
    assert!(out.contains("options ndots:5\n"), "{out}");
    assert_eq!(out.matches("pod-iso\n").count(), 3, "file, hostname and $HOSTNAME: {out}");
    assert!(out.contains(&format!("net:[{}]", net_inode(&sb.netns.path()))), "{out}");
    assert!(out.contains("hi pod-iso\n"), "{out}");
    assert!(out.contains(&format!("{}\n", sb.dir.path().display())), "working dir: {out}");
    // The host kept its own files, hostname and mount table.
    assert_eq!(std::fs::read("/etc/resolv.conf").unwrap_or_default(), host_resolv);
    assert_eq!(nix::unistd::gethostname().expect("hostname"), host_name);
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(!mountinfo.contains(&resolv.display().to_string()));
    // The raw file is in CRI format.
    let raw = std::fs::read_to_string(&spec.log_path).expect("raw log");
    let first = raw.lines().next().expect("a line");
    assert!(first.ends_with(" stdout F nameserver 10.96.0.10"), "{first}");
    assert_eq!(first.find(' '), Some(30), "fixed-width timestamp: {first}");
}

#[tokio::test]
async fn start_errors_are_reported_and_state_dirs_are_single_use() {
    let sb = Sandbox::new();
    let mut spec = sb.spec("missing", "true");
    spec.argv = vec!["/nonexistent/program".into()];
    let err = skiff_runtime::start(&spec, Path::new(SHIM)).await.expect_err("must fail");
    assert!(matches!(&err, Error::Start { message, .. } if message.contains("/nonexistent/program")), "{err}");

    let mut spec = sb.spec("badns", "true");
    spec.netns = Some(sb.dir.path().join("no-such-netns"));
    let err = skiff_runtime::start(&spec, Path::new(SHIM)).await.expect_err("must fail");
    assert!(matches!(&err, Error::Start { message, .. } if message.contains("netns")), "{err}");

    let spec = sb.spec("once", "true");
    skiff_runtime::start(&spec, Path::new(SHIM)).await.expect("start");
    exited(&spec.state_dir).await;
    let again = skiff_runtime::start(&spec, Path::new(SHIM)).await;
    assert!(matches!(again, Err(Error::StateDirInUse(_))), "{again:?}");
}

#[tokio::test]
async fn logs_follow_until_exit_and_tail() {
    let sb = Sandbox::new();
    let spec =
        sb.spec("logs", "echo one; echo two >&2; echo three; sleep 0.7; printf 'four'; sleep 0.2; echo ' and more'");
    skiff_runtime::start(&spec, Path::new(SHIM)).await.expect("start");
    let follow = LogOptions { follow: true, state_dir: Some(spec.state_dir.clone()), ..Default::default() };
    let t0 = Instant::now();
    let out = logs(&spec.log_path, follow).await;
    assert!(t0.elapsed() >= Duration::from_millis(700), "follow waited for the late lines");
    let mut lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.pop(), Some("four and more"), "{out}");
    lines.sort();
    assert_eq!(lines, ["one", "three", "two"]);

    let tail = logs(&spec.log_path, LogOptions { tail_lines: Some(1), timestamps: true, ..Default::default() }).await;
    let (ts, msg) = tail.split_once(' ').expect("timestamp prefix");
    assert_eq!(msg, "four and more\n");
    assert!(chrono::DateTime::parse_from_rfc3339(ts).is_ok() && ts.len() == 30, "{ts}");
}

#[tokio::test]
async fn exec_joins_the_containers_namespaces() {
    let sb = Sandbox::new();
    let resolv = sb.dir.path().join("resolv.conf");
    std::fs::write(&resolv, "nameserver 10.96.0.99\n").expect("w");
    let mut spec = sb.spec("exec", "exec sleep 60");
    spec.mounts = vec![Mount { source: resolv, target: "/etc/resolv.conf".into(), read_only: false }];
    skiff_runtime::start(&spec, Path::new(SHIM)).await.expect("start");
    let dir = &spec.state_dir;

    let (code, out, _) =
        run(dir, &["sh", "-c", "readlink /proc/self/ns/net; hostname; cat /etc/resolv.conf; echo $GREETING"], None)
            .await;
    assert_eq!(code, 0);
    let expected = format!("net:[{}]\npod-exec\nnameserver 10.96.0.99\nhi\n", net_inode(&sb.netns.path()));
    assert_eq!(out, expected);

    let (code, out, _) = run(dir, &["cat"], Some(b"through stdin")).await;
    assert_eq!((code, out.as_str()), (0, "through stdin"));
    let (code, _, err) = run(dir, &["sh", "-c", "echo oops >&2; exit 7"], None).await;
    assert_eq!((code, err.as_str()), (7, "oops\n"));
    let (code, _, err) = run(dir, &["no-such-command-here"], None).await;
    assert_eq!(code, 127, "{err}");

    // A terminal: the process sees a tty of the size we set.
    let mut p = skiff_runtime::exec(dir, &["sh".into(), "-c".into(), "tty; sleep 0.5; stty size".into()], true, true)
        .await
        .expect("exec tty");
    let ExecIo::Tty { output, resize, .. } = &mut p.io else { panic!("expected a tty") };
    resize.resize(100, 40).expect("resize");
    let mut text = String::new();
    tokio::time::timeout(Duration::from_secs(10), output.read_to_string(&mut text)).await.expect("eof").expect("read");
    assert!(text.contains("/dev/pts/"), "{text:?}");
    assert!(text.contains("40 100"), "{text:?}");
    assert_eq!(skiff_runtime::exit_code(p.child.wait().await.expect("wait")), 0);

    skiff_runtime::stop(dir, Duration::from_secs(5)).await.expect("stop");
    let after = skiff_runtime::exec(dir, &["true".into()], false, false).await;
    assert!(matches!(after, Err(Error::NotRunning)), "{after:?}");
}

async fn run(dir: &Path, argv: &[&str], input: Option<&[u8]>) -> (i32, String, String) {
    let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
    let mut p = skiff_runtime::exec(dir, &argv, false, input.is_some()).await.expect("exec");
    let ExecIo::Pipes { stdin, mut stdout, mut stderr } = p.io else { panic!("expected pipes") };
    if let (Some(mut stdin), Some(data)) = (stdin, input) {
        stdin.write_all(data).await.expect("write stdin");
    }
    let (mut out, mut err) = (String::new(), String::new());
    let (a, b) = tokio::join!(stdout.read_to_string(&mut out), stderr.read_to_string(&mut err));
    a.expect("stdout");
    b.expect("stderr");
    let status = tokio::time::timeout(Duration::from_secs(10), p.child.wait()).await.expect("exits").expect("wait");
    (skiff_runtime::exit_code(status), out, err)
}

#[tokio::test]
async fn stop_honours_the_grace_period() {
    let sb = Sandbox::new();
    let polite = sb.spec("polite", "trap 'echo bye; exit 0' TERM; while true; do sleep 0.1; done");
    let stubborn = sb.spec("stubborn", "trap '' TERM; while true; do sleep 0.1; done");
    skiff_runtime::start(&polite, Path::new(SHIM)).await.expect("start");
    skiff_runtime::start(&stubborn, Path::new(SHIM)).await.expect("start");
    tokio::time::sleep(Duration::from_millis(200)).await;

    let t0 = Instant::now();
    let state = skiff_runtime::stop(&polite.state_dir, Duration::from_secs(10)).await.expect("stop");
    assert!(matches!(state, State::Exited { code: 0, signal: None, .. }), "{state:?}");
    assert!(t0.elapsed() < Duration::from_secs(5), "did not wait out the grace period");
    assert_eq!(logs(&polite.log_path, LogOptions::default()).await, "bye\n");

    let t0 = Instant::now();
    let state = skiff_runtime::stop(&stubborn.state_dir, Duration::from_millis(800)).await.expect("stop");
    let waited = t0.elapsed();
    assert!(matches!(state, State::Exited { code: 137, signal: Some(9), .. }), "{state:?}");
    assert!(waited >= Duration::from_millis(800) && waited < Duration::from_secs(6), "{waited:?}");
    // Stopping again is harmless.
    let again = skiff_runtime::stop(&stubborn.state_dir, Duration::from_secs(1)).await.expect("stop");
    assert_eq!(again, state);
}

#[tokio::test]
async fn supervisor_outlives_its_parent_and_is_readopted() {
    let sb = Sandbox::new();
    let spec = sb.spec("adopt", "sleep 300 & echo $!; exec sleep 300");
    let started = skiff_runtime::start(&spec, Path::new(SHIM)).await.expect("start");
    let running: serde_json::Value =
        serde_json::from_slice(&std::fs::read(spec.state_dir.join("running.json")).expect("record")).expect("json");
    let shim_pid = running["shim_pid"].as_i64().expect("shim pid");
    let stat = std::fs::read_to_string(format!("/proc/{shim_pid}/stat")).expect("shim alive");
    let ppid: u32 = stat[stat.rfind(')').expect(")") + 2..].split(' ').nth(1).expect("ppid").parse().expect("num");
    assert_ne!(ppid, std::process::id(), "the supervisor was re-parented away from us");
    assert_ne!(shim_pid as u32, std::process::id());

    // A fresh look from the state directory alone, as a restarted agent would do it.
    let state = skiff_runtime::inspect(&spec.state_dir).expect("inspect");
    assert_eq!(state, State::Running { pid: started.pid, started_at: started.started_at });
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut background = String::new();
    while background.is_empty() && Instant::now() < deadline {
        background = logs(&spec.log_path, LogOptions::default()).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let background: i32 = background.trim().parse().expect("background pid");
    assert!(Path::new(&format!("/proc/{background}")).exists());

    skiff_runtime::signal(&spec.state_dir, Signal::SIGKILL).expect("kill");
    let state = exited(&spec.state_dir).await;
    assert!(matches!(state, State::Exited { code: 137, signal: Some(9), .. }), "{state:?}");
    // The process group went with it, and the supervisor is gone after recording.
    let gone = |pid: i64| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s[s.rfind(')').map_or(0, |i| i + 2)..].starts_with('Z'))
            .unwrap_or(true)
    };
    let deadline = Instant::now() + Duration::from_secs(3);
    while !(gone(background as i64) && gone(shim_pid)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(gone(background as i64), "leftover process killed");
    assert!(gone(shim_pid), "supervisor exited");
    skiff_runtime::remove(&spec.state_dir).expect("remove");
    assert!(!spec.state_dir.exists());
}
