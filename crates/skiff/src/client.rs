//! The kube-rs client every component of the binary talks to the API through: kube-rs's own stack (base URI,
//! credentials, extra headers, retries of 429/503/504, connect and read timeouts, rustls) built by hand for one
//! setting kube-rs does not expose, a cap on hyper's per-connection read buffer.
//!
//! hyper grows a connection's read buffer while reads keep filling it and keeps the grown buffer for as long as
//! the connection lives. A watch of many objects starts with a LIST of pages of hundreds of kilobytes on the
//! connection the watch then holds open, so without a cap every such watch keeps a buffer of up to 408 KiB
//! (hyper's default maximum) for the rest of the process — most of a node agent's memory at 1,000 Services.
//! Reads of at most [`READ_BUFFER_MAX`] cost a LIST nothing measurable (TLS records are 16 KiB anyway).

use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use kube::client::ConfigExt;
use kube::client::retry::RetryPolicy;
use tower::ServiceBuilder;
use tower::retry::RetryLayer;

/// The largest read buffer a connection keeps (hyper's smallest allowed is 8 KiB, its default 408 KiB).
pub const READ_BUFFER_MAX: usize = 32 * 1024;

/// A client for `config`, as `kube::Client::try_from` builds it but with the read buffer capped.
pub fn build(config: kube::Config) -> anyhow::Result<kube::Client> {
    let mut connector = hyper_timeout::TimeoutConnector::new(config.rustls_https_connector()?);
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    connector.set_reset_reader_on_write(config.reset_reader_on_write);
    let http = HyperClient::builder(TokioExecutor::new()).http1_max_buf_size(READ_BUFFER_MAX).build(connector);
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.default_retry.then(|| RetryLayer::new(RetryPolicy::server_retry())))
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(tower::BoxError::from)
        .service(http);
    Ok(kube::Client::new(service, config.default_namespace))
}
