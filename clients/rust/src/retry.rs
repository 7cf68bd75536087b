//! When and how long to wait before sending a call again.

use std::time::Duration;

/// Retries of a call: on a 503 (after its `Retry-After`), on a conflict or an in-flight
/// `Idempotency-Key` (409), and on transport errors. Every route is safe to send again:
/// reads, deletes, replacements and merge patches are idempotent, and creates and rotations
/// carry one `Idempotency-Key` through all their attempts, so a retry whose first attempt
/// did commit returns that session.
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
    /// No backoff is longer, whatever `Retry-After` says.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1` (`attempt` counts from 1): what the service
    /// asked for, else a random share of the doubled base; never past `max_delay`.
    pub(crate) fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(asked) = retry_after {
            return asked.min(self.max_delay);
        }
        let ceiling = self
            .base_delay
            .saturating_mul(1 << attempt.saturating_sub(1).min(16))
            .min(self.max_delay);
        let share = getrandom::u32().unwrap_or(u32::MAX / 2);
        ceiling.mul_f64(f64::from(share) / f64::from(u32::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_the_ceiling_and_retry_after_is_capped() {
        let policy = RetryPolicy::default();
        for attempt in 1..10 {
            let bound = (policy.base_delay * 2u32.pow(attempt - 1)).min(policy.max_delay);
            assert!(policy.delay(attempt, None) <= bound);
        }
        assert_eq!(policy.delay(1, Some(Duration::from_secs(2))), Duration::from_secs(2));
        assert_eq!(policy.delay(1, Some(Duration::from_secs(60))), policy.max_delay);
    }
}
