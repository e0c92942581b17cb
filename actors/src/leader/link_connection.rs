//! How the link's connection to its follower stands: what an input that
//! ends the connection during the handshake says about it (unreachable, or
//! a refused handshake and why), published in the link's stats and the
//! node's peer table.
//!
//! A child module of `link.rs` (it sees the link's private state),
//! separate because reading a failed handshake is one concern of its own.

use metawal::engine::LinkInput;
use metawal::frame::Frame;

use super::FollowerLink;
use crate::status::{reject_text, HandshakeRefusal, PeerChannel, PeerConnection};

impl FollowerLink {
    /// What it means if `input` ends the connection while the handshake
    /// runs.
    pub(super) fn handshake_failure(&self, input: &LinkInput) -> Option<PeerConnection> {
        let peer = self.peer;
        Some(match input {
            LinkInput::Frame { frame, .. } => match frame {
                Frame::Reject { reason, .. } => PeerConnection::refused(
                    HandshakeRefusal::of_reject(*reason),
                    format!(
                        "node {peer} refused the handshake: {}",
                        reject_text(*reason)
                    ),
                ),
                Frame::Challenge { .. } => match self.keys.check_challenge(frame) {
                    Err(e) => {
                        PeerConnection::refused(HandshakeRefusal::of_error(&e), e.to_string())
                    }
                    Ok(info) if info.node_id != peer => PeerConnection::refused(
                        HandshakeRefusal::WrongNode,
                        format!(
                            "node {} answered at {}, not node {peer}",
                            info.node_id, self.peer_addr
                        ),
                    ),
                    Ok(_) => PeerConnection::refused(
                        HandshakeRefusal::ProtocolError,
                        "the Hello could not be built",
                    ),
                },
                Frame::Welcome { node_id, .. } if *node_id != peer => PeerConnection::refused(
                    HandshakeRefusal::WrongNode,
                    format!("the Welcome is from node {node_id}, not node {peer}"),
                ),
                Frame::Welcome { .. } => PeerConnection::refused(
                    HandshakeRefusal::SecretMismatch,
                    format!(
                        "node {peer}'s Welcome proof does not verify: the shared secrets differ"
                    ),
                ),
                other => PeerConnection::refused(
                    HandshakeRefusal::ProtocolError,
                    format!("unexpected {} frame during the handshake", other.kind()),
                ),
            },
            LinkInput::Tick => PeerConnection::refused(
                HandshakeRefusal::TimedOut,
                format!(
                    "node {peer} did not complete the handshake within the session timeout ({:?})",
                    self.connect_timeout
                ),
            ),
            LinkInput::Closed { reason, .. } => PeerConnection::refused(
                HandshakeRefusal::Closed,
                format!("the connection ended during the handshake: {reason}"),
            ),
            _ => return None,
        })
    }

    /// Publish how the connection stands: in the stats, and in the node's
    /// peer table (which counts and logs failures).
    pub(super) fn observe(&mut self, connection: PeerConnection) {
        if connection == self.connection && !connection.is_failure() {
            return;
        }
        self.stats.set_connection(connection.clone());
        self.connection = connection.clone();
        self.shared.metrics.peer_observed(
            self.node,
            self.peer,
            PeerChannel::Replication,
            Some(self.peer_addr),
            connection,
            true,
        );
    }
}
