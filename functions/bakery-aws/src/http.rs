//! The HTTP client every function's SDK clients send through: hyper over rustls (aws-lc), the
//! same stack as the SDK's default client, but with Mozilla's root certificates compiled in
//! (webpki-roots) instead of the platform's store. The default client reads and parses every
//! root of the platform's bundle when the first SDK client is built: most of a function's cold
//! start (BENCHMARKS.md). Here nothing is read or parsed, and the TLS configuration is built
//! when the first request needs it.
//!
//! Both schemes: `https` to AWS, plain `http` to an `AWS_ENDPOINT_URL` such as the local AWS.
//! What the SDK's client did stays: its connect timeout (TCP and TLS handshake) and read timeout
//! (until the response's headers), one connection pool per timeout setting, TCP_NODELAY,
//! connection poisoning after a transient error, and errors classified the same way, so that
//! the SDK's retry layer (above this client) retries what it retried before. HTTP/1.1 only:
//! none of the APIs the functions call needs HTTP/2.

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::connection::{CaptureSmithyConnection, ConnectionMetadata};
use aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::retry::ErrorKind;
use hyper::Uri;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder, MaybeHttpsStream};
use hyper_util::client::legacy::connect::{
    capture_connection, CaptureConnection, HttpConnector as TcpConnector, HttpInfo,
};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::collections::HashMap;
use std::error::Error;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;
use tower_service::Service;

/// The HTTP client for an `SdkConfig` (`bakery_aws::sdk_config` sets it).
pub fn client() -> SharedHttpClient {
    SharedHttpClient::new(Https::default())
}

/// Built on first use and shared by every connector: the roots are Mozilla's, as compiled into
/// webpki-roots (already in the form rustls verifies with: nothing to parse).
static TLS: LazyLock<rustls::ClientConfig> = LazyLock::new(|| {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    // No ALPN offered (hyper-rustls sets it from the enabled HTTP versions): HTTP/1.1.
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("rustls's own provider supports its default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
});

/// A connector's connect and read timeouts.
type Timeouts = (Option<Duration>, Option<Duration>);

/// One connector (and so one connection pool) per timeout setting, as the SDK's client keeps.
#[derive(Debug, Default)]
struct Https {
    connectors: Mutex<HashMap<Timeouts, SharedHttpConnector>>,
}

impl HttpClient for Https {
    fn http_connector(&self, settings: &HttpConnectorSettings, _: &RuntimeComponents) -> SharedHttpConnector {
        let key: Timeouts = (settings.connect_timeout(), settings.read_timeout());
        let mut connectors = self.connectors.lock().unwrap_or_else(PoisonError::into_inner);
        connectors
            .entry(key)
            .or_insert_with(|| SharedHttpConnector::new(Connector::new(key.0, key.1)))
            .clone()
    }

    fn connector_metadata(&self) -> Option<ConnectorMetadata> {
        Some(ConnectorMetadata::new("hyper", Some("1.x".into())))
    }
}

struct Connector {
    client: Client<Connect, SdkBody>,
    read_timeout: Option<Duration>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("read_timeout", &self.read_timeout)
            .finish_non_exhaustive()
    }
}

impl Connector {
    fn new(connect_timeout: Option<Duration>, read_timeout: Option<Duration>) -> Self {
        let mut tcp = TcpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        let https = HttpsConnectorBuilder::new()
            .with_tls_config(TLS.clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        // The pool's idle timeout needs a timer (hyper's default: 90 s idle).
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .build(Connect {
                https,
                timeout: connect_timeout,
            });
        Self { client, read_timeout }
    }
}

impl HttpConnector for Connector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let mut request = match request.try_into_http1x() {
            Ok(request) => request,
            Err(e) => return HttpConnectorFuture::ready(Err(ConnectorError::user(e.into()))),
        };
        // The SDK poisons the connection after a transient error, so that a retry opens a new one.
        let captured = capture_connection(&mut request);
        if let Some(smithy) = request.extensions().get::<CaptureSmithyConnection>() {
            smithy.set_connection_retriever(move || connection_metadata(&captured));
        }
        let responding = self.client.request(request);
        let read_timeout = self.read_timeout;
        HttpConnectorFuture::new(async move {
            let response = match read_timeout {
                Some(after) => tokio::time::timeout(after, responding)
                    .await
                    .map_err(|_| ConnectorError::timeout(TimedOut { what: "read", after }.into()))?,
                None => responding.await,
            }
            .map_err(classify)?;
            HttpResponse::try_from(response.map(SdkBody::from_body_1_x))
                .map_err(|e| ConnectorError::other(e.into(), None))
        })
    }
}

fn connection_metadata(captured: &CaptureConnection) -> Option<ConnectionMetadata> {
    let connected = captured.connection_metadata();
    let connected = connected.as_ref()?;
    let mut extras = hyper::http::Extensions::new();
    connected.get_extras(&mut extras);
    let info = extras.get::<HttpInfo>();
    let poison = captured.clone();
    let mut metadata = ConnectionMetadata::builder();
    metadata
        .set_remote_addr(info.map(HttpInfo::remote_addr))
        .set_local_addr(info.map(HttpInfo::local_addr));
    Some(
        metadata
            .proxied(false)
            .poison_fn(move || {
                if let Some(connected) = poison.connection_metadata().as_ref() {
                    connected.poison();
                }
            })
            .build(),
    )
}

/// The https-or-http connector, with the SDK's connect timeout around the TCP connect and the
/// TLS handshake together.
#[derive(Clone)]
struct Connect {
    https: HttpsConnector<TcpConnector>,
    timeout: Option<Duration>,
}

impl Service<Uri> for Connect {
    type Response = MaybeHttpsStream<TokioIo<TcpStream>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.https.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.https.call(uri);
        let timeout = self.timeout;
        Box::pin(async move {
            match timeout {
                Some(after) => tokio::time::timeout(after, connecting)
                    .await
                    .map_err(|_| TimedOut { what: "connect", after })?,
                None => connecting.await,
            }
        })
    }
}

#[derive(Debug)]
struct TimedOut {
    what: &'static str,
    after: Duration,
}

impl std::fmt::Display for TimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {} timeout after {:?}", self.what, self.after)
    }
}

impl Error for TimedOut {}

/// As the SDK's client classifies hyper's errors: timeouts, I/O and connect failures are
/// transient (retried); a refused TLS handshake and anything unknown are not.
fn classify(error: hyper_util::client::legacy::Error) -> ConnectorError {
    let connect = error.is_connect();
    let error: BoxError = error.into();
    if find::<TimedOut>(error.as_ref()) {
        return ConnectorError::timeout(error);
    }
    if find::<rustls::Error>(error.as_ref()) {
        return ConnectorError::other(error, None);
    }
    let hyper = chain(error.as_ref()).find_map(|e| e.downcast_ref::<hyper::Error>());
    if let Some(h) = hyper {
        if h.is_timeout() {
            return ConnectorError::timeout(error);
        }
        if h.is_user() {
            return ConnectorError::user(error);
        }
        if h.is_incomplete_message() {
            return ConnectorError::other(error, Some(ErrorKind::TransientError));
        }
        if h.is_closed() || h.is_canceled() || find::<std::io::Error>(h) {
            return ConnectorError::io(error);
        }
        return ConnectorError::other(error, None);
    }
    if connect || find::<std::io::Error>(error.as_ref()) {
        return ConnectorError::io(error);
    }
    ConnectorError::other(error, None)
}

/// `error` and every error below it; an `io::Error`'s payload counts as its cause (hyper-rustls
/// wraps rustls's errors in `io::Error`s, whose `source()` skips the payload).
fn chain<'a>(error: &'a (dyn Error + 'static)) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    std::iter::successors(Some(error), |&e| match e.downcast_ref::<std::io::Error>() {
        Some(io) => io.get_ref().map(|inner| inner as &(dyn Error + 'static)),
        None => e.source(),
    })
}

fn find<E: Error + 'static>(error: &(dyn Error + 'static)) -> bool {
    chain(error).any(|e| e.is::<E>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ssm::config::retry::RetryConfig;
    use aws_sdk_ssm::config::timeout::TimeoutConfig;
    use aws_sdk_ssm::config::{Credentials, Region};
    use aws_smithy_runtime_api::client::result::SdkError;
    use http_body_util::Full;
    use hyper::body::Bytes;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A local plain-http endpoint that answers every request `{}` (or never, when `answer` is
    /// false), counting the connections it accepts.
    async fn endpoint(answer: bool) -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let counted = accepted.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                let service = hyper::service::service_fn(move |_| async move {
                    if !answer {
                        std::future::pending::<()>().await;
                    }
                    hyper::Response::builder()
                        .header("content-type", "application/x-amz-json-1.1")
                        .body(Full::new(Bytes::from_static(b"{}")))
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        (url, accepted)
    }

    fn ssm(url: &str, timeouts: TimeoutConfig) -> aws_sdk_ssm::Client {
        let config = aws_sdk_ssm::Config::builder()
            .behavior_version(aws_sdk_ssm::config::BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(url)
            .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
            .http_client(client())
            .timeout_config(timeouts)
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(3)
                    .with_initial_backoff(Duration::from_millis(10)),
            )
            .build();
        aws_sdk_ssm::Client::from_conf(config)
    }

    fn dispatch_failure<E, R>(err: &SdkError<E, R>) -> Option<&ConnectorError> {
        match err {
            SdkError::DispatchFailure(failure) => failure.as_connector_error(),
            _ => None,
        }
    }

    #[tokio::test]
    async fn plain_http_with_one_pooled_connection() {
        let (url, accepted) = endpoint(true).await;
        let ssm = ssm(&url, TimeoutConfig::builder().build());
        for _ in 0..3 {
            ssm.describe_parameters().send().await.unwrap();
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_read_timeout_is_retried_on_a_new_connection() {
        let (url, accepted) = endpoint(false).await;
        let ssm = ssm(
            &url,
            TimeoutConfig::builder()
                .read_timeout(Duration::from_millis(100))
                .build(),
        );
        let err = ssm.describe_parameters().send().await.unwrap_err();
        let connector = dispatch_failure(&err);
        assert!(connector.is_some_and(ConnectorError::is_timeout), "{err:?}");
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_refused_connection_is_an_io_error() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", closed.local_addr().unwrap());
        drop(closed);
        let ssm = ssm(&url, TimeoutConfig::builder().build());
        let err = ssm.describe_parameters().send().await.unwrap_err();
        let connector = dispatch_failure(&err);
        assert!(connector.is_some_and(ConnectorError::is_io), "{err:?}");
    }

    #[test]
    fn the_roots_are_built_in() {
        assert!(webpki_roots::TLS_SERVER_ROOTS.len() > 100);
        assert!(
            TLS.alpn_protocols.is_empty(),
            "hyper-rustls refuses a configuration with ALPN set"
        );
    }

    #[test]
    fn a_refused_certificate_is_found_inside_io_errors() {
        let refused = std::io::Error::other(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        ));
        assert!(find::<rustls::Error>(&refused));
        assert!(!find::<TimedOut>(&refused));
    }
}
