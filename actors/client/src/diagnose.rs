//! Why a node never read a request as HTTP: TLS failures, and ports that
//! speak something else.
//!
//! Why a module of its own: a TLS failure means the server never saw the
//! request, also for a write — so a write that failed this way was *not*
//! applied and may go to another node — but the HTTP client only reports
//! "broken pipe" or an unparsable status line. This module turns those into
//! a [`Diagnosis`] a person can act on, before any request is written when
//! possible ([`tls_preflight`]) or from the failure afterwards
//! ([`tls_failure`], [`probe_plain`]). It also recognises a metawal
//! *replication* listener (the port peers connect to), which speaks first:
//! it sends a replication frame as soon as a connection is up.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use metawal::codec::FrameCodec;
use metawal::frame::Frame;
use metawal::NodeId;
use rustls::{AlertDescription as A, CertificateError as C, ClientConfig, Error as E};
use tokio_util::codec::Decoder;

use crate::endpoint::{authority, is_http, is_https, origin};
use crate::CONNECT_TIMEOUT;

/// How long [`tls_preflight`] waits for the node's verdict on the client
/// certificate after the handshake.
pub const PREFLIGHT_VERDICT: Duration = Duration::from_millis(1500);

/// How long a probe waits for a port to speak first (a replication
/// listener sends its first frame at once; an HTTP server never does).
const SPEAKS_FIRST_WAIT: Duration = Duration::from_millis(500);

/// The ALPN protocol metawal's HTTP API (actix) always negotiates.
const HTTP11: &[u8] = b"http/1.1";

/// Why a node did not read a request as HTTP. Nothing was applied: the
/// server never saw the request. The text says what to do, naming
/// metawalctl's flags (`--cacert`, `--cert`/`--key`, `--endpoints`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Diagnosis {
    /// The node's certificate is not signed by a trusted CA.
    #[error(
        "TLS: the node's certificate is not signed by a trusted CA (unknown issuer): pass \
         --cacert with the CA that signed the nodes' certificates ({0})"
    )]
    UnknownIssuer(rustls::Error),
    /// The node's certificate is for other names.
    #[error(
        "TLS: the node's certificate is not valid for the host name in the endpoint: use a \
         name or IP address the certificate lists ({0})"
    )]
    NotValidForName(rustls::Error),
    /// The node's certificate has expired.
    #[error("TLS: the node's certificate has expired ({0})")]
    Expired(rustls::Error),
    /// The node's certificate was refused for another reason.
    #[error("TLS: the node's certificate was refused: {0}")]
    CertificateRefused(rustls::Error),
    /// The node requires a client certificate and none was given.
    #[error("TLS: the node requires a client certificate: pass --cert and --key ({0})")]
    ClientCertificateRequired(rustls::Error),
    /// The node refused the client certificate.
    #[error(
        "TLS: the node refused the client certificate (--cert must be signed by the CA the \
         node was given with --http-client-ca, and valid now) ({0})"
    )]
    ClientCertificateRefused(rustls::Error),
    /// An `https://` endpoint that does not answer with TLS.
    #[error(
        "TLS: the node did not answer with TLS: does it serve plain HTTP (no --http-tls)? \
         then use an http:// endpoint ({0})"
    )]
    NotTls(rustls::Error),
    /// Any other handshake failure.
    #[error("TLS handshake failed: {0}")]
    Handshake(rustls::Error),
    /// The node closed the connection right after the handshake.
    #[error(
        "TLS: the node closed the connection right after the handshake: it refuses this \
         client (a node run with --http-client-ca needs --cert and --key signed by that CA)"
    )]
    ClosedAfterHandshake,
    /// An `http://` endpoint whose port speaks TLS.
    #[error(
        "the node speaks HTTPS ({}): use https:// endpoints, or give --cacert so that \
         host:port endpoints use https://",
        if *dropped { "it dropped a plain HTTP request, and answers a probe with a TLS alert" }
        else { "it answered plain HTTP with a TLS alert" }
    )]
    SpeaksHttps {
        /// The request was dropped (reset) and a probe found TLS; otherwise
        /// the node answered the request itself with a TLS alert.
        dropped: bool,
    },
    /// The port is a metawal replication listener (where peers connect),
    /// not the HTTP API.
    #[error(
        "reached a metawal replication listener{}, not the HTTP API: point --endpoints at the \
         node's HTTP address (metawal-node --http ADDR), not at its replication port",
        replication_who(*node, cluster.as_deref(), *tls)
    )]
    ReplicationListener {
        /// The node id it announced, if it sent a `Challenge`.
        node: Option<NodeId>,
        /// The cluster id it announced, if it sent a `Challenge`.
        cluster: Option<String>,
        /// Whether it spoke TLS (mutual TLS 1.3, as peers do).
        tls: bool,
    },
}

/// ` (node 2 of cluster "c", mutual TLS)` or what of it is known.
fn replication_who(node: Option<NodeId>, cluster: Option<&str>, tls: bool) -> String {
    let mut parts = Vec::new();
    match (node, cluster) {
        (Some(n), Some(c)) => parts.push(format!("node {n} of cluster {c:?}")),
        (Some(n), None) => parts.push(format!("node {n}")),
        _ => {}
    }
    if tls {
        parts.push("mutual TLS without HTTP".to_string());
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    }
}

impl Diagnosis {
    /// Whether TLS itself failed (everything but a replication listener).
    pub fn is_tls(&self) -> bool {
        !matches!(self, Diagnosis::ReplicationListener { .. })
    }
}

/// A TLS failure that happened before the server could read the request,
/// from a ureq transport error on `url`. `None` if `t` is not one.
///
/// rustls' error sits inside `std::io::Error`s (whose `source()` skips
/// their payload), so the chain is walked through `get_ref()` too. Plain
/// HTTP sent to an HTTPS port is recognised by the TLS alert record the
/// server answers with (ureq reports it as an unparsable status line of
/// bytes `[21, 3, …]`: content type 21 = alert, version 3.x).
pub fn tls_failure(url: &str, t: &ureq::Transport) -> Option<Diagnosis> {
    if !is_https(url) {
        let text = t.to_string();
        return (text.contains("[21, 3,") || text.contains("[22, 3,"))
            .then_some(Diagnosis::SpeaksHttps { dropped: false });
    }
    let mut stack: Vec<&(dyn std::error::Error + 'static)> = vec![t];
    for _ in 0..16 {
        let e = stack.pop()?;
        if let Some(r) = e.downcast_ref::<E>() {
            return Some(describe_rustls(r));
        }
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            stack.push(inner);
        }
        if let Some(next) = e.source() {
            stack.push(next);
        }
    }
    None
}

/// What a rustls error means, for a person.
pub fn describe_rustls(found: &rustls::Error) -> Diagnosis {
    let e = found.clone();
    match found {
        E::InvalidCertificate(C::UnknownIssuer) => Diagnosis::UnknownIssuer(e),
        E::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
            Diagnosis::NotValidForName(e)
        }
        E::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => Diagnosis::Expired(e),
        E::InvalidCertificate(_) => Diagnosis::CertificateRefused(e),
        E::AlertReceived(A::CertificateRequired) => Diagnosis::ClientCertificateRequired(e),
        E::AlertReceived(a) if refuses_client_certificate(*a) => {
            Diagnosis::ClientCertificateRefused(e)
        }
        E::InvalidMessage(_) => Diagnosis::NotTls(e),
        _ => Diagnosis::Handshake(e),
    }
}

/// The alerts a server sends when it does not accept our client certificate.
fn refuses_client_certificate(a: A) -> bool {
    matches!(
        a,
        A::CertificateRequired
            | A::BadCertificate
            | A::UnknownCA
            | A::CertificateUnknown
            | A::UnsupportedCertificate
            | A::CertificateExpired
            | A::CertificateRevoked
            | A::AccessDenied
    )
}

/// Checks, before any request is sent to the node at `url` (`https://`),
/// that TLS with `config` works there, including the node's verdict on our
/// client certificate, and that the port is an HTTP API.
///
/// Why: in TLS 1.3 the client's side of the handshake ends when it has
/// sent its certificate; a node that refuses it (none given, or from
/// another CA) says so with an alert that can arrive after the request is
/// written, so the HTTP client may report only "broken pipe" — for a write
/// that would look like an unknown outcome although the server never read
/// it. Here nothing but the handshake is sent: the node then either sends
/// its session tickets (accepted), an alert or a close (refused), or nothing
/// within [`PREFLIGHT_VERDICT`] (taken as accepted).
///
/// The handshake offers ALPN `http/1.1`, which metawal's HTTP API always
/// accepts and its replication listener never does: a node that does not
/// negotiate it and refuses our client certificate, or that speaks a
/// replication frame first, is a replication listener. `Err` is the
/// problem; anything else (cannot connect, …) is left to the real request.
pub fn tls_preflight(config: &Arc<ClientConfig>, url: &str) -> Result<(), Diagnosis> {
    let Some((mut tcp, mut conn)) = preflight_connect(config, url) else {
        return Ok(());
    };
    let mut rounds = 0;
    while conn.is_handshaking() && rounds < 100 {
        rounds += 1;
        if let Err(e) = conn.complete_io(&mut tcp) {
            let Some(r) = e.get_ref().and_then(|i| i.downcast_ref::<E>()) else {
                return Ok(());
            };
            if matches!(r, E::InvalidMessage(_)) {
                // Not TLS: perhaps a plaintext replication listener, which
                // spoke first.
                let plain = format!("http://{}", authority(url));
                if let PlainProbe::Replication { node, cluster } = probe_plain(&plain) {
                    return Err(Diagnosis::ReplicationListener {
                        node,
                        cluster,
                        tls: false,
                    });
                }
            }
            return Err(refine(describe_rustls(r), &conn));
        }
    }
    let http = conn.alpn_protocol() == Some(HTTP11);
    if tcp.set_read_timeout(Some(PREFLIGHT_VERDICT)).is_err() {
        return Ok(());
    }
    match conn.read_tls(&mut tcp) {
        Ok(0) => Err(refine(Diagnosis::ClosedAfterHandshake, &conn)),
        Ok(_) => match conn.process_new_packets() {
            Err(e) => Err(refine(describe_rustls(&e), &conn)),
            Ok(_) if http => Ok(()),
            Ok(_) => speaks_first_over_tls(&mut tcp, &mut conn),
        },
        Err(e) if is_timeout(&e) => Ok(()),
        Err(_) => Err(refine(Diagnosis::ClosedAfterHandshake, &conn)),
    }
}

/// A refusal of our client certificate by a server that did not negotiate
/// ALPN `http/1.1` is a replication listener's (peers present certificates
/// and speak no HTTP); anything else stays as it is.
fn refine(d: Diagnosis, conn: &rustls::ClientConnection) -> Diagnosis {
    if conn.is_handshaking() || conn.alpn_protocol() == Some(HTTP11) {
        return d;
    }
    match d {
        Diagnosis::ClientCertificateRequired(_) | Diagnosis::ClientCertificateRefused(_) => {
            Diagnosis::ReplicationListener {
                node: None,
                cluster: None,
                tls: true,
            }
        }
        other => other,
    }
}

/// The TCP connection and the rustls client for a preflight of `url`,
/// offering ALPN `http/1.1`; `None` if `url` is not `https://` or cannot
/// be reached (the real request will say why).
fn preflight_connect(
    config: &Arc<ClientConfig>,
    url: &str,
) -> Option<(TcpStream, rustls::ClientConnection)> {
    if !is_https(url) {
        return None;
    }
    let authority = authority(url);
    let host = match authority.rsplit_once(':') {
        Some((h, _)) => h.trim_start_matches('[').trim_end_matches(']'),
        None => authority,
    };
    let name = rustls::pki_types::ServerName::try_from(host.to_string()).ok()?;
    let tcp = connect(authority, CONNECT_TIMEOUT)?;
    tcp.set_read_timeout(Some(CONNECT_TIMEOUT)).ok()?;
    let mut offer = ClientConfig::clone(config);
    offer.alpn_protocols = vec![HTTP11.to_vec()];
    let conn = rustls::ClientConnection::new(Arc::new(offer), name).ok()?;
    Some((tcp, conn))
}

/// After an accepted handshake without ALPN: does the server send
/// application data unasked (within [`PREFLIGHT_VERDICT`])? A replication
/// frame means a replication listener; an HTTP server never speaks first.
fn speaks_first_over_tls(
    tcp: &mut TcpStream,
    conn: &mut rustls::ClientConnection,
) -> Result<(), Diagnosis> {
    let deadline = Instant::now() + PREFLIGHT_VERDICT;
    let mut got = Vec::new();
    loop {
        let mut buf = [0u8; 4096];
        match conn.reader().read(&mut buf) {
            Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => {}
        }
        if let Some((node, cluster)) = replication_frame(&got) {
            return Err(Diagnosis::ReplicationListener {
                node,
                cluster,
                tls: true,
            });
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || got.len() > 64 << 10 || tcp.set_read_timeout(Some(left)).is_err() {
            return Ok(());
        }
        match conn.read_tls(tcp) {
            Ok(0) | Err(_) => return Ok(()),
            Ok(_) if conn.process_new_packets().is_err() => return Ok(()),
            Ok(_) => {}
        }
    }
}

/// What a plain TCP probe of a port found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PlainProbe {
    /// It answers plain HTTP with a TLS alert: an HTTPS port.
    Tls,
    /// It spoke a metawal replication frame first: a replication listener.
    Replication {
        /// The node id in its `Challenge`, if it sent one.
        node: Option<NodeId>,
        /// The cluster id in its `Challenge`, if it sent one.
        cluster: Option<String>,
    },
    /// Neither (or it could not be reached).
    Unknown,
}

/// After a plain `http://` request to `url` broke: what is on that port?
/// First a short wait for the port to speak first (a replication listener
/// sends its first frame at once); then one raw `GET /livez` in a single
/// write (the server reads all of it, so its answer cannot be lost to a
/// reset) and a look at the first bytes back, within a second: a TLS alert
/// record (`21, 3, …`) means an HTTPS port.
pub fn probe_plain(url: &str) -> PlainProbe {
    if !is_http(url) {
        return PlainProbe::Unknown;
    }
    let authority = authority(url);
    let Some(mut tcp) = connect(authority, Duration::from_secs(1)) else {
        return PlainProbe::Unknown;
    };
    if tcp.set_read_timeout(Some(SPEAKS_FIRST_WAIT)).is_err() {
        return PlainProbe::Unknown;
    }
    let mut first = [0u8; 4096];
    if let Ok(n) = tcp.read(&mut first) {
        return match replication_frame(&first[..n]) {
            Some((node, cluster)) => PlainProbe::Replication { node, cluster },
            None if first[..n].starts_with(&[21, 3]) => PlainProbe::Tls,
            None => PlainProbe::Unknown,
        };
    }
    let limit = Some(Duration::from_secs(1));
    if tcp.set_read_timeout(limit).is_err() || tcp.set_write_timeout(limit).is_err() {
        return PlainProbe::Unknown;
    }
    let probe = format!("GET /livez HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    if tcp.write_all(probe.as_bytes()).is_err() {
        return PlainProbe::Unknown;
    }
    let mut b = [0u8; 2];
    if tcp.read_exact(&mut b).is_ok() && b == [21, 3] {
        PlainProbe::Tls
    } else {
        PlainProbe::Unknown
    }
}

/// Whether the plain `http://` port of `url` speaks TLS ([`probe_plain`]).
pub fn speaks_tls(url: &str) -> bool {
    probe_plain(url) == PlainProbe::Tls
}

/// `Some((node, cluster))` if `bytes` start with a whole metawal replication
/// frame (a `Challenge` names its node and cluster; other frames do not).
fn replication_frame(bytes: &[u8]) -> Option<(Option<NodeId>, Option<String>)> {
    if bytes.len() < 5 {
        return None;
    }
    let mut buf = BytesMut::from(bytes);
    match FrameCodec::new(64 << 10).decode(&mut buf) {
        Ok(Some(Frame::Challenge {
            node_id,
            cluster_id,
            ..
        })) => Some((Some(node_id), Some(cluster_id))),
        Ok(Some(_)) => Some((None, None)),
        _ => None,
    }
}

/// A TCP connection to `authority` (`host:port`) within `limit`.
fn connect(authority: &str, limit: Duration) -> Option<TcpStream> {
    let addr: SocketAddr = authority.to_socket_addrs().ok()?.next()?;
    TcpStream::connect_timeout(&addr, limit).ok()
}

/// A read that ran into its timeout.
fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// [`tls_preflight`] once per `https://` origin, for a client that talks
/// to the same nodes many times.
#[derive(Debug)]
pub struct Preflight {
    config: Option<Arc<ClientConfig>>,
    passed: Mutex<BTreeSet<String>>,
}

impl Preflight {
    /// Preflights with `config`; with `None` (ureq's built-in web roots)
    /// nothing is checked ahead.
    pub fn new(config: Option<Arc<ClientConfig>>) -> Preflight {
        Preflight {
            config,
            passed: Mutex::new(BTreeSet::new()),
        }
    }

    /// Checks `url`'s origin unless it passed before (or is not `https://`).
    pub fn check(&self, url: &str) -> Result<(), Diagnosis> {
        let Some(config) = &self.config else {
            return Ok(());
        };
        if !is_https(url) {
            return Ok(());
        }
        let origin = origin(url);
        let mut passed = self.passed.lock().unwrap_or_else(|e| e.into_inner());
        if passed.contains(&origin) {
            return Ok(());
        }
        tls_preflight(config, url)?;
        passed.insert(origin);
        Ok(())
    }
}
