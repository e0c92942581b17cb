//! Harness for tests that run real `metawal-node` processes.
//!
//! The actor-level tests (`TestCluster`) run every node in one process;
//! they cannot show what a real `SIGKILL` does (no destructor runs, nothing
//! is flushed that was not already `fdatasync`ed, the page cache survives
//! but the process's memory does not), what a `SIGSTOP` does (a process
//! that is frozen, as in a long GC pause, and then goes on with its stale
//! view of the world), or how the HTTP server behaves with real sockets.
//! This harness starts real processes and lets a test do exactly that.
//!
//! - [`node_binary`] finds (and if needed builds) `metawal-node`;
//! - [`Cluster`] starts N nodes on `127.0.0.1` with free ports and temp
//!   data dirs, kills / restarts / stops / continues them, and kills every
//!   child on drop, also when the test panics, so no process leaks;
//! - [`http`] speaks to the nodes' HTTP API through `metawal-client`
//!   (per-address TLS) and classifies every write attempt by what its
//!   answer promises;
//! - [`check`] is the history checker (pure functions, unit-tested with
//!   planted inconsistencies).
//!
//! TLS by default, as in production: the cluster makes a throwaway CA in
//! its temp dir ([`certs::TestCa`]), gives every node its own certificate
//! (`--tls-cert/--tls-key/--tls-ca`) and serves the HTTP API over HTTPS
//! (`--http-tls`); the harness's HTTP client trusts that CA and presents a
//! client certificate from it (see [`http::set_tls`]).
//! `ClusterOpts::insecure_plaintext` runs the old plaintext set-up.

pub use crate::certs;
pub mod check;
pub mod http;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use metawal_actors::tls::TlsFiles;
use metawal_client::tls::client_config;

use crate::reserve;
use crate::support::ReservedPort;
use serde_json::Value;

/// The cluster id every test node uses.
pub const CLUSTER_ID: &str = "proc-test";
/// The shared secret, passed in `METAWAL_SECRET`.
pub const SECRET: &str = "proc-test-secret";

/// The `metawal-node` binary, built if needed (once per test process).
///
/// A test of another package cannot use `CARGO_BIN_EXE_metawal-node` (that
/// is only set for a package's own binaries), so the binary is looked for
/// where cargo puts it for the target dir this test executable was built
/// in: `current_exe()` is `<target>/<profile>/deps/<test>-<hash>`, the
/// binary is `<target>/<profile>/metawal-node`.
///
/// To be sure it is not stale, this runs `$CARGO build --workspace --lib
/// --bins --tests --examples` (with `--release` when the tests are built
/// without debug assertions) once per test process. That is the same selection, and so
/// the same feature resolution, as `cargo test --workspace`: after the
/// README's test command it is a no-op of about a second, and nothing is
/// rebuilt with other features (that rebuild cost CI two minutes before).
/// The variables `cargo test` set for this process are not passed on
/// (the `CARGO_MANIFEST_*`, `CARGO_PKG_*`, `CARGO_BIN_*` ones and a few
/// more).
/// `METAWAL_TEST_NODE_BIN` overrides all of this with a path.
pub fn node_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| built_binary("metawal-node", "METAWAL_TEST_NODE_BIN"))
}

/// The `metawalctl` binary, built if needed, as [`node_binary`] does
/// (`METAWAL_TEST_CTL_BIN` overrides it).
pub fn ctl_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| built_binary("metawalctl", "METAWAL_TEST_CTL_BIN"))
}

/// Runs the workspace build [`node_binary`] describes, once per process;
/// returns the profile dir the binaries are in.
fn build_workspace() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("current_exe");
        let deps = exe.parent().expect("test executable has a parent dir");
        let profile_dir = deps.parent().expect("deps has a parent dir");
        let target_dir = profile_dir.parent().expect("profile dir has a parent dir");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut cmd = Command::new(&cargo);
        // Not the variables `cargo test` set for this test process: ring's
        // build script is fingerprinted on `CARGO_MANIFEST_DIR`, so with
        // them inherited this "no-op" rebuilt ring, rustls, ureq and every
        // crate above them (3.5 minutes of CI), and the next `cargo test`
        // rebuilt them back.
        for (key, _) in std::env::vars_os() {
            if inherited_from_cargo_test(&key.to_string_lossy()) {
                cmd.env_remove(&key);
            }
        }
        cmd.current_dir(workspace)
            // Exactly `cargo test`'s default targets: `--all-targets` would
            // add `--benches`, which compiles every lib and bin once more as
            // a bench harness (four minutes of CI).
            .args(["build", "--quiet", "--workspace"])
            .args(["--lib", "--bins", "--tests", "--examples"])
            .arg("--target-dir")
            .arg(target_dir);
        if cfg!(not(debug_assertions)) {
            cmd.arg("--release");
        }
        let started = Instant::now();
        eprintln!("procs: building the workspace's binaries: {cmd:?}");
        match cmd.status() {
            Ok(s) if s.success() => {}
            Ok(s) => {
                eprintln!("procs: WARNING: `cargo build` failed ({s}); using existing binaries")
            }
            Err(e) => {
                eprintln!("procs: WARNING: cannot run {cargo:?} ({e}); using existing binaries")
            }
        }
        eprintln!("procs: build checked in {:?}", started.elapsed());
        profile_dir.to_path_buf()
    })
}

/// Whether `key` is one of the variables cargo sets for the crate it
/// compiles or the test it runs (not one a user sets to configure cargo).
fn inherited_from_cargo_test(key: &str) -> bool {
    const PREFIXES: [&str; 3] = ["CARGO_MANIFEST_", "CARGO_PKG_", "CARGO_BIN_"];
    const NAMES: [&str; 5] = [
        "CARGO_CRATE_NAME",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_TMPDIR",
        "CARGO_RUSTC_CURRENT_DIR",
        "OUT_DIR",
    ];
    PREFIXES.iter().any(|p| key.starts_with(p)) || NAMES.contains(&key)
}

/// Binary `name` for this test's target dir and profile (see
/// [`node_binary`]); the path in `$env_override` if that is set.
fn built_binary(name: &str, env_override: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env_override) {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "{env_override}={} is not a file", p.display());
        return p;
    }
    let bin = build_workspace().join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(bin.is_file(), "{} missing after the build", bin.display());
    bin
}

/// Make `fds` the child's descriptors 3, 4, … (inherited across exec).
///
/// Each is first duplicated above 9 so that a source that already is 3 or
/// 4 is not overwritten before it is moved.
fn pass_fds<const N: usize>(cmd: &mut Command, fds: [RawFd; N]) {
    use std::os::unix::process::CommandExt;
    // SAFETY: between fork and exec the closure only calls fcntl, dup2 and
    // close, which are async-signal-safe, on descriptors this process owns.
    unsafe {
        cmd.pre_exec(move || {
            let mut high = [0; N];
            for (h, &fd) in high.iter_mut().zip(&fds) {
                *h = libc::fcntl(fd, libc::F_DUPFD, 10);
                if *h < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for (k, &h) in high.iter().enumerate() {
                if libc::dup2(h, 3 + k as RawFd) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(h);
            }
            Ok(())
        });
    }
}

/// The nodes' `RUST_LOG`: warnings, plus the node's life cycle (start,
/// recovery, leadership, shutdown) so that a post-mortem can place events.
/// `METAWAL_TEST_RUST_LOG` overrides it.
fn node_log_filter() -> String {
    std::env::var("METAWAL_TEST_RUST_LOG")
        .unwrap_or_else(|_| "warn,metawal_node=info,metawal_actors::node=info".into())
}

/// Run the built metawalctl with `args` (none of the caller's
/// `METAWAL_*` settings); (exit code, stdout, stderr).
pub fn run_ctl(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(ctl_binary())
        .args(args)
        .env_remove("METAWAL_ENDPOINTS")
        .env_remove("METAWAL_CACERT")
        .env_remove("METAWAL_CERT")
        .env_remove("METAWAL_KEY")
        .output()
        .expect("run metawalctl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// How to run the cluster.
#[derive(Debug, Clone)]
pub struct ClusterOpts {
    pub nodes: u64,
    /// `--election-timeout-ms` (`T`).
    pub election_timeout_ms: u64,
    pub heartbeat_ms: u64,
    pub request_timeout_ms: u64,
    pub replica_lag_ms: u64,
    /// More flags for every node.
    pub extra_args: Vec<String>,
    /// Plain TCP between the nodes and plain HTTP (`--insecure-plaintext`)
    /// instead of mutual TLS and HTTPS.
    pub insecure_plaintext: bool,
    /// Require HTTPS client certificates from the cluster's CA
    /// (`--http-client-ca`); the harness's client presents one.
    pub http_client_auth: bool,
    /// Serve the Kafka front (`--kafka`, `--peer-kafka`) on each node's
    /// [`NodeProc::kafka`] address.
    pub kafka: bool,
}

impl ClusterOpts {
    /// Fast elections, generous everything else (the VM is small and loaded).
    pub fn fast(nodes: u64) -> Self {
        ClusterOpts {
            nodes,
            election_timeout_ms: 300,
            heartbeat_ms: 50,
            request_timeout_ms: 4000,
            replica_lag_ms: 2000,
            extra_args: Vec::new(),
            insecure_plaintext: false,
            http_client_auth: false,
            kafka: false,
        }
    }
}

/// One node: its addresses, data dir, log file and (when running) process.
#[derive(Debug)]
pub struct NodeProc {
    pub id: u64,
    pub repl: SocketAddr,
    pub http: SocketAddr,
    /// Its Kafka front's address (served with [`ClusterOpts::kafka`]).
    pub kafka: SocketAddr,
    /// The ports behind `repl`, `http` and `kafka`, held by the harness
    /// for the cluster's lifetime; each start hands the node fresh
    /// listening sockets on them (`--listen-fd 3 --http-fd 4`, and
    /// `--kafka-fd 5`), so no other socket can take a node's port between
    /// its runs.
    ports: [ReservedPort; 3],
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    child: Option<Child>,
    stopped: bool,
    pub starts: u32,
    /// Started with `--join` (the cluster's first nodes as the ones to
    /// ask) instead of `--peer` flags.
    pub joiner: bool,
}

impl NodeProc {
    /// Node `id` under `root`, not started, on two new reserved ports.
    fn new(root: &Path, id: u64, joiner: bool) -> NodeProc {
        let ports = [reserve(), reserve(), reserve()];
        NodeProc {
            id,
            repl: ports[0].addr(),
            http: ports[1].addr(),
            kafka: ports[2].addr(),
            ports,
            data_dir: root.join(format!("node-{id}")),
            log_path: root.join(format!("node-{id}.log")),
            child: None,
            stopped: false,
            starts: 0,
            joiner,
        }
    }

    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }
}

/// A node that exited without being killed by the harness.
#[derive(Debug, Clone)]
pub struct UnexpectedExit {
    pub node: u64,
    pub status: String,
    /// The end of its log at the time.
    pub tail: String,
    /// Exit code 0 after the node logged `shutting down`: the only way
    /// `metawal-node` exits 0 is a SIGTERM or SIGINT, which this harness
    /// never sends, so it came from outside (on a shared machine with a
    /// small `pid_max`, a stale `kill PID` meant for another process).
    /// Not a node failure; reported.
    pub external_shutdown: bool,
}

/// The TLS material of a cluster: files in its temp dir.
pub struct ClusterTls {
    /// The CA that issued every node's certificate (and the harness's
    /// client certificate).
    pub ca: certs::TestCa,
    /// Node `id`'s files are `node_files[id - 1]`; each node has its own
    /// copy of the CA file (`node-<id>-ca.pem`), so that a test can change
    /// one node's trust (overwrite the file, restart the node).
    pub node_files: Vec<TlsFiles>,
    /// The client certificate the harness presents over HTTPS.
    pub client: TlsFiles,
}

/// N real `metawal-node` processes on 127.0.0.1. Dropping it SIGKILLs and
/// reaps every child.
pub struct Cluster {
    pub opts: ClusterOpts,
    dir: tempfile::TempDir,
    pub nodes: Vec<NodeProc>,
    t0: Instant,
    pub unexpected_exits: Vec<UnexpectedExit>,
    /// `None` with `insecure_plaintext`.
    pub tls: Option<ClusterTls>,
}

fn signal(pid: i32, sig: libc::c_int) -> bool {
    // SAFETY: kill(2) has no memory effects; pid is our own child's.
    unsafe { libc::kill(pid, sig) == 0 }
}

impl Cluster {
    /// Start `opts.nodes` nodes and wait until every one serves `/livez`
    /// and one of them leads. Retries with new ports (up to 5 times) when a
    /// node could not bind the port the harness picked for it.
    pub fn start(opts: ClusterOpts) -> Cluster {
        let bin = node_binary().to_path_buf();
        let dir = tempfile::Builder::new()
            .prefix("metawal-procs-")
            .tempdir()
            .expect("tempdir");
        let tls = (!opts.insecure_plaintext).then(|| make_tls(dir.path(), opts.nodes));
        let mut cluster = Cluster {
            opts,
            dir,
            nodes: Vec::new(),
            t0: Instant::now(),
            unexpected_exits: Vec::new(),
            tls,
        };
        cluster.pick_ports();
        for i in 0..cluster.nodes.len() {
            cluster.spawn(i, &bin);
        }
        if let Err(e) = cluster.wait_live(Duration::from_secs(30)) {
            panic!(
                "node {} exited at start ({}):\n{}",
                e.node, e.status, e.tail
            );
        }
        cluster.wait_leader(Duration::from_secs(30));
        cluster
    }

    fn pick_ports(&mut self) {
        let root = self.dir.path().to_path_buf();
        self.nodes = (1..=self.opts.nodes)
            .map(|id| NodeProc::new(&root, id, false))
            .collect();
        let trust = self.tls.as_ref().map(|t| t.ca.ca_path());
        if let Some(ca) = trust {
            self.set_http_trust(&ca);
        }
    }

    /// Make the harness's HTTPS client trust the CA certificate(s) in
    /// `ca` (a PEM bundle may hold several) for every node, from the next
    /// request on. It keeps presenting its client certificate.
    pub fn set_http_trust(&self, ca: &Path) {
        let tls = self
            .tls
            .as_ref()
            .expect("set_http_trust on a plaintext cluster");
        let config = client_config(ca, Some((&tls.client.cert, &tls.client.key)))
            .unwrap_or_else(|e| panic!("TLS client config trusting {}: {e}", ca.display()));
        let config = Arc::new(config);
        for n in &self.nodes {
            http::set_tls(n.http, Some(config.clone()));
        }
    }

    /// Node `id`'s TLS files (TLS clusters only).
    pub fn tls_files(&self, id: u64) -> &TlsFiles {
        &self.tls.as_ref().expect("a TLS cluster").node_files[(id - 1) as usize]
    }

    /// The base URL of node `id`'s HTTP API (`https://…` over TLS).
    pub fn base_url(&self, id: u64) -> String {
        http::base_url(self.node(id).http)
    }

    /// The temp dir holding the data dirs and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn http_addrs(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(|n| n.http).collect()
    }

    fn note(&self, i: usize, what: &str) {
        if let Ok(mut f) = File::options()
            .append(true)
            .create(true)
            .open(&self.nodes[i].log_path)
        {
            let _ = writeln!(
                f,
                "=== harness t={:.3}s: {what}",
                self.t0.elapsed().as_secs_f64()
            );
        }
    }

    fn args(&self, i: usize) -> Vec<String> {
        let n = &self.nodes[i];
        let o = &self.opts;
        let mut a = vec![
            "--node-id".to_string(),
            n.id.to_string(),
            "--cluster-id".into(),
            CLUSTER_ID.into(),
            "--data-dir".into(),
            n.data_dir.display().to_string(),
            "--listen".into(),
            n.repl.to_string(),
            "--http".into(),
            n.http.to_string(),
            // The sockets spawn() puts at these descriptors.
            "--listen-fd".into(),
            "3".into(),
            "--http-fd".into(),
            "4".into(),
            "--election-timeout-ms".into(),
            o.election_timeout_ms.to_string(),
            "--heartbeat-ms".into(),
            o.heartbeat_ms.to_string(),
            "--request-timeout-ms".into(),
            o.request_timeout_ms.to_string(),
            "--replica-lag-ms".into(),
            o.replica_lag_ms.to_string(),
            "--status-secs".into(),
            "0".into(),
        ];
        match &self.tls {
            None => a.push("--insecure-plaintext".into()),
            Some(t) => {
                let f = &t.node_files[i];
                for (flag, path) in [
                    ("--tls-cert", &f.cert),
                    ("--tls-key", &f.key),
                    ("--tls-ca", &f.ca),
                ] {
                    a.push(flag.into());
                    a.push(path.display().to_string());
                }
                a.push("--http-tls".into());
                if o.http_client_auth {
                    a.push("--http-client-ca".into());
                    a.push(t.ca.ca_path().display().to_string());
                }
            }
        }
        if n.joiner {
            // As an operator would: the first nodes' HTTP APIs.
            let ask: Vec<String> = self
                .nodes
                .iter()
                .filter(|p| !p.joiner)
                .map(|p| p.http.to_string())
                .collect();
            a.push("--join".into());
            a.push(ask.join(","));
        } else {
            // The first nodes' flags stay as they were (an operator does
            // not edit every node's flags when one joins).
            for p in self.nodes.iter().filter(|p| p.id != n.id && !p.joiner) {
                a.push("--peer".into());
                a.push(format!("{}={}", p.id, p.repl));
                a.push("--peer-http".into());
                a.push(format!("{}={}", p.id, p.http));
            }
        }
        if o.kafka {
            a.push("--kafka".into());
            a.push(n.kafka.to_string());
            a.push("--kafka-fd".into());
            a.push("5".into());
            for p in self.nodes.iter().filter(|p| p.id != n.id) {
                a.push("--peer-kafka".into());
                a.push(format!("{}={}", p.id, p.kafka));
            }
        }
        a.extend(o.extra_args.iter().cloned());
        a
    }

    fn spawn(&mut self, i: usize, bin: &Path) {
        assert!(
            self.nodes[i].child.is_none(),
            "node {} already running",
            i + 1
        );
        let starts = self.nodes[i].starts + 1;
        self.note(i, &format!("start #{starts}"));
        let log = File::options()
            .append(true)
            .create(true)
            .open(&self.nodes[i].log_path)
            .expect("open node log");
        let log2 = log.try_clone().expect("clone log handle");
        let mut cmd = Command::new(bin);
        cmd.args(self.args(i))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        // clap reads every flag from a METAWAL_* variable too: keep the
        // test's own environment (METAWAL_CRASH_*, a developer's settings)
        // away from the nodes.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("METAWAL_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("METAWAL_SECRET", SECRET)
            .env("RUST_LOG", node_log_filter());
        let repl = self.nodes[i].ports[0]
            .listener()
            .expect("listen on a reserved port");
        let http = self.nodes[i].ports[1]
            .listener()
            .expect("listen on a reserved port");
        let kafka = if self.opts.kafka {
            let k = self.nodes[i].ports[2]
                .listener()
                .expect("listen on a reserved port");
            pass_fds(
                &mut cmd,
                [repl.as_raw_fd(), http.as_raw_fd(), k.as_raw_fd()],
            );
            Some(k)
        } else {
            pass_fds(&mut cmd, [repl.as_raw_fd(), http.as_raw_fd()]);
            None
        };
        let child = cmd.spawn().expect("spawn metawal-node");
        // The child has its own copies; the harness keeps only the
        // (non-listening) reservations.
        drop((repl, http, kafka));
        let n = &mut self.nodes[i];
        n.child = Some(child);
        n.stopped = false;
        n.starts = starts;
    }

    /// Wait until every node answers `/livez` (or one exits).
    fn wait_live(&mut self, limit: Duration) -> Result<(), UnexpectedExit> {
        let deadline = Instant::now() + limit;
        let addrs = self.http_addrs();
        let mut live = vec![false; addrs.len()];
        loop {
            for (i, a) in addrs.iter().enumerate() {
                if !live[i] {
                    live[i] = http::livez(*a);
                }
            }
            if live.iter().all(|l| *l) {
                return Ok(());
            }
            if let Some(e) = self.reap().into_iter().next() {
                return Err(e);
            }
            assert!(
                Instant::now() < deadline,
                "nodes not live within {limit:?}: {live:?}\n{}",
                self.log_tails(30)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wait until a node reports `role: leader`; returns its id.
    pub fn wait_leader(&mut self, limit: Duration) -> u64 {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(id) = self.leader() {
                return id;
            }
            assert!(
                Instant::now() < deadline,
                "no leader within {limit:?}\n{}",
                self.log_tails(30)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The node that says it leads (the highest epoch if several do), asked
    /// over HTTP. Stopped and dead nodes are not asked.
    pub fn leader(&self) -> Option<u64> {
        let mut best: Option<(u64, u64)> = None;
        for n in &self.nodes {
            if n.child.is_none() || n.stopped {
                continue;
            }
            if let Some(s) = http::status(n.http) {
                if s["role"] == "leader" {
                    let epoch = s["epoch"].as_u64().unwrap_or(0);
                    if best.is_none_or(|(e, _)| epoch > e) {
                        best = Some((epoch, n.id));
                    }
                }
            }
        }
        best.map(|(_, id)| id)
    }

    pub fn is_running(&self, id: u64) -> bool {
        self.node(id).child.is_some()
    }

    pub fn is_stopped(&self, id: u64) -> bool {
        self.node(id).stopped
    }

    pub fn node(&self, id: u64) -> &NodeProc {
        &self.nodes[(id - 1) as usize]
    }

    /// Start a new, empty node `id` (the next id after the last node) that
    /// joins the running cluster (`--join`), with its own certificate on a
    /// TLS cluster; returns once it serves `/livez`. It is nobody's member
    /// until the leader adds it.
    pub fn add_joiner(&mut self) -> u64 {
        let id = self.nodes.len() as u64 + 1;
        let root = self.dir.path().to_path_buf();
        self.nodes.push(NodeProc::new(&root, id, true));
        if let Some(t) = self.tls.as_mut() {
            let mut f = t.ca.node(id).expect("make a node certificate");
            let own_ca = root.join(format!("node-{id}-ca.pem"));
            std::fs::copy(&f.ca, &own_ca).expect("copy the CA file");
            f.ca = own_ca;
            t.node_files.push(f);
            let trust = t.ca.ca_path();
            let config = client_config(&trust, Some((&t.client.cert, &t.client.key)))
                .unwrap_or_else(|e| panic!("TLS client config: {e}"));
            http::set_tls(self.nodes[id as usize - 1].http, Some(Arc::new(config)));
        }
        self.opts.nodes = id;
        self.restart(id);
        id
    }

    /// SIGKILL node `id` and reap it. No-op if it is not running.
    pub fn kill(&mut self, id: u64) {
        let i = (id - 1) as usize;
        if let Some(mut child) = self.nodes[i].child.take() {
            signal(child.id() as i32, libc::SIGKILL);
            let _ = child.wait();
            self.nodes[i].stopped = false;
            self.note(i, "SIGKILL");
        }
    }

    /// Start node `id` again with the same data dir and ports. Returns once
    /// the process serves `/livez` (or exits: an exit is recorded in
    /// `unexpected_exits`, and the test fails on it).
    pub fn restart(&mut self, id: u64) {
        let i = (id - 1) as usize;
        let bin = node_binary().to_path_buf();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.nodes[i].child.is_none() {
                self.spawn(i, &bin);
            }
            let http = self.nodes[i].http;
            loop {
                if http::livez(http) {
                    return;
                }
                if let Some(e) = self.reap_one(i) {
                    if e.external_shutdown {
                        break;
                    }
                    // Recorded in unexpected_exits; the test fails on it.
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "node {id} not live within 30 s of its restart\n{}",
                    self.log_tail(id, 40)
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// SIGSTOP node `id` (a frozen process: a long GC pause, a VM stall).
    pub fn stop(&mut self, id: u64) {
        let i = (id - 1) as usize;
        if let Some(pid) = self.nodes[i].pid() {
            if !self.nodes[i].stopped && signal(pid, libc::SIGSTOP) {
                self.nodes[i].stopped = true;
                self.note(i, "SIGSTOP");
            }
        }
    }

    /// SIGCONT node `id`.
    pub fn cont(&mut self, id: u64) {
        let i = (id - 1) as usize;
        if let Some(pid) = self.nodes[i].pid() {
            if self.nodes[i].stopped {
                signal(pid, libc::SIGCONT);
                self.nodes[i].stopped = false;
                self.note(i, "SIGCONT");
            }
        }
    }

    /// Continue every stopped node and restart every dead one; returns
    /// how many were restarted.
    pub fn heal(&mut self) -> usize {
        for id in 1..=self.opts.nodes {
            self.cont(id);
        }
        self.reap();
        let mut restarted = 0;
        for id in 1..=self.opts.nodes {
            if !self.is_running(id) {
                self.restart(id);
                restarted += 1;
            }
        }
        restarted
    }

    fn reap_one(&mut self, i: usize) -> Option<UnexpectedExit> {
        let status: ExitStatus = {
            let child = self.nodes[i].child.as_mut()?;
            child.try_wait().ok().flatten()?
        };
        self.nodes[i].child = None;
        self.nodes[i].stopped = false;
        self.note(i, &format!("exited by itself: {status}"));
        let tail = self.log_tail(i as u64 + 1, 40);
        let e = UnexpectedExit {
            node: i as u64 + 1,
            status: status.to_string(),
            external_shutdown: status.code() == Some(0) && tail.contains("shutting down"),
            tail,
        };
        if e.external_shutdown {
            eprintln!(
                "procs: WARNING: node {} shut down gracefully (SIGTERM/SIGINT from outside the test?)",
                e.node
            );
        }
        self.unexpected_exits.push(e.clone());
        Some(e)
    }

    /// Notice nodes that exited by themselves (recorded in `unexpected_exits`).
    pub fn reap(&mut self) -> Vec<UnexpectedExit> {
        (0..self.nodes.len())
            .filter_map(|i| self.reap_one(i))
            .collect()
    }

    /// Exits that were node failures: every unexpected exit (ports are
    /// held by the harness, so a bind failure is a failure too).
    pub fn node_failures(&self) -> Vec<&UnexpectedExit> {
        self.unexpected_exits.iter().collect()
    }

    /// The last `lines` lines of node `id`'s log (stdout and stderr).
    pub fn log_tail(&self, id: u64, lines: usize) -> String {
        tail(&self.node(id).log_path, lines)
    }

    /// Every node's log tail, for a failure message.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut s = String::new();
        for n in &self.nodes {
            s.push_str(&format!(
                "----- node {} ({}) log tail -----\n{}\n",
                n.id,
                n.log_path.display(),
                self.log_tail(n.id, lines)
            ));
        }
        s
    }

    /// Poll `/v1/status` on every node until all report the same applied
    /// offset and digest twice in a row, `limit` at most. Returns the
    /// statuses of the last poll (converged or not) and whether they
    /// converged.
    pub fn wait_converged(&self, limit: Duration) -> (Vec<Option<Value>>, bool) {
        let deadline = Instant::now() + limit;
        let mut prev: Option<(u64, String)> = None;
        loop {
            let statuses: Vec<Option<Value>> =
                self.nodes.iter().map(|n| http::status(n.http)).collect();
            let keys: Vec<Option<(u64, String)>> = statuses
                .iter()
                .map(|s| {
                    let s = s.as_ref()?;
                    Some((
                        s["applied_offset"].as_u64()?,
                        s["digest"].as_str()?.to_string(),
                    ))
                })
                .collect();
            let one_leader = statuses
                .iter()
                .flatten()
                .filter(|s| s["role"] == "leader")
                .count()
                == 1;
            let same = keys.iter().all(|k| k.is_some() && *k == keys[0]);
            if same && one_leader {
                if prev.as_ref() == keys[0].as_ref() {
                    return (statuses, true);
                }
                prev = keys[0].clone();
            } else {
                prev = None;
            }
            if Instant::now() > deadline {
                return (statuses, false);
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            http::set_tls(n.http, None);
            if let Some(mut child) = n.child.take() {
                // SIGKILL works on a stopped process too.
                signal(child.id() as i32, libc::SIGKILL);
                let _ = child.wait();
            }
        }
        if std::thread::panicking() || std::env::var_os("METAWAL_TEST_KEEP_DIR").is_some() {
            // Keep the logs and data dirs for a post-mortem.
            let path = self.dir.path().to_path_buf();
            let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir"));
            let _ = dir.keep();
            eprintln!("procs: kept the data dirs and logs in {}", path.display());
        }
    }
}

/// A CA in `dir`, a certificate for every node (with its own copy of the
/// CA file) and one for the harness's HTTPS client.
fn make_tls(dir: &Path, nodes: u64) -> ClusterTls {
    let ca = certs::TestCa::new(dir, "cluster", CLUSTER_ID).expect("make the test CA");
    let node_files = (1..=nodes)
        .map(|id| {
            let mut f = ca.node(id).expect("make a node certificate");
            let own_ca = dir.join(format!("node-{id}-ca.pem"));
            std::fs::copy(&f.ca, &own_ca).expect("copy the CA file");
            f.ca = own_ca;
            f
        })
        .collect();
    let client = ca.client("harness").expect("make the client certificate");
    ClusterTls {
        ca,
        node_files,
        client,
    }
}

/// The last `lines` lines of a file (reads at most its last 64 KiB).
pub fn tail(path: &Path, lines: usize) -> String {
    let Ok(mut f) = File::open(path) else {
        return format!("(no log at {})", path.display());
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
