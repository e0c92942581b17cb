//! `metawalctl partition assign|leader|isr`: one command each.
//!
//! Why a module of its own: one subcommand group, one file; each builds a
//! single command and prints where it landed.

use metawal::Command;
use metawal_client::Client;

use crate::cli::{Cli, PartitionCmd};
use crate::exit::CtlError;
use crate::output::{join_ids, print_write};
use crate::topic::propose;

/// `partition …`
pub fn run(cli: &Cli, client: &Client, cmd: &PartitionCmd) -> Result<(), CtlError> {
    let (command, write, what) = match cmd {
        PartitionCmd::Assign {
            topic,
            partition,
            replicas,
            write,
        } => (
            Command::AssignPartition {
                topic: topic.clone(),
                partition: *partition,
                replicas: replicas.clone(),
            },
            write,
            format!(
                "assigned {topic}/{partition} to replicas {}",
                join_ids(replicas)
            ),
        ),
        PartitionCmd::Leader {
            topic,
            partition,
            leader,
            write,
        } => (
            Command::SetPartitionLeader {
                topic: topic.clone(),
                partition: *partition,
                leader: *leader,
            },
            write,
            format!("set the leader of {topic}/{partition} to {leader}"),
        ),
        PartitionCmd::Isr {
            topic,
            partition,
            isr,
            write,
        } => (
            Command::UpdateIsr {
                topic: topic.clone(),
                partition: *partition,
                isr: isr.clone(),
            },
            write,
            format!("set the ISR of {topic}/{partition} to {}", join_ids(isr)),
        ),
    };
    let reply = propose(client, &[command], write)?;
    print_write(cli.json, &reply, &what)
}
