//! TLS for every metawal connection: replication, election and the HTTP API.
//!
//! Why two layers. The HMAC handshake (`metawal::handshake`) proves that
//! whoever opened a connection holds the cluster's secret, and that both
//! ends are in the same cluster; it protects nothing after it. TLS protects
//! every byte of the connection — a frame cannot be read, injected, altered
//! or replayed on the wire — and, with mutual certificates, binds each
//! connection to a node id:
//!
//! - every node's certificate must be valid for the DNS name
//!   `node-<id>.<cluster-id>` ([`peer_name`]), signed by the configured CA,
//!   and usable for both server and client authentication;
//! - a node connecting to peer N asks for `node-N.<cluster-id>` (the
//!   standard server-name check): it only talks to node N;
//! - a node accepting a connection verifies the client certificate against
//!   the CA and works out which node ids it names ([`PeerIdentity`]: the
//!   voters of its flags and the ids its own names claim, e.g. a member
//!   added since, each checked as a server name would be); the
//!   replication session then refuses a `Hello`/`VoterHello` claiming any
//!   other node (`Reject { NotCertified }`). So node 2's certificate can
//!   neither act as node 3 nor lead as node 3.
//!
//! Peers speak TLS 1.3 only (both ends are metawal). The HTTP API accepts
//! TLS 1.2 and 1.3 (clients are curl, browsers, broker code), optionally
//! requiring a client certificate from its own CA.
//!
//! Certificates are read from PEM files once, when the node starts; a node
//! picks up renewed files on restart (rotate with a rolling restart, see
//! docs/operations.md). The node's own certificate is checked at start
//! (signed by the CA, valid now, valid for its node name), so a bad file is
//! a start-up error, not a stream of refused handshakes later.
//!
//! The crypto provider is rustls' `ring` (no OpenSSL, no cmake), passed
//! explicitly so that no process-wide default provider is needed.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use metawal::handshake::PeerIdentity;
use metawal::NodeId;
use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Where a node's TLS material lives: PEM files, read when the node starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// This node's certificate chain (PEM, leaf first). The leaf must be
    /// valid for `node-<id>.<cluster-id>` and for both server and client
    /// authentication; add more names (host names, IPs) for HTTP clients.
    pub cert: PathBuf,
    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// The CA certificate(s) (PEM) every peer's certificate must chain to.
    pub ca: PathBuf,
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("cannot read the TLS {what} from {path}: {reason}")]
    Read {
        /// Which file: "certificate", "private key", "CA certificate".
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        reason: String,
    },
    /// The cluster id cannot appear in a certificate name.
    #[error(
        "cluster id {0:?} cannot be used with TLS: peers are named node-<id>.<cluster-id> in \
         their certificates, so it must be a DNS name (letters, digits, '-', '.')"
    )]
    ClusterIdNotDnsName(String),
    /// This node's own certificate does not pass the checks its peers will
    /// make.
    #[error(
        "this node's TLS certificate {path} cannot be used as {name}: {reason} \
         (checked against the CA certificate file {ca})"
    )]
    OwnCertificate {
        /// The certificate file.
        path: PathBuf,
        /// The CA file it was checked against (an `UnknownIssuer` reason
        /// means no CA in it signed the certificate).
        ca: PathBuf,
        /// The name it must be valid for.
        name: String,
        /// What is wrong (expired, unknown issuer, wrong name, …).
        reason: String,
    },
    /// The private key does not belong to the certificate (each was read
    /// fine on its own).
    #[error(
        "TLS configuration refused: the private key {key} does not match the certificate \
         {cert} ({reason}): give the key the certificate was issued for"
    )]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The private key file.
        key: PathBuf,
        /// rustls' words.
        reason: String,
    },
    /// The certificate and key were read but cannot be used together for
    /// another reason than a mismatch (e.g. a key type rustls does not
    /// support).
    #[error(
        "TLS configuration refused: the certificate {cert} with the private key {key} cannot \
         be used: {reason}"
    )]
    CertificateKey {
        /// The certificate file.
        cert: PathBuf,
        /// The private key file.
        key: PathBuf,
        /// rustls' words.
        reason: String,
    },
    /// The CA file was read, but its certificates cannot verify peers (e.g.
    /// none is a usable trust anchor).
    #[error("the CA certificate file {path} cannot be used to verify peers: {reason}")]
    BadCa {
        /// The CA file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused a setting that depends on no file (a protocol
    /// version list).
    #[error("TLS configuration refused: {0}")]
    Config(String),
}

/// The name node `node`'s certificate must be valid for.
pub fn peer_name(node: NodeId, cluster_id: &str) -> String {
    format!("node-{node}.{cluster_id}")
}

/// The crypto provider every TLS config here uses.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |reason: String| TlsError::Read {
        what,
        path: path.to_path_buf(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no PEM CERTIFICATE block in the file".into()));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::Read {
        what: "private key",
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

fn read_roots(path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs("CA certificate", path)? {
        roots.add(cert).map_err(|e| TlsError::Read {
            what: "CA certificate",
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    }
    Ok(Arc::new(roots))
}

fn config_err(e: impl std::fmt::Display) -> TlsError {
    TlsError::Config(e.to_string())
}

/// rustls refused the certificate `cert` with the key `key`: name both
/// files, and say whether they do not belong together.
fn cert_key_err(cert: &Path, key: &Path) -> impl FnOnce(rustls::Error) -> TlsError {
    let (cert, key) = (cert.to_path_buf(), key.to_path_buf());
    move |e| match e {
        rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
            cert,
            key,
            reason: e.to_string(),
        },
        e => TlsError::CertificateKey {
            cert,
            key,
            reason: e.to_string(),
        },
    }
}

/// A verifier could not be built from the CA file `ca`.
fn ca_err(ca: &Path) -> impl FnOnce(rustls::server::VerifierBuilderError) -> TlsError {
    let path = ca.to_path_buf();
    move |e| TlsError::BadCa {
        path,
        reason: e.to_string(),
    }
}

/// The loaded peer TLS set-up of one node (see the module docs).
pub struct PeerTls {
    connector: TlsConnector,
    acceptor: TlsAcceptor,
    cluster_id: String,
    /// Every voter (this node included): the ids a client certificate is
    /// checked against.
    voters: Vec<NodeId>,
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerTls")
            .field("cluster_id", &self.cluster_id)
            .field("voters", &self.voters)
            .finish_non_exhaustive()
    }
}

impl PeerTls {
    /// Read `files` and build node `node`'s client and server configs
    /// (TLS 1.3, mutual). Checks the node's own certificate as its peers
    /// will: chained to the CA, valid now, valid for `node-<node>.<cluster>`
    /// as a server and as a client.
    pub fn load(
        files: &TlsFiles,
        node: NodeId,
        cluster_id: &str,
        voters: impl IntoIterator<Item = NodeId>,
    ) -> Result<PeerTls, TlsError> {
        let own_name = peer_name(node, cluster_id);
        let server_name = ServerName::try_from(own_name.clone())
            .map_err(|_| TlsError::ClusterIdNotDnsName(cluster_id.to_string()))?;
        let certs = read_certs("certificate", &files.cert)?;
        let key = read_key(&files.key)?;
        let roots = read_roots(&files.ca)?;
        let provider = provider();
        let own = |reason: String| {
            // rustls words it from a peer's side.
            let reason = reason
                .trim_start_matches("invalid peer certificate: ")
                .to_string();
            TlsError::OwnCertificate {
                path: files.cert.clone(),
                ca: files.ca.clone(),
                name: own_name.clone(),
                reason,
            }
        };
        let server_verifier =
            WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
                .build()
                .map_err(ca_err(&files.ca))?;
        server_verifier
            .verify_server_cert(&certs[0], &certs[1..], &server_name, &[], UnixTime::now())
            .map_err(|e| own(e.to_string()))?;
        let client_verifier =
            WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                .build()
                .map_err(ca_err(&files.ca))?;
        client_verifier
            .verify_client_cert(&certs[0], &certs[1..], UnixTime::now())
            .map_err(|e| own(format!("{e} (as a client certificate)")))?;

        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(config_err)?
            .with_client_cert_verifier(client_verifier)
            .with_single_cert(certs.clone(), key.clone_key())
            .map_err(cert_key_err(&files.cert, &files.key))?;
        let client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(config_err)?
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)
            .map_err(cert_key_err(&files.cert, &files.key))?;
        let mut voters: Vec<NodeId> = voters.into_iter().collect();
        voters.push(node);
        voters.sort_unstable();
        voters.dedup();
        Ok(PeerTls {
            connector: TlsConnector::from(Arc::new(client)),
            acceptor: TlsAcceptor::from(Arc::new(server)),
            cluster_id: cluster_id.to_string(),
            voters,
        })
    }

    /// The node ids a verified leaf certificate is valid for.
    fn identity_of(&self, leaf: &CertificateDer<'_>) -> PeerIdentity {
        let Ok(cert) = webpki::EndEntityCert::try_from(leaf) else {
            return PeerIdentity::Certified(BTreeSet::new());
        };
        // The voters of the flags, and every id the certificate's names
        // claim (a member added since the start, which the flags do not
        // list): each checked the way a client checks a server's name.
        let suffix = format!(".{}", self.cluster_id.to_ascii_lowercase());
        let claimed = cert.valid_dns_names().filter_map(|name| {
            let name = name.to_ascii_lowercase();
            name.strip_suffix(&suffix)?
                .strip_prefix("node-")?
                .parse::<NodeId>()
                .ok()
        });
        let candidates: BTreeSet<NodeId> = self.voters.iter().copied().chain(claimed).collect();
        let ids = candidates
            .into_iter()
            .filter(|&id| {
                ServerName::try_from(peer_name(id, &self.cluster_id))
                    .is_ok_and(|name| cert.verify_is_valid_for_subject_name(&name).is_ok())
            })
            .collect();
        PeerIdentity::Certified(ids)
    }
}

/// How a node's peer connections are carried.
#[derive(Debug, Clone, Default)]
pub(crate) enum PeerTransport {
    /// Plain TCP (only with `insecure_plaintext`): the HMAC handshake is
    /// the only protection.
    #[default]
    Plain,
    /// Mutual TLS 1.3.
    Tls(Arc<PeerTls>),
}

/// Why an outbound peer connection failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    /// The TCP connect took longer than the limit.
    #[error("TCP connect timed out after {0:?}")]
    Timeout(Duration),
    /// TCP connected, but TCP connect plus TLS handshake took longer than
    /// the limit.
    #[error("TLS handshake not finished within {0:?} of connecting")]
    TlsTimeout(Duration),
    /// The TCP connect failed.
    #[error("connect failed: {0}")]
    Tcp(std::io::Error),
    /// The TLS handshake failed (e.g. the peer's certificate is not for the
    /// node expected, or not from the CA).
    #[error("TLS handshake failed: {0}")]
    Tls(std::io::Error),
}

/// Whether an I/O error on a peer connection is the connection ending
/// abruptly — EOF without a TLS `close_notify`, a reset, a broken pipe —
/// rather than bad bytes or a TLS failure. Expected while either side
/// shuts down; otherwise the peer went away without closing (crashed or
/// killed).
pub(crate) fn is_abrupt_close(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe
    )
}

/// Whether an I/O error on a peer connection during the handshake is TLS
/// refusing it (an alert from the peer, bytes that are not TLS), as
/// opposed to the connection ending.
pub(crate) fn is_tls_refusal(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::InvalidData
}

impl PeerTransport {
    /// Connect to peer `peer` at `addr`; TCP connect and TLS handshake
    /// together are bounded by `limit`.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        peer: NodeId,
        limit: Duration,
    ) -> Result<PeerStream, ConnectError> {
        let mut tcp_connected = false;
        let connect = async {
            let tcp = TcpStream::connect(addr).await.map_err(ConnectError::Tcp)?;
            tcp_connected = true;
            let _ = tcp.set_nodelay(true);
            match self {
                PeerTransport::Plain => Ok(PeerStream::Plain(tcp)),
                PeerTransport::Tls(tls) => {
                    let name =
                        ServerName::try_from(peer_name(peer, &tls.cluster_id)).map_err(|e| {
                            ConnectError::Tls(std::io::Error::new(
                                std::io::ErrorKind::InvalidInput,
                                e,
                            ))
                        })?;
                    let stream = tls
                        .connector
                        .connect(name, tcp)
                        .await
                        .map_err(ConnectError::Tls)?;
                    Ok(PeerStream::Tls(Box::new(stream.into())))
                }
            }
        };
        let result = tokio::time::timeout(limit, connect).await;
        result.unwrap_or(Err(if tcp_connected {
            ConnectError::TlsTimeout(limit)
        } else {
            ConnectError::Timeout(limit)
        }))
    }

    /// Serve an accepted connection: over TLS, run the handshake (bounded
    /// by `limit`, so a peer that stalls it holds its slot no longer) and
    /// find which voters the client certificate names.
    pub async fn accept(
        &self,
        tcp: TcpStream,
        limit: Duration,
    ) -> Result<(PeerStream, PeerIdentity), AcceptError> {
        let _ = tcp.set_nodelay(true);
        match self {
            PeerTransport::Plain => Ok((PeerStream::Plain(tcp), PeerIdentity::Unverified)),
            PeerTransport::Tls(tls) => {
                let stream = tokio::time::timeout(limit, tls.acceptor.accept(tcp))
                    .await
                    .map_err(|_| AcceptError::Timeout(limit))?
                    .map_err(AcceptError::Tls)?;
                let identity = match stream.get_ref().1.peer_certificates() {
                    Some([leaf, ..]) => tls.identity_of(leaf),
                    // The verifier requires a certificate; be explicit anyway.
                    _ => PeerIdentity::Certified(BTreeSet::new()),
                };
                Ok((PeerStream::Tls(Box::new(stream.into())), identity))
            }
        }
    }
}

/// Why an inbound connection was not served.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AcceptError {
    /// The client did not finish the TLS handshake in time.
    #[error("TLS handshake not finished within {0:?}")]
    Timeout(Duration),
    /// The TLS handshake failed: not TLS, a certificate from another CA,
    /// an expired certificate, no certificate…
    #[error("TLS handshake failed: {0}")]
    Tls(std::io::Error),
}

impl AcceptError {
    /// The peer closed the connection before sending anything TLS could
    /// judge (e.g. a node waking the leader by connecting, then closing):
    /// not worth a warning.
    pub fn is_silent_close(&self) -> bool {
        matches!(self, AcceptError::Tls(e) if is_abrupt_close(e))
    }
}

/// A peer connection's byte stream.
#[derive(Debug)]
pub(crate) enum PeerStream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP (either side).
    Tls(Box<tokio_rustls::TlsStream<TcpStream>>),
}

impl PeerStream {
    /// The remote address.
    pub fn peer_addr(&self) -> std::io::Result<SocketAddr> {
        match self {
            PeerStream::Plain(s) => s.peer_addr(),
            PeerStream::Tls(s) => s.get_ref().0.peer_addr(),
        }
    }
}

impl AsyncRead for PeerStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            PeerStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            PeerStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            PeerStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            PeerStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            PeerStream::Plain(s) => Pin::new(s).poll_flush(cx),
            PeerStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            PeerStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            PeerStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The HTTP API's TLS server config: the node's certificate and key
/// (TLS 1.2 and 1.3), and, with `client_ca`, a required client
/// certificate signed by that CA.
pub fn http_server_config(
    files: &TlsFiles,
    client_ca: Option<&Path>,
) -> Result<ServerConfig, TlsError> {
    let certs = read_certs("certificate", &files.cert)?;
    let key = read_key(&files.key)?;
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(config_err)?;
    let builder = match client_ca {
        Some(ca) => builder.with_client_cert_verifier(
            WebPkiClientVerifier::builder_with_provider(read_roots(ca)?, provider)
                .build()
                .map_err(ca_err(ca))?,
        ),
        None => builder.with_no_client_auth(),
    };
    builder
        .with_single_cert(certs, key)
        .map_err(cert_key_err(&files.cert, &files.key))
}

/// A TLS client config trusting the CA in `ca` (PEM), presenting the
/// client certificate `cert`/`key` if given: for `metawalctl`, tests and
/// tools that talk to a node's HTTPS API.
pub fn http_client_config(
    ca: &Path,
    client: Option<(&Path, &Path)>,
) -> Result<ClientConfig, TlsError> {
    let roots = read_roots(ca)?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(config_err)?
        .with_root_certificates(roots);
    match client {
        Some((cert, key)) => builder
            .with_client_auth_cert(read_certs("certificate", cert)?, read_key(key)?)
            .map_err(cert_key_err(cert, key)),
        None => Ok(builder.with_no_client_auth()),
    }
}
