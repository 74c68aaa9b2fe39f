//! A minimal HTTP/1.1 GET client for the demo servers that call other services (numbers-web → numbers-api,
//! netexec's `/dial`): plain `http://` URLs, names resolved by the system resolver (inside a pod, its
//! `/etc/resolv.conf`), one connection per request, a deadline on the whole exchange.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Why a GET failed before an HTTP status came back.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("invalid url {0:?}: only http://host[:port]/path is supported")]
    InvalidUrl(String),
    #[error("cannot resolve {host}")]
    Resolve {
        host: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot connect to {host}:{port}")]
    Connect {
        host: String,
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error("http exchange failed")]
    Http(#[source] hyper::Error),
    #[error("building request")]
    Request(#[source] http::Error),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

/// `http://host[:port][/path]` split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HttpUrl {
    pub host: String,
    pub port: u16,
    pub path_and_query: String,
}

impl HttpUrl {
    pub fn parse(url: &str) -> Result<HttpUrl, FetchError> {
        let invalid = || FetchError::InvalidUrl(url.to_string());
        let rest = url.strip_prefix("http://").ok_or_else(invalid)?;
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let path_and_query = if path.starts_with('?') { format!("/{path}") } else { path.to_string() };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(invalid)?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| invalid())?,
                None if after.is_empty() => 80,
                None => return Err(invalid()),
            };
            (host.to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), p.parse().map_err(|_| invalid())?),
                None => (authority.to_string(), 80),
            }
        };
        if host.is_empty() || host.contains('@') {
            return Err(invalid());
        }
        Ok(HttpUrl { host, port, path_and_query })
    }

    fn host_header(&self) -> String {
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        if self.port == 80 { host } else { format!("{host}:{}", self.port) }
    }
}

/// GETs `url` and returns the status and body, all within `timeout`.
pub async fn get(url: &str, timeout: Duration) -> Result<(http::StatusCode, Bytes), FetchError> {
    let url = HttpUrl::parse(url)?;
    tokio::time::timeout(timeout, exchange(&url)).await.map_err(|_| FetchError::Timeout(timeout))?
}

async fn exchange(url: &HttpUrl) -> Result<(http::StatusCode, Bytes), FetchError> {
    let addrs = tokio::net::lookup_host((url.host.as_str(), url.port))
        .await
        .map_err(|source| FetchError::Resolve { host: url.host.clone(), source })?;
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no addresses");
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = e,
        }
    }
    let stream = stream.ok_or(FetchError::Connect { host: url.host.clone(), port: url.port, source: last })?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(FetchError::Http)?;
    let driver = tokio::spawn(conn);
    let request = http::Request::get(&url.path_and_query)
        .header(http::header::HOST, url.host_header())
        .header(http::header::USER_AGENT, "skiff-images")
        .body(Empty::<Bytes>::new())
        .map_err(FetchError::Request)?;
    let result = async {
        let response = sender.send_request(request).await.map_err(FetchError::Http)?;
        let status = response.status();
        let body = response.into_body().collect().await.map_err(FetchError::Http)?.to_bytes();
        Ok((status, body))
    }
    .await;
    driver.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_http_urls() {
        let u = HttpUrl::parse("http://numbers-api/rng").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.path_and_query.as_str()), ("numbers-api", 80, "/rng"));
        let u = HttpUrl::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.path_and_query.as_str()), ("127.0.0.1", 8080, "/"));
        let u = HttpUrl::parse("http://[::1]:81/a?b=c").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.path_and_query.as_str()), ("::1", 81, "/a?b=c"));
        assert_eq!(u.host_header(), "[::1]:81");
        let u = HttpUrl::parse("http://h?x=1").unwrap();
        assert_eq!(u.path_and_query, "/?x=1");
        for bad in ["https://h/", "h/rng", "http://", "http://h:port/", "http://[::1/", "http://u@h/"] {
            assert!(HttpUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn get_reports_connection_refused() {
        // Bind then drop to find a loopback port nobody listens on.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let err = get(&format!("http://127.0.0.1:{port}/"), Duration::from_secs(5)).await.unwrap_err();
        assert!(matches!(err, FetchError::Connect { .. }), "{err:?}");
    }
}
