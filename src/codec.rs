//! Length-prefixed MessagePack framing of [`Frame`]s for tokio-util.
//!
//! ```text
//! frame = len: u32 BE (1..=max_frame_bytes) | body: MessagePack Frame (len bytes)
//! ```
//!
//! The body is what `rmp_serde::encode::write` produces by default: the enum
//! externally tagged as a one-entry map `{ "Variant": [field, ...] }`, struct
//! fields as an array in declaration order, byte fields (`Bytes`, nonces,
//! proofs) as MessagePack `bin`. See `docs/protocol.md`.
//!
//! A declared length of zero or above `max_frame_bytes` is refused before any
//! allocation; a body that is not a valid [`Frame`] gives
//! [`CodecError::Decode`]. Either way the connection should be closed: the
//! caller logs the error as the reason.

use bytes::{Buf, BufMut, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::frame::Frame;

/// Bytes of the length prefix before each frame body.
pub const LENGTH_PREFIX_LEN: usize = 4;

/// Errors of the framing layer.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The socket failed.
    #[error("connection I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A peer declared a frame longer than this side accepts; nothing was
    /// allocated for it.
    #[error("incoming frame of {len} bytes exceeds max_frame_bytes ({max})")]
    FrameTooLarge {
        /// The declared body length.
        len: usize,
        /// The limit (`max_frame_bytes`).
        max: usize,
    },
    /// A peer declared a frame of length zero: no valid frame is empty.
    #[error("incoming frame has length 0 (no valid frame is empty)")]
    EmptyFrame,
    /// The body of a frame is not a valid MessagePack [`Frame`].
    #[error("incoming frame of {len} bytes is not a valid frame: {reason}")]
    Decode {
        /// The body length.
        len: usize,
        /// The MessagePack decoder's message.
        reason: String,
    },
    /// A frame to send encodes to more than `max_frame_bytes`; the peer would
    /// refuse it, so it is not sent.
    #[error("outgoing {kind} frame of {len} bytes exceeds max_frame_bytes ({max})")]
    OutgoingTooLarge {
        /// The frame kind ([`Frame::kind`]).
        kind: &'static str,
        /// Its encoded body length (or a lower bound of it).
        len: usize,
        /// The limit (`max_frame_bytes`).
        max: usize,
    },
    /// A frame could not be encoded.
    #[error("outgoing {kind} frame could not be encoded: {reason}")]
    Encode {
        /// The frame kind ([`Frame::kind`]).
        kind: &'static str,
        /// The MessagePack encoder's message.
        reason: String,
    },
}

/// u32 big-endian length + MessagePack [`Frame`].
///
/// Implements [`Decoder`] and [`Encoder`] for both `Frame` and `&Frame` (the
/// latter encodes without cloning the frame's bytes).
#[derive(Debug, Clone)]
pub struct FrameCodec {
    max_frame_bytes: usize,
}

impl FrameCodec {
    /// A codec refusing frames whose body is longer than `max_frame_bytes`.
    ///
    /// The limit is capped at `u32::MAX` (the largest length the prefix can
    /// express).
    pub fn new(max_frame_bytes: usize) -> FrameCodec {
        FrameCodec {
            max_frame_bytes: max_frame_bytes.min(u32::MAX as usize),
        }
    }

    /// The largest body length this codec accepts and sends.
    pub fn max_frame_bytes(&self) -> usize {
        self.max_frame_bytes
    }
}

/// Bytes a frame carries in bulk: a lower bound of its encoded body length,
/// known without encoding it.
fn bulk_len(frame: &Frame) -> usize {
    match frame {
        Frame::Append { records, .. } => records.len(),
        Frame::SnapshotChunk { data, .. } => data.len(),
        Frame::Challenge {
            cluster_id, nonce, ..
        } => cluster_id.len() + nonce.len(),
        Frame::Hello {
            cluster_id,
            nonce,
            proof,
            ..
        } => cluster_id.len() + nonce.len() + proof.len(),
        Frame::Welcome { proof, .. } | Frame::VoterWelcome { proof, .. } => proof.len(),
        Frame::VoterHello {
            cluster_id,
            nonce,
            proof,
            ..
        } => cluster_id.len() + nonce.len() + proof.len(),
        Frame::Election { .. }
        | Frame::Reject { .. }
        | Frame::Truncate { .. }
        | Frame::Position { .. }
        | Frame::Ack { .. }
        | Frame::Heartbeat { .. } => 0,
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        if src.len() < LENGTH_PREFIX_LEN {
            src.reserve(LENGTH_PREFIX_LEN - src.len());
            return Ok(None);
        }
        let len = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
        if len == 0 {
            return Err(CodecError::EmptyFrame);
        }
        if len > self.max_frame_bytes {
            return Err(CodecError::FrameTooLarge {
                len,
                max: self.max_frame_bytes,
            });
        }
        let total = LENGTH_PREFIX_LEN + len;
        if src.len() < total {
            // Only the missing bytes, and len ≤ max was checked above.
            src.reserve(total - src.len());
            return Ok(None);
        }
        src.advance(LENGTH_PREFIX_LEN);
        let body = src.split_to(len);
        rmp_serde::from_slice::<Frame>(&body)
            .map(Some)
            .map_err(|e| CodecError::Decode {
                len,
                reason: e.to_string(),
            })
    }
}

impl Encoder<&Frame> for FrameCodec {
    type Error = CodecError;

    fn encode(&mut self, frame: &Frame, dst: &mut BytesMut) -> Result<(), CodecError> {
        let max = self.max_frame_bytes;
        let lower_bound = bulk_len(frame);
        if lower_bound > max {
            return Err(CodecError::OutgoingTooLarge {
                kind: frame.kind(),
                len: lower_bound,
                max,
            });
        }
        let start = dst.len();
        // Room for the prefix, the bulk bytes and the few small fields.
        dst.reserve(LENGTH_PREFIX_LEN + lower_bound + 64);
        dst.put_u32(0); // length placeholder, patched below
        let written = {
            let mut w = (&mut *dst).writer();
            rmp_serde::encode::write(&mut w, frame)
        };
        if let Err(e) = written {
            dst.truncate(start);
            return Err(CodecError::Encode {
                kind: frame.kind(),
                reason: e.to_string(),
            });
        }
        let len = dst.len() - start - LENGTH_PREFIX_LEN;
        if len > max {
            dst.truncate(start);
            return Err(CodecError::OutgoingTooLarge {
                kind: frame.kind(),
                len,
                max,
            });
        }
        // len ≤ max ≤ u32::MAX (capped in `new`), so this does not truncate.
        let prefix = (len as u32).to_be_bytes();
        dst[start..start + LENGTH_PREFIX_LEN].copy_from_slice(&prefix);
        Ok(())
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = CodecError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), CodecError> {
        <FrameCodec as Encoder<&Frame>>::encode(self, &frame, dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{Command, Entry};
    use crate::frame::{RejectReason, NONCE_LEN, PROTOCOL_VERSION};
    use crate::record::{concat_records, Record, RecordReader};
    use bytes::Bytes;
    use proptest::prelude::*;

    const MAX: usize = 1024 * 1024;

    fn records(n: u64) -> Bytes {
        let recs: Vec<Record> = (1..=n)
            .map(|i| {
                let cmd = if i % 2 == 0 {
                    Command::CreateTopic {
                        name: format!("topic-{i}"),
                        partition_count: 3,
                        replication_factor: 2,
                    }
                } else {
                    Command::LeaderChange {
                        leader: 1,
                        epoch: 7,
                    }
                };
                Record::encode(&Entry {
                    offset: i,
                    epoch: 7,
                    command: cmd,
                })
                .unwrap()
            })
            .collect();
        concat_records(&recs)
    }

    fn all_frames() -> Vec<Frame> {
        vec![
            Frame::Challenge {
                protocol: PROTOCOL_VERSION,
                cluster_id: "cluster-a".into(),
                node_id: 2,
                nonce: vec![7; NONCE_LEN],
            },
            Frame::Hello {
                protocol: PROTOCOL_VERSION,
                cluster_id: "cluster-a".into(),
                leader_id: 1,
                epoch: 9,
                nonce: vec![3; NONCE_LEN],
                proof: vec![0xAB; 32],
            },
            Frame::Welcome {
                node_id: 2,
                last_offset: 100,
                last_epoch: 8,
                directory_id: crate::membership::DirectoryId([0x5A; 16]),
                proof: vec![0xCD; 32],
            },
            Frame::Reject {
                reason: RejectReason::StaleEpoch,
                epoch: 10,
                leader: Some(3),
                proof: vec![0xEE; 32],
            },
            Frame::Reject {
                reason: RejectReason::BadProof,
                epoch: 0,
                leader: None,
                proof: Vec::new(),
            },
            Frame::Truncate { to: 42 },
            Frame::Position {
                last_offset: 42,
                last_epoch: 6,
            },
            Frame::Append {
                first_offset: 1,
                records: records(10),
                commit: 0,
            },
            Frame::Ack {
                offset: u64::MAX,
                seq: u64::MAX,
            },
            Frame::Heartbeat { commit: 17, seq: 3 },
            Frame::SnapshotChunk {
                offset: 1000,
                epoch: 4,
                total_len: 5000,
                position: 4096,
                data: Bytes::from(vec![0x5A; 904]),
            },
        ]
    }

    fn encode(frame: &Frame) -> BytesMut {
        let mut buf = BytesMut::new();
        FrameCodec::new(MAX).encode(frame, &mut buf).unwrap();
        buf
    }

    #[test]
    fn round_trip_every_variant() {
        let frames = all_frames();
        // Every kind is covered.
        let mut kinds: Vec<&str> = frames.iter().map(Frame::kind).collect();
        kinds.dedup();
        assert_eq!(kinds.len(), 10);
        for frame in frames {
            let mut buf = encode(&frame);
            let declared = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
            assert_eq!(declared, buf.len() - LENGTH_PREFIX_LEN);
            let decoded = FrameCodec::new(MAX).decode(&mut buf).unwrap();
            assert_eq!(decoded.as_ref(), Some(&frame));
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn owned_and_borrowed_encoders_agree() {
        for frame in all_frames() {
            let mut owned = BytesMut::new();
            FrameCodec::new(MAX)
                .encode(frame.clone(), &mut owned)
                .unwrap();
            assert_eq!(owned, encode(&frame));
        }
    }

    #[test]
    fn append_records_survive_byte_for_byte() {
        let recs = records(25);
        let frame = Frame::Append {
            first_offset: 1,
            records: recs.clone(),
            commit: 3,
        };
        let mut buf = encode(&frame);
        match FrameCodec::new(MAX).decode(&mut buf).unwrap() {
            Some(Frame::Append { records, .. }) => {
                assert_eq!(records, recs);
                let offsets: Vec<u64> = RecordReader::new(records)
                    .map(|r| r.unwrap().1.offset)
                    .collect();
                assert_eq!(offsets, (1..=25).collect::<Vec<u64>>());
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn append_bytes_are_msgpack_bin_not_an_int_array() {
        let frame = Frame::Append {
            first_offset: 1,
            records: Bytes::from(vec![0xFF; 1000]),
            commit: 0,
        };
        let buf = encode(&frame);
        // An array of ints would take 2 bytes per 0xFF; bin takes 1 + header.
        assert!(buf.len() < 1000 + 32, "encoded {} bytes", buf.len());
        // bin16 marker followed by the length 1000, then the raw bytes.
        let needle = [0xC5, 0x03, 0xE8];
        let at = buf
            .windows(3)
            .position(|w| w == needle)
            .expect("bin16 header");
        assert_eq!(&buf[at + 3..at + 3 + 1000], &[0xFF; 1000][..]);
    }

    #[test]
    fn body_is_externally_tagged_map_with_array_fields() {
        let buf = encode(&Frame::Ack { offset: 5, seq: 2 });
        // fixmap(1) "Ack" fixarray(2) 5 2
        assert_eq!(
            &buf[4..],
            &[0x81, 0xA3, b'A', b'c', b'k', 0x92, 0x05, 0x02][..]
        );
    }

    #[test]
    fn partial_input_byte_by_byte() {
        for frame in all_frames() {
            let full = encode(&frame);
            let mut codec = FrameCodec::new(MAX);
            let mut src = BytesMut::new();
            for (i, b) in full.iter().enumerate() {
                src.put_u8(*b);
                let out = codec.decode(&mut src).unwrap();
                if i + 1 < full.len() {
                    assert!(out.is_none(), "frame complete early at byte {i}");
                    // Never reserves beyond the frame.
                    assert!(src.capacity() <= full.len().max(64));
                } else {
                    assert_eq!(out, Some(frame.clone()));
                }
            }
            assert!(src.is_empty());
            assert_eq!(codec.decode(&mut src).unwrap(), None);
        }
    }

    #[test]
    fn two_frames_in_one_buffer() {
        let a = Frame::Heartbeat { commit: 1, seq: 1 };
        let b = Frame::Append {
            first_offset: 1,
            records: records(3),
            commit: 1,
        };
        let mut codec = FrameCodec::new(MAX);
        let mut buf = BytesMut::new();
        codec.encode(&a, &mut buf).unwrap();
        codec.encode(&b, &mut buf).unwrap();
        // And half of a third one.
        let c = encode(&Frame::Ack { offset: 3, seq: 1 });
        buf.extend_from_slice(&c[..5]);
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(a));
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(b));
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(&c[5..]);
        assert_eq!(
            codec.decode(&mut buf).unwrap(),
            Some(Frame::Ack { offset: 3, seq: 1 })
        );
    }

    #[test]
    fn oversized_length_refused_without_allocating() {
        let mut codec = FrameCodec::new(1024);
        let mut src = BytesMut::with_capacity(8);
        src.put_u32(u32::MAX);
        src.put_u8(0x81);
        let cap = src.capacity();
        match codec.decode(&mut src) {
            Err(CodecError::FrameTooLarge { len, max }) => {
                assert_eq!(len, u32::MAX as usize);
                assert_eq!(max, 1024);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(src.capacity(), cap);
        assert!(src.capacity() < 1024);

        // Just over the limit is refused too; exactly the limit is waited for.
        let mut src = BytesMut::new();
        src.put_u32(1025);
        assert!(matches!(
            codec.decode(&mut src),
            Err(CodecError::FrameTooLarge { len: 1025, .. })
        ));
        let mut src = BytesMut::new();
        src.put_u32(1024);
        assert_eq!(codec.decode(&mut src).unwrap(), None);
        assert!(src.capacity() >= 1028);
        assert!(src.capacity() < 4096);
    }

    #[test]
    fn zero_length_refused() {
        let mut src = BytesMut::from(&[0u8, 0, 0, 0, 0x81][..]);
        assert!(matches!(
            FrameCodec::new(MAX).decode(&mut src),
            Err(CodecError::EmptyFrame)
        ));
    }

    #[test]
    fn garbage_body_is_a_decode_error() {
        let mut src = BytesMut::new();
        src.put_u32(3);
        src.extend_from_slice(&[0xC1, 0xC1, 0xC1]); // 0xC1 is never used
        match FrameCodec::new(MAX).decode(&mut src) {
            Err(CodecError::Decode { len: 3, reason }) => assert!(!reason.is_empty()),
            other => panic!("unexpected {other:?}"),
        }
        // Unknown variant name.
        let mut src = BytesMut::new();
        let body = [0x81, 0xA3, b'F', b'o', b'o', 0x91, 0x05];
        src.put_u32(body.len() as u32);
        src.extend_from_slice(&body);
        let err = FrameCodec::new(MAX).decode(&mut src).unwrap_err();
        assert!(err.to_string().contains("not a valid frame"), "{err}");
        // A bin header declaring more bytes than the frame holds.
        let mut body = encode(&Frame::Append {
            first_offset: 1,
            records: Bytes::from(vec![1; 300]),
            commit: 0,
        })
        .split_off(4);
        body.truncate(body.len() - 100);
        let mut src = BytesMut::new();
        src.put_u32(body.len() as u32);
        src.extend_from_slice(&body);
        assert!(matches!(
            FrameCodec::new(MAX).decode(&mut src),
            Err(CodecError::Decode { .. })
        ));
    }

    #[test]
    fn encode_of_too_big_frame_refused() {
        let mut codec = FrameCodec::new(1000);
        let mut dst = BytesMut::new();
        codec
            .encode(&Frame::Ack { offset: 1, seq: 0 }, &mut dst)
            .unwrap();
        let before = dst.clone();
        let big = Frame::Append {
            first_offset: 1,
            records: Bytes::from(vec![0; 1001]),
            commit: 0,
        };
        assert!(matches!(
            codec.encode(&big, &mut dst),
            Err(CodecError::OutgoingTooLarge { kind: "Append", .. })
        ));
        // Just under the limit in bulk, but over it once encoded.
        let edge = Frame::SnapshotChunk {
            offset: 1,
            epoch: 1,
            total_len: 1,
            position: 0,
            data: Bytes::from(vec![0; 995]),
        };
        match codec.encode(&edge, &mut dst) {
            Err(CodecError::OutgoingTooLarge { len, max, .. }) => {
                assert!(len > 1000);
                assert_eq!(max, 1000);
            }
            other => panic!("unexpected {other:?}"),
        }
        // Nothing partial was left in the buffer.
        assert_eq!(dst, before);
    }

    #[test]
    fn limit_is_capped_at_u32() {
        assert_eq!(
            FrameCodec::new(usize::MAX).max_frame_bytes(),
            u32::MAX as usize
        );
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut codec = FrameCodec::new(4096);
            let mut src = BytesMut::from(&data[..]);
            // Decode until it stops making progress or fails.
            for _ in 0..data.len() + 1 {
                match codec.decode(&mut src) {
                    Ok(Some(_)) => continue,
                    Ok(None) | Err(_) => break,
                }
            }
        }

        #[test]
        fn random_body_with_valid_length_never_panics(body in proptest::collection::vec(any::<u8>(), 1..512)) {
            let mut src = BytesMut::new();
            src.put_u32(body.len() as u32);
            src.extend_from_slice(&body);
            let out = FrameCodec::new(4096).decode(&mut src);
            prop_assert!(!matches!(out, Ok(None)));
        }

        #[test]
        fn append_round_trip(first in any::<u64>(), commit in any::<u64>(),
                             data in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let frame = Frame::Append { first_offset: first, records: Bytes::from(data), commit };
            let mut buf = encode(&frame);
            prop_assert_eq!(FrameCodec::new(MAX).decode(&mut buf).unwrap(), Some(frame));
        }
    }
}
