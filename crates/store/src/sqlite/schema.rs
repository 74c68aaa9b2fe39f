//! The on-disk layout of the revision log and how connections to the file are opened.
//!
//! One append-only table, `log`, holds every write: its `id` (AUTOINCREMENT, so never reused even after
//! compaction deletes rows) is the store revision. `sqlite_sequence` therefore always holds the current
//! revision. A row is a create (`created = 1`), an update, or a tombstone (`deleted = 1`, `value` = the last
//! value). `prev_revision` is the id of the row it supersedes; the unique index on `(name, prev_revision)` makes
//! two writers that compare-and-swap against the same row unable to both commit. `meta` holds the compaction
//! state: `compact_rev` (reads below it fail) and `compact_done` (how far rows have physically been removed).

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

use super::sql_err;
use crate::StoreError;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    created INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    create_revision INTEGER NOT NULL,
    prev_revision INTEGER NOT NULL,
    value BLOB NOT NULL,
    old_value BLOB
);
CREATE INDEX IF NOT EXISTS log_name_id ON log (name, id);
CREATE UNIQUE INDEX IF NOT EXISTS log_name_prev_revision ON log (name, prev_revision);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
-- Start revisions at 1 like etcd, so that no read ever reports revision 0 (which Kubernetes reads as \"any\").
INSERT INTO sqlite_sequence (name, seq) SELECT 'log', 1 WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'log');
";

const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens the single writer connection, creating the file and schema if needed.
pub(super) fn open_writer(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(sql_err)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sql_err)?;
    // WAL lets readers run beside the writer; FULL fsyncs the WAL on every commit, so an acknowledged write
    // survives SIGKILL and power loss.
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).map_err(sql_err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Backend(format!("sqlite refused WAL mode (got {mode})")));
    }
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = OFF;").map_err(sql_err)?;
    conn.execute_batch(&format!("BEGIN IMMEDIATE; {SCHEMA} COMMIT;")).map_err(sql_err)?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

/// Opens a read-only connection; WAL readers see a consistent snapshot per transaction.
pub(super) fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(sql_err)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sql_err)?;
    conn.execute_batch("PRAGMA query_only = 1;").map_err(sql_err)?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_file_starts_at_revision_one_in_wal_mode() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("state.db");
        let w = open_writer(&path)?;
        let mode: String = w.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
        assert_eq!(mode, "wal");
        let sync: i64 = w.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
        assert_eq!(sync, 2, "synchronous must be FULL");
        // Reopening must not add a second sequence row.
        drop(w);
        let w = open_writer(&path)?;
        let seqs: i64 = w.query_row("SELECT count(*) FROM sqlite_sequence WHERE name = 'log'", [], |r| r.get(0))?;
        assert_eq!(seqs, 1);
        let r = open_reader(&path)?;
        let seq: i64 = r.query_row("SELECT seq FROM sqlite_sequence WHERE name = 'log'", [], |r| r.get(0))?;
        assert_eq!(seq, 1);
        assert!(r.execute("DELETE FROM meta", []).is_err(), "readers are query-only");
        Ok(())
    }
}
