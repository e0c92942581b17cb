//! `metawal-node` as an operator meets it: bad flags are refused before
//! anything starts, with an error that names the flag and exit code 2.
//!
//! (Having an integration test also makes `cargo test --workspace` build the
//! binary itself, which the root package's process tests then run.)

use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output};

/// Run the binary with `args` (plaintext, a throwaway data dir, secret
/// from the environment) and return what it printed.
fn run(args: &[&str], setup: impl FnOnce(&mut Command)) -> Output {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_metawal-node"));
    cmd.args(["--node-id", "1", "--cluster-id", "cli-test", "--data-dir"])
        .arg(dir.path())
        .args(["--listen", "127.0.0.1:1", "--insecure-plaintext"])
        .args(args)
        .env("METAWAL_SECRET", "s3cret")
        .env_remove("METAWAL_LISTEN_FD")
        .env_remove("METAWAL_HTTP_FD");
    setup(&mut cmd);
    cmd.output().expect("run metawal-node")
}

/// Make `fd` the child's descriptor 3, inherited across exec (moved above
/// 9 first: if it already is 3, `dup2(3, 3)` would keep its close-on-exec).
fn as_fd_3(cmd: &mut Command, fd: i32) {
    // SAFETY: between fork and exec only fcntl, dup2 and close, which are
    // async-signal-safe, on descriptors this process owns.
    unsafe {
        cmd.pre_exec(move || {
            let high = libc::fcntl(fd, libc::F_DUPFD, 10);
            if high < 0 || libc::dup2(high, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::close(high);
            Ok(())
        });
    }
}

fn refused_with(out: &Output, words: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    for w in words {
        assert!(err.contains(w), "{w:?} missing from: {err}");
    }
}

#[test]
fn a_listen_fd_that_is_stdio_is_refused() {
    let out = run(&["--listen-fd", "1"], |_| {});
    refused_with(&out, &["--listen-fd 1", "stdin, stdout and stderr"]);
}

#[test]
fn a_listen_fd_that_is_not_open_is_refused() {
    let out = run(&["--listen-fd", "977"], |_| {});
    refused_with(&out, &["--listen-fd 977", "no such open file descriptor"]);
}

#[test]
fn a_listen_fd_that_is_not_a_listening_socket_is_refused() {
    // Descriptor 3 of the child: a plain file.
    let file = tempfile::tempfile().expect("temp file");
    // Borrowed, not moved: it must stay open until the child has started.
    let out = run(&["--listen-fd", "3"], |cmd| as_fd_3(cmd, file.as_raw_fd()));
    refused_with(&out, &["--listen-fd 3", "not a listening socket"]);
}

#[test]
fn a_listen_fd_bound_elsewhere_than_listen_is_refused() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let bound = listener.local_addr().expect("addr");
    let out = run(&["--listen-fd", "3"], |cmd| {
        as_fd_3(cmd, listener.as_raw_fd())
    });
    refused_with(
        &out,
        &[
            "--listen-fd 3",
            &format!("bound to {bound}"),
            "not to 127.0.0.1:1",
        ],
    );
}

#[test]
fn an_http_fd_without_http_is_refused() {
    let out = run(&["--http-fd", "3"], |_| {});
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert!(err.contains("--http"), "{err}");
}
