//! The session store shared by the `api`, `sweeper` and `audit` functions.
//!
//! - [`model`]: the session, its expiry rules and the changes a request can make.
//! - [`data`]: the session's JSON data and RFC 7396 merges of it.
//! - [`seal`]: the data at rest: compressed, sealed under a key derived from the id.
//! - [`id`]: session ids (256 bits of OS randomness) and the handles that stand for them at rest.
//! - [`item`]: how a session is laid out as an item of the sessions table.
//! - [`store`]: the DynamoDB store: one request per read, touch, create and delete.
//! - [`registry`]: owners' memberships, revocation locks and idempotency records.
//! - [`config`]: configuration read once from the environment.
//! - [`error`]: typed errors that keep the SDK's own error.
//!
//! Nothing here knows about Lambda or HTTP.

pub mod audit;
pub mod config;
pub mod data;
pub mod device;
pub mod error;
pub mod id;
pub mod item;
pub mod model;
pub mod registry;
#[cfg(feature = "schema")]
pub mod schema;
pub mod seal;
pub mod store;
pub mod sweep;

pub use config::{Config, ConfigError, Limits};
pub use data::{DataPatch, SessionData};
pub use device::Device;
pub use error::{StoreError, ValidationError};
pub use id::{Handle, SessionId};
pub use model::{Change, Clock, Issued, NewSession, Session, SessionSummary, Subject, SystemClock, Timestamp};
pub use registry::IdempotencyKey;
pub use store::{DynamoStore, SubjectPage};
