//! Static-page stand-ins: `nigelpoulton/k8sbook` (a hello page on 8080) and `nginx` (files from
//! `/usr/share/nginx/html` on 80 — where tutorials mount ConfigMaps — else the nginx welcome page, and
//! nginx-style 404/405 pages).

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Response};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::{ImageError, RunOptions, bind_tcp, hostname, html_escape, say, serve_http};
use crate::flags::{Flags, value};

/// Serves the k8sbook hello page on `listener` until `stop` fires.
pub async fn serve_k8sbook(listener: TcpListener, stop: CancellationToken) -> Result<(), ImageError> {
    let app = Router::new().fallback(k8sbook_page);
    serve_http(listener, app, stop).await
}

async fn k8sbook_page(uri: Uri) -> Html<String> {
    say(format!("GET {uri}"));
    Html(format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>The Kubernetes Book</title></head>\n\
         <body><h1>Hello from The Kubernetes Book!</h1>\n<p>Served by pod <b>{}</b>.</p>\n\
         <footer><small>Skiff stand-in for nigelpoulton/k8sbook.</small></footer></body></html>\n",
        html_escape(&hostname())
    ))
}

/// `k8sbook [--port=8080]`.
pub async fn k8sbook_main(args: &[String], opts: &RunOptions) -> Result<u8, ImageError> {
    let flags = Flags::parse(args, &[value("port")])?;
    let port = flags.port("port", 8080)?;
    let listener = bind_tcp(opts.bind, port).await?;
    say(format!("k8sbook (Skiff stand-in for nigelpoulton/k8sbook) listening on port {port}"));
    serve_k8sbook(listener, opts.stop.clone()).await?;
    Ok(0)
}

/// The nginx image's document root.
pub const NGINX_ROOT: &str = "/usr/share/nginx/html";

const WELCOME: &str = "<!DOCTYPE html>\n<html>\n<head>\n<title>Welcome to nginx!</title>\n<style>\n\
html { color-scheme: light dark; }\nbody { width: 35em; margin: 0 auto;\n\
font-family: Tahoma, Verdana, Arial, sans-serif; }\n</style>\n</head>\n<body>\n<h1>Welcome to nginx!</h1>\n\
<p>If you see this page, the web server is successfully installed and working.</p>\n\
<p><em>This is Skiff's built-in stand-in for the nginx image: it serves files from \
/usr/share/nginx/html and this page when there is no index.html.</em></p>\n</body>\n</html>\n";

fn nginx_error(status: StatusCode) -> Response {
    let line = format!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or(""));
    let body = format!(
        "<html>\n<head><title>{line}</title></head>\n<body>\n<center><h1>{line}</h1></center>\n\
         <hr><center>nginx (Skiff stand-in)</center>\n</body>\n</html>\n"
    );
    (status, [(header::CONTENT_TYPE, "text/html")], body).into_response()
}

/// Serves files under `root` on `listener` until `stop` fires.
pub async fn serve_nginx(listener: TcpListener, root: PathBuf, stop: CancellationToken) -> Result<(), ImageError> {
    let app = Router::new().fallback(nginx_handler).with_state(Arc::new(root));
    serve_http(listener, app, stop).await
}

async fn nginx_handler(State(root): State<Arc<PathBuf>>, method: Method, uri: Uri) -> Response {
    let response = nginx_respond(&root, &method, &uri).await;
    say(format!("\"{method} {uri}\" {}", response.status().as_u16()));
    response
}

async fn nginx_respond(root: &Path, method: &Method, uri: &Uri) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return nginx_error(StatusCode::METHOD_NOT_ALLOWED);
    }
    let Some(relative) = safe_relative_path(uri.path()) else {
        return nginx_error(StatusCode::BAD_REQUEST);
    };
    let mut file = root.join(&relative);
    if tokio::fs::metadata(&file).await.is_ok_and(|m| m.is_dir()) {
        file.push("index.html");
    }
    match tokio::fs::read(&file).await {
        Ok(bytes) => ([(header::CONTENT_TYPE, content_type(&file))], bytes).into_response(),
        Err(_) if relative.as_os_str().is_empty() || relative == Path::new("index.html") => {
            Html(WELCOME).into_response()
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => nginx_error(StatusCode::FORBIDDEN),
        Err(_) => nginx_error(StatusCode::NOT_FOUND),
    }
}

/// The URL path as a relative file path, percent-decoded; `None` if it would leave the root.
fn safe_relative_path(path: &str) -> Option<PathBuf> {
    let decoded = percent_decode(path)?;
    let mut out = PathBuf::new();
    for component in Path::new(&decoded).components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let text = String::from_utf8(out).ok()?;
    (!text.contains('\0')).then_some(text)
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("html" | "htm") => "text/html",
        Some("css") => "text/css",
        Some("js") => "application/javascript",
        Some("json") => "application/json",
        Some("txt") => "text/plain",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("ico") => "image/x-icon",
        _ => "application/octet-stream",
    }
}

/// `nginx [--port=80] [--root=/usr/share/nginx/html]`; the real image's default arguments
/// (`nginx -g 'daemon off;'`) are accepted and ignored.
pub async fn nginx_main(args: &[String], opts: &RunOptions) -> Result<u8, ImageError> {
    let mut rest: &[String] = args;
    if rest.first().is_some_and(|a| a == "nginx" || a == "nginx-debug") {
        rest = &rest[1..];
    }
    if rest.first().is_some_and(|a| a == "-g") {
        rest = rest.get(2..).unwrap_or(&[]);
    }
    let flags = Flags::parse(rest, &[value("port"), value("root")])?;
    let port = flags.port("port", 80)?;
    let root = PathBuf::from(flags.string("root", NGINX_ROOT));
    let listener = bind_tcp(opts.bind, port).await?;
    say(format!("nginx (Skiff stand-in) serving {} on port {port}", root.display()));
    serve_nginx(listener, root, opts.stop.clone()).await?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::servers::test_get;

    async fn start_nginx(root: PathBuf) -> (SocketAddr, CancellationToken) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        tokio::spawn(serve_nginx(listener, root, stop.clone()));
        (addr, stop)
    }

    #[tokio::test]
    async fn nginx_serves_the_welcome_page_without_an_index() {
        let dir = tempfile::tempdir().unwrap();
        let (addr, stop) = start_nginx(dir.path().to_path_buf()).await;
        let (status, body) = test_get(addr, "/").await;
        assert_eq!(status, 200);
        assert!(body.contains("<h1>Welcome to nginx!</h1>") && body.contains("stand-in"), "{body}");
        let (status, body) = test_get(addr, "/missing.txt").await;
        assert_eq!(status, 404);
        assert!(body.contains("404 Not Found"), "{body}");
        stop.cancel();
    }

    #[tokio::test]
    async fn nginx_serves_files_and_stays_inside_its_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("html");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("index.html"), "<p>from a configmap</p>").unwrap();
        std::fs::write(root.join("sub/a b.txt"), "spaced").unwrap();
        std::fs::write(dir.path().join("secret"), "outside").unwrap();
        let (addr, stop) = start_nginx(root).await;
        assert_eq!(test_get(addr, "/").await, (200, "<p>from a configmap</p>".to_string()));
        assert_eq!(test_get(addr, "/sub/a%20b.txt").await, (200, "spaced".to_string()));
        assert_eq!(test_get(addr, "/%2e%2e/secret").await.0, 400);
        assert_eq!(test_get(addr, "/sub/").await.0, 404);
        stop.cancel();
    }

    #[test]
    fn relative_paths() {
        assert_eq!(safe_relative_path("/"), Some(PathBuf::new()));
        assert_eq!(safe_relative_path("/a/./b"), Some(PathBuf::from("a/b")));
        assert_eq!(safe_relative_path("/a/../b"), None);
        assert_eq!(safe_relative_path("/%zz"), None);
        assert_eq!(safe_relative_path("/a%00"), None);
    }

    #[tokio::test]
    async fn k8sbook_says_hello_with_the_hostname() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        tokio::spawn(serve_k8sbook(listener, stop.clone()));
        let (status, body) = test_get(addr, "/anything").await;
        assert_eq!(status, 200);
        assert!(body.contains("Kubernetes Book") && body.contains(&html_escape(&hostname())), "{body}");
        stop.cancel();
    }

    #[tokio::test]
    async fn nginx_accepts_the_real_images_default_arguments() {
        let args: Vec<String> = ["nginx", "-g", "daemon off;", "--port=0"].iter().map(|s| s.to_string()).collect();
        // --port=0 is refused after the nginx arguments were skipped: a flag error, not "unexpected argument".
        let err = nginx_main(&args, &RunOptions::default()).await.unwrap_err();
        assert!(err.to_string().contains("--port"), "{err}");
    }
}
