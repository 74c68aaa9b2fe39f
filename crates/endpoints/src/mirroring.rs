//! The EndpointSlice mirroring controller: for a Service without a selector whose Endpoints are written by hand,
//! slices that mirror them (managed by `endpointslicemirroring-controller.k8s.io`), through create, update and
//! delete. Endpoints labelled `endpointslice.kubernetes.io/skip-mirror: "true"` (the API server's own
//! `kubernetes` Endpoints), leader-election records, Endpoints without a Service and Services with a selector get
//! no mirrored slices (any there are deleted).

pub mod plan;

use std::sync::Arc;

use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;

use crate::cache::Cache;
use crate::pod::service_selector;
use crate::slices::Plan;
use crate::{Error, LABEL_SKIP_MIRROR, MIRRORING_CONTROLLER, ObjectKey};

pub use plan::{MAX_ENDPOINTS_PER_SUBSET, plan};

const LEADER_ELECTION: &str = "control-plane.alpha.kubernetes.io/leader";

pub(crate) struct MirroringController {
    client: kube::Client,
    cache: Arc<Cache>,
    max_per_subset: usize,
}

impl MirroringController {
    pub(crate) fn new(client: kube::Client, cache: Arc<Cache>, max_per_subset: usize) -> Self {
        Self { client, cache, max_per_subset }
    }

    pub(crate) async fn sync(&self, key: &ObjectKey) -> Result<(), Error> {
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), &key.namespace);
        let existing = self.cache.slices_for(key, MIRRORING_CONTROLLER);
        let endpoints = self.cache.endpoints(key);
        let service = self.cache.service(key);
        let mirrored = endpoints.as_ref().filter(|endpoints| {
            let labels = endpoints.metadata.labels.as_ref();
            let annotations = endpoints.metadata.annotations.as_ref();
            labels.and_then(|l| l.get(LABEL_SKIP_MIRROR)).map(String::as_str) != Some("true")
                && !annotations.is_some_and(|a| a.contains_key(LEADER_ELECTION))
                && service.as_ref().is_some_and(|s| service_selector(s).is_none())
        });
        let Some(endpoints) = mirrored else {
            if existing.is_empty() {
                return Ok(());
            }
            let plan = Plan { delete: existing, ..Plan::default() };
            return crate::slices::finalize(&api, &self.cache, key, plan, false).await;
        };
        let (plan, invalid) = plan(endpoints, &existing, self.max_per_subset);
        if invalid > 0 {
            tracing::warn!(endpoints = %key, invalid, "skipped invalid IP addresses when mirroring to EndpointSlices");
        }
        if plan.create.is_empty() && plan.update.is_empty() && plan.delete.is_empty() {
            return Ok(());
        }
        tracing::debug!(
            endpoints = %key, create = plan.create.len(), update = plan.update.len(), delete = plan.delete.len(),
            "mirrored slices planned"
        );
        let create = endpoints.metadata.deletion_timestamp.is_none();
        crate::slices::finalize(&api, &self.cache, key, plan, create).await
    }
}
