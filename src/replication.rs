//! Replication logic as pure state machines (no I/O, no clock).
//!
//! STUB — being written.
