//! Session ids: 256 bits from the OS CSPRNG, base64url without padding.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// Bytes of randomness in a session id.
pub const ID_BYTES: usize = 32;
/// Length of an encoded session id.
pub const ID_LEN: usize = 43;

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

    /// The id as sent to clients and stored in the table.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A short, stable, non-reversible tag for logs and audit records (12 hex digits of SHA-256).
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(self.0.as_bytes());
        digest[..6].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The expiry-index shard of this id, in `0..shards`.
    pub fn shard(&self, shards: u32) -> u32 {
        let digest = Sha256::digest(self.0.as_bytes());
        u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) % shards.max(1)
    }
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
}
