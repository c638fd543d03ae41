//! The node's TLS identity on the mesh and how peers are pinned.
//!
//! Each node presents a self-signed certificate whose key is its ed25519
//! identity (`m/74'/0'/0'/0'` from the vault, or the ephemeral key). The
//! private key never leaves the vault: the certificate and every handshake
//! are signed through [`Vault::sign_as_node`], so a locked vault means no
//! handshakes rather than a key copied somewhere else.
//!
//! Nothing about the certificate matters but its key: there is no CA, no
//! name check and no expiry. The dialing side accepts only the key its
//! `stack.toml` pins for that peer; the accepting side accepts any
//! well-formed ed25519 certificate in TLS and then closes connections
//! from keys it does not know, with a reason (see [`super::link`]) — so
//! both operators' logs say why.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, SignatureAlgorithm,
    SignatureScheme,
};

use crate::vault::{Vault, fingerprint};

/// The ALPN protocol of the mesh; bumped with
/// [`hearth_protocol::mesh::MESH_PROTOCOL`].
pub const ALPN: &[u8] = b"hearth-mesh/3";
/// The name every node's certificate carries and every dial asks for; the
/// key, not the name, identifies a node.
pub const SERVER_NAME: &str = "hearth-peer";

/// Why the TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// quinn refused the rustls configuration.
    #[error("QUIC crypto configuration: {0}")]
    Quic(String),
    /// The idle timeout is out of QUIC's range.
    #[error("mesh.idle_timeout_ms is out of range: {0}")]
    IdleTimeout(String),
}

/// The ed25519 key in `cert`, or why there is none.
pub fn ed25519_key_of(cert: &CertificateDer<'_>) -> Result<[u8; 32], rustls::Error> {
    let bad = |why: &str| {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(
            std::io::Error::other(why.to_owned()),
        ))))
    };
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|_| bad("the peer's certificate is not valid X.509"))?;
    let spki = parsed.public_key();
    if spki.algorithm.algorithm != x509_parser::oid_registry::OID_SIG_ED25519 {
        return Err(bad(
            "the peer's certificate key is not ed25519; it is not a Hearth node",
        ));
    }
    <[u8; 32]>::try_from(spki.subject_public_key.data.as_ref())
        .map_err(|_| bad("the peer's ed25519 key is not 32 bytes"))
}

/// A short form of a key for messages: its fingerprint and first hex digits.
pub fn describe_key(key: &[u8; 32]) -> String {
    format!("{}… ({})", &hex::encode(key)[..16], fingerprint(key))
}

/// Presents the node's certificate, built on first use through the vault.
pub struct NodeCertificate {
    vault: Arc<Vault>,
    public: [u8; 32],
    built: Mutex<Option<Arc<CertifiedKey>>>,
}

impl std::fmt::Debug for NodeCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCertificate")
            .field("public", &hex::encode(self.public))
            .finish_non_exhaustive()
    }
}

impl NodeCertificate {
    /// The certificate of the node whose vault is `vault`.
    pub fn new(vault: Arc<Vault>) -> Arc<Self> {
        let public = hex::decode(vault.identity().public_key)
            .ok()
            .and_then(|k| <[u8; 32]>::try_from(k).ok())
            .unwrap_or_default();
        Arc::new(NodeCertificate {
            vault,
            public,
            built: Mutex::new(None),
        })
    }

    /// This node's public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.public
    }

    /// False while the vault is locked: no certificate, no handshake.
    pub fn can_sign(&self) -> bool {
        !self.vault.is_locked()
    }

    /// The certificate and signer, or `None` (logged) while the vault is
    /// locked: handshakes fail until it is unlocked.
    fn certified(&self) -> Option<Arc<CertifiedKey>> {
        let mut built = self.built.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(key) = &*built {
            return Some(key.clone());
        }
        match self.build() {
            Ok(key) => {
                *built = Some(key.clone());
                Some(key)
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot present this node's certificate to a peer");
                None
            }
        }
    }

    fn build(&self) -> Result<Arc<CertifiedKey>, String> {
        let remote = RemoteIdentity {
            vault: self.vault.clone(),
            public: self.public,
        };
        let key_pair = rcgen::KeyPair::from_remote(Box::new(remote)).map_err(|e| e.to_string())?;
        let mut params = rcgen::CertificateParams::new(vec![SERVER_NAME.to_owned()])
            .map_err(|e| e.to_string())?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, hex::encode(self.public));
        let cert = params
            .self_signed(&key_pair)
            .map_err(|e| format!("cannot sign the certificate with the node identity: {e}"))?;
        let signer = Arc::new(IdentityKey {
            vault: self.vault.clone(),
        });
        Ok(Arc::new(CertifiedKey::new(
            vec![cert.der().clone()],
            signer,
        )))
    }
}

impl rustls::server::ResolvesServerCert for NodeCertificate {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.certified()
    }
}

impl rustls::client::ResolvesClientCert for NodeCertificate {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.certified()
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Signs the certificate itself through the vault.
struct RemoteIdentity {
    vault: Arc<Vault>,
    public: [u8; 32],
}

impl rcgen::RemoteKeyPair for RemoteIdentity {
    fn public_key(&self) -> &[u8] {
        &self.public
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.vault
            .sign_as_node(msg)
            .map_err(|_| rcgen::Error::RemoteKeyError)
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ED25519
    }
}

/// Signs handshakes with the node identity, through the vault.
struct IdentityKey {
    vault: Arc<Vault>,
}

impl std::fmt::Debug for IdentityKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdentityKey(vault)")
    }
}

impl rustls::sign::SigningKey for IdentityKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn rustls::sign::Signer>> {
        offered.contains(&SignatureScheme::ED25519).then(|| {
            Box::new(IdentitySigner {
                vault: self.vault.clone(),
            }) as Box<dyn rustls::sign::Signer>
        })
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::ED25519
    }
}

struct IdentitySigner {
    vault: Arc<Vault>,
}

impl std::fmt::Debug for IdentitySigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdentitySigner(vault)")
    }
}

impl rustls::sign::Signer for IdentitySigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        self.vault
            .sign_as_node(message)
            .map_err(|e| rustls::Error::General(format!("cannot sign with the node identity: {e}")))
    }

    fn scheme(&self) -> SignatureScheme {
        SignatureScheme::ED25519
    }
}

/// Why the last dial's certificate was refused, in words: rustls carries
/// only a TLS alert back, so the verifier leaves its reason here for the
/// dialer to log and report.
pub type RefusalSlot = Arc<Mutex<Option<String>>>;

/// The one signature scheme nodes use, both ways.
const ED25519_ONLY: [SignatureScheme; 1] = [SignatureScheme::ED25519];

/// QUIC is TLS 1.3 only; a TLS 1.2 signature never belongs to a node.
fn tls12_refused() -> Result<HandshakeSignatureValid, rustls::Error> {
    Err(rustls::Error::PeerIncompatible(
        rustls::PeerIncompatible::Tls13RequiredForQuic,
    ))
}

/// Accepts exactly one key: the one `stack.toml` pins for the peer dialed.
#[derive(Debug)]
struct PinnedPeer {
    peer: String,
    expected: [u8; 32],
    algorithms: WebPkiSupportedAlgorithms,
    refusal: RefusalSlot,
}

/// The key a peer presented is not the one pinned for it.
#[derive(Debug, thiserror::Error)]
#[error(
    "{peer} presented key {presented}, but stack.toml pins {expected} for it; if that node's identity changed, paste its new `host id` output into [peers.{peer}]"
)]
pub struct KeyMismatch {
    peer: String,
    presented: String,
    expected: String,
}

impl ServerCertVerifier for PinnedPeer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let refuse = |why: String, err: rustls::Error| {
            *self.refusal.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
            err
        };
        let presented = match ed25519_key_of(end_entity) {
            Ok(key) => key,
            Err(err) => {
                return Err(refuse(
                    format!("{} sent an unusable certificate: {err}", self.peer),
                    err,
                ));
            }
        };
        if presented != self.expected {
            let mismatch = KeyMismatch {
                peer: self.peer.clone(),
                presented: describe_key(&presented),
                expected: describe_key(&self.expected),
            };
            return Err(refuse(
                mismatch.to_string(),
                rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(
                    mismatch,
                )))),
            ));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls12_refused()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        ED25519_ONLY.to_vec()
    }
}

/// Accepts any ed25519 certificate whose handshake signature verifies; the
/// key is checked against `[peers]` once the connection is up.
#[derive(Debug)]
struct AnyNode {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyNode {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        ed25519_key_of(end_entity)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls12_refused()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        ED25519_ONLY.to_vec()
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// QUIC transport settings shared by both directions.
pub fn transport(
    idle_timeout: Duration,
    max_streams: u32,
) -> Result<quinn::TransportConfig, TlsError> {
    let mut transport = quinn::TransportConfig::default();
    let idle = quinn::IdleTimeout::try_from(idle_timeout)
        .map_err(|e| TlsError::IdleTimeout(e.to_string()))?;
    // Bounded windows: what a peer can make this node buffer before it
    // reads is capped per stream and per connection.
    transport
        .max_idle_timeout(Some(idle))
        .keep_alive_interval(Some(idle_timeout / 3))
        .max_concurrent_bidi_streams(max_streams.into())
        .max_concurrent_uni_streams(0u32.into())
        .stream_receive_window((1u32 << 20).into())
        .receive_window((8u32 << 20).into())
        .send_window(8 << 20);
    Ok(transport)
}

/// How this node dials `peer`, accepting only `expected` as its key; the
/// verifier writes why it refused a certificate into `refusal`.
pub fn client_config(
    certificate: Arc<NodeCertificate>,
    peer: &str,
    expected: [u8; 32],
    transport: Arc<quinn::TransportConfig>,
    refusal: RefusalSlot,
) -> Result<quinn::ClientConfig, TlsError> {
    let provider = provider();
    let verifier = Arc::new(PinnedPeer {
        peer: peer.to_owned(),
        expected,
        algorithms: provider.signature_verification_algorithms,
        refusal,
    });
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_cert_resolver(certificate);
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| TlsError::Quic(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    config.transport_config(transport);
    Ok(config)
}

/// How this node accepts peers: mutual TLS with any ed25519 node key.
pub fn server_config(
    certificate: Arc<NodeCertificate>,
    transport: Arc<quinn::TransportConfig>,
) -> Result<quinn::ServerConfig, TlsError> {
    let provider = provider();
    let verifier = Arc::new(AnyNode {
        algorithms: provider.signature_verification_algorithms,
    });
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(certificate);
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let quic = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| TlsError::Quic(e.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(quic));
    config.transport_config(transport);
    Ok(config)
}

/// The key of the node at the other end of an established connection.
pub fn peer_key(connection: &quinn::Connection) -> Option<[u8; 32]> {
    let identity = connection.peer_identity()?;
    let certs = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    ed25519_key_of(certs.first()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_certificate_carries_the_node_key_and_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let vault = Arc::new(Vault::open(dir.path().join("vault.json")).unwrap());
        let cert = NodeCertificate::new(vault.clone());
        let certified = cert.certified().expect("ephemeral identity signs");
        let der = &certified.cert[0];
        assert_eq!(ed25519_key_of(der).unwrap(), cert.public_key());
        assert_eq!(hex::encode(cert.public_key()), vault.identity().public_key);
        // The certificate's own signature is the identity's.
        let (_, parsed) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
        parsed.verify_signature(None).unwrap();
    }

    #[test]
    fn garbage_and_foreign_certificates_are_refused() {
        assert!(ed25519_key_of(&CertificateDer::from(vec![0x30, 0x03, 1, 2, 3])).is_err());
        let p256 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["x".to_owned()])
            .unwrap()
            .self_signed(&p256)
            .unwrap();
        let err = ed25519_key_of(cert.der()).unwrap_err().to_string();
        assert!(err.contains("not ed25519"), "{err}");
    }

    #[test]
    fn a_pinned_dial_refuses_any_other_key() {
        let dir = tempfile::tempdir().unwrap();
        let vault = Arc::new(Vault::open(dir.path().join("vault.json")).unwrap());
        let cert = NodeCertificate::new(vault);
        let der = cert.certified().unwrap().cert[0].clone();
        let verifier = PinnedPeer {
            peer: "worker-1".into(),
            expected: [7; 32],
            algorithms: provider().signature_verification_algorithms,
            refusal: RefusalSlot::default(),
        };
        let name = ServerName::try_from(SERVER_NAME).unwrap();
        let err = verifier
            .verify_server_cert(&der, &[], &name, &[], UnixTime::now())
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid peer certificate"), "{err}");
        let reason = verifier.refusal.lock().unwrap().clone().unwrap();
        assert!(reason.starts_with("worker-1 presented key"), "{reason}");
        let verifier = PinnedPeer {
            expected: cert.public_key(),
            ..verifier
        };
        verifier
            .verify_server_cert(&der, &[], &name, &[], UnixTime::now())
            .unwrap();
    }
}
