//! Start-up shared by the Lambda functions: JSON logs, metrics, the HTTPS client
//! and the AWS SDK configuration.

pub mod metrics;

use std::borrow::Cow;
use std::collections::HashMap;
use std::error::Error;
use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use aws_config::environment::credentials::EnvironmentVariableCredentialsProvider;
use aws_smithy_runtime_api::client::connection::{CaptureSmithyConnection, ConnectionMetadata};
use aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector as SmithyConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::retry::ErrorKind;
use hyper::Uri;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::{HttpConnector, capture_connection};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tracing_subscriber::filter::{LevelFilter, Targets};

/// JSON log lines (with the Lambda request id from the runtime's span), filtered
/// by `RUST_LOG` (`info` when unset or unreadable). `RUST_LOG` takes
/// `level` and `target=level` directives, comma-separated.
pub fn init_logging() {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|directives| directives.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO));
    let logs = tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_span_list(false)
        .without_time()
        .finish();
    tracing::subscriber::set_global_default(tracing_subscriber::layer::SubscriberExt::with(logs, filter))
        .expect("logging is set up once, at start-up");
}

/// The HTTPS client of every DynamoDB client: rustls on ring, trusting the
/// Mozilla root certificates built into the binary, over hyper's pooled
/// HTTP/1.1 client. Plain `http://` endpoints (DynamoDB Local) work too.
///
/// The roots are `webpki-roots`' trust anchors, already parsed at compile
/// time. smithy's own client takes roots only as PEM text, which it decoded
/// and parsed at every start: with encoding them for it, 7.5 M of `api`'s
/// 10.1 M init instructions (BENCHMARKS.md, change 7). The SDK's default
/// client loads the system's certificates instead, reading every file of the
/// certificate directories. No proxy is used (smithy's client used none
/// unless configured).
///
/// Each connector (one per connect and read timeout pair, as smithy's client
/// keeps them) is built when a request first needs it, not when an SDK client
/// is created. It honours [`HttpConnectorSettings`]' connect timeout (TCP and
/// TLS handshake together) and read timeout (until the response head), and
/// keeps idle connections for reuse (hyper's pool, 90 s).
pub fn http_client() -> SharedHttpClient {
    SharedHttpClient::new(Https::default())
}

/// The root certificates the HTTPS client trusts: `webpki-roots`' Mozilla
/// roots as parsed trust anchors (no system store, nothing decoded at start).
pub fn root_store() -> rustls::RootCertStore {
    rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    }
}

/// The TLS configuration of the HTTPS client: [`root_store`], ring's
/// cryptography with the cipher suites smithy's client allows, TLS 1.2 and
/// 1.3, and ALPN offering HTTP/1.1 only (the one protocol the client speaks).
pub fn tls_config() -> rustls::ClientConfig {
    let ring = rustls::crypto::ring::default_provider();
    let suites = [
        rustls::CipherSuite::TLS13_AES_256_GCM_SHA384,
        rustls::CipherSuite::TLS13_AES_128_GCM_SHA256,
        rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        rustls::CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ];
    let provider = rustls::crypto::CryptoProvider {
        cipher_suites: ring
            .cipher_suites
            .iter()
            .filter(|suite| suites.contains(&suite.suite()))
            .copied()
            .collect(),
        ..ring
    };
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .expect("ring supports TLS 1.2 and 1.3")
        .with_root_certificates(root_store())
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

/// smithy's [`HttpClient`] interface over [`Connector`]s, one per timeout
/// pair, each built on first use.
#[derive(Debug, Default)]
struct Https {
    connectors: Mutex<HashMap<Timeouts, SharedHttpConnector>>,
}

/// A connector's connect and read timeouts, the key of [`Https`]' connectors.
type Timeouts = (Option<Duration>, Option<Duration>);

impl HttpClient for Https {
    fn http_connector(&self, settings: &HttpConnectorSettings, _: &RuntimeComponents) -> SharedHttpConnector {
        let timeouts = (settings.connect_timeout(), settings.read_timeout());
        let mut connectors = self.connectors.lock().unwrap_or_else(PoisonError::into_inner);
        connectors
            .entry(timeouts)
            .or_insert_with(|| SharedHttpConnector::new(Connector::new(timeouts.0, timeouts.1)))
            .clone()
    }

    fn connector_metadata(&self) -> Option<ConnectorMetadata> {
        Some(ConnectorMetadata::new("hyper", Some(Cow::Borrowed("1.x"))))
    }
}

type Pool = hyper_util::client::legacy::Client<ConnectTimeout<HttpsConnector<HttpConnector>>, SdkBody>;

/// One pooled hyper client with its TLS configuration and timeouts.
#[derive(Debug)]
struct Connector {
    client: Pool,
    read_timeout: Option<Duration>,
}

impl Connector {
    fn new(connect_timeout: Option<Duration>, read_timeout: Option<Duration>) -> Self {
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        let https = HttpsConnector::from((tcp, tls_config()));
        let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .build(ConnectTimeout {
                inner: https,
                timeout: connect_timeout,
            });
        Self { client, read_timeout }
    }
}

impl SmithyConnector for Connector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let mut request = match request.try_into_http1x() {
            Ok(request) => request,
            Err(error) => return HttpConnectorFuture::ready(Err(ConnectorError::user(error.into()))),
        };
        // Lets the SDK poison the connection after a timeout or I/O error, as
        // smithy's client does, so that a retry does not reuse it.
        let connection = capture_connection(&mut request);
        if let Some(capture) = request.extensions().get::<CaptureSmithyConnection>() {
            capture.set_connection_retriever(move || {
                connection.connection_metadata().as_ref()?;
                let connection = connection.clone();
                Some(
                    ConnectionMetadata::builder()
                        .proxied(false)
                        .poison_fn(move || {
                            if let Some(connected) = connection.connection_metadata().as_ref() {
                                connected.poison();
                            }
                        })
                        .build(),
                )
            });
        }
        let response = self.client.request(request);
        let read_timeout = self.read_timeout;
        HttpConnectorFuture::new(async move {
            let response = match read_timeout {
                Some(limit) => tokio::time::timeout(limit, response)
                    .await
                    .map_err(|_| ConnectorError::timeout(Box::new(TimedOut("reading the response", limit))))?,
                None => response.await,
            }
            .map_err(connector_error)?;
            HttpResponse::try_from(response.map(SdkBody::from_body_1_x))
                .map_err(|error| ConnectorError::other(error.into(), None))
        })
    }
}

/// Sorts hyper's errors as smithy's client does, which decides what the SDK retries.
fn connector_error(error: hyper_util::client::legacy::Error) -> ConnectorError {
    let chain = || std::iter::successors(Some(&error as &(dyn Error + 'static)), |&error| error.source());
    if chain().any(|error| error.is::<TimedOut>()) {
        return ConnectorError::timeout(error.into());
    }
    if error.is_connect() || chain().any(|error| error.is::<std::io::Error>()) {
        return ConnectorError::io(error.into());
    }
    match chain().find_map(|error| error.downcast_ref::<hyper::Error>()) {
        Some(hyper) if hyper.is_timeout() => ConnectorError::timeout(error.into()),
        Some(hyper) if hyper.is_user() => ConnectorError::user(error.into()),
        Some(hyper) if hyper.is_closed() || hyper.is_canceled() => ConnectorError::io(error.into()),
        Some(hyper) if hyper.is_incomplete_message() => {
            ConnectorError::other(error.into(), Some(ErrorKind::TransientError))
        }
        // Anything else the connection did (a malformed answer, say) may pass on a new
        // connection; an error with no kind is the SDK's own (credentials, signing).
        _ => ConnectorError::other(error.into(), Some(ErrorKind::TransientError)),
    }
}

/// A wait that ran out: what was waited for, and the limit.
#[derive(Debug)]
struct TimedOut(&'static str, Duration);

impl fmt::Display for TimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "timed out {} after {:?}", self.0, self.1)
    }
}

impl Error for TimedOut {}

/// A connector bounded in time: connecting, including the TLS handshake.
#[derive(Debug, Clone)]
struct ConnectTimeout<C> {
    inner: C,
    timeout: Option<Duration>,
}

impl<C> tower_service::Service<Uri> for ConnectTimeout<C>
where
    C: tower_service::Service<Uri>,
    C::Future: Send + 'static,
    C::Error: Into<Box<dyn Error + Send + Sync>>,
{
    type Response = C::Response;
    type Error = Box<dyn Error + Send + Sync>;
    type Future = Pin<Box<dyn Future<Output = Result<C::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.inner.call(uri);
        let timeout = self.timeout;
        Box::pin(async move {
            match timeout {
                Some(limit) => match tokio::time::timeout(limit, connecting).await {
                    Ok(connected) => connected.map_err(Into::into),
                    Err(_) => Err(Box::new(TimedOut("connecting", limit)) as Self::Error),
                },
                None => connecting.await.map_err(Into::into),
            }
        })
    }
}

/// The functions' bounded waits on DynamoDB: 1 s to connect, 2 s an attempt, 6 s in all.
pub fn timeouts() -> aws_config::timeout::TimeoutConfig {
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(1))
        .operation_attempt_timeout(Duration::from_secs(2))
        .operation_timeout(Duration::from_secs(6))
        .build()
}

/// The SDK configuration from the environment, with bounded waits so that a
/// DynamoDB outage surfaces as an error well within a function's timeout.
/// `AWS_ENDPOINT_URL_DYNAMODB` (the SDK's own override) points it at DynamoDB Local.
///
/// Lambda hands every function its role's credentials in the environment
/// (`AWS_ACCESS_KEY_ID` and friends); when they are there, they are read
/// directly instead of through the default chain, which would build an STS
/// client (and its TLS connector: a quarter of `api`'s init, BENCHMARKS.md).
/// Without them the default chain applies (profiles, SSO, container, IMDS).
pub async fn sdk_config() -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http_client())
        .timeout_config(timeouts());
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_some() {
        loader = loader.credentials_provider(EnvironmentVariableCredentialsProvider::new());
    }
    loader.load().await
}

/// The DynamoDB client of a function: [`sdk_config`], with `metrics` counting its
/// retries and throttled requests.
pub async fn dynamodb_client(metrics: &metrics::Metrics) -> aws_sdk_dynamodb::Client {
    let config = aws_sdk_dynamodb::config::Builder::from(&sdk_config().await)
        .interceptor(metrics.dynamodb_calls())
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}
