//! The etcd v3 backend: every [`Store`] call is one etcd request. Compare-and-swap writes are etcd
//! transactions (`create`: `create_revision == 0`; `update`/`delete`: `mod_revision == expected`, else read the
//! key back to report [`StoreError::NotFound`] or [`StoreError::Conflict`]). Lists are ranges over the prefix
//! at one revision; watches are etcd watches with `prev_kv`. etcd keeps no readable record of how far it was
//! compacted, so, like the Kubernetes API server, [`EtcdStore::compact`] records the revision in the key
//! [`COMPACT_REV_KEY`] (outside any prefix the API server uses) after compacting.

mod watch;

use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, GetResponse, Txn, TxnOp, TxnOpResponse,
    TxnResponse,
};

use crate::{KeyValue, ListOptions, ListPage, Revision, Store, StoreError, WatchStream};

/// The key that records the last compaction revision (the name the Kubernetes API server uses).
pub const COMPACT_REV_KEY: &str = "compact_rev_key";

/// A [`Store`] backed by an etcd v3 cluster. Cheap to clone.
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
}

pub(crate) fn etcd_err(e: etcd_client::Error) -> StoreError {
    StoreError::Backend(format!("etcd: {e}"))
}

fn is_compacted(e: &etcd_client::Error) -> bool {
    e.to_string().contains("required revision has been compacted")
}

fn is_future(e: &etcd_client::Error) -> bool {
    e.to_string().contains("required revision is a future revision")
}

/// The first key after every key that starts with `prefix` (`[0]`: no upper bound, etcd's "all keys").
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn convert(kv: &etcd_client::KeyValue) -> Result<KeyValue, StoreError> {
    let key = kv.key_str().map_err(|e| StoreError::Backend(format!("etcd: key is not utf-8: {e}")))?;
    Ok(KeyValue {
        key: key.to_string(),
        value: kv.value().to_vec(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
    })
}

fn header_revision(resp: &TxnResponse) -> Result<Revision, StoreError> {
    resp.header().map(|h| h.revision()).ok_or_else(|| StoreError::Backend("etcd: response without header".into()))
}

/// The key as read by the `else` branch of a failed transaction.
fn failed_read(resp: &TxnResponse) -> Result<Option<KeyValue>, StoreError> {
    for op in resp.op_responses() {
        if let TxnOpResponse::Get(get) = op {
            return get.kvs().first().map(convert).transpose();
        }
    }
    Err(StoreError::Backend("etcd: transaction returned no read".into()))
}

/// What a failed compare-and-swap on `key` means.
fn cas_failure(key: &str, resp: &TxnResponse) -> StoreError {
    match failed_read(resp) {
        Ok(None) => StoreError::NotFound(key.to_string()),
        Ok(Some(kv)) => StoreError::Conflict { key: key.to_string(), current: Some(Box::new(kv)) },
        Err(e) => e,
    }
}

impl EtcdStore {
    /// Connects to an etcd cluster (e.g. `http://127.0.0.1:2379`) and checks that it answers.
    pub async fn connect(endpoints: &[String]) -> Result<Self, StoreError> {
        // No per-request timeout: it would also cut long-running watch streams. Keep-alives detect dead peers.
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
            .with_require_leader(true);
        let client = Client::connect(endpoints, Some(options)).await.map_err(etcd_err)?;
        let store = EtcdStore { client };
        store.current_revision().await?;
        Ok(store)
    }

    async fn range(
        &self,
        key: impl Into<Vec<u8>>,
        opts: Option<GetOptions>,
    ) -> Result<GetResponse, etcd_client::Error> {
        self.client.kv_client().get(key, opts).await
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse, StoreError> {
        self.client.kv_client().txn(txn).await.map_err(etcd_err)
    }

    /// The recorded compaction revision and the `mod_revision` of its record (0 if none).
    async fn compact_record(&self) -> Result<(Revision, Revision), StoreError> {
        let resp = self.range(COMPACT_REV_KEY, None).await.map_err(etcd_err)?;
        let Some(kv) = resp.kvs().first() else { return Ok((0, 0)) };
        let text = std::str::from_utf8(kv.value()).unwrap_or_default();
        let rev = text
            .parse()
            .map_err(|_| StoreError::Backend(format!("etcd: {COMPACT_REV_KEY} holds {text:?}, not a revision")))?;
        Ok((rev, kv.mod_revision()))
    }

    /// Maps a read error at `requested` onto the store's errors.
    async fn read_error(&self, requested: Revision, e: etcd_client::Error) -> StoreError {
        if is_compacted(&e) {
            let recorded = self.compact_record().await.map(|(rev, _)| rev).unwrap_or(0);
            return StoreError::Compacted { requested, compacted: recorded.max(requested + 1) };
        }
        if is_future(&e) {
            let current = self.current_revision().await.unwrap_or(0);
            return StoreError::FutureRevision { requested, current };
        }
        etcd_err(e)
    }
}

#[async_trait::async_trait]
impl Store for EtcdStore {
    async fn current_revision(&self) -> Result<Revision, StoreError> {
        let opts = GetOptions::new().with_count_only();
        let resp = self.range(COMPACT_REV_KEY, Some(opts)).await.map_err(etcd_err)?;
        resp.header().map(|h| h.revision()).ok_or_else(|| StoreError::Backend("etcd: response without header".into()))
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let resp = self.range(key, None).await.map_err(etcd_err)?;
        resp.kvs().first().map(convert).transpose()
    }

    async fn list(&self, opts: &ListOptions) -> Result<ListPage, StoreError> {
        let prefix = opts.prefix.as_bytes();
        let mut start = prefix.to_vec();
        if let Some(after) = opts.start_after.as_ref().filter(|a| a.as_bytes() >= prefix) {
            start = after.as_bytes().to_vec();
            start.push(0);
        }
        if start.is_empty() {
            start.push(0);
        }
        let mut get = GetOptions::new().with_range(prefix_end(prefix));
        if opts.limit > 0 {
            get = get.with_limit(i64::try_from(opts.limit).unwrap_or(i64::MAX));
        }
        if opts.revision > 0 {
            get = get.with_revision(opts.revision);
        }
        let resp = match self.range(start, Some(get)).await {
            Ok(resp) => resp,
            Err(e) => return Err(self.read_error(opts.revision, e).await),
        };
        let revision = match opts.revision {
            r if r > 0 => r,
            _ => resp.header().map(|h| h.revision()).unwrap_or(0),
        };
        let items = resp.kvs().iter().map(convert).collect::<Result<Vec<_>, _>>()?;
        Ok(ListPage { revision, items, more: resp.more() })
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<Revision, StoreError> {
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value, None)]);
        let resp = self.txn(txn).await?;
        if !resp.succeeded() {
            return Err(StoreError::AlreadyExists(key.to_string()));
        }
        header_revision(&resp)
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<Revision, StoreError> {
        let txn = Txn::new()
            .when([
                Compare::version(key, CompareOp::Greater, 0),
                Compare::mod_revision(key, CompareOp::Equal, expected),
            ])
            .and_then([TxnOp::put(key, value, None)])
            .or_else([TxnOp::get(key, None)]);
        let resp = self.txn(txn).await?;
        if !resp.succeeded() {
            return Err(cas_failure(key, &resp));
        }
        header_revision(&resp)
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(KeyValue, Revision), StoreError> {
        let mut compares = vec![Compare::version(key, CompareOp::Greater, 0)];
        if let Some(expected) = expected {
            compares.push(Compare::mod_revision(key, CompareOp::Equal, expected));
        }
        let txn = Txn::new()
            .when(compares)
            .and_then([TxnOp::delete(key, Some(DeleteOptions::new().with_prev_key()))])
            .or_else([TxnOp::get(key, None)]);
        let resp = self.txn(txn).await?;
        if !resp.succeeded() {
            return Err(cas_failure(key, &resp));
        }
        let revision = header_revision(&resp)?;
        for op in resp.op_responses() {
            if let TxnOpResponse::Delete(del) = op
                && let Some(prev) = del.prev_kvs().first()
            {
                return Ok((convert(prev)?, revision));
            }
        }
        Err(StoreError::Backend("etcd: delete returned no previous value".into()))
    }

    async fn watch(&self, prefix: &str, from: Revision) -> Result<WatchStream, StoreError> {
        if from > 0 {
            let (compacted, _) = self.compact_record().await?;
            if from < compacted {
                return Err(StoreError::Compacted { requested: from, compacted });
            }
        }
        watch::start(&self.client, prefix, from, prefix_end(prefix.as_bytes())).await
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        let current = self.current_revision().await?;
        if revision > current {
            return Err(StoreError::FutureRevision { requested: revision, current });
        }
        if revision <= self.compact_record().await?.0 {
            return Ok(());
        }
        match self.client.kv_client().compact(revision, None).await {
            Ok(_) => {}
            // Someone (another API server, etcd's own auto-compaction) got there first.
            Err(e) if is_compacted(&e) => {}
            Err(e) => return Err(etcd_err(e)),
        }
        // Record it, unless a concurrent compaction recorded a later one.
        for _ in 0..5 {
            let (recorded, mod_revision) = self.compact_record().await?;
            if recorded >= revision {
                return Ok(());
            }
            let txn = Txn::new()
                .when([Compare::mod_revision(COMPACT_REV_KEY, CompareOp::Equal, mod_revision)])
                .and_then([TxnOp::put(COMPACT_REV_KEY, revision.to_string(), None)]);
            if self.txn(txn).await?.succeeded() {
                tracing::debug!(revision, "etcd store compacted");
                return Ok(());
            }
        }
        Err(StoreError::Backend(format!("etcd: could not record compaction at {revision}: too much contention")))
    }

    async fn compacted_revision(&self) -> Result<Revision, StoreError> {
        Ok(self.compact_record().await?.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_etcds() {
        assert_eq!(prefix_end(b"/a/"), b"/a0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b""), vec![0]);
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }
}
