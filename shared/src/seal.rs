//! Sealed documents: a session's data at rest, readable only with the session's id.
//!
//! The data's JSON text is compressed (raw DEFLATE, RFC 1951) when that makes it
//! smaller, then sealed with AES-256-GCM under a key derived from the session id by
//! HKDF-SHA256 with a label of its own (unrelated to the handle's digest). The table
//! holds neither the id nor the key, so a table dump, the stream, a backup or an
//! export shows only ciphertext. The associated data binds a document to its item
//! (the handle) and to its header, so a document moved to another item, or altered
//! in place, fails to open.
//!
//! Layout, format 1 (what any reader holding the id follows; Python's
//! `cryptography` (`HKDF`, `AESGCM`) and `zlib.decompress(text, wbits=-15)` read it):
//!
//! ```text
//! byte 0      format version (1)
//! byte 1      codec: 0 = the JSON text as is, 1 = raw DEFLATE of it
//! bytes 2-13  AES-GCM nonce (random)
//! bytes 14-   ciphertext of the (compressed) text, then the 16-byte tag
//! key         HKDF-SHA256(salt = none, ikm = the id's 43 ASCII characters,
//!             info = "session-service/v1/document-key"), 32 bytes
//! aad         "session-service/v1/document\0" || handle (64 hex digits) || bytes 0-1
//! ```

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf::{HKDF_SHA256, Salt};

use crate::config::DATA_BYTES_CEILING;
use crate::id::{Handle, RandomnessError, SessionId};

/// The format this code writes.
pub const FORMAT: u8 = 1;
/// Codec byte: the JSON text is stored as is.
pub const CODEC_STORED: u8 = 0;
/// Codec byte: the JSON text is raw DEFLATE (RFC 1951) compressed.
pub const CODEC_DEFLATE: u8 = 1;
/// Texts shorter than this are not compressed: DEFLATE rarely saves a byte there,
/// and never a DynamoDB capacity unit (`scripts/bench seal`).
pub const COMPRESS_FROM: usize = 128;
/// DEFLATE level: 1 compresses realistic sessions within a few percent of level 6,
/// in a fraction of the time (`scripts/bench seal`).
pub const DEFLATE_LEVEL: u8 = 1;
/// HKDF info of the document key.
const KEY_INFO: &[u8] = b"session-service/v1/document-key";
/// Prefix of the associated data.
const AAD_DOMAIN: &[u8] = b"session-service/v1/document\0";
/// Bytes before the ciphertext: format, codec, nonce.
const HEADER_LEN: usize = 2 + NONCE_LEN;
/// Bytes a sealed document adds to its (compressed) text: header and tag.
pub const OVERHEAD: usize = HEADER_LEN + 16;

/// A stored document that does not open: another key or item, altered, cut short,
/// an unknown format or codec, or a text that is not what was sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the session's stored document does not open")]
pub struct Unopenable;

/// The key that seals and opens the documents of the session with id `id`.
fn key(id: &SessionId) -> LessSafeKey {
    let prk = Salt::new(HKDF_SHA256, &[]).extract(id.as_str().as_bytes());
    // Expanding 32 bytes for AES-256-GCM cannot fail (at most 255 hash lengths can).
    let okm = prk
        .expand(&[KEY_INFO], &AES_256_GCM)
        .expect("HKDF-SHA256 expands 32 bytes");
    LessSafeKey::new(UnboundKey::from(okm))
}

/// The associated data of a document of `handle` with `header` (format and codec).
fn aad(handle: &Handle, header: [u8; 2]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_DOMAIN.len() + handle.as_str().len() + 2);
    aad.extend_from_slice(AAD_DOMAIN);
    aad.extend_from_slice(handle.as_str().as_bytes());
    aad.extend_from_slice(&header);
    aad
}

/// Seals `text` (a session's data as JSON) for the session with id `id`.
pub fn seal(id: &SessionId, text: &[u8]) -> Result<Vec<u8>, RandomnessError> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(RandomnessError)?;
    Ok(seal_with_nonce(id, text, nonce))
}

/// [`seal`] with a given nonce (a fresh random one in every write; fixed ones only
/// in the format's test vectors).
fn seal_with_nonce(id: &SessionId, text: &[u8], nonce: [u8; NONCE_LEN]) -> Vec<u8> {
    let compressed = (text.len() >= COMPRESS_FROM)
        .then(|| miniz_oxide::deflate::compress_to_vec(text, DEFLATE_LEVEL))
        .filter(|c| c.len() < text.len());
    let (codec, plain) = match &compressed {
        Some(c) => (CODEC_DEFLATE, c.as_slice()),
        None => (CODEC_STORED, text),
    };
    let header = [FORMAT, codec];
    let mut sealed = Vec::with_capacity(OVERHEAD + plain.len());
    sealed.extend_from_slice(&header);
    sealed.extend_from_slice(&nonce);
    let mut body = plain.to_vec();
    key(id)
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad(&id.handle(), header)),
            &mut body,
        )
        // AES-GCM refuses only texts over 64 GB; data is at most the ceiling.
        .expect("AES-256-GCM seals any session's data");
    sealed.extend_from_slice(&body);
    sealed
}

/// Opens a document sealed by [`seal`] for the session with id `id`: its JSON text.
pub fn open(id: &SessionId, sealed: &[u8]) -> Result<Vec<u8>, Unopenable> {
    if sealed.len() < OVERHEAD {
        return Err(Unopenable);
    }
    let header = [sealed[0], sealed[1]];
    if header[0] != FORMAT || !matches!(header[1], CODEC_STORED | CODEC_DEFLATE) {
        return Err(Unopenable);
    }
    let nonce = Nonce::try_assume_unique_for_key(&sealed[2..HEADER_LEN]).map_err(|_| Unopenable)?;
    let mut body = sealed[HEADER_LEN..].to_vec();
    let plain = key(id)
        .open_in_place(nonce, Aad::from(aad(&id.handle(), header)), &mut body)
        .map_err(|_| Unopenable)?;
    match header[1] {
        CODEC_DEFLATE => {
            miniz_oxide::inflate::decompress_to_vec_with_limit(plain, DATA_BYTES_CEILING).map_err(|_| Unopenable)
        }
        _ => Ok(plain.to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> SessionId {
        SessionId::generate().unwrap()
    }

    #[test]
    fn a_document_opens_with_its_id_only() {
        let (id, other) = (id(), id());
        for text in [&b"{}"[..], br#"{"cart":[1,2,3]}"#, "x".repeat(10_000).as_bytes()] {
            let sealed = seal(&id, text).unwrap();
            assert_eq!(open(&id, &sealed).unwrap(), text);
            assert_eq!(open(&other, &sealed), Err(Unopenable));
        }
    }

    #[test]
    fn small_or_incompressible_texts_are_stored_and_others_deflated() {
        let id = id();
        let small = seal(&id, br#"{"theme":"dark"}"#).unwrap();
        assert_eq!((small[0], small[1]), (FORMAT, CODEC_STORED));
        assert_eq!(small.len(), OVERHEAD + br#"{"theme":"dark"}"#.len());
        let repetitive = format!(r#"{{"cart":[{}]}}"#, "1,".repeat(1000) + "1");
        let large = seal(&id, repetitive.as_bytes()).unwrap();
        assert_eq!(large[1], CODEC_DEFLATE);
        assert!(large.len() < repetitive.len() / 10, "{}", large.len());
        // Bytes from the OS generator: DEFLATE cannot shrink them, so they are stored.
        let mut random = [0u8; 300];
        getrandom::fill(&mut random).unwrap();
        let noise = seal(&id, &random).unwrap();
        assert_eq!((noise[1], noise.len()), (CODEC_STORED, OVERHEAD + random.len()));
        assert_eq!(open(&id, &noise).unwrap(), random);
    }

    #[test]
    fn an_altered_cut_or_relabelled_document_does_not_open() {
        let id = id();
        let sealed = seal(&id, "y".repeat(500).as_bytes()).unwrap();
        for i in [0, 1, 2, 13, 14, sealed.len() - 1] {
            let mut altered = sealed.clone();
            altered[i] ^= 1;
            assert_eq!(open(&id, &altered), Err(Unopenable), "byte {i}");
        }
        assert_eq!(open(&id, &sealed[..sealed.len() - 1]), Err(Unopenable));
        assert_eq!(open(&id, &sealed[..OVERHEAD - 1]), Err(Unopenable));
        let mut stored = sealed.clone();
        stored[1] = CODEC_STORED;
        assert_eq!(open(&id, &stored), Err(Unopenable), "the codec byte is authenticated");
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The format's test vectors (docs/sealed-format-vectors.json), as this code
    /// computes them from their fixed ids, texts and nonces.
    fn vectors() -> serde_json::Value {
        let login = r#"{"_auth_user_id":"42","_auth_user_backend":"django.contrib.auth.backends.ModelBackend","_auth_user_hash":"6f1ed002ab5595859014ebf0951522d9f1ee8ea3b0d1ee8ea3b0d1ee8ea3b0d1","cart":[1,2,3,1,2,3,1,2,3,1,2,3],"theme":"dark"}"#;
        let cases: [(&str, &str, &str); 3] = [
            (
                "empty data, stored",
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
                "{}",
            ),
            (
                "short data, stored",
                "_-7t7Ovq6ejn5uXk4-Lh4N_e3dzb2tnY19bV1NPS0dA",
                r#"{"theme":"dark","name":"Zoë ✓"}"#,
            ),
            ("a login, DEFLATE", "UikuDCypv8tSRh5Ie7TDbp3iI_pTmus_cdcHZNhHFO4", login),
        ];
        let mut vectors = Vec::new();
        for (n, (name, id, text)) in cases.into_iter().enumerate() {
            let id = SessionId::parse(id).expect("a vector's id is an id");
            let nonce: [u8; NONCE_LEN] = std::array::from_fn(|i| (i + 16 * n) as u8);
            let document = seal_with_nonce(&id, text.as_bytes(), nonce);
            let prk = Salt::new(HKDF_SHA256, &[]).extract(id.as_str().as_bytes());
            let mut key = [0u8; 32];
            prk.expand(&[KEY_INFO], &AES_256_GCM)
                .expect("HKDF-SHA256 expands 32 bytes")
                .fill(&mut key)
                .expect("32 bytes");
            let mut altered = document.clone();
            let last = altered.len() - 1;
            altered[last] ^= 1;
            vectors.push(serde_json::json!({
                "name": name,
                "id": id.as_str(),
                "handle": id.handle().as_str(),
                "key": hex(&key),
                "data": text,
                "nonce": hex(&nonce),
                "codec": document[1],
                "document": hex(&document),
                "altered_document": hex(&altered),
            }));
        }
        serde_json::json!({
            "format": FORMAT,
            "about": "Generated by shared/src/seal.rs (its test sealed_format_test_vectors_are_what_the_store_writes); see docs/sealed-format.md. Each vector: a session id, the item key (handle) it derives, the document key, the data's JSON text, the nonce, and the sealed document it makes; every reader must derive the handle and key, open the document to the data, and refuse altered_document (its last byte flipped).",
            "vectors": vectors,
        })
    }

    #[test]
    fn sealed_format_test_vectors_are_what_the_store_writes() {
        let computed = serde_json::to_string_pretty(&vectors()).unwrap() + "\n";
        let committed = include_str!("../../docs/sealed-format-vectors.json");
        if computed != committed {
            let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/sealed-format-vectors.json");
            std::fs::write(&out, &computed).unwrap();
            panic!(
                "docs/sealed-format-vectors.json is not what this code writes; if the format changed on purpose, copy {} over it (and bump the format)",
                out.display()
            );
        }
        for vector in vectors()["vectors"].as_array().unwrap() {
            let text = |name: &str| vector[name].as_str().unwrap().to_owned();
            let bytes = |name: &str| {
                let hex = text(name);
                (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                    .collect::<Vec<u8>>()
            };
            let id = SessionId::parse(&text("id")).unwrap();
            assert_eq!(open(&id, &bytes("document")).unwrap(), text("data").as_bytes());
            assert_eq!(open(&id, &bytes("altered_document")), Err(Unopenable));
        }
    }

    #[test]
    fn seals_of_one_text_differ() {
        let id = id();
        assert_ne!(seal(&id, b"{}").unwrap(), seal(&id, b"{}").unwrap(), "fresh nonces");
    }
}
