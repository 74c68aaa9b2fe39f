//! skiff-https: the one TLS + HTTP/1.1 listener that Skiff's HTTPS servers share — the API server and the
//! node agent's streaming endpoint (exec, port-forward and logs).
//!
//! Data flow: [`serve`] accepts TCP connections until its [`CancellationToken`] fires, gives each one a TLS
//! handshake (bounded by [`HANDSHAKE_TIMEOUT`]; failures are logged and dropped), then serves an axum [`Router`]
//! over hyper's HTTP/1.1 connection with upgrades enabled, so WebSocket and SPDY handlers get the raw stream.
//! What happens to connections that are still open at shutdown is the caller's choice of [`Drain`]: abort them
//! at once, or ask each to finish its in-flight request within a grace period.

use std::time::Duration;

use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// How long a client may take to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long to back off after `accept` fails (for example when out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// What [`serve`] does with open connections once shutdown is requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drain {
    /// Abort every open connection as soon as the listener stops.
    Abort,
    /// Ask each connection to shut down gracefully (finish the in-flight request, then close), giving each up to
    /// `connection`, and wait up to `total` for all of them; connections still open after that are left running.
    Graceful { connection: Duration, total: Duration },
}

/// Accepts TLS connections on `listener` and serves `router` on them until `shutdown` is cancelled; then
/// stops accepting and drains the open connections as `drain` says before returning.
pub async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    router: Router,
    shutdown: CancellationToken,
    drain: Drain,
) {
    let mut connections = JoinSet::new();
    loop {
        let (tcp, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(router.clone());
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let conn =
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service).with_upgrades();
            tokio::pin!(conn);
            let grace = match drain {
                Drain::Abort => None,
                Drain::Graceful { connection, .. } => Some(connection),
            };
            tokio::select! {
                res = conn.as_mut() => {
                    if let Err(e) = res {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                }
                () = shutdown.cancelled(), if grace.is_some() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(grace.unwrap_or_default(), conn).await;
                }
            }
        });
    }
    match drain {
        Drain::Abort => connections.abort_all(),
        Drain::Graceful { total, .. } => {
            let _ = tokio::time::timeout(total, async { while connections.join_next().await.is_some() {} }).await;
            connections.detach_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    /// A server config with a self-signed certificate for `localhost`, and a client config that trusts it.
    fn tls_pair() -> (TlsAcceptor, tokio_rustls::TlsConnector) {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let cert = certified.cert.der().clone();
        let key = rustls::pki_types::PrivateKeyDer::try_from(certified.signing_key.serialize_der()).unwrap();
        let server = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        (TlsAcceptor::from(Arc::new(server)), tokio_rustls::TlsConnector::from(Arc::new(client)))
    }

    async fn start(
        router: Router,
        drain: Drain,
    ) -> (std::net::SocketAddr, CancellationToken, tokio::task::JoinHandle<()>, tokio_rustls::TlsConnector) {
        let (acceptor, connector) = tls_pair();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(serve(listener, acceptor, router, shutdown.clone(), drain));
        (addr, shutdown, task, connector)
    }

    async fn connect(
        addr: std::net::SocketAddr,
        connector: &tokio_rustls::TlsConnector,
    ) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        connector.connect(name, tcp).await.unwrap()
    }

    #[tokio::test]
    async fn serves_the_router_over_tls_and_stops_on_cancel() {
        let router = Router::new().route("/hello", get(|| async { "hi there" }));
        let (addr, shutdown, task, connector) = start(router, Drain::Abort).await;
        let mut tls = connect(addr, &connector).await;
        tls.write_all(b"GET /hello HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.unwrap();
        let mut response = String::new();
        tls.read_to_string(&mut response).await.unwrap();
        assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
        assert!(response.ends_with("hi there"), "{response}");

        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
        assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "the listener is closed after shutdown");
    }

    #[tokio::test]
    async fn abort_closes_open_connections_and_graceful_lets_requests_finish() {
        let slow = || {
            Router::new().route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    "done"
                }),
            )
        };
        let request = b"GET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n";

        let (addr, shutdown, task, connector) = start(slow(), Drain::Abort).await;
        let mut tls = connect(addr, &connector).await;
        tls.write_all(request).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        shutdown.cancel();
        task.await.unwrap();
        let mut response = String::new();
        let _ = tls.read_to_string(&mut response).await;
        assert!(response.is_empty(), "aborted connection got {response:?}");

        let drain = Drain::Graceful { connection: Duration::from_secs(2), total: Duration::from_secs(3) };
        let (addr, shutdown, task, connector) = start(slow(), drain).await;
        let mut tls = connect(addr, &connector).await;
        tls.write_all(request).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        shutdown.cancel();
        task.await.unwrap();
        let mut response = String::new();
        let _ = tls.read_to_string(&mut response).await;
        assert!(response.starts_with("HTTP/1.1 200 OK"), "{response:?}");
        assert!(response.ends_with("done"), "{response:?}");
    }
}
