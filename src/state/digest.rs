//! The state digest: [`Digest`] and [`MetadataState::digest`].
//!
//! Separate because the digest is a compatibility contract, not state-machine
//! logic: nodes compare digests to prove they hold the same state, so its
//! canonical encoding (documented on [`MetadataState::digest`]) must only
//! change together with its version tag.

use sha2::{Digest as _, Sha256};

use crate::command::NodeId;

use super::MetadataState;

/// A 32-byte SHA-256 digest of a state, printed as hex.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digest(pub [u8; 32]);

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl MetadataState {
    /// Stable digest of the whole state (independent of map order).
    ///
    /// SHA-256 over an explicit canonical encoding, independent of serde:
    ///
    /// ```text
    /// "metawal-state-v1"
    /// applied_offset u64 | applied_epoch u64 | leader opt
    /// topic count u64, then per topic in name order:
    ///   name (u64 length + UTF-8 bytes) | replication_factor u32 | partition count u64
    ///   per partition in index order:
    ///     replicas (u64 count + u64 each) | leader opt | isr (u64 count + u64 each)
    /// then, only once a `Membership` entry was applied:
    ///   "membership" | voter count u64, per voter in id order: member
    ///   | learner count u64, per learner in id order: member
    ///   member = node_id u64 | directory_id 16 bytes
    ///     | replication_addr (u64 length + UTF-8) | http_addr (u64 length + UTF-8)
    ///     | kafka_addr (u64 length + UTF-8)
    /// opt = 0u8, or 1u8 followed by u64
    /// ```
    ///
    /// (A state without a membership hashes as before the field existed.)
    ///
    /// All integers are big-endian.
    pub fn digest(&self) -> Digest {
        fn put_u64(h: &mut Sha256, v: u64) {
            h.update(v.to_be_bytes());
        }
        fn put_len(h: &mut Sha256, n: usize) {
            put_u64(h, n as u64);
        }
        fn put_opt(h: &mut Sha256, v: Option<u64>) {
            match v {
                None => h.update([0u8]),
                Some(v) => {
                    h.update([1u8]);
                    put_u64(h, v);
                }
            }
        }
        fn put_ids(h: &mut Sha256, ids: &[NodeId]) {
            put_len(h, ids.len());
            for id in ids {
                put_u64(h, *id);
            }
        }

        let mut h = Sha256::new();
        h.update(b"metawal-state-v1");
        put_u64(&mut h, self.applied_offset);
        put_u64(&mut h, self.applied_epoch);
        put_opt(&mut h, self.leader);
        put_len(&mut h, self.topics.len());
        for (name, topic) in &self.topics {
            put_len(&mut h, name.len());
            h.update(name.as_bytes());
            h.update(topic.replication_factor.to_be_bytes());
            put_len(&mut h, topic.partitions.len());
            for p in &topic.partitions {
                put_ids(&mut h, &p.replicas);
                put_opt(&mut h, p.leader);
                put_ids(&mut h, &p.isr);
            }
        }
        if let Some(m) = &self.membership {
            h.update(b"membership");
            for group in [
                m.voters().collect::<Vec<_>>(),
                m.learners().collect::<Vec<_>>(),
            ] {
                put_len(&mut h, group.len());
                for member in group {
                    put_u64(&mut h, member.node_id);
                    h.update(member.directory_id.0);
                    for addr in [
                        &member.replication_addr,
                        &member.http_addr,
                        &member.kafka_addr,
                    ] {
                        put_len(&mut h, addr.len());
                        h.update(addr.as_bytes());
                    }
                }
            }
        }
        Digest(h.finalize().into())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{assign, create, delete, fixture, grow, isr, lead, ok, step};
    use super::*;
    use crate::command::{Command, Entry};

    // ---- digest ----------------------------------------------------------

    #[test]
    fn digest_is_stable_and_sensitive() {
        let a = fixture();
        let b = fixture();
        assert_eq!(a.digest(), b.digest());
        assert_eq!(a.digest().to_string().len(), 64);

        // Each kind of change changes the digest.
        let changes = [
            create("x", 1, 1),
            delete("t"),
            assign("t", 2, &[1]),
            lead("t", 0, 2),
            isr("t", 0, &[1, 2]),
            grow("t", 4),
            Command::LeaderChange {
                leader: 1,
                epoch: 1,
            },
            Command::Membership(
                crate::membership::Membership::new(
                    [crate::membership::Member {
                        node_id: 1,
                        directory_id: crate::membership::DirectoryId([1; 16]),
                        replication_addr: "127.0.0.1:1".into(),
                        http_addr: "127.0.0.1:2".into(),
                        kafka_addr: String::new(),
                    }],
                    [],
                )
                .unwrap(),
            ),
        ];
        for c in changes {
            let mut changed = a.clone();
            ok(&mut changed, c);
            assert_ne!(changed.digest(), a.digest());
        }
        // An invalid entry still moves the offset, hence the digest.
        let mut changed = a.clone();
        step(&mut changed, delete("nope")).unwrap_err();
        assert_ne!(changed.digest(), a.digest());
        // Epoch alone matters too.
        let mut e1 = a.clone();
        let mut e2 = a.clone();
        for (s, epoch) in [(&mut e1, 1), (&mut e2, 2)] {
            s.apply(&Entry {
                offset: a.applied_offset() + 1,
                epoch,
                command: delete("nope"),
            })
            .unwrap_err();
        }
        assert_ne!(e1.digest(), e2.digest());
    }

    #[test]
    fn digest_independent_of_insertion_order() {
        let mut a = MetadataState::new();
        ok(&mut a, create("alpha", 2, 1));
        ok(&mut a, create("beta", 1, 1));
        ok(&mut a, create("gamma", 3, 2));
        let mut b = MetadataState::new();
        ok(&mut b, create("gamma", 3, 2));
        ok(&mut b, create("alpha", 2, 1));
        ok(&mut b, create("beta", 1, 1));
        assert_eq!(a, b);
        assert_eq!(a.digest(), b.digest());
    }

    #[test]
    fn digest_does_not_confuse_field_boundaries() {
        // "ab"+"c" vs "a"+"bc" topic names: length prefixes keep them apart.
        let mut a = MetadataState::new();
        ok(&mut a, create("ab", 1, 1));
        ok(&mut a, create("c", 1, 1));
        let mut b = MetadataState::new();
        ok(&mut b, create("a", 1, 1));
        ok(&mut b, create("bc", 1, 1));
        assert_ne!(a.digest(), b.digest());
        // Replicas [1,2] + ISR [] vs replicas [1] + ISR [2] etc.
        let mut c = MetadataState::new();
        ok(&mut c, create("t", 1, 1));
        ok(&mut c, assign("t", 0, &[1, 2]));
        let mut d = MetadataState::new();
        ok(&mut d, create("t", 1, 1));
        ok(&mut d, assign("t", 0, &[1]));
        assert_ne!(c.digest(), d.digest());
    }

    #[test]
    fn a_grown_topic_hashes_as_one_created_with_that_count() {
        // CreatePartitions adds no new kind of state: 3 grown to 5 is the
        // same state, with the same digest, as 5 from the start (at the
        // same offset and epoch; the second entry of `b` is refused, which
        // only moves the offset).
        let mut a = MetadataState::new();
        ok(&mut a, create("g", 3, 2));
        ok(&mut a, grow("g", 5));
        let mut b = MetadataState::new();
        ok(&mut b, create("g", 5, 2));
        step(&mut b, delete("nope")).unwrap_err();
        assert_eq!(a, b);
        assert_eq!(a.digest(), b.digest());
    }

    #[test]
    fn snapshot_roundtrip_keeps_digest() {
        let s = fixture();
        let bytes = rmp_serde::to_vec(&s).unwrap();
        let back: MetadataState = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.digest(), s.digest());
    }
}
