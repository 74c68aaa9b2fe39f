//! The vocabulary of the Skiff API, with no I/O: which resources exist ([`resource`]), how an API error is
//! told to a client as a Kubernetes `Status` ([`status`]), and how the generic parts of any object are read
//! and written as JSON ([`object`]).
//!
//! Every other crate speaks in these terms: the store keys objects by [`resource::ResourceType::storage_prefix`],
//! admission reports problems as [`status::FieldError`]s, and the API server turns an [`status::ApiError`]
//! into the HTTP status and body that kubectl expects.

pub mod object;
pub mod resource;
pub mod status;

pub use resource::{RESOURCES, ResourceType, Subresource};
pub use status::{ApiError, FieldError, FieldErrorKind};
