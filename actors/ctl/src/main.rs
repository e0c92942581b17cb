//! `metawalctl`: the command-line client of the metawal HTTP API
//! (`docs/api.md`).
//!
//! Operators need to create topics, move partitions and look at the
//! cluster without writing JSON by hand or knowing which node leads. This
//! binary is a thin layer over `metawal-client`, which does the routing,
//! the safe retries (a write that may have been applied is never sent
//! again), TLS and its diagnosis: every subcommand is one request (or one
//! change stream for `watch`), and the exit code says what happened (see
//! [`exit`]). `--json` prints the server's JSON body unchanged (on an
//! error, the server's error body goes to stdout too, the explanation to
//! stderr).

mod cli;
mod exit;
mod leader;
mod member;
mod output;
mod partition;
mod setup;
mod status;
mod topic;
mod watch;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use metawal_client::Kind;

use crate::cli::{Cli, Cmd};
use crate::exit::CtlError;
use crate::output::note;

/// Runs the parsed command line.
fn run(cli: &Cli) -> Result<(), CtlError> {
    let client = setup::client(cli)?;
    match &cli.command {
        Cmd::Topic(t) => topic::run(cli, &client, t),
        Cmd::Partition(p) => partition::run(cli, &client, p),
        Cmd::Status { all } => status::run(cli, &client, *all),
        Cmd::Watch(w) => watch::run(cli, &client, w),
        Cmd::Leader(l) => leader::run(cli, &client, l),
        Cmd::Member(m) => member::run(cli, &client, m),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Err(e) = run(&cli) else {
        return ExitCode::SUCCESS;
    };
    if let (true, Some(body)) = (cli.json, &e.body) {
        let _ = writeln!(std::io::stdout(), "{body}");
    }
    let kind = if cli.command.is_write() {
        Kind::Write
    } else {
        Kind::Read
    };
    let advice = e.advice.unwrap_or_else(|| exit::advice(e.failure, kind));
    note!(
        "metawalctl: {}: {}\n  -> {advice}",
        exit::label(e.failure),
        e.message
    );
    ExitCode::from(exit::exit_code(e.failure))
}
