//! Keys, certificate requests and certificates: what the ACME client sends
//! and receives, and the node-local CA for `.local`/`.internal` names.
//!
//! Certificate keys are P-256, made here from the host's randomness and
//! kept only encrypted by the vault (and in the 0600 file nginx reads).
//! The local CA's key never leaves the vault: [`VaultSigner`] asks it to
//! sign each certificate, so a node restored from its seed has the same
//! CA.

use std::str::FromStr;
use std::time::Duration;

use hearth_sdk::vault;
use p256::ecdsa::{DerSignature, SigningKey, VerifyingKey};
#[cfg(test)]
use p256::pkcs8::DecodePrivateKey;
use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use sha2::{Digest, Sha256};
use x509_cert::Certificate;
use x509_cert::builder::{Builder, CertificateBuilder, Profile, RequestBuilder};
use x509_cert::der::asn1::{Ia5String, UtcTime};
use x509_cert::der::{DecodePem, Encode, EncodePem};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{ExtendedKeyUsage, SubjectAltName};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{
    AlgorithmIdentifierOwned, DynSignatureAlgorithmIdentifier, SubjectPublicKeyInfoOwned,
};
use x509_cert::time::{Time, Validity};

/// What a certificate says about itself, for `certs` and renewal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Seconds since the epoch.
    pub not_before: u64,
    /// Seconds since the epoch.
    pub not_after: u64,
    /// Serial number, hex.
    pub serial: String,
    /// The issuer's name (RFC 4514).
    pub issuer: String,
    /// DNS names it covers.
    pub names: Vec<String>,
}

/// A new P-256 key from the host's randomness.
pub fn new_key() -> SigningKey {
    SigningKey::random(&mut rand_core::OsRng)
}

/// The key as PKCS#8 PEM, for nginx's `ssl_certificate_key`.
pub fn key_to_pem(key: &SigningKey) -> Result<String, String> {
    key.to_pkcs8_pem(LineEnding::LF)
        .map(|pem| pem.to_string())
        .map_err(|e| format!("cannot encode the certificate key: {e}"))
}

/// The key back from PKCS#8 PEM.
#[cfg(test)]
pub fn key_from_pem(pem: &str) -> Result<SigningKey, String> {
    SigningKey::from_pkcs8_pem(pem).map_err(|e| format!("a stored certificate key is damaged: {e}"))
}

fn name(common_name: &str) -> Result<Name, String> {
    // RFC 5280 caps a common name at 64 characters: a longer domain is
    // named by its SAN alone.
    if common_name.len() > 64 {
        return Ok(Name::default());
    }
    // Domains were validated (LDH only): nothing to escape.
    Name::from_str(&format!("CN={common_name}")).map_err(|e| format!("name {common_name}: {e}"))
}

fn san(domain: &str) -> Result<SubjectAltName, String> {
    let dns = Ia5String::new(domain).map_err(|e| format!("domain {domain}: {e}"))?;
    Ok(SubjectAltName(vec![GeneralName::DnsName(dns)]))
}

/// A PKCS#10 request for `domain`, signed by `key`, DER.
pub fn csr(key: &SigningKey, domain: &str) -> Result<Vec<u8>, String> {
    let mut builder = RequestBuilder::new(name(domain)?, key).map_err(|e| format!("CSR: {e}"))?;
    builder
        .add_extension(&san(domain)?)
        .map_err(|e| format!("CSR: {e}"))?;
    builder
        .build::<DerSignature>()
        .map_err(|e| format!("CSR: {e}"))?
        .to_der()
        .map_err(|e| format!("CSR: {e}"))
}

/// The certificates of a PEM chain, first the leaf.
pub fn parse_chain(pem: &str) -> Result<Vec<Certificate>, String> {
    let chain = Certificate::load_pem_chain(pem.as_bytes())
        .map_err(|e| format!("the certificate is not valid PEM: {e}"))?;
    if chain.is_empty() {
        return Err("the certificate chain is empty".to_owned());
    }
    Ok(chain)
}

/// What the leaf of `pem` says.
pub fn info(pem: &str) -> Result<CertInfo, String> {
    let chain = parse_chain(pem)?;
    let tbs = &chain[0].tbs_certificate;
    let seconds = |t: &Time| t.to_unix_duration().as_secs();
    let mut names = Vec::new();
    if let Ok(Some((_, san))) = tbs.get::<SubjectAltName>() {
        for name in san.0 {
            if let GeneralName::DnsName(dns) = name {
                names.push(dns.to_string());
            }
        }
    }
    Ok(CertInfo {
        not_before: seconds(&tbs.validity.not_before),
        not_after: seconds(&tbs.validity.not_after),
        serial: tbs
            .serial_number
            .as_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
        issuer: tbs.issuer.to_string(),
        names,
    })
}

/// True when `key` is the key of the leaf of `pem`.
pub fn key_matches(key: &SigningKey, pem: &str) -> bool {
    let Ok(chain) = parse_chain(pem) else {
        return false;
    };
    let Ok(ours) = key.verifying_key().to_public_key_der() else {
        return false;
    };
    chain[0]
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .is_ok_and(|theirs| theirs == ours.as_bytes())
}

/// Signs with a P-256 key the vault keeps at a derivation path.
pub struct VaultSigner {
    path: String,
    public: VerifyingKey,
}

impl VaultSigner {
    /// The key at `path`.
    pub fn new(path: &str) -> Result<VaultSigner, hearth_sdk::CallError> {
        let public = vault::public_key(vault::Curve::P256, path)?;
        let public = VerifyingKey::from_sec1_bytes(&public).map_err(|_| {
            hearth_sdk::CallError::failed("the vault returned a key that is not on P-256")
        })?;
        Ok(VaultSigner {
            path: path.to_owned(),
            public,
        })
    }
}

impl p256::ecdsa::signature::Keypair for VaultSigner {
    type VerifyingKey = VerifyingKey;

    fn verifying_key(&self) -> VerifyingKey {
        self.public
    }
}

impl DynSignatureAlgorithmIdentifier for VaultSigner {
    fn signature_algorithm_identifier(&self) -> x509_cert::spki::Result<AlgorithmIdentifierOwned> {
        Ok(AlgorithmIdentifierOwned {
            oid: x509_cert::der::oid::db::rfc5912::ECDSA_WITH_SHA_256,
            parameters: None,
        })
    }
}

impl p256::ecdsa::signature::Signer<DerSignature> for VaultSigner {
    fn try_sign(&self, message: &[u8]) -> Result<DerSignature, p256::ecdsa::signature::Error> {
        let digest: [u8; 32] = Sha256::digest(message).into();
        let raw = vault::sign_p256(&self.path, &digest).map_err(|e| {
            hearth_sdk::log::warn(&format!("the vault did not sign for the local CA: {e}"));
            p256::ecdsa::signature::Error::new()
        })?;
        let signature = p256::ecdsa::Signature::from_slice(&raw)?;
        Ok(signature.to_der())
    }
}

fn random_serial() -> Result<SerialNumber, String> {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes).map_err(|e| format!("no randomness: {e}"))?;
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    SerialNumber::new(&bytes).map_err(|e| e.to_string())
}

fn validity(now: u64, days: u64) -> Result<Validity, String> {
    let at = |s: u64| {
        UtcTime::from_unix_duration(Duration::from_secs(s))
            .map(Time::UtcTime)
            .map_err(|e| e.to_string())
    };
    Ok(Validity {
        not_before: at(now.saturating_sub(3600))?,
        not_after: at(now + days * 86_400)?,
    })
}

/// The local CA's self-signed certificate, PEM (10 years).
pub fn ca_certificate(signer: &VaultSigner, common_name: &str, now: u64) -> Result<String, String> {
    let spki =
        SubjectPublicKeyInfoOwned::from_key(signer.public).map_err(|e| format!("CA key: {e}"))?;
    let builder = CertificateBuilder::new(
        Profile::Root,
        random_serial()?,
        validity(now, 3650)?,
        name(common_name)?,
        spki,
        signer,
    )
    .map_err(|e| format!("CA certificate: {e}"))?;
    let cert = builder
        .build::<DerSignature>()
        .map_err(|e| format!("CA certificate: {e}"))?;
    cert.to_pem(LineEnding::LF)
        .map_err(|e| format!("CA certificate: {e}"))
}

/// A certificate for `domain` and `key`, signed by the local CA: the
/// leaf's PEM followed by the CA's.
pub fn issue_local(
    signer: &VaultSigner,
    ca_pem: &str,
    domain: &str,
    key: &SigningKey,
    now: u64,
    days: u64,
) -> Result<String, String> {
    let ca =
        Certificate::from_pem(ca_pem.as_bytes()).map_err(|e| format!("CA certificate: {e}"))?;
    let spki = SubjectPublicKeyInfoOwned::from_key(*key.verifying_key())
        .map_err(|e| format!("certificate key: {e}"))?;
    let mut builder = CertificateBuilder::new(
        Profile::Leaf {
            issuer: ca.tbs_certificate.subject.clone(),
            enable_key_agreement: false,
            enable_key_encipherment: false,
        },
        random_serial()?,
        validity(now, days)?,
        name(domain)?,
        spki,
        signer,
    )
    .map_err(|e| format!("certificate: {e}"))?;
    builder
        .add_extension(&san(domain)?)
        .and_then(|()| {
            builder.add_extension(&ExtendedKeyUsage(vec![
                x509_cert::der::oid::db::rfc5280::ID_KP_SERVER_AUTH,
            ]))
        })
        .map_err(|e| format!("certificate: {e}"))?;
    let leaf = builder
        .build::<DerSignature>()
        .map_err(|e| format!("certificate: {e}"))?
        .to_pem(LineEnding::LF)
        .map_err(|e| format!("certificate: {e}"))?;
    Ok(format!("{leaf}{ca_pem}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_csr_names_the_domain_and_verifies() {
        use p256::ecdsa::signature::Verifier;
        use x509_cert::der::Decode;
        let key = new_key();
        let der = csr(&key, "app.example").unwrap();
        let req = x509_cert::request::CertReq::from_der(&der).unwrap();
        assert_eq!(req.info.subject.to_string(), "CN=app.example");
        let signature = p256::ecdsa::DerSignature::from_bytes(req.signature.raw_bytes()).unwrap();
        key.verifying_key()
            .verify(&req.info.to_der().unwrap(), &signature)
            .unwrap();
        let pem = key_to_pem(&key).unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert_eq!(key_from_pem(&pem).unwrap(), key);
    }
}
