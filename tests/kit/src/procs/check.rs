//! The history checker: what the clients were told against what every
//! node's log holds once the cluster has converged.
//!
//! Pure functions over plain data, so that a unit test can plant each kind
//! of inconsistency and see it flagged: a checker that cannot fail proves
//! nothing.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::http::{LogEntry, Outcome};

/// What one node holds, read back after convergence.
#[derive(Debug, Clone)]
pub enum NodeView {
    /// Its log from `GET /v1/watch`, in order. When the log start had
    /// moved (410 `compacted`), `entries` begin at the log start and
    /// `state` holds the topic names of its applied state (`GET
    /// /v1/snapshot`, at `state_offset` >= the last entry): writes acked
    /// below the log start can only be checked for presence.
    Log {
        node: u64,
        entries: Vec<LogEntry>,
        state: Option<(u64, BTreeSet<String>)>,
    },
}

/// The topic names a log command creates (a `Batch` may create several).
pub fn created_names(command: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(name) = command["CreateTopic"]["name"].as_str() {
        out.push(name.to_string());
    }
    if let Some(cmds) = command["Batch"]["commands"].as_array() {
        for c in cmds {
            out.extend(created_names(c));
        }
    }
    out
}

/// Every violation found; empty if the history is consistent.
///
/// - an acked write is in exactly one entry, at its acked offset, on every
///   node (below a moved log start: in the node's state);
/// - a write that failed definitely is nowhere;
/// - a write with an unknown outcome is in at most one entry;
/// - no node has a topic no client asked for;
/// - every node's log is dense, and where two logs cover the same offset
///   they hold the same entry (offset, epoch, command).
pub fn check(writes: &[(String, Outcome)], views: &[NodeView]) -> Vec<String> {
    let mut v = Vec::new();
    let asked: BTreeSet<&str> = writes.iter().map(|(n, _)| n.as_str()).collect();
    let mut by_offset: BTreeMap<u64, (u64, &LogEntry)> = BTreeMap::new();
    for view in views {
        let NodeView::Log {
            node,
            entries,
            state,
        } = view;
        for w in entries.windows(2) {
            if w[1].offset != w[0].offset + 1 {
                v.push(format!(
                    "node {node}: log not dense: offset {} follows {}",
                    w[1].offset, w[0].offset
                ));
            }
        }
        let first = entries.first().map_or(u64::MAX, |e| e.offset);
        if state.is_none() && first != 1 && !entries.is_empty() {
            v.push(format!(
                "node {node}: log starts at {first} and no state was read"
            ));
        }
        let mut at: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for e in entries {
            for name in created_names(&e.command) {
                at.entry(name).or_default().push(e.offset);
            }
            match by_offset.get(&e.offset) {
                Some((other, o)) if *o != e => v.push(format!(
                    "offset {}: node {node} has epoch {} {}, node {other} has epoch {} {}",
                    e.offset, e.epoch, e.command, o.epoch, o.command
                )),
                Some(_) => {}
                None => {
                    by_offset.insert(e.offset, (*node, e));
                }
            }
        }
        for name in at.keys() {
            if !asked.contains(name.as_str()) {
                v.push(format!(
                    "node {node}: topic {name:?} at {:?} was never written",
                    at[name]
                ));
            }
        }
        if let Some((offset, topics)) = state {
            for name in topics {
                if !asked.contains(name.as_str()) {
                    v.push(format!(
                        "node {node}: topic {name:?} (state at {offset}) was never written"
                    ));
                }
            }
        }
        let in_state = |name: &str| state.as_ref().map(|(_, t)| t.contains(name));
        for (name, outcome) in writes {
            let found = at.get(name).map(Vec::as_slice).unwrap_or(&[]);
            // Acked below a moved log start: checked in the state instead.
            let below_start = |offset: u64| state.is_some() && offset < first;
            match outcome {
                Outcome::Acked { offset } if !below_start(*offset) && found != [*offset] => {
                    v.push(format!(
                        "node {node}: acked write {name:?} at offset {offset} found at {found:?}"
                    ))
                }
                Outcome::Acked { offset }
                    if below_start(*offset) && (in_state(name) != Some(true) || !found.is_empty()) =>
                {
                    v.push(format!(
                        "node {node}: acked write {name:?} at offset {offset} (below the log \
                         start {first}): in the state: {:?}, in the log at {found:?}",
                        in_state(name)
                    ))
                }
                Outcome::Failed { why } if !found.is_empty() || in_state(name) == Some(true) => {
                    v.push(format!(
                        "node {node}: failed write {name:?} ({why}) found at {found:?} (in the state: {:?})",
                        in_state(name)
                    ))
                }
                Outcome::Unknown { .. } if found.len() > 1 => v.push(format!(
                    "node {node}: write {name:?} applied more than once, at {found:?}"
                )),
                _ => {}
            }
        }
    }
    v
}
