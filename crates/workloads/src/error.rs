//! The errors of a reconcile: they go back to the retry policy, which logs them and backs off.

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request to the API failed (including conflicts from a stale cache).
    #[error("api request failed: {0}")]
    Api(#[source] kube::Error),
    /// A cache's watch stopped before it was ready.
    #[error("cache writer dropped before the cache was ready")]
    CacheGone,
    /// `maxSurge` / `maxUnavailable` is neither an integer nor a percentage.
    #[error("invalid value for an IntOrString: {0}")]
    IntOrPercent(String),
    /// An object without a name or namespace where one is required.
    #[error("object {0} has no namespace or name")]
    Unnamed(&'static str),
    /// An object changed under us (adoption rechecks).
    #[error("{0}")]
    Precondition(String),
}

impl From<kube::Error> for Error {
    fn from(e: kube::Error) -> Self {
        Self::Api(e)
    }
}

/// True when the API said 404.
pub(crate) fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// True when the API said 409 `AlreadyExists`.
pub(crate) fn is_already_exists(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists")
}
