//! One SPDY port-forward session over a byte stream. The reader loop answers every `SYN_STREAM` with a
//! `SYN_REPLY`, pairs the `error` and `data` streams of one `requestid`, and hands the pair to a forwarding task
//! that dials the pod port through the [`Backend`]. A single writer task owns the outbound header compressor, so
//! header blocks leave in the order they were compressed.
//!
//! Stream end, as client-go expects it: when the pod side closes, the data stream gets FIN and then the error
//! stream gets FIN (kubectl waits for the error stream to end before it closes the local connection); a
//! client FIN on the data stream half-closes the pod connection; `RST_STREAM` drops it.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::backend::{Backend, PodRef};
use crate::spdy::{self, Decoder, Encoder, Frame, SpdyError};

/// What the reader hands a forwarding task.
enum Inbound {
    Data(Bytes),
    Fin,
}

#[derive(Default)]
struct Pair {
    error: Option<u32>,
    data: Option<u32>,
    port: Option<String>,
}

/// Serves SPDY frames on `io` until the client goes away or sends `GOAWAY`.
pub async fn run<S>(io: S, backend: Arc<dyn Backend>, pod: PodRef) -> Result<(), SpdyError>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut rd, wr) = tokio::io::split(io);
    let (out, out_rx) = mpsc::channel::<Frame>(64);
    let writer = tokio::spawn(write_frames(wr, out_rx));
    let mut decoder = Decoder::new();
    let mut streams: HashMap<u32, mpsc::UnboundedSender<Inbound>> = HashMap::new();
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    let result = loop {
        let frame = match decoder.read(&mut rd).await {
            Ok(Some(frame)) => frame,
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        };
        match frame {
            Frame::SynStream { stream_id, headers, .. } => {
                if out.send(Frame::SynReply { stream_id, fin: false, headers: Vec::new() }).await.is_err() {
                    break Ok(());
                }
                let kind = spdy::header(&headers, "streamtype").unwrap_or_default().to_string();
                // Clients before requestid paired streams by id: the data stream follows its error stream.
                let key = match spdy::header(&headers, "requestid") {
                    Some(id) => id.to_string(),
                    None if kind == "data" => format!("#{}", stream_id.saturating_sub(2)),
                    None => format!("#{stream_id}"),
                };
                let pair = pairs.entry(key.clone()).or_default();
                match kind.as_str() {
                    "error" => pair.error = Some(stream_id),
                    "data" => pair.data = Some(stream_id),
                    other => {
                        tracing::debug!(stream_id, streamtype = other, "unexpected stream type");
                        let _ = out.send(Frame::RstStream { stream_id, status: spdy::RST_PROTOCOL_ERROR }).await;
                        continue;
                    }
                }
                if let Some(port) = spdy::header(&headers, "port") {
                    pair.port = Some(port.to_string());
                }
                if let (Some(error), Some(data)) = (pair.error, pair.data) {
                    let port = pair.port.take().unwrap_or_default();
                    pairs.remove(&key);
                    let (tx, rx) = mpsc::unbounded_channel();
                    streams.insert(data, tx);
                    tokio::spawn(forward(backend.clone(), pod.clone(), port, data, error, rx, out.clone()));
                }
            }
            Frame::Data { stream_id, fin, data } => {
                if let Some(tx) = streams.get(&stream_id) {
                    let mut gone = !data.is_empty() && tx.send(Inbound::Data(data)).is_err();
                    if fin {
                        gone |= tx.send(Inbound::Fin).is_err();
                    }
                    if gone {
                        streams.remove(&stream_id);
                    }
                }
            }
            Frame::RstStream { stream_id, .. } => {
                streams.remove(&stream_id);
            }
            Frame::Ping { id } if out.send(Frame::Ping { id }).await.is_err() => break Ok(()),
            Frame::GoAway { .. } => break Ok(()),
            _ => {}
        }
    };
    drop(streams);
    drop(out);
    let _ = writer.await;
    result
}

async fn write_frames<W: AsyncWrite + Unpin>(mut wr: W, mut rx: mpsc::Receiver<Frame>) {
    let mut encoder = Encoder::new();
    while let Some(frame) = rx.recv().await {
        let bytes = match encoder.encode(&frame) {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::debug!(error = %e, "cannot encode a frame");
                break;
            }
        };
        if wr.write_all(&bytes).await.is_err() || wr.flush().await.is_err() {
            break;
        }
    }
    let _ = wr.shutdown().await;
}

fn data(stream_id: u32, fin: bool, data: Bytes) -> Frame {
    Frame::Data { stream_id, fin, data }
}

/// Copies between one pod connection and one data stream.
async fn forward(
    backend: Arc<dyn Backend>,
    pod: PodRef,
    port: String,
    data_id: u32,
    error_id: u32,
    mut inbound: mpsc::UnboundedReceiver<Inbound>,
    out: mpsc::Sender<Frame>,
) {
    let conn = match port.parse::<u16>() {
        Ok(p) if p > 0 => backend.port_forward(&pod, p).await.map_err(|e| e.to_string()),
        _ => Err(format!("invalid port {port:?}")),
    };
    let conn = match conn {
        Ok(conn) => conn,
        Err(message) => {
            // As the kubelet words it; kubectl prints it and ends the forward.
            let text = format!("error forwarding port {port} to pod {}/{}: {message}", pod.namespace, pod.name);
            tracing::debug!(port, error = %message, "port-forward dial failed");
            let _ = out.send(data(error_id, false, Bytes::from(text))).await;
            let _ = out.send(data(error_id, true, Bytes::new())).await;
            let _ = out.send(data(data_id, true, Bytes::new())).await;
            return;
        }
    };
    let (mut rd, mut wr) = tokio::io::split(conn);
    let mut buf = vec![0u8; 32 * 1024];
    let (mut read_done, mut write_done) = (false, false);
    while !(read_done && write_done) {
        tokio::select! {
            n = rd.read(&mut buf), if !read_done => {
                match n {
                    Ok(0) | Err(_) => {
                        read_done = true;
                        let _ = out.send(data(data_id, true, Bytes::new())).await;
                        let _ = out.send(data(error_id, true, Bytes::new())).await;
                    }
                    Ok(n) => {
                        if out.send(data(data_id, false, Bytes::copy_from_slice(&buf[..n]))).await.is_err() {
                            return;
                        }
                    }
                }
            }
            msg = inbound.recv(), if !write_done => {
                match msg {
                    Some(Inbound::Data(bytes)) => {
                        if wr.write_all(&bytes).await.is_err() {
                            write_done = true;
                        }
                    }
                    Some(Inbound::Fin) => {
                        let _ = wr.shutdown().await;
                        write_done = true;
                    }
                    // Reset by the client, or the session ended.
                    None => return,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{BackendError, BoxDuplex, ExecRequest, ExecSession, LogOptions, LogStream};
    use tokio::net::TcpListener;

    /// Dials loopback ports; port 1 is refused.
    struct Loopback;

    #[async_trait::async_trait]
    impl Backend for Loopback {
        async fn exec(&self, _: ExecRequest) -> Result<ExecSession, BackendError> {
            Err(BackendError::BadRequest("no exec".into()))
        }
        async fn port_forward(&self, _: &PodRef, port: u16) -> Result<BoxDuplex, BackendError> {
            let conn = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .map_err(|e| BackendError::Internal(e.to_string()))?;
            Ok(Box::new(conn))
        }
        async fn logs(&self, _: &PodRef, _: &str, _: LogOptions) -> Result<LogStream, BackendError> {
            Err(BackendError::BadRequest("no logs".into()))
        }
    }

    async fn echo_server() -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = conn.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        port
    }

    fn syn(stream_id: u32, kind: &str, port: u16, request: &str) -> Frame {
        let headers = vec![
            ("streamtype".to_string(), kind.to_string()),
            ("port".to_string(), port.to_string()),
            ("requestid".to_string(), request.to_string()),
        ];
        Frame::SynStream { stream_id, associated_to: 0, priority: 0, fin: false, headers }
    }

    struct Client {
        enc: Encoder,
        dec: Decoder,
        io: tokio::io::DuplexStream,
    }

    impl Client {
        async fn send(&mut self, frame: Frame) {
            let bytes = self.enc.encode(&frame).unwrap();
            self.io.write_all(&bytes).await.unwrap();
        }
        async fn recv(&mut self) -> Frame {
            tokio::time::timeout(std::time::Duration::from_secs(5), self.dec.read(&mut self.io))
                .await
                .expect("a frame in time")
                .unwrap()
                .expect("a frame")
        }
    }

    fn start() -> Client {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let pod = PodRef { namespace: "default".into(), name: "web".into(), uid: None };
        tokio::spawn(run(server, Arc::new(Loopback), pod));
        Client { enc: Encoder::new(), dec: Decoder::new(), io: client }
    }

    #[tokio::test]
    async fn streams_are_replied_paired_and_forwarded() {
        let port = echo_server().await;
        let mut c = start();
        c.send(syn(1, "error", port, "0")).await;
        c.send(syn(3, "data", port, "0")).await;
        assert_eq!(c.recv().await, Frame::SynReply { stream_id: 1, fin: false, headers: vec![] });
        assert_eq!(c.recv().await, Frame::SynReply { stream_id: 3, fin: false, headers: vec![] });
        c.send(Frame::Ping { id: 9 }).await;
        assert_eq!(c.recv().await, Frame::Ping { id: 9 });
        c.send(data(3, false, Bytes::from_static(b"hello"))).await;
        let mut echoed = Vec::new();
        while echoed.len() < 5 {
            match c.recv().await {
                Frame::Data { stream_id: 3, data, fin: false } => echoed.extend_from_slice(&data),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(echoed, b"hello");
        // Half-closing the data stream closes the echo connection: FIN on data, then on error.
        c.send(data(3, true, Bytes::new())).await;
        assert_eq!(c.recv().await, data(3, true, Bytes::new()));
        assert_eq!(c.recv().await, data(1, true, Bytes::new()));
    }

    #[tokio::test]
    async fn a_refused_port_is_reported_on_the_error_stream() {
        let mut c = start();
        c.send(syn(1, "error", 1, "0")).await;
        c.send(syn(3, "data", 1, "0")).await;
        c.recv().await;
        c.recv().await;
        match c.recv().await {
            Frame::Data { stream_id: 1, fin: false, data } => {
                let text = String::from_utf8_lossy(&data);
                assert!(text.starts_with("error forwarding port 1 to pod default/web:"), "{text}");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(c.recv().await, data(1, true, Bytes::new()));
        assert_eq!(c.recv().await, data(3, true, Bytes::new()));
    }
}
