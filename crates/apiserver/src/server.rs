//! The running server: shared state, the HTTPS listener, and start-up / shutdown.
//!
//! Start-up order: open trust material → repair Service allocations → create the default namespaces and the
//! `kubernetes` Service → listen (TLS, HTTP/1.1 with upgrades) → mark ready. Shutdown cancels every watch and
//! stops accepting; in-flight requests get a short grace period.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::HeaderMap;
use skiff_store::Store;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::services::ServiceAllocator;
use crate::storage::Objects;
use crate::{bootstrap, handlers, tls};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("tls: {0}")]
    Tls(#[from] tls::TlsError),
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("bootstrap: {0}")]
    Bootstrap(#[from] skiff_api::ApiError),
}

/// What every request handler can reach.
pub struct State {
    pub config: Config,
    pub objects: Objects,
    pub services: ServiceAllocator,
    pub docs: skiff_openapi::Documents,
    pub admin_token: String,
    /// The join token's secret: nodes join with it, and their credentials derive from it (`skiff_join`).
    pub join_secret: String,
    /// The cluster CA (PEM), served at `/cacerts`.
    pub ca_pem: String,
    pub shutdown: CancellationToken,
    ready: AtomicBool,
}

impl State {
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Whether the request carries a valid bearer token: the admin's or a joined node's.
    pub fn authenticate(&self, headers: &HeaderMap) -> bool {
        bearer(headers).is_some_and(|token| {
            skiff_join::constant_time_eq(token, &self.admin_token)
                || skiff_join::node_of(&self.join_secret, token).is_some()
        })
    }

    /// The token nodes are given to join with, `K10<CA hash>::server:<secret>`.
    pub fn join_token(&self) -> String {
        skiff_join::join_token(&self.ca_pem, &self.join_secret)
    }
}

/// The request's bearer token, if it has one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    Some(value.strip_prefix("Bearer ")?.trim())
}

/// A started API server.
pub struct ApiServer {
    pub state: Arc<State>,
    pub local_addr: SocketAddr,
    pub kubeconfig: String,
    task: tokio::task::JoinHandle<()>,
}

impl ApiServer {
    /// Prepares state and starts listening. Returns once the server is ready to serve.
    pub async fn start(
        config: Config,
        store: Arc<dyn Store>,
        shutdown: CancellationToken,
    ) -> Result<Self, ServerError> {
        let mut names: Vec<String> = vec![
            "localhost".into(),
            "kubernetes".into(),
            "kubernetes.default".into(),
            "kubernetes.default.svc".into(),
            format!("kubernetes.default.svc.{}", config.cluster_domain),
        ];
        if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
            let host = host.trim().to_string();
            if !host.is_empty() && !names.contains(&host) {
                names.push(host);
            }
        }
        let mut ips: Vec<IpAddr> = vec![IpAddr::from([127, 0, 0, 1]), config.advertise_address];
        if let Some(first) = bootstrap::kubernetes_service_ip(&config) {
            ips.push(IpAddr::V4(first));
        }
        if !config.listen.ip().is_unspecified() {
            ips.push(config.listen.ip());
        }
        ips.sort();
        ips.dedup();
        let trust = tls::load_or_create(&config.data_dir.join("tls"), &names, &ips, config.token.as_deref())?;

        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| ServerError::Bind { addr: config.listen, source })?;
        let local_addr = listener.local_addr().map_err(|source| ServerError::Bind { addr: config.listen, source })?;
        let mut url_config = config.clone();
        url_config.listen = local_addr;
        let kubeconfig = tls::kubeconfig(&url_config.server_url(), &trust.ca_pem, &trust.admin_token);
        if let Some(path) = &config.write_kubeconfig {
            tls::write_private(path, kubeconfig.as_bytes())?;
        }

        let state = Arc::new(State {
            services: ServiceAllocator::new(store.clone(), config.service_cidr, config.node_port_range.clone()),
            objects: Objects::new(store),
            docs: skiff_openapi::Documents::build(),
            admin_token: trust.admin_token.clone(),
            join_secret: trust.join_secret.clone(),
            ca_pem: trust.ca_pem.clone(),
            shutdown: shutdown.clone(),
            config: url_config,
            ready: AtomicBool::new(false),
        });
        bootstrap::run(&state).await?;
        bootstrap::spawn_keepers(state.clone());

        let acceptor = TlsAcceptor::from(trust.server_config.clone());
        let router = Router::new().fallback(handlers::dispatch).with_state(state.clone());
        let task = tokio::spawn(serve(listener, acceptor, router, shutdown));
        state.ready.store(true, Ordering::Relaxed);
        tracing::info!(address = %local_addr, "API server ready");
        Ok(Self { state, local_addr, kubeconfig, task })
    }

    /// Waits until the listener has stopped (after the shutdown token fired).
    pub async fn stopped(self) {
        let _ = self.task.await;
    }
}

/// How long each open connection may take to finish its request once shutdown starts.
const CONNECTION_GRACE: Duration = Duration::from_secs(2);
/// How long shutdown waits for all open connections together.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

async fn serve(listener: TcpListener, acceptor: TlsAcceptor, router: Router, shutdown: CancellationToken) {
    let drain = skiff_https::Drain::Graceful { connection: CONNECTION_GRACE, total: SHUTDOWN_GRACE };
    skiff_https::serve(listener, acceptor, router, shutdown, drain).await;
}
