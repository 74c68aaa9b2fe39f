//! Stand-ins for the kiamol chapter 3 "numbers" app (`kiamol/ch03-numbers-api`, `kiamol/ch03-numbers-web`
//! and its `:v2` look), after the upstream ASP.NET sources:
//!
//! - numbers-api: `GET /rng` returns a random number 0–99 as JSON (`42`); with `FailAfterCallCount=N` the
//!   N-th call flips it unhealthy and later calls return 500 `{"message":"Unhealthy"}`; `GET /healthz` says
//!   `Ok` (or 500 when unhealthy) and `GET /reset` makes it healthy again.
//! - numbers-web: `GET /` shows a page with a Go! button; the button POSTs back and the server fetches a
//!   number from `RngApi__Url` (default `http://numbers-api/rng`), then shows "Here it is: N", or
//!   "RNG service unavailable!" and the URL it could not reach.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use rand::Rng;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::{ImageError, RunOptions, bind_tcp, html_escape, say, serve_http};
use crate::flags::{Flags, value};

/// The URL numbers-web asks when `RngApi__Url` is not set.
pub const DEFAULT_API_URL: &str = "http://numbers-api/rng";
/// How long numbers-web waits for the API.
pub const API_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
struct ApiState {
    healthy: AtomicBool,
    calls: AtomicU64,
    /// 0: never fail.
    fail_after: u64,
}

/// Serves numbers-api on `listener` until `stop` fires. `fail_after` = 0 never fails.
pub async fn serve_api(listener: TcpListener, fail_after: u64, stop: CancellationToken) -> Result<(), ImageError> {
    let state = Arc::new(ApiState { healthy: AtomicBool::new(true), calls: AtomicU64::new(0), fail_after });
    let app = Router::new()
        .route("/rng", get(rng))
        // The upstream controller also answers on the GitHub path that the web image's default URL uses.
        .route("/sixeyed/kiamol/master/ch03/numbers/rng", get(rng))
        .route("/healthz", get(health))
        .route("/health", get(health))
        .route("/reset", get(reset))
        .with_state(state);
    serve_http(listener, app, stop).await
}

async fn rng(State(state): State<Arc<ApiState>>) -> Response {
    let calls = state.calls.fetch_add(1, Ordering::SeqCst) + 1;
    if !state.healthy.load(Ordering::SeqCst) {
        say("GET /rng: unhealthy");
        return unhealthy();
    }
    let n: u32 = rand::rng().random_range(0..100);
    if state.fail_after > 0 && calls >= state.fail_after {
        state.healthy.store(false, Ordering::SeqCst);
    }
    say(format!("GET /rng: {n}"));
    ([(header::CONTENT_TYPE, "application/json; charset=utf-8")], n.to_string()).into_response()
}

async fn health(State(state): State<Arc<ApiState>>) -> Response {
    if state.healthy.load(Ordering::SeqCst) { "Ok".into_response() } else { unhealthy() }
}

async fn reset(State(state): State<Arc<ApiState>>) -> &'static str {
    state.healthy.store(true, Ordering::SeqCst);
    "Ok"
}

fn unhealthy() -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        r#"{"message":"Unhealthy"}"#,
    )
        .into_response()
}

/// `numbers-api [--port=80] [--fail-after-call-count=N]`; env `FailAfterCallCount` as upstream.
pub async fn api_main(args: &[String], opts: &RunOptions) -> Result<u8, ImageError> {
    let flags = Flags::parse(args, &[value("port"), value("fail-after-call-count")])?;
    let port = flags.port("port", 80)?;
    let env_fail = opts.env.get("FailAfterCallCount").and_then(|v| v.trim().parse::<i64>().ok()).unwrap_or(0);
    let fail_after = u64::try_from(flags.int("fail-after-call-count", env_fail)?).unwrap_or(0);
    let listener = bind_tcp(opts.bind, port).await?;
    say(format!("numbers-api (Skiff stand-in for kiamol/ch03-numbers-api) listening on port {port}"));
    serve_api(listener, fail_after, opts.stop.clone()).await?;
    Ok(0)
}

/// numbers-web's settings.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// Where the numbers come from.
    pub api_url: String,
    /// The v2 look.
    pub v2: bool,
    /// How long to wait for the API.
    pub timeout: Duration,
}

/// Serves numbers-web on `listener` until `stop` fires.
pub async fn serve_web(listener: TcpListener, config: WebConfig, stop: CancellationToken) -> Result<(), ImageError> {
    let app = Router::new().route("/", get(web_index).post(web_go)).with_state(Arc::new(config));
    serve_http(listener, app, stop).await
}

async fn web_index(State(config): State<Arc<WebConfig>>) -> Html<String> {
    Html(page(&config, &go_form()))
}

async fn web_go(State(config): State<Arc<WebConfig>>) -> Html<String> {
    let body = match fetch_number(&config).await {
        Ok(n) => {
            say(format!("POST /: got {n} from {}", config.api_url));
            format!("<p class=\"number\">Here it is: {n}</p>{}", go_form())
        }
        Err(cause) => {
            say(format!("POST /: RNG service unavailable: {}: {cause}", config.api_url));
            format!(
                "<p class=\"error\">RNG service unavailable!</p><p>Could not get a number from <code>{}</code>: {}</p>{}",
                html_escape(&config.api_url),
                html_escape(&cause),
                go_form()
            )
        }
    };
    Html(page(&config, &body))
}

async fn fetch_number(config: &WebConfig) -> Result<i64, String> {
    let (status, body) = crate::fetch::get(&config.api_url, config.timeout).await.map_err(|e| error_chain(&e))?;
    if !status.is_success() {
        return Err(format!("the API answered HTTP {status}"));
    }
    let text = String::from_utf8_lossy(&body);
    text.trim().parse().map_err(|_| format!("the API answered {:?}, not a number", text.trim()))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(&format!(": {s}"));
        source = s.source();
    }
    out
}

fn go_form() -> String {
    "<form method=\"post\"><p>Get a random number</p><input type=\"submit\" value=\"Go!\"/></form>".to_string()
}

fn page(config: &WebConfig, body: &str) -> String {
    let (style, tag) = if config.v2 {
        ("body{font-family:'Comic Sans MS',cursive,sans-serif;font-size:20px;background:antiquewhite}", ":v2")
    } else {
        ("body{font-family:-apple-system,'Segoe UI',Roboto,sans-serif;font-size:16px;background:#fff}", "")
    };
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>KIAMOL</title><style>{style}</style></head>\n\
         <body><h1>KIAMOL Random Number Generator</h1>\n{body}\n\
         <footer><small>Skiff stand-in for kiamol/ch03-numbers-web{tag}; numbers come from {}.</small></footer>\n\
         </body></html>\n",
        html_escape(&config.api_url)
    )
}

/// `numbers-web [--port=80] [--api-url=URL]`; the URL defaults to env `RngApi__Url`, then
/// `http://numbers-api/rng`.
pub async fn web_main(args: &[String], opts: &RunOptions, v2: bool) -> Result<u8, ImageError> {
    let flags = Flags::parse(args, &[value("port"), value("api-url")])?;
    let port = flags.port("port", 80)?;
    let default_url = opts.env.get("RngApi__Url").map_or(DEFAULT_API_URL, String::as_str);
    let config = WebConfig { api_url: flags.string("api-url", default_url), v2, timeout: API_TIMEOUT };
    crate::fetch::HttpUrl::parse(&config.api_url).map_err(|e| ImageError::Usage(e.to_string()))?;
    let listener = bind_tcp(opts.bind, port).await?;
    say(format!(
        "numbers-web (Skiff stand-in for kiamol/ch03-numbers-web) listening on port {port}, API {}",
        config.api_url
    ));
    serve_web(listener, config, opts.stop.clone()).await?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::servers::test_get;

    async fn start_api(fail_after: u64) -> (SocketAddr, CancellationToken) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        tokio::spawn(serve_api(listener, fail_after, stop.clone()));
        (addr, stop)
    }

    async fn start_web(api_url: String, v2: bool) -> (SocketAddr, CancellationToken) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let config = WebConfig { api_url, v2, timeout: Duration::from_secs(2) };
        tokio::spawn(serve_web(listener, config, stop.clone()));
        (addr, stop)
    }

    async fn post(addr: SocketAddr) -> (u16, String) {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
        tokio::spawn(conn);
        let req =
            http::Request::post("/").header("host", "web").body(http_body_util::Empty::<bytes::Bytes>::new()).unwrap();
        let resp = sender.send_request(req).await.unwrap();
        let status = resp.status().as_u16();
        let body = http_body_util::BodyExt::collect(resp.into_body()).await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn api_returns_random_numbers_below_100() {
        let (addr, stop) = start_api(0).await;
        let mut seen = std::collections::HashSet::new();
        for _ in 0..30 {
            let (status, body) = test_get(addr, "/rng").await;
            assert_eq!(status, 200);
            let n: u32 = body.parse().unwrap();
            assert!(n < 100);
            seen.insert(n);
        }
        assert!(seen.len() > 1, "30 calls gave one number: {seen:?}");
        assert_eq!(test_get(addr, "/healthz").await, (200, "Ok".to_string()));
        assert_eq!(test_get(addr, "/sixeyed/kiamol/master/ch03/numbers/rng").await.0, 200);
        stop.cancel();
    }

    #[tokio::test]
    async fn api_fails_after_the_configured_call_count_until_reset() {
        let (addr, stop) = start_api(2).await;
        assert_eq!(test_get(addr, "/rng").await.0, 200);
        assert_eq!(test_get(addr, "/rng").await.0, 200);
        assert_eq!(test_get(addr, "/rng").await, (500, r#"{"message":"Unhealthy"}"#.to_string()));
        assert_eq!(test_get(addr, "/healthz").await.0, 500);
        assert_eq!(test_get(addr, "/reset").await, (200, "Ok".to_string()));
        assert_eq!(test_get(addr, "/healthz").await.0, 200);
        stop.cancel();
    }

    #[tokio::test]
    async fn web_shows_a_go_button_and_a_number_from_the_api() {
        let (api, api_stop) = start_api(0).await;
        let (web, web_stop) = start_web(format!("http://{api}/rng"), false).await;
        let (status, page) = test_get(web, "/").await;
        assert_eq!(status, 200);
        assert!(page.contains("value=\"Go!\"") && page.contains("method=\"post\""), "{page}");
        let (status, page) = post(web).await;
        assert_eq!(status, 200);
        let n = page.split("Here it is: ").nth(1).and_then(|s| s.split('<').next()).unwrap_or_else(|| panic!("{page}"));
        assert!(n.parse::<u32>().unwrap() < 100);
        api_stop.cancel();
        web_stop.cancel();
    }

    #[tokio::test]
    async fn web_names_the_api_url_when_it_is_unreachable() {
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let url = format!("http://{dead}/rng");
        let (web, stop) = start_web(url.clone(), true).await;
        let (status, page) = post(web).await;
        assert_eq!(status, 200);
        assert!(page.contains("RNG service unavailable!"), "{page}");
        assert!(page.contains(&format!("<code>{url}</code>")), "{page}");
        assert!(page.contains("Comic Sans") && page.contains("ch03-numbers-web:v2"), "v2 look: {page}");
        assert!(!page.contains("Here it is"));
        stop.cancel();
    }

    #[tokio::test]
    async fn web_reports_a_failing_api() {
        let (api, api_stop) = start_api(1).await;
        let _ = test_get(api, "/rng").await; // the one good call
        let (web, stop) = start_web(format!("http://{api}/rng"), false).await;
        let (_, page) = post(web).await;
        assert!(page.contains("RNG service unavailable!") && page.contains("HTTP 500"), "{page}");
        api_stop.cancel();
        stop.cancel();
    }

    #[tokio::test]
    async fn web_main_defaults_to_the_service_url_and_env_overrides_it() {
        // An invalid URL is refused before binding: proves which URL web_main picked up.
        let mut opts = RunOptions::default();
        opts.env.insert("RngApi__Url".into(), "https://numbers-api/rng".into());
        let err = web_main(&["--port=1".into()], &opts, false).await.unwrap_err();
        assert!(err.to_string().contains("https://numbers-api/rng"), "{err}");
        let err = web_main(&["--api-url=ftp://x".into()], &RunOptions::default(), false).await.unwrap_err();
        assert!(err.to_string().contains("ftp://x"), "{err}");
        assert_eq!(DEFAULT_API_URL, "http://numbers-api/rng");
    }
}
