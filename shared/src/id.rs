//! Session ids: 256 bits from the OS CSPRNG, base64url without padding, and the
//! handles that stand for them at rest.
//!
//! An id is a bearer secret: the table never stores it. Items are keyed by the
//! id's [`Handle`], a domain-separated SHA-256 digest. The id has 256 bits of
//! entropy, so a plain hash is as strong as a salted, slow one: nobody can find
//! the id from its handle, and the handle is no use as a bearer token.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// Bytes of randomness in a session id.
pub const ID_BYTES: usize = 32;
/// Length of an encoded session id.
pub const ID_LEN: usize = 43;

/// Domain separation of the handle digest (so no other SHA-256 of an id matches it).
const HANDLE_DOMAIN: &[u8] = b"session-service/v1/session-handle\0";
/// Length of a handle: 32 bytes in lowercase hex.
pub const HANDLE_LEN: usize = 64;

/// A well-formed session id. `Debug` shows only its fingerprint, so ids do not leak into logs.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SessionId(String);

/// The OS random number generator failed.
#[derive(Debug, thiserror::Error)]
#[error("the OS random number generator failed")]
pub struct RandomnessError(#[source] pub getrandom::Error);

impl SessionId {
    /// A fresh id: 32 bytes from the OS CSPRNG.
    pub fn generate() -> Result<Self, RandomnessError> {
        let mut bytes = [0u8; ID_BYTES];
        getrandom::fill(&mut bytes).map_err(RandomnessError)?;
        Ok(Self(URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// Parses an id; `None` unless it is exactly the canonical encoding of 32 bytes.
    pub fn parse(raw: &str) -> Option<Self> {
        if raw.len() != ID_LEN {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(raw).ok()?;
        // The decoder accepts non-zero trailing bits; only the canonical form is an id.
        (bytes.len() == ID_BYTES && URL_SAFE_NO_PAD.encode(&bytes) == raw).then(|| Self(raw.to_owned()))
    }

    /// The id as sent to the client that created or rotated the session; never stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The handle the table keys this session by.
    pub fn handle(&self) -> Handle {
        let digest = Sha256::new()
            .chain_update(HANDLE_DOMAIN)
            .chain_update(self.0.as_bytes())
            .finalize();
        Handle(digest.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// A short, stable, non-reversible tag for logs (the handle's fingerprint).
    pub fn fingerprint(&self) -> String {
        self.handle().fingerprint()
    }
}

/// 64 lowercase hex digits that name a session without giving access to it (the
/// API takes ids, never handles, for session access). Two kinds: the key of a
/// session's item, SHA-256 of its current id (domain-separated, [`SessionId::handle`]),
/// which changes with every rotation; and the session's handle as the API shows it,
/// random, given at create and kept across rotations ([`Handle::random`]).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct Handle(String);

impl Handle {
    /// Parses a handle; `None` unless it is 64 lowercase hex digits.
    pub fn parse(raw: &str) -> Option<Self> {
        (raw.len() == HANDLE_LEN && raw.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| Self(raw.to_owned()))
    }

    /// The handle's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A new session's handle, kept across its rotations: 32 random bytes in hex.
    pub fn random() -> Result<Self, RandomnessError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(RandomnessError)?;
        Ok(Self(bytes.iter().map(|b| format!("{b:02x}")).collect()))
    }

    /// A session's stored family as its handle. A family stored before families
    /// were handles (16 random bytes, 32 hex digits) reads zero-padded to 64.
    pub fn of_family(raw: &str) -> Option<Self> {
        match raw.len() {
            32 => Self::parse(&format!("{raw:0>64}")),
            _ => Self::parse(raw),
        }
    }

    /// A short tag for logs and audit records: the handle's first 12 hex digits.
    pub fn fingerprint(&self) -> String {
        self.0[..12].to_owned()
    }

    /// The expiry-index shard of this session, in `0..shards`.
    pub fn shard(&self, shards: u32) -> u32 {
        u32::from_str_radix(&self.0[..8], 16).unwrap_or(0) % shards.max(1)
    }
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Handle({})", self.fingerprint())
    }
}

/// 16 random bytes in hex: a write's or a revoke's token.
pub fn random_token() -> Result<String, RandomnessError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(RandomnessError)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

impl std::fmt::Debug for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SessionId({})", self.fingerprint())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn a_family_reads_as_a_handle_and_an_old_32_digit_one_zero_padded() {
        let family = Handle::random().unwrap();
        assert_eq!(Handle::of_family(family.as_str()), Some(family));
        let old = "0123456789abcdef0123456789abcdef";
        let read = Handle::of_family(old).unwrap();
        assert_eq!(read.as_str(), format!("{}{old}", "0".repeat(32)));
        for bad in [
            "",
            "0123",
            &old.to_uppercase(),
            &format!("{old}{old}0"),
            &"g".repeat(64),
        ] {
            assert_eq!(Handle::of_family(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn generated_ids_are_43_url_safe_characters_and_parse_back() {
        let id = SessionId::generate().unwrap();
        assert_eq!(id.as_str().len(), ID_LEN);
        assert!(
            id.as_str()
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(SessionId::parse(id.as_str()), Some(id));
    }

    #[test]
    fn malformed_ids_do_not_parse() {
        let good = SessionId::generate().unwrap();
        let mut non_canonical = good.as_str()[..42].to_string();
        // The last character carries 2 unused bits; 'B' sets one of them.
        non_canonical.push('B');
        for bad in [
            "",
            "abc",
            "../../etc/passwd",
            &"a".repeat(44),
            &"+".repeat(43),
            &non_canonical,
        ] {
            assert_eq!(SessionId::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn ids_are_distinct_and_their_bits_look_uniform() {
        let ids: Vec<_> = (0..2000).map(|_| SessionId::generate().unwrap()).collect();
        assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len());
        // Each of the 256 bit positions should be set in about half of the ids.
        let mut ones = [0u32; ID_BYTES * 8];
        for id in &ids {
            let bytes = URL_SAFE_NO_PAD.decode(id.as_str()).unwrap();
            for (i, one) in ones.iter_mut().enumerate() {
                *one += u32::from(bytes[i / 8] >> (i % 8) & 1);
            }
        }
        // 2000 trials, p = 0.5: sd ~ 22.4; 6 sd either side is ~866..1134.
        assert!(ones.iter().all(|&n| (866..=1134).contains(&n)), "{ones:?}");
    }

    #[test]
    fn fingerprints_are_short_stable_and_debug_hides_the_id() {
        let id = SessionId::generate().unwrap();
        assert_eq!(id.fingerprint().len(), 12);
        assert_eq!(id.fingerprint(), id.clone().fingerprint());
        assert!(!format!("{id:?}").contains(id.as_str()));
    }

    #[test]
    fn handles_are_hex_digests_that_differ_from_plain_sha256_and_parse_back() {
        let id = SessionId::generate().unwrap();
        let handle = id.handle();
        assert_eq!(handle.as_str().len(), HANDLE_LEN);
        assert_eq!(Handle::parse(handle.as_str()), Some(handle.clone()));
        let plain: String = Sha256::digest(id.as_str().as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_ne!(handle.as_str(), plain, "domain-separated");
        assert!(handle.as_str().starts_with(&id.fingerprint()));
        assert_eq!(Handle::parse(&handle.as_str().to_uppercase()), None);
        assert_eq!(Handle::parse(id.as_str()), None, "an id is not a handle");
    }
}
