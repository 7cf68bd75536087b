//! `scripts/bench seal`: how a session's data is sealed at rest, measured on a few
//! realistic shapes. The compression and AEAD candidates side by side (ratio and µs),
//! the format the store writes (`session_store::seal`: raw DEFLATE level 1 from 128
//! bytes, AES-256-GCM under an HKDF-SHA256 key), and what a page view reads from
//! DynamoDB Local with the data sealed against the plaintext layout it replaced (a map
//! of each top-level key's JSON text, with the key-order list), in one run.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnConsumedCapacity};
use session_store::model::Session;
use session_store::schema::TableSpec;
use session_store::{Config, NewSession, SessionData, SessionId, Timestamp, item, seal};
use session_testkit as testkit;

type BoxError = Box<dyn std::error::Error>;
use crate::bench::PRICES;

/// A small deterministic generator (xorshift), so every run measures the same data.
pub struct Rng(pub u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }

    /// `len` pseudo-random letters, digits, spaces and punctuation: text that DEFLATE
    /// shrinks to about 79% (`scripts/bench seal`).
    pub fn text(&mut self, len: usize) -> String {
        const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 .,;:!?-_()/+";
        (0..len)
            .map(|_| char::from(CHARS[self.below(CHARS.len() as u64) as usize]))
            .collect()
    }
}

/// The sessions measured: what apps keep next to a login.
fn shapes() -> Vec<(&'static str, String)> {
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let hash: String = (0..64).map(|_| format!("{:x}", rng.below(16))).collect();
    let django = format!(
        r#"{{"_auth_user_id":"4821","_auth_user_backend":"django.contrib.auth.backends.ModelBackend","_auth_user_hash":"{hash}","_session_expiry":1209600,"django_language":"de-ch"}}"#
    );
    const WORDS: [&str; 12] = [
        "Organic",
        "Cotton",
        "Shirt",
        "Espresso",
        "Beans",
        "Wireless",
        "Headphones",
        "Ceramic",
        "Mug",
        "Running",
        "Shoes",
        "Notebook",
    ];
    let mut items = Vec::new();
    let mut cart_len = 0;
    while cart_len < 60_000 {
        let name: Vec<&str> = (0..3).map(|_| WORDS[rng.below(12) as usize]).collect();
        let item = format!(
            r#"{{"sku":"SKU-{:06}","name":"{}","qty":{},"unit_price":"{}.{:02}","currency":"EUR","added_at":"2026-12-0{}T{:02}:{:02}:{:02}Z","options":{{"size":"{}","gift_wrap":{}}}}}"#,
            rng.below(1_000_000),
            name.join(" "),
            1 + rng.below(4),
            1 + rng.below(300),
            rng.below(100),
            1 + rng.below(7),
            rng.below(24),
            rng.below(60),
            rng.below(60),
            ["S", "M", "L", "XL"][rng.below(4) as usize],
            rng.below(2) == 1,
        );
        cart_len += item.len() + 1;
        items.push(item);
    }
    let cart = format!(
        r#"{{"cart":[{}],"csrf":"{}","theme":"dark"}}"#,
        items.join(","),
        rng.text(32)
    );
    vec![
        ("Django login", django),
        ("cart, 60 KB", cart),
        ("random text, 1 KB", format!(r#"{{"note":"{}"}}"#, rng.text(1_000))),
        ("random text, 64 KB", format!(r#"{{"note":"{}"}}"#, rng.text(64_000))),
        (
            "one repeated letter, 64 KB",
            format!(r#"{{"blob":"{}"}}"#, "x".repeat(64_000)),
        ),
    ]
}

/// Microseconds per call of `f`: the median of 7 rounds, each long enough to time.
fn micros(mut f: impl FnMut()) -> f64 {
    let mut per_call = Vec::new();
    for _ in 0..7 {
        let (mut calls, started) = (0u32, Instant::now());
        while calls < 3 || started.elapsed().as_micros() < 20_000 {
            f();
            calls += 1;
        }
        per_call.push(started.elapsed().as_secs_f64() * 1e6 / f64::from(calls));
    }
    per_call.sort_by(f64::total_cmp);
    per_call[3]
}

/// A compression candidate: its name, and compress and decompress functions.
type Codec = (&'static str, fn(&[u8]) -> Vec<u8>, fn(&[u8]) -> Vec<u8>);

const CODECS: [Codec; 5] = [
    (
        "DEFLATE 1 (miniz_oxide)",
        |t| miniz_oxide::deflate::compress_to_vec(t, 1),
        |c| miniz_oxide::inflate::decompress_to_vec(c).unwrap_or_default(),
    ),
    (
        "DEFLATE 6 (miniz_oxide)",
        |t| miniz_oxide::deflate::compress_to_vec(t, 6),
        |c| miniz_oxide::inflate::decompress_to_vec(c).unwrap_or_default(),
    ),
    ("LZ4 (lz4_flex)", lz4_flex::block::compress_prepend_size, |c| {
        lz4_flex::block::decompress_size_prepended(c).unwrap_or_default()
    }),
    (
        "zstd 1",
        |t| zstd::bulk::compress(t, 1).unwrap_or_default(),
        |c| zstd::bulk::decompress(c, 1 << 20).unwrap_or_default(),
    ),
    (
        "zstd 3",
        |t| zstd::bulk::compress(t, 3).unwrap_or_default(),
        |c| zstd::bulk::decompress(c, 1 << 20).unwrap_or_default(),
    ),
];

fn compression(shapes: &[(&str, String)]) {
    println!("\n### Compression candidates: compressed size (% of the JSON text), µs to compress / decompress\n");
    let names: Vec<&str> = CODECS.iter().map(|c| c.0).collect();
    println!("| session data | JSON bytes | {} |", names.join(" | "));
    println!("|---|---:|{}", "---:|".repeat(CODECS.len()));
    for (label, json) in shapes {
        let text = json.as_bytes();
        let cells: Vec<String> = CODECS
            .iter()
            .map(|(_, compress, decompress)| {
                let packed = compress(text);
                assert_eq!(decompress(&packed), text, "{label} round-trips");
                let c = micros(|| {
                    black_box(compress(black_box(text)));
                });
                let d = micros(|| {
                    black_box(decompress(black_box(&packed)));
                });
                format!(
                    "{} ({:.0}%), {c:.1} / {d:.1}",
                    packed.len(),
                    100.0 * packed.len() as f64 / text.len() as f64
                )
            })
            .collect();
        println!("| {label} | {} | {} |", text.len(), cells.join(" | "));
    }
}

fn aeads(shapes: &[(&str, String)]) {
    use ring::aead::{AES_256_GCM, Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
    println!("\n### AEAD candidates: µs to seal / open the JSON text (key set up once)\n");
    println!(
        "| session data | JSON bytes | AES-256-GCM (ring) | ChaCha20-Poly1305 (ring) | ChaCha20-Poly1305 (RustCrypto chacha20poly1305) |"
    );
    println!("|---|---:|---:|---:|---:|");
    for (label, json) in shapes {
        let text = json.as_bytes();
        let mut cells = Vec::new();
        for algorithm in [&AES_256_GCM, &CHACHA20_POLY1305] {
            let key = LessSafeKey::new(UnboundKey::new(algorithm, &[7u8; 32]).expect("a 32-byte key"));
            let nonce = || Nonce::assume_unique_for_key([1u8; 12]);
            let mut sealed = text.to_vec();
            key.seal_in_place_append_tag(nonce(), Aad::from(b"aad"), &mut sealed)
                .expect("seals");
            let s = micros(|| {
                let mut buffer = black_box(text).to_vec();
                key.seal_in_place_append_tag(nonce(), Aad::from(b"aad"), &mut buffer)
                    .expect("seals");
                black_box(buffer);
            });
            let o = micros(|| {
                let mut buffer = black_box(&sealed).clone();
                black_box(key.open_in_place(nonce(), Aad::from(b"aad"), &mut buffer).is_ok());
            });
            cells.push(format!("{s:.1} / {o:.1}"));
        }
        {
            use chacha20poly1305::aead::{Aead, KeyInit, Payload};
            use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
            let cipher = ChaCha20Poly1305::new(Key::from_slice(&[7u8; 32]));
            let nonce = Nonce::from_slice(&[1u8; 12]);
            let payload = |msg| Payload { msg, aad: b"aad" };
            let sealed = cipher.encrypt(nonce, payload(text)).expect("seals");
            let s = micros(|| {
                black_box(cipher.encrypt(nonce, payload(black_box(text))).is_ok());
            });
            let o = micros(|| {
                black_box(cipher.decrypt(nonce, payload(black_box(&sealed))).is_ok());
            });
            cells.push(format!("{s:.1} / {o:.1}"));
        }
        println!("| {label} | {} | {} |", text.len(), cells.join(" | "));
    }
}

fn format_written(shapes: &[(&str, String)]) -> Result<(), BoxError> {
    println!(
        "\n### The format written (`session_store::seal`): sealed bytes and µs per seal / open \
         (key derivation, compression and AEAD)\n"
    );
    println!("| session data | JSON bytes | sealed bytes | sealed / JSON | codec | µs to seal | µs to open |");
    println!("|---|---:|---:|---:|---|---:|---:|");
    let id = SessionId::generate()?;
    for (label, json) in shapes {
        let text = json.as_bytes();
        let sealed = seal::seal(&id, text)?;
        assert_eq!(seal::open(&id, &sealed).ok().as_deref(), Some(text));
        let s = micros(|| {
            black_box(seal::seal(&id, black_box(text)).is_ok());
        });
        let o = micros(|| {
            black_box(seal::open(&id, black_box(&sealed)).is_ok());
        });
        let codec = if sealed[1] == seal::CODEC_DEFLATE {
            "DEFLATE"
        } else {
            "stored"
        };
        println!(
            "| {label} | {} | {} | {:.0}% | {codec} | {s:.1} | {o:.1} |",
            text.len(),
            sealed.len(),
            100.0 * sealed.len() as f64 / text.len() as f64
        );
    }
    Ok(())
}

/// The item the store wrote before data was sealed: each top-level key's JSON text in
/// the `data` map (keys prefixed with `_`), the key order as a list of entries, its
/// limit and the data's size.
fn plaintext_layout(
    mut item: HashMap<String, AttributeValue>,
    json: &str,
) -> Result<HashMap<String, AttributeValue>, BoxError> {
    item.remove(item::attr::DOCUMENT);
    let members: serde_json::Map<String, serde_json::Value> = serde_json::from_str(json)?;
    let mut size = 0;
    let (mut map, mut order) = (HashMap::new(), Vec::new());
    for (key, value) in members {
        let text = value.to_string();
        size += 2 * (2 + key.len()) + text.len();
        map.insert(format!("_{key}"), AttributeValue::S(text));
        order.push(AttributeValue::S(format!("_{key}")));
    }
    let n = order.len();
    item.insert("data".into(), AttributeValue::M(map));
    item.insert("data_keys".into(), AttributeValue::L(order));
    item.insert("data_keys_max".into(), AttributeValue::N((n + 64).to_string()));
    item.insert("data_bytes".into(), AttributeValue::N(size.to_string()));
    Ok(item)
}

/// Read units of a strongly consistent GetItem of `item` (as a page view reads it).
async fn read_units(client: &Client, table: &str, item: HashMap<String, AttributeValue>) -> Result<f64, BoxError> {
    let key = HashMap::from([(item::attr::HANDLE.to_owned(), item[item::attr::HANDLE].clone())]);
    client.put_item().table_name(table).set_item(Some(item)).send().await?;
    let out = client
        .get_item()
        .table_name(table)
        .set_key(Some(key))
        .consistent_read(true)
        .return_consumed_capacity(ReturnConsumedCapacity::Total)
        .send()
        .await?;
    Ok(out.consumed_capacity().and_then(|c| c.capacity_units()).unwrap_or(0.0))
}

async fn page_views(shapes: &[(&str, String)]) -> Result<(), BoxError> {
    let (client, _) = testkit::client();
    let table = format!("bench-seal-{}", SessionId::generate()?.fingerprint());
    TableSpec::sessions()?.create(&client, &table).await?;
    let mut config = Config::for_table(&table);
    config.limits.max_data_bytes = 80_000;
    let (api_call, lambda_call, read_unit, _) = PRICES;
    println!(
        "\n### A page view's read (`GET /sessions/{{id}}`, no slide due): the data in the clear \
         (the layout before) against sealed, the same session in one run\n"
    );
    println!(
        "| session data | read units, in the clear | read units, sealed | $ per million page views, in the clear | sealed |"
    );
    println!("|---|---:|---:|---:|---:|");
    for (label, json) in shapes {
        let id = SessionId::generate()?;
        let request = NewSession {
            data: SessionData::from_json(json)?,
            ..Default::default()
        };
        let session = Session::create(&id, id.handle(), request, &config.limits, Timestamp::now())?;
        let sealed = item::encode(&session, &id, None, "bench", &config)?;
        let before = read_units(&client, &table, plaintext_layout(sealed.clone(), json)?).await?;
        let after = read_units(&client, &table, sealed).await?;
        let dollars = |units: f64| api_call + lambda_call + units * read_unit;
        println!(
            "| {label} | {before:.1} | {after:.1} | {:.3} | {:.3} |",
            dollars(before),
            dollars(after)
        );
    }
    client.delete_table().table_name(&table).send().await?;
    Ok(())
}

/// Prints every table of the seal benchmark.
pub async fn run() -> Result<(), BoxError> {
    let shapes = shapes();
    compression(&shapes);
    aeads(&shapes);
    format_written(&shapes)?;
    page_views(&shapes).await
}
