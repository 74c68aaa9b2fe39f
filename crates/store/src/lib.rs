//! The revisioned key-value store under the API server, in the shape of etcd v3: every write gets a
//! cluster-wide revision (which the API server hands out as `resourceVersion`), updates and deletes are
//! compare-and-swap on the key's last revision, deletes leave tombstones so that watchers see them, a watch
//! can start from any revision still retained, and compaction drops old revisions without blocking writers.
//!
//! Two backends implement [`Store`]: [`sqlite`] (the embedded default, one file in the data dir, in the
//! manner of kine: revision = row id) and [`etcd`] (a real etcd v3 cluster). One conformance suite
//! (`tests/`) runs against both; with the `test-util` feature, `test_util` starts a throwaway etcd for it
//! and for the end-to-end tests. [`compactor`] drops old history in the background.
//!
//! Data flow: the API server calls [`Store`] methods; each write is one atomic compare-and-swap that returns
//! the new revision, and every committed change reaches watchers as an [`Event`] carrying the previous value
//! (so the API server can filter watches by labels of both the old and the new object).

use std::pin::Pin;

use futures::Stream;

pub mod compactor;
pub mod etcd;
pub mod sqlite;
#[cfg(feature = "test-util")]
pub mod test_util;

pub use compactor::spawn_compactor;
pub use etcd::EtcdStore;
pub use sqlite::SqliteStore;

/// A revision: a positive, strictly increasing number shared by all keys of one store.
pub type Revision = i64;

/// A key with its value as of some revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// The revision that created this key (since its last delete).
    pub create_revision: Revision,
    /// The revision of the last write to this key.
    pub mod_revision: Revision,
}

/// One change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The key was created or updated; `prev` is the value it replaced, if any.
    Put { kv: KeyValue, prev: Option<KeyValue> },
    /// The key was deleted at `revision`; `prev` is its last value.
    Delete { prev: KeyValue, revision: Revision },
}

impl Event {
    pub fn revision(&self) -> Revision {
        match self {
            Event::Put { kv, .. } => kv.mod_revision,
            Event::Delete { revision, .. } => *revision,
        }
    }

    pub fn key(&self) -> &str {
        match self {
            Event::Put { kv, .. } => &kv.key,
            Event::Delete { prev, .. } => &prev.key,
        }
    }
}

/// A page of a range read, all at one revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPage {
    /// The store revision the page was read at (pass it back to read the next page consistently).
    pub revision: Revision,
    /// Keys in ascending order.
    pub items: Vec<KeyValue>,
    /// Whether more keys follow the last one returned.
    pub more: bool,
}

/// A range read: every key under `prefix`, ascending, starting after `start_after`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOptions {
    pub prefix: String,
    /// Only keys strictly greater than this one (for paging).
    pub start_after: Option<String>,
    /// At most this many keys (`0` = no limit).
    pub limit: usize,
    /// Read as of this revision (`0` = the latest). A compacted revision is [`StoreError::Compacted`].
    pub revision: Revision,
}

pub type WatchStream = Pin<Box<dyn Stream<Item = Result<Event, StoreError>> + Send>>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `create` of a key that exists.
    #[error("key {0} already exists")]
    AlreadyExists(String),
    /// The key does not exist.
    #[error("key {0} not found")]
    NotFound(String),
    /// A compare-and-swap found another revision than expected; `current` is the key's value now, if any.
    #[error("key {key} was modified concurrently")]
    Conflict { key: String, current: Option<Box<KeyValue>> },
    /// The revision asked for was compacted away; `compacted` is the oldest one still retained.
    #[error("revision {requested} has been compacted; oldest retained is {compacted}")]
    Compacted { requested: Revision, compacted: Revision },
    /// A revision newer than the store has.
    #[error("revision {requested} is in the future; current is {current}")]
    FutureRevision { requested: Revision, current: Revision },
    #[error("storage backend: {0}")]
    Backend(String),
}

/// A revisioned key-value store. All methods are safe to call concurrently.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// The latest revision of the store.
    async fn current_revision(&self) -> Result<Revision, StoreError>;

    /// The latest value of a key.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError>;

    /// A consistent range read.
    async fn list(&self, opts: &ListOptions) -> Result<ListPage, StoreError>;

    /// Creates a key that must not exist. Returns the new revision.
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<Revision, StoreError>;

    /// Replaces a key's value if its `mod_revision` is still `expected`. Returns the new revision.
    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<Revision, StoreError>;

    /// Deletes a key, if its `mod_revision` is still `expected` (or whatever it is with `None`).
    /// Returns the deleted value and the revision of the delete.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(KeyValue, Revision), StoreError>;

    /// Every change under `prefix` with a revision `>= from` (`from = 0`: from now on), in revision order,
    /// then live changes until the stream is dropped. A compacted `from` yields [`StoreError::Compacted`].
    async fn watch(&self, prefix: &str, from: Revision) -> Result<WatchStream, StoreError>;

    /// Drops history older than `revision` (the latest value of every live key is always kept).
    async fn compact(&self, revision: Revision) -> Result<(), StoreError>;

    /// The oldest revision a watch or list can still ask for.
    async fn compacted_revision(&self) -> Result<Revision, StoreError>;
}
