//! The simulation's own fault machinery: clock steps and election timers.

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

#[test]
fn a_clock_step_brings_the_election_timer_forward_by_the_step() {
    let mut sim = quiet(3, 3);
    // The node whose timer fires first stays first when it steps forward.
    let id = (1..=3)
        .min_by_key(|&i| sim.node(i).election.poll_timeout())
        .expect("three nodes");
    let deadline = sim.node(id).election.poll_timeout();
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
    assert_eq!(sim.node(id).election.poll_timeout(), deadline);
    assert_eq!(sim.timers[id as usize - 1].at, Some(armed - step));
    assert!(run_until(&mut sim, 10_000, |s| s
        .node(id)
        .election
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
