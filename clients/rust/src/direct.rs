//! Direct reads (feature `direct-reads`): a session read straight from the sessions
//! table, one strongly consistent GetItem by the item key its id derives, opened here
//! with the id, by the store's own code (`session_store::item`), so the format read is
//! the one written. Every change still goes through the service. The caller's role
//! needs `dynamodb:GetItem` on the table (the template's `DirectReads` parameter).

use aws_sdk_dynamodb::Client as DynamoDb;
use session_store::{Timestamp, item};

use crate::error::{Error, Problem};
use crate::model::{Session, SessionId};

/// What the service counts as a touch worth writing: its `SESSION_TOUCH_STEP_SECONDS` default.
pub const DEFAULT_TOUCH_STEP_SECONDS: u32 = 60;

/// Where direct reads go: the sessions table, through `dynamodb`.
#[derive(Debug, Clone)]
pub(crate) struct DirectReads {
    pub(crate) dynamodb: DynamoDb,
    pub(crate) table: String,
    pub(crate) touch_step: u32,
}

/// A session read directly, and whether a page view should touch it now.
pub(crate) struct Read {
    pub(crate) session: Session,
    pub(crate) touch_due: bool,
}

impl DirectReads {
    /// The live session `id` names, as `GET /sessions/{id}` answers it; a malformed id, a
    /// missing, expired or unsealed item and a document that does not open are all
    /// [not found](Error::is_not_found), as they are to the service (which also logs and
    /// counts an unopenable document, and answers it with a 500).
    pub(crate) async fn read(&self, id: &SessionId) -> Result<Read, Error> {
        let not_found = || Error::Problem(Problem::not_found());
        let Some(id) = session_store::SessionId::parse(id.expose()) else {
            return Err(not_found());
        };
        let answer = self
            .dynamodb
            .get_item()
            .table_name(&self.table)
            .set_key(Some(item::key(&id.handle())))
            .consistent_read(true)
            .send()
            .await?;
        let now = Timestamp::now();
        let record = answer
            .item
            .and_then(|stored| item::decode(stored).ok())
            .ok_or_else(not_found)?;
        if record.session.is_expired(now) {
            return Err(not_found());
        }
        let session = record.open(&id).map_err(|_| not_found())?;
        let touch_due = session.touch_is_due(now, self.touch_step);
        // The service's own answer, serialized as it serializes it (as text: the data's
        // members keep their order).
        let answer = serde_json::to_string(&session).and_then(|text| serde_json::from_str(&text));
        let session = answer.map_err(|e| Error::UnexpectedResponse {
            status: 200,
            source: Some(e),
        })?;
        Ok(Read { session, touch_due })
    }
}
