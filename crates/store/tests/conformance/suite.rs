//! One async fn per behaviour, each run against every backend (see `conformance.rs`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use futures::StreamExt;
use skiff_store::{Event, KeyValue, ListOptions, Revision, Store, StoreError, WatchStream};

type S = Arc<dyn Store>;

/// The next event, failing after a few seconds.
pub async fn next_event(w: &mut WatchStream) -> anyhow::Result<Event> {
    match tokio::time::timeout(Duration::from_secs(10), w.next()).await {
        Ok(Some(Ok(ev))) => Ok(ev),
        Ok(Some(Err(e))) => bail!("watch failed: {e}"),
        Ok(None) => bail!("watch ended"),
        Err(_) => bail!("no event within 10s"),
    }
}

/// Fails if an event arrives within a short while.
async fn expect_quiet(w: &mut WatchStream) -> anyhow::Result<()> {
    if let Ok(item) = tokio::time::timeout(Duration::from_millis(300), w.next()).await {
        bail!("unexpected watch item: {item:?}");
    }
    Ok(())
}

async fn list(
    s: &S,
    prefix: &str,
    after: Option<&str>,
    limit: usize,
    revision: Revision,
) -> anyhow::Result<skiff_store::ListPage> {
    let opts = ListOptions { prefix: prefix.into(), start_after: after.map(Into::into), limit, revision };
    Ok(s.list(&opts).await?)
}

fn keys(items: &[KeyValue]) -> Vec<&str> {
    items.iter().map(|kv| kv.key.as_str()).collect()
}

fn put(ev: &Event) -> anyhow::Result<(&KeyValue, Option<&KeyValue>)> {
    match ev {
        Event::Put { kv, prev } => Ok((kv, prev.as_ref())),
        other => bail!("expected a put, got {other:?}"),
    }
}

pub async fn create_get_update_cas(s: S) -> anyhow::Result<()> {
    ensure!(s.get("/c/a").await?.is_none());
    let r1 = s.create("/c/a", b"one".to_vec()).await?;
    let kv = s.get("/c/a").await?.context("created key missing")?;
    ensure!(kv == KeyValue { key: "/c/a".into(), value: b"one".to_vec(), create_revision: r1, mod_revision: r1 });
    ensure!(matches!(s.create("/c/a", b"x".to_vec()).await, Err(StoreError::AlreadyExists(k)) if k == "/c/a"));

    let r2 = s.update("/c/a", b"two".to_vec(), r1).await?;
    ensure!(r2 > r1);
    let kv = s.get("/c/a").await?.context("updated key missing")?;
    ensure!(kv.value == b"two" && kv.create_revision == r1 && kv.mod_revision == r2, "{kv:?}");

    // A stale compare-and-swap fails and reports the current value.
    match s.update("/c/a", b"stale".to_vec(), r1).await {
        Err(StoreError::Conflict { key, current: Some(cur) }) => {
            ensure!(key == "/c/a" && cur.value == b"two" && cur.mod_revision == r2, "{cur:?}");
        }
        other => bail!("expected a conflict, got {other:?}"),
    }
    ensure!(s.get("/c/a").await?.map(|kv| kv.value) == Some(b"two".to_vec()));
    ensure!(matches!(s.update("/c/missing", b"x".to_vec(), r2).await, Err(StoreError::NotFound(_))));
    ensure!(matches!(s.update("/c/missing", b"x".to_vec(), 0).await, Err(StoreError::NotFound(_))));
    ensure!(s.get("/c/missing").await?.is_none(), "a failed update must not create the key");
    Ok(())
}

pub async fn delete_with_and_without_expected(s: S) -> anyhow::Result<()> {
    let r1 = s.create("/d/a", b"a1".to_vec()).await?;
    let r2 = s.update("/d/a", b"a2".to_vec(), r1).await?;
    ensure!(matches!(s.delete("/d/a", Some(r1)).await, Err(StoreError::Conflict { current: Some(_), .. })));
    ensure!(s.get("/d/a").await?.is_some(), "a failed delete must not delete");
    let (prev, rd) = s.delete("/d/a", Some(r2)).await?;
    ensure!(rd > r2);
    ensure!(
        prev == KeyValue { key: "/d/a".into(), value: b"a2".to_vec(), create_revision: r1, mod_revision: r2 },
        "{prev:?}"
    );
    ensure!(s.get("/d/a").await?.is_none());
    ensure!(matches!(s.delete("/d/a", None).await, Err(StoreError::NotFound(_))));
    ensure!(matches!(s.delete("/d/a", Some(rd)).await, Err(StoreError::NotFound(_))));

    let rb = s.create("/d/b", b"b".to_vec()).await?;
    let (prev, rbd) = s.delete("/d/b", None).await?;
    ensure!(prev.value == b"b" && prev.mod_revision == rb && rbd > rb);

    // Re-creating a deleted key starts a new life.
    let ra = s.create("/d/a", b"again".to_vec()).await?;
    let kv = s.get("/d/a").await?.context("re-created key missing")?;
    ensure!(kv.create_revision == ra && kv.mod_revision == ra && ra > rbd);
    Ok(())
}

pub async fn tombstones_visible_to_watchers(s: S) -> anyhow::Result<()> {
    let mut w = s.watch("/t/", 0).await?;
    let r1 = s.create("/t/a", b"1".to_vec()).await?;
    let r2 = s.update("/t/a", b"2".to_vec(), r1).await?;
    let (_, r3) = s.delete("/t/a", Some(r2)).await?;

    let ev = next_event(&mut w).await?;
    let (kv, prev) = put(&ev)?;
    ensure!(kv.key == "/t/a" && kv.value == b"1" && kv.mod_revision == r1 && prev.is_none(), "{ev:?}");
    let ev = next_event(&mut w).await?;
    let (kv, prev) = put(&ev)?;
    ensure!(kv.value == b"2" && kv.create_revision == r1 && kv.mod_revision == r2, "{ev:?}");
    let prev = prev.context("update without prev")?;
    ensure!(prev.value == b"1" && prev.mod_revision == r1, "{prev:?}");
    match next_event(&mut w).await? {
        Event::Delete { prev, revision } => {
            ensure!(revision == r3);
            ensure!(prev.key == "/t/a" && prev.value == b"2" && prev.mod_revision == r2 && prev.create_revision == r1);
        }
        other => bail!("expected a delete, got {other:?}"),
    }
    expect_quiet(&mut w).await
}

pub async fn list_prefix_limit_start_after_revision(s: S) -> anyhow::Result<()> {
    for k in ["/l/a/1", "/l/a/2", "/l/a/3", "/l/ab", "/l/b/1", "/l/a"] {
        s.create(k, k.as_bytes().to_vec()).await?;
    }
    let all = list(&s, "/l/a/", None, 0, 0).await?;
    ensure!(keys(&all.items) == ["/l/a/1", "/l/a/2", "/l/a/3"] && !all.more, "{all:?}");
    ensure!(all.items.iter().all(|kv| kv.value == kv.key.as_bytes()));
    ensure!(all.revision == s.current_revision().await?);

    let p1 = list(&s, "/l/a/", None, 2, 0).await?;
    ensure!(keys(&p1.items) == ["/l/a/1", "/l/a/2"] && p1.more, "{p1:?}");
    let p2 = list(&s, "/l/a/", Some("/l/a/2"), 2, p1.revision).await?;
    ensure!(keys(&p2.items) == ["/l/a/3"] && !p2.more && p2.revision == p1.revision, "{p2:?}");
    let exact = list(&s, "/l/a/", None, 3, 0).await?;
    ensure!(exact.items.len() == 3 && !exact.more, "limit equal to the count has no more: {exact:?}");
    let everything = list(&s, "/l/", None, 0, 0).await?;
    ensure!(keys(&everything.items) == ["/l/a", "/l/a/1", "/l/a/2", "/l/a/3", "/l/ab", "/l/b/1"]);

    // Reading at an older revision sees the old state, deleted and overwritten keys included.
    let before = s.current_revision().await?;
    let kv = s.get("/l/a/1").await?.context("missing")?;
    s.update("/l/a/1", b"new".to_vec(), kv.mod_revision).await?;
    s.delete("/l/a/2", None).await?;
    s.create("/l/a/0", b"0".to_vec()).await?;
    let old = list(&s, "/l/a/", None, 0, before).await?;
    ensure!(keys(&old.items) == ["/l/a/1", "/l/a/2", "/l/a/3"] && old.items[0].value == b"/l/a/1", "{old:?}");
    let now = list(&s, "/l/a/", None, 0, 0).await?;
    ensure!(keys(&now.items) == ["/l/a/0", "/l/a/1", "/l/a/3"] && now.items[1].value == b"new", "{now:?}");

    let future = s.current_revision().await? + 100;
    ensure!(matches!(
        s.list(&ListOptions { prefix: "/l/".into(), revision: future, ..Default::default() }).await,
        Err(StoreError::FutureRevision { .. })
    ));
    Ok(())
}

pub async fn paging_is_consistent_while_writing(s: S) -> anyhow::Result<()> {
    let mut expected = BTreeMap::new();
    for i in 0..60 {
        let key = format!("/p/k{i:03}");
        s.create(&key, vec![i]).await?;
        expected.insert(key, vec![i]);
    }
    let first = list(&s, "/p/", None, 7, 0).await?;
    let at = first.revision;
    let writer = {
        let s = s.clone();
        tokio::spawn(async move {
            for i in 0..60u8 {
                let key = format!("/p/k{i:03}");
                match i % 3 {
                    0 => s.delete(&key, None).await.map(|_| ())?,
                    1 => s
                        .update(&key, b"changed".to_vec(), s.get(&key).await?.map_or(0, |kv| kv.mod_revision))
                        .await
                        .map(|_| ())?,
                    _ => s.create(&format!("/p/k{i:03}x"), b"new".to_vec()).await.map(|_| ())?,
                }
            }
            Ok::<_, StoreError>(())
        })
    };
    let mut seen: Vec<KeyValue> = first.items;
    let mut more = first.more;
    while more {
        tokio::task::yield_now().await;
        let page = list(&s, "/p/", seen.last().map(|kv| kv.key.as_str()), 7, at).await?;
        ensure!(page.revision == at);
        more = page.more;
        seen.extend(page.items);
    }
    writer.await??;
    let got: BTreeMap<String, Vec<u8>> = seen.into_iter().map(|kv| (kv.key, kv.value)).collect();
    ensure!(got == expected, "pages at one revision must not see concurrent writes");
    Ok(())
}

pub async fn watch_replays_missed_events_then_goes_live(s: S) -> anyhow::Result<()> {
    let r1 = s.create("/w/a", b"a1".to_vec()).await?;
    s.create("/x/other", b"o".to_vec()).await?;
    let r3 = s.update("/w/a", b"a2".to_vec(), r1).await?;
    let r4 = s.create("/w/b", b"b1".to_vec()).await?;
    let (_, r5) = s.delete("/w/a", None).await?;

    let mut w = s.watch("/w/", r1).await?;
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(next_event(&mut w).await?);
    }
    let revs: Vec<Revision> = got.iter().map(Event::revision).collect();
    ensure!(revs == [r1, r3, r4, r5], "{got:?}");
    ensure!(got.iter().map(Event::key).collect::<Vec<_>>() == ["/w/a", "/w/a", "/w/b", "/w/a"]);
    ensure!(matches!(&got[1], Event::Put { prev: Some(p), .. } if p.value == b"a1"));
    ensure!(matches!(&got[3], Event::Delete { prev, .. } if prev.value == b"a2"));

    // Live, with no duplicate of the replay.
    let r6 = s.update("/w/b", b"b2".to_vec(), r4).await?;
    s.create("/x/other2", b"o".to_vec()).await?;
    let ev = next_event(&mut w).await?;
    ensure!(ev.revision() == r6 && ev.key() == "/w/b", "{ev:?}");
    expect_quiet(&mut w).await?;

    // Starting in the middle replays from there.
    let mut mid = s.watch("/w/", r4).await?;
    let revs = [next_event(&mut mid).await?, next_event(&mut mid).await?, next_event(&mut mid).await?];
    ensure!(revs.iter().map(Event::revision).collect::<Vec<_>>() == [r4, r5, r6]);
    expect_quiet(&mut mid).await
}

/// Writes more events than a watcher's buffer while it is not reading; it must still see all of them.
pub async fn slow_watcher_loses_nothing(s: S) -> anyhow::Result<()> {
    const WRITERS: usize = 8;
    const PER_WRITER: usize = 600;
    let mut w = s.watch("/slow/", 0).await?;
    // Get the watch past any initial catch-up, so that it is following live events when it falls behind.
    let first = s.create("/slow/first", vec![]).await?;
    ensure!(next_event(&mut w).await?.revision() == first);
    let mut tasks = Vec::new();
    for t in 0..WRITERS {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..PER_WRITER {
                s.create(&format!("/slow/{t}/{i}"), vec![0; 64]).await?;
            }
            Ok::<_, StoreError>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let mut last = 0;
    for n in 0..WRITERS * PER_WRITER {
        let ev = next_event(&mut w).await.with_context(|| format!("event {n}"))?;
        ensure!(ev.revision() > last, "out of order: {} after {last}", ev.revision());
        last = ev.revision();
    }
    expect_quiet(&mut w).await
}

/// `watch` fails with Compacted, either at once or as the stream's first item.
async fn expect_watch_compacted(s: &S, prefix: &str, from: Revision) -> anyhow::Result<()> {
    match s.watch(prefix, from).await {
        Err(StoreError::Compacted { requested, .. }) if requested == from => Ok(()),
        Err(e) => bail!("expected Compacted, got {e:?}"),
        Ok(mut w) => match tokio::time::timeout(Duration::from_secs(10), w.next()).await {
            Ok(Some(Err(StoreError::Compacted { .. }))) => Ok(()),
            other => bail!("expected Compacted from the stream, got {other:?}"),
        },
    }
}

pub async fn watch_from_compacted_revision_fails(s: S) -> anyhow::Result<()> {
    let mut rev = s.create("/wc/a", b"0".to_vec()).await?;
    let first = rev;
    for i in 1..5u8 {
        rev = s.update("/wc/a", vec![i], rev).await?;
    }
    s.compact(rev).await?;
    ensure!(s.compacted_revision().await? == rev);
    expect_watch_compacted(&s, "/wc/", first).await?;
    expect_watch_compacted(&s, "/wc/", rev - 1).await?;
    let old = ListOptions { prefix: "/wc/".into(), revision: first, ..Default::default() };
    ensure!(matches!(s.list(&old).await, Err(StoreError::Compacted { .. })));
    // The compaction revision itself is still readable and watchable.
    let page = list(&s, "/wc/", None, 0, rev).await?;
    ensure!(page.items.len() == 1 && page.items[0].value == [4]);
    let mut w = s.watch("/wc/", rev).await?;
    ensure!(next_event(&mut w).await?.revision() == rev);
    Ok(())
}

pub async fn compaction_keeps_latest_values(s: S) -> anyhow::Result<()> {
    let mut latest = BTreeMap::new();
    for i in 0..20u8 {
        let key = format!("/k/{i:02}");
        let mut rev = s.create(&key, vec![i]).await?;
        for j in 0..(i % 4) {
            rev = s.update(&key, vec![i, j], rev).await?;
        }
        if i % 5 == 0 {
            s.delete(&key, Some(rev)).await?;
        } else {
            latest.insert(key, (vec![i, (i % 4).saturating_sub(1)], rev));
        }
    }
    // Fix up the expected values of keys never updated.
    for (k, v) in latest.iter_mut() {
        if let Some(kv) = s.get(k).await? {
            ensure!(kv.mod_revision == v.1);
            v.0 = kv.value;
        }
    }
    let before = list(&s, "/k/", None, 0, 0).await?;
    let target = s.current_revision().await?;
    s.compact(target).await?;
    s.compact(target).await?; // again: a no-op
    ensure!(s.compacted_revision().await? == target);
    let after = list(&s, "/k/", None, 0, 0).await?;
    ensure!(after.items == before.items, "compaction changed the live keys");
    ensure!(after.items.len() == latest.len());
    for kv in &after.items {
        ensure!(latest.get(&kv.key).map(|(v, r)| (v, *r)) == Some((&kv.value, kv.mod_revision)), "{kv:?}");
    }
    // Deleted keys stay deleted and can be created again; live keys can still be updated by revision.
    ensure!(s.get("/k/00").await?.is_none());
    s.create("/k/00", b"back".to_vec()).await?;
    let (k, (_, rev)) = latest.iter().next().context("no keys")?;
    s.update(k, b"after".to_vec(), *rev).await?;
    ensure!(matches!(s.compact(s.current_revision().await? + 10).await, Err(StoreError::FutureRevision { .. })));
    Ok(())
}

pub async fn concurrent_writers_one_cas_wins(s: S) -> anyhow::Result<()> {
    const TASKS: usize = 8;
    const INCREMENTS: usize = 15;
    s.create("/cc/counter", b"0".to_vec()).await?;
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let (mut won, mut lost) = (0usize, 0usize);
            while won < INCREMENTS {
                let kv = s.get("/cc/counter").await?.context("counter missing")?;
                let n: usize = std::str::from_utf8(&kv.value)?.parse()?;
                match s.update("/cc/counter", (n + 1).to_string().into_bytes(), kv.mod_revision).await {
                    Ok(_) => won += 1,
                    Err(StoreError::Conflict { .. }) => lost += 1,
                    Err(e) => return Err(e.into()),
                }
            }
            Ok::<_, anyhow::Error>(lost)
        }));
    }
    for t in tasks {
        t.await??;
    }
    let kv = s.get("/cc/counter").await?.context("counter missing")?;
    ensure!(kv.value == (TASKS * INCREMENTS).to_string().into_bytes(), "lost updates: {:?}", kv.value);

    // Racing creates of one key: exactly one succeeds.
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let s = s.clone();
        tasks.push(tokio::spawn(async move { s.create("/cc/once", vec![t as u8]).await }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await? {
            Ok(_) => ok += 1,
            Err(StoreError::AlreadyExists(_)) => {}
            Err(e) => bail!("unexpected {e}"),
        }
    }
    ensure!(ok == 1, "{ok} creates succeeded");
    Ok(())
}

pub async fn revisions_strictly_increase(s: S) -> anyhow::Result<()> {
    let start = s.current_revision().await?;
    ensure!(start >= 1, "revisions start at 1 (0 means 'any' in Kubernetes)");
    let mut last = start;
    for i in 0..10u8 {
        let key = format!("/r/{}", i % 3);
        let rev = match s.get(&key).await? {
            None => s.create(&key, vec![i]).await?,
            Some(kv) if i % 4 == 0 => s.delete(&key, Some(kv.mod_revision)).await?.1,
            Some(kv) => s.update(&key, vec![i], kv.mod_revision).await?,
        };
        ensure!(rev > last, "revision {rev} after {last}");
        last = rev;
        ensure!(s.current_revision().await? == rev);
    }
    // Failed writes do not move the revision.
    ensure!(s.create("/r/1", vec![]).await.is_err());
    ensure!(s.current_revision().await? == last);
    Ok(())
}
