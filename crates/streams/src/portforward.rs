//! `kubectl port-forward`: SPDY/3.1 sessions, reached either through a WebSocket whose binary messages carry the
//! SPDY byte stream (`SPDY/3.1+portforward.k8s.io`, what kubectl ≥ 1.31 uses) or through a raw HTTP upgrade to
//! `SPDY/3.1` (the fallback). Each local connection is a pair of SPDY streams with one `requestid`: `error`
//! (text written there makes kubectl give up) and `data` (the bytes). See [`session`].

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, close_code};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use crate::backend::{Backend, PodRef};

pub mod session;

/// The WebSocket subprotocol of the tunnelled form.
pub const WEBSOCKET_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";
/// `X-Stream-Protocol-Version` of the raw SPDY form.
pub const STREAM_PROTOCOL: &str = "portforward.k8s.io";

/// Serves a port-forward session on a WebSocket tunnel.
pub async fn serve_websocket(socket: WebSocket, backend: Arc<dyn Backend>, pod: PodRef) {
    let (ours, theirs) = tokio::io::duplex(256 * 1024);
    let tunnel = tokio::spawn(tunnel(socket, ours));
    if let Err(e) = session::run(theirs, backend, pod).await {
        tracing::debug!(error = %e, "port-forward session ended with an error");
    }
    let _ = tunnel.await;
}

/// Copies WebSocket binary messages into `io` and `io`'s bytes out as binary messages; ends with Close(1000)
/// once the session side has closed.
async fn tunnel(socket: WebSocket, io: DuplexStream) {
    let (mut sink, mut incoming) = socket.split();
    let (mut rd, mut wr) = tokio::io::split(io);
    let inbound = async move {
        while let Some(Ok(msg)) = incoming.next().await {
            match msg {
                Message::Binary(data) if wr.write_all(&data).await.is_err() => break,
                Message::Close(_) => break,
                _ => {}
            }
        }
        let _ = wr.shutdown().await;
    };
    let outbound = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if sink.send(Message::Binary(bytes::Bytes::copy_from_slice(&buf[..n]))).await.is_err() {
                        return;
                    }
                }
            }
        }
        let close = CloseFrame { code: close_code::NORMAL, reason: "".into() };
        let _ = sink.send(Message::Close(Some(close))).await;
    };
    tokio::pin!(inbound, outbound);
    tokio::select! {
        () = &mut inbound => outbound.await,
        () = &mut outbound => { let _ = tokio::time::timeout(Duration::from_secs(2), inbound).await; }
    }
}
