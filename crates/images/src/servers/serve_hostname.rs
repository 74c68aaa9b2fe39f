//! `agnhost serve-hostname`, after upstream `test/images/agnhost/serve-hostname`: the hostname on
//! `--port` (9376) over HTTP (default, any path; `--close` adds `Connection: close`), or with `--http=false`
//! over raw TCP (`--tcp`: write it and close) and/or UDP (`--udp`: reply to any datagram). HTTP and TCP/UDP
//! are mutually exclusive. On SIGTERM it keeps serving for a minute ("awaiting pod deletion"), then exits 0.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{ImageError, RunOptions, bind_tcp, bind_udp, hostname, say};
use crate::flags::{Flags, boolean, value};

/// How long upstream keeps serving after SIGTERM.
pub const LINGER_AFTER_SIGTERM: Duration = Duration::from_secs(60);

/// The sockets to serve on.
#[derive(Debug, Default)]
pub struct Listeners {
    pub http: Option<TcpListener>,
    pub tcp: Option<TcpListener>,
    pub udp: Option<UdpSocket>,
}

/// Serves the hostname on `listeners` until `linger` after `stop` fires; returns exit code 0.
pub async fn serve(
    listeners: Listeners,
    close: bool,
    linger: Duration,
    stop: CancellationToken,
) -> Result<u8, ImageError> {
    let name = hostname();
    let mut tasks: JoinSet<Result<(), ImageError>> = JoinSet::new();
    if let Some(listener) = listeners.tcp {
        let name = name.clone();
        tasks.spawn(async move {
            loop {
                let (mut conn, peer) = listener.accept().await.map_err(ImageError::Serve)?;
                say(format!("TCP request from {peer}"));
                let _ = conn.write_all(name.as_bytes()).await;
                let _ = conn.shutdown().await;
            }
        });
    }
    if let Some(socket) = listeners.udp {
        let name = name.clone();
        tasks.spawn(async move {
            let mut buf = [0u8; 16];
            loop {
                let (_, peer) = socket.recv_from(&mut buf).await.map_err(ImageError::Serve)?;
                say(format!("UDP request from {peer}"));
                let _ = socket.send_to(name.as_bytes(), peer).await;
            }
        });
    }
    if let Some(listener) = listeners.http {
        let app = Router::new().fallback(move |ConnectInfo(peer): ConnectInfo<SocketAddr>| {
            let name = name.clone();
            async move {
                say(format!("HTTP request from {peer}"));
                let response: Response =
                    if close { ([(header::CONNECTION, "close")], name).into_response() } else { name.into_response() };
                response
            }
        });
        // Never shut down gracefully: it keeps serving through the linger period, like upstream.
        tasks.spawn(super::serve_http(listener, app, CancellationToken::new()));
    }
    tokio::select! {
        _ = stop.cancelled() => {}
        Some(Ok(Err(e))) = tasks.join_next() => return Err(e),
    }
    say("Shutting down after receiving signal: terminated.");
    say("Awaiting pod deletion.");
    tokio::time::sleep(linger).await;
    Ok(0)
}

/// `serve-hostname [--port=9376] [--http=true] [--tcp] [--udp] [--close]`.
pub async fn main(args: &[String], opts: &RunOptions) -> Result<u8, ImageError> {
    let spec = [value("port"), boolean("http"), boolean("tcp"), boolean("udp"), boolean("close")];
    let flags = Flags::parse(args, &spec)?;
    let port = flags.port("port", 9376)?;
    let (http, tcp, udp) = (flags.bool("http", true)?, flags.bool("tcp", false)?, flags.bool("udp", false)?);
    if http && (tcp || udp) {
        return Err(ImageError::Usage("Can't server TCP/UDP mode and HTTP mode at the same time".to_string()));
    }
    let mut listeners = Listeners::default();
    if tcp {
        listeners.tcp = Some(bind_tcp(opts.bind, port).await?);
    }
    if udp {
        listeners.udp = Some(bind_udp(opts.bind, port).await?);
    }
    if http {
        listeners.http = Some(bind_tcp(opts.bind, port).await?);
    }
    say(format!("Serving on port {port}."));
    serve(listeners, flags.bool("close", false)?, LINGER_AFTER_SIGTERM, opts.stop.clone()).await
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;
    use crate::servers::test_get;

    #[tokio::test]
    async fn http_serves_the_hostname_on_any_path_and_lingers_after_stop() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let listeners = Listeners { http: Some(listener), ..Listeners::default() };
        let task = tokio::spawn(serve(listeners, false, Duration::from_millis(300), stop.clone()));
        assert_eq!(test_get(addr, "/").await, (200, hostname()));
        assert_eq!(test_get(addr, "/whatever").await, (200, hostname()));
        stop.cancel();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(test_get(addr, "/").await, (200, hostname()), "still serving while awaiting deletion");
        let code = tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap().unwrap();
        assert_eq!(code, 0);
    }

    #[tokio::test]
    async fn raw_tcp_and_udp() {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tcp_addr = tcp.local_addr().unwrap();
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let udp_addr = udp.local_addr().unwrap();
        let stop = CancellationToken::new();
        let listeners = Listeners { tcp: Some(tcp), udp: Some(udp), http: None };
        let task = tokio::spawn(serve(listeners, false, Duration::ZERO, stop.clone()));

        let mut conn = tokio::net::TcpStream::connect(tcp_addr).await.unwrap();
        let mut got = String::new();
        tokio::time::timeout(Duration::from_secs(5), conn.read_to_string(&mut got)).await.unwrap().unwrap();
        assert_eq!(got, hostname());

        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client.send_to(b"hi", udp_addr).await.unwrap();
        let mut buf = [0u8; 256];
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), client.recv_from(&mut buf)).await.unwrap().unwrap();
        assert_eq!(String::from_utf8_lossy(&buf[..n]), hostname());
        stop.cancel();
        assert_eq!(tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap().unwrap(), 0);
    }

    #[tokio::test]
    async fn http_and_raw_modes_exclude_each_other() {
        let err = main(&["--udp".to_string()], &RunOptions::default()).await.unwrap_err();
        assert!(err.to_string().contains("at the same time"), "{err}");
    }
}
