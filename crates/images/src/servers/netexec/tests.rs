use super::*;
use crate::servers::test_get;

struct Netexec {
    http: SocketAddr,
    udp: Option<SocketAddr>,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<Result<u8, ImageError>>>,
}

impl Netexec {
    /// The server's exit code, if it ends within five seconds.
    async fn exit_code(&mut self) -> Option<u8> {
        let task = self.task.take()?;
        tokio::time::timeout(Duration::from_secs(5), task).await.ok()?.ok()?.ok()
    }
}

impl Drop for Netexec {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

async fn start(with_udp: bool) -> Netexec {
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_addr = http.local_addr().unwrap();
    let mut udp = Vec::new();
    let mut udp_addr = None;
    if with_udp {
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        udp_addr = Some(s.local_addr().unwrap());
        udp.push(s);
    }
    let stop = CancellationToken::new();
    let task = tokio::spawn(serve(http, udp, stop.clone()));
    Netexec { http: http_addr, udp: udp_addr, stop, task: Some(task) }
}

async fn udp_ask(server: SocketAddr, text: &str) -> (String, SocketAddr) {
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let me = s.local_addr().unwrap();
    s.send_to(text.as_bytes(), server).await.unwrap();
    let mut buf = [0u8; 2048];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), s.recv_from(&mut buf)).await.unwrap().unwrap();
    (String::from_utf8_lossy(&buf[..n]).into_owned(), me)
}

async fn eventually_ready(addr: SocketAddr) -> u16 {
    for _ in 0..50 {
        let (status, _) = test_get(addr, "/healthz").await;
        if status == 200 {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    test_get(addr, "/healthz").await.0
}

#[tokio::test]
async fn http_endpoints_answer_as_upstream() {
    let n = start(true).await;
    assert_eq!(test_get(n.http, "/hostname").await, (200, hostname()));
    assert_eq!(test_get(n.http, "/hostName").await, (200, hostname()));
    assert_eq!(test_get(n.http, "/echo?msg=hello%20there").await, (200, "hello there".to_string()));
    assert_eq!(test_get(n.http, "/echo?msg=teapot&code=418").await, (418, "teapot".to_string()));
    let (status, body) = test_get(n.http, "/").await;
    assert!(status == 200 && body.starts_with("NOW: "), "{body}");
    assert!(test_get(n.http, "/no/such/path").await.1.starts_with("NOW: "));
    assert_eq!(eventually_ready(n.http).await, 200);
    let (status, _) = test_get(n.http, "/redirect?location=/echo%3Fmsg%3Dx&code=307").await;
    assert_eq!(status, 307);
}

#[tokio::test]
async fn clientip_shows_the_callers_address() {
    let n = start(false).await;
    let stream = tokio::net::TcpStream::connect(n.http).await.unwrap();
    let me = stream.local_addr().unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("/clientip").header("host", "x").body(http_body_util::Empty::<bytes::Bytes>::new());
    let resp = sender.send_request(req.unwrap()).await.unwrap();
    let body = http_body_util::BodyExt::collect(resp.into_body()).await.unwrap().to_bytes();
    assert_eq!(String::from_utf8_lossy(&body), me.to_string());
}

#[tokio::test]
async fn healthz_is_412_without_a_udp_server() {
    let n = start(false).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(test_get(n.http, "/healthz").await.0, 412);
}

#[tokio::test]
async fn udp_commands() {
    let n = start(true).await;
    let udp = n.udp.unwrap();
    assert_eq!(udp_ask(udp, "hostname\n").await.0, hostname());
    assert_eq!(udp_ask(udp, "echo Hello UDP").await.0, "hello udp");
    let (reply, me) = udp_ask(udp, "clientip").await;
    assert_eq!(reply, me.to_string());
}

#[tokio::test]
async fn dial_reaches_other_servers_over_http_and_udp() {
    let target = start(true).await;
    let n = start(false).await;
    let (port, udp_port) = (target.http.port(), target.udp.unwrap().port());
    let path = format!("/dial?request=hostname&protocol=http&host=127.0.0.1&port={port}&tries=2");
    let (status, body) = test_get(n.http, &path).await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v, serde_json::json!({"responses": [hostname(), hostname()]}));

    let path = format!("/dial?request=echo%20hi&protocol=udp&host=127.0.0.1&port={udp_port}");
    let v: serde_json::Value = serde_json::from_str(&test_get(n.http, &path).await.1).unwrap();
    assert_eq!(v, serde_json::json!({"responses": ["hi"]}));

    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let path = format!("/dial?request=hostname&host=127.0.0.1&port={dead}");
    let v: serde_json::Value = serde_json::from_str(&test_get(n.http, &path).await.1).unwrap();
    assert!(v.get("responses").is_none() && v["errors"].as_array().is_some_and(|e| e.len() == 1), "{v}");

    assert_eq!(test_get(n.http, "/dial?host=127.0.0.1&port=1").await.0, 400);
    assert_eq!(test_get(n.http, "/dial?request=x&host=127.0.0.1&port=1&protocol=sctp").await.0, 400);
}

#[tokio::test]
async fn exit_and_shutdown_end_the_server_with_the_code() {
    let mut n = start(false).await;
    let _ = crate::fetch::get(&format!("http://{}/exit?code=7", n.http), Duration::from_secs(5)).await;
    assert_eq!(n.exit_code().await, Some(7));

    let mut n = start(false).await;
    assert_eq!(test_get(n.http, "/exit?code=3&timeout=1s").await.0, 200);
    assert_eq!(n.exit_code().await, Some(3));

    let mut n = start(false).await;
    let _ = crate::fetch::get(&format!("http://{}/shutdown", n.http), Duration::from_secs(5)).await;
    assert_eq!(n.exit_code().await, Some(0));

    let mut n = start(false).await;
    let (status, body) = test_get(n.http, "/exit?timeout=soon").await;
    assert!(status == 200 && body.contains("golang duration"), "a bad duration is reported, not obeyed: {body}");
    assert_eq!(test_get(n.http, "/hostname").await.0, 200, "still serving");
    n.stop.cancel();
    assert_eq!(n.exit_code().await, Some(EXIT_SIGTERM));
}

#[test]
fn go_durations() {
    assert_eq!(parse_go_duration_or_zero(""), Some(Duration::ZERO));
    assert_eq!(parse_go_duration_or_zero("5s"), Some(Duration::from_secs(5)));
    assert_eq!(parse_go_duration_or_zero("1m30s"), Some(Duration::from_secs(90)));
    assert_eq!(parse_go_duration_or_zero("100ms"), Some(Duration::from_millis(100)));
    assert_eq!(parse_go_duration_or_zero("1.5h"), Some(Duration::from_secs(5400)));
    assert_eq!(parse_go_duration_or_zero("5"), None);
    assert_eq!(parse_go_duration_or_zero("5x"), None);
}
