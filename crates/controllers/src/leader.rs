//! Leader election through a Lease (`kube-system/skiff-controllers`), as kube-controller-manager elects its
//! leader: with several servers on one datastore, only the holder runs the controllers. The holder renews every
//! [`RENEW`]; a Lease not renewed for [`LEASE_DURATION`] may be taken over. Every change is an update pinned to
//! the Lease's resourceVersion, so two candidates never both win; a holder that cannot renew in time stops its
//! controllers before another may take over. On shutdown the holder gives the Lease up at once.
//!
//! Hand-written here, and why: kube-rs has no leader election of its own; this is the few calls it takes.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;
use tokio_util::sync::CancellationToken;

pub const NAMESPACE: &str = "kube-system";
pub const LEASE_NAME: &str = "skiff-controllers";
/// How long a Lease holds without renewal (kube-controller-manager's `--leader-elect-lease-duration`).
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// How often the holder renews, and a candidate tries (`--leader-elect-retry-period`).
pub const RENEW: Duration = Duration::from_secs(2);
/// How long the holder keeps leading without a successful renewal (`--leader-elect-renew-deadline`).
pub const RENEW_DEADLINE: Duration = Duration::from_secs(10);

/// Whether `lease`, as read at `now`, is free for `identity` to take (or already its own).
pub fn may_take(lease: &Lease, identity: &str, now: Timestamp) -> bool {
    let Some(spec) = &lease.spec else { return true };
    let holder = spec.holder_identity.as_deref().unwrap_or_default();
    if holder.is_empty() || holder == identity {
        return true;
    }
    let duration = Duration::from_secs(u64::try_from(spec.lease_duration_seconds.unwrap_or(15).max(0)).unwrap_or(15));
    let renewed = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()).map(|t| t.0);
    renewed.is_none_or(|t| Duration::try_from(now.duration_since(t)).unwrap_or_default() > duration)
}

/// One attempt to acquire or renew: whether `identity` holds the Lease afterwards.
async fn try_hold(leases: &Api<Lease>, identity: &str) -> Result<bool, kube::Error> {
    let now = Timestamp::now();
    let seconds = i32::try_from(LEASE_DURATION.as_secs()).unwrap_or(15);
    let current = match leases.get_opt(LEASE_NAME).await? {
        Some(lease) => lease,
        None => {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(LEASE_NAME.into()), ..Default::default() },
                spec: Some(LeaseSpec {
                    holder_identity: Some(identity.into()),
                    lease_duration_seconds: Some(seconds),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match leases.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        }
    };
    if !may_take(&current, identity, now) {
        return Ok(false);
    }
    let mut lease = current.clone();
    let spec = lease.spec.get_or_insert_with(Default::default);
    if spec.holder_identity.as_deref() != Some(identity) {
        spec.holder_identity = Some(identity.into());
        spec.acquire_time = Some(MicroTime(now));
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    spec.lease_duration_seconds = Some(seconds);
    spec.renew_time = Some(MicroTime(now));
    match leases.replace(LEASE_NAME, &PostParams::default(), &lease).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Gives the Lease up, if `identity` holds it.
async fn release(leases: &Api<Lease>, identity: &str) {
    let Ok(Some(mut lease)) = leases.get_opt(LEASE_NAME).await else { return };
    let Some(spec) = lease.spec.as_mut().filter(|s| s.holder_identity.as_deref() == Some(identity)) else { return };
    spec.holder_identity = None;
    if let Err(e) = leases.replace(LEASE_NAME, &PostParams::default(), &lease).await {
        tracing::debug!(error = %e, "giving up the controllers' Lease");
    }
}

/// Runs `lead` while `identity` holds the Lease, until `shutdown`: `lead` gets a token that fires when the lead
/// is lost, and is started again when it is won back.
pub async fn run<F, Fut>(client: kube::Client, identity: String, shutdown: CancellationToken, lead: F)
where
    F: Fn(CancellationToken) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let leases: Api<Lease> = Api::namespaced(client, NAMESPACE);
    loop {
        // A candidate: try every RENEW until the Lease is ours.
        loop {
            match try_hold(&leases, &identity).await {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => tracing::debug!(error = %e, "trying for the controllers' Lease"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(RENEW) => {}
            }
        }
        tracing::info!(identity, "leading: starting the controllers");
        let lost = shutdown.child_token();
        let leading = tokio::spawn(lead(lost.clone()));
        let mut renewed = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => {
                    lost.cancel();
                    let _ = leading.await;
                    release(&leases, &identity).await;
                    return;
                }
                _ = tokio::time::sleep(RENEW) => {}
            }
            match try_hold(&leases, &identity).await {
                Ok(true) => renewed = tokio::time::Instant::now(),
                Ok(false) => break,
                Err(e) => tracing::debug!(error = %e, "renewing the controllers' Lease"),
            }
            if renewed.elapsed() > RENEW_DEADLINE {
                break;
            }
        }
        tracing::warn!(identity, "lost the controllers' Lease: stopping the controllers");
        lost.cancel();
        let _ = leading.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lease(holder: &str, renewed: i64) -> Lease {
        serde_json::from_value(json!({
            "metadata": {"name": LEASE_NAME},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
                     "renewTime": Timestamp::from_second(1_700_000_000 + renewed).unwrap().to_string()},
        }))
        .unwrap()
    }

    #[test]
    fn a_lease_is_taken_only_when_free_own_or_expired() {
        let at = |s: i64| Timestamp::from_second(1_700_000_000 + s).unwrap();
        assert!(may_take(&lease("a", 0), "a", at(5)), "its own");
        assert!(!may_take(&lease("b", 0), "a", at(10)), "another's, renewed 10 s ago");
        assert!(may_take(&lease("b", 0), "a", at(16)), "another's, expired");
        assert!(may_take(&lease("", 0), "a", at(1)), "given up");
    }
}
