//! Sending one granted request to the addresses [`decide`](super::decide)
//! checked.
//!
//! Adapted from `wasmtime_wasi_http::default_send_request`, which resolves
//! the host itself; here the connection goes to an address already checked
//! against the grant (no second DNS lookup), and TLS verifies the name the
//! plugin asked for against the web PKI roots and the plugin's
//! `grants.http_roots`.

use std::collections::HashMap;
use std::future::poll_fn;
use std::path::PathBuf;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody};

use super::Target;

trait Stream: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static> Stream for T {}

/// The response and the connection's I/O, as `send_request` returns them.
pub(super) type Sent = (
    http::Response<WasiBody>,
    Box<dyn Future<Output = Result<(), Error>> + Send>,
);

/// The TLS client configuration for requests trusting the web PKI roots
/// and the CA files `roots`, made once per set of files; `None` when the
/// TLS provider refuses its safe defaults or a file cannot be read (then
/// the request fails with a TLS protocol error, logged).
fn tls_config(roots: &[PathBuf]) -> Option<Arc<rustls::ClientConfig>> {
    type Configs = HashMap<Vec<PathBuf>, Arc<rustls::ClientConfig>>;
    static CONFIGS: OnceLock<Mutex<Configs>> = OnceLock::new();
    let mut configs = CONFIGS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(config) = configs.get(roots) {
        return Some(config.clone());
    }
    let mut store = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.into(),
    };
    for file in roots {
        let certs = crate::config::read_ca_file(file)
            .inspect_err(|e| tracing::error!(file = %file.display(), error = %e, "cannot read an HTTPS root"))
            .ok()?;
        let (_, ignored) = store.add_parsable_certificates(certs);
        if ignored > 0 {
            tracing::warn!(file = %file.display(), ignored, "certificates that are not CA roots were ignored");
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()
        .map(|builder| Arc::new(builder.with_root_certificates(store).with_no_client_auth()))?;
    configs.insert(roots.to_vec(), config.clone());
    Some(config)
}

async fn connect(target: &Target, timeout: Duration) -> Result<TcpStream, Error> {
    let mut last = Error::DestinationNotFound;
    for addr in &target.addrs {
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                last = Error::ConnectionRefused
            }
            Ok(Err(e)) => last = Error::Connect(e),
            Err(_) => return Err(Error::ConnectionTimeout),
        }
    }
    Err(last)
}

/// Sends `request` to `target` within `options`' timeouts.
pub(super) async fn send(
    mut request: http::Request<WasiBody>,
    options: RequestOptions,
    target: Target,
) -> Result<Sent, Error> {
    let connect_timeout = options.connect_timeout.unwrap_or(Duration::from_secs(600));
    let first_byte_timeout = options
        .first_byte_timeout
        .unwrap_or(Duration::from_secs(600));
    let between_bytes_timeout = options
        .between_bytes_timeout
        .unwrap_or(Duration::from_secs(600))
        .max(Duration::from_nanos(1));

    let tcp = connect(&target, connect_timeout).await?;
    let stream: Box<dyn Stream> = match &target.tls_name {
        Some(name) => {
            let server_name = rustls::pki_types::ServerName::try_from(name.clone())
                .map_err(|_| Error::HttpRequestUriInvalid)?;
            let config = tls_config(&target.roots).ok_or(Error::TlsProtocolError)?;
            let connector = tokio_rustls::TlsConnector::from(config);
            let tls = tokio::time::timeout(connect_timeout, connector.connect(server_name, tcp))
                .await
                .map_err(|_| Error::ConnectionTimeout)?
                .map_err(Error::Tls)?;
            Box::new(tls)
        }
        None => Box::new(tcp),
    };
    let (mut sender, conn) = tokio::time::timeout(
        connect_timeout,
        hyper::client::conn::http1::Builder::new().handshake(TokioIo::new(stream)),
    )
    .await
    .map_err(|_| Error::ConnectionTimeout)??;

    // The request carries scheme and authority; on the wire (not to a
    // proxy) only the path and query go in the request line.
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    *request.uri_mut() = http::Uri::builder()
        .path_and_query(path)
        .build()
        .map_err(|_| Error::HttpRequestUriInvalid)?;

    let send = async move {
        let response = tokio::time::timeout(first_byte_timeout, sender.send_request(request))
            .await
            .map_err(|_| Error::ConnectionReadTimeout)?
            .map_err(request_error)?;
        let mut timeout = tokio::time::interval(between_bytes_timeout);
        timeout.reset();
        Ok::<_, Error>(
            response.map(|incoming| BodyWithTimeout { incoming, timeout }.boxed_unsync()),
        )
    };
    let mut send = pin!(send);
    let mut conn = Some(conn);
    // Drive the connection's I/O while waiting for the response head.
    let response = poll_fn(|cx| match send.as_mut().poll(cx) {
        Poll::Ready(result) => Poll::Ready(result),
        Poll::Pending => {
            let Some(fut) = conn.as_mut() else {
                return Poll::Pending;
            };
            let done = ready!(Pin::new(fut).poll(cx));
            conn = None;
            match done {
                Ok(()) => send.as_mut().poll(cx),
                Err(err) => Poll::Ready(Err(request_error(err))),
            }
        }
    })
    .await?;
    let io = async move {
        match conn {
            None => Ok(()),
            Some(conn) => conn.await.map_err(|err| {
                if err.is_timeout() {
                    Error::HttpResponseTimeout
                } else {
                    request_error(err)
                }
            }),
        }
    };
    Ok((response, Box::new(io)))
}

/// What a failed exchange means to the plugin. A connection the server
/// closed before answering in full is the server going away (it crashed,
/// it restarted): `connection-terminated`, which plugins treat as
/// unavailable, rather than wasmtime's catch-all `HTTP-protocol-error`.
fn request_error(err: hyper::Error) -> Error {
    if err.is_incomplete_message() || err.is_closed() || err.is_canceled() {
        Error::ConnectionTerminated
    } else {
        Error::from(err)
    }
}

/// A response body that fails when no frame arrives within the
/// between-bytes timeout.
struct BodyWithTimeout {
    incoming: hyper::body::Incoming,
    timeout: tokio::time::Interval,
}

impl http_body::Body for BodyWithTimeout {
    type Data = bytes::Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        match Pin::new(&mut self.incoming).poll_frame(cx) {
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Ready(Some(Err(err))) => Poll::Ready(Some(Err(if err.is_timeout() {
                Error::HttpResponseTimeout
            } else {
                Error::from(err)
            }))),
            Poll::Ready(Some(Ok(frame))) => {
                self.timeout.reset();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                ready!(self.timeout.poll_tick(cx));
                Poll::Ready(Some(Err(Error::ConnectionReadTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.incoming.size_hint()
    }
}
