//! Leader election on a real node: the [`Elector`] actor drives the core's
//! `ElectionEngine`; one [`VoterLink`] per peer carries its messages on an
//! authenticated election connection. Election messages from peers arrive
//! on the replication listener (the accepting side of an election
//! connection is a `ReplicaSession` that passes them on).

mod elector;
mod voter_link;

pub(crate) use elector::{ElectionIn, Elector, ElectorInit, Resign, StopElector, TransferTo};

use std::sync::{Arc, OnceLock};

use actix::Recipient;

/// Where sessions deliver election messages: set once the Elector runs.
pub(crate) type ElectorSlot = Arc<OnceLock<Recipient<ElectionIn>>>;
