//! End to end: the README's run command (`scripts/run --in-memory`) brings up
//! DynamoDB Local, the three functions under `cargo lambda watch` and the local
//! triggers; a session lives its whole life over HTTP, is swept by the scheduled
//! sweeper and audited from the stream.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use session_store::audit::{AuditLog, AuditRecord, Cause};
use session_store::{Config, DynamoStore, SessionId};
use session_testkit::{self as testkit, emf, repo_root};

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
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Reply {
    status: u16,
    content_type: String,
    etag: String,
    json: Value,
}

/// The API that `scripts/run` serves.
struct Api {
    base: String,
    agent: ureq::Agent,
}

impl Api {
    fn new(port: u16) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            // The first request waits for `cargo lambda watch` to build the function.
            .timeout_global(Some(Duration::from_secs(900)))
            .build()
            .into();
        Self {
            base: format!("http://127.0.0.1:{port}/lambda-url/api"),
            agent,
        }
    }

    fn send(&self, method: &str, path: &str, content_type: &str, body: Option<&str>) -> Result<Reply, ureq::Error> {
        let request = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("content-type", content_type)
            .body(body.unwrap_or_default().to_owned())
            .expect("a valid request");
        let mut response = self.agent.run(request)?;
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let (content_type, etag) = (header("content-type"), header("etag"));
        let text = response.body_mut().read_to_string()?;
        Ok(Reply {
            status: response.status().as_u16(),
            content_type,
            etag,
            json: serde_json::from_str(&text).unwrap_or(Value::Null),
        })
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        let body = body.map(|b| b.to_string());
        self.send(method, path, "application/json", body.as_deref())
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    fn create(&self, body: Value) -> String {
        let created = self.call("POST", "/sessions", Some(body));
        assert_eq!(created.status, 201, "{}", created.json);
        created.json["id"].as_str().unwrap().to_owned()
    }
}

/// Polls `check` every half second until it gives a value, or fails after `limit`.
fn wait_for<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn fingerprint(id: &str) -> String {
    SessionId::parse(id).unwrap().fingerprint()
}

fn cause_of(records: &[AuditRecord], id: &str) -> Option<Cause> {
    let fingerprint = fingerprint(id);
    records.iter().find(|r| r.session == fingerprint).map(|r| r.cause)
}

#[test]
fn the_run_command_runs_the_whole_lifecycle_locally() {
    let (ddb_port, api_port) = (free_port(), free_port());
    let child = Command::new(repo_root().join("scripts/run"))
        .arg("--in-memory")
        .env("DDB_PORT", ddb_port.to_string())
        .env("API_PORT", api_port.to_string())
        .env("SCHEDULE_EVERY", "2")
        .env_remove("AWS_ENDPOINT_URL_DYNAMODB")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("scripts/run starts");
    let mut service = Service(child);
    let output = Output::capture(&mut service);
    let api = Api::new(api_port);
    wait_for("the API answering /health", Duration::from_secs(900), || {
        if let Ok(Some(status)) = service.0.try_wait() {
            panic!("scripts/run exited before serving: {status}");
        }
        api.send("GET", "/health", "application/json", None)
            .ok()
            .filter(|r| r.status == 200)
    });

    // Create, read, merge, rotate, list, delete.
    let created = api.call(
        "POST",
        "/sessions",
        Some(json!({"subject": "e2e-user", "data": {"n": 12345678901234567890u128, "": 1}})),
    );
    assert_eq!(created.status, 201, "{}", created.json);
    assert_eq!(created.etag, "\"1\"");
    let id = created.json["id"].as_str().unwrap().to_owned();
    let got = api.call("GET", &format!("/sessions/{id}"), None);
    let mut without_id = created.json.clone();
    without_id.as_object_mut().unwrap().remove("id");
    assert_eq!(
        (got.status, &got.json),
        (200, &without_id),
        "only create and rotate return the id"
    );
    let patched = api
        .send(
            "PATCH",
            &format!("/sessions/{id}"),
            "application/merge-patch+json",
            Some(r#"{"data":{"":null,"k":"v"}}"#),
        )
        .unwrap();
    assert_eq!(patched.status, 200, "{}", patched.json);
    assert_eq!(patched.json["data"], json!({"n": 12345678901234567890u128, "k": "v"}));
    let rotated = api.call("POST", &format!("/sessions/{id}/rotate"), Some(json!({})));
    assert_eq!(rotated.status, 201, "{}", rotated.json);
    let successor = rotated.json["id"].as_str().unwrap().to_owned();
    assert_eq!(api.call("GET", &format!("/sessions/{id}"), None).status, 404);
    let listed = api.call("GET", "/subjects/e2e-user/sessions", None);
    assert_eq!(
        listed.json["sessions"].as_array().map(Vec::len),
        Some(1),
        "{}",
        listed.json
    );
    assert_eq!(api.call("DELETE", &format!("/sessions/{successor}"), None).status, 204);
    let gone = api.call("GET", &format!("/sessions/{successor}"), None);
    assert_eq!(gone.status, 404);
    assert_eq!(gone.content_type, "application/problem+json");

    // Expiry: a session left idle past its 2-second timeout reads 404 at once; the
    // scheduled sweeper or TTL (DynamoDB Local's sometimes acts within seconds, as
    // DynamoDB's may) then removes it, and the audit function, fed from the stream,
    // records why. A session deleted while live is recorded as revoked.
    let idle = api.create(json!({"subject": "lifecycle-user", "idle_timeout_seconds": 2}));
    let logged_out = api.create(json!({"subject": "lifecycle-user"}));
    assert_eq!(api.call("DELETE", &format!("/sessions/{logged_out}"), None).status, 204);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(api.call("GET", &format!("/sessions/{idle}"), None).status, 404);

    let endpoint = format!("http://127.0.0.1:{ddb_port}");
    let client = aws_sdk_dynamodb::Client::from_conf(testkit::local_config_at(&endpoint).build());
    let store = DynamoStore::new(client.clone(), Config::for_table("sessions"));
    let audit = AuditLog::new(client, "audit", 1);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let idle_id = SessionId::parse(&idle).unwrap();
    // The first sweep waits for `cargo lambda watch` to build the sweeper.
    wait_for(
        "the sweeper or TTL removing the expired session",
        Duration::from_secs(900),
        || {
            runtime
                .block_on(testkit::raw_item(&store, &idle_id))
                .is_none()
                .then_some(())
        },
    );
    let records = wait_for("audit records of both sessions", Duration::from_secs(900), || {
        let records = runtime.block_on(audit.by_subject("lifecycle-user")).unwrap();
        (records.len() >= 2).then_some(records)
    });
    assert_eq!(records.len(), 2, "{records:?}");
    // Whichever came first: the sweeper (expired) or TTL (ttl), never a revocation.
    assert!(
        matches!(cause_of(&records, &idle), Some(Cause::Expired | Cause::Ttl)),
        "{records:?}"
    );
    assert_eq!(cause_of(&records, &logged_out), Some(Cause::Revoked), "{records:?}");

    // The rotated-away and the deleted session of the first part: revoked, once each.
    let records = wait_for("audit records of e2e-user", Duration::from_secs(60), || {
        let records = runtime.block_on(audit.by_subject("e2e-user")).unwrap();
        (records.len() >= 2).then_some(records)
    });
    assert_eq!(records.len(), 2, "{records:?}");
    assert_eq!(cause_of(&records, &id), Some(Cause::Revoked), "{records:?}");
    assert_eq!(cause_of(&records, &successor), Some(Cause::Revoked), "{records:?}");

    // The functions' logs carry their metrics: one EMF document per request, sweep
    // and audited batch, each one CloudWatch would extract metrics from.
    let total = |function: &str, name: &str| {
        output
            .metrics()
            .iter()
            .filter_map(|document| emf::value(document, name, &[("Function", function)]))
            .sum::<f64>()
    };
    wait_for("the metrics of both audited batches", Duration::from_secs(60), || {
        (total("audit", "AuditRecordsWritten") >= 4.0).then_some(())
    });
    assert!(total("api", "Requests") >= 12.0, "every request counted");
    assert_eq!(total("api", "SessionsCreated"), 3.0);
    assert_eq!(total("api", "SessionsRotated"), 1.0);
    // The idle session read after it expired, unless the sweeper or TTL was quicker.
    assert!(total("api", "ExpiredReads") <= 1.0);
    let logouts: f64 = output
        .metrics()
        .iter()
        .filter_map(|document| emf::value(document, "SessionsRevoked", &[("Cause", "logout")]))
        .sum();
    assert_eq!(logouts, 2.0);
    let sweeps = output
        .metrics()
        .iter()
        .filter(|document| emf::value(document, "SweepComplete", &[("Function", "sweeper")]).is_some())
        .count();
    assert!(sweeps >= 1, "every scheduled sweep writes its metrics");
    for document in output.metrics() {
        for datum in emf::data(&document) {
            assert_eq!(datum.namespace, "SessionService", "the default namespace");
        }
    }
}

/// The lines `scripts/run` writes to standard output (the functions' logs), read
/// as they come so the pipe never fills.
struct Output(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl Output {
    fn capture(service: &mut Service) -> Self {
        use std::io::BufRead;
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stdout = service.0.stdout.take().expect("standard output is piped");
        let kept = lines.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                println!("{line}");
                kept.lock().unwrap().push(line);
            }
        });
        Self(lines)
    }

    /// Every EMF document so far, each checked against the format (`testkit::emf`).
    fn metrics(&self) -> Vec<Value> {
        let documents: Vec<String> = self
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|line| line.starts_with('{') && line.contains("\"_aws\""))
            .cloned()
            .collect();
        let captured = emf::Captured::default();
        let sink = captured.sink();
        for document in &documents {
            sink(document);
        }
        captured.take()
    }
}
