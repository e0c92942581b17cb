//! What a run measured: the figures, the table and the JSON.

use crate::cli::Out;
use crate::http_load::HttpFigures;
use crate::stats::spread;

#[derive(Default)]
pub struct Results {
    pub floor_fsync_p50_us: f64,
    pub floor_fsync_p99_us: f64,
    pub floor_rtt_p50_us: f64,
    pub floor_rtt_p99_us: f64,
    /// The floor sampled between phase 2's writes (0 when phase 2 did not
    /// run): what the issue-22 ratios use.
    pub run_floor_fsync_p50_us: f64,
    pub run_floor_fsync_p99_us: f64,
    pub run_floor_rtt_p50_us: f64,
    pub run_floor_rtt_p99_us: f64,
    /// A 100-byte write into already-written blocks + fdatasync
    /// (`floor_written.rs`), sampled with them.
    pub run_floor_fsync_written_p50_us: f64,
    pub run_floor_fsync_written_p99_us: f64,
    /// The longest of three concurrent fdatasyncs, sampled with them.
    pub run_floor_fsync3_p50_us: f64,
    pub run_floor_fsync3_p99_us: f64,
    /// `--count-allocs`: the process's allocations and bytes allocated per
    /// phase-2 write.
    pub allocs_per_write: Option<(f64, f64)>,
    pub acks_all_p50_us: f64,
    pub acks_all_p99_us: f64,
    pub acks_all_p999_us: f64,
    pub acks_all_max_us: f64,
    pub latency_propagation_p99_us: f64,
    pub throughput_eps: f64,
    pub throughput_p50_us: f64,
    pub throughput_p99_us: f64,
    pub throughput_propagation_p99_us: f64,
    pub propagation_p50_us: f64,
    pub propagation_p99_us: f64,
    pub propagation_max_us: f64,
    pub propagation_f2_p99_us: f64,
    pub propagation_f3_p99_us: f64,
    pub propagation_acks_leader_p50_us: f64,
    /// The three nodes' syncs during phase 4.
    pub propagation_syncs: Option<crate::fsync_tail::Syncs>,
    pub iso_base_ack_p99_us: f64,
    pub iso_base_prop_p99_us: f64,
    pub iso_base_eps: f64,
    pub iso_isr_shrink_ms: f64,
    pub iso_transient_prop_p99_us: f64,
    pub iso_slow_ack_p99_us: f64,
    pub iso_slow_prop_p99_us: f64,
    pub iso_slow_eps: f64,
    pub iso_slow_back_in_polls: u64,
    pub iso_slow_polls: u64,
    pub iso_rejoin_after_idle_ms: Option<f64>,
    pub isolation_ack_ratio: f64,
    pub isolation_propagation_ratio: f64,
    /// The second pass window's p99s over the first's (A/A).
    pub isolation_aa_ack_ratio: f64,
    pub isolation_aa_propagation_ratio: f64,
    /// The leader's and node 2's syncs in the first pass window, the pass
    /// window (the baseline) and the delayed window.
    pub iso_syncs: [Option<crate::fsync_tail::Syncs>; 3],
    pub stalled_rss_base_bytes: u64,
    pub stalled_rss_growth_bytes: u64,
    pub stalled_rss_growth_end_bytes: u64,
    pub stalled_inflight_bytes: u64,
    pub stalled_eps: f64,
    pub stalled_window_bytes: u64,
    pub catchup_entries: u64,
    pub catchup_secs: f64,
    pub catchup_start_ms: f64,
    pub catchup_eps: f64,
    pub catchup_connect_ms: f64,
    pub catchup_stream_eps: f64,
    /// A new node as a learner: the state it caught up with (entries), ms
    /// from adding it to its promotion, and the acks=all writes meanwhile.
    pub learner_entries: u64,
    pub learner_promote_ms: f64,
    pub learner_write_p50_us: f64,
    pub learner_write_p99_us: f64,
    pub learner_writes: u64,
    /// Failover after a leader crash, default timeouts: ms to the first
    /// acks=all write, and to a new leader, per kill.
    pub failover_ms: Vec<f64>,
    pub failover_election_ms: Vec<f64>,
    /// The same with election_timeout = 150 ms, heartbeat 20 ms.
    pub failover_150_ms: Vec<f64>,
    pub failover_150_election_ms: Vec<f64>,
    /// The same after a clean shutdown (the leader resigns), default timeouts.
    pub resign_failover_ms: Vec<f64>,
    pub resign_election_ms: Vec<f64>,
    /// Phase 2k: one-partition `CreateTopics` through the Kafka front, and
    /// the same commands through `propose_batch`.
    pub kafka_create_topic_p50_us: f64,
    pub kafka_create_topic_p99_us: f64,
    pub api_create_topic_p50_us: f64,
    pub api_create_topic_p99_us: f64,
    /// Phase 9 (`--http`).
    pub http: Option<HttpFigures>,
    /// Phases 2 and 3 again with mutual TLS between the nodes.
    pub tls: Option<TlsFigures>,
}

/// The latency and throughput phases over TLS.
#[derive(Clone, Copy, Default)]
pub struct TlsFigures {
    pub acks_all_p50_us: f64,
    pub acks_all_p99_us: f64,
    pub throughput_eps: f64,
    pub throughput_p50_us: f64,
    pub throughput_p99_us: f64,
}

/// One line of the table: a figure, its value, and the target it is judged
/// against (met or missed), if any.
struct Row {
    name: &'static str,
    value: String,
    target: String,
    ok: Option<bool>,
}

/// A row with no target.
fn info(name: &'static str, value: String) -> Row {
    Row {
        name,
        value,
        target: String::new(),
        ok: None,
    }
}

/// A row judged against `target`.
fn judged(name: &'static str, value: String, target: String, ok: bool) -> Row {
    Row {
        name,
        value,
        target,
        ok: Some(ok),
    }
}

/// Two figures as "a / b", no decimals.
fn pair(a: f64, b: f64) -> String {
    format!("{a:.0} / {b:.0}")
}

fn mib(b: u64) -> f64 {
    b as f64 / 1048576.0
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

/// The floor the ratios use: fsync p50 + RTT p50 sampled between phase
/// 2's writes (the same CPU conditions as the writes), or phase 1's
/// quiet one when phase 2 did not run.
pub(crate) fn floor_sum(r: &Results) -> f64 {
    if r.run_floor_fsync_p50_us > 0.0 {
        r.run_floor_fsync_p50_us + r.run_floor_rtt_p50_us
    } else {
        r.floor_fsync_p50_us + r.floor_rtt_p50_us
    }
}

/// The floor of an acks=all write when the three nodes share one disk:
/// the longest of three concurrent fdatasyncs (p50) plus the RTT p50
/// (0 when phase 2 did not run).
pub(crate) fn shared_disk_floor(r: &Results) -> f64 {
    if r.run_floor_fsync3_p50_us > 0.0 {
        r.run_floor_fsync3_p50_us + r.run_floor_rtt_p50_us
    } else {
        0.0
    }
}

/// The floor with the WAL's kind of write (into written blocks) instead
/// of an append: its fsync p50 plus the RTT p50 (0 when phase 2 did not
/// run).
pub(crate) fn written_floor(r: &Results) -> f64 {
    if r.run_floor_fsync_written_p50_us > 0.0 {
        r.run_floor_fsync_written_p50_us + r.run_floor_rtt_p50_us
    } else {
        0.0
    }
}

/// Floor, latency and throughput.
fn latency_rows(r: &Results) -> Vec<Row> {
    let floor = floor_sum(r);
    vec![
        info(
            "floor fdatasync 100 B p50 / p99 (us)",
            pair(r.floor_fsync_p50_us, r.floor_fsync_p99_us),
        ),
        info(
            "floor loopback RTT 100 B p50 / p99 (us)",
            pair(r.floor_rtt_p50_us, r.floor_rtt_p99_us),
        ),
        info(
            "in-run floor fdatasync p50 / p99 (us)",
            pair(r.run_floor_fsync_p50_us, r.run_floor_fsync_p99_us),
        ),
        info(
            "in-run floor loopback RTT p50 / p99 (us)",
            pair(r.run_floor_rtt_p50_us, r.run_floor_rtt_p99_us),
        ),
        info(
            "in-run floor written-block fsync p50 / p99 (us)",
            pair(
                r.run_floor_fsync_written_p50_us,
                r.run_floor_fsync_written_p99_us,
            ),
        ),
        info(
            "in-run floor 3 fdatasyncs at once p50 / p99 (us)",
            pair(r.run_floor_fsync3_p50_us, r.run_floor_fsync3_p99_us),
        ),
        judged(
            "acks=all sequential p50 (us)",
            format!("{:.0}", r.acks_all_p50_us),
            format!("<= 1.3 x floor = {:.0}", 1.3 * floor),
            r.acks_all_p50_us <= 1.3 * floor,
        ),
        judged(
            "acks=all sequential p99 (us)",
            format!("{:.0}", r.acks_all_p99_us),
            format!("<= 3 x floor = {:.0}", 3.0 * floor),
            r.acks_all_p99_us <= 3.0 * floor,
        ),
        info(
            "acks=all sequential p999 / max (us)",
            pair(r.acks_all_p999_us, r.acks_all_max_us),
        ),
        info(
            "CreateTopics via the Kafka front p50 / p99 (us)",
            pair(r.kafka_create_topic_p50_us, r.kafka_create_topic_p99_us),
        ),
        info(
            "  the same commands via propose_batch p50 / p99 (us)",
            pair(r.api_create_topic_p50_us, r.api_create_topic_p99_us),
        ),
        info(
            "  ratio p50 / (fsync p50 + RTT p50)",
            format!("{:.2}", r.acks_all_p50_us / floor.max(1e-3)),
        ),
        info(
            "  ratio p50 / (3 fsyncs at once p50 + RTT p50)",
            format!("{:.2}", r.acks_all_p50_us / shared_disk_floor(r).max(1e-3)),
        ),
        info(
            "  ratio p50 / (written-block fsync p50 + RTT p50)",
            format!("{:.2}", r.acks_all_p50_us / written_floor(r).max(1e-3)),
        ),
        judged(
            "throughput, 64 proposers acks=all (1/s)",
            format!("{:.0}", r.throughput_eps),
            ">= 250000".into(),
            r.throughput_eps >= 250_000.0,
        ),
        info(
            "  latency p50 / p99 (us)",
            pair(r.throughput_p50_us, r.throughput_p99_us),
        ),
        info(
            "  propagation p99 under this load (us)",
            format!("{:.0}", r.throughput_propagation_p99_us),
        ),
    ]
}

/// TLS's cost over plaintext, in percent.
fn cost(tls: f64, plain: f64) -> String {
    if plain > 0.0 {
        format!("{:+.1} %", (tls / plain - 1.0) * 100.0)
    } else {
        String::new()
    }
}

/// The TLS figures beside the plaintext ones.
fn tls_rows(r: &Results, t: &TlsFigures) -> Vec<Row> {
    vec![
        judged(
            "TLS acks=all sequential p50 / p99 (us)",
            pair(t.acks_all_p50_us, t.acks_all_p99_us),
            format!(
                "p50 <= +10 %: {}",
                cost(t.acks_all_p50_us, r.acks_all_p50_us)
            ),
            t.acks_all_p50_us <= 1.1 * r.acks_all_p50_us,
        ),
        judged(
            "TLS throughput, 64 proposers acks=all (1/s)",
            format!("{:.0}", t.throughput_eps),
            format!(">= -10 %: {}", cost(t.throughput_eps, r.throughput_eps)),
            t.throughput_eps >= 0.9 * r.throughput_eps,
        ),
        info(
            "  TLS latency p50 / p99 (us)",
            pair(t.throughput_p50_us, t.throughput_p99_us),
        ),
    ]
}

fn http_rows(r: &Results, h: &HttpFigures) -> Vec<Row> {
    vec![
        judged(
            "HTTP acks=all sequential p50 / p99 (us)",
            pair(h.acks_all_p50_us, h.acks_all_p99_us),
            format!("p50 <= in-process + 100 = {:.0}", r.acks_all_p50_us + 100.0),
            h.acks_all_p50_us <= r.acks_all_p50_us + 100.0,
        ),
        judged(
            "HTTP throughput, 64 clients acks=all (1/s)",
            format!("{:.0}", h.throughput_eps),
            ">= 40000".into(),
            h.throughput_eps >= 40_000.0,
        ),
        judged(
            "HTTP write -> follower's /v1/watch p50 / p99 (us)",
            pair(h.watch_p50_us, h.watch_p99_us),
            format!("p99 <= 2 x p50 = {:.0}", 2.0 * h.watch_p50_us),
            h.watch_p99_us <= 2.0 * h.watch_p50_us,
        ),
        info(
            "  slow syncs of the 3 nodes meanwhile",
            crate::fsync_tail::show(h.latency_syncs),
        ),
        info(
            "  HTTP latency p50 / p99 (us)",
            pair(h.throughput_p50_us, h.throughput_p99_us),
        ),
        info(
            "  CPU meanwhile: client / 3 nodes (cores)",
            format!("{:.2} / {:.2}", h.client_cores, h.nodes_cores),
        ),
        judged(
            "HTTP throughput, 64 async writers, 1 thread (1/s)",
            format!("{:.0}", h.async_throughput_eps),
            ">= 40000".into(),
            h.async_throughput_eps >= 40_000.0,
        ),
        info(
            "  latency p50 / p99 (us); CPU client / nodes",
            format!(
                "{:.0} / {:.0}; {:.2} / {:.2}",
                h.async_p50_us, h.async_p99_us, h.async_client_cores, h.async_nodes_cores
            ),
        ),
    ]
}

fn propagation_rows(r: &Results) -> Vec<Row> {
    vec![
        info(
            "propagation p50 (us)",
            format!("{:.0}", r.propagation_p50_us),
        ),
        judged(
            "propagation p99 (us)",
            format!("{:.0}", r.propagation_p99_us),
            format!("<= 3 x floor = {:.0}", 3.0 * floor_sum(r)),
            r.propagation_p99_us <= 3.0 * floor_sum(r),
        ),
        info(
            "  node 2 / node 3 p99, max (us)",
            format!(
                "{:.0} / {:.0}, {:.0}",
                r.propagation_f2_p99_us, r.propagation_f3_p99_us, r.propagation_max_us
            ),
        ),
        info(
            "  ratio p50 / (fsync p50 + RTT p50)",
            format!("{:.2}", r.propagation_p50_us / floor_sum(r).max(1e-3)),
        ),
        info(
            "  (during the acks=all latency run, p99 us)",
            format!("{:.0}", r.latency_propagation_p99_us),
        ),
        info(
            "  slow syncs meanwhile, all 3 nodes",
            crate::fsync_tail::show(r.propagation_syncs),
        ),
    ]
}

/// Two figures as "a -> b", no decimals.
fn change(a: f64, b: f64) -> String {
    format!("{a:.0} -> {b:.0}")
}

fn isolation_rows(r: &Results) -> Vec<Row> {
    vec![
        info(
            "isolation: acks=leader p99 pass -> slow (us)",
            change(r.iso_base_ack_p99_us, r.iso_slow_ack_p99_us),
        ),
        judged(
            "isolation_ack_ratio",
            format!("{:.2}", r.isolation_ack_ratio),
            "<= 1.1".into(),
            r.isolation_ack_ratio <= 1.1,
        ),
        info(
            "isolation: node 2 prop. p99 pass -> slow (us)",
            change(r.iso_base_prop_p99_us, r.iso_slow_prop_p99_us),
        ),
        judged(
            "isolation_propagation_ratio",
            format!("{:.2}", r.isolation_propagation_ratio),
            "<= 1.1".into(),
            r.isolation_propagation_ratio <= 1.1,
        ),
        info(
            "  A/A: pass again / pass, ack / prop. p99",
            format!(
                "{:.2} / {:.2}",
                r.isolation_aa_ack_ratio, r.isolation_aa_propagation_ratio
            ),
        ),
        info(
            "  slow syncs per 1000, nodes 1+2: pass, again, slow",
            r.iso_syncs
                .map(|w| w.map_or("n/a".to_string(), |s| format!("{:.0}", s.slow_permille())))
                .join(" / "),
        ),
        info(
            "  entries/s pass -> slow",
            change(r.iso_base_eps, r.iso_slow_eps),
        ),
        info(
            "  node 3 left the ISR after (ms)",
            format!("{:.0}", r.iso_isr_shrink_ms),
        ),
        info(
            "  node 2 prop. p99 until then (us)",
            format!("{:.0}", r.iso_transient_prop_p99_us),
        ),
        info(
            "  node 3 seen in ISR while measured",
            format!("{}/{} polls", r.iso_slow_back_in_polls, r.iso_slow_polls),
        ),
        info(
            "  node 3 back in the ISR after idle (ms)",
            r.iso_rejoin_after_idle_ms
                .map_or("no (3 s)".to_string(), |m| format!("{m:.0}")),
        ),
    ]
}

fn stalled_rows(r: &Results) -> Vec<Row> {
    let window = r.stalled_window_bytes;
    vec![
        judged(
            "stalled: process RSS growth (MiB)",
            format!("{:.1}", mib(r.stalled_rss_growth_bytes)),
            format!("<= window + 16 = {:.0}", mib(window) + 16.0),
            r.stalled_rss_growth_bytes <= window + 16 * 1048576,
        ),
        info(
            "  RSS at start / growth at end (MiB)",
            format!(
                "{:.1} / {:.1}",
                mib(r.stalled_rss_base_bytes),
                mib(r.stalled_rss_growth_end_bytes)
            ),
        ),
        judged(
            "stalled: in flight to node 3 (MiB)",
            format!("{:.2}", mib(r.stalled_inflight_bytes)),
            format!("<= window = {:.0}", mib(window)),
            r.stalled_inflight_bytes <= window,
        ),
        info("  entries/s while stalled", format!("{:.0}", r.stalled_eps)),
    ]
}

fn catchup_rows(r: &Results) -> Vec<Row> {
    vec![
        judged(
            "catch-up (entries/s)",
            format!("{:.0}", r.catchup_eps),
            ">= 1000000".into(),
            r.catchup_eps >= 1_000_000.0,
        ),
        info(
            "  leader link up again after (ms)",
            format!("{:.1}", r.catchup_connect_ms),
        ),
        info(
            "  entries/s from that reconnect",
            format!("{:.0}", r.catchup_stream_eps),
        ),
        info(
            "  entries / seconds / node start (ms)",
            format!(
                "{} / {:.2} / {:.0}",
                r.catchup_entries, r.catchup_secs, r.catchup_start_ms
            ),
        ),
        info(
            "learner: entries / added to promoted (ms)",
            format!("{} / {:.0}", r.learner_entries, r.learner_promote_ms),
        ),
        info(
            "  acks=all meanwhile: writes / p50 / p99 (µs)",
            format!(
                "{} / {:.0} / {:.0}",
                r.learner_writes, r.learner_write_p50_us, r.learner_write_p99_us
            ),
        ),
    ]
}

fn failover_rows(r: &Results) -> Vec<Row> {
    let kinds: [(&'static str, &[f64], &[f64]); 3] = [
        (
            "failover, crash, T = 1 s: median (ms)",
            &r.failover_ms,
            &r.failover_election_ms,
        ),
        (
            "failover, crash, T = 150 ms: median (ms)",
            &r.failover_150_ms,
            &r.failover_150_election_ms,
        ),
        (
            "failover, resign, T = 1 s: median (ms)",
            &r.resign_failover_ms,
            &r.resign_election_ms,
        ),
    ];
    let mut rows = Vec::new();
    for (name, written, elected) in kinds {
        let (m, lo, hi) = spread(written);
        rows.push(info(name, format!("{m:.0}")));
        rows.push(info("  min / max (ms)", pair(lo, hi)));
        rows.push(info(
            "  new leader known after, median (ms)",
            format!("{:.0}", spread(elected).0),
        ));
    }
    rows
}

/// Every row, in the table's order (the TLS and HTTP rows only when those
/// phases ran).
fn rows(r: &Results) -> Vec<Row> {
    let mut rows = latency_rows(r);
    if let Some(t) = &r.tls {
        rows.extend(tls_rows(r, t));
    }
    if let Some(h) = &r.http {
        rows.extend(http_rows(r, h));
    }
    rows.extend(propagation_rows(r));
    rows.extend(isolation_rows(r));
    rows.extend(stalled_rows(r));
    rows.extend(catchup_rows(r));
    rows.extend(failover_rows(r));
    rows
}

pub fn print_table(out: Out, r: &Results, quick: bool) {
    out.table("");
    out.table(&format!(
        "metawal cluster benchmark{}",
        if quick {
            " (--quick: counts / 10, numbers not judged)"
        } else {
            ""
        }
    ));
    out.table(&format!(
        "{:<44} {:>14}  {:<28} {}",
        "figure", "value", "target", ""
    ));
    out.table(&"-".repeat(98));
    for row in rows(r) {
        out.table(&format!(
            "{:<44} {:>14}  {:<28} {}",
            row.name,
            row.value,
            row.target,
            row.ok.map_or("", verdict)
        ));
    }
}
