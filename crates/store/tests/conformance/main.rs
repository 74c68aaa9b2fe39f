//! The store conformance suite: every behaviour in `suite.rs` runs against SQLite and against a
//! real etcd (one fresh `etcd` process per test; the etcd tests fail if `/usr/bin/etcd` is missing).

mod suite;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use skiff_store::test_util::EtcdServer;
use skiff_store::{EtcdStore, Event, SqliteStore, Store};

/// A store under test and whatever must live as long as it (temp dir, etcd process).
pub struct Backend {
    pub store: Arc<dyn Store>,
    _keep: Box<dyn Send>,
}

pub fn sqlite_backend() -> anyhow::Result<Backend> {
    let dir = tempfile::tempdir()?;
    let store = SqliteStore::open(&dir.path().join("state.db"))?;
    Ok(Backend { store: Arc::new(store), _keep: Box::new(dir) })
}

/// A fresh etcd process (its start blocks, so off the runtime's worker threads).
pub async fn start_etcd() -> anyhow::Result<EtcdServer> {
    Ok(tokio::task::spawn_blocking(EtcdServer::start).await??)
}

pub async fn etcd_backend() -> anyhow::Result<Backend> {
    let server = start_etcd().await?;
    let store = EtcdStore::connect(server.endpoints()).await?;
    Ok(Backend { store: Arc::new(store), _keep: Box::new(server) })
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() -> anyhow::Result<()> {
                    let backend = crate::sqlite_backend()?;
                    crate::suite::$name(backend.store.clone()).await
                }
            )*
        }
        mod etcd {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() -> anyhow::Result<()> {
                    let backend = crate::etcd_backend().await?;
                    crate::suite::$name(backend.store.clone()).await
                }
            )*
        }
    };
}

conformance!(
    create_get_update_cas,
    delete_with_and_without_expected,
    tombstones_visible_to_watchers,
    list_prefix_limit_start_after_revision,
    paging_is_consistent_while_writing,
    watch_replays_missed_events_then_goes_live,
    slow_watcher_loses_nothing,
    watch_from_compacted_revision_fails,
    compaction_keeps_latest_values,
    concurrent_writers_one_cas_wins,
    revisions_strictly_increase,
);

/// Two clients on one etcd: a write through one reaches a watch opened on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_two_clients_share_writes_and_watches() -> anyhow::Result<()> {
    let server = start_etcd().await?;
    let (a, b) = (EtcdStore::connect(server.endpoints()).await?, EtcdStore::connect(server.endpoints()).await?);
    let mut w = b.watch("/shared/", 0).await?;
    let rev = a.create("/shared/x", b"hello".to_vec()).await?;
    match tokio::time::timeout(Duration::from_secs(10), w.next()).await {
        Ok(Some(Ok(Event::Put { kv, prev: None }))) => {
            anyhow::ensure!(kv.key == "/shared/x" && kv.value == b"hello" && kv.mod_revision == rev);
        }
        other => anyhow::bail!("expected the other client's put, got {other:?}"),
    }
    anyhow::ensure!(b.get("/shared/x").await?.map(|kv| kv.mod_revision) == Some(rev));
    Ok(())
}
