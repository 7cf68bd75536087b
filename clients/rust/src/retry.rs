//! When and how long to wait before sending a call again.

use std::time::Duration;

/// Retries of a call: on a 503 (after its `Retry-After`), on a conflict or an in-flight
/// `Idempotency-Key` (409), on a gateway's 429, 502 and 504, and on transport errors, each
/// request counting as one of `max_attempts`. Reads, deletes, replacements and merge
/// patches are idempotent, and creates and rotations carry one `Idempotency-Key` through
/// all their attempts, so a retry whose first attempt did commit returns that session.
///
/// A write with [`crate::Precondition::Version`] (`replace`, `merge`) is not sent again
/// blindly after an answer that may follow a commit (a transport error, any 502, 503 or
/// 504, the service's `unavailable` included): its retry would fail its own `If-Match`
/// and report a false 412. After the usual wait the session is read (a plain GET, retried
/// like any read): still at that version, the write is sent again; at the next one and
/// showing the write (the data sent; data the merge patch leaves unchanged), the read
/// session is the call's answer; at another, the precondition-failed problem; gone,
/// not-found. When no read tells, the write's own error is returned. A 412 to a write sent
/// again is settled the same way, a 409 `conflict` (nothing done) is retried as it stands,
/// and a write with [`crate::Precondition::Exists`] is retried on 503s and 409s but not
/// after a transport error, 502 or 504.
///
/// A revoke ([`crate::Client::revoke`]) is retried like a delete, but its retry answers 404
/// when an earlier attempt revoked the session: a 404 after an answer that may follow a
/// commit (a transport error, any 502, 503 or 504) is the call's success. A 404 to its
/// first attempt, or after only answers that show nothing was done (a 409, a 429), is the
/// not-found error.
///
/// ```
/// use std::time::Duration;
/// let patient = session_service_client::RetryPolicy { max_attempts: 6, ..Default::default() };
/// assert_eq!(patient.base_delay, Duration::from_millis(100));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1: no retries).
    pub max_attempts: u32,
    /// The first backoff's upper bound; each retry doubles it (full jitter).
    pub base_delay: Duration,
    /// No backoff of the client's own is longer.
    pub max_delay: Duration,
    /// The longest `Retry-After` waited for; a longer one ends the retries with its error.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1` (`attempt` counts from 1): what the service
    /// asked for (`None`, no retry, when that is past `max_retry_after`), else a random
    /// share of the doubled base, never past `max_delay`.
    pub(crate) fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Option<Duration> {
        if let Some(asked) = retry_after {
            return (asked <= self.max_retry_after).then_some(asked);
        }
        let ceiling = self
            .base_delay
            .saturating_mul(1 << attempt.saturating_sub(1).min(16))
            .min(self.max_delay);
        let share = getrandom::u32().unwrap_or(u32::MAX / 2);
        Some(ceiling.mul_f64(f64::from(share) / f64::from(u32::MAX)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_the_ceiling_and_retry_after_is_waited_in_full_or_not_at_all() {
        let policy = RetryPolicy::default();
        for attempt in 1..10 {
            let bound = (policy.base_delay * 2u32.pow(attempt - 1)).min(policy.max_delay);
            assert!(policy.delay(attempt, None).unwrap() <= bound);
        }
        let asked = Duration::from_secs(20);
        assert_eq!(
            policy.delay(1, Some(asked)),
            Some(asked),
            "longer than max_delay, still waited"
        );
        assert_eq!(policy.delay(1, Some(Duration::from_secs(31))), None);
    }
}
