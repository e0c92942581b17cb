//! Leader election on a real node: the [`Elector`] actor drives the core's
//! `ElectionEngine`; one [`VoterLink`] per peer carries its messages on an
//! authenticated election connection. Election messages from peers arrive
//! on the replication listener (the accepting side of an election
//! connection is a `ReplicaSession` that passes them on).

mod elector;
mod voter_link;

pub(crate) use elector::{Elector, ElectorInit, RoleChanges, StepError, StopElector, TransferTo};
