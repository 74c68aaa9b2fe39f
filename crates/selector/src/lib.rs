//! Label and field selectors, as the Kubernetes API evaluates them, over objects held as JSON (no I/O).
//!
//! The API server parses the `labelSelector` and `fieldSelector` query parameters of a list or watch once
//! ([`LabelSelector`]'s and [`FieldSelector`]'s `FromStr`), checks the field selector against the resource
//! ([`FieldSelector::validate_for`]: unsupported fields are a 400 with upstream's message) and then keeps the
//! objects that [`LabelSelector::matches`] their labels and [`FieldSelector::matches`] their fields.
//! Controllers turn a workload's `spec.selector` ([`LabelSelector::from_json`]) or a Service's
//! `spec.selector` ([`LabelSelector::from_map`]) into the same type. Parsing, validation messages and the
//! canonical string form ([`LabelSelector`]'s `Display`, used for `Scale.status.selector`) follow upstream's
//! `k8s.io/apimachinery/pkg/labels` and `pkg/fields`. The label key and value checks themselves
//! ([`qualified_name_errors`], [`label_value_errors`], upstream's `IsQualifiedName` and `IsValidLabelValue`) are
//! public so that admission validates `metadata.labels` with the same code and messages.

mod field;
mod label;
mod validation;

pub use field::{FieldSelector, FieldTerm};
pub use label::{LabelSelector, Operator, Requirement};
pub use validation::{label_value_errors, qualified_name_errors};

/// A selector that could not be parsed or is not valid. Messages are upstream's, so the API server can
/// return them as they are in a 400 `BadRequest`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// A label selector string that does not parse (`unable to parse requirement: …`, `found ',', …`).
    #[error("{0}")]
    LabelSyntax(String),
    /// A requirement with an invalid key, value or value count (from a string or a `metav1.LabelSelector`).
    #[error("{0}")]
    InvalidRequirement(String),
    /// A `matchExpressions` operator other than `In`, `NotIn`, `Exists`, `DoesNotExist`.
    #[error("{0:?} is not a valid label selector operator")]
    InvalidOperator(String),
    /// A `metav1.LabelSelector` that is not shaped like one.
    #[error("invalid label selector: {0}")]
    Malformed(String),
    /// A field selector string that does not parse.
    #[error("{0}")]
    FieldSyntax(String),
    /// A field the resource cannot be selected by.
    #[error("{0}")]
    UnsupportedField(String),
}
