//! Outbound HTTP: a small blocking client over `wasi:http`.
//!
//! Works only for origins the operator granted in `stack.toml`
//! (`grants.http = ["https://api.example.com"]`); anything else fails with
//! [`ErrorCode::Denied`] naming the grant to add. Every request ends by the
//! call's deadline at the latest.
//!
//! ```no_run
//! # use hearth_sdk::prelude::*;
//! # fn f() -> Result<(), CallError> {
//! #[derive(Deserialize)]
//! struct Forecast { temperature: f64 }
//!
//! let forecast: Forecast = hearth_sdk::http::get("https://api.example.com/forecast?city=Oslo")
//!     .header("accept", "application/json")
//!     .send()?
//!     .error_for_status()?
//!     .json()?;
//! # Ok(()) }
//! ```

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode as HttpErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest,
    RequestOptions, Scheme,
};
use wasip2::io::streams::StreamError;

use crate::{CallError, ErrorCode};

/// Responses larger than this fail unless [`Request::max_response_bytes`]
/// says otherwise.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 16 << 20;

/// A request being built; [`Request::send`] sends it.
#[must_use = "a request does nothing until sent"]
pub struct Request {
    method: Method,
    url: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    timeout: Option<Duration>,
    max_response_bytes: usize,
}

/// `GET url`.
pub fn get(url: impl Into<String>) -> Request {
    Request::new(Method::Get, url)
}

/// `POST url`.
pub fn post(url: impl Into<String>) -> Request {
    Request::new(Method::Post, url)
}

/// `PUT url`.
pub fn put(url: impl Into<String>) -> Request {
    Request::new(Method::Put, url)
}

/// `DELETE url`.
pub fn delete(url: impl Into<String>) -> Request {
    Request::new(Method::Delete, url)
}

impl Request {
    /// A request with any method (`"PATCH"`, `"HEAD"`, …).
    pub fn with_method(method: &str, url: impl Into<String>) -> Request {
        let method = match method.to_ascii_uppercase().as_str() {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "CONNECT" => Method::Connect,
            "OPTIONS" => Method::Options,
            "TRACE" => Method::Trace,
            "PATCH" => Method::Patch,
            other => Method::Other(other.to_owned()),
        };
        Request::new(method, url)
    }

    fn new(method: Method, url: impl Into<String>) -> Request {
        Request {
            method,
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout: None,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers
            .push((name.to_ascii_lowercase(), value.as_bytes().to_vec()));
        self
    }

    /// `Authorization: Bearer <token>`.
    pub fn bearer(self, token: &str) -> Request {
        self.header("authorization", &format!("Bearer {token}"))
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = body.into();
        self
    }

    /// Sets a JSON body and `Content-Type: application/json`.
    pub fn json<T: Serialize>(self, value: &T) -> Result<Request, CallError> {
        let body = serde_json::to_vec(value)
            .map_err(|e| CallError::failed(format!("cannot encode the request body: {e}")))?;
        Ok(self.header("content-type", "application/json").body(body))
    }

    /// Gives up after `timeout` (never later than the call's deadline).
    pub fn timeout(mut self, timeout: Duration) -> Request {
        self.timeout = Some(timeout);
        self
    }

    /// Fails with `resource-exhausted` when the response body is longer.
    pub fn max_response_bytes(mut self, bytes: usize) -> Request {
        self.max_response_bytes = bytes;
        self
    }

    /// Sends the request and reads the whole response.
    pub fn send(self) -> Result<Response, CallError> {
        let max = self.max_response_bytes;
        let mut body = Vec::new();
        let head = self.send_streaming(|head, chunk| {
            if body.len() + chunk.len() > max {
                return Err(CallError {
                    code: ErrorCode::ResourceExhausted,
                    message: format!(
                        "the response from {} is longer than {max} bytes; raise it with `max_response_bytes`",
                        head.origin
                    ),
                });
            }
            body.extend_from_slice(chunk);
            Ok(true)
        })?;
        Ok(Response {
            status: head.status,
            headers: head.headers,
            body,
        })
    }

    /// Sends the request and hands the response body to `on_chunk` as it
    /// arrives (a stream of server-sent events, a large download), with
    /// the status and headers; `on_chunk` returns `false` to stop reading.
    /// Returns the status and headers.
    pub fn send_streaming(
        self,
        mut on_chunk: impl FnMut(&Head, &[u8]) -> Result<bool, CallError>,
    ) -> Result<Head, CallError> {
        let url = Url::parse(&self.url)?;
        let mut headers = self.headers;
        if !self.body.is_empty() && !headers.iter().any(|(k, _)| k == "content-length") {
            // A known length, so servers that do not take chunked bodies
            // read it too.
            headers.push((
                "content-length".to_owned(),
                self.body.len().to_string().into_bytes(),
            ));
        }
        let fail = |what: &str| CallError::failed(format!("{what} for {}", url.origin()));
        let fields = Fields::from_list(&headers).map_err(|e| {
            CallError::invalid_input(format!("a header of the request is not allowed: {e:?}"))
        })?;
        let request = OutgoingRequest::new(fields);
        request
            .set_method(&self.method)
            .map_err(|()| fail("invalid method"))?;
        request
            .set_scheme(Some(&url.scheme))
            .map_err(|()| fail("invalid scheme"))?;
        request
            .set_authority(Some(&url.authority))
            .map_err(|()| fail("invalid authority"))?;
        request
            .set_path_with_query(Some(&url.path_and_query))
            .map_err(|()| fail("invalid path"))?;
        let options = self.timeout.map(|t| {
            let nanos = u64::try_from(t.as_nanos()).unwrap_or(u64::MAX);
            let options = RequestOptions::new();
            // The host cuts each to the call's deadline in any case.
            let _ = options.set_connect_timeout(Some(nanos));
            let _ = options.set_first_byte_timeout(Some(nanos));
            let _ = options.set_between_bytes_timeout(Some(nanos));
            options
        });
        let body = request.body().map_err(|()| fail("no request body"))?;
        let pending =
            outgoing_handler::handle(request, options).map_err(|e| http_error(&url, &e))?;
        {
            let stream = body.write().map_err(|()| fail("no request body stream"))?;
            for chunk in self.body.chunks(4096) {
                stream
                    .blocking_write_and_flush(chunk)
                    .map_err(|e| stream_error(&url, e))?;
            }
        }
        OutgoingBody::finish(body, None).map_err(|e| http_error(&url, &e))?;
        pending.subscribe().block();
        let response = match pending.get() {
            Some(Ok(Ok(response))) => response,
            Some(Ok(Err(e))) => return Err(http_error(&url, &e)),
            Some(Err(())) | None => return Err(fail("the response was already taken")),
        };
        let status = response.status();
        let headers: Vec<(String, String)> = response
            .headers()
            .entries()
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
            .collect();
        let head = Head {
            status,
            headers,
            origin: url.origin(),
        };
        let incoming = response.consume().map_err(|()| fail("no response body"))?;
        {
            let stream = incoming
                .stream()
                .map_err(|()| fail("no response body stream"))?;
            let mut last_bytes = std::time::Instant::now();
            loop {
                match stream.blocking_read(64 * 1024) {
                    Ok(bytes) => {
                        last_bytes = std::time::Instant::now();
                        if !on_chunk(&head, &bytes)? {
                            break;
                        }
                    }
                    Err(StreamError::Closed) => break,
                    // The between-bytes timeout ends the body without
                    // always saying so: the quiet time does.
                    Err(_) if self.timeout.is_some_and(|t| last_bytes.elapsed() >= t) => {
                        return Err(CallError {
                            code: ErrorCode::Timeout,
                            message: format!(
                                "{} sent nothing more within {:?}",
                                url.origin(),
                                self.timeout.unwrap_or_default()
                            ),
                        });
                    }
                    Err(e) => return Err(stream_error(&url, e)),
                }
            }
        }
        drop(IncomingBody::finish(incoming));
        Ok(head)
    }
}

/// The status and headers of a response, before its body.
#[derive(Debug, Clone)]
pub struct Head {
    /// The status code.
    pub status: u16,
    /// Headers, names lowercase, in the order received.
    pub headers: Vec<(String, String)>,
    /// `scheme://host[:port]` the response came from.
    pub origin: String,
}

/// A response, read whole.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Headers, names lowercase, in the order received.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// The first header named `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body decoded from JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, CallError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| CallError::failed(format!("the response is not the JSON expected: {e}")))
    }

    /// `Ok(self)` for a 2xx status; otherwise the error a caller expects
    /// for that status (404/410 not-found, 401/403 denied, 400/422
    /// invalid-input, 409/412 conflict, 408/504 timeout, 429 and other 5xx
    /// unavailable, anything else failed), with the start of the body as
    /// the message.
    pub fn error_for_status(self) -> Result<Response, CallError> {
        if (200..300).contains(&self.status) {
            return Ok(self);
        }
        let code = match self.status {
            404 | 410 => ErrorCode::NotFound,
            401 | 403 => ErrorCode::Denied,
            400 | 422 => ErrorCode::InvalidInput,
            409 | 412 => ErrorCode::Conflict,
            408 | 504 => ErrorCode::Timeout,
            429 | 500..=599 => ErrorCode::Unavailable,
            _ => ErrorCode::Failed,
        };
        let text = self.text();
        let excerpt: String = text.chars().take(500).collect();
        Err(CallError {
            code,
            message: format!("HTTP {}: {}", self.status, excerpt.trim()),
        })
    }
}

/// The parts of a URL `wasi:http` takes.
struct Url {
    scheme: Scheme,
    authority: String,
    path_and_query: String,
}

impl Url {
    fn parse(url: &str) -> Result<Url, CallError> {
        let bad = |why: &str| CallError::invalid_input(format!("URL `{url}` {why}"));
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad("has no scheme; write https://host/path"))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            _ => return Err(bad("is not http or https")),
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..end];
        if authority.is_empty() || authority.contains('@') {
            return Err(bad(
                "has no host (or has user information, which is not sent)",
            ));
        }
        let tail = rest[end..].split('#').next().unwrap_or("");
        let path_and_query = if tail.starts_with('/') {
            tail.to_owned()
        } else {
            format!("/{tail}")
        };
        Ok(Url {
            scheme,
            authority: authority.to_owned(),
            path_and_query,
        })
    }

    /// `scheme://host[:port]`, as `grants.http` writes it.
    fn origin(&self) -> String {
        let scheme = match self.scheme {
            Scheme::Http => "http",
            _ => "https",
        };
        format!("{scheme}://{}", self.authority.to_ascii_lowercase())
    }
}

fn http_error(url: &Url, error: &HttpErrorCode) -> CallError {
    let origin = url.origin();
    let (code, message) = match error {
        HttpErrorCode::HttpRequestDenied => (
            ErrorCode::Denied,
            format!(
                "this plugin may not send HTTP requests to {origin}: add \"{origin}\" to `grants.http` of its [plugins.<name>] in stack.toml"
            ),
        ),
        HttpErrorCode::DestinationIpProhibited => (
            ErrorCode::Denied,
            format!(
                "{origin} resolves to a loopback, private or link-local address, which only a grant naming the host exactly allows: add \"{origin}\" to `grants.http` in stack.toml"
            ),
        ),
        HttpErrorCode::ConnectionTimeout
        | HttpErrorCode::ConnectionReadTimeout
        | HttpErrorCode::ConnectionWriteTimeout
        | HttpErrorCode::HttpResponseTimeout
        | HttpErrorCode::DnsTimeout => (
            ErrorCode::Timeout,
            format!("{origin} did not answer in time ({error:?})"),
        ),
        HttpErrorCode::DnsError(_)
        | HttpErrorCode::DestinationNotFound
        | HttpErrorCode::DestinationUnavailable
        | HttpErrorCode::DestinationIpUnroutable
        | HttpErrorCode::ConnectionRefused
        | HttpErrorCode::ConnectionTerminated
        | HttpErrorCode::ConnectionLimitReached
        | HttpErrorCode::TlsProtocolError
        | HttpErrorCode::TlsCertificateError
        | HttpErrorCode::TlsAlertReceived(_) => (
            ErrorCode::Unavailable,
            format!("cannot reach {origin} ({error:?})"),
        ),
        other => (
            ErrorCode::Failed,
            format!("HTTP request to {origin} failed ({other:?})"),
        ),
    };
    CallError { code, message }
}

fn stream_error(url: &Url, error: StreamError) -> CallError {
    match error {
        StreamError::LastOperationFailed(e) => match wasip2::http::types::http_error_code(&e) {
            None => CallError {
                code: ErrorCode::Unavailable,
                message: format!("the connection to {} failed", url.origin()),
            },
            Some(code) => http_error(url, &code),
        },
        StreamError::Closed => CallError {
            code: ErrorCode::Unavailable,
            message: format!("the connection to {} closed early", url.origin()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_what_wasi_http_takes() {
        let url = Url::parse("https://API.example.com:8443/v1/x?y=1#frag").unwrap();
        assert_eq!(url.authority, "API.example.com:8443");
        assert_eq!(url.path_and_query, "/v1/x?y=1");
        assert_eq!(url.origin(), "https://api.example.com:8443");
        assert_eq!(Url::parse("http://h").unwrap().path_and_query, "/");
        assert_eq!(Url::parse("http://h?q").unwrap().path_and_query, "/?q");
        for bad in [
            "api.example.com/x",
            "ftp://h/",
            "https:///x",
            "https://u@h/",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn statuses_map_to_typed_errors() {
        let response = |status| Response {
            status,
            headers: vec![],
            body: b"nope".to_vec(),
        };
        assert!(response(204).error_for_status().is_ok());
        let err = response(404).error_for_status().unwrap_err();
        assert_eq!(err.code, ErrorCode::NotFound);
        assert_eq!(err.message, "HTTP 404: nope");
        assert_eq!(
            response(503).error_for_status().unwrap_err().code,
            ErrorCode::Unavailable
        );
        assert_eq!(
            response(422).error_for_status().unwrap_err().code,
            ErrorCode::InvalidInput
        );
    }
}
