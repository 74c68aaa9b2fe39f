//! Pure helpers of the Deployment controller (upstream's `deployment/util/deployment_util.go`): surge and
//! unavailability fenceposts, replica sums, the annotations a Deployment puts on its ReplicaSets, finding the
//! new and old ReplicaSets, how far the new one may grow, and proportional scaling.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

use crate::error::Error;
use crate::labels::POD_TEMPLATE_HASH;

pub(crate) const REVISION: &str = "deployment.kubernetes.io/revision";
pub(crate) const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub(crate) const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub(crate) const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
const ROLLBACK_TO: &str = "deprecated.deployment.rollback.to";
/// Upstream's `maxRevHistoryLengthInChars`.
const MAX_REVISION_HISTORY_CHARS: usize = 2000;

/// `spec.replicas` of a Deployment (defaulted to 1).
pub(crate) fn desired(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// `spec.replicas` of a ReplicaSet (defaulted to 1).
pub(crate) fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

pub(crate) fn is_recreate(d: &Deployment) -> bool {
    d.spec.as_ref().and_then(|s| s.strategy.as_ref()).and_then(|s| s.type_.as_deref()) == Some("Recreate")
}

/// Upstream's `GetScaledValueFromIntOrPercent`.
pub(crate) fn scaled(value: &IntOrString, total: i32, round_up: bool) -> Result<i32, Error> {
    match value {
        IntOrString::Int(i) => Ok(*i),
        IntOrString::String(s) => {
            let pct: i64 =
                s.strip_suffix('%').and_then(|p| p.parse().ok()).ok_or_else(|| Error::IntOrPercent(s.clone()))?;
            let product = pct * i64::from(total);
            let v = if round_up { (product + 99).div_euclid(100) } else { product.div_euclid(100) };
            i32::try_from(v).map_err(|_| Error::IntOrPercent(s.clone()))
        }
    }
}

/// Upstream's `ResolveFenceposts`: (maxSurge, maxUnavailable) for a rolling Deployment; never both zero.
pub(crate) fn fenceposts(d: &Deployment) -> Result<(i32, i32), Error> {
    let rolling = d.spec.as_ref().and_then(|s| s.strategy.as_ref()).and_then(|s| s.rolling_update.as_ref());
    let default = IntOrString::String("25%".into());
    let surge_value = rolling.map_or(Some(&default), |r| r.max_surge.as_ref());
    let unavailable_value = rolling.map_or(Some(&default), |r| r.max_unavailable.as_ref());
    let total = desired(d);
    let surge = surge_value.map_or(Ok(0), |v| scaled(v, total, true))?;
    let mut unavailable = unavailable_value.map_or(Ok(0), |v| scaled(v, total, false))?;
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    Ok((surge, unavailable))
}

/// Upstream's `MaxUnavailable` (0 for Recreate or zero replicas; at most the replicas).
pub(crate) fn max_unavailable(d: &Deployment) -> i32 {
    if is_recreate(d) || desired(d) == 0 {
        return 0;
    }
    fenceposts(d).map_or(0, |(_, u)| u.min(desired(d)))
}

/// Upstream's `MaxSurge` (0 for Recreate).
pub(crate) fn max_surge(d: &Deployment) -> i32 {
    if is_recreate(d) { 0 } else { fenceposts(d).map_or(0, |(s, _)| s) }
}

/// Sum of `spec.replicas`.
pub(crate) fn spec_sum(sets: &[&ReplicaSet]) -> i32 {
    sets.iter().map(|rs| rs_replicas(rs)).sum()
}

/// Sum of a status field.
pub(crate) fn status_sum(sets: &[&ReplicaSet], field: fn(&k8s_openapi::api::apps::v1::ReplicaSetStatus) -> i32) -> i32 {
    sets.iter().filter_map(|rs| rs.status.as_ref()).map(field).sum()
}

pub(crate) fn actual(s: &k8s_openapi::api::apps::v1::ReplicaSetStatus) -> i32 {
    s.replicas
}

pub(crate) fn ready(s: &k8s_openapi::api::apps::v1::ReplicaSetStatus) -> i32 {
    s.ready_replicas.unwrap_or(0)
}

pub(crate) fn available(s: &k8s_openapi::api::apps::v1::ReplicaSetStatus) -> i32 {
    s.available_replicas.unwrap_or(0)
}

fn annotation<'a>(rs: &'a ReplicaSet, key: &str) -> Option<&'a str> {
    rs.metadata.annotations.as_ref()?.get(key).map(String::as_str)
}

/// The revision of a ReplicaSet (0 when missing or not a number).
pub(crate) fn revision(rs: &ReplicaSet) -> i64 {
    annotation(rs, REVISION).and_then(|r| r.parse().ok()).unwrap_or(0)
}

pub(crate) fn desired_annotation(rs: &ReplicaSet) -> Option<i32> {
    annotation(rs, DESIRED_REPLICAS)?.parse().ok()
}

fn max_replicas_annotation(rs: &ReplicaSet) -> Option<i32> {
    annotation(rs, MAX_REPLICAS)?.parse().ok()
}

/// Sets `desired-replicas` and `max-replicas`; true when either changed.
pub(crate) fn set_replicas_annotations(rs: &mut ReplicaSet, desired: i32, max: i32) -> bool {
    let annotations = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let mut changed = false;
    for (key, value) in [(DESIRED_REPLICAS, desired), (MAX_REPLICAS, max)] {
        let value = value.to_string();
        if annotations.get(key) != Some(&value) {
            annotations.insert(key.to_string(), value);
            changed = true;
        }
    }
    changed
}

/// Whether `desired-replicas` / `max-replicas` are out of date.
pub(crate) fn replicas_annotations_need_update(rs: &ReplicaSet, desired: i32, max: i32) -> bool {
    desired_annotation(rs) != Some(desired) || max_replicas_annotation(rs) != Some(max)
}

fn skip_copy(key: &str) -> bool {
    [LAST_APPLIED, REVISION, REVISION_HISTORY, DESIRED_REPLICAS, MAX_REPLICAS, ROLLBACK_TO].contains(&key)
}

/// Upstream's `SetNewReplicaSetAnnotations`: copies the Deployment's annotations, raises the revision to
/// `new_revision` (keeping the old one in `revision-history` on a rollback) and, for a ReplicaSet about to be
/// created, sets the replicas annotations. True when anything changed.
pub(crate) fn set_new_rs_annotations(d: &Deployment, rs: &mut ReplicaSet, new_revision: i64, exists: bool) -> bool {
    let annotations = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let mut changed = false;
    for (k, v) in d.metadata.annotations.iter().flatten() {
        if skip_copy(k) || annotations.get(k) == Some(v) {
            continue;
        }
        annotations.insert(k.clone(), v.clone());
        changed = true;
    }
    let old = annotations.get(REVISION).cloned();
    let old_revision = match old.as_deref() {
        None | Some("") => 0,
        Some(r) => match r.parse::<i64>() {
            Ok(r) => r,
            Err(_) => return changed,
        },
    };
    if old_revision < new_revision {
        annotations.insert(REVISION.into(), new_revision.to_string());
        changed = true;
        if let Some(old) = old.filter(|o| !o.is_empty()) {
            let history = annotations.get(REVISION_HISTORY).cloned().unwrap_or_default();
            let mut revisions: Vec<&str> = history.split(',').filter(|r| !r.is_empty()).collect();
            let mut total = history.len() + old.len() + 1;
            while total > MAX_REVISION_HISTORY_CHARS && !revisions.is_empty() {
                total -= revisions.remove(0).len() + 1;
            }
            revisions.push(&old);
            let joined = revisions.join(",");
            annotations.insert(REVISION_HISTORY.into(), joined);
        }
    }
    if !exists {
        let desired = desired(d);
        changed |= set_replicas_annotations(rs, desired, desired + max_surge(d));
    }
    changed
}

/// Sets the Deployment's revision annotation; true when it changed.
pub(crate) fn set_deployment_revision(d: &mut Deployment, revision: &str) -> bool {
    let annotations = d.metadata.annotations.get_or_insert_with(BTreeMap::new);
    if annotations.get(REVISION).map(String::as_str) == Some(revision) {
        return false;
    }
    annotations.insert(REVISION.into(), revision.to_string());
    true
}

/// A template as JSON without the hash label, with empty maps and lists dropped (upstream's semantic
/// equality treats nil and empty alike).
fn normalized(template: &PodTemplateSpec) -> Value {
    let mut t = template.clone();
    if let Some(labels) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(POD_TEMPLATE_HASH);
    }
    let mut v = serde_json::to_value(&t).unwrap_or(Value::Null);
    prune(&mut v);
    v
}

fn prune(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.values_mut().for_each(prune);
            map.retain(|_, v| {
                !matches!(v, Value::Null) && v != &Value::Object(Default::default()) && v != &Value::Array(vec![])
            });
        }
        Value::Array(items) => items.iter_mut().for_each(prune),
        _ => {}
    }
}

/// Upstream's `EqualIgnoreHash`: the templates are equal once the `pod-template-hash` label is ignored.
pub(crate) fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    normalized(a) == normalized(b)
}

fn creation_key(rs: &ReplicaSet) -> (Option<k8s_openapi::jiff::Timestamp>, String) {
    (rs.metadata.creation_timestamp.as_ref().map(|t| t.0), rs.metadata.name.clone().unwrap_or_default())
}

/// Oldest first, ties by name (upstream's `ReplicaSetsByCreationTimestamp`).
pub(crate) fn sort_by_creation(sets: &mut [ReplicaSet]) {
    sets.sort_by_key(creation_key);
}

/// Lowest revision first, ties by creation (upstream's `ReplicaSetsByRevision`).
pub(crate) fn sort_by_revision(sets: &mut [ReplicaSet]) {
    sets.sort_by(|a, b| revision(a).cmp(&revision(b)).then_with(|| creation_key(a).cmp(&creation_key(b))));
}

/// The index of the ReplicaSet whose template equals the Deployment's, the oldest if several.
pub(crate) fn find_new(d: &Deployment, sets: &[ReplicaSet]) -> Option<usize> {
    let template = d.spec.as_ref().map(|s| &s.template)?;
    let mut order: Vec<usize> = (0..sets.len()).collect();
    order.sort_by_key(|i| creation_key(&sets[*i]));
    order.into_iter().find(|i| {
        sets[*i].spec.as_ref().and_then(|s| s.template.as_ref()).is_some_and(|t| equal_ignore_hash(t, template))
    })
}

/// Upstream's `NewRSNewReplicas`: how many replicas the new ReplicaSet may have now.
pub(crate) fn new_rs_new_replicas(d: &Deployment, all: &[&ReplicaSet], new_rs: &ReplicaSet) -> Result<i32, Error> {
    if is_recreate(d) {
        return Ok(desired(d));
    }
    let (surge, _) = fenceposts(d)?;
    let current = spec_sum(all);
    let max_total = desired(d) + surge;
    if current >= max_total {
        return Ok(rs_replicas(new_rs));
    }
    let up = (max_total - current).min(desired(d) - rs_replicas(new_rs));
    Ok(rs_replicas(new_rs) + up)
}

/// Upstream's `IsSaturated`: the new ReplicaSet has all desired replicas, all available.
pub(crate) fn is_saturated(d: &Deployment, rs: Option<&ReplicaSet>) -> bool {
    let Some(rs) = rs else { return false };
    rs_replicas(rs) == desired(d)
        && desired_annotation(rs) == Some(desired(d))
        && rs.status.as_ref().map_or(0, available) == desired(d)
}

/// Upstream's `getReplicaSetFraction` + `GetProportion`: this ReplicaSet's share of `to_add`.
pub(crate) fn proportion(rs: &ReplicaSet, d: &Deployment, to_add: i32, added: i32) -> i32 {
    if rs_replicas(rs) == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = if desired(d) == 0 {
        -rs_replicas(rs)
    } else {
        let max_now = desired(d) + max_surge(d);
        let before = match max_replicas_annotation(rs) {
            Some(m) if m != 0 => m,
            _ => d.status.as_ref().map_or(0, |s| s.replicas.unwrap_or(0)),
        };
        if before == 0 {
            0
        } else {
            let size = f64::from(rs_replicas(rs)) * f64::from(max_now) / f64::from(before);
            // Round half away from zero, as Go's math.Round; sizes are far inside i32.
            #[allow(clippy::cast_possible_truncation)]
            let rounded = size.round() as i32;
            rounded - rs_replicas(rs)
        }
    };
    let allowed = to_add - added;
    if to_add > 0 { fraction.min(allowed) } else { fraction.max(allowed) }
}

#[cfg(test)]
mod tests;
