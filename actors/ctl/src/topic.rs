//! `metawalctl topic create|delete|list|describe`.
//!
//! Why a module of its own: topics are the subcommand group with the most
//! logic on this side — `create --assign` builds one atomic batch that
//! places every partition, and the reads carry the read-your-writes and
//! linearizable options.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use metawal::{Command, NodeId};
use metawal_client::endpoint::{encode_component, origin};
use metawal_client::{Client, ErrorCode, Failure, NodeStatus};

use crate::cli::{Cli, ReadArgs, TopicCmd, WriteArgs};
use crate::exit::CtlError;
use crate::output::{cell, emit, join_ids, plural, print_write, render_table, rows_of};

/// Largest batch the server accepts (`MAX_BATCH_COMMANDS`).
const MAX_BATCH_COMMANDS: usize = 10_000;

/// `topic …`
pub fn run(cli: &Cli, client: &Client, cmd: &TopicCmd) -> Result<(), CtlError> {
    match cmd {
        TopicCmd::Create {
            name,
            partitions,
            replication_factor,
            assign: false,
            write,
            ..
        } => create(cli, client, name, *partitions, *replication_factor, write),
        TopicCmd::Create {
            name,
            partitions,
            replication_factor,
            brokers,
            write,
            ..
        } => create_assigned(
            cli,
            client,
            name,
            (*partitions, *replication_factor),
            brokers,
            write,
        ),
        TopicCmd::Delete { name, write } => {
            let delete = [Command::DeleteTopic { name: name.clone() }];
            let reply = propose(client, &delete, write)?;
            print_write(cli.json, &reply, &format!("deleted topic {name}"))
        }
        TopicCmd::List { read } => list(cli, client, read),
        TopicCmd::Describe { name, read } => describe(cli, client, name, read),
    }
}

/// Proposes `commands` with the write's acks; the reply as the server sent it.
pub fn propose(
    client: &Client,
    commands: &[Command],
    write: &WriteArgs,
) -> Result<metawal_client::Reply, CtlError> {
    let proposed = client.propose(commands, write.acks.into())?;
    proposed
        .reply
        .ok_or_else(|| CtlError::new(Failure::OutcomeUnknown, "the write's reply was not kept"))
}

/// `topic create` without `--assign`.
fn create(
    cli: &Cli,
    client: &Client,
    name: &str,
    partitions: u32,
    rf: u32,
    write: &WriteArgs,
) -> Result<(), CtlError> {
    let c = Command::CreateTopic {
        name: name.to_string(),
        partition_count: partitions,
        replication_factor: rf,
    };
    let reply = propose(client, &[c], write)?;
    let what = format!(
        "created topic {name} ({}, replication factor {rf})",
        plural(partitions, "partition")
    );
    print_write(cli.json, &reply, &what)
}

/// `topic create --assign`: the topic and its placement in one entry.
fn create_assigned(
    cli: &Cli,
    client: &Client,
    name: &str,
    (partitions, rf): (u32, u32),
    brokers: &[NodeId],
    write: &WriteArgs,
) -> Result<(), CtlError> {
    let brokers = if brokers.is_empty() {
        cluster_node_ids(client)?
    } else {
        brokers.to_vec()
    };
    let batch = assignment_batch(name, partitions, rf, &brokers).map_err(CtlError::usage)?;
    let reply = propose(client, &batch, write).map_err(|mut e| {
        if e.code == Some(ErrorCode::EntryTooLarge) {
            e.message.push_str(
                "; with --assign the topic and all its assignments are one entry: \
                 use fewer partitions, or create the topic without --assign and \
                 assign its partitions with `metawalctl partition assign/leader/isr`",
            );
        }
        e
    })?;
    let what = format!(
        "created topic {name} ({}, replication factor {rf}, assigned over brokers {})",
        plural(partitions, "partition"),
        join_ids(&brokers)
    );
    print_write(cli.json, &reply, &what)
}

/// `topic list`
fn list(cli: &Cli, client: &Client, read: &ReadArgs) -> Result<(), CtlError> {
    let path = format!("/v1/topics{}", read_query(read, cli.timeout_ms));
    let reply = client.get(&path)?;
    if cli.json {
        return emit(&reply.body);
    }
    let rows = rows_of(
        &reply.json,
        "topics",
        &["name", "partition_count", "replication_factor"],
    );
    let mut out = render_table(&["TOPIC", "PARTITIONS", "RF"], &rows);
    let _ = write!(
        out,
        "({}, applied offset {} at {})",
        plural(u32::try_from(rows.len()).unwrap_or(u32::MAX), "topic"),
        cell(reply.json.get("applied_offset")),
        origin(&reply.url)
    );
    emit(&out)
}

/// `topic describe NAME`
fn describe(cli: &Cli, client: &Client, name: &str, read: &ReadArgs) -> Result<(), CtlError> {
    let path = format!("{}{}", topic_path(name)?, read_query(read, cli.timeout_ms));
    let reply = client.get(&path)?;
    if cli.json {
        return emit(&reply.body);
    }
    let j = &reply.json;
    let rows = rows_of(j, "partitions", &["partition", "replicas", "leader", "isr"]);
    let mut out = format!(
        "topic {}  partitions {}  replication factor {}  (applied offset {} at {})\n",
        cell(j.get("name")),
        rows.len(),
        cell(j.get("replication_factor")),
        cell(j.get("applied_offset")),
        origin(&reply.url)
    );
    out.push_str(&render_table(
        &["PARTITION", "REPLICAS", "LEADER", "ISR"],
        &rows,
    ));
    emit(&out)
}

/// The query string of a topic read.
pub fn read_query(read: &ReadArgs, timeout_ms: u64) -> String {
    let mut q = Vec::new();
    if let Some(m) = read.min_offset {
        q.push(format!("min_offset={m}"));
    }
    if read.linearizable {
        q.push("linearizable=true".to_string());
    }
    if !q.is_empty() {
        // Let the server give up (504, exit 6) before this client does.
        let server = if timeout_ms > 2000 {
            timeout_ms - 1000
        } else {
            timeout_ms / 2
        };
        q.push(format!("timeout_ms={}", server.clamp(1, 60_000)));
    }
    if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    }
}

/// Refuses names that cannot be a URL path segment (`.` and `..`).
pub fn topic_path(name: &str) -> Result<String, CtlError> {
    if name.is_empty() || name == "." || name == ".." {
        return Err(CtlError::usage(format!(
            "{name:?} is not a valid topic name"
        )));
    }
    Ok(format!("/v1/topics/{}", encode_component(name)))
}

/// The cluster's node ids, for `--assign` without `--brokers`: the leader's
/// own id and its followers' ids, from the first endpoint that is the leader.
fn cluster_node_ids(client: &Client) -> Result<Vec<NodeId>, CtlError> {
    let mut notes = Vec::new();
    for node in client.nodes() {
        let reply = match node.get("/v1/status") {
            Ok(reply) => reply,
            Err(e) => {
                notes.push(e.to_string());
                continue;
            }
        };
        match reply.parse::<NodeStatus>() {
            Ok(s) if s.role == "leader" => {
                let mut ids = BTreeSet::from([s.node_id]);
                ids.extend(s.followers.iter().map(|f| f.peer));
                return Ok(ids.into_iter().collect());
            }
            _ => notes.push(format!(
                "{} is {} (leader: node {})",
                node.endpoint(),
                cell(reply.json.get("role")),
                cell(reply.json.get("leader"))
            )),
        }
    }
    Err(CtlError::new(
        Failure::Unavailable,
        format!(
            "--assign needs the broker ids, and no endpoint is the leader to tell them ({}): \
             pass --brokers 1,2,3 or add the leader to --endpoints",
            notes.join("; ")
        ),
    ))
}

/// The atomic batch of `topic create --assign`: `CreateTopic`, then for each
/// partition `p` an `AssignPartition` with `rf` replicas taken round-robin
/// from `brokers` starting at `brokers[p % n]`, a `SetPartitionLeader` (the
/// first replica) and an `UpdateIsr` (all replicas).
pub fn assignment_batch(
    name: &str,
    partitions: u32,
    rf: u32,
    brokers: &[NodeId],
) -> Result<Vec<Command>, String> {
    check_assignment(partitions, rf, brokers)?;
    let n = brokers.len();
    let mut out = Vec::with_capacity(1 + 3 * partitions as usize);
    out.push(Command::CreateTopic {
        name: name.to_string(),
        partition_count: partitions,
        replication_factor: rf,
    });
    for p in 0..partitions as usize {
        let replicas: Vec<NodeId> = (0..rf as usize).map(|i| brokers[(p + i) % n]).collect();
        let (topic, partition, leader) = (name.to_string(), p as i32, replicas[0]);
        out.push(Command::AssignPartition {
            topic: topic.clone(),
            partition,
            replicas: replicas.clone(),
        });
        out.push(Command::SetPartitionLeader {
            topic: topic.clone(),
            partition,
            leader,
        });
        out.push(Command::UpdateIsr {
            topic,
            partition,
            isr: replicas,
        });
    }
    Ok(out)
}

/// Why `--assign` with these numbers cannot be one batch, if it cannot.
fn check_assignment(partitions: u32, rf: u32, brokers: &[NodeId]) -> Result<(), String> {
    let mut unique = BTreeSet::new();
    if let Some(dup) = brokers.iter().find(|b| !unique.insert(**b)) {
        return Err(format!("broker {dup} is listed twice in --brokers"));
    }
    let n = brokers.len();
    if n == 0 {
        return Err("no brokers to assign to: pass --brokers".into());
    }
    if rf == 0 || partitions == 0 {
        return Err("--partitions and --replication-factor must be at least 1".into());
    }
    if rf as usize > n {
        return Err(format!(
            "--replication-factor {rf} is more than the {n} brokers ({}): lower it or pass more --brokers",
            join_ids(brokers)
        ));
    }
    let commands = 1 + 3 * partitions as usize;
    if commands > MAX_BATCH_COMMANDS || partitions > i32::MAX as u32 {
        return Err(format!(
            "--assign with {partitions} partitions needs {commands} commands in one batch; \
             the server takes at most {MAX_BATCH_COMMANDS}: create without --assign and \
             assign partitions separately"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_assignment() {
        let batch = assignment_batch("t", 4, 2, &[1, 2, 3]).unwrap();
        assert_eq!(batch.len(), 1 + 3 * 4);
        assert_eq!(
            batch[0],
            Command::CreateTopic {
                name: "t".into(),
                partition_count: 4,
                replication_factor: 2
            }
        );
        let replicas: Vec<Vec<NodeId>> = batch
            .iter()
            .filter_map(|c| match c {
                Command::AssignPartition { replicas, .. } => Some(replicas.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(
            replicas,
            vec![vec![1, 2], vec![2, 3], vec![3, 1], vec![1, 2]]
        );
        assert_eq!(
            batch[2],
            Command::SetPartitionLeader {
                topic: "t".into(),
                partition: 0,
                leader: 1
            }
        );
        assert_eq!(
            batch[12],
            Command::UpdateIsr {
                topic: "t".into(),
                partition: 3,
                isr: vec![1, 2]
            }
        );
        // The JSON body is an array of externally tagged commands.
        let json = serde_json::to_value(&batch[..2]).unwrap();
        assert_eq!(
            json[1],
            serde_json::json!({"AssignPartition":{"topic":"t","partition":0,"replicas":[1,2]}})
        );
    }

    #[test]
    fn assignment_refuses_impossible_requests() {
        assert!(assignment_batch("t", 3, 4, &[1, 2, 3])
            .unwrap_err()
            .contains("more than the 3 brokers"));
        assert!(assignment_batch("t", 3, 1, &[]).is_err());
        assert!(assignment_batch("t", 3, 1, &[1, 1])
            .unwrap_err()
            .contains("twice"));
        assert!(assignment_batch("t", 4000, 1, &[1]).is_err());
        assert!(assignment_batch("t", 3333, 1, &[1]).is_ok());
    }

    #[test]
    fn topic_paths_are_percent_encoded() {
        assert_eq!(topic_path("a b").unwrap(), "/v1/topics/a%20b");
        assert!(topic_path("..").is_err());
    }

    #[test]
    fn read_queries() {
        let r = ReadArgs {
            min_offset: Some(5),
            linearizable: true,
        };
        assert_eq!(
            read_query(&r, 10_000),
            "?min_offset=5&linearizable=true&timeout_ms=9000"
        );
        let r = ReadArgs {
            min_offset: None,
            linearizable: false,
        };
        assert_eq!(read_query(&r, 10_000), "");
    }
}
