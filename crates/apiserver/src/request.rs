//! What a request asks for: the resource path parsed into a [`Target`], and the query parameters every verb
//! understands parsed into [`Query`].

use std::collections::HashMap;

use skiff_api::resource::{self, ResourceType};
use skiff_api::{ApiError, Subresource};

/// The object or collection a resource path names.
#[derive(Debug, Clone)]
pub struct Target {
    pub rt: &'static ResourceType,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<&'static Subresource>,
    /// The path used the legacy `/watch/` prefix.
    pub watch_prefix: bool,
}

/// Parses `/api/v1/...` or `/apis/<group>/<version>/...` into a target; `None` when the path is not a resource path.
pub fn parse_target(path: &str) -> Result<Option<Target>, ApiError> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", version, rest @ ..] if !rest.is_empty() => ("", *version, rest),
        ["apis", group, version, rest @ ..] if !rest.is_empty() => (*group, *version, rest),
        _ => return Ok(None),
    };
    let (watch_prefix, rest) = match rest {
        ["watch", rest @ ..] => (true, rest),
        rest => (false, rest),
    };
    let find = |plural: &str| -> Result<&'static ResourceType, ApiError> {
        resource::lookup(group, version, plural).ok_or_else(|| not_served(group, version, plural))
    };
    let sub = |rt: &'static ResourceType, name: &str| -> Result<&'static Subresource, ApiError> {
        rt.subresource(name).ok_or_else(|| not_served(group, version, &format!("{}/{name}", rt.plural)))
    };
    let target = match rest {
        // namespaces/{ns}/{resource}[/{name}[/{sub}]], except the namespace object itself and its subresources
        ["namespaces", ns, plural, more @ ..] if !(more.is_empty() && is_namespace_sub(group, plural)) => {
            let rt = find(plural)?;
            let (name, subresource) = match more {
                [] => (None, None),
                [name] => (Some(name.to_string()), None),
                [name, s] => (Some(name.to_string()), Some(sub(rt, s)?)),
                _ => return Err(not_served(group, version, plural)),
            };
            Target { rt, namespace: Some(ns.to_string()), name, subresource, watch_prefix }
        }
        [plural] => Target { rt: find(plural)?, namespace: None, name: None, subresource: None, watch_prefix },
        [plural, name] => {
            Target { rt: find(plural)?, namespace: None, name: Some(name.to_string()), subresource: None, watch_prefix }
        }
        [plural, name, s] => {
            let rt = find(plural)?;
            Target { rt, namespace: None, name: Some(name.to_string()), subresource: Some(sub(rt, s)?), watch_prefix }
        }
        _ => return Err(ApiError::NotFound { group: group.into(), resource: String::new(), name: path.into() }),
    };
    if target.rt.namespaced != target.namespace.is_some() && target.name.is_some() {
        return Err(ApiError::NotFound {
            group: group.into(),
            resource: target.rt.plural.into(),
            name: target.name.unwrap_or_default(),
        });
    }
    Ok(Some(target))
}

/// `namespaces/{name}/status` and `namespaces/{name}/finalize` are subresources of the namespace, not
/// collections named `status` inside it.
fn is_namespace_sub(group: &str, segment: &str) -> bool {
    group.is_empty() && matches!(segment, "status" | "finalize")
}

fn not_served(group: &str, version: &str, plural: &str) -> ApiError {
    ApiError::NotFound {
        group: group.into(),
        resource: String::new(),
        name: format!("the server could not find the requested resource ({version} {plural})"),
    }
}

/// The query parameters of a request (repeated keys keep every value, for `exec`'s `command`).
#[derive(Debug, Default, Clone)]
pub struct Query {
    values: HashMap<String, Vec<String>>,
}

impl Query {
    pub fn parse(raw: Option<&str>) -> Self {
        let mut values: HashMap<String, Vec<String>> = HashMap::new();
        for (k, v) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
            values.entry(k.into_owned()).or_default().push(v.into_owned());
        }
        Self { values }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).and_then(|v| v.first()).map(String::as_str).filter(|v| !v.is_empty())
    }

    pub fn all(&self, key: &str) -> Vec<String> {
        self.values.get(key).cloned().unwrap_or_default()
    }

    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1"))
    }

    /// An integer parameter; a malformed one is a 400.
    pub fn int(&self, key: &str) -> Result<Option<i64>, ApiError> {
        self.get(key)
            .map(|v| v.parse::<i64>().map_err(|_| ApiError::BadRequest(format!("invalid value {v:?} for {key}"))))
            .transpose()
    }

    /// `dryRun=All`.
    pub fn dry_run(&self) -> Result<bool, ApiError> {
        match self.all("dryRun").as_slice() {
            [] => Ok(false),
            [v] if v == "All" => Ok(true),
            [v] if v.is_empty() => Ok(false),
            other => Err(ApiError::BadRequest(format!("Invalid dry run value: {other:?}; only All is supported"))),
        }
    }

    pub fn field_manager(&self) -> Option<&str> {
        self.get("fieldManager")
    }

    /// Sets `key` when the request did not.
    pub fn set_default(&mut self, key: &str, value: &str) {
        if self.get(key).is_none() {
            self.values.insert(key.to_string(), vec![value.to_string()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(path: &str) -> Target {
        parse_target(path).unwrap().unwrap()
    }

    #[test]
    fn parses_every_path_shape() {
        let t = target("/api/v1/namespaces/default/services/web");
        assert_eq!(
            (t.rt.plural, t.namespace.as_deref(), t.name.as_deref()),
            ("services", Some("default"), Some("web"))
        );
        let t = target("/api/v1/namespaces/default/services");
        assert_eq!((t.rt.plural, t.name), ("services", None));
        let t = target("/api/v1/namespaces/kube-system");
        assert_eq!((t.rt.plural, t.namespace, t.name.as_deref()), ("namespaces", None, Some("kube-system")));
        let t = target("/api/v1/namespaces/kube-system/status");
        assert_eq!((t.rt.plural, t.subresource.map(|s| s.name)), ("namespaces", Some("status")));
        let t = target("/apis/apps/v1/namespaces/default/deployments/web/scale");
        assert_eq!(t.subresource.map(|s| s.name), Some("scale"));
        let t = target("/api/v1/services");
        assert_eq!((t.rt.plural, t.namespace), ("services", None));
        let t = target("/api/v1/watch/namespaces/default/pods");
        assert!(t.watch_prefix);
        assert!(parse_target("/api/v1/namespaces/default/widgets").is_err());
        assert!(parse_target("/api/v1/namespaces/default/pods/p/bogus").is_err());
        assert!(parse_target("/version").unwrap().is_none());
    }

    #[test]
    fn query_values() {
        let q = Query::parse(Some("command=sh&command=-c&watch=1&limit=500&dryRun=All"));
        assert_eq!(q.all("command"), vec!["sh", "-c"]);
        assert!(q.flag("watch"));
        assert_eq!(q.int("limit").unwrap(), Some(500));
        assert!(q.dry_run().unwrap());
        assert!(Query::parse(Some("limit=x")).int("limit").is_err());
    }
}
