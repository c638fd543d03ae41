use p256::ecdsa::SigningKey;
use x509_cert::builder::{Builder, RequestBuilder};
pub fn t() -> Vec<u8> {
    let key = SigningKey::random(&mut rand_core::OsRng);
    let subject = "CN=example.com".parse().unwrap();
    let b = RequestBuilder::new(subject, &key).unwrap();
    let r = b.build::<p256::ecdsa::DerSignature>().unwrap();
    use x509_cert::der::Encode;
    r.to_der().unwrap()
}
