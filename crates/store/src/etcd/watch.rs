//! etcd watches as [`WatchStream`]s: one etcd watch per stream (dropping the stream drops the gRPC stream,
//! which cancels the watch). `watch` waits for etcd to confirm the watch was created, so "from now on" means
//! from the moment `watch` returns. A watch cancelled because its start revision was compacted ends with
//! [`StoreError::Compacted`].

use etcd_client::{Client, EventType, WatchOptions, WatchResponse};

use super::{convert, etcd_err};
use crate::{Event, KeyValue, Revision, StoreError, WatchStream};

fn cancelled(resp: &WatchResponse, from: Revision) -> StoreError {
    if resp.compact_revision() > 0 {
        StoreError::Compacted { requested: from, compacted: resp.compact_revision() }
    } else {
        StoreError::Backend(format!("etcd: watch cancelled: {}", resp.cancel_reason()))
    }
}

fn event(ev: &etcd_client::Event) -> Result<Event, StoreError> {
    let kv = ev.kv().ok_or_else(|| StoreError::Backend("etcd: watch event without a key".into()))?;
    let kv = convert(kv)?;
    let prev = ev.prev_kv().map(convert).transpose()?;
    Ok(match ev.event_type() {
        EventType::Put => Event::Put { kv, prev },
        EventType::Delete => {
            // etcd omits prev_kv if that revision was compacted meanwhile; keep the key at least.
            let prev = prev.unwrap_or(KeyValue { key: kv.key, value: Vec::new(), create_revision: 0, mod_revision: 0 });
            Event::Delete { prev, revision: kv.mod_revision }
        }
    })
}

pub(super) async fn start(
    client: &Client,
    prefix: &str,
    from: Revision,
    end: Vec<u8>,
) -> Result<WatchStream, StoreError> {
    let key = if prefix.is_empty() { vec![0] } else { prefix.as_bytes().to_vec() };
    let mut opts = WatchOptions::new().with_range(end).with_prev_key();
    if from > 0 {
        opts = opts.with_start_revision(from);
    }
    let mut stream = client.watch_client().watch(key, Some(opts)).await.map_err(etcd_err)?;
    // The first response confirms creation (or refuses the watch).
    let first = stream.message().await.map_err(etcd_err)?;
    let pending = match first {
        Some(resp) if resp.canceled() => return Err(cancelled(&resp, from)),
        Some(resp) if resp.created() && resp.events().is_empty() => None,
        Some(resp) => Some(resp),
        None => return Err(StoreError::Backend("etcd: watch stream closed before creation".into())),
    };
    Ok(Box::pin(async_stream::stream! {
        let mut next = pending;
        loop {
            let resp = match next.take() {
                Some(resp) => resp,
                None => match stream.message().await {
                    Ok(Some(resp)) => resp,
                    Ok(None) => return,
                    Err(e) => {
                        yield Err(etcd_err(e));
                        return;
                    }
                },
            };
            if resp.canceled() {
                yield Err(cancelled(&resp, from));
                return;
            }
            for ev in resp.events() {
                yield event(ev);
            }
        }
    }))
}
