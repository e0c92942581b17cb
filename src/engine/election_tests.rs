//! Each input to the election engine and the exact actions it produces,
//! then small clusters of engines exchanging messages directly.

use std::collections::BTreeMap;

use super::*;

const T: Duration = Duration::from_millis(100);

fn config() -> ElectionConfig {
    ElectionConfig {
        election_timeout: T,
    }
}

fn engine(node: NodeId, epoch: u64, t0: Instant) -> ElectionEngine {
    ElectionEngine::new(node, [1, 2, 3], config(), epoch, None, t0, node * 7919)
}

fn drain(e: &mut ElectionEngine) -> Vec<ElectionAction> {
    std::iter::from_fn(|| e.poll_action()).collect()
}

fn send(to: NodeId, msg: ElectionMsg) -> ElectionAction {
    ElectionAction::Send { to, msg }
}

fn pre_vote(epoch: u64, log: LastLog) -> ElectionMsg {
    ElectionMsg::PreVote {
        epoch,
        last_epoch: log.0,
        last_offset: log.1,
    }
}

fn vote(epoch: u64, log: LastLog, transfer: bool) -> ElectionMsg {
    ElectionMsg::Vote {
        epoch,
        last_epoch: log.0,
        last_offset: log.1,
        transfer,
    }
}

fn received(from: NodeId, msg: ElectionMsg) -> ElectionInput {
    ElectionInput::Received { from, msg }
}

/// Voters whose directory ids the membership does not know.
fn unknown_dirs<const N: usize>(ids: [NodeId; N]) -> BTreeMap<NodeId, DirectoryId> {
    ids.into_iter().map(|i| (i, DirectoryId::UNKNOWN)).collect()
}

/// Node `id`'s directory as the tests name it.
fn dir(id: NodeId) -> DirectoryId {
    DirectoryId([id as u8; 16])
}

/// A grant from `directory`.
fn pre_granted(epoch: u64, current: u64, directory: DirectoryId) -> ElectionMsg {
    ElectionMsg::PreVoteReply {
        epoch,
        current,
        granted: true,
        directory,
    }
}

#[test]
fn a_grant_from_a_directory_the_membership_does_not_name_is_not_counted() {
    let t0 = Instant::now();
    let mut e = engine(1, 4, t0).with_directory(dir(1));
    let named = BTreeMap::from([(1, dir(1)), (2, dir(2)), (3, dir(3))]);
    e.handle(t0, ElectionInput::VotersChanged { voters: named }, (4, 10));
    let at = e.poll_timeout();
    e.handle(at, ElectionInput::Tick, (4, 10));
    drain(&mut e);
    let wiped = DirectoryId([0xee; 16]);
    // Node 2's disk was wiped: its grant counts for nothing, in either
    // round.
    e.handle(at, received(2, pre_granted(5, 0, wiped)), (4, 10));
    assert!(drain(&mut e).is_empty(), "a wiped voter's pre-vote counted");
    assert_eq!(e.role(), ElectionRole::PreCandidate);
    e.handle(at, received(3, pre_granted(5, 4, dir(3))), (4, 10));
    assert_eq!(
        drain(&mut e),
        [ElectionAction::PersistVote {
            epoch: 5,
            voted_for: Some(1)
        }]
    );
    e.handle(
        at,
        ElectionInput::Persisted {
            epoch: 5,
            voted_for: Some(1),
        },
        (4, 10),
    );
    drain(&mut e);
    let vote_reply = |directory| ElectionMsg::VoteReply {
        epoch: 5,
        current: 5,
        granted: true,
        directory,
    };
    e.handle(at, received(2, vote_reply(wiped)), (4, 10));
    assert!(drain(&mut e).is_empty(), "a wiped voter's vote counted");
    assert_eq!(e.role(), ElectionRole::Candidate);
    e.handle(at, received(3, vote_reply(dir(3))), (4, 10));
    assert_eq!(drain(&mut e), [ElectionAction::BecomeLeader { epoch: 5 }]);
}

#[test]
fn a_voter_the_membership_names_with_another_directory_never_stands() {
    let t0 = Instant::now();
    // This node's disk was wiped: the membership names its old directory.
    let mut e = engine(1, 4, t0).with_directory(DirectoryId([0xee; 16]));
    let named = BTreeMap::from([(1, dir(1)), (2, dir(2)), (3, dir(3))]);
    e.handle(t0, ElectionInput::VotersChanged { voters: named }, (4, 10));
    assert!(!e.is_voter());
    let at = e.poll_timeout();
    e.handle(at, ElectionInput::Tick, (4, 10));
    assert!(
        drain(&mut e).is_empty(),
        "a wiped voter asked for pre-votes"
    );
    // Its replies name its own directory, so no candidate counts them.
    e.handle(at, received(2, pre_vote(5, (4, 10))), (4, 10));
    assert_eq!(
        drain(&mut e),
        [send(2, pre_granted(5, 4, DirectoryId([0xee; 16])))]
    );
    // Where the membership does not know the directory, it stands.
    let unknown = BTreeMap::from([(1, DirectoryId::UNKNOWN), (2, dir(2)), (3, dir(3))]);
    e.handle(
        at,
        ElectionInput::VotersChanged { voters: unknown },
        (4, 10),
    );
    assert!(e.is_voter());
}

#[test]
fn the_timeout_is_drawn_from_t_to_2t() {
    let t0 = Instant::now();
    for seed in 0..50 {
        let e = ElectionEngine::new(1, [1, 2, 3], config(), 0, None, t0, seed);
        let wait = e.poll_timeout() - t0;
        assert!(wait >= T && wait < 2 * T, "{wait:?}");
    }
}

#[test]
fn a_timeout_asks_for_pre_votes_without_changing_the_epoch() {
    let t0 = Instant::now();
    let mut e = engine(1, 4, t0);
    e.handle(t0 + T / 2, ElectionInput::Tick, (4, 10));
    assert!(drain(&mut e).is_empty(), "not yet");
    let at = e.poll_timeout();
    e.handle(at, ElectionInput::Tick, (4, 10));
    assert_eq!(
        drain(&mut e),
        [send(2, pre_vote(5, (4, 10))), send(3, pre_vote(5, (4, 10)))]
    );
    assert_eq!(e.role(), ElectionRole::PreCandidate);
    assert_eq!(e.epoch(), 4, "a pre-vote changes no epoch");
}

#[test]
fn pre_votes_then_a_persisted_vote_then_votes_then_leadership() {
    let t0 = Instant::now();
    let mut e = engine(1, 4, t0);
    let at = e.poll_timeout();
    e.handle(at, ElectionInput::Tick, (4, 10));
    drain(&mut e);
    let granted = ElectionMsg::PreVoteReply {
        epoch: 5,
        current: 4,
        granted: true,
        directory: DirectoryId::UNKNOWN,
    };
    e.handle(at, received(2, granted), (4, 10));
    assert_eq!(
        drain(&mut e),
        [ElectionAction::PersistVote {
            epoch: 5,
            voted_for: Some(1)
        }],
        "no vote request before its own vote is on disk"
    );
    assert_eq!(e.role(), ElectionRole::Candidate);
    e.handle(
        at,
        ElectionInput::Persisted {
            epoch: 5,
            voted_for: Some(1),
        },
        (4, 10),
    );
    assert_eq!(
        drain(&mut e),
        [
            send(2, vote(5, (4, 10), false)),
            send(3, vote(5, (4, 10), false))
        ]
    );
    let yes = ElectionMsg::VoteReply {
        epoch: 5,
        current: 5,
        granted: true,
        directory: DirectoryId::UNKNOWN,
    };
    e.handle(at, received(3, yes), (4, 10));
    assert_eq!(drain(&mut e), [ElectionAction::BecomeLeader { epoch: 5 }]);
    assert_eq!(e.role(), ElectionRole::Leader);
    assert_eq!(e.elections(), 1);
}

#[test]
fn a_voter_grants_once_per_epoch_and_answers_after_the_write() {
    let t0 = Instant::now();
    let mut v = engine(2, 4, t0);
    v.handle(t0, received(1, vote(5, (4, 10), false)), (4, 10));
    assert_eq!(
        drain(&mut v),
        [
            ElectionAction::PersistVote {
                epoch: 5,
                voted_for: None
            },
            ElectionAction::PersistVote {
                epoch: 5,
                voted_for: Some(1)
            }
        ]
    );
    v.handle(
        t0,
        ElectionInput::Persisted {
            epoch: 5,
            voted_for: Some(1),
        },
        (4, 10),
    );
    assert_eq!(
        drain(&mut v),
        [send(
            1,
            ElectionMsg::VoteReply {
                epoch: 5,
                current: 5,
                granted: true,
                directory: DirectoryId::UNKNOWN,
            }
        )]
    );
    // Another candidate of the same epoch: refused at once.
    v.handle(t0, received(3, vote(5, (4, 12), false)), (4, 10));
    assert_eq!(
        drain(&mut v),
        [send(
            3,
            ElectionMsg::VoteReply {
                epoch: 5,
                current: 5,
                granted: false,
                directory: DirectoryId::UNKNOWN,
            }
        )]
    );
    assert_eq!(v.voted_for(), Some(1));
}

#[test]
fn a_candidate_behind_the_voters_log_is_refused() {
    let t0 = Instant::now();
    let mut v = engine(2, 4, t0);
    for (theirs, why) in [((4, 9), "shorter log"), ((3, 20), "older last epoch")] {
        v.handle(t0, received(1, vote(6, theirs, false)), (4, 10));
        let out = drain(&mut v);
        assert_eq!(
            out.last(),
            Some(&send(
                1,
                ElectionMsg::VoteReply {
                    epoch: 6,
                    current: 6,
                    granted: false,
                    directory: DirectoryId::UNKNOWN,
                }
            )),
            "{why}: {out:?}"
        );
    }
    assert_eq!(v.voted_for(), None);
    assert_eq!(v.epoch(), 6, "the epoch moved up, persisted, unvoted");
}

#[test]
fn a_voter_that_hears_its_leader_refuses_pre_votes_and_votes() {
    let t0 = Instant::now();
    let mut v = engine(2, 4, t0);
    v.handle(
        t0,
        ElectionInput::LeaderHeard {
            leader: 3,
            epoch: 4,
        },
        (4, 10),
    );
    v.handle(t0 + T / 2, received(1, pre_vote(5, (4, 50))), (4, 10));
    assert_eq!(
        drain(&mut v),
        [send(
            1,
            ElectionMsg::PreVoteReply {
                epoch: 5,
                current: 4,
                granted: false,
                directory: DirectoryId::UNKNOWN,
            }
        )]
    );
    v.handle(t0 + T / 2, received(1, vote(9, (4, 50), false)), (4, 10));
    assert_eq!(
        drain(&mut v),
        [send(
            1,
            ElectionMsg::VoteReply {
                epoch: 9,
                current: 4,
                granted: false,
                directory: DirectoryId::UNKNOWN,
            }
        )]
    );
    assert_eq!(
        v.epoch(),
        4,
        "a stale node cannot push a healthy voter's epoch"
    );
    // Once the leader has been silent for T, the same pre-vote is granted.
    v.handle(t0 + T, received(1, pre_vote(5, (4, 50))), (4, 10));
    assert_eq!(
        drain(&mut v),
        [send(
            1,
            ElectionMsg::PreVoteReply {
                epoch: 5,
                current: 4,
                granted: true,
                directory: DirectoryId::UNKNOWN,
            }
        )]
    );
}

#[test]
fn a_transfer_vote_is_granted_while_the_old_leader_is_heard() {
    let t0 = Instant::now();
    let mut v = engine(2, 4, t0);
    v.handle(
        t0,
        ElectionInput::LeaderHeard {
            leader: 3,
            epoch: 4,
        },
        (4, 10),
    );
    v.handle(t0, received(1, vote(5, (4, 10), true)), (4, 10));
    let out = drain(&mut v);
    assert!(
        out.contains(&ElectionAction::PersistVote {
            epoch: 5,
            voted_for: Some(1)
        }),
        "{out:?}"
    );
}

#[test]
fn the_leader_steps_down_without_a_majority_within_t() {
    let (mut l, won) = leader_of_epoch_1(Instant::now());
    l.handle(won + T / 10, ElectionInput::Tick, (1, 1));
    assert!(
        drain(&mut l).is_empty(),
        "a new leader's followers have T to be heard from"
    );
    l.handle(
        won + T / 2,
        ElectionInput::FollowerHeard {
            peer: 2,
            since: won + T / 2,
        },
        (1, 1),
    );
    l.handle(won + T, ElectionInput::Tick, (1, 1));
    assert!(drain(&mut l).is_empty(), "node 2 was heard T/2 ago");
    l.handle(won + T * 3 / 2, ElectionInput::Tick, (1, 1));
    assert_eq!(
        drain(&mut l),
        [ElectionAction::StepDown {
            epoch: 1,
            leader: None
        }]
    );
    assert_eq!(l.role(), ElectionRole::Follower);
}

/// Node 1, leader of epoch 1 in a 3-node cluster, and when it won.
fn leader_of_epoch_1(t0: Instant) -> (ElectionEngine, Instant) {
    let mut l = engine(1, 0, t0);
    let at = l.poll_timeout();
    l.handle(at, ElectionInput::Tick, (0, 0));
    let yes = ElectionMsg::PreVoteReply {
        epoch: 1,
        current: 0,
        granted: true,
        directory: DirectoryId::UNKNOWN,
    };
    l.handle(at, received(2, yes), (0, 0));
    l.handle(
        at,
        ElectionInput::Persisted {
            epoch: 1,
            voted_for: Some(1),
        },
        (0, 0),
    );
    let yes = ElectionMsg::VoteReply {
        epoch: 1,
        current: 1,
        granted: true,
        directory: DirectoryId::UNKNOWN,
    };
    l.handle(at, received(2, yes), (0, 0));
    assert_eq!(l.role(), ElectionRole::Leader);
    drain(&mut l);
    (l, at)
}

#[test]
fn a_resigning_leader_is_replaced_without_waiting_t() {
    let (mut l, t0) = leader_of_epoch_1(Instant::now());
    l.handle(t0, ElectionInput::Resign, (1, 1));
    assert_eq!(
        drain(&mut l),
        [
            send(2, ElectionMsg::Resign { epoch: 1 }),
            send(3, ElectionMsg::Resign { epoch: 1 }),
            ElectionAction::StepDown {
                epoch: 1,
                leader: None
            }
        ]
    );
    let mut f = engine(2, 1, t0);
    f.handle(
        t0,
        ElectionInput::LeaderHeard {
            leader: 1,
            epoch: 1,
        },
        (1, 1),
    );
    f.handle(t0, received(1, ElectionMsg::Resign { epoch: 1 }), (1, 1));
    assert!(f.poll_timeout() < t0 + T / 4 + Duration::from_nanos(1));
}

#[test]
fn a_higher_epoch_in_any_reply_makes_the_node_follow_in_it() {
    let t0 = Instant::now();
    let mut e = engine(1, 4, t0);
    let at = e.poll_timeout();
    e.handle(at, ElectionInput::Tick, (4, 10));
    drain(&mut e);
    let no = ElectionMsg::PreVoteReply {
        epoch: 5,
        current: 7,
        granted: false,
        directory: DirectoryId::UNKNOWN,
    };
    e.handle(at, received(2, no), (4, 10));
    assert_eq!(
        drain(&mut e),
        [ElectionAction::PersistVote {
            epoch: 7,
            voted_for: None
        }]
    );
    assert_eq!((e.role(), e.epoch()), (ElectionRole::Follower, 7));
}

#[test]
fn a_strangers_requests_are_answered_by_the_rules_and_its_answers_ignored() {
    let t0 = Instant::now();
    let mut v = engine(2, 4, t0);
    // From itself: nothing.
    v.handle(t0, received(2, vote(5, (9, 99), false)), (4, 10));
    assert!(drain(&mut v).is_empty());
    // A node outside this voter set (a voter added by an entry this node
    // has not seen yet) with a fresher log gets the vote, after the write.
    v.handle(t0, received(9, vote(5, (9, 99), false)), (4, 10));
    assert!(
        drain(&mut v).contains(&ElectionAction::PersistVote {
            epoch: 5,
            voted_for: Some(9)
        }),
        "a fresher stranger gets no vote"
    );
    // A stale one does not.
    let mut w = engine(3, 4, t0);
    w.handle(t0, received(9, vote(5, (1, 1), false)), (4, 10));
    w.handle(
        t0,
        ElectionInput::Persisted {
            epoch: 5,
            voted_for: None,
        },
        (4, 10),
    );
    assert!(drain(&mut w).iter().all(|a| !matches!(
        a,
        ElectionAction::Send {
            msg: ElectionMsg::VoteReply { granted: true, .. },
            ..
        }
    )));
    // Its answers and its resignations count for nothing.
    let mut c = engine(1, 4, t0);
    let at = c.poll_timeout();
    c.handle(at, ElectionInput::Tick, (4, 10));
    drain(&mut c);
    let granted = ElectionMsg::PreVoteReply {
        epoch: 5,
        current: 4,
        granted: true,
        directory: DirectoryId::UNKNOWN,
    };
    c.handle(at, received(9, granted), (4, 10));
    assert!(
        drain(&mut c).is_empty(),
        "a stranger's grant is no majority"
    );
    assert_eq!(c.role(), ElectionRole::PreCandidate);
}

#[test]
fn a_node_outside_the_voters_never_stands() {
    let t0 = Instant::now();
    let mut e = engine(1, 4, t0);
    assert!(e.is_voter());
    e.handle(
        t0,
        ElectionInput::VotersChanged {
            voters: unknown_dirs([2, 3, 4]),
        },
        (4, 10),
    );
    assert!(!e.is_voter());
    for i in 1..=5 {
        let at = e.poll_timeout();
        assert!(at > t0 + T * (i - 1), "the timer still moves on");
        e.handle(at, ElectionInput::Tick, (4, 10));
        assert!(drain(&mut e).is_empty(), "a learner asked for votes");
        assert_eq!(e.role(), ElectionRole::Follower);
    }
}

#[test]
fn a_pre_candidate_removed_from_the_voters_gives_up_its_round() {
    let t0 = Instant::now();
    let mut e = engine(1, 4, t0);
    let at = e.poll_timeout();
    e.handle(at, ElectionInput::Tick, (4, 10));
    drain(&mut e);
    assert_eq!(e.role(), ElectionRole::PreCandidate);
    e.handle(
        at,
        ElectionInput::VotersChanged {
            voters: unknown_dirs([2, 3]),
        },
        (4, 10),
    );
    assert_eq!(e.role(), ElectionRole::Follower);
    let granted = ElectionMsg::PreVoteReply {
        epoch: 5,
        current: 4,
        granted: true,
        directory: DirectoryId::UNKNOWN,
    };
    e.handle(at, received(2, granted), (4, 10));
    assert!(drain(&mut e).is_empty(), "a late grant starts nothing");
}

#[test]
fn majorities_are_counted_over_the_voters_in_force() {
    let t0 = Instant::now();
    // Grown to five voters: one grant besides its own is not enough.
    let mut e = engine(1, 4, t0);
    e.handle(
        t0,
        ElectionInput::VotersChanged {
            voters: unknown_dirs([1, 2, 3, 4, 5]),
        },
        (4, 10),
    );
    let at = e.poll_timeout();
    e.handle(at, ElectionInput::Tick, (4, 10));
    assert_eq!(drain(&mut e).len(), 4, "pre-votes to the four others");
    let granted = ElectionMsg::PreVoteReply {
        epoch: 5,
        current: 4,
        granted: true,
        directory: DirectoryId::UNKNOWN,
    };
    e.handle(at, received(2, granted), (4, 10));
    assert!(drain(&mut e).is_empty(), "2 of 5 is no majority");
    e.handle(at, received(4, granted), (4, 10));
    assert_eq!(
        drain(&mut e),
        [ElectionAction::PersistVote {
            epoch: 5,
            voted_for: Some(1)
        }]
    );

    // A leader's check-quorum counts the new set too.
    let (mut l, won) = leader_of_epoch_1(Instant::now());
    l.handle(
        won,
        ElectionInput::VotersChanged {
            voters: unknown_dirs([1, 2, 3, 4, 5]),
        },
        (1, 1),
    );
    let heard = |peer| ElectionInput::FollowerHeard {
        peer,
        since: won + T / 2,
    };
    l.handle(won + T / 2, heard(2), (1, 1));
    l.handle(won + T * 5 / 4, ElectionInput::Tick, (1, 1));
    assert_eq!(
        drain(&mut l),
        [ElectionAction::StepDown {
            epoch: 1,
            leader: None
        }],
        "2 of 5 heard"
    );
    let (mut l, won) = leader_of_epoch_1(Instant::now());
    l.handle(
        won,
        ElectionInput::VotersChanged {
            voters: unknown_dirs([1, 2, 3, 4, 5]),
        },
        (1, 1),
    );
    for peer in [2, 5] {
        l.handle(won + T / 2, heard(peer), (1, 1));
    }
    l.handle(won + T * 5 / 4, ElectionInput::Tick, (1, 1));
    assert!(drain(&mut l).is_empty(), "3 of 5 heard");
    // A node removed from the voters is forgotten: its answers no longer
    // keep the leader in place.
    l.handle(
        won + T * 5 / 4,
        ElectionInput::VotersChanged {
            voters: unknown_dirs([1, 2, 3, 4]),
        },
        (1, 1),
    );
    l.handle(won + T * 5 / 4, heard(5), (1, 1));
    l.handle(won + T * 3 / 2, ElectionInput::Tick, (1, 1));
    assert_eq!(
        drain(&mut l),
        [ElectionAction::StepDown {
            epoch: 1,
            leader: None
        }],
        "2 of 4 heard: 5 no longer counts"
    );
}

// ---- Small clusters, messages delivered directly ----

/// `n` engines; messages among `up` nodes are delivered at once, votes are
/// persisted at once. Runs `steps` ticks of `T / 10`.
struct Mini {
    t: Instant,
    engines: BTreeMap<NodeId, ElectionEngine>,
    logs: BTreeMap<NodeId, LastLog>,
    up: BTreeMap<NodeId, bool>,
    leaders: Vec<(u64, NodeId)>,
}

impl Mini {
    fn new(n: u64, seed: u64) -> Mini {
        let t = Instant::now();
        let ids: Vec<NodeId> = (1..=n).collect();
        let engines = ids
            .iter()
            .map(|&i| {
                let e = ElectionEngine::new(i, ids.clone(), config(), 0, None, t, seed * 31 + i);
                (i, e)
            })
            .collect();
        Mini {
            t,
            engines,
            logs: ids.iter().map(|&i| (i, (0, 0))).collect(),
            up: ids.iter().map(|&i| (i, true)).collect(),
            leaders: Vec::new(),
        }
    }

    fn input(&mut self, id: NodeId, input: ElectionInput) {
        if !self.up[&id] {
            return;
        }
        let mut queue = vec![(id, input)];
        while let Some((id, input)) = queue.pop() {
            let log = self.logs[&id];
            let Some(e) = self.engines.get_mut(&id) else {
                continue;
            };
            e.handle(self.t, input, log);
            while let Some(a) = e.poll_action() {
                match a {
                    ElectionAction::Send { to, msg } => {
                        if self.up[&to] {
                            queue.push((to, ElectionInput::Received { from: id, msg }));
                        }
                    }
                    ElectionAction::PersistVote { epoch, voted_for } => {
                        queue.push((id, ElectionInput::Persisted { epoch, voted_for }));
                    }
                    ElectionAction::BecomeLeader { epoch } => {
                        self.leaders.push((epoch, id));
                        // The new leader's LeaderChange.
                        self.logs.insert(id, (epoch, self.logs[&id].1 + 1));
                    }
                    ElectionAction::StepDown { .. } => {}
                }
            }
        }
    }

    /// Advance `T / 10`; leaders replicate to (and hear) every up node.
    fn step(&mut self) {
        self.t += T / 10;
        let ids: Vec<NodeId> = self.engines.keys().copied().collect();
        for &id in &ids {
            self.input(id, ElectionInput::Tick);
        }
        for &l in &ids {
            let e = &self.engines[&l];
            if !self.up[&l] || e.role() != ElectionRole::Leader {
                continue;
            }
            let epoch = e.epoch();
            for &f in &ids {
                if f != l && self.up[&f] {
                    self.logs.insert(f, self.logs[&l]);
                    self.input(f, ElectionInput::LeaderHeard { leader: l, epoch });
                    if self.engines[&f].epoch() == epoch {
                        let since = self.t;
                        self.input(l, ElectionInput::FollowerHeard { peer: f, since });
                    }
                }
            }
        }
    }

    fn leader(&self) -> Option<NodeId> {
        let ls: Vec<NodeId> = self
            .engines
            .iter()
            .filter(|(id, e)| self.up[*id] && e.role() == ElectionRole::Leader)
            .map(|(&id, _)| id)
            .collect();
        (ls.len() == 1).then(|| ls[0])
    }

    fn one_leader_per_epoch(&self) {
        let mut by_epoch: BTreeMap<u64, NodeId> = BTreeMap::new();
        for &(epoch, id) in &self.leaders {
            if let Some(&other) = by_epoch.get(&epoch) {
                assert_eq!(other, id, "two leaders in epoch {epoch}");
            }
            by_epoch.insert(epoch, id);
        }
    }
}

#[test]
fn a_cluster_elects_one_leader_and_replaces_a_dead_one() {
    for seed in 0..50 {
        for n in [3, 5] {
            let mut m = Mini::new(n, seed);
            let mut steps = 0;
            while m.leader().is_none() {
                m.step();
                steps += 1;
                assert!(steps < 100, "seed {seed}: no leader within 10 T");
            }
            let first = m.leader().unwrap();
            // Stable: no new election while the leader is heard.
            for _ in 0..50 {
                m.step();
            }
            assert_eq!(
                m.leader(),
                Some(first),
                "seed {seed}: a healthy leader was unseated"
            );
            // Kill it: a new leader within a few T.
            m.up.insert(first, false);
            let mut steps = 0;
            while m.leader().is_none() {
                m.step();
                steps += 1;
                assert!(steps < 100, "seed {seed}: no new leader within 10 T");
            }
            assert_ne!(m.leader(), Some(first));
            m.one_leader_per_epoch();
        }
    }
}

#[test]
fn a_restarted_node_with_a_stale_epoch_does_not_disrupt_the_leader() {
    let mut m = Mini::new(3, 7);
    while m.leader().is_none() {
        m.step();
    }
    let leader = m.leader().unwrap();
    let epoch = m.engines[&leader].epoch();
    let other = (1..=3).find(|&i| i != leader).unwrap();
    // `other` restarts knowing nothing newer and times out at once.
    let t = m.t;
    m.engines.insert(
        other,
        ElectionEngine::new(other, [1, 2, 3], config(), 0, None, t, 99),
    );
    for _ in 0..100 {
        m.step();
    }
    assert_eq!(m.leader(), Some(leader));
    assert_eq!(m.engines[&leader].epoch(), epoch, "no epoch was bumped");
}

#[test]
fn a_vote_is_answered_only_after_its_own_write() {
    let t0 = Instant::now();
    let mut v = engine(2, 4, t0);
    v.handle(t0, received(1, vote(5, (4, 10), false)), (4, 10));
    drain(&mut v);
    // An answer for another write (not this vote) releases nothing.
    v.handle(
        t0,
        ElectionInput::Persisted {
            epoch: 5,
            voted_for: Some(3),
        },
        (4, 10),
    );
    assert!(drain(&mut v).is_empty());
    v.handle(
        t0,
        ElectionInput::Persisted {
            epoch: 5,
            voted_for: Some(1),
        },
        (4, 10),
    );
    assert_eq!(drain(&mut v).len(), 1, "the grant, now");
}

/// A vote is granted against the log as it is once the old leader is
/// fenced off: an entry appended between the request and the fence (the
/// old leader may have it acknowledged and committed) withholds the vote.
#[test]
fn a_vote_is_withheld_if_the_log_grew_before_the_fence() {
    let t0 = Instant::now();
    let mut v = engine(2, 4, t0);
    v.handle(t0, received(1, vote(5, (4, 10), false)), (4, 10));
    drain(&mut v);
    // The fence found one more entry of epoch 4.
    v.handle(
        t0,
        ElectionInput::Persisted {
            epoch: 5,
            voted_for: Some(1),
        },
        (4, 11),
    );
    assert_eq!(
        drain(&mut v),
        [send(
            1,
            ElectionMsg::VoteReply {
                epoch: 5,
                current: 5,
                granted: false,
                directory: DirectoryId::UNKNOWN,
            }
        )]
    );
    assert_eq!(
        v.voted_for(),
        Some(1),
        "the vote on disk stays: no other candidate gets it"
    );
}

/// A candidate's vote requests carry its log as fenced, not as it was when
/// it stood.
#[test]
fn vote_requests_carry_the_log_as_fenced() {
    let t0 = Instant::now();
    let mut e = engine(1, 4, t0);
    let at = e.poll_timeout();
    e.handle(at, ElectionInput::Tick, (4, 10));
    drain(&mut e);
    let granted = ElectionMsg::PreVoteReply {
        epoch: 5,
        current: 4,
        granted: true,
        directory: DirectoryId::UNKNOWN,
    };
    e.handle(at, received(2, granted), (4, 10));
    drain(&mut e);
    e.handle(
        at,
        ElectionInput::Persisted {
            epoch: 5,
            voted_for: Some(1),
        },
        (4, 12),
    );
    assert_eq!(
        drain(&mut e),
        [
            send(2, vote(5, (4, 12), false)),
            send(3, vote(5, (4, 12), false))
        ]
    );
}

/// A vote write that fails sends nothing that waited for it; a higher epoch
/// found on disk is adopted; a candidate whose own vote failed stands down.
#[test]
fn a_failed_vote_write_sends_nothing_and_adopts_the_epoch_on_disk() {
    let t0 = Instant::now();
    let mut v = engine(2, 4, t0);
    v.handle(t0, received(1, vote(5, (4, 10), false)), (4, 10));
    drain(&mut v);
    v.handle(
        t0,
        ElectionInput::PersistFailed {
            epoch: 5,
            voted_for: Some(1),
            current: Some(7),
        },
        (4, 10),
    );
    assert_eq!(
        drain(&mut v),
        [ElectionAction::PersistVote {
            epoch: 7,
            voted_for: None
        }],
        "no vote reply; the epoch on disk is adopted"
    );
    assert_eq!(v.epoch(), 7);
    // The earlier write's answer now releases nothing.
    v.handle(
        t0,
        ElectionInput::Persisted {
            epoch: 5,
            voted_for: Some(1),
        },
        (4, 10),
    );
    assert!(drain(&mut v).is_empty());

    let mut c = engine(1, 4, t0);
    let at = c.poll_timeout();
    c.handle(at, ElectionInput::Tick, (4, 10));
    let granted = ElectionMsg::PreVoteReply {
        epoch: 5,
        current: 4,
        granted: true,
        directory: DirectoryId::UNKNOWN,
    };
    c.handle(at, received(2, granted), (4, 10));
    drain(&mut c);
    c.handle(
        at,
        ElectionInput::PersistFailed {
            epoch: 5,
            voted_for: Some(1),
            current: None,
        },
        (4, 10),
    );
    assert_eq!(
        drain(&mut c),
        [ElectionAction::StepDown {
            epoch: 5,
            leader: None
        }],
        "no vote requests"
    );
    assert_eq!(c.role(), ElectionRole::Follower);
}

/// A voter moved to a new epoch (here by a transfer vote) no longer counts
/// the old epoch's leader as live: if the transfer's candidate does not win,
/// another candidate's pre-vote is granted at once rather than after `T`.
#[test]
fn a_move_to_a_new_epoch_forgets_the_old_leader() {
    let t0 = Instant::now();
    let mut v = engine(2, 4, t0);
    v.handle(
        t0,
        ElectionInput::LeaderHeard {
            leader: 3,
            epoch: 4,
        },
        (4, 10),
    );
    v.handle(t0, received(1, vote(5, (4, 10), true)), (4, 10));
    drain(&mut v);
    assert_eq!(v.leader_contact(), None);
    v.handle(t0 + T / 10, received(3, pre_vote(6, (4, 10))), (4, 10));
    assert_eq!(
        drain(&mut v),
        [send(
            3,
            ElectionMsg::PreVoteReply {
                epoch: 6,
                current: 5,
                granted: true,
                directory: DirectoryId::UNKNOWN,
            }
        )]
    );
}
