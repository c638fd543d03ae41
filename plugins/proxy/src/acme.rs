//! An ACME client (RFC 8555) for one certificate at a time, HTTP-01 only.
//!
//! The account key is a P-256 key the vault keeps at a derivation path
//! (config `acme_account_path`): every request is a JWS the vault signs,
//! so the account survives anything but the seed, and a node restored from
//! its seed finds the same account (`newAccount` answers with its URL).
//! Nonces are reused from each answer; a `badNonce` refusal is retried
//! with the fresh one, as §6.5 asks. Waiting (for validation, for
//! issuance) polls with the server's `Retry-After`, within the call's
//! deadline.

use std::time::Duration;

use hearth_sdk::prelude::*;
use serde_json::{Value, json};

use crate::jws::{self, Jwk, KeyId, Unsigned};

/// Content type of every POST.
const JOSE: &str = "application/jose+json";
/// Attempts for one request when the server refuses the nonce.
const NONCE_ATTEMPTS: usize = 5;

/// A session with one ACME server for one account.
pub struct Client {
    directory_url: String,
    directory: Value,
    account_path: String,
    jwk: Jwk,
    kid: Option<String>,
    nonce: Option<String>,
}

/// HTTP-01 answers as `(token, key authorization)` pairs.
pub type Answers = [(String, String)];

/// Makes nginx serve the answers; returns once it does.
pub type Publish<'a> = dyn FnMut(&Answers) -> Result<(), CallError> + 'a;

/// What a finished order gave.
pub struct Issued {
    /// The certificate chain, PEM, leaf first.
    pub chain_pem: String,
}

fn problem(context: &str, response: &http::Response) -> CallError {
    let body: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    let kind = body["type"].as_str().unwrap_or("");
    let detail = body["detail"].as_str().unwrap_or("");
    let short = kind.rsplit(':').next().unwrap_or(kind);
    let code = match short {
        "rateLimited" => ErrorCode::ResourceExhausted,
        "rejectedIdentifier" | "malformed" | "invalidContact" | "unsupportedIdentifier" => {
            ErrorCode::InvalidInput
        }
        "unauthorized" | "caa" => ErrorCode::Denied,
        _ if response.status >= 500 => ErrorCode::Unavailable,
        _ => ErrorCode::Failed,
    };
    CallError::new(
        code,
        format!("ACME {context}: {} {short}: {detail}", response.status),
    )
}

impl Client {
    /// Reads the directory at `directory_url`; the account key is the
    /// vault's P-256 key at `account_path`.
    pub fn new(directory_url: &str, account_path: &str) -> Result<Client, CallError> {
        let response = http::get(directory_url).send()?;
        if response.status != 200 {
            return Err(problem("directory", &response));
        }
        let directory: Value = response.json()?;
        for key in ["newNonce", "newAccount", "newOrder"] {
            if !directory[key].is_string() {
                return Err(CallError::failed(format!(
                    "{directory_url} is not an ACME directory (no `{key}`)"
                )));
            }
        }
        let public = vault::public_key(vault::Curve::P256, account_path)?;
        let jwk = Jwk::from_sec1(&public).map_err(CallError::failed)?;
        Ok(Client {
            directory_url: directory_url.to_owned(),
            directory,
            account_path: account_path.to_owned(),
            jwk,
            kid: None,
            nonce: None,
        })
    }

    /// The account key's thumbprint (key authorizations end with it).
    pub fn thumbprint(&self) -> String {
        self.jwk.thumbprint()
    }

    /// The directory's URL.
    pub fn directory_url(&self) -> &str {
        &self.directory_url
    }

    fn url(&self, key: &str) -> String {
        self.directory[key].as_str().unwrap_or_default().to_owned()
    }

    fn fresh_nonce(&mut self) -> Result<String, CallError> {
        if let Some(nonce) = self.nonce.take() {
            return Ok(nonce);
        }
        let response = http::Request::with_method("HEAD", self.url("newNonce")).send()?;
        response
            .header("replay-nonce")
            .map(str::to_owned)
            .ok_or_else(|| CallError::failed("ACME newNonce answered without a Replay-Nonce"))
    }

    /// POSTs a JWS of `payload` (`None`: POST-as-GET) to `url`.
    fn post(
        &mut self,
        context: &str,
        url: &str,
        payload: Option<&Value>,
        accept: Option<&str>,
    ) -> Result<http::Response, CallError> {
        for _ in 0..NONCE_ATTEMPTS {
            let nonce = self.fresh_nonce()?;
            let key = match &self.kid {
                Some(kid) => KeyId::Kid(kid),
                None => KeyId::Jwk(&self.jwk),
            };
            let unsigned = Unsigned::new(key, &nonce, url, payload);
            let signature = vault::sign_p256(&self.account_path, &unsigned.digest())?;
            let body = unsigned.signed(&signature).to_string();
            let mut request = http::post(url).header("content-type", JOSE).body(body);
            if let Some(accept) = accept {
                request = request.header("accept", accept);
            }
            let response = request.send()?;
            self.nonce = response.header("replay-nonce").map(str::to_owned);
            if response.status < 400 {
                return Ok(response);
            }
            let body: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
            if body["type"] != "urn:ietf:params:acme:error:badNonce" {
                return Err(problem(context, &response));
            }
        }
        Err(CallError::new(
            ErrorCode::Unavailable,
            format!("ACME {context}: the server refused {NONCE_ATTEMPTS} nonces in a row"),
        ))
    }

    /// Finds or creates the account (`contact` as `mailto:` when given).
    pub fn account(&mut self, email: Option<&str>) -> Result<String, CallError> {
        let mut payload = json!({"termsOfServiceAgreed": true});
        if let Some(email) = email {
            payload["contact"] = json!([format!("mailto:{email}")]);
        }
        let url = self.url("newAccount");
        let response = self.post("newAccount", &url, Some(&payload), None)?;
        let kid = response
            .header("location")
            .map(str::to_owned)
            .ok_or_else(|| CallError::failed("ACME newAccount answered without a Location"))?;
        self.kid = Some(kid.clone());
        Ok(kid)
    }

    /// Orders a certificate for `domain`, answering its HTTP-01 challenges
    /// through `publish` (given `(token, key authorization)` pairs, it
    /// makes nginx serve them and returns once it does), and finalizes with
    /// `csr_der`.
    pub fn order(
        &mut self,
        cx: &Context,
        domain: &str,
        csr_der: &[u8],
        publish: &mut Publish<'_>,
    ) -> Result<Issued, CallError> {
        let url = self.url("newOrder");
        let payload = json!({"identifiers": [{"type": "dns", "value": domain}]});
        let response = self.post("newOrder", &url, Some(&payload), None)?;
        let order_url = response
            .header("location")
            .map(str::to_owned)
            .ok_or_else(|| CallError::failed("ACME newOrder answered without a Location"))?;
        let order: Value = response.json()?;
        let thumbprint = self.thumbprint();
        let mut pending = Vec::new();
        for authz_url in order["authorizations"].as_array().into_iter().flatten() {
            let authz_url = authz_url.as_str().unwrap_or_default().to_owned();
            let authz: Value = self.post("authorization", &authz_url, None, None)?.json()?;
            match authz["status"].as_str() {
                Some("valid") => continue,
                Some("pending") => {}
                other => {
                    return Err(CallError::failed(format!(
                        "ACME authorization for {domain} is {}",
                        other.unwrap_or("without a status")
                    )));
                }
            }
            let challenge = authz["challenges"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["type"] == "http-01")
                .ok_or_else(|| {
                    CallError::failed(format!(
                        "ACME offers no http-01 challenge for {domain}; only HTTP-01 is supported"
                    ))
                })?;
            let token = challenge["token"].as_str().unwrap_or_default().to_owned();
            if token.len() > 128 || !crate::nginx::is_b64url(&token) {
                return Err(CallError::failed(
                    "ACME sent a challenge token that is not base64url",
                ));
            }
            let challenge_url = challenge["url"].as_str().unwrap_or_default().to_owned();
            pending.push((authz_url, challenge_url, token));
        }
        let answers: Vec<(String, String)> = pending
            .iter()
            .map(|(_, _, token)| (token.clone(), format!("{token}.{thumbprint}")))
            .collect();
        if !answers.is_empty() {
            publish(&answers)?;
        }
        for (authz_url, challenge_url, _) in &pending {
            self.post("challenge", challenge_url, Some(&json!({})), None)?;
            // Anything but pending or processing is final (RFC 8555 §7.1.6).
            let authz = self.poll(
                cx,
                "authorization",
                authz_url,
                &["valid", "invalid", "deactivated", "expired", "revoked"],
            )?;
            if authz["status"] != "valid" {
                let detail = authz["challenges"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find_map(|c| c["error"]["detail"].as_str())
                    .unwrap_or("no detail");
                return Err(CallError::failed(format!(
                    "ACME could not validate {domain} over HTTP-01: {detail}"
                )));
            }
        }
        let order = self.poll(cx, "order", &order_url, &["ready", "valid", "invalid"])?;
        if order["status"] == "invalid" {
            return Err(CallError::failed(format!(
                "ACME order for {domain} is invalid"
            )));
        }
        let order = if order["status"] == "ready" {
            let finalize = order["finalize"].as_str().unwrap_or_default().to_owned();
            let payload = json!({"csr": jws::b64url(csr_der)});
            self.post("finalize", &finalize, Some(&payload), None)?;
            self.poll(cx, "order", &order_url, &["valid", "invalid"])?
        } else {
            order
        };
        let Some(certificate) = order["certificate"].as_str().map(str::to_owned) else {
            return Err(CallError::failed(format!(
                "ACME order for {domain} ended `{}` without a certificate",
                order["status"].as_str().unwrap_or("?")
            )));
        };
        let chain = self.post(
            "certificate",
            &certificate,
            None,
            Some("application/pem-certificate-chain"),
        )?;
        Ok(Issued {
            chain_pem: chain.text(),
        })
    }

    /// POST-as-GET `url` until its status is one of `done`, waiting as the
    /// server asks (Retry-After, 1 to 5 s; 250 ms when it does not say).
    fn poll(
        &mut self,
        cx: &Context,
        context: &str,
        url: &str,
        done: &[&str],
    ) -> Result<Value, CallError> {
        loop {
            let response = self.post(context, url, None, None)?;
            let wait = response
                .header("retry-after")
                .and_then(|s| s.trim().parse::<u64>().ok())
                .map_or(Duration::from_millis(250), |s| {
                    Duration::from_secs(s.clamp(1, 5))
                });
            let value: Value = response.json()?;
            let status = value["status"].as_str().unwrap_or_default();
            if done.contains(&status) {
                return Ok(value);
            }
            if cx.time_left() < wait + Duration::from_millis(500) {
                return Err(CallError::new(
                    ErrorCode::Timeout,
                    format!(
                        "ACME {context} still `{status}` at the call's deadline; raise operation_timeouts for this operation"
                    ),
                ));
            }
            std::thread::sleep(wait);
        }
    }
}
