//! Synchronous reads and writes of the revision log (see `schema.rs` for the layout). Every function here
//! runs on a blocking thread with a connection the caller owns; writes take the writer connection inside one
//! `BEGIN IMMEDIATE` transaction so that the compare-and-swap check and the insert are atomic.

use rusqlite::{Connection, OptionalExtension, Row as SqlRow, Transaction, TransactionBehavior, params};

use super::sql_err;
use crate::{Event, KeyValue, ListOptions, ListPage, Revision, StoreError};

/// One row of the log.
#[derive(Debug, Clone)]
struct Row {
    id: Revision,
    name: String,
    created: bool,
    deleted: bool,
    create_revision: Revision,
    prev_revision: Revision,
    value: Vec<u8>,
    old_value: Option<Vec<u8>>,
}

const ROW_COLUMNS: &str = "id, name, created, deleted, create_revision, prev_revision, value, old_value";

impl Row {
    fn read(r: &SqlRow<'_>) -> rusqlite::Result<Row> {
        Ok(Row {
            id: r.get(0)?,
            name: r.get(1)?,
            created: r.get(2)?,
            deleted: r.get(3)?,
            create_revision: r.get(4)?,
            prev_revision: r.get(5)?,
            value: r.get(6)?,
            old_value: r.get(7)?,
        })
    }

    fn kv(&self) -> KeyValue {
        KeyValue {
            key: self.name.clone(),
            value: self.value.clone(),
            create_revision: self.create_revision,
            mod_revision: self.id,
        }
    }

    /// The change this row records, as a watcher sees it.
    fn into_event(self) -> Event {
        if self.deleted {
            let prev = KeyValue {
                key: self.name,
                value: self.value,
                create_revision: self.create_revision,
                mod_revision: self.prev_revision,
            };
            return Event::Delete { prev, revision: self.id };
        }
        let prev = (!self.created).then(|| KeyValue {
            key: self.name.clone(),
            value: self.old_value.clone().unwrap_or_default(),
            create_revision: self.create_revision,
            mod_revision: self.prev_revision,
        });
        Event::Put { kv: self.kv(), prev }
    }
}

/// The smallest string greater than every string that starts with `prefix` (`None`: no such bound).
/// UTF-8 byte order is code point order, so bumping the last code point gives an exact range.
pub(crate) fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(c) = chars.pop() {
        let next = match c as u32 {
            0xD7FF => Some('\u{E000}'),
            n => char::from_u32(n + 1),
        };
        if let Some(n) = next {
            chars.push(n);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

pub(super) fn current_revision(conn: &Connection) -> Result<Revision, StoreError> {
    conn.prepare_cached("SELECT seq FROM sqlite_sequence WHERE name = 'log'")
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .map_err(sql_err)
}

fn meta(conn: &Connection, key: &str) -> Result<i64, StoreError> {
    let v: Option<i64> = conn
        .prepare_cached("SELECT value FROM meta WHERE key = ?1")
        .and_then(|mut s| s.query_row([key], |r| r.get(0)).optional())
        .map_err(sql_err)?;
    Ok(v.unwrap_or(0))
}

fn set_meta(conn: &Connection, key: &str, value: i64) -> Result<(), StoreError> {
    conn.prepare_cached("INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = ?2")
        .and_then(|mut s| s.execute(params![key, value]))
        .map_err(sql_err)?;
    Ok(())
}

/// The oldest revision reads may ask for.
pub(super) fn compact_revision(conn: &Connection) -> Result<Revision, StoreError> {
    meta(conn, "compact_rev")
}

fn latest(conn: &Connection, name: &str) -> Result<Option<Row>, StoreError> {
    let sql = format!("SELECT {ROW_COLUMNS} FROM log WHERE name = ?1 ORDER BY id DESC LIMIT 1");
    conn.prepare_cached(&sql).and_then(|mut s| s.query_row([name], Row::read).optional()).map_err(sql_err)
}

/// The latest live value of a key.
pub(super) fn get(conn: &Connection, name: &str) -> Result<Option<KeyValue>, StoreError> {
    Ok(latest(conn, name)?.filter(|r| !r.deleted).map(|r| r.kv()))
}

/// Appends `row` (whose `id` is ignored) and returns it with its revision.
fn append(tx: &Transaction<'_>, mut row: Row) -> Result<Row, StoreError> {
    // The single writer holds the write lock, so the next AUTOINCREMENT id is known; setting it explicitly
    // lets a create record its own revision as its create_revision in one insert.
    row.id = current_revision(tx)? + 1;
    if row.created {
        row.create_revision = row.id;
    }
    tx.prepare_cached(&format!("INSERT INTO log ({ROW_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"))
        .and_then(|mut s| {
            s.execute(params![
                row.id,
                row.name,
                row.created,
                row.deleted,
                row.create_revision,
                row.prev_revision,
                row.value,
                row.old_value
            ])
        })
        .map_err(|e| match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::ConstraintViolation) => {
                StoreError::Conflict { key: row.name.clone(), current: None }
            }
            _ => sql_err(e),
        })?;
    Ok(row)
}

fn write_tx(conn: &mut Connection) -> Result<Transaction<'_>, StoreError> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql_err)
}

/// Creates `name`; fails if it exists. Returns the event of the write.
pub(super) fn create(conn: &mut Connection, name: &str, value: Vec<u8>) -> Result<Event, StoreError> {
    let tx = write_tx(conn)?;
    let prev = latest(&tx, name)?;
    if prev.as_ref().is_some_and(|p| !p.deleted) {
        return Err(StoreError::AlreadyExists(name.to_string()));
    }
    let row = Row {
        id: 0,
        name: name.to_string(),
        created: true,
        deleted: false,
        create_revision: 0,
        prev_revision: prev.map_or(0, |p| p.id),
        value,
        old_value: None,
    };
    let row = append(&tx, row)?;
    tx.commit().map_err(sql_err)?;
    Ok(row.into_event())
}

/// The live row of `name` if its revision is `expected` (any revision with `None`).
fn expect_live(tx: &Transaction<'_>, name: &str, expected: Option<Revision>) -> Result<Row, StoreError> {
    let cur = match latest(tx, name)? {
        Some(r) if !r.deleted => r,
        _ => return Err(StoreError::NotFound(name.to_string())),
    };
    match expected {
        Some(e) if e != cur.id => {
            Err(StoreError::Conflict { key: name.to_string(), current: Some(Box::new(cur.kv())) })
        }
        _ => Ok(cur),
    }
}

/// Replaces the value of `name` if it is still at revision `expected`.
pub(super) fn update(
    conn: &mut Connection,
    name: &str,
    value: Vec<u8>,
    expected: Revision,
) -> Result<Event, StoreError> {
    let tx = write_tx(conn)?;
    let cur = expect_live(&tx, name, Some(expected))?;
    let row = Row {
        id: 0,
        name: name.to_string(),
        created: false,
        deleted: false,
        create_revision: cur.create_revision,
        prev_revision: cur.id,
        value,
        old_value: Some(cur.value),
    };
    let row = append(&tx, row)?;
    tx.commit().map_err(sql_err)?;
    Ok(row.into_event())
}

/// Writes a tombstone for `name` if it is still at revision `expected` (or at any with `None`).
pub(super) fn delete(conn: &mut Connection, name: &str, expected: Option<Revision>) -> Result<Event, StoreError> {
    let tx = write_tx(conn)?;
    let cur = expect_live(&tx, name, expected)?;
    let row = Row {
        id: 0,
        name: name.to_string(),
        created: false,
        deleted: true,
        create_revision: cur.create_revision,
        prev_revision: cur.id,
        value: cur.value,
        old_value: None,
    };
    let row = append(&tx, row)?;
    tx.commit().map_err(sql_err)?;
    Ok(row.into_event())
}

/// Fails unless `revision` (`0` = latest) can be read; returns the revision to read at.
fn check_readable(conn: &Connection, revision: Revision) -> Result<Revision, StoreError> {
    let current = current_revision(conn)?;
    if revision <= 0 {
        return Ok(current);
    }
    if revision > current {
        return Err(StoreError::FutureRevision { requested: revision, current });
    }
    let compacted = compact_revision(conn)?;
    if revision < compacted {
        return Err(StoreError::Compacted { requested: revision, compacted });
    }
    Ok(revision)
}

/// The `name` range conditions for `prefix` (and `start_after`), bound as `?1`..`?3`.
fn range_sql(has_end: bool, has_after: bool) -> String {
    let mut sql = String::from("name >= ?1");
    if has_end {
        sql.push_str(" AND name < ?2");
    }
    if has_after {
        sql.push_str(" AND name > ?3");
    }
    sql
}

/// A consistent page of the latest live rows under a prefix at one revision.
pub(super) fn list(conn: &mut Connection, opts: &ListOptions) -> Result<ListPage, StoreError> {
    let tx = conn.transaction().map_err(sql_err)?;
    let revision = check_readable(&tx, opts.revision)?;
    let end = prefix_end(&opts.prefix);
    let range = range_sql(end.is_some(), opts.start_after.is_some());
    let sql = format!(
        "SELECT id, name, create_revision, value FROM log INDEXED BY log_name_id \
         WHERE {range} AND id <= ?4 AND deleted = 0 \
         AND id = (SELECT MAX(n.id) FROM log n WHERE n.name = log.name AND n.id <= ?4) \
         ORDER BY name LIMIT ?5"
    );
    let limit = if opts.limit == 0 { -1 } else { i64::try_from(opts.limit).unwrap_or(i64::MAX - 1) + 1 };
    let mut items = {
        let mut stmt = tx.prepare_cached(&sql).map_err(sql_err)?;
        let rows = stmt
            .query_map(params![opts.prefix, end, opts.start_after, revision, limit], |r| {
                Ok(KeyValue { mod_revision: r.get(0)?, key: r.get(1)?, create_revision: r.get(2)?, value: r.get(3)? })
            })
            .map_err(sql_err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(sql_err)?
    };
    let more = opts.limit > 0 && items.len() > opts.limit;
    items.truncate(if opts.limit == 0 { items.len() } else { opts.limit });
    tx.commit().map_err(sql_err)?;
    Ok(ListPage { revision, items, more })
}

/// Up to `limit` changes under `prefix` with revision `>= from`, and the store revision they were read at.
pub(super) fn history(
    conn: &mut Connection,
    prefix: &str,
    from: Revision,
    limit: usize,
) -> Result<(Vec<Event>, Revision), StoreError> {
    let tx = conn.transaction().map_err(sql_err)?;
    let current = current_revision(&tx)?;
    let compacted = compact_revision(&tx)?;
    if from < compacted {
        return Err(StoreError::Compacted { requested: from, compacted });
    }
    let end = prefix_end(prefix);
    let range = range_sql(end.is_some(), false);
    let sql = format!("SELECT {ROW_COLUMNS} FROM log WHERE id >= ?4 AND id <= ?5 AND {range} ORDER BY id LIMIT ?6");
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let events = {
        let mut stmt = tx.prepare_cached(&sql).map_err(sql_err)?;
        let rows =
            stmt.query_map(params![prefix, end, None::<String>, from, current, limit], Row::read).map_err(sql_err)?;
        rows.map(|r| r.map(Row::into_event)).collect::<Result<Vec<_>, _>>().map_err(sql_err)?
    };
    tx.commit().map_err(sql_err)?;
    Ok((events, current))
}

/// Records `revision` as the compaction point (reads below it fail from now on) and returns where physical
/// removal has to start. `None`: nothing to do.
pub(super) fn begin_compaction(conn: &mut Connection, revision: Revision) -> Result<Option<Revision>, StoreError> {
    let tx = write_tx(conn)?;
    let current = current_revision(&tx)?;
    if revision > current {
        return Err(StoreError::FutureRevision { requested: revision, current });
    }
    if revision <= compact_revision(&tx)? {
        return Ok(None);
    }
    set_meta(&tx, "compact_rev", revision)?;
    let done = meta(&tx, "compact_done")?;
    tx.commit().map_err(sql_err)?;
    Ok(Some(done))
}

/// Physically removes, among rows `start..=end` (with `end <= target`), the rows they supersede and the
/// tombstones older than `target`. Returns the number of rows removed.
pub(super) fn compact_batch(
    conn: &mut Connection,
    start: Revision,
    end: Revision,
    target: Revision,
) -> Result<usize, StoreError> {
    let tx = write_tx(conn)?;
    let superseded = tx
        .prepare_cached(
            "DELETE FROM log WHERE id IN \
             (SELECT prev_revision FROM log WHERE id >= ?1 AND id <= ?2 AND prev_revision > 0)",
        )
        .and_then(|mut s| s.execute(params![start, end]))
        .map_err(sql_err)?;
    let tombstones = tx
        .prepare_cached("DELETE FROM log WHERE id >= ?1 AND id <= ?2 AND id < ?3 AND deleted = 1")
        .and_then(|mut s| s.execute(params![start, end, target]))
        .map_err(sql_err)?;
    set_meta(&tx, "compact_done", end)?;
    tx.commit().map_err(sql_err)?;
    Ok(superseded + tombstones)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_bumps_the_last_code_point() {
        assert_eq!(prefix_end("/a/"), Some("/a0".to_string()));
        assert_eq!(prefix_end("ab"), Some("ac".to_string()));
        assert_eq!(prefix_end("a\u{10FFFF}"), Some("b".to_string()));
        assert_eq!(prefix_end("\u{D7FF}"), Some("\u{E000}".to_string()));
        assert_eq!(prefix_end(""), None);
        assert_eq!(prefix_end("\u{10FFFF}"), None);
    }

    #[test]
    fn compaction_removes_superseded_rows_and_old_tombstones_only() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let mut w = super::super::schema::open_writer(&dir.path().join("db"))?;
        let a1 = create(&mut w, "a", b"1".to_vec())?.revision();
        let a2 = update(&mut w, "a", b"2".to_vec(), a1)?.revision();
        let b1 = create(&mut w, "b", b"1".to_vec())?.revision();
        let b_del = delete(&mut w, "b", None)?.revision();
        let c1 = create(&mut w, "c", b"1".to_vec())?.revision();
        let c_del = delete(&mut w, "c", Some(c1))?.revision();
        let target = c_del;
        let start = begin_compaction(&mut w, target)?.ok_or("nothing to compact")?;
        compact_batch(&mut w, start, target, target)?;
        let ids: Vec<i64> =
            w.prepare("SELECT id FROM log ORDER BY id")?.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
        // a1 superseded; b1 and its tombstone gone; c1 superseded, but c's tombstone at the target stays.
        assert_eq!(ids, vec![a2, c_del]);
        assert!(!ids.contains(&b1) && !ids.contains(&b_del));
        assert_eq!(begin_compaction(&mut w, target)?, None, "compacting again is a no-op");
        assert!(matches!(begin_compaction(&mut w, target + 5), Err(StoreError::FutureRevision { .. })));
        Ok(())
    }
}
