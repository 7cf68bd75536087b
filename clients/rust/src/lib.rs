//! A client for the session service: typed calls for every route, SigV4 signing for a
//! deployed stack (`execute-api` for API Gateway, `lambda` for a function URL, nothing for a
//! local `http://` URL), an `Idempotency-Key` per create and rotation reused by its retries,
//! and retries with backoff on 503 (`Retry-After`), conflicts and transport errors. A write
//! naming a version whose answer is in doubt is settled by reading the session, never sent
//! again blindly (see [`RetryPolicy`]).
//!
//! Session ids are bearer secrets: [`SessionId`]'s `Debug` never shows one, and only
//! [`Client::create`] and [`Client::rotate`] answer with one.
//!
//! ```no_run
//! use session_service_client::{Client, Data, NewSession, Precondition, Rotation};
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
//! let client = Client::from_sdk_config("https://a1b2c3.execute-api.eu-west-1.amazonaws.com", &config)?;
//!
//! let visit = client.create(&NewSession::default()).await?; // a visitor's cart
//! client.merge(&visit.id, &Data::from_json(r#"{"cart":[7]}"#)?, Precondition::None).await?;
//! let login = client.rotate(&visit.id, &Rotation::default().subject("user-42")).await?;
//! let page_view = client.get_and_touch(&login.id).await?;
//! assert_eq!(page_view.data.as_json(), r#"{"cart":[7]}"#);
//! client.revoke_all("user-42", Some(&login.id)).await?; // log out everywhere else
//! client.delete(&login.id).await?; // log out
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod client;
#[cfg(feature = "direct-reads")]
mod direct;
mod error;
mod model;
mod retry;
mod settle;
pub mod signing;

pub use client::{Client, ClientBuilder};
#[cfg(feature = "direct-reads")]
pub use direct::DEFAULT_TOUCH_STEP_SECONDS;
#[cfg(feature = "direct-reads")]
pub use error::GetItemFailure;
pub use error::{Error, Problem, ProblemKind};
pub use model::{
    Data, Device, IssuedSession, NewSession, Precondition, Replacement, Rotation, Session, SessionId, SessionPage,
    SessionSummary,
};
pub use retry::RetryPolicy;
pub use signing::Signing;
