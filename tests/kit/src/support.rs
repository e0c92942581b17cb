//! Polling with a deadline, starting a node on its own Arbiter, loopback
//! ports, and a subscriber that records what a node applied: the pieces the
//! actor-level tests, the bench and the demo share.

use std::collections::VecDeque;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use actix::prelude::*;
use metawal_actors::{BoundListener, Command, MetadataChanged, Node, NodeConfig, NodeId, Role};

/// Wait until `cond` holds, polling, or fail after `limit`.
pub async fn wait_for<F, Fut>(what: &str, limit: Duration, mut cond: F) -> Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !cond().await {
        if Instant::now() > deadline {
            return Err(format!("timed out after {limit:?} waiting for {what}"));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

/// Wait until one of `nodes` leads and every one of them knows it as
/// leader; returns its id and epoch.
pub async fn wait_leader(nodes: &[Node], limit: Duration) -> Result<(NodeId, u64), String> {
    let deadline = Instant::now() + limit;
    loop {
        let mut statuses = Vec::new();
        for node in nodes {
            if let Ok(s) = node.status().await {
                statuses.push(s);
            }
        }
        if let Some(l) = statuses.iter().find(|s| s.role == Role::Leader) {
            if statuses.len() == nodes.len() && statuses.iter().all(|s| s.leader == Some(l.node_id))
            {
                return Ok((l.node_id, l.epoch));
            }
        }
        if Instant::now() > deadline {
            return Err(format!(
                "timed out after {limit:?} waiting for one leader known to every node"
            ));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A loopback port held for as long as this value lives, that nodes
/// started and stopped many times can each listen on in turn.
///
/// Holding: a socket bound to 127.0.0.1:`port` with `SO_REUSEPORT`, never
/// listening. While it is bound, the kernel gives the port to no other
/// socket: not to another `bind(port 0)`, not as the source port of an
/// outgoing connection (both skip ports with a bound socket), and not to an
/// explicit bind without `SO_REUSEPORT`. Because it does not listen,
/// connections to the port are refused while no node serves it, as they
/// would be on a real machine. Each start gets a fresh listening socket on
/// the port ([`ReservedPort::listener`]), which the node owns and closes
/// when it stops.
///
/// This replaces "bind port 0, read it, release it, let the node bind it",
/// which raced with every other socket on the machine (CI once failed on
/// `Address already in use`).
#[derive(Debug)]
pub struct ReservedPort {
    addr: SocketAddr,
    _hold: socket2::Socket,
}

impl ReservedPort {
    /// Reserve a free loopback port.
    pub fn new() -> Result<ReservedPort, String> {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let hold = reuse_socket(any)?;
        let addr = hold
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .ok_or_else(|| "reserved socket has no inet address".to_string())?;
        Ok(ReservedPort { addr, _hold: hold })
    }

    /// The reserved address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A new listening socket on the reserved port, for one start.
    pub fn listener(&self) -> Result<TcpListener, String> {
        let s = reuse_socket(self.addr)?;
        s.listen(1024)
            .map_err(|e| format!("listen on {}: {e}", self.addr))?;
        Ok(s.into())
    }

    /// [`ReservedPort::listener`], wrapped for a node's or HTTP config.
    pub fn bound(&self) -> Result<BoundListener, String> {
        Ok(BoundListener::new(self.listener()?))
    }
}

/// A TCP socket with `SO_REUSEADDR` and `SO_REUSEPORT`, bound to `addr`.
fn reuse_socket(addr: SocketAddr) -> Result<socket2::Socket, String> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))
        .map_err(|e| format!("socket: {e}"))?;
    s.set_reuse_address(true)
        .and_then(|()| s.set_reuse_port(true))
        .map_err(|e| format!("SO_REUSEADDR/SO_REUSEPORT: {e}"))?;
    s.bind(&addr.into())
        .map_err(|e| format!("bind {addr}: {e}"))?;
    Ok(s)
}

/// Run `f` on a new Arbiter and return its result with the Arbiter (which
/// keeps whatever `f` started running).
pub async fn on_arbiter<T, F>(what: &str, f: F) -> Result<(T, Arbiter), String>
where
    T: Send + 'static,
    F: std::future::Future<Output = Result<T, String>> + Send + 'static,
{
    let arbiter = Arbiter::new();
    let (tx, rx) = tokio::sync::oneshot::channel();
    if !arbiter.spawn(async move {
        let _ = tx.send(f.await);
    }) {
        return Err(format!("{what}: the new arbiter is not running"));
    }
    match rx.await {
        Ok(Ok(v)) => Ok((v, arbiter)),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: the arbiter stopped while starting")),
    }
}

/// Start the node `cfg` describes on a new Arbiter.
pub async fn start_on_arbiter(cfg: NodeConfig) -> Result<(Node, Arbiter), String> {
    let id = cfg.node_id;
    Node::start_on_arbiter(cfg)
        .await
        .map_err(|e| format!("node {id}: {e}"))
}

/// One `MetadataChanged` as a [`Recording`] saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The entry's offset.
    pub offset: u64,
    /// The entry's epoch.
    pub epoch: u64,
    /// The command applied.
    pub command: Command,
    /// When the subscriber received it.
    pub at: Instant,
}

type SeenLog = Arc<Mutex<VecDeque<Seen>>>;

fn lock(log: &SeenLog) -> MutexGuard<'_, VecDeque<Seen>> {
    // A panic while holding the lock leaves whole entries only.
    log.lock().unwrap_or_else(|e| e.into_inner())
}

/// The subscriber actor behind a [`Recording`].
struct Recorder {
    seen: SeenLog,
    keep: usize,
    mailbox: usize,
}

impl Actor for Recorder {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // The store drops a subscriber whose mailbox is full: make room for
        // the bursts of the harness that starts it.
        ctx.set_mailbox_capacity(self.mailbox);
    }
}

impl Handler<MetadataChanged> for Recorder {
    type Result = ();

    fn handle(&mut self, msg: MetadataChanged, _ctx: &mut Context<Self>) {
        let mut seen = lock(&self.seen);
        if seen.len() >= self.keep {
            seen.pop_front();
        }
        seen.push_back(Seen {
            offset: msg.offset,
            epoch: msg.epoch,
            command: msg.command,
            at: Instant::now(),
        });
    }
}

/// What a subscriber of one node has seen: the last `keep` changes, in
/// order.
#[derive(Clone)]
pub struct Recording {
    seen: SeenLog,
    _addr: Addr<Recorder>,
}

impl Recording {
    /// Subscribe a recorder to `node`, running on `arbiter` (or on the
    /// current one if `None`), keeping the last `keep` changes, with a
    /// mailbox of `mailbox`.
    pub fn start(
        node: &Node,
        arbiter: Option<&ArbiterHandle>,
        keep: usize,
        mailbox: usize,
    ) -> Result<Recording, String> {
        let seen: SeenLog = Arc::new(Mutex::new(VecDeque::with_capacity(keep.min(1 << 20))));
        let recorder = Recorder {
            seen: seen.clone(),
            keep: keep.max(1),
            mailbox,
        };
        let addr = match arbiter {
            Some(a) => Recorder::start_in_arbiter(a, move |_| recorder),
            None => recorder.start(),
        };
        node.subscribe(addr.clone().recipient())
            .map_err(|e| format!("cannot subscribe: {e}"))?;
        Ok(Recording { seen, _addr: addr })
    }

    /// Everything kept so far.
    pub fn seen(&self) -> Vec<Seen> {
        lock(&self.seen).iter().cloned().collect()
    }

    /// (offset, command) pairs kept so far.
    pub fn pairs(&self) -> Vec<(u64, Command)> {
        lock(&self.seen)
            .iter()
            .map(|s| (s.offset, s.command.clone()))
            .collect()
    }

    /// Highest offset seen (0 if none).
    pub fn last_offset(&self) -> u64 {
        lock(&self.seen).back().map_or(0, |s| s.offset)
    }

    /// When the entry at `offset` arrived, if it is still kept.
    pub fn arrival(&self, offset: u64) -> Option<Instant> {
        lock(&self.seen)
            .iter()
            .rev()
            .find(|s| s.offset == offset)
            .map(|s| s.at)
    }

    /// Take (offset, arrival) of everything kept, leaving it empty.
    pub fn take_arrivals(&self) -> Vec<(u64, Instant)> {
        lock(&self.seen)
            .drain(..)
            .map(|s| (s.offset, s.at))
            .collect()
    }

    /// Forget everything kept.
    pub fn clear(&self) {
        lock(&self.seen).clear();
    }

    /// Wait until an entry at `offset` or beyond was seen.
    pub async fn wait_for(&self, offset: u64, limit: Duration) -> Result<(), String> {
        wait_for(
            &format!("a subscriber to see offset {offset}"),
            limit,
            || {
                let ok = self.last_offset() >= offset;
                async move { ok }
            },
        )
        .await
    }
}
