//! Watches on the SQLite log: replay history from the database, then follow the in-process broadcast of
//! committed events. The receiver is subscribed *before* history is read, so every event is either in the
//! history read or still queued in the receiver; `next` (the lowest revision not yet delivered) drops the
//! overlap. A receiver that lags behind the broadcast goes back to the database instead of losing events.

use std::sync::Arc;

use tokio::sync::broadcast::{Receiver, error::RecvError};

use super::Inner;
use crate::{Event, Revision, WatchStream};

/// How many history rows one catch-up read returns.
const HISTORY_BATCH: usize = 500;

/// The stream of changes under `prefix` from revision `next` on.
pub(super) fn stream(inner: Arc<Inner>, mut rx: Receiver<Event>, prefix: String, mut next: Revision) -> WatchStream {
    Box::pin(async_stream::stream! {
        let mut catching_up = true;
        loop {
            if catching_up {
                let read = {
                    let prefix = prefix.clone();
                    inner.read(move |c| super::log::history(c, &prefix, next, HISTORY_BATCH)).await
                };
                match read {
                    Ok((events, read_at)) => {
                        let complete = events.len() < HISTORY_BATCH;
                        for ev in events {
                            next = ev.revision() + 1;
                            yield Ok(ev);
                        }
                        if complete {
                            // Everything up to `read_at` has been delivered.
                            next = next.max(read_at + 1);
                            catching_up = false;
                        }
                    }
                    Err(e) => {
                        yield Err(e);
                        return;
                    }
                }
                continue;
            }
            match rx.recv().await {
                Ok(ev) => {
                    if ev.revision() >= next && ev.key().starts_with(prefix.as_str()) {
                        next = ev.revision() + 1;
                        yield Ok(ev);
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::debug!(missed, next, "sqlite watch lagged; re-reading from the database");
                    catching_up = true;
                }
                Err(RecvError::Closed) => return,
            }
        }
    })
}
