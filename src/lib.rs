//! # metawal — the actor-free core
//!
//! metawal replicates a broker's cluster metadata through a write-ahead log.
//! This crate is the part without a runtime: the [`command`]s and the
//! [`state`] machine they drive, the [`record`] encoding shared by disk and
//! wire, the segmented [`wal`], [`storage`] for snapshots and the node's meta
//! file, the protocol [`frame`]s and their [`codec`], the [`handshake`], and
//! the [`replication`] decisions as pure state machines that take time as an
//! argument. The actix runtime around it lives in the `metawal-actors` crate.

#![deny(missing_docs)]

pub mod codec;
pub mod command;
pub mod config;
pub mod engine;
pub mod epochs;
pub mod frame;
pub mod handshake;
mod id;
pub mod membership;
pub mod record;
pub mod replication;
// The deterministic simulation (feature `sim`). Its docs are the module's
// own: an outer doc here would make rustdoc resolve the module doc's links
// from the crate root.
#[cfg(feature = "sim")]
pub mod sim;
pub mod state;
pub mod storage;
pub mod wal;

#[cfg(test)]
mod replay_tests;

pub use command::{Command, Entry, NodeId};
pub use config::ReplicationConfig;
pub use record::Record;
pub use state::MetadataState;
