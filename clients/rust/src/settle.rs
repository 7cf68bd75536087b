//! What became of a write naming a version whose answer is in doubt (lost, a 502, 503 or
//! 504: the service may have committed it), judged from the session read afterwards.

use serde_json::Value;

use crate::{Data, Session};

/// What a write sent, to recognise it in the session read back.
#[derive(Debug, Clone)]
pub(crate) enum Written {
    /// A replacement (PUT): the data, and the idle timeout if it set one.
    Replace {
        data: Data,
        idle_timeout_seconds: Option<u32>,
    },
    /// An RFC 7396 merge patch (PATCH).
    Merge { patch: Data },
}

/// A write with `If-Match` naming `version`, and what it wrote.
#[derive(Debug, Clone)]
pub(crate) struct Check {
    /// The version its `If-Match` names.
    pub(crate) version: u64,
    /// What it wrote.
    pub(crate) written: Written,
}

/// What to do about a write in doubt, given the session read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    /// Still at the version named: the write did not land; send it again.
    Resend,
    /// At the next version, showing the write: it landed; this is its answer.
    Landed(Box<Session>),
    /// At another version (or the next, not showing the write): what a 412 says.
    PreconditionFailed { current: u64 },
    /// The session is gone.
    NotFound,
}

/// Decides a write in doubt from `read`, the session as a plain GET answered it (`None`: 404).
pub(crate) fn settle(check: &Check, read: Option<Session>) -> Outcome {
    let Some(session) = read else {
        return Outcome::NotFound;
    };
    if session.version == check.version {
        Outcome::Resend
    } else if Some(session.version) == check.version.checked_add(1) && check.written.shown_by(&session) {
        Outcome::Landed(Box::new(session))
    } else {
        Outcome::PreconditionFailed {
            current: session.version,
        }
    }
}

impl Written {
    /// Whether `session` holds what this write wrote: the data sent (and the idle timeout
    /// it set), or data the merge patch leaves unchanged. Data that cannot be compared
    /// does not show it.
    fn shown_by(&self, session: &Session) -> bool {
        let Ok(read) = session.data.parse::<Value>() else {
            return false;
        };
        match self {
            Self::Replace {
                data,
                idle_timeout_seconds,
            } => {
                data.parse::<Value>().is_ok_and(|sent| sent == read)
                    && idle_timeout_seconds.is_none_or(|t| t == session.idle_timeout_seconds)
            }
            Self::Merge { patch } => patch.parse::<Value>().is_ok_and(|patch| {
                let mut merged = read.clone();
                json_patch::merge(&mut merged, &patch);
                merged == read
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(version: u64, data: &str) -> Session {
        let time = "2026-12-03T10:00:00Z";
        serde_json::from_str(&format!(
            r#"{{"handle":"h","data":{data},"created_at":"{time}","updated_at":"{time}","expires_at":"{time}","absolute_expires_at":"{time}","idle_timeout_seconds":1800,"version":{version}}}"#
        ))
        .unwrap()
    }

    fn replace(data: &str, idle_timeout_seconds: Option<u32>) -> Check {
        Check {
            version: 3,
            written: Written::Replace {
                data: Data::from_json(data).unwrap(),
                idle_timeout_seconds,
            },
        }
    }

    fn merge(patch: &str) -> Check {
        Check {
            version: 3,
            written: Written::Merge {
                patch: Data::from_json(patch).unwrap(),
            },
        }
    }

    #[test]
    fn the_version_named_is_a_resend_whatever_the_data() {
        for check in [replace(r#"{"a":1}"#, None), merge(r#"{"a":1}"#)] {
            assert_eq!(settle(&check, Some(session(3, r#"{"a":1}"#))), Outcome::Resend);
            assert_eq!(settle(&check, Some(session(3, r#"{"b":2}"#))), Outcome::Resend);
        }
    }

    #[test]
    fn a_replacement_landed_when_the_next_version_holds_its_data_as_json() {
        let check = replace(r#"{"a":1,"b":[1,2],"c":{"d":null}}"#, None);
        let read = session(4, r#"{"c":{"d":null},"b":[1,2],"a":1}"#); // another member order
        assert_eq!(settle(&check, Some(read.clone())), Outcome::Landed(Box::new(read)));
        for other in [
            r#"{"a":1}"#,
            r#"{"a":1,"b":[2,1],"c":{"d":null}}"#,
            r#"{"a":"1","b":[1,2],"c":{}}"#,
        ] {
            assert_eq!(
                settle(&check, Some(session(4, other))),
                Outcome::PreconditionFailed { current: 4 },
                "{other}"
            );
        }
    }

    #[test]
    fn a_replacement_setting_the_idle_timeout_landed_only_with_it() {
        assert!(matches!(
            settle(&replace("{}", Some(1800)), Some(session(4, "{}"))),
            Outcome::Landed(_)
        ));
        assert_eq!(
            settle(&replace("{}", Some(600)), Some(session(4, "{}"))),
            Outcome::PreconditionFailed { current: 4 }
        );
    }

    #[test]
    fn a_merge_landed_when_its_patch_changes_nothing_in_the_next_version() {
        let check = merge(r#"{"cart":[7],"coupon":null,"deep":{"a":1,"gone":null}}"#);
        for landed in [
            r#"{"theme":"dark","cart":[7],"deep":{"a":1}}"#,
            r#"{"cart":[7],"deep":{"a":1,"b":2}}"#,
        ] {
            assert!(
                matches!(settle(&check, Some(session(4, landed))), Outcome::Landed(_)),
                "{landed}"
            );
        }
        for other in [
            r#"{"cart":[7,8],"deep":{"a":1}}"#,
            r#"{"cart":[7],"coupon":"X","deep":{"a":1}}"#,
            r#"{"cart":[7],"deep":{"a":1,"gone":true}}"#,
            r#"{"cart":[7]}"#,
        ] {
            assert_eq!(
                settle(&check, Some(session(4, other))),
                Outcome::PreconditionFailed { current: 4 },
                "{other}"
            );
        }
    }

    #[test]
    fn any_other_version_fails_the_precondition_and_a_gone_session_is_not_found() {
        for check in [replace(r#"{"a":1}"#, None), merge(r#"{"a":1}"#)] {
            for version in [0, 2, 5, u64::MAX] {
                assert_eq!(
                    settle(&check, Some(session(version, r#"{"a":1}"#))),
                    Outcome::PreconditionFailed { current: version }
                );
            }
            assert_eq!(settle(&check, None), Outcome::NotFound);
        }
        let at_the_end = Check {
            version: u64::MAX,
            ..replace(r#"{"a":1}"#, None)
        };
        assert_eq!(
            settle(&at_the_end, Some(session(0, r#"{"a":1}"#))),
            Outcome::PreconditionFailed { current: 0 }
        );
    }
}
