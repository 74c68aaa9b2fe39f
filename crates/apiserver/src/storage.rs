//! Objects over the revisioned store: JSON in, JSON out, with the store revision surfaced as
//! `metadata.resourceVersion` and store failures turned into the Kubernetes errors clients expect.

use std::sync::Arc;

use serde_json::Value;
use skiff_api::{ApiError, ResourceType, object};
use skiff_store::{KeyValue, ListOptions, Revision, Store, StoreError};

/// One object as read from the store, with the revision its compare-and-swap must name.
#[derive(Debug, Clone)]
pub struct Stored {
    pub object: Value,
    pub revision: Revision,
}

/// Typed access to the store for the API server.
#[derive(Clone)]
pub struct Objects {
    store: Arc<dyn Store>,
}

/// One page of a list.
pub struct Page {
    pub items: Vec<Value>,
    pub revision: Revision,
    /// The key to continue after, when more items exist.
    pub continue_after: Option<String>,
}

impl Objects {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Decodes a stored value, stamping its `resourceVersion`.
    pub fn decode(kv: &KeyValue) -> Result<Value, ApiError> {
        let mut obj: Value = serde_json::from_slice(&kv.value)
            .map_err(|e| ApiError::Internal(format!("stored object {} is not JSON: {e}", kv.key)))?;
        object::set_meta_str(&mut obj, "resourceVersion", Some(&kv.mod_revision.to_string()));
        Ok(obj)
    }

    fn encode(obj: &Value) -> Result<Vec<u8>, ApiError> {
        let mut copy = obj.clone();
        object::set_meta_str(&mut copy, "resourceVersion", None);
        serde_json::to_vec(&copy).map_err(|e| ApiError::Internal(format!("encoding object: {e}")))
    }

    pub async fn try_get(&self, rt: &ResourceType, ns: Option<&str>, name: &str) -> Result<Option<Stored>, ApiError> {
        let key = rt.storage_key(ns, name);
        match self.store.get(&key).await.map_err(|e| map_err(rt, name, e))? {
            Some(kv) => Ok(Some(Stored { object: Self::decode(&kv)?, revision: kv.mod_revision })),
            None => Ok(None),
        }
    }

    pub async fn get(&self, rt: &ResourceType, ns: Option<&str>, name: &str) -> Result<Stored, ApiError> {
        self.try_get(rt, ns, name).await?.ok_or_else(|| ApiError::not_found(rt.group, rt.plural, name))
    }

    /// Reads up to `limit` objects (0 = all) after `start_after`, at `revision` (0 = latest), keeping those
    /// `keep` accepts; reads further pages until the limit is filled, as upstream does for filtered lists.
    pub async fn list(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        start_after: Option<String>,
        limit: usize,
        revision: Revision,
        keep: impl Fn(&Value) -> bool,
    ) -> Result<Page, ApiError> {
        let mut opts = ListOptions { prefix: rt.storage_list_prefix(ns), start_after, limit, revision };
        let mut items = Vec::new();
        loop {
            let page = self.store.list(&opts).await.map_err(|e| map_err(rt, "", e))?;
            opts.revision = page.revision;
            let last_key = page.items.last().map(|kv| kv.key.clone());
            for kv in &page.items {
                let obj = Self::decode(kv)?;
                if keep(&obj) {
                    items.push(obj);
                    if limit > 0 && items.len() == limit {
                        let more = page.more || kv.key != *last_key.as_deref().unwrap_or_default();
                        let continue_after = more.then(|| kv.key.clone());
                        return Ok(Page { items, revision: page.revision, continue_after });
                    }
                }
            }
            match (page.more, last_key) {
                (true, Some(last)) if limit > 0 => opts.start_after = Some(last),
                _ => return Ok(Page { items, revision: page.revision, continue_after: None }),
            }
        }
    }

    /// Stores a new object; returns it with its `resourceVersion`.
    pub async fn create(&self, rt: &ResourceType, obj: Value) -> Result<Value, ApiError> {
        let name = object::name(&obj).unwrap_or_default().to_string();
        let key = rt.storage_key(object::namespace(&obj), &name);
        let rev = self.store.create(&key, Self::encode(&obj)?).await.map_err(|e| map_err(rt, &name, e))?;
        Ok(with_revision(obj, rev))
    }

    /// Replaces an object whose stored revision is still `expected`.
    pub async fn update(&self, rt: &ResourceType, obj: Value, expected: Revision) -> Result<Value, ApiError> {
        let name = object::name(&obj).unwrap_or_default().to_string();
        let key = rt.storage_key(object::namespace(&obj), &name);
        let rev = self.store.update(&key, Self::encode(&obj)?, expected).await.map_err(|e| map_err(rt, &name, e))?;
        Ok(with_revision(obj, rev))
    }

    /// Removes an object whose stored revision is still `expected`; returns its last state.
    pub async fn delete(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        expected: Option<Revision>,
    ) -> Result<Value, ApiError> {
        let key = rt.storage_key(ns, name);
        let (kv, _) = self.store.delete(&key, expected).await.map_err(|e| map_err(rt, name, e))?;
        Self::decode(&kv)
    }
}

fn with_revision(mut obj: Value, rev: Revision) -> Value {
    object::set_meta_str(&mut obj, "resourceVersion", Some(&rev.to_string()));
    obj
}

/// Store failures as Kubernetes errors.
pub fn map_err(rt: &ResourceType, name: &str, e: StoreError) -> ApiError {
    match e {
        StoreError::AlreadyExists(_) => ApiError::already_exists(rt.group, rt.plural, name),
        StoreError::NotFound(_) => ApiError::not_found(rt.group, rt.plural, name),
        StoreError::Conflict { .. } => ApiError::stale(rt.group, rt.plural, name),
        StoreError::Compacted { requested, compacted } => {
            ApiError::Expired(format!("too old resource version: {requested} ({compacted})"))
        }
        StoreError::FutureRevision { requested, current } => {
            ApiError::Timeout(format!("Too large resource version: {requested}, current: {current}"))
        }
        StoreError::Backend(msg) => ApiError::Internal(format!("storage: {msg}")),
    }
}
