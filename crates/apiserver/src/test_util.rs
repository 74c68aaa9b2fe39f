//! An in-process API server for other crates' integration tests: a temporary data dir, SQLite, a free loopback
//! port, and a kube-rs client that trusts it. Dropping the [`TestServer`] stops the server and removes the data.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::{ApiServer, Config};

pub struct TestServer {
    pub server: ApiServer,
    pub client: kube::Client,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl TestServer {
    /// Starts a server and a client for it.
    ///
    /// # Panics
    /// When the server cannot start: this is test code.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts a server after `adjust` has changed its configuration.
    ///
    /// # Panics
    /// When the server cannot start: this is test code.
    #[allow(clippy::expect_used)]
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().expect("a temporary data dir");
        let store = skiff_store::SqliteStore::open(&dir.path().join("state.db")).expect("a SQLite store");
        let mut config = Config::new(dir.path().to_path_buf(), SocketAddr::from(([127, 0, 0, 1], 0)));
        adjust(&mut config);
        let shutdown = CancellationToken::new();
        let server = ApiServer::start(config, Arc::new(store), shutdown.clone()).await.expect("the API server starts");
        let kubeconfig = kube::config::Kubeconfig::from_yaml(&server.kubeconfig).expect("a kubeconfig");
        let options = kube::config::KubeConfigOptions::default();
        let client_config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &options).await.expect("a client configuration");
        let client = kube::Client::try_from(client_config).expect("a client");
        Self { server, client, shutdown, _dir: dir }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
