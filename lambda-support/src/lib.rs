//! Start-up shared by the Lambda functions: JSON logs, metrics, the HTTPS client
//! and the AWS SDK configuration.

pub mod metrics;

use std::time::Duration;

use aws_config::environment::credentials::EnvironmentVariableCredentialsProvider;
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata;
use aws_smithy_runtime_api::client::http::{HttpClient, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use base64::Engine;
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
/// Mozilla root certificates built into the binary (`webpki-root-certs`).
///
/// The SDK's default client loads the system's certificates at start-up
/// instead, reading every file of the certificate directories; that was most
/// of this function's cold start (see BENCHMARKS.md).
pub fn http_client() -> SharedHttpClient {
    let mut trust_store = TrustStore::empty().with_native_roots(false);
    let base64 = base64::engine::general_purpose::STANDARD;
    let mut pem = String::with_capacity(webpki_root_certs::TLS_SERVER_ROOT_CERTS.len() * 2048);
    for cert in webpki_root_certs::TLS_SERVER_ROOT_CERTS {
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        pem.push_str(&base64.encode(cert.as_ref()));
        pem.push_str("\n-----END CERTIFICATE-----\n");
    }
    trust_store.add_pem_certificate(pem);
    let context = TlsContext::builder().with_trust_store(trust_store);
    let https = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::rustls(CryptoMode::Ring))
        .tls_context(
            context
                .build()
                .expect("building a TLS context only stores its settings"),
        )
        .build_https();
    SharedHttpClient::new(ConnectorOnFirstUse(https))
}

/// An HTTP client whose connector is built when a request first needs it.
///
/// smithy's client builds a connector when each SDK client is created, only to
/// load certificates early, and throws it away; the first request then builds
/// the connector it keeps. Each build parses every root certificate again
/// (callgrind: a third of `api`'s init instructions per build, BENCHMARKS.md).
/// This wrapper skips the discarded build; everything else is delegated.
#[derive(Debug)]
struct ConnectorOnFirstUse(SharedHttpClient);

impl HttpClient for ConnectorOnFirstUse {
    fn http_connector(&self, settings: &HttpConnectorSettings, components: &RuntimeComponents) -> SharedHttpConnector {
        self.0.http_connector(settings, components)
    }

    fn connector_metadata(&self) -> Option<ConnectorMetadata> {
        self.0.connector_metadata()
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
