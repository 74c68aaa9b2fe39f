//! An in-process API server for other crates' integration tests: a temporary data dir, SQLite, a free loopback
//! port, and a kube-rs client that trusts it. Dropping the [`TestServer`] stops the controllers spawned against it,
//! then the server, and removes the data. Helpers for those tests: bounded polling ([`eventually`]) and Nodes
//! registered by hand, as the node agent would ([`register_node`], [`patch_node_status`]).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams, PostParams};
use tokio_util::sync::CancellationToken;

use crate::{ApiServer, Config};

pub struct TestServer {
    pub server: ApiServer,
    pub client: kube::Client,
    shutdown: CancellationToken,
    controllers: CancellationToken,
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
        Self { server, client, shutdown, controllers: CancellationToken::new(), _dir: dir }
    }

    /// The token that the controllers under test run with; it is cancelled when the server is dropped.
    pub fn controllers(&self) -> CancellationToken {
        self.controllers.clone()
    }

    /// Spawns a controller's `run(client, shutdown)` against this server, stopped when the server is dropped.
    pub fn spawn<F>(&self, run: impl FnOnce(kube::Client, CancellationToken) -> F)
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        tokio::spawn(run(self.client.clone(), self.controllers()));
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.controllers.cancel();
        self.shutdown.cancel();
    }
}

/// How long [`eventually`] keeps polling.
pub const POLL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`eventually`] waits between checks.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// [`eventually`] gave up.
#[derive(Debug, thiserror::Error)]
#[error("timed out waiting for {0}")]
pub struct TimedOut(pub String);

/// Polls `check` every [`POLL_INTERVAL`] for up to [`POLL_TIMEOUT`] until it returns `Some`; an error from
/// `check` ends the wait at once.
///
/// # Errors
/// The first error of `check`, or [`TimedOut`] naming `what`.
pub async fn eventually<T, E, F, Fut>(what: &str, mut check: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, E>>,
    E: From<TimedOut>,
{
    let deadline = tokio::time::Instant::now() + POLL_TIMEOUT;
    loop {
        if let Some(v) = check().await? {
            return Ok(v);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(TimedOut(what.to_string()).into());
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Creates the Node `manifest` (a JSON object with `metadata.name`), then sets `status` through the status
/// subresource, as the node agent does when it registers.
///
/// # Errors
/// When the manifest is not a Node or the API server refuses either write.
pub async fn register_node(
    client: &kube::Client,
    manifest: serde_json::Value,
    status: serde_json::Value,
) -> kube::Result<()> {
    let node: Node = serde_json::from_value(manifest).map_err(kube::Error::SerdeError)?;
    let name = node.metadata.name.clone().unwrap_or_default();
    Api::<Node>::all(client.clone()).create(&PostParams::default(), &node).await?;
    patch_node_status(client, &name, status).await
}

/// Merges `status` into Node `name`'s status (a strategic merge patch on the status subresource).
///
/// # Errors
/// When the API server refuses the patch.
pub async fn patch_node_status(client: &kube::Client, name: &str, status: serde_json::Value) -> kube::Result<()> {
    let patch = Patch::Strategic(serde_json::json!({ "status": status }));
    Api::<Node>::all(client.clone()).patch_status(name, &PatchParams::default(), &patch).await?;
    Ok(())
}
