//! The built-in programs behind `skiff image NAME [ARGS…]`. Each parses its own flags (upstream's names),
//! binds its port on all addresses of the pod's network namespace, writes a log line per request to stdout
//! (which becomes the container log), and stops when the [`RunOptions::stop`] token fires — in `skiff image`
//! that is SIGTERM or SIGINT.

use std::collections::HashMap;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use axum::Router;
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

use crate::flags::FlagError;

pub mod idle;
pub mod netexec;
pub mod numbers;
pub mod pages;
pub mod serve_hostname;

/// Exit code for bad flags (`EX_USAGE`).
pub const EXIT_USAGE: u8 = 64;
/// Exit code for a program that could not start (port taken, ...).
pub const EXIT_FAILURE: u8 = 1;
/// Exit code of a process that SIGTERM ended without a handler of its own (128 + 15), which is how a Go
/// program such as agnhost netexec ends on SIGTERM.
pub const EXIT_SIGTERM: u8 = 143;

/// Why a built-in could not run.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("unknown builtin image program {0:?}")]
    UnknownProgram(String),
    #[error(transparent)]
    Flags(#[from] FlagError),
    #[error("{0}")]
    Usage(String),
    #[error("listening on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("serving")]
    Serve(#[source] std::io::Error),
}

impl ImageError {
    fn exit_code(&self) -> u8 {
        match self {
            ImageError::UnknownProgram(_) | ImageError::Flags(_) | ImageError::Usage(_) => EXIT_USAGE,
            ImageError::Bind { .. } | ImageError::Serve(_) => EXIT_FAILURE,
        }
    }
}

/// What a built-in gets from its surroundings besides its arguments.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The address servers bind (default `0.0.0.0`: every address of the pod's network namespace).
    pub bind: IpAddr,
    /// The process environment (numbers-web reads `RngApi__Url`, numbers-api `FailAfterCallCount`).
    pub env: HashMap<String, String>,
    /// Fires when the program should stop (SIGTERM/SIGINT in `skiff image`).
    pub stop: CancellationToken,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions { bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED), env: HashMap::new(), stop: CancellationToken::new() }
    }
}

/// Runs the built-in `name` with `args` as `skiff image NAME ARGS…` does: binds `0.0.0.0`, reads the
/// process environment, and stops on SIGTERM or SIGINT.
pub async fn run(name: &str, args: &[String]) -> ExitCode {
    let stop = CancellationToken::new();
    // Register the handlers before anything else runs, so an early SIGTERM is never the default (fatal) one.
    let termination = termination_signals();
    let on_signal = stop.clone();
    tokio::spawn(async move {
        wait_for_termination(termination).await;
        on_signal.cancel();
    });
    let opts = RunOptions { env: std::env::vars().collect(), stop, ..RunOptions::default() };
    ExitCode::from(run_with(name, args, opts).await)
}

/// Runs the built-in `name` with explicit options and returns its exit code; errors are written to stderr.
pub async fn run_with(name: &str, args: &[String], opts: RunOptions) -> u8 {
    match dispatch(name, args, &opts).await {
        Ok(code) => code,
        Err(e) => {
            let mut msg = format!("{name}: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                msg.push_str(&format!(": {s}"));
                source = s.source();
            }
            let _ = writeln!(std::io::stderr(), "{msg}");
            e.exit_code()
        }
    }
}

async fn dispatch(name: &str, args: &[String], opts: &RunOptions) -> Result<u8, ImageError> {
    match name {
        "sleep" => idle::main("sleep", args, opts).await,
        "pause" => idle::main("pause", args, opts).await,
        "numbers-api" => numbers::api_main(args, opts).await,
        "numbers-web" => numbers::web_main(args, opts, false).await,
        "numbers-web-v2" => numbers::web_main(args, opts, true).await,
        "k8sbook" => pages::k8sbook_main(args, opts).await,
        "nginx" => pages::nginx_main(args, opts).await,
        "netexec" => netexec::main(args, opts).await,
        "serve-hostname" => serve_hostname::main(args, opts).await,
        "agnhost" => match args.split_first() {
            Some((sub, rest)) if sub == "netexec" => netexec::main(rest, opts).await,
            Some((sub, rest)) if sub == "serve-hostname" => serve_hostname::main(rest, opts).await,
            Some((sub, rest)) if sub == "pause" => idle::main("pause", rest, opts).await,
            Some((sub, _)) => Err(ImageError::Usage(format!(
                "agnhost subcommand {sub:?} is not implemented by this stand-in (supported: netexec, serve-hostname, \
                 pause)"
            ))),
            None => Err(ImageError::Usage("usage: agnhost netexec|serve-hostname|pause [flags]".to_string())),
        },
        other => Err(ImageError::UnknownProgram(other.to_string())),
    }
}

type Signals = Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>;

fn termination_signals() -> Signals {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(term), Ok(int)) => Some((term, int)),
        _ => None,
    }
}

async fn wait_for_termination(signals: Signals) {
    match signals {
        Some((mut term, mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        None => {
            let _ = writeln!(std::io::stderr(), "cannot install signal handlers; stop with SIGKILL");
            std::future::pending::<()>().await;
        }
    }
}

/// Binds a TCP listener on `bind:port`.
pub(crate) async fn bind_tcp(bind: IpAddr, port: u16) -> Result<TcpListener, ImageError> {
    let addr = SocketAddr::new(bind, port);
    TcpListener::bind(addr).await.map_err(|source| ImageError::Bind { addr, source })
}

/// Binds a UDP socket on `bind:port`.
pub(crate) async fn bind_udp(bind: IpAddr, port: u16) -> Result<UdpSocket, ImageError> {
    let addr = SocketAddr::new(bind, port);
    UdpSocket::bind(addr).await.map_err(|source| ImageError::Bind { addr, source })
}

/// Serves `app` on `listener` (handlers can extract the caller's address) until `stop` fires, then
/// finishes the requests in flight.
pub(crate) async fn serve_http(listener: TcpListener, app: Router, stop: CancellationToken) -> Result<(), ImageError> {
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
        .map_err(ImageError::Serve)
}

/// The hostname of the process's UTS namespace (the pod's hostname inside a pod).
pub fn hostname() -> String {
    match nix::unistd::gethostname() {
        Ok(name) => name.to_string_lossy().into_owned(),
        Err(_) => {
            std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_default()
        }
    }
}

/// Writes one log line to stdout (the container log); a closed stdout is ignored.
pub(crate) fn say(line: impl std::fmt::Display) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// Escapes text for HTML element content and attribute values.
pub(crate) fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A test helper: an HTTP GET against a loopback server, returning status and body.
#[cfg(test)]
pub(crate) async fn test_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let (status, body) = crate::fetch::get(&format!("http://{addr}{path}"), std::time::Duration::from_secs(5))
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    (status.as_u16(), String::from_utf8_lossy(&body).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_html() {
        assert_eq!(html_escape("<a href=\"x\">&'</a>"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;");
    }

    #[test]
    fn hostname_matches_the_kernel() {
        let kernel = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        assert_eq!(hostname(), kernel.trim());
    }

    #[tokio::test]
    async fn unknown_programs_and_bad_flags_are_usage_errors() {
        let opts = RunOptions { bind: IpAddr::V4(Ipv4Addr::LOCALHOST), ..RunOptions::default() };
        assert_eq!(run_with("nope", &[], opts.clone()).await, EXIT_USAGE);
        assert_eq!(run_with("agnhost", &["liveness".into()], opts.clone()).await, EXIT_USAGE);
        assert_eq!(run_with("agnhost", &[], opts.clone()).await, EXIT_USAGE);
        assert_eq!(run_with("netexec", &["--bogus".into()], opts.clone()).await, EXIT_USAGE);
        assert_eq!(run_with("numbers-api", &["--port=0".into()], opts).await, EXIT_USAGE);
    }

    #[tokio::test]
    async fn a_taken_port_is_a_failure() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let opts = RunOptions { bind: IpAddr::V4(Ipv4Addr::LOCALHOST), ..RunOptions::default() };
        assert_eq!(run_with("k8sbook", &[format!("--port={port}")], opts).await, EXIT_FAILURE);
    }
}
