//! The API's routes, matched by method and path segments.

use session_store::{Handle, SessionId, Subject};

/// Every route, as `(method, path template)`: the contract that `openapi.yaml`
/// and `template.yaml` must match (a test checks both).
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/health"),
    ("POST", "/sessions"),
    ("GET", "/sessions/{id}"),
    ("PUT", "/sessions/{id}"),
    ("PATCH", "/sessions/{id}"),
    ("DELETE", "/sessions/{id}"),
    ("POST", "/sessions/{id}/touch"),
    ("POST", "/sessions/{id}/rotate"),
    ("GET", "/subjects/{subject}/sessions"),
    ("DELETE", "/subjects/{subject}/sessions"),
    ("DELETE", "/subjects/{subject}/sessions/{handle}"),
];

/// A request's target, with its path parameters parsed.
#[derive(Debug)]
pub enum Target {
    /// `/health`
    Health,
    /// `/sessions`
    Sessions,
    /// `/sessions/{id}`; `None` when the id is malformed.
    Session(Option<SessionId>),
    /// `/sessions/{id}/touch`
    Touch(Option<SessionId>),
    /// `/sessions/{id}/rotate`
    Rotate(Option<SessionId>),
    /// `/subjects/{subject}/sessions`; `None` when the subject is invalid.
    SubjectSessions(Option<Subject>),
    /// `/subjects/{subject}/sessions/{handle}`; `None`s when invalid.
    SubjectSession(Option<Subject>, Option<Handle>),
}

impl Target {
    /// The target of `path`, or `None` for a path no route has.
    pub fn parse(path: &str) -> Option<Self> {
        let rest = path.strip_prefix('/')?;
        let segments: Vec<&str> = rest.split('/').collect();
        if segments.contains(&"") {
            return None;
        }
        let id = |s: &str| SessionId::parse(s);
        let subject = |s: &str| decode(s).and_then(|s| Subject::parse(&s).ok());
        Some(match segments.as_slice() {
            ["health"] => Self::Health,
            ["sessions"] => Self::Sessions,
            ["sessions", s] => Self::Session(id(s)),
            ["sessions", s, "touch"] => Self::Touch(id(s)),
            ["sessions", s, "rotate"] => Self::Rotate(id(s)),
            ["subjects", s, "sessions"] => Self::SubjectSessions(subject(s)),
            ["subjects", s, "sessions", h] => Self::SubjectSession(subject(s), Handle::parse(h)),
            _ => return None,
        })
    }

    /// The path template this target matches, as [`ROUTES`] names it.
    pub fn template(&self) -> &'static str {
        match self {
            Self::Health => "/health",
            Self::Sessions => "/sessions",
            Self::Session(_) => "/sessions/{id}",
            Self::Touch(_) => "/sessions/{id}/touch",
            Self::Rotate(_) => "/sessions/{id}/rotate",
            Self::SubjectSessions(_) => "/subjects/{subject}/sessions",
            Self::SubjectSession(..) => "/subjects/{subject}/sessions/{handle}",
        }
    }

    /// The well-formed session id in the path, if any.
    pub fn session_id(&self) -> Option<&SessionId> {
        match self {
            Self::Session(id) | Self::Touch(id) | Self::Rotate(id) => id.as_ref(),
            _ => None,
        }
    }

    /// The methods this target's path allows, for `Allow` on a 405.
    pub fn allowed_methods(&self) -> String {
        let template = self.template();
        ROUTES
            .iter()
            .filter(|(_, t)| *t == template)
            .map(|(m, _)| *m)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Percent-decodes one path segment; `None` if it is not UTF-8.
fn decode(segment: &str) -> Option<String> {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_targets_and_unknown_paths_to_none() {
        let id = SessionId::generate().unwrap();
        assert!(matches!(Target::parse("/health"), Some(Target::Health)));
        assert!(matches!(
            Target::parse(&format!("/sessions/{}", id.as_str())),
            Some(Target::Session(Some(_)))
        ));
        assert!(matches!(
            Target::parse("/sessions/..%2F..%2Fetc"),
            Some(Target::Session(None))
        ));
        assert!(
            matches!(Target::parse("/subjects/a%40b.c/sessions"), Some(Target::SubjectSessions(Some(s))) if s.as_str() == "a@b.c")
        );
        assert!(matches!(
            Target::parse("/subjects/%FF/sessions"),
            Some(Target::SubjectSessions(None))
        ));
        let handle = id.handle();
        assert!(matches!(
            Target::parse(&format!("/subjects/alice/sessions/{}", handle.as_str())),
            Some(Target::SubjectSession(Some(_), Some(h))) if h == handle
        ));
        assert!(matches!(
            Target::parse(&format!("/subjects/alice/sessions/{}", id.as_str())),
            Some(Target::SubjectSession(Some(_), None))
        ));
        for unknown in [
            "",
            "/",
            "/sessions/",
            "/sessions/x/y",
            "/nope",
            "/health/",
            "/subjects/a/sessions/h/x",
        ] {
            assert!(Target::parse(unknown).is_none(), "{unknown}");
        }
    }

    #[test]
    fn a_405_names_the_methods_the_path_allows() {
        assert_eq!(Target::Session(None).allowed_methods(), "GET, PUT, PATCH, DELETE");
    }
}
