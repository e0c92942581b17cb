//! The end of a run: the settle phase (heal, restart every node, then one
//! leader known to all and every log applied with the same digest, within
//! the liveness bound), and the seed's report.
//!
//! Its own file because the convergence rules are one concern of their own.

use super::*;

impl Simulation {
    pub(super) fn settle(&mut self) {
        self.faults = false;
        self.change_race = None;
        self.slow_disk_until.iter_mut().for_each(|t| *t = 0);
        self.paused_until.iter_mut().for_each(|t| *t = 0);
        self.pause_asked.iter_mut().for_each(|p| *p = None);
        self.log("settle: heal, restart every node, no more faults or writes".into());
        self.net.heal();
        for i in 0..self.nodes.len() {
            if !self.nodes[i].up {
                self.restart(i as NodeId + 1);
            }
        }
        let healed = self.now;
        let bound = (self.config.election_timeout * LIVENESS_TIMEOUTS).as_nanos() as u64;
        let deadline = self.now + self.config.settle_deadline.as_nanos() as u64;
        while self.broken.is_none() && self.now < deadline {
            let since = self.now - healed;
            if self.report.heal_to_leader.is_none() {
                if self.leader_known() {
                    self.report.heal_to_leader = Some(Duration::from_nanos(since));
                    self.log(format!(
                        "settle: one leader known to every node {:.3} ms after the heal",
                        since as f64 / MS as f64
                    ));
                }
                if since > bound {
                    let state = self.describe_nodes();
                    self.fail(
                        Invariant::Liveness,
                        format!(
                            "no leader known to every live node within {LIVENESS_TIMEOUTS} x T = {:?} of the heal (after {:?}): {state}",
                            Duration::from_nanos(bound),
                            Duration::from_nanos(since)
                        ),
                    );
                    return;
                }
            }
            if self.report.heal_to_leader.is_some() && self.converged() {
                let members = self.settle_members();
                if let Err(b) = self.checker.check_acked(&self.nodes, &members) {
                    self.broken = Some(b);
                }
                return;
            }
            if !self.step_once() {
                break;
            }
        }
        if self.broken.is_none() {
            let state = self.describe_nodes();
            self.broken = Some(Broken {
                invariant: Invariant::Convergence,
                detail: format!("not settled after the faults healed: {state}"),
            });
        }
    }

    /// Every node's role, epoch, log and what it knows of the leader.
    pub(super) fn describe_nodes(&self) -> String {
        let state: Vec<String> = self
            .nodes
            .iter()
            .map(|n| {
                format!(
                    "n{} {} e{} ({:?} in e{}, leader {:?}) log {} durable {} commit {} applied {}",
                    n.id,
                    if !n.up {
                        "down"
                    } else if n.is_leader() {
                        "leader"
                    } else {
                        "follower"
                    },
                    n.meta().epoch,
                    n.election().role(),
                    n.election().epoch(),
                    n.election().leader(),
                    n.last_offset(),
                    n.disk.durable(),
                    n.commit,
                    n.state().applied_offset()
                )
            })
            .collect();
        state.join("; ")
    }

    /// The nodes that must converge: the members (voters and learners) of
    /// the one leader's membership, or every node while there is no one
    /// leader. A node removed from the cluster is not replicated to, and
    /// may never hear of its removal: it is left out.
    pub(super) fn settle_members(&self) -> Vec<NodeId> {
        let leaders: Vec<&Node> = self.nodes.iter().filter(|n| n.is_leader()).collect();
        match leaders[..] {
            [leader] => {
                let (voters, learners) = self.members_of(leader.id);
                voters.into_iter().chain(learners).collect()
            }
            _ => self.nodes.iter().map(|n| n.id).collect(),
        }
    }

    /// Exactly one node leads, and every other live member's election
    /// engine knows it as the leader of its epoch.
    pub(super) fn leader_known(&self) -> bool {
        let leaders: Vec<&Node> = self.nodes.iter().filter(|n| n.is_leader()).collect();
        let [leader] = leaders[..] else {
            return false;
        };
        let epoch = leader.election().epoch();
        let members = self.settle_members();
        leader.election().role() == crate::engine::election::ElectionRole::Leader
            && leader.meta().epoch == epoch
            && self
                .nodes
                .iter()
                .filter(|n| n.up && n.id != leader.id && members.contains(&n.id))
                .all(|n| n.election().epoch() == epoch && n.election().leader() == Some(leader.id))
    }

    /// One leader of the highest epoch; every member applied its whole log
    /// with the same digest.
    pub(super) fn converged(&self) -> bool {
        let leaders: Vec<&Node> = self.nodes.iter().filter(|n| n.is_leader()).collect();
        let [leader] = leaders[..] else {
            return false;
        };
        let members = self.settle_members();
        let member = |n: &&Node| members.contains(&n.id);
        let max_epoch = self
            .nodes
            .iter()
            .filter(member)
            .map(|n| n.meta().epoch)
            .max()
            .unwrap_or(0);
        if leader.meta().epoch != max_epoch {
            return false;
        }
        let end = leader.last_offset();
        let caught_up = self
            .nodes
            .iter()
            .filter(member)
            .all(|n| n.up && n.state().applied_offset() == end && n.last_offset() == end);
        if !caught_up {
            return false;
        }
        let digest = leader.state().digest();
        self.nodes
            .iter()
            .filter(member)
            .all(|n| n.state().digest() == digest)
    }

    pub(super) fn finish(mut self) -> SeedReport {
        self.report.steps = self.step;
        self.report.virtual_time = Duration::from_nanos(self.now);
        self.report.acked_all = self.checker.acked_all().len() as u64;
        if let Some(b) = self.broken.take() {
            self.report.violation = Some(Violation {
                seed: self.config.seed,
                nodes: self.config.nodes,
                step: self.step,
                invariant: b.invariant,
                detail: b.detail,
                events: self.events.iter().cloned().collect(),
                replay: self.config.replay_command(),
            });
        }
        self.report.events = std::mem::take(&mut self.all_events);
        self.report
    }
}
