//! The node engine on a real node: the [`NodeDriver`] actor pumps the
//! core's `NodeEngine` (which composes the `ElectionEngine`: the pair is
//! `NodeEngine` / `NodeDriver`); one [`VoterLink`] per peer carries election messages on an
//! authenticated election connection. Election messages from peers arrive
//! on the replication listener (the accepting side of an election
//! connection is a `ReplicaSession` that passes them on).

mod driver;
mod voter_link;

pub(crate) use driver::{
    ChangeMembers, NodeDriver, NodeDriverInit, RoleChanges, StepError, StopNodeDriver, TransferTo,
    PROMOTE_MAX_LAG_ENTRIES,
};
