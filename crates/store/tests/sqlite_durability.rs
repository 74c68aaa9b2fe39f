//! SQLite durability: every acknowledged write is on disk, across a clean reopen and across SIGKILL of the
//! writing process (the test re-runs its own binary as the writer and kills it mid-stream).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use anyhow::{Context, ensure};
use skiff_store::{ListOptions, SqliteStore, Store};

const CHILD_DB: &str = "SKIFF_STORE_TEST_CHILD_DB";

async fn everything(s: &SqliteStore) -> anyhow::Result<BTreeMap<String, (Vec<u8>, i64)>> {
    let page = s.list(&ListOptions::default()).await?;
    Ok(page.items.into_iter().map(|kv| (kv.key, (kv.value, kv.mod_revision))).collect())
}

#[tokio::test]
async fn reopen_sees_every_acknowledged_write() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("state.db");
    let mut expected = BTreeMap::new();
    let (last, compacted) = {
        let s = SqliteStore::open(&path)?;
        let mut last = 0;
        for i in 0..100u32 {
            let key = format!("/d/{}", i % 37);
            last = match s.get(&key).await? {
                None => s.create(&key, i.to_be_bytes().to_vec()).await?,
                Some(kv) if i % 5 == 0 => {
                    expected.remove(&key);
                    s.delete(&key, Some(kv.mod_revision)).await?.1
                }
                Some(kv) => s.update(&key, i.to_be_bytes().to_vec(), kv.mod_revision).await?,
            };
            if s.get(&key).await?.is_some() {
                expected.insert(key, (i.to_be_bytes().to_vec(), last));
            }
        }
        let compacted = last - 10;
        s.compact(compacted).await?;
        (last, compacted)
    };
    let s = SqliteStore::open(&path)?;
    ensure!(everything(&s).await? == expected);
    ensure!(s.current_revision().await? == last);
    ensure!(s.compacted_revision().await? == compacted);
    let next = s.create("/d/new", vec![]).await?;
    ensure!(next == last + 1, "revisions continue after reopen, got {next} after {last}");
    Ok(())
}

/// The writer half of `sigkill_loses_no_acknowledged_write`; does nothing unless run by it.
#[tokio::test]
async fn child_writer_process() -> anyhow::Result<()> {
    let Some(path) = std::env::var_os(CHILD_DB) else { return Ok(()) };
    let s = SqliteStore::open(std::path::Path::new(&path))?;
    let mut out = std::io::stdout().lock();
    for i in 0u64.. {
        let rev = s.create(&format!("/kill/{i:08}"), vec![7; 512]).await?;
        writeln!(out, "ACK {i} {rev}")?;
        out.flush()?;
    }
    Ok(())
}

#[tokio::test]
async fn sigkill_loses_no_acknowledged_write() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("state.db");
    let mut child = Command::new(std::env::current_exe()?)
        .args(["--exact", "child_writer_process", "--nocapture", "--test-threads=1"])
        .env(CHILD_DB, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().context("no child stdout")?;
    let mut acked = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        let mut parts = line.split_whitespace();
        if parts.next() != Some("ACK") {
            continue;
        }
        let i: u64 = parts.next().context("no index")?.parse()?;
        let rev: i64 = parts.next().context("no revision")?.parse()?;
        acked.push((i, rev));
        if acked.len() == 500 {
            child.kill()?; // SIGKILL, mid-write
            break;
        }
    }
    child.wait()?;
    ensure!(acked.len() == 500, "child wrote only {} keys", acked.len());
    let s = SqliteStore::open(&path)?;
    for (i, rev) in acked {
        let kv = s.get(&format!("/kill/{i:08}")).await?.with_context(|| format!("acknowledged key {i} lost"))?;
        ensure!(kv.mod_revision == rev);
    }
    Ok(())
}
