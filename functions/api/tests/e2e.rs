//! End to end: the README's run command (`scripts/run --in-memory`) brings up
//! DynamoDB Local and `cargo lambda watch`, and a session lives its life over HTTP.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use session_store::testkit::repo_root;

/// The `scripts/run` process group, stopped (as Ctrl-C would) when dropped.
struct Service(Child);

impl Drop for Service {
    fn drop(&mut self) {
        let group = format!("-{}", self.0.id());
        let _ = Command::new("kill")
            .args(["-INT", "--", &group])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline && matches!(self.0.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct HttpReply {
    status: u16,
    headers: String,
    json: Value,
}

/// One HTTP/1.1 request with `Connection: close`.
fn http(port: u16, method: &str, path: &str, content_type: &str, body: &str) -> std::io::Result<HttpReply> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(600)))?;
    let request = format!(
        "{method} /lambda-url/api{path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes())?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw)?;
    let (head, mut body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let dechunked;
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 || tail.len() < n {
                break;
            }
            out.push_str(&tail[..n]);
            rest = tail[n..].trim_start_matches("\r\n");
        }
        dechunked = out;
        body = &dechunked;
    }
    Ok(HttpReply {
        status,
        headers: head.to_ascii_lowercase(),
        json: serde_json::from_str(body).unwrap_or(Value::Null),
    })
}

#[test]
fn the_run_command_serves_the_api_over_http_on_dynamodb_local() {
    let (ddb_port, api_port) = (free_port(), free_port());
    let child = Command::new(repo_root().join("scripts/run"))
        .arg("--in-memory")
        .env("DDB_PORT", ddb_port.to_string())
        .env("API_PORT", api_port.to_string())
        .env_remove("AWS_ENDPOINT_URL_DYNAMODB")
        .stdin(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("scripts/run starts");
    let _service = Service(child);

    // The first request waits for `cargo lambda watch` to build the function.
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        match http(api_port, "GET", "/health", "application/json", "") {
            Ok(reply) if reply.status == 200 => break,
            _ if Instant::now() > deadline => panic!("the API did not answer /health within 15 minutes"),
            _ => std::thread::sleep(Duration::from_millis(500)),
        }
    }
    let send = |method: &str, path: &str, body: Value| {
        http(api_port, method, path, "application/json", &body.to_string()).expect("the API answers")
    };

    let created = send(
        "POST",
        "/sessions",
        json!({"subject": "e2e-user", "data": {"n": 12345678901234567890u128, "": 1}}),
    );
    assert_eq!(created.status, 201, "{}", created.json);
    assert!(created.headers.contains("etag: \"1\""), "{}", created.headers);
    let id = created.json["id"].as_str().unwrap().to_owned();

    let got = send("GET", &format!("/sessions/{id}"), Value::Null);
    assert_eq!((got.status, &got.json), (200, &created.json));

    let patched = http(
        api_port,
        "PATCH",
        &format!("/sessions/{id}"),
        "application/merge-patch+json",
        r#"{"data":{"":null,"k":"v"}}"#,
    )
    .unwrap();
    assert_eq!(patched.status, 200, "{}", patched.json);
    assert_eq!(patched.json["data"], json!({"n": 12345678901234567890u128, "k": "v"}));

    let rotated = send("POST", &format!("/sessions/{id}/rotate"), json!({}));
    assert_eq!(rotated.status, 201, "{}", rotated.json);
    let new_id = rotated.json["id"].as_str().unwrap().to_owned();
    assert_eq!(send("GET", &format!("/sessions/{id}"), Value::Null).status, 404);

    let listed = send("GET", "/subjects/e2e-user/sessions", Value::Null);
    assert_eq!(
        listed.json["sessions"].as_array().map(Vec::len),
        Some(1),
        "{}",
        listed.json
    );

    assert_eq!(send("DELETE", &format!("/sessions/{new_id}"), Value::Null).status, 204);
    let gone = send("GET", &format!("/sessions/{new_id}"), Value::Null);
    assert_eq!(gone.status, 404);
    assert!(
        gone.headers.contains("content-type: application/problem+json"),
        "{}",
        gone.headers
    );
}
