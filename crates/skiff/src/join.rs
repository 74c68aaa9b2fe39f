//! `skiff agent --server URL --token TOKEN`: joining a cluster (the protocol is `skiff_join`'s). The cluster CA
//! is fetched trusting nothing and accepted only when its hash is the one the token names; everything after
//! that trusts that CA alone.

use std::net::IpAddr;

use anyhow::Context;

/// What joining gives the agent.
pub struct Joined {
    /// The API, with the CA pinned and the node's own token.
    pub config: kube::Config,
    pub stream_token: String,
    pub serving_cert: String,
    pub serving_key: String,
}

pub async fn join(server: &str, token: &str, node_name: &str, node_ip: IpAddr) -> anyhow::Result<Joined> {
    let (hash, secret) = skiff_join::parse_join_token(token).map_err(|e| anyhow::anyhow!("--token: {e}"))?;
    let url: http::Uri = server.parse().with_context(|| format!("--server {server:?} is not a URL"))?;

    let mut insecure = kube::Config::new(url.clone());
    insecure.accept_invalid_certs = true;
    let fetch = http::Request::get(skiff_join::CACERTS_PATH).body(Vec::new())?;
    let ca_pem = crate::client::build(insecure)?
        .request_text(fetch)
        .await
        .with_context(|| format!("fetching the cluster CA from {server}"))?;
    let actual = skiff_join::ca_hash(&ca_pem);
    anyhow::ensure!(
        actual == hash,
        "the server at {server} has another CA (sha256 {actual}) than the join token names ({hash}): check \
         --server and --token"
    );
    let roots = rustls_pemfile::certs(&mut ca_pem.as_bytes())
        .map(|cert| cert.map(|c| c.to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .context("reading the cluster CA")?;

    let mut config = kube::Config::new(url);
    config.root_cert = Some(roots);
    config.auth_info.token = Some(secret.to_string().into());
    let body = serde_json::to_vec(&skiff_join::JoinRequest { node_name: node_name.to_string(), node_ip })?;
    let request =
        http::Request::post(skiff_join::JOIN_PATH).header(http::header::CONTENT_TYPE, "application/json").body(body)?;
    let joined: skiff_join::Joined = match crate::client::build(config.clone())?.request(request).await {
        Ok(joined) => joined,
        Err(kube::Error::Api(status)) if status.code == 401 => {
            anyhow::bail!("the server at {server} refused the join token (401 Unauthorized): check --token")
        }
        Err(e) => return Err(e).with_context(|| format!("joining the cluster at {server}")),
    };
    tracing::info!(server, node = node_name, "joined the cluster");
    config.auth_info.token = Some(joined.token.clone().into());
    Ok(Joined {
        config,
        stream_token: joined.stream_token,
        serving_cert: joined.serving_cert,
        serving_key: joined.serving_key,
    })
}
