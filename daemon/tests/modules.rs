//! The daemon's module structure, read from its sources: no import cycle between its
//! top-level modules; the runtime's parts never use the loop (`runtime/mod.rs`), and no import
//! cycle between them (a part's own children may use their parent's types).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The modules a file of modules declares (`mod x;` / `pub mod x;`).
fn declared(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .expect("source")
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let l = l
                .strip_prefix("pub ")
                .or_else(|| l.strip_prefix("pub(crate) "))
                .unwrap_or(l);
            l.strip_prefix("mod ")?.strip_suffix(';').map(str::to_owned)
        })
        .collect()
}

/// The source files of module `name` under `dir`: `name.rs`, or everything under `name/`.
fn files(dir: &Path, name: &str) -> Vec<PathBuf> {
    let file = dir.join(format!("{name}.rs"));
    if file.exists() {
        return vec![file];
    }
    let mut out = Vec::new();
    let mut todo = vec![dir.join(name)];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).expect("module directory") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                todo.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out
}

/// The code of a file before its tests, without its comments (a doc link is no import).
fn code(file: &Path) -> String {
    let text = std::fs::read_to_string(file).expect("source");
    let text = match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => &text,
    };
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The names following `prefix` in `text` (`crate::net::X` → `net` for `crate::`).
fn uses<'a>(text: &'a str, prefix: &str) -> BTreeSet<&'a str> {
    text.match_indices(prefix)
        .filter(|(i, _)| *i == 0 || !text.as_bytes()[i - 1].is_ascii_alphanumeric() && text.as_bytes()[i - 1] != b'_')
        .map(|(i, _)| {
            let rest = &text[i + prefix.len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .collect()
}

/// A cycle in `graph`, if there is one.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(n) {
            Some(2) => return None,
            Some(1) => {
                let from = path.iter().position(|p| p == n).unwrap_or(0);
                let mut c = path[from..].to_vec();
                c.push(n.to_owned());
                return Some(c);
            }
            _ => {}
        }
        state.insert(n.to_owned(), 1);
        path.push(n.to_owned());
        for m in graph.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, graph, state, path) {
                return Some(c);
            }
        }
        path.pop();
        state.insert(n.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    graph.keys().find_map(|n| visit(n, graph, &mut state, &mut Vec::new()))
}

#[test]
fn the_top_level_modules_import_one_another_without_a_cycle() {
    let modules = declared(&src().join("lib.rs"));
    assert!(modules.contains(&"runtime".to_owned()) && modules.contains(&"daemon".to_owned()));
    let mut graph = BTreeMap::new();
    for m in &modules {
        let mut to = BTreeSet::new();
        for f in files(&src(), m) {
            let text = code(&f);
            to.extend(
                uses(&text, "crate::")
                    .into_iter()
                    .filter(|u| *u != m && modules.iter().any(|x| x == u))
                    .map(str::to_owned),
            );
        }
        graph.insert(m.clone(), to);
    }
    assert_eq!(cycle(&graph), None, "{graph:?}");
    // The loop is started by the handle, never the other way round.
    assert!(graph["daemon"].contains("runtime"));
    assert!(!graph["runtime"].contains("daemon"), "{graph:#?}");
}

#[test]
fn the_runtimes_parts_never_use_the_loop_and_import_one_another_without_a_cycle() {
    let dir = src().join("runtime");
    let parts = declared(&dir.join("mod.rs"));
    assert!(parts.len() >= 8, "{parts:?}");
    let mut graph = BTreeMap::new();
    for p in &parts {
        let mut to = BTreeSet::new();
        for f in files(&dir, p) {
            let text = code(&f);
            let mut named: BTreeSet<&str> = uses(&text, "crate::runtime::");
            // `super::` in a part's own file is the runtime; in a part's child, the part.
            let own = f.parent() == Some(dir.as_path()) || f.ends_with(format!("{p}/mod.rs"));
            if own {
                named.extend(uses(&text, "super::"));
            }
            for n in named {
                assert!(
                    parts.iter().any(|x| x == n),
                    "{} uses `{n}` of the loop (runtime/mod.rs); a part gets what it needs as arguments",
                    f.display()
                );
                if n != p {
                    to.insert(n.to_owned());
                }
            }
        }
        graph.insert(p.clone(), to);
    }
    assert_eq!(cycle(&graph), None, "{graph:?}");
}
