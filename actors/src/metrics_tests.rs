//! Unit tests of the node's metrics: names, labels and the Prometheus text they encode to.

use super::*;

#[test]
fn results_and_latencies_are_counted_and_encoded() {
    let m = NodeMetrics::new();
    let ok: Result<u64, ProposeError> = Ok(3);
    m.proposal(Acks::All, &ok, Duration::from_micros(700));
    m.proposal(
        Acks::All,
        &Err::<u64, _>(ProposeError::LeadershipLost),
        Duration::ZERO,
    );
    m.fsync_histogram().observe(0.0002);
    m.byte_counters().0.inc_by(1234);
    for _ in 0..2 {
        m.peer_observed(
            1,
            3,
            PeerChannel::Replication,
            None,
            PeerConnection::refused(crate::status::HandshakeRefusal::SecretMismatch, "bad proof"),
            true,
        );
    }
    m.peer_observed(
        1,
        4,
        PeerChannel::Election,
        None,
        PeerConnection::unreachable(crate::status::Unreachable::ConnectionRefused, "refused"),
        false,
    );
    let text = m
        .encode(&Scrape {
            role: "follower",
            epoch: 4,
            applied_offset: 7,
            followers: vec![(2, 5, LinkState::Streaming, 1)],
            caught_up: vec![(2, true), (4, false)],
            voters: 3,
            learners: 1,
            ..Scrape::default()
        })
        .unwrap();
    for line in [
        "metawal_proposals_total{result=\"ok\"} 1",
        "metawal_proposals_total{result=\"leadership_lost\"} 1",
        "metawal_commit_latency_seconds_count{acks=\"all\"} 1",
        "metawal_fsync_latency_seconds_count 1",
        "metawal_bytes_sent_total 1234",
        "metawal_epoch 4",
        // The bench counts the syncs over 400 µs from this bucket.
        "metawal_fsync_latency_seconds_bucket{le=\"0.0004\"} 1",
        "metawal_members{role=\"voter\"} 3",
        "metawal_members{role=\"learner\"} 1",
        "metawal_member_caught_up{peer=\"2\"} 1",
        "metawal_member_caught_up{peer=\"4\"} 0",
        "metawal_applied_offset 7",
        "metawal_role{role=\"follower\"} 1",
        "metawal_role{role=\"leader\"} 0",
        "metawal_follower_lag_entries{peer=\"2\"} 5",
        "metawal_follower_state{peer=\"2\",state=\"streaming\"} 1",
        "metawal_follower_state{peer=\"2\",state=\"probing\"} 0",
        "metawal_peer_connection{peer=\"3\",state=\"handshake_refused\"} 1",
        "metawal_peer_connection{peer=\"3\",state=\"connected\"} 0",
        "metawal_peer_connection_failures_total{peer=\"3\",state=\"handshake_refused\",reason=\"secret_mismatch\"} 2",
        "metawal_peer_connection_failures_total{peer=\"4\",state=\"unreachable\",reason=\"connection_refused\"} 1",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
}

#[test]
fn scrapes_at_once_each_see_every_series() {
    // The HTTP endpoint and an embedder's `Node::metrics_text` may encode
    // at the same time; the scrape-time families are cleared and refilled
    // on each encode, so without a lock one scrape can miss the other's
    // series.
    let m = NodeMetrics::new();
    let scrape = Scrape {
        role: "leader",
        followers: vec![
            (2, 5, LinkState::Streaming, 1),
            (3, 0, LinkState::Probing, 0),
        ],
        caught_up: vec![(2, true), (3, true)],
        voters: 3,
        ..Scrape::default()
    };
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for i in 0..2_000 {
                    let text = m.encode(&scrape).unwrap();
                    for line in [
                        "metawal_follower_lag_entries{peer=\"3\"} 0",
                        "metawal_member_caught_up{peer=\"3\"} 1",
                    ] {
                        assert!(text.contains(line), "scrape {i} lacks {line:?}");
                    }
                }
            });
        }
    });
}
