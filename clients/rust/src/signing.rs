//! SigV4: which service a URL is signed for, and the signing itself (`aws-sigv4`).

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings};
use aws_smithy_runtime_api::client::identity::Identity;
use url::Url;

use crate::Error;

/// How requests to a base URL are authorized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signing {
    /// Not signed: a local service (`http://`).
    Unsigned,
    /// Signed with SigV4 for `service` in `region`.
    SigV4 {
        /// `execute-api` (API Gateway) or `lambda` (a function URL).
        service: String,
        /// The region the front door is in.
        region: String,
    },
}

impl Signing {
    /// What `url` needs:
    /// - `http://` (a local service): nothing;
    /// - `https://<id>.lambda-url.<region>.on.aws`: `lambda` in that region;
    /// - `https://<id>.execute-api.<region>.amazonaws.com`: `execute-api` in that region;
    /// - any other `https://` host (a custom domain in front of API Gateway): `execute-api`
    ///   in `region`, which is then required.
    ///
    /// ```
    /// use session_service_client::Signing;
    /// let sigv4 = |service: &str, region: &str| Signing::SigV4 { service: service.into(), region: region.into() };
    /// let url = |s: &str| url::Url::parse(s).unwrap();
    /// assert_eq!(Signing::for_url(&url("http://127.0.0.1:9000/lambda-url/api"), None)?, Signing::Unsigned);
    /// assert_eq!(
    ///     Signing::for_url(&url("https://abc123.lambda-url.eu-west-1.on.aws"), None)?,
    ///     sigv4("lambda", "eu-west-1"),
    /// );
    /// assert_eq!(
    ///     Signing::for_url(&url("https://a1b2c3.execute-api.us-east-2.amazonaws.com"), Some("eu-west-1"))?,
    ///     sigv4("execute-api", "us-east-2"),
    /// );
    /// assert_eq!(
    ///     Signing::for_url(&url("https://sessions.example.com"), Some("eu-west-1"))?,
    ///     sigv4("execute-api", "eu-west-1"),
    /// );
    /// assert!(Signing::for_url(&url("https://sessions.example.com"), None).is_err());
    /// # Ok::<(), session_service_client::Error>(())
    /// ```
    pub fn for_url(url: &Url, region: Option<&str>) -> Result<Self, Error> {
        match url.scheme() {
            "http" => return Ok(Self::Unsigned),
            "https" => {}
            other => {
                return Err(Error::Config(format!(
                    "the URL's scheme must be http or https, not {other}"
                )));
            }
        }
        let host = url
            .host_str()
            .ok_or_else(|| Error::Config("the URL has no host".to_owned()))?
            .to_ascii_lowercase();
        let labels: Vec<&str> = host.split('.').collect();
        let sigv4 = |service: &str, region: &str| Self::SigV4 {
            service: service.to_owned(),
            region: region.to_owned(),
        };
        match labels.as_slice() {
            [_, "lambda-url", region, "on", "aws"] => Ok(sigv4("lambda", region)),
            [_, "execute-api", region, "amazonaws", "com"] | [_, "execute-api", region, "amazonaws", "com", "cn"] => {
                Ok(sigv4("execute-api", region))
            }
            _ => match region {
                Some(region) => Ok(sigv4("execute-api", region)),
                None => Err(Error::Config(format!(
                    "{host} is not an API Gateway or function URL host: give the region to sign for"
                ))),
            },
        }
    }
}

/// Signs `request` (SigV4, the `Authorization` header form) for `service` in `region` at
/// `time`, over its headers as they are (include `host`) and the exact body bytes. The
/// client signs every attempt with this; the tests hold it to AWS's signing test suite.
///
/// ```
/// use aws_credential_types::Credentials;
/// let mut request = http::Request::new(Vec::new());
/// *request.uri_mut() = "https://abc.execute-api.eu-west-1.amazonaws.com/health".parse().unwrap();
/// request.headers_mut().insert("host", "abc.execute-api.eu-west-1.amazonaws.com".parse().unwrap());
/// let credentials = Credentials::new("AKID", "secret", None, None, "example");
/// session_service_client::signing::sign(&mut request, &credentials, "execute-api", "eu-west-1", std::time::SystemTime::now())?;
/// assert!(request.headers()["authorization"].to_str().unwrap().starts_with("AWS4-HMAC-SHA256 Credential=AKID/"));
/// # Ok::<(), session_service_client::Error>(())
/// ```
pub fn sign(
    request: &mut http::Request<Vec<u8>>,
    credentials: &Credentials,
    service: &str,
    region: &str,
    time: SystemTime,
) -> Result<(), Error> {
    let signing_error = |e: Box<dyn std::error::Error + Send + Sync>| Error::Signing(e);
    let identity = Identity::from(credentials.clone());
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| signing_error(e.into()))?
        .into();
    let headers = request
        .headers()
        .iter()
        .map(|(name, value)| value.to_str().map(|value| (name.as_str(), value)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| signing_error(e.into()))?;
    let signable = SignableRequest::new(
        request.method().as_str(),
        request.uri().to_string(),
        headers.into_iter(),
        SignableBody::Bytes(request.body()),
    )
    .map_err(|e| signing_error(e.into()))?;
    let (instructions, _signature) = aws_sigv4::http_request::sign(signable, &params)
        .map_err(|e| signing_error(e.into()))?
        .into_parts();
    instructions.apply_to_request_http1x(request);
    Ok(())
}
