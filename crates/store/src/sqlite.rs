//! The embedded SQLite backend, in the manner of k3s's kine: one append-only log table whose row id is the
//! revision (see [`schema`](self) for the layout). Writes go through one writer connection, one `BEGIN
//! IMMEDIATE` transaction each, fsynced on commit (WAL, `synchronous = FULL`); the writer then publishes the
//! committed [`Event`] on an in-process broadcast while still holding the writer lock, so live events are in
//! revision order. Reads use a small pool of separate connections (WAL readers do not block the writer). All
//! database work runs on `spawn_blocking` threads. Only one process may open the file at a time.

mod log;
mod schema;
mod watch;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::Connection;
use tokio::sync::broadcast;

use crate::{Event, KeyValue, ListOptions, ListPage, Revision, Store, StoreError, WatchStream};

/// How many live events a slow watcher may fall behind before it re-reads from the database.
const BROADCAST_CAPACITY: usize = 4096;
/// Idle read connections kept open.
const MAX_IDLE_READERS: usize = 8;
/// Revisions examined per compaction transaction (as in kine), so writers never wait long.
const COMPACT_BATCH: Revision = 1000;

pub(crate) fn sql_err(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(format!("sqlite: {e}"))
}

/// A [`Store`] in one SQLite file. Cheap to clone; clones share the connections and the event broadcast.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    events: broadcast::Sender<Event>,
}

impl Inner {
    /// Runs `f` with a pooled read connection on a blocking thread.
    async fn read<T, F>(self: &Arc<Self>, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(self);
        blocking(move || {
            let pooled = inner.readers.lock().unwrap_or_else(PoisonError::into_inner).pop();
            let mut conn = match pooled {
                Some(c) => c,
                None => schema::open_reader(&inner.path)?,
            };
            let out = f(&mut conn);
            let mut idle = inner.readers.lock().unwrap_or_else(PoisonError::into_inner);
            if idle.len() < MAX_IDLE_READERS && conn.is_autocommit() {
                idle.push(conn);
            }
            out
        })
        .await
    }

    /// Runs one write on the writer connection and publishes its event before releasing the writer.
    async fn write<F>(self: &Arc<Self>, f: F) -> Result<Event, StoreError>
    where
        F: FnOnce(&mut Connection) -> Result<Event, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(self);
        blocking(move || {
            let mut conn = inner.writer.lock().unwrap_or_else(PoisonError::into_inner);
            let event = f(&mut conn)?;
            // No receivers is not an error: nobody is watching.
            let _ = inner.events.send(event.clone());
            Ok(event)
        })
        .await
    }

    /// Runs `f` on the writer connection without publishing anything (compaction).
    async fn with_writer<T, F>(self: &Arc<Self>, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(self);
        blocking(move || f(&mut inner.writer.lock().unwrap_or_else(PoisonError::into_inner))).await
    }
}

async fn blocking<T, F>(f: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
{
    tokio::task::spawn_blocking(f).await.map_err(|e| StoreError::Backend(format!("sqlite worker failed: {e}")))?
}

impl SqliteStore {
    /// Opens (or creates) the database file at `path`. Blocks briefly; call it before serving.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let writer = schema::open_writer(path)?;
        let reader = schema::open_reader(path)?;
        let (events, _) = broadcast::channel(BROADCAST_CAPACITY);
        let inner =
            Inner { path: path.to_path_buf(), writer: Mutex::new(writer), readers: Mutex::new(vec![reader]), events };
        Ok(SqliteStore { inner: Arc::new(inner) })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn current_revision(&self) -> Result<Revision, StoreError> {
        self.inner.read(|c| log::current_revision(c)).await
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let key = key.to_string();
        self.inner.read(move |c| log::get(c, &key)).await
    }

    async fn list(&self, opts: &ListOptions) -> Result<ListPage, StoreError> {
        let opts = opts.clone();
        self.inner.read(move |c| log::list(c, &opts)).await
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<Revision, StoreError> {
        let key = key.to_string();
        Ok(self.inner.write(move |c| log::create(c, &key, value)).await?.revision())
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<Revision, StoreError> {
        let key = key.to_string();
        Ok(self.inner.write(move |c| log::update(c, &key, value, expected)).await?.revision())
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(KeyValue, Revision), StoreError> {
        let key = key.to_string();
        match self.inner.write(move |c| log::delete(c, &key, expected)).await? {
            Event::Delete { prev, revision } => Ok((prev, revision)),
            Event::Put { .. } => Err(StoreError::Backend("sqlite: delete recorded a put".to_string())),
        }
    }

    async fn watch(&self, prefix: &str, from: Revision) -> Result<WatchStream, StoreError> {
        // Subscribe first: anything committed from here on is either in the receiver or in the history read.
        let rx = self.inner.events.subscribe();
        let (current, compacted) =
            self.inner.read(|c| Ok((log::current_revision(c)?, log::compact_revision(c)?))).await?;
        if from > 0 && from < compacted {
            return Err(StoreError::Compacted { requested: from, compacted });
        }
        let next = if from <= 0 { current + 1 } else { from };
        Ok(watch::stream(Arc::clone(&self.inner), rx, prefix.to_string(), next))
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        let Some(mut start) = self.inner.with_writer(move |c| log::begin_compaction(c, revision)).await? else {
            return Ok(());
        };
        let mut removed = 0;
        // One short transaction per batch; the writer lock is released in between so writes interleave.
        while start <= revision {
            let end = (start + COMPACT_BATCH - 1).min(revision);
            removed += self.inner.with_writer(move |c| log::compact_batch(c, start, end, revision)).await?;
            start = end + 1;
        }
        tracing::debug!(revision, removed, "sqlite store compacted");
        Ok(())
    }

    async fn compacted_revision(&self) -> Result<Revision, StoreError> {
        self.inner.read(|c| log::compact_revision(c)).await
    }
}
