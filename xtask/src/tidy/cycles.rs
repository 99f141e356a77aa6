//! No import cycles between the top-level modules of a crate: `src/foo.rs` and `src/foo/**`
//! are module `foo` (the crate root, `lib.rs` or `main.rs`, is left out); `foo` uses `bar`
//! where its non-test code names `crate::bar` (also in `use crate::{bar, …}`), or `super::bar`
//! where that `super` is the crate root. Modules that use each other in a cycle cannot be read,
//! tested or split one at a time: what they share belongs in a module of its own.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::source::{Source, Workspace, expand_use_tree, find_word, line_of, use_tree_at};
use super::{Findings, Violations};

/// Cycles that exist today, as `crate: module, module, …` (sorted), and why. This list must
/// shrink to empty.
pub(crate) const KNOWN: &[(&str, &str)] = &[];

/// The references between the top-level modules of one crate: (from, to) → where one is.
type Edges = BTreeMap<(String, String), String>;

pub(crate) fn check(ws: &Workspace, known: &[(&str, &str)], findings: &mut Findings) {
    let mut violations = Violations::new();
    for krate in ws.crates() {
        let src = if krate.is_empty() {
            "src".to_owned()
        } else {
            format!("{krate}/src")
        };
        let edges = edges(ws, &src);
        for component in components(&edges).into_iter().filter(|c| c.len() > 1) {
            let key = format!(
                "{}: {}",
                if krate.is_empty() { "." } else { krate },
                component.join(", ")
            );
            let mut message = format!(
                "{src}: the modules {} use each other in a cycle ({}): move what they share into a module \
                 of its own (or pass it in), so that one of them no longer names the other",
                component.join(", "),
                cycle(&component, &edges).join(" -> ")
            );
            for ((from, to), at) in &edges {
                if component.contains(from) && component.contains(to) {
                    message.push_str(&format!("\n    {from} -> {to}: {at}"));
                }
            }
            violations.insert(key, vec![message]);
        }
    }
    findings.add("cycles", violations, known);
}

/// Where `path` (a file under `src`) sits: its top-level module and how deep its module is
/// (`foo.rs` and `foo/mod.rs` 1, `foo/bar.rs` 2); `None` for the crate root and `src/bin/`.
fn module_of(src: &str, path: &str) -> Option<(String, usize)> {
    let rel = path.strip_prefix(src)?.strip_prefix('/')?;
    let parts: Vec<&str> = rel.split('/').collect();
    if parts.len() == 1 && (rel == "lib.rs" || rel == "main.rs") || parts[0] == "bin" {
        return None;
    }
    let top = parts[0].trim_end_matches(".rs").to_owned();
    let depth = parts.len() - usize::from(parts.last() == Some(&"mod.rs"));
    Some((top, depth))
}

/// The references between the top-level modules of the crate whose sources are under `src`.
fn edges(ws: &Workspace, src: &str) -> Edges {
    let files: Vec<(&Source, String, usize)> = ws
        .under(src)
        .filter_map(|s| module_of(src, &s.path).map(|(top, depth)| (s, top, depth)))
        .collect();
    let modules: BTreeSet<&str> = files.iter().map(|(_, top, _)| top.as_str()).collect();
    let mut edges = Edges::new();
    for (source, top, depth) in &files {
        let code = source.non_test_code();
        let inline = inline_modules(code);
        for (at, target) in references(code) {
            let to = match target {
                Target::Crate(to) => to,
                Target::Super(levels, to) => {
                    let depth = depth + inline.iter().filter(|(open, close)| *open < at && at < *close).count();
                    if levels != depth {
                        continue;
                    }
                    to
                }
            };
            if to != *top && modules.contains(to.as_str()) {
                edges
                    .entry((top.clone(), to))
                    .or_insert_with(|| format!("{}:{}", source.path, line_of(code, at)));
            }
        }
    }
    edges
}

/// What a path names: `crate::x` the crate's `x`, or `super::…::x` (`levels` supers) the `x`
/// of a module that many levels up.
#[derive(Debug, PartialEq)]
enum Target {
    Crate(String),
    Super(usize, String),
}

/// Every `crate::…` and `super::…` path in masked `code`, with its offset (the first segment
/// after `crate`/the supers; each path of a `{…}` group).
fn references(code: &str) -> Vec<(usize, Target)> {
    let mut found = Vec::new();
    for start in ["crate::", "super::"] {
        for at in find_word(code, start) {
            if code[..at].ends_with('$') || code[..at].ends_with("super::") {
                continue;
            }
            for path in expand_use_tree(use_tree_at(code, at)) {
                let mut rest = path.as_str();
                let mut levels = 0;
                if start == "crate::" {
                    rest = rest.trim_start_matches("crate::");
                } else {
                    while let Some(r) = rest.strip_prefix("super::") {
                        levels += 1;
                        rest = r;
                    }
                }
                let first = rest.split("::").next().unwrap_or("").to_owned();
                if first.is_empty() {
                    continue;
                }
                found.push((
                    at,
                    if levels == 0 {
                        Target::Crate(first)
                    } else {
                        Target::Super(levels, first)
                    },
                ));
            }
        }
    }
    found
}

/// The bodies of the inline modules (`mod name { … }`) in masked `code`, as the offsets of
/// their braces.
fn inline_modules(code: &str) -> Vec<(usize, usize)> {
    let mut bodies = Vec::new();
    for at in find_word(code, "mod") {
        let after = &code[at + 3..];
        let name_len = after
            .trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .count();
        let rest = after.trim_start()[name_len..].trim_start();
        if name_len == 0 || !rest.starts_with('{') {
            continue;
        }
        let open = code.len() - rest.len();
        let mut depth = 0;
        for (i, c) in code[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        bodies.push((open, open + i));
                        break;
                    }
                }
                _ => {}
            }
        }
    }
    bodies
}

/// The strongly connected components of the graph of `edges` (Tarjan's algorithm), each
/// sorted, in order of their first module.
fn components(edges: &Edges) -> Vec<Vec<String>> {
    struct Tarjan<'a> {
        next: BTreeMap<&'a str, Vec<&'a str>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<Vec<String>>,
    }
    impl<'a> Tarjan<'a> {
        fn visit(&mut self, v: &'a str) {
            let i = self.index.len();
            self.index.insert(v, i);
            self.low.insert(v, i);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.next.get(v).cloned().unwrap_or_default() {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.on_stack.contains(w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    component.push(w.to_owned());
                    if w == v {
                        break;
                    }
                }
                component.sort();
                self.found.push(component);
            }
        }
    }
    let mut next: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (from, to) in edges.keys() {
        next.entry(from.as_str()).or_default().push(to.as_str());
        next.entry(to.as_str()).or_default();
    }
    let nodes: Vec<&str> = next.keys().copied().collect();
    let mut tarjan = Tarjan {
        next,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in nodes {
        if !tarjan.index.contains_key(v) {
            tarjan.visit(v);
        }
    }
    tarjan.found.sort();
    tarjan.found
}

/// A shortest cycle through the first module of `component`, as the modules along it (the
/// first again at the end).
fn cycle(component: &[String], edges: &Edges) -> Vec<String> {
    let start = &component[0];
    let mut came_from: BTreeMap<&String, &String> = BTreeMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(v) = queue.pop_front() {
        for (_, to) in edges.keys().filter(|(from, to)| from == v && component.contains(to)) {
            if to == start {
                let mut path = Vec::new();
                let mut at = v;
                while at != start {
                    path.push(at.clone());
                    at = came_from[at];
                }
                path.push(start.clone());
                path.reverse();
                path.push(start.clone());
                return path;
            }
            if !came_from.contains_key(to) {
                came_from.insert(to, v);
                queue.push_back(to);
            }
        }
    }
    component.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(files: &[(&str, &str)], known: &[(&str, &str)]) -> Findings {
        let mut all = vec![
            (
                "cli/Cargo.toml".to_owned(),
                "[package]\nname = \"faasflow-cli\"\n".to_owned(),
            ),
            (
                "daemon/Cargo.toml".to_owned(),
                "[package]\nname = \"faasflow-daemon\"\n".to_owned(),
            ),
        ];
        all.extend(files.iter().map(|(p, t)| ((*p).to_owned(), (*t).to_owned())));
        let mut findings = Findings::default();
        check(&Workspace::from_files(all), known, &mut findings);
        findings
    }

    /// The cli of the brief: local -> services -> metrics -> local, each a different way.
    const CLI: [(&str, &str); 5] = [
        (
            "cli/src/main.rs",
            "mod local;\nmod metrics;\nmod services;\nuse crate::local::run;\n",
        ),
        ("cli/src/local.rs", "use crate::{files, services::Services};\n"),
        (
            "cli/src/services.rs",
            "fn f() {\n    let m = crate::metrics::scrape();\n}\n",
        ),
        ("cli/src/metrics.rs", "use super::local::Recorded;\n"),
        // `super` in an inline module is `files`: no edge to metrics (which would close a cycle).
        ("cli/src/files.rs", "mod inner {\n    use super::metrics;\n}\n"),
    ];

    #[test]
    fn a_cycle_is_named_with_a_reference_per_edge() {
        let f = run(&CLI, &[]);
        assert_eq!(
            f.failures,
            [
                "cli/src: the modules local, metrics, services use each other in a cycle \
              (local -> services -> metrics -> local): move what they share into a module of its own (or pass \
              it in), so that one of them no longer names the other\n    \
              local -> services: cli/src/local.rs:1\n    \
              metrics -> local: cli/src/metrics.rs:1\n    \
              services -> metrics: cli/src/services.rs:2"
            ]
        );
    }

    #[test]
    fn a_submodule_using_its_parent_is_no_cycle() {
        let f = run(
            &[
                ("daemon/src/lib.rs", "pub mod net;\npub mod runtime;\n"),
                (
                    "daemon/src/runtime.rs",
                    "mod cluster;\nuse crate::net::Peer;\npub struct Daemon;\n",
                ),
                (
                    "daemon/src/runtime/cluster.rs",
                    "use super::Daemon;\nuse crate::runtime::Daemon as D;\n",
                ),
                (
                    "daemon/src/net.rs",
                    "// crate::runtime::Daemon\nmacro_rules! m { () => { $crate::runtime::x() } }\n\
                  #[cfg(test)]\nmod tests {\n    use crate::runtime::Daemon;\n}\n",
                ),
            ],
            &[],
        );
        assert!(f.failures.is_empty(), "{f:?}");
    }

    #[test]
    fn a_known_cycle_is_a_note_until_it_is_broken() {
        let known = [("cli: local, metrics, services", "being untangled")];
        let f = run(&CLI, &known);
        assert!(f.failures.is_empty(), "{f:?}");
        assert_eq!(f.notes.len(), 1);
        let mut broken = CLI;
        broken[3].1 = "pub struct Recorded;\n";
        let f = run(&broken, &known);
        assert_eq!(
            f.failures,
            [
                "cycles: cli: local, metrics, services no longer violates the check: remove it from KNOWN in \
              xtask/src/tidy/cycles.rs"
            ]
        );
    }

    #[test]
    fn components_and_cycles() {
        let mut edges = Edges::new();
        for (a, b) in [("a", "b"), ("b", "a"), ("b", "c"), ("c", "d"), ("d", "c"), ("e", "a")] {
            edges.insert((a.into(), b.into()), String::new());
        }
        let c = components(&edges);
        assert_eq!(c, [vec!["a", "b"], vec!["c", "d"], vec!["e"]]);
        assert_eq!(cycle(&c[0], &edges), ["a", "b", "a"]);
    }
}
