//! Leader changes, standing in for elections (a later issue).
//!
//! While a majority of the nodes is up and mutually reachable and none of
//! them is a live leader of the highest epoch any node persisted, the
//! controller waits a randomized election timeout, then promotes the most
//! up-to-date node of that majority (highest `(last_epoch, last_offset)`,
//! lowest id on a tie) in epoch `highest + 1`.
//!
//! A promotion is modelled as an election that won at once: every node of
//! the majority persists `(epoch, leader)` — its vote — at that instant, so
//! from then on it refuses the old leader, as a Raft voter would. (Without
//! that, an old leader could still commit on the voters after a newer
//! leader was chosen without those entries.) Leaders in the majority step
//! down; a leader outside it learns the new epoch when it next talks to a
//! node that has it.

use std::cmp::Reverse;

use crate::command::NodeId;

use super::disk::Meta;
use crate::engine::FollowerInput;

use super::node::node_meta;
use super::{election_wait, Simulation};

impl Simulation {
    /// Run the controller (at every tick).
    pub(super) fn controller(&mut self) {
        let n = self.nodes.len();
        let majority = n / 2 + 1;
        let group: Vec<NodeId> = match self.net.partition() {
            None => (1..=n as NodeId).filter(|&i| self.node(i).up).collect(),
            Some(side) => {
                let side = side.to_vec();
                [true, false]
                    .into_iter()
                    .map(|s| {
                        (1..=n as NodeId)
                            .filter(|&i| self.node(i).up && side[i as usize - 1] == s)
                            .collect::<Vec<_>>()
                    })
                    .find(|g| g.len() >= majority)
                    .unwrap_or_default()
            }
        };
        if group.len() < majority {
            self.leaderless_since = None;
            return;
        }
        let max_epoch = self.nodes.iter().map(|x| x.meta().epoch).max().unwrap_or(0);
        let served = group
            .iter()
            .any(|&i| self.node(i).is_leader() && self.node(i).meta().epoch == max_epoch);
        if served {
            self.leaderless_since = None;
            return;
        }
        let since = *self.leaderless_since.get_or_insert(self.now);
        if self.now < since + self.election_wait {
            return;
        }
        let Some(&winner) = group.iter().max_by_key(|&&i| {
            let x = self.node(i);
            (x.last_epoch(), x.last_offset(), Reverse(i))
        }) else {
            return;
        };
        let epoch = max_epoch + 1;
        self.log(format!(
            "controller: n{winner} wins epoch {epoch} with votes of {group:?}"
        ));
        for &v in &group {
            if self.node(v).is_leader() {
                self.step_down(v, epoch);
            }
            let vote = Meta {
                epoch,
                leader: Some(winner),
            };
            self.node_mut(v).disk.persist_meta(vote);
            // The vote is persisted outside the log owner: it learns it, and
            // ends the session of the leader it followed.
            self.owner_input(v, FollowerInput::MetaChanged(node_meta(v, vote)));
        }
        let log = self.node(winner).log.clone();
        let r = self.checker.on_leader(epoch, winner, &log);
        self.check(r);
        self.become_leader(winner, epoch);
        self.leaderless_since = None;
        self.election_wait = election_wait(&self.config, &mut self.rng);
    }
}
