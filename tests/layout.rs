//! The layout rule of both library crates: no import cycles between files.
//!
//! Each file of `src` (the core, `metawal`) and of `actors/src`
//! (`metawal-actors`) may use others, but never in a cycle: the Replicator
//! starts links and a link reaches it only through a recipient; the
//! listener starts sessions and a session reaches it only through a handle
//! of recipients; the store sends to the Replicator, never back; the frame
//! codec knows the messages, the engines know the codec, never the reverse.
//!
//! A path is followed to the file that *defines* the item, through every
//! re-export on the way (`pub use`, and the private `use` a child module
//! sees through `super::`): a cycle hidden behind a `mod.rs` that
//! re-exports its children is still a cycle. The test reads the sources
//! (comments and string literals removed), resolves every `use` tree and
//! every inline `crate::…` / `super::…` path, and fails naming each cycle
//! it finds (one per strongly connected group of files).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// One crate's modules: path (`leader::link`, `""` for the root) → source
/// text with comments and literals blanked.
type Sources = BTreeMap<String, String>;

/// Module path → every file of `dir` (recursively); `root` is the crate
/// root file's name (`lib.rs`).
fn modules(dir: &Path, prefix: &str, out: &mut Sources) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        panic!("cannot read {}", dir.display());
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().to_string();
        if path.is_dir() {
            // Binaries (src/bin) and other packages (actors/client, ...)
            // are not modules of this crate.
            if name != "bin" && !path.join("Cargo.toml").exists() && !path.join("src").is_dir() {
                modules(&path, &format!("{prefix}{name}::"), out);
            }
        } else if let Some(stem) = name.strip_suffix(".rs") {
            let module = match stem {
                "lib" if prefix.is_empty() => String::new(),
                "mod" => prefix.trim_end_matches("::").to_string(),
                _ => format!("{prefix}{stem}"),
            };
            let text = std::fs::read_to_string(&path).expect("readable source");
            out.insert(module, without_test_modules(&code_only(&text)));
        }
    }
}

/// `src` with comments, string and char literals replaced by spaces (so
/// doc links and messages that mention `crate::x` are not imports).
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == b'/' && next == Some(b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'/' && next == Some(b'*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c == b'r'
            && (next == Some(b'"') || next == Some(b'#'))
            && !ident_byte_before(b, i)
        {
            // A raw string: r"…", r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&b'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&b'"') {
                out.push(c as char);
                i += 1;
                continue;
            }
            j += 1;
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            while j < b.len() && !b[j..].starts_with(&close) {
                j += 1;
            }
            i = j + close.len();
            out.push_str("\"\"");
        } else if c == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == b'\'' && is_char_literal(b, i) {
            i += 1;
            while i < b.len() && b[i] != b'\'' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("' '");
        } else {
            // Multi-byte UTF-8 passes through byte by byte as a char run.
            let len = utf8_len(c);
            out.push_str(&src[i..i + len]);
            i += len;
        }
    }
    out
}

/// `src` without its `#[cfg(test)] mod … { … }` blocks: tests are not part
/// of the layering (and their `super::` is the file itself, not its
/// parent).
fn without_test_modules(src: &str) -> String {
    let mut out = src.to_string();
    while let Some(at) = out.find("#[cfg(test)]") {
        let after = at + "#[cfg(test)]".len();
        let rest = out[after..].trim_start();
        let is_inline_mod = rest.starts_with("mod ")
            && rest
                .find('{')
                .is_some_and(|o| rest.find(';').is_none_or(|s| o < s));
        if !is_inline_mod {
            out.replace_range(at..after, "");
            continue;
        }
        let open = after + out[after..].find('{').unwrap_or(0);
        let mut depth = 0;
        let mut end = out.len();
        for (i, c) in out[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        out.replace_range(at..end, "");
    }
    out
}

fn utf8_len(first: u8) -> usize {
    match first {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

fn ident_byte_before(b: &[u8], i: usize) -> bool {
    i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')
}

/// A `'` that opens a char literal (`'a'`, `'\n'`), not a lifetime.
fn is_char_literal(b: &[u8], i: usize) -> bool {
    match b.get(i + 1) {
        Some(b'\\') => true,
        Some(_) => {
            // 'x' — the closing quote right after one (maybe multi-byte) char.
            let len = b.get(i + 1).map_or(1, |&c| utf8_len(c));
            b.get(i + 1 + len) == Some(&b'\'')
        }
        None => false,
    }
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// What one crate's files define and bind.
struct Crate {
    sources: Sources,
    /// Module → names of the items it defines.
    defines: BTreeMap<String, BTreeSet<String>>,
    /// Module → name → the absolute path (segments) a `use` binds it to.
    binds: BTreeMap<String, BTreeMap<String, Vec<String>>>,
    /// Module → absolute paths of its glob imports (`use a::b::*`).
    globs: BTreeMap<String, Vec<Vec<String>>>,
}

/// Every path a `use` tree names, with the name it binds (`None` for a
/// glob). `tree` is the text between `use` and `;`.
fn use_paths(tree: &str) -> Vec<(Vec<String>, Option<String>)> {
    fn walk(prefix: &[String], tree: &str, out: &mut Vec<(Vec<String>, Option<String>)>) {
        let tree = tree.trim();
        if tree.is_empty() {
            return;
        }
        if let Some(open) = tree.find('{') {
            let head: Vec<String> = tree[..open]
                .split("::")
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect();
            let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
            let mut base = prefix.to_vec();
            base.extend(head);
            for part in split_top_level(inner) {
                walk(&base, part, out);
            }
            return;
        }
        let (path, alias) = match tree.split_once(" as ") {
            Some((p, a)) => (p.trim(), Some(a.trim().to_string())),
            None => (tree, None),
        };
        let mut full = prefix.to_vec();
        full.extend(path.split("::").map(|s| s.trim().to_string()));
        match full.last().map(String::as_str) {
            Some("*") => {
                full.pop();
                out.push((full, None));
            }
            Some("self") => {
                full.pop();
                let name = alias.or_else(|| full.last().cloned());
                out.push((full, name));
            }
            Some(last) => {
                let name = alias.unwrap_or_else(|| last.to_string());
                out.push((full, Some(name)));
            }
            None => {}
        }
    }
    let mut out = Vec::new();
    walk(&[], tree, &mut out);
    out
}

/// `a, b::{c, d}, e` split at the commas outside braces.
fn split_top_level(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

/// The `use` declarations of `src`: (start, end) byte ranges of the tree
/// text (after `use`, before `;`).
fn use_decls(src: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for (i, _) in src.match_indices("use ") {
        let before = src[..i].trim_end();
        let starts_item = before.is_empty()
            || before.ends_with(';')
            || before.ends_with('{')
            || before.ends_with('}')
            || before.ends_with(']')
            || before.ends_with("pub")
            || before.ends_with(')');
        if !starts_item || (i > 0 && is_ident(src[..i].chars().last().unwrap_or(' '))) {
            continue;
        }
        let start = i + "use ".len();
        if let Some(len) = src[start..].find(';') {
            out.push((start, start + len));
        }
    }
    out
}

/// Names of the items `src` defines (anywhere in it: nested functions and
/// methods too, which is harmless: imports name items, not methods).
fn defined_items(src: &str) -> BTreeSet<String> {
    const KEYWORDS: [&str; 9] = [
        "struct ", "enum ", "trait ", "type ", "fn ", "const ", "static ", "union ", "mod ",
    ];
    let mut names = BTreeSet::new();
    for kw in KEYWORDS {
        for (i, _) in src.match_indices(kw) {
            if i > 0 && is_ident(src[..i].chars().last().unwrap_or(' ')) {
                continue;
            }
            let name: String = src[i + kw.len()..]
                .trim_start()
                .chars()
                .take_while(|&c| is_ident(c))
                .collect();
            if !name.is_empty() {
                names.insert(name);
            }
        }
    }
    for (i, _) in src.match_indices("macro_rules!") {
        let name: String = src[i + "macro_rules!".len()..]
            .trim_start()
            .chars()
            .take_while(|&c| is_ident(c))
            .collect();
        names.insert(name);
    }
    names
}

impl Crate {
    fn read(dir: &Path) -> Crate {
        let mut sources = Sources::new();
        modules(dir, "", &mut sources);
        crate_of(sources)
    }

    fn is_module(&self, m: &str) -> bool {
        self.defines.contains_key(m)
    }

    /// `path` as written in module `m`, made absolute (segments from the
    /// crate root); `None` for a path into another crate.
    fn absolute(&self, m: &str, path: &[String]) -> Option<Vec<String>> {
        let mut base: Vec<String> = if m.is_empty() {
            Vec::new()
        } else {
            m.split("::").map(String::from).collect()
        };
        let mut rest = path;
        match rest.first().map(String::as_str) {
            Some("crate") => {
                base.clear();
                rest = &rest[1..];
            }
            Some("self") => rest = &rest[1..],
            Some("super") => {
                while rest.first().map(String::as_str) == Some("super") {
                    base.pop();
                    rest = &rest[1..];
                }
            }
            Some(first) => {
                // A child module of `m`, or a name `m` binds (2018 paths);
                // anything else is another crate.
                let child = join(&base, &[first.to_string()]);
                let bound = self.binds.get(m).is_some_and(|b| b.contains_key(first));
                if !self.is_module(&child) && !bound {
                    return None;
                }
                if bound && !self.is_module(&child) {
                    let mut abs = self.binds[m][first].clone();
                    abs.extend(rest[1..].iter().cloned());
                    return Some(abs);
                }
            }
            None => return None,
        }
        base.extend(rest.iter().cloned());
        Some(base)
    }

    /// The module whose file defines what the absolute `path` names
    /// (following re-exports; `depth` bounds the chase).
    fn defining(&self, path: &[String], depth: u32) -> Option<String> {
        if depth > 16 {
            return None;
        }
        let mut module = String::new();
        for (i, seg) in path.iter().enumerate() {
            let child = join_str(&module, seg);
            if self.is_module(&child) {
                module = child;
                continue;
            }
            // `seg` is an item of `module`: defined there, or bound there.
            if self.defines.get(&module).is_some_and(|d| d.contains(seg)) {
                return Some(module);
            }
            if let Some(target) = self.binds.get(&module).and_then(|b| b.get(seg)) {
                let mut target = target.clone();
                target.extend(path[i + 1..].iter().cloned());
                return self.defining(&target, depth + 1);
            }
            for glob in self.globs.get(&module).into_iter().flatten() {
                let mut target = glob.clone();
                target.extend(path[i..].iter().cloned());
                if let Some(found) = self.defining(&target, depth + 1) {
                    return Some(found);
                }
            }
            return Some(module);
        }
        Some(module)
    }

    /// The files `m` depends on: every `use` and every inline
    /// `crate::`/`super::` path, resolved to the defining file. A module's
    /// own descendants are not dependencies (a parent declares them).
    fn deps(&self, m: &str) -> BTreeSet<String> {
        let src = &self.sources[m];
        let mut paths: Vec<Vec<String>> = Vec::new();
        let decls = use_decls(src);
        for &(a, b) in &decls {
            for (path, _) in use_paths(&src[a..b]) {
                paths.extend(self.absolute(m, &path));
            }
        }
        // Inline paths from the crate root, the parent, or a module this
        // file has a name for (`use crate::election;` … `election::X`).
        let mut roots: Vec<String> = vec!["crate::".into(), "super::".into()];
        for (name, abs) in self.binds.get(m).into_iter().flatten() {
            if self.is_module(&abs.join("::")) {
                roots.push(format!("{name}::"));
            }
        }
        for root in &roots {
            for (i, _) in src.match_indices(root.as_str()) {
                if decls.iter().any(|&(a, b)| i >= a && i < b) {
                    continue;
                }
                if i > 0
                    && (is_ident(src[..i].chars().last().unwrap_or(' '))
                        || src[..i].ends_with("::"))
                {
                    continue;
                }
                let text: String = src[i..]
                    .chars()
                    .take_while(|&c| is_ident(c) || c == ':')
                    .collect();
                let path: Vec<String> = text
                    .split("::")
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect();
                paths.extend(self.absolute(m, &path));
            }
        }
        let mut deps = BTreeSet::new();
        for p in paths {
            if let Some(d) = self.defining(&p, 0) {
                let own = d == m || (m.is_empty() || d.starts_with(&format!("{m}::")));
                if !own {
                    deps.insert(d);
                }
            }
        }
        deps
    }

    fn graph(&self) -> BTreeMap<String, BTreeSet<String>> {
        self.sources
            .keys()
            .map(|m| (m.clone(), self.deps(m)))
            .collect()
    }
}

fn join(base: &[String], rest: &[String]) -> String {
    base.iter()
        .chain(rest)
        .cloned()
        .collect::<Vec<_>>()
        .join("::")
}

fn join_str(module: &str, seg: &str) -> String {
    if module.is_empty() {
        seg.to_string()
    } else {
        format!("{module}::{seg}")
    }
}

/// One cycle in each strongly connected group of more than one file
/// (Tarjan), as `a -> b -> a`.
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    struct Tarjan<'g> {
        graph: &'g BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        groups: Vec<Vec<&'g str>>,
    }
    impl<'g> Tarjan<'g> {
        fn visit(&mut self, v: &'g str) {
            let i = self.index.len();
            self.index.insert(v, i);
            self.low.insert(v, i);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.graph.get(v).into_iter().flatten() {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(lw);
                } else if self.on_stack.contains(w) {
                    let iw = self.index[w];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut group = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    group.push(w);
                    if w == v {
                        break;
                    }
                }
                if group.len() > 1 {
                    self.groups.push(group);
                }
            }
        }
    }
    let mut t = Tarjan {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        groups: Vec::new(),
    };
    for v in graph.keys() {
        if !t.index.contains_key(v.as_str()) {
            t.visit(v);
        }
    }
    // A shortest cycle through the group's first file (breadth-first).
    t.groups
        .iter()
        .map(|group| {
            let members: BTreeSet<&str> = group.iter().copied().collect();
            let start = *members.iter().next().expect("non-empty group");
            let mut prev: BTreeMap<&str, &str> = BTreeMap::new();
            let mut queue = std::collections::VecDeque::from([start]);
            let mut end = None;
            while let Some(v) = queue.pop_front() {
                for w in graph.get(v).into_iter().flatten() {
                    let w = w.as_str();
                    if w == start {
                        end = Some(v);
                        break;
                    }
                    if members.contains(w) && !prev.contains_key(w) {
                        prev.insert(w, v);
                        queue.push_back(w);
                    }
                }
                if end.is_some() {
                    break;
                }
            }
            let mut path = vec![start];
            let mut at = end.unwrap_or(start);
            let mut back = Vec::new();
            while at != start {
                back.push(at);
                at = prev.get(at).copied().unwrap_or(start);
            }
            back.reverse();
            path.extend(back);
            path.push(start);
            let shown: Vec<&str> = path
                .iter()
                .map(|m| if m.is_empty() { "lib" } else { m })
                .collect();
            if members.len() + 1 > path.len() {
                let all: Vec<&str> = members.iter().copied().collect();
                format!(
                    "{} (in a group of {}: {})",
                    shown.join(" -> "),
                    members.len(),
                    all.join(", ")
                )
            } else {
                shown.join(" -> ")
            }
        })
        .collect()
}

fn check(krate_dir: &str, expect_files: [&str; 2]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(krate_dir);
    let krate = Crate::read(&dir);
    let graph = krate.graph();
    for f in expect_files {
        assert!(
            graph.contains_key(f),
            "the walk found the files of {krate_dir}: {:?}",
            graph.keys().collect::<Vec<_>>()
        );
    }
    let mut found = cycles(&graph);
    // And between the top-level modules (a directory counts as one): the
    // layering holds for `engine` as a whole, not only file by file.
    let mut top: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, deps) in &graph {
        let tm = top_level(m);
        let entry = top.entry(tm.clone()).or_default();
        entry.extend(deps.iter().map(|d| top_level(d)).filter(|d| *d != tm));
    }
    top.remove("");
    for deps in top.values_mut() {
        deps.remove("");
    }
    found.extend(
        cycles(&top)
            .into_iter()
            .map(|c| format!("{c} (top-level modules)")),
    );
    assert!(
        found.is_empty(),
        "import cycles between the files of {krate_dir}:\n  {}",
        found.join("\n  ")
    );
}

/// `engine::link` → `engine`.
fn top_level(m: &str) -> String {
    m.split("::").next().unwrap_or("").to_string()
}

#[test]
fn the_actor_files_import_each_other_without_cycles() {
    check("actors/src", ["leader::link", "follower::session"]);
}

#[test]
fn the_core_files_import_each_other_without_cycles() {
    check("src", ["engine::link", "frame"]);
}

/// The resolver sees through re-exports: a cycle that goes through a
/// `mod.rs` that re-exports its child is found, and one that does not
/// exist is not.
#[test]
fn a_cycle_behind_a_re_export_is_found() {
    let mut sources = Sources::new();
    let files = [
        ("", "pub mod a; pub mod b; pub use a::Thing;"),
        ("a", "mod inner; pub use inner::Thing;"),
        ("a::inner", "use crate::b::Other; pub struct Thing(Other);"),
        (
            "b",
            "pub struct Other; fn f() { let _ = crate::Thing::new(); }",
        ),
    ];
    for (m, s) in files {
        sources.insert(m.to_string(), code_only(s));
    }
    let krate = crate_of(sources);
    let graph = krate.graph();
    assert_eq!(graph["b"], BTreeSet::from(["a::inner".to_string()]));
    assert_eq!(
        cycles(&graph),
        vec!["a::inner -> b -> a::inner".to_string()]
    );

    // Without b's use of Thing there is no cycle.
    let mut sources = Sources::new();
    for (m, s) in files {
        let s = if m == "b" { "pub struct Other;" } else { s };
        sources.insert(m.to_string(), code_only(s));
    }
    assert!(cycles(&crate_of(sources).graph()).is_empty());
}

/// Comments, strings and doc links are not imports.
#[test]
fn comments_and_strings_are_not_imports() {
    let src = code_only("// crate::a::X\n/* crate::b */ let s = \"crate::c\"; let c = '\"';\n/// [x](crate::d)\nuse crate::e::Y;");
    assert!(!src.contains("crate::a") && !src.contains("crate::b") && !src.contains("crate::c"));
    assert!(!src.contains("crate::d") && src.contains("crate::e::Y"));
}

/// A crate from hand-written sources (for the resolver's own tests).
fn crate_of(sources: Sources) -> Crate {
    let mut krate = Crate {
        defines: sources
            .iter()
            .map(|(m, s)| (m.clone(), defined_items(s)))
            .collect(),
        binds: BTreeMap::new(),
        globs: BTreeMap::new(),
        sources: Sources::new(),
    };
    for (m, src) in &sources {
        for (a, b) in use_decls(src) {
            for (path, name) in use_paths(&src[a..b]) {
                if let Some(abs) = krate.absolute(m, &path) {
                    match name {
                        Some(n) => {
                            krate.binds.entry(m.clone()).or_default().insert(n, abs);
                        }
                        None => krate.globs.entry(m.clone()).or_default().push(abs),
                    }
                }
            }
        }
    }
    krate.sources = sources;
    krate
}
