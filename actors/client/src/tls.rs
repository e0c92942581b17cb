//! The HTTPS client configuration: which CA to trust, and which client
//! certificate to present.
//!
//! Why a module of its own (and not `metawal_actors::tls`): a client must
//! not pull in the node's actor runtime, and its failures are a user's
//! mistakes with files, so every error here names the file(s) involved —
//! the CA bundle, the certificate, the key, or both of the last when they do
//! not belong together. The crypto provider is rustls' `ring`, passed
//! explicitly, so no process-wide default provider is needed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Which of the TLS files an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsFile {
    /// The CA certificate(s) the nodes' certificates must chain to.
    CaCertificate,
    /// The client certificate chain.
    Certificate,
    /// The client certificate's private key.
    PrivateKey,
}

impl std::fmt::Display for TlsFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TlsFile::CaCertificate => "CA certificate",
            TlsFile::Certificate => "certificate",
            TlsFile::PrivateKey => "private key",
        })
    }
}

/// Why the TLS client configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsConfigError {
    /// A PEM file could not be read or parsed.
    #[error("cannot read the TLS {what} from {}: {source}", path.display())]
    Read {
        /// Which file.
        what: TlsFile,
        /// Its path.
        path: PathBuf,
        /// The cause (I/O, or bad PEM).
        source: rustls_pki_types::pem::Error,
    },
    /// A certificate file holds no certificate.
    #[error("cannot read the TLS {what} from {}: no PEM CERTIFICATE block in the file", path.display())]
    NoCertificate {
        /// Which file.
        what: TlsFile,
        /// Its path.
        path: PathBuf,
    },
    /// A CA certificate could not be used as a trust root.
    #[error("cannot read the TLS {what} from {}: {source}", path.display())]
    BadRoot {
        /// Which file ([`TlsFile::CaCertificate`]).
        what: TlsFile,
        /// Its path.
        path: PathBuf,
        /// What rustls said.
        source: rustls::Error,
    },
    /// The client certificate and key do not belong together (or the key
    /// is of a kind rustls cannot use).
    #[error(
        "the TLS client certificate {} and key {} cannot be used together: {source}",
        cert.display(),
        key.display()
    )]
    ClientIdentity {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said (e.g. the key does not match the certificate).
        source: rustls::Error,
    },
    /// rustls refused the protocol versions (not expected with its defaults).
    #[error("TLS configuration refused: {0}")]
    Config(#[source] rustls::Error),
}

/// The crypto provider every config here uses.
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS client config trusting the CA certificate(s) in `ca` (PEM; a
/// bundle of several works, e.g. during a CA rotation), presenting the
/// client certificate `(cert, key)` (PEM, leaf first) if given. TLS 1.2
/// and 1.3.
pub fn client_config(
    ca: &Path,
    client: Option<(&Path, &Path)>,
) -> Result<ClientConfig, TlsConfigError> {
    let roots = read_roots(ca)?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsConfigError::Config)?
        .with_root_certificates(roots);
    match client {
        Some((cert, key)) => builder
            .with_client_auth_cert(read_certs(TlsFile::Certificate, cert)?, read_key(key)?)
            .map_err(|source| TlsConfigError::ClientIdentity {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
                source,
            }),
        None => Ok(builder.with_no_client_auth()),
    }
}

fn read_certs(what: TlsFile, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let read = |source| TlsConfigError::Read {
        what,
        path: path.to_path_buf(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(read)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read)?;
    if certs.is_empty() {
        return Err(TlsConfigError::NoCertificate {
            what,
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsConfigError> {
    PrivateKeyDer::from_pem_file(path).map_err(|source| TlsConfigError::Read {
        what: TlsFile::PrivateKey,
        path: path.to_path_buf(),
        source,
    })
}

fn read_roots(path: &Path) -> Result<Arc<RootCertStore>, TlsConfigError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(TlsFile::CaCertificate, path)? {
        roots.add(cert).map_err(|source| TlsConfigError::BadRoot {
            what: TlsFile::CaCertificate,
            path: path.to_path_buf(),
            source,
        })?;
    }
    Ok(Arc::new(roots))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{TempDir, TestCa};

    #[test]
    fn unreadable_files_are_named() {
        let missing = Path::new("/nonexistent/metawalctl-test/ca.pem");
        let msg = client_config(missing, None).unwrap_err().to_string();
        assert!(
            msg.contains("CA certificate") && msg.contains("ca.pem"),
            "{msg}"
        );
        let d = TempDir::new("tls");
        let empty = d.0.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let msg = client_config(&empty, None).unwrap_err().to_string();
        assert!(msg.contains("no PEM CERTIFICATE"), "{msg}");
        assert!(msg.contains("empty.pem"), "{msg}");
    }

    #[test]
    fn a_key_that_does_not_match_its_certificate_names_both_files() {
        let ca = TestCa::new("mismatch");
        let client = ca.leaf("c", &["client"]);
        let other = ca.leaf("other", &["other"]);
        let ok = client_config(&ca.ca_path, Some((&client.cert_path, &client.key_path)));
        assert!(ok.is_ok(), "{:?}", ok.err());
        let err =
            client_config(&ca.ca_path, Some((&client.cert_path, &other.key_path))).unwrap_err();
        assert!(
            matches!(err, TlsConfigError::ClientIdentity { .. }),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("c.pem") && msg.contains("other-key.pem"),
            "{msg}"
        );
        // An unreadable key names the key file.
        let missing = ca.dir.0.join("absent-key.pem");
        let msg = client_config(&ca.ca_path, Some((&client.cert_path, &missing)))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("private key") && msg.contains("absent-key.pem"),
            "{msg}"
        );
    }
}
