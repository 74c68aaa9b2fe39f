//! One probe attempt, as the kubelet's probers make it: `httpGet` (any status from 200 to 399 passes; HTTPS is
//! not verified, as upstream), `tcpSocket` (the connection opens) and `exec` (the command exits 0), each within
//! the probe's `timeoutSeconds`. The agent runs in the node's network namespace, where pod IPs are reachable over
//! the node's bridge, so network probes dial the pod IP (or the probe's `host`) directly.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{Container, HTTPGetAction, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;

/// What one probe attempt found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// The reason, worded as the kubelet's `Unhealthy` events word it.
    Failure(String),
}

/// Where a probe runs: the pod's IP, the container's declared ports (for named ports) and its state directory
/// (for `exec`).
#[derive(Debug, Clone)]
pub struct Target {
    pub pod_ip: String,
    pub container: Container,
    pub state_dir: std::path::PathBuf,
}

/// The probe's timeout (default 1 s, as upstream).
pub fn timeout(probe: &Probe) -> Duration {
    Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64)
}

/// Runs `probe` once against `target`.
pub async fn run(probe: &Probe, target: &Target) -> Outcome {
    let limit = timeout(probe);
    if let Some(action) = &probe.exec {
        return exec(action.command.clone().unwrap_or_default(), target, limit).await;
    }
    if let Some(action) = &probe.http_get {
        return match tokio::time::timeout(limit, http_get(action, target)).await {
            Ok(outcome) => outcome,
            Err(_) => Outcome::Failure(format!(
                "Get \"{}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)",
                url(action, target)
            )),
        };
    }
    if let Some(action) = &probe.tcp_socket {
        let host = action.host.clone().filter(|h| !h.is_empty()).unwrap_or_else(|| target.pod_ip.clone());
        let port = match resolve_port(&action.port, &target.container) {
            Ok(port) => port,
            Err(message) => return Outcome::Failure(message),
        };
        return match tokio::time::timeout(limit, TcpStream::connect((host.as_str(), port))).await {
            Ok(Ok(_)) => Outcome::Success,
            Ok(Err(e)) => Outcome::Failure(format!("dial tcp {host}:{port}: connect: {e}")),
            Err(_) => Outcome::Failure(format!("dial tcp {host}:{port}: i/o timeout")),
        };
    }
    if probe.grpc.is_some() {
        return Outcome::Failure("grpc probes are not supported by this node".into());
    }
    Outcome::Failure("the probe names no handler (exec, httpGet, tcpSocket)".into())
}

/// A port given by number or by the name of one of the container's ports.
fn resolve_port(port: &IntOrString, container: &Container) -> Result<u16, String> {
    let number = match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(name) => match name.parse::<i32>() {
            Ok(n) => n,
            Err(_) => container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| p.container_port)
                .ok_or_else(|| format!("port {name:?} is not a named port of container {:?}", container.name))?,
        },
    };
    u16::try_from(number).ok().filter(|p| *p > 0).ok_or_else(|| format!("invalid port number: {number}"))
}

fn url(action: &HTTPGetAction, target: &Target) -> String {
    let scheme = action.scheme.as_deref().unwrap_or("HTTP").to_lowercase();
    let host = action.host.clone().filter(|h| !h.is_empty()).unwrap_or_else(|| target.pod_ip.clone());
    let port = resolve_port(&action.port, &target.container).map(|p| p.to_string()).unwrap_or_default();
    format!("{scheme}://{host}:{port}{}", path(action))
}

fn path(action: &HTTPGetAction) -> String {
    match action.path.as_deref() {
        Some(p) if p.starts_with('/') => p.to_string(),
        Some(p) => format!("/{p}"),
        None => "/".into(),
    }
}

async fn http_get(action: &HTTPGetAction, target: &Target) -> Outcome {
    let host = action.host.clone().filter(|h| !h.is_empty()).unwrap_or_else(|| target.pod_ip.clone());
    let port = match resolve_port(&action.port, &target.container) {
        Ok(port) => port,
        Err(message) => return Outcome::Failure(message),
    };
    let url = url(action, target);
    let fail = |e: &dyn std::fmt::Display| Outcome::Failure(format!("Get \"{url}\": {e}"));
    let stream = match TcpStream::connect((host.as_str(), port)).await {
        Ok(s) => s,
        Err(e) => return fail(&format!("dial tcp {host}:{port}: connect: {e}")),
    };
    let mut request = http::Request::get(path(action))
        .header(http::header::HOST, format!("{host}:{port}"))
        .header(http::header::USER_AGENT, "kube-probe/1.33")
        .header(http::header::ACCEPT, "*/*");
    for header in action.http_headers.iter().flatten() {
        request = request.header(header.name.as_str(), header.value.as_str());
    }
    let request = match request.body(Empty::<Bytes>::new()) {
        Ok(r) => r,
        Err(e) => return fail(&e),
    };
    let status = if action.scheme.as_deref().is_some_and(|s| s.eq_ignore_ascii_case("HTTPS")) {
        let connector = tokio_rustls::TlsConnector::from(Arc::new(insecure_tls()));
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .unwrap_or_else(|_| rustls::pki_types::ServerName::try_from("localhost").expect("a valid name"));
        match connector.connect(name, stream).await {
            Ok(tls) => send(tls, request).await,
            Err(e) => Err(e.to_string()),
        }
    } else {
        send(stream, request).await
    };
    match status {
        Ok(code) if (200..400).contains(&code) => Outcome::Success,
        Ok(code) => Outcome::Failure(format!("HTTP probe failed with statuscode: {code}")),
        Err(e) => fail(&e),
    }
}

async fn send<S>(stream: S, request: http::Request<Empty<Bytes>>) -> Result<u16, String>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    let driver = tokio::spawn(conn);
    let result = sender.send_request(request).await.map(|r| r.status().as_u16()).map_err(|e| e.to_string());
    driver.abort();
    result
}

/// Upstream's probes skip certificate verification; so do these.
fn insecure_tls() -> rustls::ClientConfig {
    #[derive(Debug)]
    struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);
    impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
        fn verify_server_cert(
            &self,
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &[rustls::pki_types::CertificateDer<'_>],
            _: &rustls::pki_types::ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
        }
        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth()
}

/// Runs the command in the container; exit 0 passes. A command still running at the timeout is killed.
async fn exec(command: Vec<String>, target: &Target, limit: Duration) -> Outcome {
    let process = match skiff_runtime::exec(&target.state_dir, &command, false, false).await {
        Ok(p) => p,
        Err(e) => return Outcome::Failure(format!("exec {command:?}: {e}")),
    };
    let mut child = process.child;
    let skiff_runtime::ExecIo::Pipes { mut stdout, mut stderr, .. } = process.io else {
        return Outcome::Failure("exec probe got a terminal".into());
    };
    let run = async {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let (_, _, status) = tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err), child.wait());
        out.extend(err);
        (status, out)
    };
    match tokio::time::timeout(limit, run).await {
        Ok((Ok(status), output)) => {
            let code = skiff_runtime::exit_code(status);
            if code == 0 {
                Outcome::Success
            } else {
                let output = String::from_utf8_lossy(&output).trim().to_string();
                Outcome::Failure(if output.is_empty() {
                    format!("command {command:?} exited with {code}")
                } else {
                    format!("command {command:?} exited with {code}: {output}")
                })
            }
        }
        Ok((Err(e), _)) => Outcome::Failure(format!("exec {command:?}: {e}")),
        Err(_) => Outcome::Failure(format!("command {command:?} timed out after {}s", limit.as_secs())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerPort, HTTPGetAction, TCPSocketAction};

    fn target() -> Target {
        let container = Container {
            name: "c".into(),
            ports: Some(vec![ContainerPort { name: Some("http".into()), container_port: 0, ..Default::default() }]),
            ..Default::default()
        };
        Target { pod_ip: "127.0.0.1".into(), container, state_dir: "/nonexistent".into() }
    }

    async fn server(status: u16) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let reply = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n");
                let _ = tokio::io::AsyncWriteExt::write_all(&mut s, reply.as_bytes()).await;
            }
        });
        port
    }

    fn http_probe(port: IntOrString) -> Probe {
        Probe {
            http_get: Some(HTTPGetAction { port, path: Some("/healthz".into()), ..Default::default() }),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn http_status_decides_and_named_ports_resolve() {
        let ok = server(204).await;
        assert_eq!(run(&http_probe(IntOrString::Int(ok.into())), &target()).await, Outcome::Success);
        let redirect = server(302).await;
        assert_eq!(run(&http_probe(IntOrString::Int(redirect.into())), &target()).await, Outcome::Success);
        let bad = server(500).await;
        assert_eq!(
            run(&http_probe(IntOrString::Int(bad.into())), &target()).await,
            Outcome::Failure("HTTP probe failed with statuscode: 500".into())
        );
        let mut named = target();
        if let Some(ports) = named.container.ports.as_mut() {
            ports[0].container_port = ok.into();
        }
        assert_eq!(run(&http_probe(IntOrString::String("http".into())), &named).await, Outcome::Success);
        let unknown = run(&http_probe(IntOrString::String("nope".into())), &named).await;
        assert!(matches!(unknown, Outcome::Failure(m) if m.contains("not a named port")));
    }

    #[tokio::test]
    async fn tcp_probe_needs_a_listener() {
        let open = server(200).await;
        let probe = |port: u16| Probe {
            tcp_socket: Some(TCPSocketAction { port: IntOrString::Int(port.into()), host: None }),
            ..Default::default()
        };
        assert_eq!(run(&probe(open), &target()).await, Outcome::Success);
        let closed = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
        assert!(matches!(run(&probe(closed), &target()).await, Outcome::Failure(m) if m.contains("connect")));
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let _hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let started = std::time::Instant::now();
        let outcome = run(&http_probe(IntOrString::Int(port.into())), &target()).await;
        assert!(matches!(outcome, Outcome::Failure(m) if m.contains("deadline exceeded")));
        assert!(started.elapsed() < Duration::from_secs(3));
    }
}
