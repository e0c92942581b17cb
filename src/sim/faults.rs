//! The faults the simulation injects between the nodes' steps: client
//! writes, slow disks, cut connections, crashes and clean shutdowns,
//! restarts (with recovery), partitions (two-way and one-way), clock steps,
//! and the nemesis's strikes — each drawn from the seed.

use super::*;
use crate::engine::disk_io::DiskExecutor;

impl Simulation {
    /// `id`'s clock jumps forward by `by`: its engines see the new time
    /// at their next input, its election timer fires that much earlier.
    pub(super) fn step_clock(&mut self, id: NodeId, by: u64) {
        self.clock_offset[id as usize - 1] += by;
        self.report.clock_steps += 1;
        self.log(format!(
            "fault: n{id}'s clock steps {:.3} ms forward",
            by as f64 / MS as f64
        ));
        self.disarm_election_timer(id);
        self.arm_election_timer(id);
    }

    pub(super) fn external(&mut self) {
        if let Some((a, b)) = self.net.pair_cut() {
            if self.now >= self.cut_until {
                self.log(format!("fault: heal the cut n{a} | n{b}"));
                self.net.heal_cut();
            }
        }
        self.drive_change_race();
        if self.change_race_running() || (self.config.nemesis && self.maybe_start_change_race()) {
            self.propose();
            return;
        }
        self.drive_wipe_race();
        if self.wipe_race_running() || (self.config.nemesis && self.maybe_start_wipe_race()) {
            self.propose();
            return;
        }
        if self.nemesis_tick() {
            return;
        }
        let r = self.rng.below(1000);
        let n = self.nodes.len() as NodeId;
        if r < 935 {
            if self.config.nemesis && r >= 931 {
                self.nemesis_transfer();
            } else if self.config.nemesis && r >= 925 {
                self.nemesis_cut();
            } else if self.config.nemesis && r >= 922 {
                self.pause_one();
            } else if r >= 912 {
                self.read_somewhere();
            } else if self.config.nemesis && r >= 906 {
                self.nemesis_member_change();
            } else {
                self.propose();
            }
        } else if r < 940 {
            let id = self.rng.range(1, n);
            let ms = self.rng.range(200, 1000);
            self.slow_disk_until[id as usize - 1] = self.now + ms * MS;
            self.report.slow_disks += 1;
            self.log(format!("fault: n{id}'s disk is slow for {ms} ms"));
        } else if r < 950 {
            let conns: Vec<ConnId> = self.net.connections().map(|(id, _)| id).collect();
            if let Some(c) = self.rng.pick(&conns) {
                self.log(format!("fault: cut #{c}"));
                self.report.cuts += 1;
                self.close(c);
            }
        } else if r < 960 {
            // A paused node is left to wake (what a pause is for).
            let up: Vec<NodeId> = (1..=n)
                .filter(|&i| self.node(i).up && !self.paused(i))
                .collect();
            let leaders: Vec<NodeId> = up
                .iter()
                .copied()
                .filter(|&i| self.node(i).is_leader())
                .collect();
            // Leaders crash more often than their share: that is where the
            // interesting failovers are.
            let pool = if !leaders.is_empty() && self.rng.chance(300) {
                leaders
            } else {
                up.clone()
            };
            if up.len() > 1 {
                if let Some(id) = self.rng.pick(&pool) {
                    if self.config.nemesis && self.rng.chance(100) && !self.paused(id) {
                        self.shut_down(id);
                    } else {
                        self.crash(id);
                    }
                }
            }
        } else if r < 975 {
            let down: Vec<NodeId> = (1..=n).filter(|&i| !self.node(i).up).collect();
            if let Some(id) = self.rng.pick(&down) {
                self.restart(id);
            }
        } else if r < 983 {
            if self.net.partition().is_none() && n > 1 {
                let mut side: Vec<bool> = (0..n).map(|_| self.rng.chance(500)).collect();
                // Often: cut a leader off into a minority.
                let leader = (1..=n).find(|&i| self.node(i).is_leader());
                if let (Some(l), true) = (leader, self.rng.chance(500)) {
                    side = (1..=n).map(|i| i == l).collect();
                    if n > 3 && self.rng.chance(500) {
                        let other = self.rng.range(1, n);
                        side[other as usize - 1] = true;
                    }
                }
                if side.iter().all(|&s| s) || side.iter().all(|&s| !s) {
                    let i = self.rng.below(n) as usize;
                    side[i] = !side[i];
                }
                let a: Vec<String> = (1..=n)
                    .filter(|&i| side[i as usize - 1])
                    .map(|i| format!("n{i}"))
                    .collect();
                self.log(format!("fault: partition {{{}}} | rest", a.join(",")));
                self.report.partitions += 1;
                for (id, c) in self.net.split(side) {
                    self.ends_closed(id, &c);
                }
            }
        } else if r < 990 {
            if self.net.partition().is_some() {
                self.log("fault: heal partition".into());
                self.net.heal_partition();
            } else {
                self.propose();
            }
        } else if r < 994 {
            self.one_way_partition();
        } else if r < 997 {
            if self.net.deaf().is_empty() {
                self.propose();
            } else {
                let healed: Vec<String> = self
                    .net
                    .heal_deaf()
                    .iter()
                    .map(|i| format!("n{i}"))
                    .collect();
                self.log(format!(
                    "fault: heal one-way partition ({} hear again)",
                    healed.join(",")
                ));
            }
        } else {
            // A clock step, often the leader's (its check-quorum).
            let up: Vec<NodeId> = (1..=n).filter(|&i| self.node(i).up).collect();
            let leader = up.iter().copied().find(|&i| self.node(i).is_leader());
            let id = match leader {
                Some(l) if self.rng.chance(500) => Some(l),
                _ => self.rng.pick(&up),
            };
            if let Some(id) = id {
                let t = self.config.election_timeout.as_nanos() as u64;
                let by = self.rng.below(t);
                self.step_clock(id, by);
            }
        }
    }

    /// Make one more node deaf (a minority at most), often the leader: it
    /// sends, but hears nothing.
    pub(super) fn one_way_partition(&mut self) {
        let n = self.nodes.len() as NodeId;
        let most = (self.nodes.len() - 1) / 2;
        if self.net.deaf().len() >= most {
            return;
        }
        let hearing: Vec<NodeId> = (1..=n)
            .filter(|&i| self.node(i).up && !self.net.deaf().contains(&i))
            .collect();
        let leader = hearing.iter().copied().find(|&i| self.node(i).is_leader());
        let id = match leader {
            Some(l) if self.rng.chance(500) => Some(l),
            _ => self.rng.pick(&hearing),
        };
        let Some(id) = id else { return };
        self.net.deafen(id);
        self.report.one_way_partitions += 1;
        self.log(format!(
            "fault: one-way partition: n{id}{} sends but hears nothing",
            if self.node(id).is_leader() {
                " (leader)"
            } else {
                ""
            }
        ));
    }

    pub(super) fn crash(&mut self, id: NodeId) {
        // A paused process can be killed: it is not paused any more, and
        // its pending reads die with it.
        self.paused_until[id as usize - 1] = 0;
        self.pause_asked[id as usize - 1] = None;
        self.reads[id as usize - 1].clear();
        // Its connections end at its side; a peer hears of it if it can.
        for c in self.net.connections_of(id) {
            self.close_by(c, id);
        }
        self.disarm_election_timer(id);
        let loss = {
            let Simulation { nodes, rng, .. } = self;
            nodes[id as usize - 1].crash(rng)
        };
        self.report.crashes += 1;
        self.report.torn_tails += u64::from(loss.torn);
        self.log(format!(
            "fault: crash n{id} (unsynced: {} kept, {} lost{})",
            loss.kept,
            loss.lost,
            if loss.torn { ", torn record cut" } else { "" }
        ));
    }

    /// A clean shutdown, as `Node::shutdown` does it: the node engine's
    /// shutdown (a leader resigns), the WAL synced, the applied offset
    /// recorded as the commit hint; then the node is down.
    pub(super) fn shut_down(&mut self, id: NodeId) {
        // No heartbeat follows the resignation: the leader state stops first.
        self.stop_leading(id);
        self.node_input(id, crate::engine::node::NodeInput::Shutdown);
        let node = self.node_mut(id);
        let applied = node.state().applied_offset();
        node.disk.sync_all();
        let meta = crate::storage::NodeMeta {
            commit_hint: applied,
            ..super::node::node_meta(id, node.meta())
        };
        let written = node
            .disk
            .execute(crate::engine::disk_io::DiskRequest::PersistMeta(meta));
        if !matches!(
            written,
            crate::engine::disk_io::DiskCompletion::MetaPersisted(Ok(Ok(())))
        ) {
            // As `Node::shutdown`: the node stops anyway; it recovers from
            // the older hint.
            self.log(format!(
                "n{id}: the shutdown's commit hint was not written: {written:?}"
            ));
        }
        self.report.shutdowns += 1;
        self.log(format!(
            "fault: n{id} shuts down cleanly (commit hint {applied})"
        ));
        self.crash(id);
    }

    /// Plant the configured bug in `id`'s engines, if it lives there
    /// (the others live in this shell).
    pub(super) fn plant_in_engines(&mut self, id: NodeId) {
        let plant = match self.config.bug {
            Some(PlantedBug::SkipRollback) => Some(crate::engine::node::NodePlant::SkipRollback),
            Some(PlantedBug::AdmitWhileTransferring) => {
                Some(crate::engine::node::NodePlant::AdmitWhileTransferring)
            }
            _ => None,
        };
        if let Some(plant) = plant {
            self.node_mut(id).engine.plant(plant);
        }
        if self.config.bug == Some(PlantedBug::NoUpToDateRule) {
            self.node_mut(id)
                .engine
                .election_mut_for_planting()
                .plant_skip_up_to_date();
        }
        if self.config.bug == Some(PlantedBug::IgnoreDirectory) {
            self.node_mut(id)
                .engine
                .election_mut_for_planting()
                .plant_ignore_directory();
        }
    }

    pub(super) fn restart(&mut self, id: NodeId) {
        let now = self.clock(id);
        let past_hint = self.config.bug == Some(PlantedBug::RecoveryPastHint);
        let replayed = self.node_mut(id).restart(now, past_hint);
        self.check_applied(id, replayed);
        self.plant_in_engines(id);
        self.late_timer[id as usize - 1] = false;
        self.catch_up_watch[id as usize - 1] = None;
        self.disarm_election_timer(id);
        self.arm_election_timer(id);
        self.report.restarts += 1;
        let n = self.node(id);
        let line = format!(
            "restart n{id}: log {}@e{}, meta epoch {}, commit hint {} (applied {})",
            n.last_offset(),
            n.last_epoch(),
            n.meta().epoch,
            n.disk.commit_hint(),
            n.state().applied_offset()
        );
        self.log(line);
    }

    /// A client write to a leader (usually the newest one it can find).
    pub(super) fn propose(&mut self) {
        let leaders: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|n| n.is_leader() && !self.paused(n.id))
            .map(|n| n.id)
            .collect();
        let Some(id) = self.rng.pick(&leaders) else {
            return;
        };
        let acks = match self.rng.below(10) {
            0..=1 => Acks::None,
            2..=4 => Acks::Leader,
            _ => Acks::All,
        };
        self.next_topic += 1;
        let name = format!("topic-{}", self.next_topic);
        let partition_count = 1 + (self.next_topic % 3) as u32;
        let create = Command::CreateTopic {
            name: name.clone(),
            partition_count,
            replication_factor: 1,
        };
        // Every fourth proposal is an atomic batch: the topic with its
        // partition assignments in one entry (no extra random draw, so the
        // schedule of faults is the same as without batches).
        let command = if self.next_topic.is_multiple_of(4) {
            let mut commands = vec![create];
            for p in 0..partition_count {
                commands.push(Command::AssignPartition {
                    topic: name.clone(),
                    partition: p as i32,
                    replicas: vec![1 + u64::from(p) % 3],
                });
            }
            Command::Batch { commands }
        } else {
            create
        };
        self.leader_propose(id, command, acks);
    }
}
