//! TLS start-up errors name the files to fix: a key that does not belong
//! to the certificate names both the certificate and the key file, and a
//! certificate the CA did not sign names the CA file, as typed fields
//! (`PathBuf`), not only in the message.

use metawal_testkit as common;

use common::certs::TestCa;
use common::CLUSTER;
use metawal_actors::tls::{http_server_config, PeerTls, TlsError};

#[test]
fn a_key_that_does_not_match_the_certificate_names_both_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = TestCa::new(dir.path(), "cluster", CLUSTER).expect("test CA");
    let node1 = ca.node(1).expect("node 1 certificate");
    let node2 = ca.node(2).expect("node 2 certificate");
    let mut files = node1.clone();
    files.key = node2.key.clone();

    // The peer set-up (replication and elections).
    let err = PeerTls::load(&files, 1, CLUSTER, [2, 3]).expect_err("a mismatched key was taken");
    match &err {
        TlsError::KeyMismatch { cert, key, .. } => {
            assert_eq!(cert, &node1.cert);
            assert_eq!(key, &node2.key);
        }
        other => panic!("expected KeyMismatch, got {other:?}"),
    }
    let text = err.to_string();
    for path in [&node1.cert, &node2.key] {
        assert!(text.contains(&path.display().to_string()), "{text}");
    }

    // The HTTPS API's set-up.
    let err = http_server_config(&files, None).expect_err("a mismatched key was taken");
    assert!(
        matches!(&err, TlsError::KeyMismatch { cert, key, .. } if *cert == node1.cert && *key == node2.key),
        "{err:?}"
    );
}

#[test]
fn a_certificate_the_ca_did_not_sign_names_the_ca_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = TestCa::new(dir.path(), "cluster", CLUSTER).expect("test CA");
    let other = TestCa::new(dir.path(), "other", CLUSTER).expect("other CA");
    let mut files = other.node(1).expect("node 1 certificate from the other CA");
    files.ca = ca.ca_path();
    let err = PeerTls::load(&files, 1, CLUSTER, [2, 3]).expect_err("an unsigned certificate");
    match &err {
        TlsError::OwnCertificate {
            path, ca: ca_file, ..
        } => {
            assert_eq!(path, &files.cert);
            assert_eq!(ca_file, &ca.ca_path());
        }
        other => panic!("expected OwnCertificate, got {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains("UnknownIssuer"), "{text}");
    assert!(text.contains(&ca.ca_path().display().to_string()), "{text}");
}
