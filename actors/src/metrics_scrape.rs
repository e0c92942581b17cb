//! What the scrape-time metrics are read from ([`Scrape`]), and how a
//! node's status becomes it: a child module of `metrics.rs`, apart so
//! that file holds the registry and the encoding.

use metawal::NodeId;

use metawal::replication::LinkState;

/// What the scrape-time metrics are read from (built from a
/// `NodeStatus`; plain values, so that this file imports no actor module).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scrape {
    /// `Role::as_str` of the node.
    pub role: &'static str,
    /// Its epoch.
    pub epoch: u64,
    /// Elections it stood in.
    pub elections: u64,
    /// Last applied offset.
    pub applied_offset: u64,
    /// Commit point it knows.
    pub commit: u64,
    /// Its log end.
    pub log_end: u64,
    /// ISR size (leader only).
    pub isr_len: usize,
    /// Per follower (leader only): id, lag, link state, reconnects.
    pub followers: Vec<(NodeId, u64, LinkState, u64)>,
    /// Per member but the leader (leader only): whether it is caught up
    /// (connected, within the promotion bound of the log end).
    pub caught_up: Vec<(NodeId, bool)>,
    /// Voters and learners in force on this node.
    pub voters: u64,
    /// Learners in force on this node.
    pub learners: u64,
}

// Here, not in status.rs: the status types know nothing of metrics (no
// import cycle status -> metrics -> status).
impl From<&crate::status::NodeStatus> for Scrape {
    fn from(s: &crate::status::NodeStatus) -> Scrape {
        Scrape {
            role: s.role.as_str(),
            epoch: s.epoch,
            elections: s.elections,
            applied_offset: s.applied_offset,
            commit: s.commit,
            log_end: s.log_end,
            isr_len: s.isr_len,
            followers: s
                .followers
                .iter()
                .map(|f| (f.peer, f.lag, f.state, f.reconnects))
                .collect(),
            caught_up: s
                .followers
                .iter()
                .map(|f| {
                    let ok = f.connected && f.lag <= crate::election::PROMOTE_MAX_LAG_ENTRIES;
                    (f.peer, ok)
                })
                .collect(),
            // The membership is not in the status: the caller sets these.
            voters: 0,
            learners: 0,
        }
    }
}
