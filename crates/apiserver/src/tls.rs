//! The cluster's trust material, kept in the data dir: a CA, a serving certificate signed by it for every name
//! the API server is reached by, and the admin bearer token; plus the admin kubeconfig that ties them together.
//!
//! Everything is generated on first start and reused afterwards, so kubeconfigs written earlier stay valid. The
//! serving certificate is re-issued (from the same CA) when the set of names it must cover changes.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading or writing {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("generating certificates: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("loading certificates: {0}")]
    Load(String),
}

/// The CA, serving certificate and admin token of one cluster.
pub struct TrustMaterial {
    pub ca_pem: String,
    pub server_config: Arc<rustls::ServerConfig>,
    pub admin_token: String,
    /// The secret of the join token (`skiff_join`), generated into `join.secret` on first start.
    pub join_secret: String,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io { path: path.to_path_buf(), source }
}

/// Writes `contents` to `path` with mode 0600, atomically (write to a temporary file, then rename).
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), TlsError> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    let tmp = path.with_extension("tmp");
    let mut f =
        fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).map_err(io_err(&tmp))?;
    f.write_all(contents).and_then(|()| f.sync_all()).map_err(io_err(&tmp))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600)).map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))
}

/// Loads the trust material from `dir` (the data dir's `tls/`), creating what is missing.
///
/// `names` and `ips` are the serving certificate's subject alternative names.
pub fn load_or_create(
    dir: &Path,
    names: &[String],
    ips: &[IpAddr],
    token: Option<&str>,
) -> Result<TrustMaterial, TlsError> {
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let ca_cert_path = dir.join("ca.crt");
    let ca_key_path = dir.join("ca.key");
    let (ca_pem, ca_key_pem) = match (fs::read_to_string(&ca_cert_path), fs::read_to_string(&ca_key_path)) {
        (Ok(cert), Ok(key)) => (cert, key),
        _ => {
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::new(Vec::<String>::new())?;
            params.distinguished_name.push(DnType::CommonName, "skiff-server-ca");
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            params.not_after = rcgen::date_time_ymd(2036, 1, 1);
            let cert = params.self_signed(&key)?;
            write_private(&ca_key_path, key.serialize_pem().as_bytes())?;
            write_private(&ca_cert_path, cert.pem().as_bytes())?;
            (cert.pem(), key.serialize_pem())
        }
    };
    let ca_key = KeyPair::from_pem(&ca_key_pem)?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key)?;

    let sans_path = dir.join("serving.sans");
    let wanted_sans = format!("{names:?} {ips:?}");
    let serving_cert_path = dir.join("serving.crt");
    let serving_key_path = dir.join("serving.key");
    let current = fs::read_to_string(&sans_path).ok();
    let (cert_pem, key_pem) =
        match (current, fs::read_to_string(&serving_cert_path), fs::read_to_string(&serving_key_path)) {
            (Some(sans), Ok(cert), Ok(key)) if sans == wanted_sans => (cert, key),
            _ => {
                let key = KeyPair::generate()?;
                let mut params = CertificateParams::new(names.to_vec())?;
                params.subject_alt_names.extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
                params.distinguished_name.push(DnType::CommonName, "skiff-apiserver");
                params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
                params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
                params.not_after = rcgen::date_time_ymd(2035, 1, 1);
                let cert = params.signed_by(&key, &issuer)?;
                write_private(&serving_key_path, key.serialize_pem().as_bytes())?;
                write_private(&serving_cert_path, cert.pem().as_bytes())?;
                write_private(&sans_path, wanted_sans.as_bytes())?;
                (cert.pem(), key.serialize_pem())
            }
        };

    let admin_token = match token {
        Some(t) => t.to_string(),
        None => read_or_generate(&dir.join("admin.token"))?,
    };
    let join_secret = read_or_generate(&dir.join("join.secret"))?;
    let config = skiff_streams::tls::serving_config_from_pem(&cert_pem, &key_pem)
        .map_err(|e| TlsError::Load(format!("serving.crt / serving.key: {e}")))?;
    Ok(TrustMaterial { ca_pem, server_config: config, admin_token, join_secret })
}

/// The token in `path`, or a new random one written there (mode 0600) when there is none.
fn read_or_generate(path: &Path) -> Result<String, TlsError> {
    match fs::read_to_string(path) {
        Ok(t) if !t.trim().is_empty() => Ok(t.trim().to_string()),
        _ => {
            let t = random_token();
            write_private(path, t.as_bytes())?;
            Ok(t)
        }
    }
}

/// A 32-byte random token, hex-encoded.
pub fn random_token() -> String {
    use rand::Rng;
    let bytes: [u8; 32] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The admin kubeconfig: the server URL, the CA to trust, and the admin token.
pub fn kubeconfig(server_url: &str, ca_pem: &str, token: &str) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: skiff\n  cluster:\n    server: {server_url}\n    \
         certificate-authority-data: {ca}\ncontexts:\n- name: skiff\n  context:\n    cluster: skiff\n    user: admin\n    \
         namespace: default\ncurrent-context: skiff\nusers:\n- name: admin\n  user:\n    token: {token}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn material_is_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let names = vec!["localhost".to_string()];
        let ips = vec![IpAddr::from([127, 0, 0, 1])];
        let first = load_or_create(dir.path(), &names, &ips, None).unwrap();
        let second = load_or_create(dir.path(), &names, &ips, None).unwrap();
        assert_eq!(first.ca_pem, second.ca_pem);
        assert_eq!(first.admin_token, second.admin_token);
        assert_eq!(first.admin_token.len(), 64);
        let mode = fs::metadata(dir.path().join("ca.key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let cfg = kubeconfig("https://127.0.0.1:6443", &first.ca_pem, &first.admin_token);
        assert!(cfg.contains("server: https://127.0.0.1:6443"));
        assert!(cfg.contains(&first.admin_token));
    }
}
