//! The DynamoDB session store: one request per read, touch, create and delete, two
//! per data write (read, then write on the version read) and rotation; every write
//! conditional so nothing deleted or expired is ever brought back. The data is
//! sealed under a key derived from the session id (`crate::seal`): only the
//! operations that take an id open it. By concern:
//!
//! - this file: the store, reads and deletes;
//! - [`create`]: new sessions (a PutItem, or a transaction with their registry items);
//! - [`write`]: activity writes: touches (one UpdateItem), replace and merge (read, seal, write);
//! - [`rotate`]: rotation, one transaction;
//! - [`owners`]: an owner's sessions: listing, revoking one, revoking all;
//! - [`cap`]: the cap on a subject's live sessions: admitting a login, evicting;
//! - [`transact`]: the transactions of create and rotate, and idempotent replays;
//! - [`expr`]: expression placeholders.

mod cap;
mod create;
mod expr;
mod owners;
mod rotate;
mod transact;
mod write;

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;

use crate::config::Config;
use crate::error::StoreError;
use crate::id::{Handle, SessionId};
use crate::item::{self, Record, attr};
use crate::model::{Session, Timestamp};

pub(crate) use expr::Expr;
pub use owners::SubjectPage;

/// Attempts at a write whose item keeps changing underneath it.
const MAX_ATTEMPTS: u32 = 3;

/// The session store on one DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    config: Config,
}

impl DynamoStore {
    /// A store on `config.table_name` using `client`.
    pub fn new(client: Client, config: Config) -> Self {
        Self { client, config }
    }

    /// The store's configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The DynamoDB client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Reads a live session and opens its data: one GetItem. Expired sessions are
    /// not found, even before DynamoDB's TTL has deleted them.
    pub async fn get(&self, id: &SessionId, now: Timestamp) -> Result<Session, StoreError> {
        match self.lookup(id, now).await? {
            Lookup::Live(session) => Ok(*session),
            Lookup::Expired => Err(StoreError::NotFound),
        }
    }

    /// Reads a session as [`get`](Self::get) does, telling an expired session
    /// (still in the table, not yet swept) from a missing one (`NotFound`).
    pub async fn lookup(&self, id: &SessionId, now: Timestamp) -> Result<Lookup, StoreError> {
        let record = self.read_record(&id.handle(), self.config.consistent_reads).await?;
        if record.session.is_expired(now) {
            return Ok(Lookup::Expired);
        }
        Ok(Lookup::Live(Box::new(record.open(id)?)))
    }

    /// A page view: reads a live session and slides its idle expiry when a touch is
    /// due (by the touch step, or because it would expire within it). One GetItem;
    /// one conditional UpdateItem more only when the slide is due, so a read that
    /// needs no slide writes nothing and costs a read, not a write of the item. The
    /// write never brings back a session deleted or expired since the read (that
    /// answers `NotFound`).
    pub async fn get_and_touch(&self, id: &SessionId, now: Timestamp) -> Result<Lookup, StoreError> {
        match self.lookup(id, now).await? {
            Lookup::Live(session) if session.touch_is_due(now, self.config.limits.touch_step) => self
                .touch_as_read(id, &session, now)
                .await
                .map(|s| Lookup::Live(Box::new(s))),
            found => Ok(found),
        }
    }

    /// Reads a session's item, its data left sealed; strongly consistently when
    /// `consistent` (what writes that condition on the version read need).
    async fn read_record(&self, handle: &Handle, consistent: bool) -> Result<Record, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.config.table_name)
            .set_key(Some(item::key(handle)))
            .consistent_read(consistent)
            .send()
            .await?;
        item::decode(out.item.ok_or(StoreError::NotFound)?)
    }

    /// Deletes a session; deleting one that does not exist succeeds too. Its owner's
    /// membership stays until TTL removes it (listings skip it).
    pub async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.config.table_name)
            .set_key(Some(item::key(&id.handle())))
            .send()
            .await?;
        Ok(())
    }
}

/// What [`DynamoStore::lookup`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    /// The session, live.
    Live(Box<Session>),
    /// The session has expired; it is gone for every purpose but the sweep.
    Expired,
}

/// Whether `item` was written by the write named `write`.
fn written_by(item: Option<&HashMap<String, AttributeValue>>, write: &str) -> bool {
    item.and_then(|i| i.get(attr::WRITE_TOKEN))
        .and_then(|v| v.as_s().ok())
        .is_some_and(|t| t == write)
}
