//! `kubectl exec` over WebSocket, the kubelet's channel protocol (`v5.channel.k8s.io`, also `v4`): every binary
//! message starts with a channel byte — 0 stdin, 1 stdout, 2 stderr, 3 the final `metav1.Status`, 4 terminal
//! resize, 255 (v5) "close stream N". Order at the end: drain stdout/stderr → status on 3 → Close(1000), the only
//! sequence after which kubectl reports the exit code instead of an abnormal closure.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, close_code};
use bytes::{BufMut, Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::backend::{Backend, BackendError, BoxRead, ExecRequest, TerminalSize};

pub const PROTOCOL_V5: &str = "v5.channel.k8s.io";
pub const PROTOCOL_V4: &str = "v4.channel.k8s.io";
/// The subprotocols served, preferred first.
pub const PROTOCOLS: [&str; 2] = [PROTOCOL_V5, PROTOCOL_V4];

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const ERROR: u8 = 3;
pub const RESIZE: u8 = 4;
pub const CLOSE: u8 = 255;

/// How long output may keep flowing after the process exited (a background child can hold the pipes open).
const DRAIN: Duration = Duration::from_secs(2);

/// The status message on channel 3 for an exit code (`NonZeroExitCode` carries the code as a cause) or a
/// failure to run the command at all.
pub fn exit_status(result: &Result<i32, BackendError>) -> Value {
    match result {
        Ok(0) => json!({"metadata": {}, "status": "Success"}),
        Ok(code) => json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("command terminated with non-zero exit code: exit status {code}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        Err(e) => {
            json!({"metadata": {}, "status": "Failure", "message": e.to_string(), "reason": e.reason(), "code": e.code()})
        }
    }
}

fn framed(channel: u8, data: &[u8]) -> Message {
    let mut buf = BytesMut::with_capacity(data.len() + 1);
    buf.put_u8(channel);
    buf.put_slice(data);
    Message::Binary(buf.freeze())
}

/// Runs one exec session on an upgraded WebSocket.
pub async fn serve(socket: WebSocket, backend: std::sync::Arc<dyn Backend>, req: ExecRequest) {
    let (mut sink, mut incoming) = socket.split();
    let (tx, mut rx) = mpsc::channel::<Message>(32);
    // One writer owns the sink; it stops after the Close frame.
    let writer = tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            let closing = matches!(msg, Message::Close(_));
            if sink.send(msg).await.is_err() || closing {
                break;
            }
        }
    });

    let result = match backend.exec(req).await {
        Ok(mut session) => {
            let stdout = session.stdout.take().map(|r| tokio::spawn(pump(r, STDOUT, tx.clone())));
            let stderr = session.stderr.take().map(|r| tokio::spawn(pump(r, STDERR, tx.clone())));
            let mut stdin = session.stdin.take();
            let resize = session.resize.take();
            // Client messages: stdin data, resize, close-stdin. Reading also answers pings.
            let reader = tokio::spawn(async move {
                while let Some(Ok(msg)) = incoming.next().await {
                    let data = match msg {
                        Message::Binary(data) => data,
                        Message::Close(_) => break,
                        _ => continue,
                    };
                    match data.first().copied() {
                        Some(STDIN) => {
                            if let Some(w) = stdin.as_mut()
                                && (w.write_all(&data[1..]).await.is_err() || w.flush().await.is_err())
                            {
                                stdin = None;
                            }
                        }
                        Some(RESIZE) => {
                            if let (Some(tx), Some(size)) = (&resize, parse_resize(&data[1..])) {
                                let _ = tx.send(size);
                            }
                        }
                        Some(CLOSE) if data.get(1) == Some(&STDIN) => {
                            if let Some(mut w) = stdin.take() {
                                let _ = w.shutdown().await;
                            }
                        }
                        _ => {}
                    }
                }
            });
            let result = session.exit.await;
            for pump in [stdout, stderr].into_iter().flatten() {
                let _ = tokio::time::timeout(DRAIN, pump).await;
            }
            reader.abort();
            result
        }
        Err(e) => Err(e),
    };
    tracing::debug!(result = ?result, "exec finished");
    let status = serde_json::to_vec(&exit_status(&result)).unwrap_or_default();
    let _ = tx.send(framed(ERROR, &status)).await;
    let close = CloseFrame { code: close_code::NORMAL, reason: "".into() };
    let _ = tx.send(Message::Close(Some(close))).await;
    drop(tx);
    let _ = writer.await;
}

async fn pump(mut reader: BoxRead, channel: u8, tx: mpsc::Sender<Message>) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if tx.send(framed(channel, &buf[..n])).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// `{"Width":80,"Height":24}` (a trailing newline is fine).
pub fn parse_resize(data: &[u8]) -> Option<TerminalSize> {
    let v: Value = serde_json::from_slice(data).ok()?;
    let dim = |k: &str| v[k].as_u64().and_then(|n| u16::try_from(n).ok());
    Some(TerminalSize { width: dim("Width")?, height: dim("Height")? })
}

/// Bytes of one framed message, for tests and clients.
pub fn frame(channel: u8, data: &[u8]) -> Bytes {
    match framed(channel, data) {
        Message::Binary(b) => b,
        _ => Bytes::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_become_the_status_kubectl_decodes() {
        assert_eq!(exit_status(&Ok(0))["status"], "Success");
        let failed = exit_status(&Ok(3));
        assert_eq!(failed["reason"], "NonZeroExitCode");
        assert_eq!(failed["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(failed["details"]["causes"][0]["message"], "3");
        let error = exit_status(&Err(BackendError::NotFound("container \"x\" not found".into())));
        assert_eq!(error["status"], "Failure");
        assert_eq!(error["message"], "container \"x\" not found");
        assert!(error.get("details").is_none());
    }

    #[test]
    fn resize_messages_parse() {
        assert_eq!(parse_resize(b"{\"Width\":80,\"Height\":24}\n"), Some(TerminalSize { width: 80, height: 24 }));
        assert_eq!(parse_resize(b"{\"Width\":80}"), None);
        assert_eq!(frame(STDOUT, b"hi").as_ref(), &[1, b'h', b'i']);
    }
}
