//! The leader's actors: the [`replicator::Replicator`] (its own WAL writes,
//! driving the core's `ReplicatorEngine`) and one [`link::FollowerLink`] per
//! follower (its TCP stream, backoff, window and acks).

pub mod link;
mod link_stats;
pub mod messages;
pub mod replicator;
