//! The layout rule of the actor crate: no import cycles between its files.
//!
//! Each file of `actors/src` may use others (`crate::a::b`), but never in a
//! cycle: the Replicator starts links and a link reaches it only through a
//! recipient; the listener starts sessions and a session reaches it only
//! through a handle of recipients; the store sends to the Replicator, never
//! back. This test reads the sources and fails with the cycle it finds.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module path (`leader::link`) → source text, for every file under `dir`.
fn modules(dir: &Path, prefix: &str, out: &mut BTreeMap<String, String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        panic!("cannot read {}", dir.display());
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().to_string();
        if path.is_dir() {
            if name != "bin" {
                modules(&path, &format!("{prefix}{name}::"), out);
            }
        } else if let Some(stem) = name.strip_suffix(".rs") {
            let module = match stem {
                "lib" => continue,
                "mod" => prefix.trim_end_matches("::").to_string(),
                _ => format!("{prefix}{stem}"),
            };
            let text = std::fs::read_to_string(&path).expect("readable source");
            out.insert(module, text);
        }
    }
}

/// The modules `src` imports through `crate::` paths (including the
/// `crate::a::{b, c}` form).
fn imports(src: &str, known: &BTreeSet<String>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (i, _) in src.match_indices("crate::") {
        let rest = &src[i + "crate::".len()..];
        let path: String = rest
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_' || *c == ':')
            .collect();
        let parts: Vec<&str> = path.split("::").filter(|p| !p.is_empty()).collect();
        // The longest known module prefix of the path.
        for n in (1..=parts.len()).rev() {
            let m = parts[..n].join("::");
            if known.contains(&m) {
                found.insert(m);
                break;
            }
        }
        // `crate::a::{b, c}`: each of a::b, a::c that is a module.
        let brace = rest[path.len()..].strip_prefix('{');
        if let (Some(inner), Some(first)) = (brace, parts.first()) {
            let group = inner.split('}').next().unwrap_or("");
            for name in group.split(|c: char| !(c.is_ascii_lowercase() || c == '_')) {
                let m = format!("{first}::{name}");
                if known.contains(&m) {
                    found.insert(m);
                }
            }
        }
    }
    found
}

#[test]
fn the_actor_files_import_each_other_without_cycles() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("actors/src");
    let mut mods = BTreeMap::new();
    modules(&root, "", &mut mods);
    let known: BTreeSet<String> = mods.keys().cloned().collect();
    let graph: BTreeMap<String, BTreeSet<String>> = mods
        .iter()
        .map(|(m, src)| {
            let mut deps = imports(src, &known);
            deps.remove(m);
            // A parent module file only declares its children.
            deps.retain(|d| !d.starts_with(&format!("{m}::")));
            (m.clone(), deps)
        })
        .collect();
    assert!(
        graph.contains_key("leader::link") && graph.contains_key("follower::session"),
        "the walk found the actor files: {:?}",
        graph.keys().collect::<Vec<_>>()
    );
    // Depth-first search for a back edge.
    fn visit(
        m: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) {
        if done.contains(m) {
            return;
        }
        if let Some(i) = path.iter().position(|p| p == m) {
            panic!("import cycle: {} -> {m}", path[i..].join(" -> "));
        }
        path.push(m.to_string());
        for d in graph.get(m).into_iter().flatten() {
            visit(d, graph, path, done);
        }
        path.pop();
        done.insert(m.to_string());
    }
    let mut done = BTreeSet::new();
    for m in graph.keys() {
        visit(m, &graph, &mut Vec::new(), &mut done);
    }
}
