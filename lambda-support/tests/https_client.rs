//! The HTTPS client every DynamoDB client uses (`lambda_support::http_client`):
//! it trusts webpki-roots' anchors and nothing else, really verifies the
//! server's certificate, offers HTTP/1.1 by ALPN with the host's name, and
//! speaks plain HTTP to a local endpoint, reusing its connection; a TLS
//! handshake that never ends is cut off by the connect timeout.

use std::error::Error;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::AttributeValue;
use rustls::pki_types::PrivateKeyDer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A DynamoDB client at `endpoint` through the functions' HTTP client, one attempt per call.
fn client(endpoint: &str) -> aws_sdk_dynamodb::Client {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .endpoint_url(endpoint)
        .http_client(lambda_support::http_client())
        .timeout_config(lambda_support::timeouts())
        .retry_config(RetryConfig::disabled())
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

async fn get_item(client: &aws_sdk_dynamodb::Client) -> Result<(), Box<dyn Error>> {
    client
        .get_item()
        .table_name("sessions")
        .key("id", AttributeValue::S("some-id".into()))
        .send()
        .await?;
    Ok(())
}

/// `error` and every error behind it; after an `io::Error`, its payload
/// (`io::Error::source` skips it, and hyper-rustls wraps rustls' errors so).
fn chain<'a>(error: &'a (dyn Error + 'static)) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    std::iter::successors(Some(error), |&error| match error.downcast_ref::<std::io::Error>() {
        Some(io) => io.get_ref().map(|payload| payload as &(dyn Error + 'static)),
        None => error.source(),
    })
}

#[test]
fn trusts_exactly_the_webpki_roots() {
    let roots = lambda_support::root_store();
    assert_eq!(roots.len(), webpki_roots::TLS_SERVER_ROOTS.len());
    assert!(roots.len() > 100, "Mozilla's program has well over 100 roots");
    assert_eq!(lambda_support::tls_config().alpn_protocols, [b"http/1.1".to_vec()]);
}

/// What the server saw of the client's hello, and how its handshake ended.
#[derive(Debug)]
struct Hello {
    server_name: Option<String>,
    alpn: Vec<Vec<u8>>,
    handshake: Result<(), String>,
}

#[tokio::test]
async fn refuses_a_certificate_no_built_in_root_vouches_for() {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let key = PrivateKeyDer::Pkcs8(certified.key_pair.serialize_der().into());
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hello = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let acceptor = rustls::server::Acceptor::default();
        let start = tokio_rustls::LazyConfigAcceptor::new(acceptor, stream).await.unwrap();
        let client_hello = start.client_hello();
        let server_name = client_hello.server_name().map(str::to_owned);
        let alpn = client_hello
            .alpn()
            .map(|protocols| protocols.map(<[u8]>::to_vec).collect())
            .unwrap_or_default();
        let handshake = start
            .into_stream(Arc::new(server))
            .await
            .map(drop)
            .map_err(|e| e.to_string());
        Hello {
            server_name,
            alpn,
            handshake,
        }
    });

    // "localhost" may resolve to ::1 first; the connector then tries 127.0.0.1.
    let error = get_item(&client(&format!("https://localhost:{port}")))
        .await
        .expect_err("a self-signed certificate is not trusted");
    let rustls_error = chain(error.as_ref())
        .find_map(|error| error.downcast_ref::<rustls::Error>())
        .unwrap_or_else(|| panic!("no TLS error in {error:?}"));
    assert_eq!(
        rustls_error,
        &rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
    );

    let hello = hello.await.unwrap();
    assert_eq!(hello.alpn, [b"http/1.1".to_vec()]);
    assert_eq!(hello.server_name.as_deref(), Some("localhost"));
    assert!(hello.handshake.is_err(), "the client aborts the handshake: {hello:?}");
}

/// Serves every DynamoDB request on `stream` with an empty JSON object (GetItem
/// of no item), until the client closes it.
async fn serve(mut stream: TcpStream) {
    let mut buffer = Vec::new();
    let mut chunk = [0; 4096];
    loop {
        let request_end = loop {
            if let Some(head) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                let head_text = String::from_utf8_lossy(&buffer[..head]).to_ascii_lowercase();
                let length: usize = head_text
                    .lines()
                    .find_map(|line| line.strip_prefix("content-length:"))
                    .map_or(0, |value| value.trim().parse().unwrap());
                if buffer.len() >= head + 4 + length {
                    break head + 4 + length;
                }
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        };
        assert!(
            buffer.starts_with(b"POST / HTTP/1.1\r\n"),
            "{}",
            String::from_utf8_lossy(&buffer)
        );
        buffer.drain(..request_end);
        let response = "HTTP/1.1 200 OK\r\ncontent-type: application/x-amz-json-1.0\r\ncontent-length: 2\r\n\r\n{}";
        stream.write_all(response.as_bytes()).await.unwrap();
    }
}

#[tokio::test]
async fn speaks_plain_http_and_reuses_the_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let accepted = Arc::clone(&connections);
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            accepted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(stream));
        }
    });

    let client = client(&format!("http://127.0.0.1:{port}"));
    for _ in 0..3 {
        get_item(&client).await.unwrap();
    }
    assert_eq!(
        connections.load(Ordering::SeqCst),
        1,
        "one connection, kept in the pool"
    );
}

#[tokio::test]
async fn a_handshake_that_never_ends_is_a_connect_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accepts the connection and never answers the client's hello.
    tokio::spawn(async move {
        let (_stream, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
    let error = client(&format!("https://127.0.0.1:{port}"))
        .get_item()
        .table_name("sessions")
        .key("id", AttributeValue::S("some-id".into()))
        .send()
        .await
        .expect_err("the server never completes the handshake");
    match &error {
        SdkError::DispatchFailure(failure) => assert!(failure.is_timeout(), "{error:?}"),
        other => panic!("expected a connect timeout (1 s, lambda_support::timeouts), got {other:?}"),
    }
}
