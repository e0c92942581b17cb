//! The follower's actors: the [`listener::ReplicaListener`] (the follower's
//! log: fencing, writes, truncation, snapshot install) and one
//! [`session::ReplicaSession`] per inbound replication connection.

pub mod listener;
pub mod messages;
pub mod session;
