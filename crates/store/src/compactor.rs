//! Background compaction. Every `interval` the compactor compacts to the revision it saw at the *previous*
//! tick (as the Kubernetes API server does, so history covers at least one interval of time), but never
//! closer than `keep` revisions to the head (as kine does, so a burst of writes still leaves a window for
//! watchers to resume in). Defaults: every 5 minutes, keeping 1000 revisions.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::{Revision, Store, StoreError};

/// The API server's compaction interval.
pub const DEFAULT_COMPACT_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// kine's minimum retained revisions.
pub const DEFAULT_COMPACT_KEEP: Revision = 1000;

/// One compaction step: compacts to `min(previous, current - keep)` if that is newer than the last
/// compaction. Returns the store's current revision (the `previous` for the next step) and the revision
/// compacted to, if any.
pub async fn compact_step(
    store: &dyn Store,
    previous: Revision,
    keep: Revision,
) -> Result<(Revision, Option<Revision>), StoreError> {
    let current = store.current_revision().await?;
    let target = previous.min(current - keep.max(0));
    if target <= 0 || target <= store.compacted_revision().await? {
        return Ok((current, None));
    }
    store.compact(target).await?;
    Ok((current, Some(target)))
}

/// Runs [`compact_step`] every `interval` until the returned task is aborted. Errors are logged and retried
/// at the next tick.
pub fn spawn_compactor(store: Arc<dyn Store>, keep: Revision, interval: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut previous = 0;
        loop {
            ticks.tick().await;
            match compact_step(store.as_ref(), previous, keep).await {
                Ok((current, compacted)) => {
                    if let Some(revision) = compacted {
                        tracing::info!(revision, current, "store compacted");
                    }
                    previous = current;
                }
                Err(error) => tracing::warn!(%error, "store compaction failed"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::SqliteStore;

    #[tokio::test]
    async fn step_compacts_to_previous_tick_but_keeps_a_window() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = SqliteStore::open(&dir.path().join("db"))?;
        let mut rev = store.create("/k", b"0".to_vec()).await?;
        for i in 1..20 {
            rev = store.update("/k", vec![i], rev).await?;
        }
        // First tick: nothing seen before, nothing compacted.
        let (seen, done) = compact_step(&store, 0, 5).await?;
        assert_eq!((seen, done), (rev, None));
        for i in 0..10 {
            rev = store.update("/k", vec![i], rev).await?;
        }
        // The previous tick's revision is older than current - keep: compact to it.
        let (_, done) = compact_step(&store, seen, 5).await?;
        assert_eq!(done, Some(seen));
        assert_eq!(store.compacted_revision().await?, seen);
        // A large keep wins over the previous tick.
        let (_, done) = compact_step(&store, rev, 1000).await?;
        assert_eq!(done, None);
        Ok(())
    }

    #[tokio::test]
    async fn spawned_compactor_runs_on_its_interval() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = Arc::new(SqliteStore::open(&dir.path().join("db"))?);
        let mut rev = store.create("/k", b"0".to_vec()).await?;
        let task = spawn_compactor(store.clone(), 1, Duration::from_millis(20));
        for i in 0..3u8 {
            rev = store.update("/k", vec![i], rev).await?;
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        for _ in 0..200 {
            if store.compacted_revision().await? > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        task.abort();
        assert!(store.compacted_revision().await? > 0);
        Ok(())
    }
}
