//! The leader's in-memory tail of recent records.
//!
//! Links read what they send from here; only a link that fell behind the
//! cached range reads from the WAL (on the disk thread). The cache is bounded
//! in bytes, each record counted with [`RECORD_OVERHEAD`] on top of its own
//! bytes: the oldest records fall out as new ones arrive (the newest one always
//! stays).

use std::collections::VecDeque;

use crate::record::Record;

/// Memory a cached record costs beyond its bytes: the `Record` slot, the
/// shared-buffer header of its `Bytes`, and allocator overhead. Charged so
/// that `max_bytes` bounds real memory, not just payload.
pub const RECORD_OVERHEAD: usize = 96;

fn cost(record: &Record) -> usize {
    record.len() + RECORD_OVERHEAD
}

/// A bounded, contiguous run of the newest records.
#[derive(Debug)]
pub struct TailCache {
    records: VecDeque<Record>,
    bytes: usize,
    max_bytes: usize,
}

impl TailCache {
    /// A cache holding at most `max_bytes` of records, overhead included
    /// (at least one record).
    pub fn new(max_bytes: usize) -> TailCache {
        TailCache {
            records: VecDeque::new(),
            bytes: 0,
            max_bytes,
        }
    }

    /// Add the next record. A record that does not continue the cached run
    /// (after a truncation) clears the cache first.
    pub fn push(&mut self, record: Record) {
        if let Some(last) = self.records.back() {
            if record.offset != last.offset + 1 {
                self.clear();
            }
        }
        self.bytes += cost(&record);
        self.records.push_back(record);
        while self.bytes > self.max_bytes && self.records.len() > 1 {
            if let Some(old) = self.records.pop_front() {
                self.bytes -= cost(&old);
            }
        }
    }

    /// Forget everything (after a truncation or a role change).
    pub fn clear(&mut self) {
        self.records.clear();
        self.bytes = 0;
    }

    /// Forget records after `offset`.
    pub fn truncate_after(&mut self, offset: u64) {
        while let Some(last) = self.records.back() {
            if last.offset <= offset {
                break;
            }
            self.bytes -= cost(last);
            self.records.pop_back();
        }
    }

    /// First cached offset, if any.
    pub fn first_offset(&self) -> Option<u64> {
        self.records.front().map(|r| r.offset)
    }

    /// Last cached offset, if any.
    pub fn last_offset(&self) -> Option<u64> {
        self.records.back().map(|r| r.offset)
    }

    /// Memory charged for the records held (bytes plus per-record overhead).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Records from `from`, at most `max_entries` and stopping before
    /// `max_bytes` would be passed (but at least one). `None` when `from` is
    /// not cached (older, or beyond the end).
    pub fn read(&self, from: u64, max_entries: usize, max_bytes: usize) -> Option<Vec<Record>> {
        let first = self.first_offset()?;
        if from < first || from > self.last_offset()? {
            return None;
        }
        let start = (from - first) as usize;
        let mut out = Vec::new();
        let mut bytes = 0;
        for r in self.records.range(start..) {
            if out.len() >= max_entries || (!out.is_empty() && bytes + r.len() > max_bytes) {
                break;
            }
            bytes += r.len();
            out.push(r.clone());
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::record::test_record as rec;

    #[test]
    fn bounded_and_contiguous() {
        let one = rec(1).len() + RECORD_OVERHEAD;
        let mut c = TailCache::new(one * 3 + 2);
        for o in 1..=10 {
            c.push(rec(o));
            assert!(c.bytes() <= one * 3 + 2 || c.first_offset() == c.last_offset());
        }
        assert!(c.read(7, 10, usize::MAX).is_none());
        let got = c.read(8, 10, usize::MAX).unwrap();
        assert_eq!(
            got.iter().map(|r| r.offset).collect::<Vec<_>>(),
            vec![8, 9, 10]
        );
        assert_eq!(c.read(8, 1, usize::MAX).unwrap().len(), 1);
        assert_eq!(c.read(8, 10, 1).unwrap().len(), 1);
        assert!(c.read(11, 10, usize::MAX).is_none());
        c.truncate_after(8);
        assert_eq!(c.last_offset(), Some(8));
        c.push(rec(20));
        assert_eq!(c.first_offset(), Some(20));
    }
}
