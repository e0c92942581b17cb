//! The WAL record: the one encoding of an [`Entry`], shared by disk and wire.
//!
//! ```text
//! record = len: u32 BE | crc32c(payload): u32 BE | payload: MessagePack Entry (len bytes)
//! ```
//!
//! The leader encodes each entry exactly once into a [`Record`]; the same bytes
//! are written to its WAL and carried inside `Append` frames to every follower,
//! which checks them with [`RecordReader`] and writes them unchanged.

use bytes::{Bytes, BytesMut};

use crate::command::Entry;

/// Bytes before the payload: length and checksum.
pub const RECORD_HEADER_LEN: usize = 8;

/// Largest payload a record may carry. A valid command encodes to well under
/// 2 KiB (a topic name of at most 249 bytes, at most 64 broker ids); anything
/// bigger is corruption or abuse. Bounding it bounds every queue that counts
/// entries.
pub const MAX_RECORD_PAYLOAD: usize = 64 * 1024;

/// Errors from encoding or checking a record.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    /// Fewer bytes remain than the header or the declared payload needs.
    #[error("record truncated: needs {needed} bytes, only {available} remain")]
    Truncated {
        /// Bytes the record needs from its start.
        needed: usize,
        /// Bytes that remain from its start.
        available: usize,
    },
    /// The declared payload length is zero or above [`MAX_RECORD_PAYLOAD`].
    #[error("record length {len} is invalid (must be 1..={max})")]
    BadLength {
        /// Declared payload length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The payload does not match its checksum.
    #[error("record checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum {
        /// The CRC in the header.
        stored: u32,
        /// The CRC of the payload as read.
        computed: u32,
    },
    /// The payload is not a valid MessagePack entry.
    #[error("record payload is not a valid entry: {0}")]
    Decode(String),
    /// The entry could not be encoded.
    #[error("entry could not be encoded: {0}")]
    Encode(String),
}

/// One encoded entry: its offset and epoch (for routing without decoding) and
/// the full record bytes (header + payload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The entry's offset.
    pub offset: u64,
    /// The entry's epoch.
    pub epoch: u64,
    /// The whole record: header and payload.
    pub bytes: Bytes,
}

impl Record {
    /// Encode an entry into a record. This is the only place entries are encoded.
    pub fn encode(entry: &Entry) -> Result<Record, RecordError> {
        let mut buf = Vec::with_capacity(RECORD_HEADER_LEN + 96);
        buf.extend_from_slice(&[0u8; RECORD_HEADER_LEN]); // len + crc, patched below
        rmp_serde::encode::write(&mut buf, entry)
            .map_err(|e| RecordError::Encode(e.to_string()))?;
        let payload_len = buf.len() - RECORD_HEADER_LEN;
        if payload_len > MAX_RECORD_PAYLOAD {
            return Err(RecordError::BadLength {
                len: payload_len,
                max: MAX_RECORD_PAYLOAD,
            });
        }
        let crc = crc32c::crc32c(&buf[RECORD_HEADER_LEN..]);
        buf[0..4].copy_from_slice(&(payload_len as u32).to_be_bytes());
        buf[4..8].copy_from_slice(&crc.to_be_bytes());
        // Records live on in the leader's tail cache: keep exactly their size.
        buf.shrink_to_fit();
        Ok(Record {
            offset: entry.offset,
            epoch: entry.epoch,
            bytes: Bytes::from(buf),
        })
    }

    /// Length of the record on disk / on the wire.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// A record always has a header, so it is never empty.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Decode the entry this record carries (checks length and CRC again).
    pub fn entry(&self) -> Result<Entry, RecordError> {
        let (entry, _) = decode_record(&self.bytes)?;
        Ok(entry)
    }
}

/// Check and decode the record at the start of `buf`. Returns the entry and the
/// number of bytes the record occupies.
pub fn decode_record(buf: &[u8]) -> Result<(Entry, usize), RecordError> {
    if buf.len() < RECORD_HEADER_LEN {
        return Err(RecordError::Truncated {
            needed: RECORD_HEADER_LEN,
            available: buf.len(),
        });
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    let stored = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
    if len == 0 || len > MAX_RECORD_PAYLOAD {
        return Err(RecordError::BadLength {
            len,
            max: MAX_RECORD_PAYLOAD,
        });
    }
    let total = RECORD_HEADER_LEN + len;
    if buf.len() < total {
        return Err(RecordError::Truncated {
            needed: total,
            available: buf.len(),
        });
    }
    let payload = &buf[RECORD_HEADER_LEN..total];
    let computed = crc32c::crc32c(payload);
    if computed != stored {
        return Err(RecordError::Checksum { stored, computed });
    }
    let entry: Entry =
        rmp_serde::from_slice(payload).map_err(|e| RecordError::Decode(e.to_string()))?;
    Ok((entry, total))
}

/// Splits a buffer of concatenated records (an `Append` frame's payload, or a
/// WAL read) into checked records, sharing the underlying bytes.
#[derive(Debug)]
pub struct RecordReader {
    buf: Bytes,
    pos: usize,
}

impl RecordReader {
    /// Read records from `buf`.
    pub fn new(buf: Bytes) -> RecordReader {
        RecordReader { buf, pos: 0 }
    }

    /// Byte position of the next record within the buffer.
    pub fn position(&self) -> usize {
        self.pos
    }
}

impl Iterator for RecordReader {
    type Item = Result<(Record, Entry), RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.buf.len() {
            return None;
        }
        match decode_record(&self.buf[self.pos..]) {
            Ok((entry, used)) => {
                let bytes = self.buf.slice(self.pos..self.pos + used);
                self.pos += used;
                Some(Ok((
                    Record {
                        offset: entry.offset,
                        epoch: entry.epoch,
                        bytes,
                    },
                    entry,
                )))
            }
            Err(e) => {
                // Stop after the first error: what follows cannot be framed.
                self.pos = self.buf.len();
                Some(Err(e))
            }
        }
    }
}

/// Concatenate records into one buffer (the payload of an `Append` frame).
pub fn concat_records<'a>(records: impl IntoIterator<Item = &'a Record>) -> Bytes {
    let records: Vec<&Record> = records.into_iter().collect();
    let total = records.iter().map(|r| r.len()).sum();
    let mut buf = BytesMut::with_capacity(total);
    for r in records {
        buf.extend_from_slice(&r.bytes);
    }
    buf.freeze()
}

/// A small valid record at `offset` (epoch 1), for unit tests.
#[cfg(test)]
pub(crate) fn test_record(offset: u64) -> Record {
    Record::encode(&Entry {
        offset,
        epoch: 1,
        command: crate::command::Command::DeleteTopic {
            name: format!("t{offset}"),
        },
    })
    .expect("a small entry encodes")
}
