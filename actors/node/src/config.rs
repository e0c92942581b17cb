//! The command line and the configurations built from it: the flags
//! (clap, each also a `METAWAL_*` variable), the parsing of their values,
//! the shared secret, the TLS files, inherited listening sockets, and the
//! node's and the HTTP API's configurations.
//!
//! Its own file because reading the operator's settings is one concern of
//! its own; `main.rs` runs the node with what this builds.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use metawal_actors::http::HttpConfig;
use metawal_actors::tls::{http_server_config, TlsFiles};
use metawal_actors::{BoundListener, NodeConfig, NodeId, ReplicationConfig};

/// Environment variable holding the shared secret when `--secret-file` is not given.
const SECRET_ENV: &str = "METAWAL_SECRET";

#[derive(Parser, Debug)]
#[command(
    name = "metawal-node",
    version,
    about = "Run one metawal node: replicated cluster metadata through a write-ahead log",
    after_help = "The shared secret comes from --secret-file, or else from the METAWAL_SECRET \
                  environment variable; it must not be empty. Every flag can also be set by the \
                  METAWAL_* variable named in its help (lists comma-separated, e.g. \
                  METAWAL_PEERS=2=a:7101,3=b:7101). Logging: RUST_LOG (default info)."
)]
pub(crate) struct Args {
    /// This node's id (>= 1).
    #[arg(
        long,
        env = "METAWAL_NODE_ID",
        hide_env_values = true,
        value_name = "ID"
    )]
    pub(crate) node_id: NodeId,

    /// The cluster id; every node of the cluster must use the same one.
    #[arg(
        long,
        env = "METAWAL_CLUSTER_ID",
        hide_env_values = true,
        value_name = "ID"
    )]
    cluster_id: String,

    /// File holding the shared secret (one trailing newline is ignored).
    /// Without it, the secret is read from METAWAL_SECRET.
    #[arg(
        long,
        env = "METAWAL_SECRET_FILE",
        hide_env_values = true,
        value_name = "PATH"
    )]
    secret_file: Option<PathBuf>,

    /// Directory for the WAL, snapshots and the `meta` file (created if missing).
    #[arg(
        long,
        env = "METAWAL_DATA_DIR",
        hide_env_values = true,
        value_name = "DIR"
    )]
    data_dir: PathBuf,

    /// Address the replication listener binds, e.g. 0.0.0.0:7101.
    #[arg(
        long,
        env = "METAWAL_LISTEN",
        hide_env_values = true,
        value_name = "ADDR"
    )]
    listen: SocketAddr,

    /// Serve replication on this inherited listening socket (a file
    /// descriptor bound to --listen's address) instead of binding --listen:
    /// for supervisors that hold the port across restarts (socket
    /// activation, the test harness).
    #[arg(long, env = "METAWAL_LISTEN_FD", value_name = "FD")]
    listen_fd: Option<i32>,

    /// Another node of the cluster and its replication address, e.g.
    /// 2=10.0.0.2:7101 (repeat for each peer; host names are resolved once at start).
    #[arg(long = "peer", env = "METAWAL_PEERS", hide_env_values = true, value_name = "ID=ADDR", value_parser = parse_peer, value_delimiter = ',')]
    peers: Vec<(NodeId, SocketAddr)>,

    /// Join a running cluster instead of bootstrapping one: the node starts
    /// empty, never stands for election, and waits as a learner until the
    /// leader adds it (`metawalctl member add`). Its voters are found by
    /// asking these nodes' HTTP APIs (HOST:PORT, comma separated; HTTPS
    /// with --tls-ca) unless --peer names them.
    #[arg(
        long,
        env = "METAWAL_JOIN",
        hide_env_values = true,
        value_name = "HOST:PORT",
        value_delimiter = ','
    )]
    join: Vec<String>,

    /// acks=all needs at least this many in-sync replicas, leader included
    /// (capped at the cluster size) [default: 2].
    #[arg(
        long,
        env = "METAWAL_MIN_INSYNC_REPLICAS",
        hide_env_values = true,
        value_name = "N"
    )]
    min_insync_replicas: Option<usize>,

    /// Heartbeat interval on an idle link, in ms [default: 100].
    #[arg(
        long,
        env = "METAWAL_HEARTBEAT_MS",
        hide_env_values = true,
        value_name = "MS"
    )]
    heartbeat_ms: Option<u64>,

    /// Election timeout T, in ms: a follower that has not heard its leader
    /// for a random time in [T, 2T) stands for election; a leader that has
    /// not heard a majority for T steps down [default: 1000].
    #[arg(
        long,
        env = "METAWAL_ELECTION_TIMEOUT_MS",
        hide_env_values = true,
        value_name = "MS"
    )]
    election_timeout_ms: Option<u64>,

    /// A peer silent this long is dropped and reconnected, in ms [default: 2000].
    #[arg(
        long,
        env = "METAWAL_SESSION_TIMEOUT_MS",
        hide_env_values = true,
        value_name = "MS"
    )]
    session_timeout_ms: Option<u64>,

    /// A follower lagging this long leaves the ISR, in ms [default: 5000].
    #[arg(
        long,
        env = "METAWAL_REPLICA_LAG_MS",
        hide_env_values = true,
        value_name = "MS"
    )]
    replica_lag_ms: Option<u64>,

    /// A proposal not resolved in this time fails with a timeout, in ms [default: 5000].
    #[arg(
        long,
        env = "METAWAL_REQUEST_TIMEOUT_MS",
        hide_env_values = true,
        value_name = "MS"
    )]
    request_timeout_ms: Option<u64>,

    /// Take a snapshot every this many applied entries [default: 100000].
    #[arg(
        long,
        env = "METAWAL_SNAPSHOT_EVERY",
        hide_env_values = true,
        value_name = "N"
    )]
    snapshot_every: Option<u64>,

    /// Serve the HTTP API (docs/api.md) on this address, e.g. 0.0.0.0:8081.
    /// Without it the node serves no client API.
    #[arg(
        long,
        env = "METAWAL_HTTP",
        hide_env_values = true,
        value_name = "ADDR"
    )]
    http: Option<SocketAddr>,

    /// Serve the HTTP API on this inherited listening socket (bound to
    /// --http's address) instead of binding --http, as --listen-fd does.
    #[arg(long, env = "METAWAL_HTTP_FD", value_name = "FD", requires = "http")]
    http_fd: Option<i32>,

    /// Another node's HTTP address, e.g. 2=10.0.0.2:8081 (repeat for each
    /// peer): a follower redirects writes to the leader's (307).
    #[arg(long = "peer-http", env = "METAWAL_PEER_HTTP", hide_env_values = true, value_name = "ID=HOST:PORT", value_parser = parse_peer_http, value_delimiter = ',')]
    peer_http: Vec<(NodeId, String)>,

    /// Largest HTTP request body, in bytes [default: 1048576].
    #[arg(
        long,
        env = "METAWAL_HTTP_BODY_LIMIT",
        hide_env_values = true,
        value_name = "BYTES"
    )]
    http_body_limit: Option<usize>,

    /// Most /v1/watch streams at once [default: 256].
    #[arg(
        long,
        env = "METAWAL_MAX_WATCHERS",
        hide_env_values = true,
        value_name = "N"
    )]
    max_watchers: Option<usize>,

    /// A watch reader that takes no event for this long is cut off, in ms
    /// [default: 10000].
    #[arg(
        long,
        env = "METAWAL_WATCH_STALL_MS",
        hide_env_values = true,
        value_name = "MS"
    )]
    watch_stall_ms: Option<u64>,

    /// This node's TLS certificate chain (PEM). It must be valid for
    /// `node-<id>.<cluster-id>` (server and client auth), signed by --tls-ca.
    /// Read at start: a restart picks up a renewed file.
    #[arg(
        long,
        env = "METAWAL_TLS_CERT",
        hide_env_values = true,
        value_name = "PEM"
    )]
    tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM).
    #[arg(
        long,
        env = "METAWAL_TLS_KEY",
        hide_env_values = true,
        value_name = "PEM"
    )]
    tls_key: Option<PathBuf>,

    /// The CA certificate(s) (PEM) every peer's certificate must chain to.
    #[arg(
        long,
        env = "METAWAL_TLS_CA",
        hide_env_values = true,
        value_name = "PEM"
    )]
    tls_ca: Option<PathBuf>,

    /// Run replication and election connections without TLS. Anyone on the
    /// network path can then read the metadata and inject frames; for
    /// tests and trusted networks only (a warning is logged at start).
    #[arg(
        long,
        env = "METAWAL_INSECURE_PLAINTEXT",
        conflicts_with_all = ["tls_cert", "tls_key", "tls_ca"]
    )]
    insecure_plaintext: bool,

    /// Serve the HTTP API over TLS with --tls-cert and --tls-key (add the
    /// host names or IPs clients use to the certificate). Redirects to
    /// other nodes then use https.
    #[arg(long, env = "METAWAL_HTTP_TLS", requires = "http")]
    http_tls: bool,

    /// Require HTTPS clients to present a certificate signed by this CA
    /// (PEM). Needs --http-tls.
    #[arg(
        long,
        env = "METAWAL_HTTP_CLIENT_CA",
        hide_env_values = true,
        value_name = "PEM",
        requires = "http_tls"
    )]
    http_client_ca: Option<PathBuf>,

    /// Log the node's status every this many seconds (0: never).
    #[arg(
        long,
        env = "METAWAL_STATUS_SECS",
        hide_env_values = true,
        value_name = "SECS",
        default_value_t = 10
    )]
    pub(crate) status_secs: u64,

    #[command(flatten)]
    pub(crate) kafka: crate::kafka_args::KafkaArgs,
}

/// Parse `ID=ADDR`; ADDR is `ip:port` or `host:port`.
fn parse_peer(s: &str) -> Result<(NodeId, SocketAddr), String> {
    let (id, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("expected ID=ADDR (e.g. 2=10.0.0.2:7101), got {s:?}"))?;
    let id: NodeId = id
        .trim()
        .parse()
        .map_err(|_| format!("peer id {id:?} is not a number"))?;
    let addr = addr.trim();
    let resolved = addr
        .to_socket_addrs()
        .map_err(|e| format!("peer address {addr:?} is invalid: {e}"))?
        .next()
        .ok_or_else(|| format!("peer address {addr:?} resolves to nothing"))?;
    Ok((id, resolved))
}

/// Parse `ID=HOST:PORT` (kept as text: it goes into redirect URLs and
/// Kafka `Metadata`).
pub(crate) fn parse_peer_http(s: &str) -> Result<(NodeId, String), String> {
    let (id, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("expected ID=HOST:PORT (e.g. 2=10.0.0.2:8081), got {s:?}"))?;
    let id: NodeId = id
        .trim()
        .parse()
        .map_err(|_| format!("peer id {id:?} is not a number"))?;
    let addr = addr.trim();
    let port_ok = addr
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if !port_ok || addr.contains('/') || addr.chars().any(char::is_whitespace) {
        return Err(format!("peer address {addr:?} is not HOST:PORT"));
    }
    Ok((id, addr.to_string()))
}

/// The HTTP API's configuration, if `--http` is given.
pub(crate) fn http_config(args: &Args) -> Result<Option<HttpConfig>, String> {
    let Some(addr) = args.http else {
        if !args.peer_http.is_empty() {
            return Err("--peer-http is given without --http".into());
        }
        return Ok(None);
    };
    let mut c = HttpConfig::new(addr);
    if let Some(fd) = args.http_fd {
        c.listener = Some(inherited_listener(fd, "--http-fd", addr)?);
    }
    for (id, a) in &args.peer_http {
        // One list can serve every node: each skips its own entry.
        if *id == args.node_id {
            continue;
        }
        if !args.peers.iter().any(|(p, _)| p == id) {
            return Err(format!("--peer-http {id}: node {id} is not a --peer"));
        }
        if c.peer_http.insert(*id, a.clone()).is_some() {
            return Err(format!("--peer-http {id} is given more than once"));
        }
    }
    if let Some(v) = args.http_body_limit {
        if v == 0 {
            return Err("--http-body-limit must be at least 1".into());
        }
        c.body_limit_bytes = v;
    }
    if let Some(v) = args.max_watchers {
        if v == 0 {
            return Err("--max-watchers must be at least 1".into());
        }
        c.max_watchers = v;
    }
    if let Some(v) = args.watch_stall_ms {
        if v == 0 {
            return Err("--watch-stall-ms must be at least 1".into());
        }
        c.watch_stall = Duration::from_millis(v);
    }
    if args.http_tls {
        let files = tls_files(args)?.ok_or(
            "--http-tls serves the node's certificate: give --tls-cert, --tls-key and --tls-ca",
        )?;
        let tls = http_server_config(&files, args.http_client_ca.as_deref())
            .map_err(|e| e.to_string())?;
        c.tls = Some(Arc::new(tls));
    } else if !args.insecure_plaintext && args.http.is_some() {
        // Peer traffic is TLS: a plain-HTTP client API next to it is almost
        // certainly a mistake.
        return Err(
            "--http without --http-tls serves the client API unencrypted: \
             add --http-tls (or run the whole node with --insecure-plaintext)"
                .into(),
        );
    }
    Ok(Some(c))
}

/// The secret from `--secret-file` or `METAWAL_SECRET`; never empty.
fn read_secret(file: Option<&PathBuf>) -> Result<Vec<u8>, String> {
    let mut secret = match file {
        Some(path) => std::fs::read(path)
            .map_err(|e| format!("cannot read the secret file {}: {e}", path.display()))?,
        None => match std::env::var_os(SECRET_ENV) {
            Some(v) => v.into_encoded_bytes(),
            None => {
                return Err(format!(
                    "no secret: pass --secret-file PATH or set {SECRET_ENV}"
                ))
            }
        },
    };
    if secret.ends_with(b"\n") {
        secret.pop();
        if secret.ends_with(b"\r") {
            secret.pop();
        }
    }
    if secret.is_empty() {
        let from = file.map_or_else(|| SECRET_ENV.to_string(), |p| p.display().to_string());
        return Err(format!(
            "the secret from {from} is empty: replication connections are authenticated with it"
        ));
    }
    Ok(secret)
}

/// The TLS files, if any was given; all three or none.
pub(crate) fn tls_files(args: &Args) -> Result<Option<TlsFiles>, String> {
    match (&args.tls_cert, &args.tls_key, &args.tls_ca) {
        (Some(cert), Some(key), Some(ca)) => Ok(Some(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            ca: ca.clone(),
        })),
        (None, None, None) => Ok(None),
        _ => Err("TLS needs all three of --tls-cert, --tls-key and --tls-ca".into()),
    }
}

/// Build the node's configuration from the arguments.
pub(crate) fn node_config(args: &Args) -> Result<NodeConfig, String> {
    let secret = read_secret(args.secret_file.as_ref())?;
    let mut peers = BTreeMap::new();
    for &(id, addr) in &args.peers {
        // One list can serve every node: each skips its own entry.
        if id == args.node_id {
            continue;
        }
        if peers.insert(id, addr).is_some() {
            return Err(format!("--peer {id} is given more than once"));
        }
    }
    let mut replication = ReplicationConfig::default();
    if let Some(n) = args.min_insync_replicas {
        replication.min_insync_replicas = n;
    }
    let ms = Duration::from_millis;
    if let Some(v) = args.heartbeat_ms {
        replication.heartbeat_interval = ms(v);
    }
    if let Some(v) = args.election_timeout_ms {
        replication.election_timeout = ms(v);
    }
    if let Some(v) = args.session_timeout_ms {
        replication.session_timeout = ms(v);
    }
    if let Some(v) = args.replica_lag_ms {
        replication.replica_lag_time_max = ms(v);
    }
    if let Some(v) = args.request_timeout_ms {
        replication.request_timeout = ms(v);
    }
    if let Some(v) = args.snapshot_every {
        replication.snapshot_every = v;
    }
    let mut peer_http: BTreeMap<NodeId, String> = args
        .peer_http
        .iter()
        .filter(|(id, _)| *id != args.node_id)
        .cloned()
        .collect();
    let mut peer_kafka: BTreeMap<NodeId, String> =
        crate::kafka_args::peer_kafka(args.node_id, &args.kafka)
            .into_iter()
            .collect();
    if !args.join.is_empty() && peers.is_empty() {
        let identity = match (&args.tls_cert, &args.tls_key) {
            (Some(c), Some(k)) => Some((c.as_path(), k.as_path())),
            _ => None,
        };
        let ca = args.tls_ca.as_deref().filter(|_| args.http_tls);
        for (id, voter) in crate::join::voters(&args.join, ca, identity)? {
            // A joined node restarted with --join still set is a voter by
            // now: its log says so, and these only seed it.
            if id == args.node_id {
                continue;
            }
            peers.insert(id, voter.replication);
            if !voter.http.is_empty() {
                peer_http.entry(id).or_insert(voter.http);
            }
            if !voter.kafka.is_empty() {
                peer_kafka.entry(id).or_insert(voter.kafka);
            }
        }
    }
    let mut config = NodeConfig::new(
        args.node_id,
        args.cluster_id.clone(),
        secret,
        args.data_dir.clone(),
        args.listen,
    );
    config.join = !args.join.is_empty();
    config.peer_http = peer_http;
    config.http_addr = args.http.map(|a| a.to_string());
    config.peer_kafka = peer_kafka;
    config.kafka_addr = crate::kafka_args::own_advertised(&args.kafka)?;
    if let Some(fd) = args.listen_fd {
        config.listener = Some(inherited_listener(fd, "--listen-fd", args.listen)?);
    }
    config.peers = peers;
    config.replication = replication;
    config.tls = tls_files(args)?;
    config.insecure_plaintext = args.insecure_plaintext;
    if config.tls.is_none() && !config.insecure_plaintext {
        return Err(
            "no TLS: give --tls-cert, --tls-key and --tls-ca (docs/operations.md shows \
             how to make them), or --insecure-plaintext for a test network"
                .into(),
        );
    }
    config.validate().map_err(|e| e.to_string())?;
    Ok(config)
}

/// Take ownership of inherited file descriptor `fd`, which must be a
/// listening TCP socket bound to `addr` (the address the flags name): any
/// other descriptor is refused with an error that says what it is instead.
pub(crate) fn inherited_listener(
    fd: i32,
    flag: &str,
    addr: SocketAddr,
) -> Result<BoundListener, String> {
    use std::os::fd::FromRawFd;
    if fd < 3 {
        return Err(format!(
            "{flag} {fd}: descriptors 0-2 are stdin, stdout and stderr"
        ));
    }
    // SAFETY: F_GETFD only reads the descriptor's flags; it fails with
    // EBADF on a descriptor that is not open, and changes nothing.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
        return Err(format!("{flag} {fd}: no such open file descriptor"));
    }
    let mut listening: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `listening` and `len` are valid for writes of the sizes given.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            (&mut listening as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc != 0 || listening == 0 {
        return Err(format!("{flag} {fd}: not a listening socket"));
    }
    // SAFETY: the descriptor is open, a listening socket, and inherited for
    // this process to own: nothing else in it uses or closes it.
    let listener = unsafe { std::net::TcpListener::from_raw_fd(fd) };
    match listener.local_addr() {
        Ok(bound) if bound == addr => Ok(BoundListener::new(listener)),
        Ok(bound) => Err(format!("{flag} {fd} is bound to {bound}, not to {addr}")),
        Err(e) => Err(format!("{flag} {fd}: not a TCP socket ({e})")),
    }
}
