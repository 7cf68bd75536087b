//! The fuzz targets' properties on every CI run: over the committed seeds, and over
//! random inputs built from their pieces (libFuzzer runs are longer: see README).

use proptest::prelude::*;

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("seeds")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|f| f.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no seeds in {}", dir.display());
    files.into_iter().map(|f| std::fs::read(f).unwrap()).collect()
}

#[test]
fn every_request_seed_gets_a_2xx_or_4xx() {
    for seed in seeds("request") {
        fuzz_targets::request(&seed);
    }
}

#[test]
fn every_data_seed_round_trips() {
    for seed in seeds("data_codec") {
        fuzz_targets::data_codec(&seed);
    }
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("sessions".to_owned()),
        Just("subjects".to_owned()),
        Just("touch".to_owned()),
        Just("rotate".to_owned()),
        Just("health".to_owned()),
        Just("AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA".to_owned()),
        "[ -~]{0,12}",
        "\\PC{0,6}",
    ]
}

fn request_input() -> impl Strategy<Value = Vec<u8>> {
    // Mostly the API's own routes with odd parts, sometimes anything.
    let route = (
        prop_oneof![
            Just("sessions"),
            Just("sessions/{}"),
            Just("sessions/{}/touch"),
            Just("sessions/{}/rotate"),
            Just("subjects/{}/sessions"),
            Just("health"),
        ],
        segment(),
    )
        .prop_map(|(template, part)| template.replace("{}", &part));
    let path = prop_oneof![
        4 => route,
        1 => proptest::collection::vec(segment(), 0..5).prop_map(|s| s.join("/")),
    ];
    let header = prop_oneof![
        Just("content-type: application/json".to_owned()),
        Just("content-type: application/merge-patch+json".to_owned()),
        Just("if-match: \"1\"".to_owned()),
        "[a-z-]{1,10}: [ -~]{0,20}",
    ];
    let body = prop_oneof![
        Just(r#"{"data":{"a":1}}"#.to_owned()),
        Just(r#"{"subject":"s","idle_timeout_seconds":60}"#.to_owned()),
        "\\PC{0,40}",
        "[{}\\[\\]\":,0-9a-z ]{0,40}",
    ];
    (
        any::<u8>(),
        path,
        "[a-z=&0-9%]{0,20}",
        proptest::collection::vec(header, 0..4),
        body,
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20)),
    )
        .prop_map(|(method, path, query, headers, body, binary)| {
            let mut input = vec![method];
            for part in [path, query, headers.join("\n"), body] {
                input.extend_from_slice(part.as_bytes());
                input.push(0);
            }
            match binary {
                Some(bytes) => input.extend_from_slice(&bytes),
                None => {
                    input.pop();
                }
            }
            input
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_requests_get_a_2xx_or_4xx(input in request_input()) {
        fuzz_targets::request(&input);
    }

    #[test]
    fn random_json_objects_round_trip(data in proptest::collection::btree_map("\\PC{0,8}", "\\PC{0,8}|-?[0-9]{1,25}(\\.[0-9]{1,5})?(e-?[0-9]{1,3})?|true|null|\\[\\]|\\{\\}", 0..6)) {
        let text = format!("{{{}}}", data.iter().map(|(k, v)| {
            let value = if v.parse::<f64>().is_ok() || ["true", "null", "[]", "{}"].contains(&v.as_str()) { v.clone() } else { serde_json::to_string(v).unwrap() };
            format!("{}:{}", serde_json::to_string(k).unwrap(), value)
        }).collect::<Vec<_>>().join(","));
        fuzz_targets::data_codec(text.as_bytes());
    }
}
