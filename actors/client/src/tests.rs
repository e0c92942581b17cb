//! The client against fake servers: routing, redirects, the write rule,
//! TLS and wrong-port diagnosis.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use metawal::codec::FrameCodec;
use metawal::frame::Frame;
use metawal::Command;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_util::codec::Encoder;

use crate::testing::{fake_server, http, TempDir, TestCa};
use crate::{tls, Acks, Appended, Client, Diagnosis, Error, ErrorCode, Failure, Method};

fn delete_t() -> [Command; 1] {
    [Command::DeleteTopic { name: "t".into() }]
}

/// A self-signed CA certificate (openssl, P-256, valid until 2126).
const TEST_CA_PEM: &str = "\
-----BEGIN CERTIFICATE-----\n\
MIIBmzCCAUGgAwIBAgIUJaayKrJYj4hUrNw2zwdvrPTjFCYwCgYIKoZIzj0EAwIw\n\
IjEgMB4GA1UEAwwXbWV0YXdhbGN0bCB1bml0IHRlc3QgQ0EwIBcNMjYxMTI5MDYy\n\
MzI1WhgPMjEyNjExMDUwNjIzMjVaMCIxIDAeBgNVBAMMF21ldGF3YWxjdGwgdW5p\n\
dCB0ZXN0IENBMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE66t+oXJqhtKdkcEK\n\
P/F2gRoNEpABAalW+r1spEGJCECtMxdOEKRJTIQsdGCNbGOFG/bPBhKpKbpzJvK+\n\
LtPFMaNTMFEwHQYDVR0OBBYEFFUAkFPnN1q6asvnRImu+rdEQ/sLMB8GA1UdIwQY\n\
MBaAFFUAkFPnN1q6asvnRImu+rdEQ/sLMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZI\n\
zj0EAwIDSAAwRQIhAM3PfKXOwY27BFVhcOrWYIVZYZdtAEmmB7fGxffOdVPdAiAk\n\
JEk91i5Embcqgy8SJPPNQwSVer+i9Iag0wPCnzr9tQ==\n\
-----END CERTIFICATE-----\n\
";

/// A server that answers every connection's first bytes with a TLS
/// alert record and closes, as an HTTPS port does to plain HTTP (also
/// the probe that follows a reset). Sends how many bytes the first
/// connection brought.
fn tls_only_server() -> (String, std::sync::mpsc::Receiver<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Bounded: the request and at most one probe.
        for _ in 0..2 {
            let Ok((mut stream, _)) = listener.accept() else {
                break;
            };
            let mut b = [0u8; 1024];
            let n = stream.read(&mut b).unwrap_or(0);
            let _ = tx.send(n);
            // alert, TLS 1.2 record version, length 2, fatal,
            // decode_error; then close, maybe with the body unread
            // (then the client sees a reset).
            let _ = stream.write_all(&[21, 3, 3, 0, 2, 2, 50]);
        }
    });
    (base, rx)
}

#[test]
fn plain_http_to_an_https_port_is_unavailable_not_unknown() {
    let (base, sent) = tls_only_server();
    let client = Client::new(&[base], Duration::from_secs(5), None);
    let err = client.propose(&delete_t(), Acks::All).unwrap_err();
    let n = sent.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(n > 0, "the request was not sent");
    // The TLS layer refused the bytes: nothing was done, so not exit 5.
    assert_eq!(err.failure(), Failure::Unavailable, "{err}");
    assert_eq!(err.appended(), Appended::No);
    let msg = err.to_string();
    assert!(msg.contains("TLS") && msg.contains("https://"), "{msg}");
}

#[test]
fn an_https_endpoint_serving_plain_http_is_a_tls_failure() {
    // A plain HTTP server on an https:// endpoint: it answers the
    // ClientHello with an HTTP error, which is no TLS record.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let https = format!("https://{}", listener.local_addr().unwrap());
    let _h = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut b = [0u8; 1024];
        let _ = stream.read(&mut b);
        let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
    });
    let dir = TempDir::new("tls2");
    // Any well-formed CA certificate will do: the handshake never gets
    // as far as checking it.
    let ca = dir.0.join("ca.pem");
    std::fs::write(&ca, TEST_CA_PEM).unwrap();
    let tls = Arc::new(tls::client_config(&ca, None).unwrap());
    let client = Client::new(&[https], Duration::from_secs(5), Some(tls));
    let err = client.get("/v1/status").unwrap_err();
    assert_eq!(err.failure(), Failure::Unavailable, "{err}");
    assert!(err.to_string().contains("TLS"), "{err}");
}

#[test]
fn a_write_follows_307_and_resends_the_body() {
    let (leader, _, leader_seen) =
        fake_server(vec![http("200 OK", "", r#"{"offset":5,"epoch":2}"#)]);
    let location = format!("Location: {leader}/v1/commands?acks=all\r\n");
    let (follower, _, follower_seen) =
        fake_server(vec![http("307 Temporary Redirect", &location, "{}")]);
    let client = Client::new(&[follower], Duration::from_secs(5), None);
    let proposed = client.propose(&delete_t(), Acks::All).unwrap();
    assert_eq!(proposed.offset, 5);
    assert_eq!(proposed.epoch, 2);
    let body = r#"{"DeleteTopic":{"name":"t"}}"#;
    assert_eq!(
        follower_seen.join().unwrap(),
        vec![("POST /v1/commands?acks=all HTTP/1.1".into(), body.into())]
    );
    assert_eq!(leader_seen.join().unwrap()[0].1, body);
}

#[test]
fn a_write_dropped_after_sending_is_unknown_and_not_resent() {
    let (a, _, a_seen) = fake_server(vec![None]);
    let (b, b_probe, _b) = fake_server(vec![]);
    let client = Client::new(&[a, b], Duration::from_secs(5), None);
    let err = client.propose(&delete_t(), Acks::All).unwrap_err();
    assert_eq!(err.failure(), Failure::OutcomeUnknown);
    assert_eq!(err.appended(), Appended::Maybe);
    assert_eq!(a_seen.join().unwrap().len(), 1);
    b_probe.set_nonblocking(true).unwrap();
    assert!(
        b_probe.accept().is_err(),
        "the write was sent to a second node"
    );
}

#[test]
fn a_request_skips_dead_and_leaderless_nodes() {
    let dead = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let (busy, _, _h1) = fake_server(vec![http(
        "503 Service Unavailable",
        "Retry-After: 1\r\nX-Metawal-Leader: none\r\n",
        r#"{"error":"not_leader","message":"no leader","detail":null}"#,
    )]);
    let (ok, _, _h2) = fake_server(vec![http("200 OK", "", r#"{"offset":9,"epoch":3}"#)]);
    let client = Client::new(&[dead, busy, ok], Duration::from_secs(5), None);
    let proposed = client.propose(&delete_t(), Acks::Leader).unwrap();
    assert_eq!(proposed.offset, 9);
}

#[test]
fn refusals_and_unknown_outcomes_end_at_once() {
    let (a, _, _h) = fake_server(vec![http(
        "504 Gateway Timeout",
        "",
        r#"{"error":"leadership_lost","message":"lost","detail":null}"#,
    )]);
    let (b, b_probe, _hb) = fake_server(vec![]);
    let client = Client::new(&[a, b], Duration::from_secs(5), None);
    let err = client.propose(&delete_t(), Acks::All).unwrap_err();
    assert_eq!(err.failure(), Failure::OutcomeUnknown);
    assert_eq!(err.code(), Some(&ErrorCode::LeadershipLost));
    b_probe.set_nonblocking(true).unwrap();
    assert!(b_probe.accept().is_err());
    let (c, _, _hc) = fake_server(vec![http(
        "404 Not Found",
        "",
        r#"{"error":"unknown_topic","message":"no such topic","detail":null}"#,
    )]);
    let client = Client::new(&[c], Duration::from_secs(5), None);
    let err = client
        .request(Method::Get, "/v1/topics/x", None, crate::Kind::Read)
        .unwrap_err();
    assert_eq!(err.failure(), Failure::Refused);
    let body = err.server_error().and_then(|e| e.body.clone()).unwrap();
    assert!(body.contains("unknown_topic"));
}

/// A replication `Challenge` frame as node 2 of cluster "prod" sends it.
fn challenge_bytes() -> Vec<u8> {
    let frame = Frame::Challenge {
        protocol: metawal::frame::PROTOCOL_VERSION,
        cluster_id: "prod".into(),
        node_id: 2,
        nonce: vec![7; metawal::frame::NONCE_LEN],
    };
    let mut buf = BytesMut::new();
    FrameCodec::new(1 << 20).encode(&frame, &mut buf).unwrap();
    buf.to_vec()
}

/// Asserts that `err` says "replication listener, not the HTTP API" and
/// names the flag to use, and that nothing was applied.
fn assert_replication(err: &Error) {
    let msg = err.to_string();
    assert!(
        msg.contains("replication listener") && msg.contains("not the HTTP API"),
        "{msg}"
    );
    assert!(msg.contains("--endpoints"), "{msg}");
    assert!(!msg.contains("pass --cert and --key"), "{msg}");
    assert_eq!(err.failure(), Failure::Unavailable, "{msg}");
    assert_eq!(err.appended(), Appended::No, "{msg}");
}

#[test]
fn a_plaintext_replication_port_is_named_as_such() {
    // A plaintext replication listener speaks first: its Challenge.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for _ in 0..3 {
            let Ok((mut stream, _)) = listener.accept() else {
                break;
            };
            let _ = stream.write_all(&challenge_bytes());
            let mut b = [0u8; 4];
            let _ = stream.read(&mut b);
            // "GET " as a frame length is far over the limit: close.
        }
    });
    let client = Client::new(&[base], Duration::from_secs(5), None);
    let err = client.propose(&delete_t(), Acks::All).unwrap_err();
    assert_replication(&err);
    assert!(
        err.to_string().contains("node 2 of cluster \"prod\""),
        "{err}"
    );
}

/// A TLS 1.3 listener requiring a client certificate from `ca`, serving
/// `leaf`, with ALPN `alpn` (empty: none, as a replication listener); after
/// a handshake it sends `first` (if any) and waits for the peer to close.
fn tls_listener(ca: &TestCa, alpn: Vec<Vec<u8>>, first: Option<Vec<u8>>) -> String {
    let leaf = ca.leaf("node-2", &["node-2.prod", "localhost"]);
    let provider = crate::tls::provider();
    let mut roots = rustls::RootCertStore::empty();
    let ca_pem = std::fs::read(&ca.ca_path).unwrap();
    roots
        .add(CertificateDer::from_pem_slice(&ca_pem).unwrap())
        .unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes()).unwrap()],
            PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap(),
        )
        .unwrap();
    config.alpn_protocols = alpn;
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!(
        "https://localhost:{}",
        listener.local_addr().unwrap().port()
    );
    std::thread::spawn(move || {
        for _ in 0..3 {
            let Ok((mut tcp, _)) = listener.accept() else {
                break;
            };
            let mut conn = rustls::ServerConnection::new(config.clone()).unwrap();
            tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            while conn.is_handshaking() {
                if conn.complete_io(&mut tcp).is_err() {
                    break;
                }
            }
            if let (false, Some(bytes)) = (conn.is_handshaking(), &first) {
                let _ = conn.writer().write_all(bytes);
                let _ = conn.complete_io(&mut tcp);
            }
            let mut b = [0u8; 64];
            let _ = tcp.read(&mut b);
        }
    });
    base
}

#[test]
fn a_tls_replication_port_is_named_as_such() {
    let ca = TestCa::new("repl-tls");
    // Without a client certificate: refused during the handshake, by a
    // server that does not speak HTTP/1.1 over ALPN.
    let base = tls_listener(&ca, vec![], Some(challenge_bytes()));
    let tls = Arc::new(tls::client_config(&ca.ca_path, None).unwrap());
    let client = Client::new(&[base], Duration::from_secs(5), Some(tls));
    let err = client.propose(&delete_t(), Acks::All).unwrap_err();
    assert_replication(&err);
    // With a client certificate it accepts: then it speaks first.
    let base = tls_listener(&ca, vec![], Some(challenge_bytes()));
    let me = ca.leaf("client", &["client"]);
    let tls = tls::client_config(&ca.ca_path, Some((&me.cert_path, &me.key_path))).unwrap();
    let client = Client::new(&[base], Duration::from_secs(5), Some(Arc::new(tls)));
    let err = client.propose(&delete_t(), Acks::All).unwrap_err();
    assert_replication(&err);
    assert!(err.to_string().contains("node 2"), "{err}");
}

#[test]
fn an_https_api_that_wants_a_client_certificate_still_says_so() {
    // The same refusal from a server that negotiates http/1.1, as the
    // HTTP API run with --http-client-ca does: pass --cert and --key.
    let ca = TestCa::new("api-tls");
    let base = tls_listener(&ca, vec![b"http/1.1".to_vec()], None);
    let tls = Arc::new(tls::client_config(&ca.ca_path, None).unwrap());
    let client = Client::new(&[base], Duration::from_secs(5), Some(tls));
    let err = client.get("/v1/status").unwrap_err();
    assert_eq!(err.failure(), Failure::Unavailable, "{err}");
    let msg = err.to_string();
    assert!(msg.contains("pass --cert and --key"), "{msg}");
    let Error::Unavailable(u) = &err else {
        panic!("{err:?}")
    };
    assert!(matches!(
        u.attempts[0].diagnosis(),
        Some(Diagnosis::ClientCertificateRequired(_))
    ));
}
