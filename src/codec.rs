//! Length-prefixed MessagePack framing of [`Frame`]s for tokio-util.
//!
//! STUB — to be implemented (see issue 2, item 6).

use bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

use crate::frame::Frame;

/// Errors of the framing layer.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The socket failed.
    #[error("connection I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// Placeholder.
    #[error("placeholder")]
    Placeholder,
}

/// u32 big-endian length + MessagePack [`Frame`].
#[derive(Debug, Clone)]
pub struct FrameCodec {
    max_frame_bytes: usize,
}

impl FrameCodec {
    /// A codec refusing frames longer than `max_frame_bytes`.
    pub fn new(max_frame_bytes: usize) -> FrameCodec {
        FrameCodec { max_frame_bytes }
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        let _ = (src, self.max_frame_bytes);
        todo!()
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = CodecError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), CodecError> {
        let _ = (frame, dst);
        todo!()
    }
}
