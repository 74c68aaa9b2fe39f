//! The EndpointSlice controller: the slices of every Service with a selector, planned by [`plan`] and written by
//! [`SliceController`] (creates, then updates, then deletes; each result recorded in the cache at once).

mod endpoint;
pub mod plan;

use std::sync::Arc;

use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::{DeleteParams, PostParams};

use crate::cache::Cache;
use crate::pod::service_selector;
use crate::tracker::TriggerTimes;
use crate::{Error, ObjectKey, SLICE_CONTROLLER, is_namespace_terminating, is_not_found};

pub use endpoint::{EndpointKey, PortsKey, endpoint_key, endpoint_ports, pod_to_endpoint, ports_key};
pub use plan::{MAX_ENDPOINTS_PER_SLICE, Plan, plan};

const KIND: &str = "EndpointSlice";

pub(crate) struct SliceController {
    client: kube::Client,
    cache: Arc<Cache>,
    triggers: TriggerTimes,
    max_per_slice: usize,
}

impl SliceController {
    pub(crate) fn new(client: kube::Client, cache: Arc<Cache>, max_per_slice: usize) -> Self {
        Self { client, cache, triggers: TriggerTimes::default(), max_per_slice }
    }

    pub(crate) async fn sync(&self, key: &ObjectKey) -> Result<(), Error> {
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), &key.namespace);
        let existing = self.cache.slices_for(key, SLICE_CONTROLLER);
        let Some(service) = self.cache.service(key) else {
            // Upstream leaves these to the garbage collector (they are owned by the Service); deleting them here
            // as well makes the outcome independent of whether one runs.
            self.triggers.forget(key);
            let plan = Plan { delete: existing, ..Plan::default() };
            return finalize(&api, &self.cache, key, plan, false).await;
        };
        let spec = service.spec.as_ref();
        if spec.and_then(|s| s.type_.as_deref()) == Some("ExternalName") || service_selector(&service).is_none() {
            return Ok(());
        }
        let pods = self.cache.pods_for(&service);
        let trigger = self.triggers.compute(key, &service, &pods);
        let plan = plan(&service, &pods, &existing, trigger, self.max_per_slice);
        if plan.create.is_empty() && plan.update.is_empty() && plan.delete.is_empty() {
            return Ok(());
        }
        tracing::debug!(
            service = %key, create = plan.create.len(), update = plan.update.len(), delete = plan.delete.len(),
            "endpoint slices planned"
        );
        finalize(&api, &self.cache, key, plan, service.metadata.deletion_timestamp.is_none()).await
    }
}

/// Applies a plan: creates (skipped when `create` is false, as upstream does for a Service being deleted), then
/// updates, then deletes. Stops at the first failure; the sync is retried from the recorded state.
pub(crate) async fn finalize(
    api: &Api<EndpointSlice>,
    cache: &Cache,
    key: &ObjectKey,
    plan: Plan,
    create: bool,
) -> Result<(), Error> {
    if create {
        for slice in &plan.create {
            match api.create(&PostParams::default(), slice).await {
                Ok(created) => cache.record_slice(created),
                Err(source) if is_namespace_terminating(&source) => return Ok(()),
                Err(source) => return Err(Error::Create { kind: KIND, key: key.clone(), source }),
            }
        }
    }
    for slice in &plan.update {
        let name = slice.metadata.name.clone().unwrap_or_default();
        match api.replace(&name, &PostParams::default(), slice).await {
            Ok(updated) => cache.record_slice(updated),
            Err(source) => return Err(Error::Update { kind: KIND, name, key: key.clone(), source }),
        }
    }
    for slice in &plan.delete {
        let name = slice.metadata.name.clone().unwrap_or_default();
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => cache.forget_slice(slice),
            Err(source) if is_not_found(&source) => cache.forget_slice(slice),
            Err(source) => return Err(Error::Delete { kind: KIND, name, key: key.clone(), source }),
        }
    }
    Ok(())
}
