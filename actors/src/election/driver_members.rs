//! The NodeDriver as the carrier of membership: it feeds the node engine
//! what the log owner did with membership entries ([`LogEvent`]s, in
//! order) and the commit point while an entry waits for it; it follows
//! the membership in force (voter links, `NodeShared`); and it runs a
//! change a caller asks for ([`ChangeMembers`]): the engine admits it,
//! the store appends it, and the caller is answered once it commits.
//!
//! A child module of `driver.rs` (it sees the driver's private state).
//! No rule is decided here: admission is `NodeEngine::admit_change`.

use std::time::{Duration, Instant};

use actix::prelude::*;
use metawal::engine::node::NodeInput;
use metawal::membership::{ChangeContext, ChangeRefused, MemberChange, Membership};
use tokio::sync::oneshot;

use super::NodeDriver;
use crate::error::MemberError;
use crate::leader::replicator::ChangeFacts;
use crate::members::LogEvent;
use crate::shared::Role;

/// How many entries behind the leader's log end a learner may be and
/// still be promoted.
pub(crate) const PROMOTE_MAX_LAG_ENTRIES: u64 = 256;

/// How many times a leader looks for directory ids to pin in one
/// leadership (one election timeout apart): members that have not
/// connected by then are pinned by the next change.
pub(super) const MAX_PIN_ATTEMPTS: u32 = 10;

/// Leader: change the membership. Answered with the offset of the entry
/// once it is committed by a majority of the voters it puts in force.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct ChangeMembers {
    pub change: MemberChange,
    /// How long a promotion waits for its learner to catch up.
    pub catch_up_wait: Duration,
    /// How long the entry may take to commit once appended.
    pub commit_wait: Duration,
    pub done: oneshot::Sender<Result<u64, MemberError>>,
}

/// The change this driver runs (one at a time).
pub(super) struct ChangeUnderWay {
    change: MemberChange,
    /// Until when a `NotCaughtUp` refusal is retried.
    catch_up_until: Instant,
    /// Until when a `LeaderNotReady` refusal is retried (a change asked
    /// right after an election waits for the leader's first commit).
    ready_until: Instant,
    commit_wait: Duration,
    done: oneshot::Sender<Result<u64, MemberError>>,
}

impl NodeDriver {
    /// Feed the engine every log event the log owner sent since the last
    /// input, in order, then the commit point if a membership entry waits
    /// for it.
    pub(super) fn sync_membership(&mut self) {
        let now = Instant::now();
        while let Ok(event) = self.log_events.try_recv() {
            let input = match event {
                LogEvent::Appended { offset, membership } => {
                    NodeInput::MembershipAppended { offset, membership }
                }
                LogEvent::Truncated { after } => NodeInput::LogTruncated { after },
                LogEvent::Reset { offset, membership } => NodeInput::MembershipReset {
                    offset,
                    // A snapshot of a cluster that never logged a
                    // membership: its voters are the bootstrap's.
                    membership: membership.unwrap_or_else(|| self.bootstrap.clone()),
                },
            };
            let log = self.log();
            self.engine.handle(now, input, log);
        }
        let commit = self.progress.borrow().commit;
        if commit > self.fed_commit {
            let waiting = self
                .engine
                .membership()
                .and_then(|m| m.uncommitted(self.fed_commit))
                .is_some();
            self.fed_commit = commit;
            if waiting {
                let log = self.log();
                self.engine
                    .handle(now, NodeInput::Committed { offset: commit }, log);
            }
        }
    }

    /// Whether the membership in force names this node with another data
    /// directory than its own: the directory it was added with was wiped
    /// or replaced, and this one must not vote or replicate under that id.
    /// Fail-stop, saying what to do.
    pub(super) fn refuses_identity(&mut self, m: &Membership) -> bool {
        let Some((me, role)) = m.member(self.node) else {
            return false;
        };
        if me.directory_id.is_unknown() || me.directory_id == self.directory_id {
            return false;
        }
        tracing::error!(
            node = self.node,
            directory_id = %self.directory_id,
            member_directory_id = %me.directory_id,
            %role,
            "this data directory is not the one this node id was added with (a wiped or replaced disk): refusing to act as that member; node stopped. Remove node {} from the cluster and add this node again (under a new id)",
            self.node
        );
        self.shared.fail_stop();
        true
    }

    /// The membership in force changed: talk to its voters (links to the
    /// others closed), note answers from its members only.
    pub(super) fn membership_changed(&mut self, m: Membership, ctx: &mut Context<Self>) {
        let voters: Vec<String> = m.voter_ids().map(|v| v.to_string()).collect();
        let learners: Vec<String> = m.learners().map(|l| l.node_id.to_string()).collect();
        tracing::info!(node = self.node, voters = %voters.join(","), learners = %learners.join(","), "membership in force changed");
        self.peers = m
            .voters()
            .filter(|v| v.node_id != self.node)
            .filter_map(|v| Some((v.node_id, crate::members::socket_addr(v)?)))
            .collect();
        let gone: Vec<_> = self
            .links
            .keys()
            .copied()
            .filter(|p| !self.peers.contains_key(p))
            .collect();
        for peer in gone {
            if let Some(link) = self.links.remove(&peer) {
                // Delivered even if its mailbox is full now (the send
                // waits for room); the link writes what it holds and stops.
                let (done, _stopped) = oneshot::channel();
                let stop = link.send(super::StopVoterLink { done });
                ctx.spawn(
                    async move {
                        // Err: the link is gone already.
                        let _ = stop.await;
                    }
                    .into_actor(self),
                );
            }
        }
        self.shared
            .metrics
            .register_peers(m.members().map(|(member, _)| member.node_id));
        self.publish_membership_now(m);
    }

    fn publish_membership_now(&mut self, m: Membership) {
        let pending = self
            .engine
            .membership()
            .and_then(|log| log.uncommitted(self.fed_commit))
            .map(|(o, _)| o);
        self.shared.set_membership(m, pending);
        self.published_pending = pending;
    }

    /// Publish the pending offset if a commit settled it.
    pub(super) fn publish_membership(&mut self) {
        let Some(log) = self.engine.membership() else {
            return;
        };
        let pending = log.uncommitted(self.fed_commit).map(|(o, _)| o);
        if pending != self.published_pending {
            let m = log.latest().clone();
            self.publish_membership_now(m);
        }
    }

    /// Ask for the facts a change is admitted on, then admit it.
    fn try_admit(&mut self, ctx: &mut Context<Self>) {
        let fut = self.roles.change_facts();
        ctx.spawn(
            fut.into_actor(self)
                .map(|facts, act, ctx| act.admit(facts, ctx)),
        );
    }

    fn admit(&mut self, facts: Option<ChangeFacts>, ctx: &mut Context<Self>) {
        self.sync_contacts();
        let Some(c) = &self.change else {
            return;
        };
        let Some(facts) = facts else {
            let leader = self.shared.leader();
            return self.finish(Err(ChangeRefused::NotLeader { leader }.into()));
        };
        let context = ChangeContext {
            leader: self.node,
            leader_directory: self.directory_id,
            commit: facts.commit,
            epoch_start: facts.epoch_start,
            last_offset: facts.last_offset,
            max_lag_entries: PROMOTE_MAX_LAG_ENTRIES,
        };
        let admitted = self
            .engine
            .admit_change(&c.change, &context, |id| facts.progress.get(&id).copied());
        match admitted {
            Err(ChangeRefused::NotCaughtUp { .. }) if Instant::now() < c.catch_up_until => {
                // Bounded by the caller's wait: asked again each heartbeat.
                ctx.run_later(self.config.heartbeat_interval, |act, ctx| {
                    act.try_admit(ctx)
                });
            }
            Err(ChangeRefused::LeaderNotReady { .. }) if Instant::now() < c.ready_until => {
                // Bounded by the election timeout: a new leader commits its
                // first entry within a round trip, or it is not leading.
                ctx.run_later(self.config.heartbeat_interval, |act, ctx| {
                    act.try_admit(ctx)
                });
            }
            Err(refused) => {
                tracing::info!(node = self.node, change = ?c.change, reason = %refused, "membership change refused");
                self.finish(Err(refused.into()));
            }
            Ok(membership) => self.append(membership, ctx),
        }
    }

    /// Have the store append `membership`; once it is in the log it is in
    /// force (fed to the engine before any other input: the mailbox waits).
    fn append(&mut self, membership: Membership, ctx: &mut Context<Self>) {
        let fut = self.roles.append_membership(membership.clone());
        ctx.wait(fut.into_actor(self).map(move |res, act, ctx| match res {
            Ok(offset) => {
                tracing::info!(node = act.node, offset, "membership change appended");
                act.input(NodeInput::MembershipAppended { offset, membership }, ctx);
                act.await_commit(offset, ctx);
            }
            Err(e) => act.finish(Err(MemberError::NotAppended(e))),
        }));
    }

    /// Answer the caller once `offset` commits in this leadership, or when
    /// the leadership ends or the wait runs out (the entry stays).
    fn await_commit(&mut self, offset: u64, ctx: &mut Context<Self>) {
        let Some(c) = &self.change else {
            return;
        };
        let limit = c.commit_wait;
        let mut progress = self.progress.clone();
        let mut leadership = self.shared.watch_leadership();
        let epoch = self.shared.epoch();
        let wait = async move {
            loop {
                // The leadership first: a commit point learned as a
                // follower says nothing about this entry.
                let l = *leadership.borrow_and_update();
                if l.role != Role::Leader || l.epoch != epoch {
                    return Err(MemberError::LeadershipLost { offset });
                }
                if progress.borrow_and_update().commit >= offset {
                    return Ok(offset);
                }
                tokio::select! {
                    r = progress.changed() => if r.is_err() { return Err(MemberError::ShuttingDown) },
                    r = leadership.changed() => if r.is_err() { return Err(MemberError::ShuttingDown) },
                }
            }
        };
        let fut = async move {
            tokio::time::timeout(limit, wait)
                .await
                .unwrap_or(Err(MemberError::Timeout {
                    offset,
                    waited: limit,
                }))
        };
        ctx.spawn(fut.into_actor(self).map(|res, act, ctx| {
            if let Ok(offset) = res {
                tracing::info!(node = act.node, offset, "membership change committed");
            }
            // The commit point first: what the caller reads next (the
            // members, no change pending) is published before it is told.
            act.sync_contacts();
            act.drive(ctx);
            act.finish(res);
        }));
    }

    /// Leader of `epoch`: in one election timeout, pin the directory ids
    /// the membership does not know (see [`MemberChange::PinDirectories`]),
    /// `attempts` times at most while some stay unknown.
    pub(super) fn schedule_pin(&mut self, epoch: u64, attempts: u32, ctx: &mut Context<Self>) {
        if attempts == 0 {
            return;
        }
        ctx.run_later(self.config.election_timeout, move |act, ctx| {
            act.pin_directories(epoch, attempts, ctx)
        });
    }

    fn pin_directories(&mut self, epoch: u64, attempts: u32, ctx: &mut Context<Self>) {
        let leading = self.shared.role() == Role::Leader && self.shared.epoch() == epoch;
        let unknown = self.engine.membership().is_some_and(|m| {
            m.latest()
                .members()
                .any(|(m, _)| m.directory_id.is_unknown())
        });
        if self.stopped || !leading || !unknown {
            return;
        }
        if self.change.is_some() {
            // An operator's change is under way (it pins too).
            return self.schedule_pin(epoch, attempts - 1, ctx);
        }
        let (done, answer) = oneshot::channel();
        let now = Instant::now();
        self.change = Some(ChangeUnderWay {
            change: MemberChange::PinDirectories,
            catch_up_until: now,
            ready_until: now + self.config.election_timeout,
            commit_wait: self.config.request_timeout,
            done,
        });
        self.try_admit(ctx);
        ctx.spawn(answer.into_actor(self).map(move |res, act, ctx| {
            match res {
                Ok(Ok(offset)) => {
                    tracing::info!(node = act.node, epoch, offset, "pinned the members' directory ids")
                }
                // Nothing proved yet, or the change did not commit:
                // looked at again (bounded by `attempts`).
                Ok(Err(e)) => {
                    tracing::debug!(node = act.node, epoch, error = %e, "directory ids not pinned yet")
                }
                // The driver stopped.
                Err(_) => return,
            }
            act.schedule_pin(epoch, attempts - 1, ctx);
        }));
    }

    fn finish(&mut self, result: Result<u64, MemberError>) {
        if let Some(c) = self.change.take() {
            // The caller may have gone: nothing to tell.
            let _ = c.done.send(result);
        }
    }
}

impl Handler<ChangeMembers> for NodeDriver {
    type Result = ();

    fn handle(&mut self, msg: ChangeMembers, ctx: &mut Context<Self>) {
        if self.stopped {
            let _ = msg.done.send(Err(MemberError::ShuttingDown));
            return;
        }
        match &self.change {
            Some(c) if c.change == MemberChange::PinDirectories => {
                // The leader's own pin commits within a round of
                // replication: the caller's change waits for it rather
                // than fail (bounded: pins per leadership are).
                ctx.notify_later(msg, self.config.heartbeat_interval);
                return;
            }
            Some(_) => {
                let _ = msg.done.send(Err(MemberError::Busy));
                return;
            }
            None => {}
        }
        let now = Instant::now();
        self.change = Some(ChangeUnderWay {
            change: msg.change,
            catch_up_until: now + msg.catch_up_wait,
            ready_until: now + self.config.election_timeout,
            commit_wait: msg.commit_wait,
            done: msg.done,
        });
        self.try_admit(ctx);
    }
}
