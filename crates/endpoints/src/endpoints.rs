//! The legacy Endpoints controller: one Endpoints object per Service with a selector, named like it, with ready
//! `addresses` and `notReadyAddresses`, kept in step with the pods ([`plan`] decides, [`EndpointsController`]
//! writes). Deleting the Service deletes its Endpoints; Services without a selector or of type ExternalName are
//! left alone.

pub mod plan;

use std::sync::Arc;

use k8s_openapi::api::core::v1::Endpoints;
use kube::Api;
use kube::api::{DeleteParams, PostParams};

use crate::cache::Cache;
use crate::pod::service_selector;
use crate::tracker::TriggerTimes;
use crate::{Error, ObjectKey, is_namespace_terminating, is_not_found};

pub use plan::{MAX_CAPACITY, desired_subsets, plan};

const KIND: &str = "Endpoints";

pub(crate) struct EndpointsController {
    client: kube::Client,
    cache: Arc<Cache>,
    triggers: TriggerTimes,
}

impl EndpointsController {
    pub(crate) fn new(client: kube::Client, cache: Arc<Cache>) -> Self {
        Self { client, cache, triggers: TriggerTimes::default() }
    }

    pub(crate) async fn sync(&self, key: &ObjectKey) -> Result<(), Error> {
        let api: Api<Endpoints> = Api::namespaced(self.client.clone(), &key.namespace);
        let Some(service) = self.cache.service(key) else {
            self.triggers.forget(key);
            let Some(current) = self.cache.endpoints(key) else { return Ok(()) };
            return match api.delete(&key.name, &DeleteParams::default()).await {
                Ok(_) => {
                    self.cache.forget_endpoints(&current);
                    Ok(())
                }
                Err(error) if is_not_found(&error) => Ok(()),
                Err(source) => Err(Error::Delete { kind: KIND, name: key.name.clone(), key: key.clone(), source }),
            };
        };
        let spec = service.spec.as_ref();
        if spec.and_then(|s| s.type_.as_deref()) == Some("ExternalName") || service_selector(&service).is_none() {
            return Ok(());
        }
        let pods = self.cache.pods_for(&service);
        let trigger = self.triggers.compute(key, &service, &pods);
        let current = self.cache.endpoints(key);
        let Some(desired) = plan(&service, &pods, current.as_deref(), trigger) else {
            tracing::trace!(service = %key, "endpoints unchanged");
            return Ok(());
        };
        let written = match &current {
            None => api.create(&PostParams::default(), &desired).await.map_err(|source| {
                if is_namespace_terminating(&source) {
                    return None;
                }
                Some(Error::Create { kind: KIND, key: key.clone(), source })
            }),
            Some(_) => api
                .replace(&key.name, &PostParams::default(), &desired)
                .await
                .map_err(|source| Some(Error::Update { kind: KIND, name: key.name.clone(), key: key.clone(), source })),
        };
        match written {
            Ok(endpoints) => {
                tracing::debug!(service = %key, "endpoints written");
                self.cache.record_endpoints(endpoints);
                Ok(())
            }
            Err(None) => Ok(()),
            Err(Some(error)) => Err(error),
        }
    }
}
