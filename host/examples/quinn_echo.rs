//! Raw quinn on loopback, one bidirectional stream per call: the floor the
//! mesh's remote calls are measured against (`bench/remote.sh`).
//!
//! - `quinn_echo server ADDR` answers every stream with what it read;
//! - `quinn_echo client ADDR CONNS SECONDS` keeps CONNS calls in flight
//!   (closed loop, like `host bench`) over one connection, each call a new
//!   stream carrying a 64-byte request and its echo, and prints calls/s
//!   and latency percentiles as JSON after a 1 s warm-up.
//!
//! TLS 1.3 with a self-signed certificate (rustls with ring, as the mesh)
//! and the mesh's stream and connection windows; the client trusts any
//! certificate, as no peer identity is at stake here.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const REQUEST: &[u8; 64] =
    b"{\"path\":\"/worker-1/host/echo\",\"input\":{\"msg\":\"hi\"},\"pad\":\"....\"}";

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addr: SocketAddr = args.get(1).expect("ADDR").parse().expect("ADDR");
    match args.first().map(String::as_str) {
        Some("server") => server(addr).await,
        Some("client") => {
            let conns: usize = args.get(2).map_or(1, |s| s.parse().expect("CONNS"));
            let seconds: f64 = args.get(3).map_or(10.0, |s| s.parse().expect("SECONDS"));
            client(addr, conns, Duration::from_secs_f64(seconds)).await;
        }
        _ => eprintln!("usage: quinn_echo server ADDR | quinn_echo client ADDR CONNS SECONDS"),
    }
}

fn transport() -> Arc<quinn::TransportConfig> {
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(1024u32.into())
        .stream_receive_window((1u32 << 20).into())
        .receive_window((8u32 << 20).into())
        .send_window(8 << 20);
    Arc::new(transport)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

async fn server(addr: SocketAddr) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
    let tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .unwrap();
    let quic = quinn::crypto::rustls::QuicServerConfig::try_from(tls).unwrap();
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(quic));
    config.transport_config(transport());
    let endpoint = quinn::Endpoint::server(config, addr).unwrap();
    println!("listening on {}", endpoint.local_addr().unwrap());
    while let Some(incoming) = endpoint.accept().await {
        tokio::spawn(async move {
            let Ok(connection) = incoming.await else {
                return;
            };
            while let Ok((mut send, mut recv)) = connection.accept_bi().await {
                tokio::spawn(async move {
                    let Ok(request) = recv.read_to_end(1 << 20).await else {
                        return;
                    };
                    let _ = send.write_all(&request).await;
                    let _ = send.finish();
                });
            }
        });
    }
}

async fn client(addr: SocketAddr, conns: usize, duration: Duration) {
    let tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider())))
        .with_no_client_auth();
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    config.transport_config(transport());
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(config);
    let connection = endpoint.connect(addr, "localhost").unwrap().await.unwrap();

    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let connection = connection.clone();
        let (measuring, stop) = (measuring.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies: Vec<u32> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let start = Instant::now();
                let (mut send, mut recv) = connection.open_bi().await.unwrap();
                send.write_all(REQUEST).await.unwrap();
                send.finish().unwrap();
                let reply = recv.read_to_end(1 << 20).await.unwrap();
                assert_eq!(reply.len(), REQUEST.len());
                if measuring.load(Ordering::Relaxed) {
                    latencies.push(start.elapsed().as_micros().try_into().unwrap_or(u32::MAX));
                }
            }
            latencies
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(duration).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all.sort_unstable();
    let at = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)] as f64 / 1000.0;
    println!(
        r#"{{"calls":{},"calls_per_s":{:.0},"p50_ms":{:.3},"p90_ms":{:.3},"p99_ms":{:.3},"max_ms":{:.3}}}"#,
        all.len(),
        all.len() as f64 / elapsed,
        at(0.5),
        at(0.9),
        at(0.99),
        at(1.0)
    );
}

/// Trusts any server certificate: a benchmark on loopback, not a peer.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
