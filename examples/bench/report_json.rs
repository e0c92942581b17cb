//! The run's figures as one JSON object (`--json`).

use crate::report::{floor_sum, shared_disk_floor, written_floor, Results};
use crate::stats::{r1, spread};

/// `a / b` to two decimals (0 when `b` is 0).
fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        (a / b * 100.0).round() / 100.0
    } else {
        0.0
    }
}

/// Each sample rounded to one decimal.
fn samples(v: &[f64]) -> Vec<f64> {
    v.iter().map(|&x| r1(x)).collect()
}

pub fn json(r: &Results, quick: bool) -> serde_json::Value {
    let fo = spread(&r.failover_ms);
    let fast = spread(&r.failover_150_ms);
    serde_json::json!({
        "floor_fsync_p50_us": r1(r.floor_fsync_p50_us),
        "floor_fsync_p99_us": r1(r.floor_fsync_p99_us),
        "floor_rtt_p50_us": r1(r.floor_rtt_p50_us),
        "run_floor_fsync_p50_us": r1(r.run_floor_fsync_p50_us),
        "run_floor_fsync_p99_us": r1(r.run_floor_fsync_p99_us),
        "run_floor_rtt_p50_us": r1(r.run_floor_rtt_p50_us),
        "run_floor_rtt_p99_us": r1(r.run_floor_rtt_p99_us),
        "run_floor_fsync_written_p50_us": r1(r.run_floor_fsync_written_p50_us),
        "run_floor_fsync_written_p99_us": r1(r.run_floor_fsync_written_p99_us),
        "run_floor_fsync3_p50_us": r1(r.run_floor_fsync3_p50_us),
        "run_floor_fsync3_p99_us": r1(r.run_floor_fsync3_p99_us),
        "acks_all_p50_shared_disk_ratio": ratio(r.acks_all_p50_us, shared_disk_floor(r)),
        "acks_all_p50_written_floor_ratio": ratio(r.acks_all_p50_us, written_floor(r)),
        "acks_all_p99_written_floor_ratio": ratio(r.acks_all_p99_us, written_floor(r)),
        "propagation_p99_written_floor_ratio": ratio(r.propagation_p99_us, written_floor(r)),
        "allocs_per_write": r.allocs_per_write.map(|a| r1(a.0)),
        "alloc_bytes_per_write": r.allocs_per_write.map(|a| a.1.round()),
        // Issue 22's ratios, against floor_sum (the in-run floor).
        "acks_all_p50_floor_ratio": ratio(r.acks_all_p50_us, floor_sum(r)),
        "acks_all_p99_floor_ratio": ratio(r.acks_all_p99_us, floor_sum(r)),
        "propagation_p99_floor_ratio": ratio(r.propagation_p99_us, floor_sum(r)),
        "acks_all_p50_us": r1(r.acks_all_p50_us),
        "acks_all_p99_us": r1(r.acks_all_p99_us),
        "acks_all_p999_us": r1(r.acks_all_p999_us),
        "throughput_eps": r.throughput_eps.round(),
        "throughput_p99_us": r1(r.throughput_p99_us),
        "propagation_p50_us": r1(r.propagation_p50_us),
        "propagation_acks_leader_p50_us": r1(r.propagation_acks_leader_p50_us),
        "propagation_p99_us": r1(r.propagation_p99_us),
        "isolation_ack_ratio": (r.isolation_ack_ratio * 100.0).round() / 100.0,
        "isolation_propagation_ratio": (r.isolation_propagation_ratio * 100.0).round() / 100.0,
        "isolation_aa_ack_ratio": (r.isolation_aa_ack_ratio * 100.0).round() / 100.0,
        "isolation_aa_propagation_ratio": (r.isolation_aa_propagation_ratio * 100.0).round() / 100.0,
        "stalled_rss_growth_bytes": r.stalled_rss_growth_bytes,
        "stalled_inflight_bytes": r.stalled_inflight_bytes,
        "catchup_eps": r.catchup_eps.round(),
        "kafka_create_topic_p50_us": r1(r.kafka_create_topic_p50_us),
        "kafka_create_topic_p99_us": r1(r.kafka_create_topic_p99_us),
        "api_create_topic_p50_us": r1(r.api_create_topic_p50_us),
        "api_create_topic_p99_us": r1(r.api_create_topic_p99_us),
        // Extra context (not targets).
        "quick": quick,
        "floor_rtt_p99_us": r1(r.floor_rtt_p99_us),
        "throughput_p50_us": r1(r.throughput_p50_us),
        "isolation_isr_shrink_ms": r1(r.iso_isr_shrink_ms),
        "propagation_slow_fsyncs": r.propagation_syncs.map(|s| s.slow),
        "propagation_fsyncs": r.propagation_syncs.map(|s| s.total),
        "isolation_slow_fsyncs": r.iso_syncs.map(|w| w.map(|s| s.slow)),
        "isolation_fsyncs": r.iso_syncs.map(|w| w.map(|s| s.total)),
        "isolation_transient_propagation_p99_us": r1(r.iso_transient_prop_p99_us),
        "stalled_window_bytes": r.stalled_window_bytes,
        "catchup_connect_ms": r1(r.catchup_connect_ms),
        "catchup_stream_eps": r.catchup_stream_eps.round(),
        "learner_entries": r.learner_entries,
        "learner_promote_ms": r1(r.learner_promote_ms),
        "learner_write_p50_us": r1(r.learner_write_p50_us),
        "learner_write_p99_us": r1(r.learner_write_p99_us),
        // Failover (issue 8): ms from killing the leader to the first
        // acks=all write on the new leader, median over the kills.
        "failover_ms": r1(fo.0),
        "failover_min_ms": r1(fo.1),
        "failover_max_ms": r1(fo.2),
        "failover_samples_ms": samples(&r.failover_ms),
        "failover_election_ms": r1(spread(&r.failover_election_ms).0),
        "failover_150ms_ms": r1(fast.0),
        "failover_150ms_min_ms": r1(fast.1),
        "failover_150ms_max_ms": r1(fast.2),
        "failover_150ms_samples_ms": samples(&r.failover_150_ms),
        "failover_150ms_election_ms": r1(spread(&r.failover_150_election_ms).0),
        "resign_failover_ms": r1(spread(&r.resign_failover_ms).0),
        "resign_failover_samples_ms": samples(&r.resign_failover_ms),
        // --http (issue 9): the same through HTTP clients and processes.
        "http_acks_all_p50_us": r.http.map(|h| r1(h.acks_all_p50_us)),
        "http_acks_all_p99_us": r.http.map(|h| r1(h.acks_all_p99_us)),
        "http_throughput_eps": r.http.map(|h| h.throughput_eps.round()),
        "http_throughput_p50_us": r.http.map(|h| r1(h.throughput_p50_us)),
        "http_throughput_p99_us": r.http.map(|h| r1(h.throughput_p99_us)),
        "http_watch_p50_us": r.http.map(|h| r1(h.watch_p50_us)),
        "http_watch_p99_us": r.http.map(|h| r1(h.watch_p99_us)),
        "http_slow_fsyncs": r.http.and_then(|h| h.latency_syncs.map(|s| s.slow)),
        "http_fsyncs": r.http.and_then(|h| h.latency_syncs.map(|s| s.total)),
        "http_client_cores": r.http.map(|h| (h.client_cores * 100.0).round() / 100.0),
        "http_nodes_cores": r.http.map(|h| (h.nodes_cores * 100.0).round() / 100.0),
        "http_async_throughput_eps": r.http.map(|h| h.async_throughput_eps.round()),
        "http_async_p50_us": r.http.map(|h| r1(h.async_p50_us)),
        "http_async_p99_us": r.http.map(|h| r1(h.async_p99_us)),
        "http_async_client_cores": r.http.map(|h| (h.async_client_cores * 100.0).round() / 100.0),
        "http_async_nodes_cores": r.http.map(|h| (h.async_nodes_cores * 100.0).round() / 100.0),
        // Issue 10: phases 2 and 3 again with mutual TLS between the nodes.
        "tls_acks_all_p50_us": r.tls.map(|t| r1(t.acks_all_p50_us)),
        "tls_acks_all_p99_us": r.tls.map(|t| r1(t.acks_all_p99_us)),
        "tls_throughput_eps": r.tls.map(|t| t.throughput_eps.round()),
        "tls_throughput_p50_us": r.tls.map(|t| r1(t.throughput_p50_us)),
        "tls_throughput_p99_us": r.tls.map(|t| r1(t.throughput_p99_us)),
    })
}
