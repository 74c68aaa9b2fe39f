//! The agent's serving certificate: issued in memory from the cluster CA (the data dir's `tls/ca.crt` +
//! `ca.key`) for the node's names and addresses, so the API server can verify the agent with the CA it already
//! trusts — the same trust model as the kubelet's serving certificate.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair, KeyUsagePurpose, SanType};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("issuing the serving certificate: {0}")]
    Issue(#[from] rcgen::Error),
    #[error("building the TLS configuration: {0}")]
    Config(String),
}

/// A streaming server certificate and key (PEM) for `names` and `ips`, signed by the CA (`ca_cert_pem`,
/// `ca_key_pem`): what the API server verifies when it connects to a node's agent.
pub fn issue_serving_cert(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    names: &[String],
    ips: &[IpAddr],
) -> Result<(String, String), TlsError> {
    let issuer = Issuer::from_ca_cert_pem(ca_cert_pem, KeyPair::from_pem(ca_key_pem)?)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(names.to_vec())?;
    params.subject_alt_names.extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
    params.distinguished_name.push(DnType::CommonName, "skiff-agent");
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2035, 1, 1);
    let cert = params.signed_by(&key, &issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A serving configuration from a certificate and key in PEM.
pub fn serving_config_from_pem(cert_pem: &str, key_pem: &str) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain = rustls_pemfile::certs(&mut cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let key_der = rustls_pemfile::private_key(&mut key_pem.as_bytes())
        .map_err(|e| TlsError::Config(e.to_string()))?
        .ok_or_else(|| TlsError::Config("no private key in the PEM".into()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A serving configuration with a fresh certificate for `names` and `ips`, signed by the CA.
pub fn serving_config(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    names: &[String],
    ips: &[IpAddr],
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let (cert, key) = issue_serving_cert(ca_cert_pem, ca_key_pem, names, ips)?;
    serving_config_from_pem(&cert, &key)
}

/// [`serving_config`] with the CA read from `dir/ca.crt` and `dir/ca.key`.
pub fn serving_config_from_dir(
    dir: &Path,
    names: &[String],
    ips: &[IpAddr],
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path).map_err(|source| TlsError::Read { path, source })
    };
    serving_config(&read("ca.crt")?, &read("ca.key")?, names, ips)
}

/// A client configuration that trusts only the CA in `ca_pem` (what the API server uses to reach agents).
pub fn client_config(ca_pem: &str) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| TlsError::Config(e.to_string()))?;
        roots.add(cert).map_err(|e| TlsError::Config(e.to_string()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A throwaway CA: (cert PEM, key PEM).
    pub fn test_ca(cn: &str) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    async fn handshake(server: Arc<rustls::ServerConfig>, client_ca: &str) -> Result<Vec<u8>, std::io::Error> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            if let Ok(mut tls) = tokio_rustls::TlsAcceptor::from(server).accept(tcp).await {
                let _ = tls.write_all(b"ok").await;
                let _ = tls.shutdown().await;
            }
        });
        let connector = tokio_rustls::TlsConnector::from(client_config(client_ca).unwrap());
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
        let mut tls = connector.connect(name, tcp).await?;
        let mut buf = Vec::new();
        tls.read_to_end(&mut buf).await?;
        Ok(buf)
    }

    #[tokio::test]
    async fn clients_trusting_the_ca_accept_the_agent_and_others_do_not() {
        let (ca, key) = test_ca("test-ca");
        let server = serving_config(&ca, &key, &["localhost".into()], &[IpAddr::from([127, 0, 0, 1])]).unwrap();
        assert_eq!(handshake(server.clone(), &ca).await.unwrap(), b"ok");
        let (other_ca, _) = test_ca("other-ca");
        assert!(handshake(server, &other_ca).await.is_err());
    }
}
