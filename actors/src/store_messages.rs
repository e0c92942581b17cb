//! The messages of the [`MetadataStore`](super::MetadataStore): proposals
//! and their answers, what a follower's listener hands it, and the reads.

use std::sync::Arc;

use actix::prelude::*;
use metawal::engine::store::MAX_PENDING;
use metawal::storage::Snapshot;
use metawal::{Command, Entry, MetadataState};

use super::Acks;
use crate::error::ProposeError;
pub use crate::proposal::Proposed;
pub(crate) use crate::proposal::Reply;
use crate::view::MetadataChanged;

/// Propose a metadata change (send to the leader's store). Answered with
/// the entry's offset once it has the acknowledgement asked for, or why
/// not — `ProposeError::Timeout` after the configured `request_timeout`.
/// [`crate::Node::propose`] is cheaper: it skips the response future actix
/// spawns for this message.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<Proposed, ProposeError>")]
pub struct Propose {
    /// The change.
    pub command: Command,
    /// Acknowledgement wanted.
    pub acks: Acks,
}

/// Register for [`MetadataChanged`] notifications. A subscriber whose mailbox
/// is full when a notification is due is dropped (with a warning): give it a
/// mailbox that fits bursts, and re-read the view after re-subscribing.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Subscribe(pub Recipient<MetadataChanged>);

/// Entries the follower has received (durable or about to be); applied once
/// committed.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct FollowerEntries(pub Vec<Entry>);

/// Decoded entries on their way from the ReplicaListener to the store, counted
/// so that the store's mailbox holds at most [`MAX_PENDING`] of them: beyond
/// that the listener drops them and the store reads them back from the WAL.
#[derive(Debug, Clone, Default)]
pub(crate) struct EntriesInFlight(Arc<std::sync::atomic::AtomicUsize>);

impl EntriesInFlight {
    /// Reserve room for `n` entries; false when the budget is spent.
    pub(crate) fn reserve(&self, n: usize) -> bool {
        use std::sync::atomic::Ordering;
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
                (cur + n <= MAX_PENDING).then_some(cur + n)
            })
            .is_ok()
    }

    /// Give back room for `n` entries.
    pub(crate) fn release(&self, n: usize) {
        self.0.fetch_sub(n, std::sync::atomic::Ordering::AcqRel);
    }
}

/// The follower's log was truncated after `to`: forget queued entries past it.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct Truncated {
    pub to: u64,
}

/// The follower installed a snapshot: replace the state.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct InstallSnapshot(pub Box<Snapshot>);

/// What the store has applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// Last applied offset.
    pub offset: u64,
    /// Its epoch.
    pub epoch: u64,
    /// Digest of the state.
    pub digest: metawal::state::Digest,
}

/// Ask for [`Applied`].
#[derive(Debug, Message)]
#[rtype(result = "Applied")]
pub struct GetApplied;

/// Ask for a copy of the applied state.
#[derive(Debug, Message)]
#[rtype(result = "Box<MetadataState>")]
pub struct GetState;

/// Stop the store.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct StopStore;

/// [`Propose`] with its own reply channel, answered by whoever decides the
/// outcome (the store on a refusal or `acks=none`, the Replicator on an
/// acknowledgement): [`crate::Node::propose`] sends this, so a write costs
/// one mailbox envelope and one channel and no task on the leader's arbiter
/// between the Replicator and the proposer.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct ProposeWith {
    pub command: Command,
    pub acks: Acks,
    pub reply: Reply,
}
