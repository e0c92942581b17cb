//! Node ids, apart from the commands: the membership (which the commands
//! carry) and the commands both name nodes, and neither may import the
//! other for it.

/// A broker node id (also the metawal node id).
pub type NodeId = u64;
