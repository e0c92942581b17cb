//! Output: plain-text tables, the lines writes print, and stdout/stderr
//! that survive a closed pipe.
//!
//! Why a module of its own: every subcommand prints the same way (aligned
//! columns, `-` for nothing, `--json` for the server's body unchanged), so
//! the rendering is written and tested once.

use std::io::Write;

use metawal::NodeId;
use serde_json::Value;

use crate::exit::CtlError;
use metawal_client::{Failure, Reply};

/// Like `eprintln!`, but a closed stderr is ignored instead of panicking.
macro_rules! note {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}
pub(crate) use note;

/// Writes to stdout; a closed pipe (`| head`) ends the program quietly.
pub fn emit(text: &str) -> Result<(), CtlError> {
    let stdout = std::io::stdout();
    let mut lock = stdout.lock();
    let result = lock.write_all(text.as_bytes()).and_then(|()| {
        if text.ends_with('\n') {
            Ok(())
        } else {
            lock.write_all(b"\n")
        }
    });
    match result.and_then(|()| lock.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => Err(CtlError::new(
            Failure::Unavailable,
            format!("cannot write to stdout: {e}"),
        )),
    }
}

/// Prints a write's result: `what at offset N (epoch E)`, or the body.
pub fn print_write(json: bool, reply: &Reply, what: &str) -> Result<(), CtlError> {
    if json {
        return emit(&reply.body);
    }
    let offset = cell(reply.json.get("offset"));
    let epoch = cell(reply.json.get("epoch"));
    emit(&format!("{what} at offset {offset} (epoch {epoch})"))
}

/// `1 partition`, `3 partitions`.
pub fn plural(n: u32, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// `1,2,3`.
pub fn join_ids(ids: &[NodeId]) -> String {
    ids.iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Formats rows as left-aligned columns separated by two spaces, with the
/// header first; no trailing spaces.
pub fn render_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let cols = headers.len();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(cols) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut l = String::new();
        for (i, cell) in cells.enumerate().take(cols) {
            if i > 0 {
                l.push_str("  ");
            }
            l.push_str(cell);
            let pad = widths[i].saturating_sub(cell.chars().count());
            l.extend(std::iter::repeat_n(' ', pad));
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut headers.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

/// One table row per element of the array `json[key]`: the cells of
/// `fields`, in order (no rows if `key` is missing or not an array).
pub fn rows_of(json: &Value, key: &str, fields: &[&str]) -> Vec<Vec<String>> {
    json.get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|x| fields.iter().map(|f| cell(x.get(*f))).collect())
        .collect()
}

/// A JSON value as a table cell: strings bare, numbers as is, arrays of
/// numbers as `1,2,3`, booleans as yes/no, null/missing as `-`.
pub fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) if a.is_empty() => "-".into(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| cell(Some(x)))
            .collect::<Vec<_>>()
            .join(","),
        Some(Value::Bool(b)) => if *b { "yes" } else { "no" }.into(),
        Some(other) => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let t = render_table(
            &["A", "LONGER"],
            &[
                vec!["x".into(), "1".into()],
                vec!["wide-cell".into(), "22".into()],
            ],
        );
        assert_eq!(t, "A          LONGER\nx          1\nwide-cell  22\n");
        assert_eq!(render_table(&["ONLY"], &[]), "ONLY\n");
    }

    #[test]
    fn cells_render_json() {
        assert_eq!(cell(None), "-");
        assert_eq!(cell(Some(&Value::Null)), "-");
        assert_eq!(cell(Some(&serde_json::json!([1, 2, 3]))), "1,2,3");
        assert_eq!(cell(Some(&serde_json::json!([]))), "-");
        assert_eq!(cell(Some(&serde_json::json!("leader"))), "leader");
        assert_eq!(cell(Some(&serde_json::json!(true))), "yes");
        assert_eq!(cell(Some(&serde_json::json!(7))), "7");
    }

    #[test]
    fn plurals() {
        assert_eq!(plural(1, "partition"), "1 partition");
        assert_eq!(plural(3, "partition"), "3 partitions");
    }
}
