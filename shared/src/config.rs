//! Configuration, read once at start-up from the environment.

/// The hard ceiling for `SESSION_MAX_DATA_BYTES`: DynamoDB items are at most 400 KB
/// (409,600 bytes). The sealed document is at most the data's text and 30 bytes
/// (`crate::seal::OVERHEAD`; compression only keeps what is smaller), and the rest of
/// the item (handle, owner, device, timestamps, attribute names: under 8 KB) needs room too.
pub const DATA_BYTES_CEILING: usize = 380_000;

/// The hard ceiling for every timeout, in seconds: 400 days, the longest lifetime
/// browsers give a cookie (RFC 6265bis), so the longest a session cookie can live.
pub const TIMEOUT_CEILING: u32 = 400 * 24 * 60 * 60;

/// Everything the store and the API need to know, built once per process.
#[derive(Debug, Clone)]
pub struct Config {
    /// Name of the sessions table (`SESSIONS_TABLE`).
    pub table_name: String,
    /// Name of the registry table: memberships, revocation locks, idempotency
    /// records (`REGISTRY_TABLE`).
    pub registry_table: String,
    /// Policy for timeouts, sizes and touches.
    pub limits: Limits,
    /// Whether reads are strongly consistent (`SESSION_CONSISTENT_READS`, default `true`).
    pub consistent_reads: bool,
    /// Number of expiry-index shards (`SESSION_EXPIRY_SHARDS`, default 16).
    pub expiry_shards: u32,
    /// Width of one expiry bucket in seconds (`SESSION_EXPIRY_BUCKET_SECONDS`, default 300).
    pub expiry_bucket_seconds: i64,
    /// Time a revoke of an owner's sessions may take before it answers that it is
    /// not done: 6 s, within the API function's 10 s timeout and well within the
    /// revocation lock's 60 s.
    pub revoke_budget: std::time::Duration,
    /// The most live sessions a subject may have, and what a create past it does
    /// (`SESSION_MAX_PER_SUBJECT`, default 0: no cap; `SESSION_CAP_POLICY`).
    pub subject_cap: Option<SubjectCap>,
}

/// The default [`Config::revoke_budget`].
pub const REVOKE_BUDGET: std::time::Duration = std::time::Duration::from_secs(6);

/// The largest `SESSION_MAX_PER_SUBJECT`: a capped create evicts in one
/// transaction (at most 100 items), and reads the owner's sessions in one
/// BatchGetItem (at most 100 keys) in the steady state.
pub const MAX_PER_SUBJECT_CEILING: u32 = 50;

/// A cap on the live sessions of one subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubjectCap {
    /// The most live sessions a subject may have (1 to [`MAX_PER_SUBJECT_CEILING`]).
    pub max: u32,
    /// What creating one more does.
    pub policy: CapPolicy,
}

/// What creating (or rotating into) a subject's session past its cap does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapPolicy {
    /// Revokes the subject's least recently active sessions to make room
    /// (`evict_oldest`, the default).
    EvictOldest,
    /// Refuses the new session (`reject`: a 409 problem).
    Reject,
}

impl std::str::FromStr for CapPolicy {
    type Err = &'static str;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "evict_oldest" => Ok(Self::EvictOldest),
            "reject" => Ok(Self::Reject),
            _ => Err("must be evict_oldest or reject"),
        }
    }
}

/// Timeouts and sizes a request may ask for, and their defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Idle timeout when a create request names none (`SESSION_IDLE_TIMEOUT_SECONDS`, 1800).
    pub default_idle_timeout: u32,
    /// Largest idle timeout a request may ask for (`SESSION_MAX_IDLE_TIMEOUT_SECONDS`, 1209600:
    /// 14 days, Django's default session age, as the template's default).
    pub max_idle_timeout: u32,
    /// Absolute lifetime when a create request names none (`SESSION_ABSOLUTE_TIMEOUT_SECONDS`, 43200).
    pub default_absolute_timeout: u32,
    /// Largest absolute lifetime a request may ask for (`SESSION_MAX_ABSOLUTE_TIMEOUT_SECONDS`, 2592000).
    pub max_absolute_timeout: u32,
    /// A touch that would move the expiry by less than this is not written
    /// (`SESSION_TOUCH_STEP_SECONDS`, 60), unless the session would expire within it.
    pub touch_step: u32,
    /// Largest session data, in bytes of its compact JSON text (`SESSION_MAX_DATA_BYTES`,
    /// 380000: [`DATA_BYTES_CEILING`], what always fits in DynamoDB's 400 KB item after sealing).
    pub max_data_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            default_idle_timeout: 30 * 60,
            max_idle_timeout: 14 * 24 * 60 * 60,
            default_absolute_timeout: 12 * 60 * 60,
            max_absolute_timeout: 30 * 24 * 60 * 60,
            touch_step: 60,
            max_data_bytes: DATA_BYTES_CEILING,
        }
    }
}

/// A configuration variable that is missing or does not parse.
#[derive(Debug, thiserror::Error)]
#[error("configuration variable {name}: {reason}")]
pub struct ConfigError {
    /// The environment variable's name.
    pub name: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let defaults = Limits::default();
        let table_name = lookup("SESSIONS_TABLE").filter(|t| !t.is_empty()).ok_or(ConfigError {
            name: "SESSIONS_TABLE",
            reason: "must be set".into(),
        })?;
        let registry_table = lookup("REGISTRY_TABLE").filter(|t| !t.is_empty()).ok_or(ConfigError {
            name: "REGISTRY_TABLE",
            reason: "must be set".into(),
        })?;
        let limits = Limits {
            default_idle_timeout: parse(&lookup, "SESSION_IDLE_TIMEOUT_SECONDS", defaults.default_idle_timeout)?,
            max_idle_timeout: parse(&lookup, "SESSION_MAX_IDLE_TIMEOUT_SECONDS", defaults.max_idle_timeout)?,
            default_absolute_timeout: parse(
                &lookup,
                "SESSION_ABSOLUTE_TIMEOUT_SECONDS",
                defaults.default_absolute_timeout,
            )?,
            max_absolute_timeout: parse(
                &lookup,
                "SESSION_MAX_ABSOLUTE_TIMEOUT_SECONDS",
                defaults.max_absolute_timeout,
            )?,
            touch_step: parse(&lookup, "SESSION_TOUCH_STEP_SECONDS", defaults.touch_step)?,
            max_data_bytes: parse(&lookup, "SESSION_MAX_DATA_BYTES", defaults.max_data_bytes)?,
        };
        let cap_policy = parse(&lookup, "SESSION_CAP_POLICY", CapPolicy::EvictOldest)?;
        let config = Self {
            table_name,
            registry_table,
            limits,
            consistent_reads: parse(&lookup, "SESSION_CONSISTENT_READS", true)?,
            expiry_shards: parse(&lookup, "SESSION_EXPIRY_SHARDS", 16)?,
            expiry_bucket_seconds: parse(&lookup, "SESSION_EXPIRY_BUCKET_SECONDS", 300)?,
            revoke_budget: REVOKE_BUDGET,
            subject_cap: match parse(&lookup, "SESSION_MAX_PER_SUBJECT", 0u32)? {
                0 => None,
                max => Some(SubjectCap {
                    max,
                    policy: cap_policy,
                }),
            },
        };
        config.check()?;
        Ok(config)
    }

    /// A configuration with default limits for the tables `table_name` and
    /// `{table_name}-registry` (tests and tools).
    pub fn for_table(table_name: impl Into<String>) -> Self {
        let table_name = table_name.into();
        Self {
            registry_table: format!("{table_name}-registry"),
            table_name,
            limits: Limits::default(),
            consistent_reads: true,
            expiry_shards: 16,
            expiry_bucket_seconds: 300,
            revoke_budget: REVOKE_BUDGET,
            subject_cap: None,
        }
    }

    fn check(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        let fail = |name, reason: &str| {
            Err(ConfigError {
                name,
                reason: reason.into(),
            })
        };
        if l.max_idle_timeout == 0 || l.max_idle_timeout > TIMEOUT_CEILING {
            return fail(
                "SESSION_MAX_IDLE_TIMEOUT_SECONDS",
                "must be between 1 and 34560000 (400 days)",
            );
        }
        if l.max_absolute_timeout == 0 || l.max_absolute_timeout > TIMEOUT_CEILING {
            return fail(
                "SESSION_MAX_ABSOLUTE_TIMEOUT_SECONDS",
                "must be between 1 and 34560000 (400 days)",
            );
        }
        if l.default_idle_timeout == 0 || l.default_idle_timeout > l.max_idle_timeout {
            return fail(
                "SESSION_IDLE_TIMEOUT_SECONDS",
                "must be between 1 and SESSION_MAX_IDLE_TIMEOUT_SECONDS",
            );
        }
        if l.default_absolute_timeout == 0 || l.default_absolute_timeout > l.max_absolute_timeout {
            return fail(
                "SESSION_ABSOLUTE_TIMEOUT_SECONDS",
                "must be between 1 and SESSION_MAX_ABSOLUTE_TIMEOUT_SECONDS",
            );
        }
        if l.max_data_bytes == 0 || l.max_data_bytes > DATA_BYTES_CEILING {
            return fail("SESSION_MAX_DATA_BYTES", "must be between 1 and 380000");
        }
        if self.expiry_shards == 0 || self.expiry_shards > 1000 {
            return fail("SESSION_EXPIRY_SHARDS", "must be between 1 and 1000");
        }
        if self.subject_cap.is_some_and(|cap| cap.max > MAX_PER_SUBJECT_CEILING) {
            return fail("SESSION_MAX_PER_SUBJECT", "must be between 0 (no cap) and 50");
        }
        if self.expiry_bucket_seconds <= 0 {
            return fail("SESSION_EXPIRY_BUCKET_SECONDS", "must be positive");
        }
        Ok(())
    }
}

fn parse<T: std::str::FromStr>(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: T,
) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match lookup(name) {
        None => Ok(default),
        Some(raw) if raw.trim().is_empty() => Ok(default),
        Some(raw) => raw.trim().parse().map_err(|e: T::Err| ConfigError {
            name,
            reason: format!("{raw:?}: {e}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|k| vars.get(k).cloned())
    }

    #[test]
    fn defaults_apply_when_only_the_table_is_set() {
        let c = config(&[("SESSIONS_TABLE", "t"), ("REGISTRY_TABLE", "r")]).unwrap();
        assert_eq!((c.table_name.as_str(), c.registry_table.as_str()), ("t", "r"));
        assert_eq!(c.limits, Limits::default());
        assert!(c.consistent_reads);
    }

    #[test]
    fn missing_table_is_an_error() {
        assert_eq!(config(&[]).unwrap_err().name, "SESSIONS_TABLE");
        assert_eq!(config(&[("SESSIONS_TABLE", "t")]).unwrap_err().name, "REGISTRY_TABLE");
    }

    #[test]
    fn unparsable_or_inconsistent_values_are_errors() {
        let e = config(&[
            ("SESSIONS_TABLE", "t"),
            ("REGISTRY_TABLE", "r"),
            ("SESSION_IDLE_TIMEOUT_SECONDS", "ten"),
        ])
        .unwrap_err();
        assert_eq!(e.name, "SESSION_IDLE_TIMEOUT_SECONDS");
        let e = config(&[
            ("SESSIONS_TABLE", "t"),
            ("REGISTRY_TABLE", "r"),
            ("SESSION_MAX_DATA_BYTES", "500000"),
        ])
        .unwrap_err();
        assert_eq!(e.name, "SESSION_MAX_DATA_BYTES");
        let e = config(&[
            ("SESSIONS_TABLE", "t"),
            ("REGISTRY_TABLE", "r"),
            ("SESSION_IDLE_TIMEOUT_SECONDS", "1209601"),
        ])
        .unwrap_err();
        assert_eq!(e.name, "SESSION_IDLE_TIMEOUT_SECONDS");
    }

    #[test]
    fn overrides_are_read() {
        let c = config(&[
            ("SESSIONS_TABLE", "t"),
            ("REGISTRY_TABLE", "r"),
            ("SESSION_CONSISTENT_READS", "false"),
            ("SESSION_TOUCH_STEP_SECONDS", "5"),
        ])
        .unwrap();
        assert!(!c.consistent_reads);
        assert_eq!(c.limits.touch_step, 5);
    }

    #[test]
    fn a_subject_cap_is_off_by_default_and_evicts_unless_told_to_reject() {
        let base = [("SESSIONS_TABLE", "t"), ("REGISTRY_TABLE", "r")];
        assert_eq!(config(&base).unwrap().subject_cap, None);
        let with = |extra: &[(&'static str, &'static str)]| config(&[&base[..], extra].concat());
        assert_eq!(with(&[("SESSION_MAX_PER_SUBJECT", "0")]).unwrap().subject_cap, None);
        assert_eq!(
            with(&[("SESSION_MAX_PER_SUBJECT", "5")]).unwrap().subject_cap,
            Some(SubjectCap {
                max: 5,
                policy: CapPolicy::EvictOldest
            })
        );
        assert_eq!(
            with(&[("SESSION_MAX_PER_SUBJECT", "50"), ("SESSION_CAP_POLICY", "reject")])
                .unwrap()
                .subject_cap,
            Some(SubjectCap {
                max: 50,
                policy: CapPolicy::Reject
            })
        );
        for bad in [
            &[("SESSION_MAX_PER_SUBJECT", "51")][..],
            &[("SESSION_MAX_PER_SUBJECT", "-1")],
            &[("SESSION_MAX_PER_SUBJECT", "2.5")],
        ] {
            assert_eq!(with(bad).unwrap_err().name, "SESSION_MAX_PER_SUBJECT");
        }
        let e = with(&[("SESSION_MAX_PER_SUBJECT", "3"), ("SESSION_CAP_POLICY", "lru")]).unwrap_err();
        assert_eq!(e.name, "SESSION_CAP_POLICY");
    }
}
