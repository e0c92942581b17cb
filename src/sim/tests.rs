//! The simulation's own fault machinery: clock steps and election timers,
//! one-way partitions on replication connections.

use super::*;

/// A simulation without external events (no faults, no writes unless a
/// test proposes them).
fn quiet(seed: u64, nodes: usize) -> Simulation {
    let mut sim = Simulation::new(SimConfig::new(seed, nodes));
    sim.faults = false;
    sim
}

/// Step until `done` holds; false if `limit` steps did not get there.
fn run_until(sim: &mut Simulation, limit: u64, done: impl Fn(&Simulation) -> bool) -> bool {
    for _ in 0..limit {
        if done(sim) {
            return true;
        }
        assert!(sim.step_once(), "the event queue ran dry");
        if let Some(b) = &sim.broken {
            panic!("{}: {}", b.invariant, b.detail);
        }
    }
    done(sim)
}

/// The leader and a follower with a ready session on an open connection.
fn ready_link(sim: &Simulation) -> Option<(NodeId, NodeId, ConnId)> {
    sim.net.connections().find_map(|(id, c)| {
        let ready = sim.node(c.leader).is_leader()
            && sim.node(c.follower).owner.active() == Some(id)
            && c.closed_by.is_none();
        ready.then_some((c.leader, c.follower, id))
    })
}

#[test]
fn a_clock_step_brings_the_election_timer_forward_by_the_step() {
    let mut sim = quiet(3, 3);
    // The node whose timer fires first stays first when it steps forward.
    let id = (1..=3)
        .min_by_key(|&i| sim.node(i).engine.poll_timeout())
        .expect("three nodes");
    let deadline = sim.node(id).engine.poll_timeout();
    let armed = sim.timers[id as usize - 1].at.expect("armed at start");
    // No offset yet: the engine's deadline is the virtual time.
    assert_eq!(sim.base + Duration::from_nanos(armed), deadline);
    let step = 30 * MS;
    sim.step_clock(id, step);
    assert_eq!(
        sim.clock(id),
        sim.base + Duration::from_nanos(sim.now + step)
    );
    // The engine's deadline did not move on its own clock, so on the
    // virtual clock it comes `step` earlier.
    assert_eq!(sim.node(id).engine.poll_timeout(), deadline);
    assert_eq!(sim.timers[id as usize - 1].at, Some(armed - step));
    assert!(run_until(&mut sim, 10_000, |s| s
        .node(id)
        .election()
        .pre_votes()
        == 1));
    assert_eq!(
        sim.now,
        armed - step,
        "the pre-vote starts at the converted deadline"
    );
    // And the node's clock read its own deadline then.
    assert_eq!(sim.clock(id), deadline);
}

#[test]
fn clocks_only_go_forward() {
    let mut sim = quiet(4, 3);
    let before = sim.clock(2);
    sim.step_clock(2, 0);
    assert_eq!(sim.clock(2), before);
    sim.step_clock(2, 5 * MS);
    assert!(sim.clock(2) > before);
    // A deadline already past converts to now, not to the past.
    assert_eq!(sim.virtual_time(2, sim.base), sim.now);
}

#[test]
fn a_deaf_followers_stream_stalls_then_resumes_in_order() {
    let mut sim = quiet(5, 3);
    assert!(run_until(&mut sim, 50_000, |s| ready_link(s).is_some()));
    let Some((leader, follower, conn)) = ready_link(&sim) else {
        unreachable!("checked above")
    };
    sim.net.deafen(follower);
    sim.log(format!("test: n{follower} deaf"));
    let before = sim.report.blackholed;
    // Writes while the follower cannot hear: they wait in the stream.
    for _ in 0..5 {
        sim.propose();
    }
    let heard = sim.node(follower).last_offset();
    let stall_until = sim.now + 30 * MS;
    assert!(run_until(&mut sim, 50_000, |s| s.now >= stall_until));
    let c = sim.net.get(conn).expect("still open: no timeout yet");
    assert!(c.queued(Dir::ToFollower) > 0, "the data waits");
    assert_eq!(sim.node(follower).last_offset(), heard, "nothing arrived");
    assert!(sim.report.blackholed > before);
    sim.net.heal_deaf();
    let end = sim.node(leader).last_offset();
    assert!(end > heard);
    // Retransmitted within the session timeout: the same connection
    // carries all of it, in order (a gap would be a protocol violation).
    assert!(run_until(&mut sim, 50_000, |s| s
        .node(follower)
        .last_offset()
        >= end));
    assert!(sim.net.get(conn).is_some(), "the connection survived");
}

#[test]
fn a_fin_to_a_deaf_node_leaves_it_half_open_until_it_hears() {
    let mut sim = quiet(6, 3);
    assert!(run_until(&mut sim, 50_000, |s| ready_link(s).is_some()));
    let Some((leader, follower, conn)) = ready_link(&sim) else {
        unreachable!("checked above")
    };
    sim.net.deafen(follower);
    sim.close_by(conn, leader);
    let c = sim.net.get(conn).expect("half-open");
    assert_eq!(c.closed_by, Some(leader));
    assert!(
        sim.sessions.contains_key(&conn),
        "the follower still has it"
    );
    assert_eq!(sim.node(follower).owner.active(), Some(conn));
    // Its session would time out after 150 ms; the FIN gets through first
    // once the follower hears again.
    sim.net.heal_deaf();
    let by = sim.now + 100 * MS;
    assert!(run_until(&mut sim, 50_000, |s| s.net.get(conn).is_none()
        || s.now >= by));
    assert!(sim.net.get(conn).is_none(), "closed by the FIN");
    assert!(!sim.sessions.contains_key(&conn));
    assert_ne!(sim.node(follower).owner.active(), Some(conn));
}

#[test]
fn a_deaf_leader_hears_no_acks_and_steps_down() {
    let mut sim = quiet(7, 3);
    assert!(run_until(&mut sim, 50_000, |s| ready_link(s).is_some()));
    let Some((leader, _, _)) = ready_link(&sim) else {
        unreachable!("checked above")
    };
    sim.net.deafen(leader);
    let t = sim.config.election_timeout.as_nanos() as u64;
    let deafened = sim.now;
    // Its followers still hear it, so nobody else stands; check-quorum
    // (no acks within T) makes it step down.
    assert!(run_until(&mut sim, 50_000, |s| !s.node(leader).is_leader()));
    assert!(
        sim.now - deafened <= t + t / 4 + 5 * MS,
        "{} ms",
        (sim.now - deafened) / MS
    );
    // A new leader among the others, which the deaf node cannot learn of.
    assert!(run_until(&mut sim, 50_000, |s| (1..=3)
        .any(|i| i != leader && s.node(i).is_leader())));
    assert_eq!(sim.node(leader).election().leader(), None);
    // Healed, it follows the new leader.
    sim.net.heal_deaf();
    assert!(run_until(&mut sim, 50_000, |s| s
        .node(leader)
        .election()
        .leader()
        .is_some_and(|l| l != leader)));
}
