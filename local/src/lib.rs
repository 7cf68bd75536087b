//! The triggers SAM cannot run locally: `template.yaml`'s schedules and DynamoDB
//! stream event sources, run against DynamoDB Local and the functions that
//! `cargo lambda watch` serves.
//!
//! - [`template`] reads the triggers and their settings from the template;
//! - [`streams`] reads DynamoDB Local's streams and shapes records as Lambda does;
//! - [`mapping`] batches, filters, invokes and retries as an event source mapping does;
//! - [`lambda`] invokes functions through `cargo lambda watch`'s Invoke API.

pub mod filter;
pub mod lambda;
pub mod mapping;
pub mod streams;
pub mod template;

/// What can go wrong running the triggers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The template is not YAML.
    #[error("template.yaml does not parse")]
    Yaml(#[from] serde_yaml_ng::Error),
    /// The template declares a trigger this runner cannot read.
    #[error("template.yaml: {0}")]
    Template(String),
    /// A filter pattern is malformed or uses rules not implemented here.
    #[error("filter pattern {0}")]
    Filter(String),
    /// An HTTP request failed.
    #[error("HTTP request failed")]
    Http(#[from] ureq::Error),
    /// DynamoDB Local answered with an error.
    #[error("{target} answered {status}: {body}")]
    Api {
        /// The operation (`X-Amz-Target`).
        target: String,
        /// HTTP status.
        status: u16,
        /// The response body.
        body: String,
    },
    /// The table has no stream.
    #[error("{0} has no stream")]
    NoStream(String),
}
