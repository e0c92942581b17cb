//! Mutual TLS between nodes, tried as an attacker would: peers with a
//! certificate from another CA, an expired one, none, a plaintext client,
//! a stalled handshake, node 2's certificate used to act as another node
//! (connecting, and listening in a peer's place), and frames injected into
//! an established connection. Each is refused with a logged reason, nothing
//! is applied, and the cluster keeps serving.

use metawal_testkit as common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::certs::{LeafOpts, TestCa};
use common::rawpeer::{logged, RawPeer};
use common::{create_topic, fast_config, wait_converged, wait_until, TestCluster, CLUSTER, SECRET};
use metawal::codec::FrameCodec;
use metawal::frame::{Frame, RejectReason};
use metawal::handshake::HandshakeKeys;
use metawal::record::{concat_records, Record};
use metawal::Entry;
use metawal_actors::tls::{peer_name, TlsFiles};
use metawal_actors::{Acks, Node};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Encoder;

const LIMIT: Duration = Duration::from_secs(10);

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .unwrap()
        .map(|c| c.unwrap())
        .collect()
}

fn roots(ca: &Path) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(ca) {
        roots.add(c).unwrap();
    }
    roots
}

/// A TLS client that trusts `trust_ca` and presents `cert` (if any).
fn connector(trust_ca: &Path, cert: Option<&TlsFiles>) -> tokio_rustls::TlsConnector {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots(trust_ca));
    let config = match cert {
        Some(f) => builder
            .with_client_auth_cert(
                certs(&f.cert),
                PrivateKeyDer::from_pem_file(&f.key).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// A TLS connection to node `node` at `addr`, presenting `cert`. The
/// handshake may "succeed" on the client side even when the server refuses
/// the client certificate (TLS 1.3 sends the refusal after), so callers
/// look at what comes next.
async fn tls_peer(
    addr: SocketAddr,
    node: u64,
    trust_ca: &Path,
    cert: Option<&TlsFiles>,
) -> std::io::Result<RawPeer> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(peer_name(node, CLUSTER)).unwrap();
    let tls = connector(trust_ca, cert).connect(name, tcp).await?;
    Ok(RawPeer::over(tls))
}

/// Wait until a captured log line has every one of `parts`.
async fn wait_logged(logs: &Mutex<Vec<u8>>, parts: &[&str]) {
    wait_until(&format!("a log line with {parts:?}"), LIMIT, || {
        let ok = logged(logs, parts);
        async move { ok }
    })
    .await;
}

/// What a node's log and state look like, to show nothing changed.
async fn snapshot_of(node: &Node) -> (u64, Option<u64>, u64, u64, usize) {
    let s = node.status().await.unwrap();
    (
        s.epoch,
        s.leader,
        s.log_end,
        node.view().applied_offset(),
        node.view().topics().len(),
    )
}

/// Five more `acks=all` writes through node 1 reach every node.
async fn still_serving(c: &TestCluster, prefix: &str, ids: &[u64]) {
    let leader = c.node(1).clone();
    let before = leader.status().await.unwrap().log_end;
    for i in 0..5 {
        leader
            .propose(create_topic(&format!("{prefix}{i}"), 1, 3), Acks::All)
            .await
            .unwrap();
    }
    let end = wait_converged(c, ids, LIMIT).await;
    assert_eq!(end, before + 5);
}

#[actix::test]
async fn peers_with_bad_certificates_are_refused_at_the_tls_layer_and_nothing_changes() {
    let (_serial, logs) = crate::serial().await;
    let c = TestCluster::start_tls(3, fast_config()).await;
    let ca = c.tls.as_ref().unwrap();
    let dir = c.dir.path();
    still_serving(&c, "a", &[1, 2, 3]).await;
    let follower = c.node(2).clone();
    let addr = follower.replication_addr();
    let before = snapshot_of(&follower).await;

    // A certificate for node 1's name, from another CA.
    let rogue = TestCa::new(dir, "rogue", CLUSTER).unwrap();
    let rogue_node1 = rogue.node(1).unwrap();
    // An expired certificate from the right CA.
    let expired = ca
        .node_with(
            1,
            &LeafOpts {
                expired: true,
                ..LeafOpts::default()
            },
        )
        .unwrap();
    for (what, cert, reason) in [
        ("another CA", Some(&rogue_node1), "UnknownIssuer"),
        ("expired", Some(&expired), "certificate expired"),
        ("no certificate", None, "peer sent no certificates"),
    ] {
        // The server refuses during the handshake: the client sees an
        // error at once or, TLS 1.3, an alert instead of the Challenge.
        if let Ok(mut peer) = tls_peer(addr, 2, &ca.ca_path(), cert).await {
            peer.expect_closed().await;
        }
        eprintln!("{what}: refused");
        wait_logged(&logs, &["replication connection refused", "node=2", reason]).await;
    }

    // A plaintext leader on the TLS port: its first frame is not TLS.
    let mut plain = RawPeer::connect(addr).await;
    let keys = HandshakeKeys::new(1, CLUSTER, SECRET.to_vec()).unwrap();
    plain
        .send(keys.hello(before.0 + 5, &[1u8; 16], &[9u8; 16]).unwrap())
        .await;
    plain.expect_closed().await;
    wait_logged(
        &logs,
        &[
            "replication connection refused",
            "node=2",
            "TLS handshake failed",
        ],
    )
    .await;

    // Nothing was applied or persisted, and the follower still follows.
    assert_eq!(snapshot_of(&follower).await, before);
    still_serving(&c, "b", &[1, 2, 3]).await;
    c.shutdown().await;
}

#[actix::test]
async fn a_stalled_tls_handshake_is_cut_off_after_the_session_timeout() {
    let (_serial, logs) = crate::serial().await;
    let cfg = fast_config();
    let timeout = cfg.session_timeout;
    let c = TestCluster::start_tls(3, cfg).await;
    let follower = c.node(2).clone();
    let addr = follower.replication_addr();
    let before = snapshot_of(&follower).await;

    // More stalled connections than the node serves at once (16): each
    // sends a TLS record header promising 200 bytes, then nothing.
    let started = Instant::now();
    let mut stalled = Vec::new();
    for _ in 0..20 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&[0x16, 0x03, 0x01, 0x00, 0xc8]).await.unwrap();
        stalled.push(s);
    }
    // Writes go on meanwhile (the leader's session with node 2 is up).
    still_serving(&c, "s", &[1, 2, 3]).await;
    for s in &mut stalled {
        let mut buf = [0u8; 64];
        let left = (started + timeout + LIMIT).saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {}
            Ok(Ok(n)) => panic!("a stalled handshake got {n} bytes"),
            Err(_) => panic!("a stalled handshake was not cut off"),
        }
    }
    let took = started.elapsed();
    assert!(
        took >= timeout - Duration::from_millis(50),
        "cut off after {took:?}, before the session timeout {timeout:?}"
    );
    eprintln!("20 stalled handshakes cut off after {took:?} (session timeout {timeout:?})");
    wait_logged(
        &logs,
        &[
            "replication connection refused",
            "node=2",
            "TLS handshake not finished within",
        ],
    )
    .await;

    // Slots are free again: a restarted follower's connection is served.
    assert_eq!(snapshot_of(&follower).await.0, before.0);
    let mut c = c;
    c.stop_node(3).await;
    c.start_node(3).await;
    c.wait_isr_of(1, 3, LIMIT).await;
    still_serving(&c, "t", &[1, 2, 3]).await;
    c.shutdown().await;
}

/// Node 2's certificate, in the hands of someone who also has the secret
/// (a compromised node 2): it can neither lead as node 3 or node 1, nor
/// vote as node 3. The HMAC proof verifies; the certificate binding
/// refuses.
#[actix::test]
async fn a_certificate_for_one_node_cannot_act_as_another() {
    let (_serial, logs) = crate::serial().await;
    let c = TestCluster::start_tls(3, fast_config()).await;
    let ca = c.tls.as_ref().unwrap();
    still_serving(&c, "a", &[1, 2, 3]).await;
    let target = c.node(2).clone();
    let addr = target.replication_addr();
    let before = snapshot_of(&target).await;
    // Node 2's certificate, presented to node 2 by a process claiming to
    // be node 3 (as a leader and as a voter) or node 1.
    let node2 = ca.node(2).unwrap();
    for (claim, voter) in [(3u64, false), (3, true), (1, false)] {
        let mut peer = tls_peer(addr, 2, &ca.ca_path(), Some(&node2))
            .await
            .expect("the TLS handshake itself succeeds: the certificate is valid");
        let nonce = peer.challenge().await;
        let keys = HandshakeKeys::new(claim, CLUSTER, SECRET.to_vec()).unwrap();
        let frame = if voter {
            keys.voter_hello(&nonce, &[9u8; 16]).unwrap()
        } else {
            keys.hello(before.0 + 5, &nonce, &[9u8; 16]).unwrap()
        };
        peer.send(frame).await;
        match peer.next().await {
            Some(Frame::Reject { reason, .. }) => assert_eq!(reason, RejectReason::NotCertified),
            other => panic!("expected Reject NotCertified, got {other:?}"),
        }
        peer.expect_closed().await;
        wait_logged(
            &logs,
            &[
                "node=2",
                &format!(
                    "peer claims to be node {claim}, but its TLS certificate is for node(s) [2]"
                ),
            ],
        )
        .await;
    }
    assert_eq!(snapshot_of(&target).await, before);
    still_serving(&c, "b", &[1, 2, 3]).await;
    c.shutdown().await;
}

/// Someone listening in node 3's place with node 2's (valid) certificate:
/// the others' TLS clients ask for node-3's name and refuse it, so no frame
/// (append or vote) reaches the impostor, and nodes 1 and 2 go on.
#[actix::test]
async fn a_peer_listening_with_another_nodes_certificate_is_not_talked_to() {
    let (_serial, logs) = crate::serial().await;
    let mut c = TestCluster::new_tls(3, &[], fast_config()).await;
    let ca = c.tls.as_ref().unwrap();
    let node2 = ca.node(2).unwrap();
    let server = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            certs(&node2.cert),
            PrivateKeyDer::from_pem_file(&node2.key).unwrap(),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    // Node 3's own port (the cluster holds it: nothing else can bind it).
    let impostor = c.listener(3);
    impostor.set_nonblocking(true).unwrap();
    let impostor = TcpListener::from_std(impostor).unwrap();
    let (tried, served) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (t, s) = (tried.clone(), served.clone());
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = impostor.accept().await {
            t.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut tls) = acceptor.accept(tcp).await {
                // The handshake finished on this side: did any byte of the
                // protocol follow?
                let mut buf = [0u8; 1];
                if let Ok(Ok(n)) =
                    tokio::time::timeout(Duration::from_millis(500), tls.read(&mut buf)).await
                {
                    if n > 0 {
                        s.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    });
    c.start_node(1).await;
    c.start_node(2).await;
    let leader = c.wait_leader(Duration::from_secs(20)).await;
    wait_until("a node to try the impostor", LIMIT, || {
        let n = tried.load(Ordering::Relaxed);
        async move { n >= 2 }
    })
    .await;
    wait_logged(
        &logs,
        &["peer=3", "connection refused by TLS", "not valid for name"],
    )
    .await;
    // Two of three still commit acks=all (min ISR 2).
    let node = c.node(leader).clone();
    for i in 0..5 {
        node.propose(create_topic(&format!("i{i}"), 1, 2), Acks::All)
            .await
            .unwrap();
    }
    assert_eq!(
        served.load(Ordering::Relaxed),
        0,
        "a node sent protocol bytes to the impostor"
    );
    task.abort();
    c.shutdown().await;
}

/// What the injecting proxy forwards as one unit: a frame (u32 length
/// prefix) on a plaintext connection, a record (5-byte header, u16 length)
/// on a TLS one. Injected bytes go in between units, as an attacker on the
/// path would place them.
#[derive(Clone, Copy)]
enum Units {
    Frames,
    TlsRecords,
}

/// A byte proxy in front of a follower that can slip bytes into the
/// leader → follower direction.
struct InjectProxy {
    addr: SocketAddr,
    inject: Arc<Mutex<Option<Vec<u8>>>>,
    injected: Arc<AtomicU64>,
    connections: Arc<AtomicU64>,
}

async fn read_unit(r: &mut (impl AsyncReadExt + Unpin), units: Units) -> Option<Vec<u8>> {
    let (head, len) = match units {
        Units::Frames => {
            let mut h = [0u8; 4];
            r.read_exact(&mut h).await.ok()?;
            (h.to_vec(), u32::from_be_bytes(h) as usize)
        }
        Units::TlsRecords => {
            let mut h = [0u8; 5];
            r.read_exact(&mut h).await.ok()?;
            (h.to_vec(), u16::from_be_bytes([h[3], h[4]]) as usize)
        }
    };
    if len > 16 * 1024 * 1024 {
        return None;
    }
    let mut unit = head;
    let start = unit.len();
    unit.resize(start + len, 0);
    r.read_exact(&mut unit[start..]).await.ok()?;
    Some(unit)
}

impl InjectProxy {
    async fn start(target: SocketAddr, units: Units) -> InjectProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let p = InjectProxy {
            addr: listener.local_addr().unwrap(),
            inject: Arc::default(),
            injected: Arc::default(),
            connections: Arc::default(),
        };
        let (inject, injected, connections) =
            (p.inject.clone(), p.injected.clone(), p.connections.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(target).await else {
                    continue;
                };
                connections.fetch_add(1, Ordering::Relaxed);
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut sr, &mut cw).await;
                });
                let (inject, injected) = (inject.clone(), injected.clone());
                tokio::spawn(async move {
                    while let Some(unit) = read_unit(&mut cr, units).await {
                        if sw.write_all(&unit).await.is_err() {
                            return;
                        }
                        let bytes = inject.lock().unwrap().take();
                        if let Some(bytes) = bytes {
                            if sw.write_all(&bytes).await.is_err() {
                                return;
                            }
                            injected.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        p
    }
}

/// Start 3 nodes, node 1 leading and reaching node 2 through an
/// [`InjectProxy`]; once idle, slip a forged `Append` (the next offset, the
/// leader's epoch, a valid CRC, a commit point covering it) into node 1's
/// connection to node 2. Returns whether node 2 applied it, and the cluster.
async fn inject_forged_append(tls: bool) -> (bool, TestCluster, InjectProxy) {
    let mut c = if tls {
        TestCluster::new_tls(3, &[], fast_config()).await
    } else {
        TestCluster::new(3, &[], fast_config()).await
    };
    let units = if tls {
        Units::TlsRecords
    } else {
        Units::Frames
    };
    let proxy = InjectProxy::start(c.addrs[&2], units).await;
    let via = proxy.addr;
    c.start_node_with(1, |cfg| {
        cfg.peers.insert(2, via);
    })
    .await;
    c.start_node(2).await;
    c.start_node(3).await;
    c.make_leader(1).await;
    still_serving(&c, "a", &[1, 2, 3]).await;
    let status = c.node(1).status().await.unwrap();
    let next = status.log_end + 1;
    let forged = Record::encode(&Entry {
        offset: next,
        epoch: status.epoch,
        command: create_topic("injected", 1, 3),
    })
    .unwrap();
    let frame = Frame::Append {
        first_offset: next,
        records: concat_records([&forged]),
        commit: next,
    };
    let mut bytes = BytesMut::new();
    FrameCodec::new(16 * 1024 * 1024)
        .encode(&frame, &mut bytes)
        .unwrap();
    *proxy.inject.lock().unwrap() = Some(bytes.to_vec());
    wait_until("the proxy to inject the forged Append", LIMIT, || {
        let n = proxy.injected.load(Ordering::Relaxed);
        async move { n == 1 }
    })
    .await;
    let view = c.node(2).view();
    let applied = support_wait(Duration::from_secs(2), || view.topic("injected").is_some()).await;
    (applied, c, proxy)
}

/// Poll `cond` for up to `limit`; whether it came true.
async fn support_wait(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cond()
}

#[actix::test]
async fn frames_injected_into_a_peer_connection_are_refused_at_the_tls_layer() {
    let (_serial, logs) = crate::serial().await;
    // Without TLS the forged frame is accepted and applied: the HMAC
    // handshake authenticates the connection, not its frames. This is what
    // shows the forgery is otherwise valid, so the refusal below is TLS's.
    let (applied, c, _proxy) = inject_forged_append(false).await;
    assert!(applied, "the forged Append was not applied without TLS");
    c.shutdown().await;

    let (applied, c, proxy) = inject_forged_append(true).await;
    assert!(!applied, "a forged Append was applied over TLS");
    // Node 2 dropped the tampered connection (its TLS layer cannot
    // decrypt the injected bytes) and the leader reconnected.
    wait_logged(&logs, &["node=2", "bad data on replication connection"]).await;
    wait_until("the leader to reconnect through the proxy", LIMIT, || {
        let n = proxy.connections.load(Ordering::Relaxed);
        async move { n >= 2 }
    })
    .await;
    still_serving(&c, "b", &[1, 2, 3]).await;
    let topics: BTreeMap<u64, usize> = [1, 2, 3]
        .iter()
        .map(|&id| (id, c.node(id).view().topics().len()))
        .collect();
    assert!(topics.values().all(|&n| n == 10), "{topics:?}");
    for id in [1, 2, 3] {
        assert!(c.node(id).view().topic("injected").is_none());
    }
    c.shutdown().await;
}

/// A node whose own TLS set-up cannot work refuses to start, saying what
/// to fix, instead of starting and failing every handshake later; and a
/// config must choose TLS or plaintext explicitly.
#[actix::test]
async fn a_node_with_an_unusable_certificate_refuses_to_start() {
    let _serial = crate::serial().await;
    let c = TestCluster::new_tls(3, &[], fast_config()).await;
    let ca = c.tls.as_ref().unwrap();
    let dir = c.dir.path();
    let other = TestCa::new(dir, "other", CLUSTER).unwrap();
    let expired = ca
        .node_with(
            1,
            &LeafOpts {
                expired: true,
                ..LeafOpts::default()
            },
        )
        .unwrap();
    let for_node_2 = ca.node(2).unwrap();
    // Signed by another CA than the one configured.
    let mut from_other_ca = other.node(1).unwrap();
    from_other_ca.ca = ca.ca_path();
    let mut wrong_key = ca.node(1).unwrap();
    wrong_key.key = for_node_2.key.clone();
    let mut missing = ca.node(1).unwrap();
    missing.key = dir.join("no-such-key.pem");
    for (what, files, cluster, expect) in [
        ("expired", expired, CLUSTER, "certificate expired"),
        (
            "node 2's",
            for_node_2,
            CLUSTER,
            "certificate not valid for name \"node-1.test-cluster\"",
        ),
        ("another CA's", from_other_ca, CLUSTER, "UnknownIssuer"),
        (
            "a key of another certificate",
            wrong_key,
            CLUSTER,
            "TLS configuration refused",
        ),
        (
            "a missing key file",
            missing,
            CLUSTER,
            "cannot read the TLS private key",
        ),
        (
            "a cluster id that is no DNS name",
            ca.node(1).unwrap(),
            "my cluster",
            "cannot be used with TLS",
        ),
    ] {
        let mut cfg = c.config(1);
        cfg.cluster_id = cluster.to_string();
        cfg.tls = Some(files);
        let err = match common::start_node(cfg).await {
            Ok(_) => panic!("node 1 started with {what} certificate"),
            Err(e) => e,
        };
        assert!(err.contains(expect), "{what}: {err}");
        eprintln!("{what}: {err}");
    }
    // Neither TLS nor plaintext chosen, or both.
    let mut cfg = c.config(1);
    cfg.tls = None;
    let err = common::start_node(cfg.clone()).await.err().unwrap();
    assert!(err.contains("no TLS configured"), "{err}");
    cfg.tls = Some(ca.node(1).unwrap());
    cfg.insecure_plaintext = true;
    let err = common::start_node(cfg).await.err().unwrap();
    assert!(err.contains("both tls and insecure_plaintext"), "{err}");
}
