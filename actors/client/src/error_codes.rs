//! The server's stable `error` codes ([`ErrorCode`]), as docs/api.md
//! lists them: a child module of `error.rs`.

macro_rules! error_codes {
    ($($(#[$doc:meta])* $variant:ident = $text:literal,)*) => {
        /// The server's stable `error` code (docs/api.md).
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ErrorCode {
            $($(#[$doc])* $variant,)*
            /// A code this client does not know (a newer server).
            Other(String),
        }

        impl ErrorCode {
            /// The code from its wire form.
            pub fn parse(code: &str) -> ErrorCode {
                match code {
                    $($text => ErrorCode::$variant,)*
                    other => ErrorCode::Other(other.to_string()),
                }
            }

            /// The wire form.
            pub fn as_str(&self) -> &str {
                match self {
                    $(ErrorCode::$variant => $text,)*
                    ErrorCode::Other(code) => code,
                }
            }
        }
    };
}

error_codes! {
    /// 400: the body is not valid JSON for the endpoint.
    InvalidJson = "invalid_json",
    /// 400: a command broke a validation rule.
    InvalidCommand = "invalid_command",
    /// 400: a query parameter is wrong.
    BadParameter = "bad_parameter",
    /// 400: the body could not be read.
    BadBody = "bad_body",
    /// 400: the transfer target is not a peer (or already leads).
    UnknownPeer = "unknown_peer",
    /// 404: no such topic.
    UnknownTopic = "unknown_topic",
    /// 404: no such path.
    NotFound = "not_found",
    /// 410: the watch start was compacted into a snapshot.
    Compacted = "compacted",
    /// 413: the body is over the limit.
    BodyTooLarge = "body_too_large",
    /// 413: the entry is over the record limit.
    EntryTooLarge = "entry_too_large",
    /// 503: no leader known, or its HTTP address is not configured.
    NotLeader = "not_leader",
    /// 503: too few in-sync replicas for `acks=all`.
    NotEnoughReplicas = "not_enough_replicas",
    /// 503: too many proposals in flight.
    Overloaded = "overloaded",
    /// 503: the leader's storage had failed (nothing appended); 504: it
    /// failed after the write was appended (the write may be in the log).
    StorageFailed = "storage_failed",
    /// 503: too many watch streams.
    TooManyWatchers = "too_many_watchers",
    /// 503: the node is not ready.
    NotReady = "not_ready",
    /// 504: a write timed out (may be in the log).
    Timeout = "timeout",
    /// 504: leadership was lost (the write may be in the log).
    LeadershipLost = "leadership_lost",
    /// 504: the ISR shrank (the write may be in the log).
    IsrShrank = "isr_shrank",
    /// 504: the node is shutting down (the write may be in the log).
    ShuttingDown = "shutting_down",
    /// 504: a read did not reach `min_offset` in time.
    NotApplied = "not_applied",
    /// 504: a linearizable read was not confirmed by a quorum in time.
    NotConfirmed = "not_confirmed",
    /// 504: a leadership transfer did not complete in time.
    TransferTimedOut = "transfer_timed_out",
    /// 409: another leadership transfer is under way (nothing changed).
    TransferInProgress = "transfer_in_progress",
    /// 409: the leader has not committed an entry of its epoch yet (retry).
    LeaderNotReady = "leader_not_ready",
    /// 409: another membership change is not committed yet (retry).
    ChangeInProgress = "change_in_progress",
    /// 409: the node named is not a member.
    UnknownNode = "unknown_node",
    /// 409: the id is already a member (ids are never reused).
    AlreadyMember = "already_member",
    /// 409: only a learner can be promoted.
    AlreadyVoter = "already_voter",
    /// 409: the learner is not caught up.
    NotCaughtUp = "not_caught_up",
    /// 409: removing the last voter.
    WouldLeaveNoVoters = "would_leave_no_voters",
    /// 409: the leader cannot remove itself (transfer first).
    RemoveLeader = "remove_leader",
    /// 409: the node runs a fixed voter set.
    FixedMembership = "fixed_membership",
    /// 409: no directory id to pin (the leader's own change after an
    /// election; no HTTP request asks for it).
    NothingToPin = "nothing_to_pin",
    /// 400: the member given is not valid (id, addresses).
    InvalidMember = "invalid_member",
    /// 504: a membership change was appended but not committed in time.
    ChangeTimedOut = "change_timed_out",
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
