//! Core is pure: faasflow-core reads no clock, does no I/O, sleeps on nothing and knows no
//! runtime or RPC (time is passed in, drivers do the I/O), and depends only on the crates of
//! [`CORE_DEPENDENCIES`]. The planner likewise knows no runtime or RPC, and only its `load.rs`
//! reads files.

use super::source::{Source, Workspace, expand_use_tree, find_word, line_of, use_tree_at};
use super::{Findings, Violations};

/// What core's code must not use.
const CORE_FORBIDDEN: [&str; 10] = [
    "Instant::now",
    "SystemTime::now",
    "std::fs",
    "std::net",
    "std::process",
    "std::thread::sleep",
    "tokio",
    "tonic",
    "redis",
    "faasflow_proto",
];

/// The only crates core's `[dependencies]` may name.
const CORE_DEPENDENCIES: [&str; 5] = ["thiserror", "serde", "serde_json", "petgraph", "cel"];

/// What the planner's code and `[dependencies]` must not name (a runtime, RPC, Redis, proto).
const PLANNER_FORBIDDEN: [&str; 4] = ["tokio", "tonic", "redis", "faasflow_proto"];

/// The one file of the planner that reads files.
const PLANNER_LOADER: &str = "planner/src/load.rs";

pub(crate) fn check(ws: &Workspace, findings: &mut Findings) {
    let mut violations = Violations::new();
    let mut add = |key: &str, message: String| violations.entry(key.to_owned()).or_default().push(message);
    for source in ws.under("core/src") {
        for (n, what) in uses(source, &CORE_FORBIDDEN) {
            add(
                &source.path,
                format!(
                    "{}:{n}: `{what}` in faasflow-core: core does no I/O and reads no clock; take the value \
                     (`now`, bytes, a result) as an argument and let the driver in daemon/ or control/ do it",
                    source.path
                ),
            );
        }
    }
    for (n, name) in dependencies(ws, "core/Cargo.toml") {
        if !CORE_DEPENDENCIES.contains(&name.replace('-', "_").as_str()) {
            add(
                "core/Cargo.toml",
                format!(
                    "core/Cargo.toml:{n}: dependency `{name}`: faasflow-core depends only on {}; put what \
                     needs `{name}` in a crate that drives core",
                    CORE_DEPENDENCIES.join(", ")
                ),
            );
        }
    }
    for source in ws.under("planner/src") {
        let mut forbidden = PLANNER_FORBIDDEN.to_vec();
        if source.path != PLANNER_LOADER {
            forbidden.push("std::fs");
        }
        for (n, what) in uses(source, &forbidden) {
            let advice = if what == "std::fs" {
                "only planner/src/load.rs reads files; take the text or bytes as an argument"
            } else {
                "the planner is a library of pure functions; the services that use it live in control/"
            };
            add(
                &source.path,
                format!("{}:{n}: `{what}` in the planner: {advice}", source.path),
            );
        }
    }
    for (n, name) in dependencies(ws, "planner/Cargo.toml") {
        if PLANNER_FORBIDDEN.contains(&name.replace('-', "_").as_str()) {
            add(
                "planner/Cargo.toml",
                format!(
                    "planner/Cargo.toml:{n}: dependency `{name}`: the planner depends on no runtime, RPC, \
                     Redis or proto crate"
                ),
            );
        }
    }
    findings.add("purity", violations, &[]);
}

/// Where the non-test code of `source` names one of `forbidden`, as (line, what): written out
/// (`std::fs::read`, `Instant::now()`) or through a grouped import (`use std::{fs, …}`).
fn uses<'a>(source: &Source, forbidden: &[&'a str]) -> Vec<(usize, &'a str)> {
    let mut found = Vec::new();
    for (n, line) in source.code_lines() {
        if let Some(what) = forbidden.iter().find(|f| !find_word(line, f).is_empty()) {
            found.push((n, *what));
        }
    }
    let code = source.non_test_code();
    for at in find_word(code, "std::{") {
        for path in expand_use_tree(use_tree_at(code, at)) {
            let named = forbidden
                .iter()
                .find(|f| path == **f || path.starts_with(&format!("{f}::")));
            if let Some(what) = named {
                found.push((line_of(code, at), *what));
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

/// The crates a manifest's `[dependencies]` name (also `[target.….dependencies]` and
/// `[dependencies.name]` tables), with their lines; not dev- or build-dependencies.
fn dependencies(ws: &Workspace, manifest: &str) -> Vec<(usize, String)> {
    let Some(text) = ws.manifests.get(manifest) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    let mut in_dependencies = false;
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let header = header.trim();
            in_dependencies = header == "dependencies" || header.ends_with(".dependencies");
            if let Some(name) = header.strip_prefix("dependencies.") {
                found.push((i + 1, name.trim().to_owned()));
            }
            continue;
        }
        if in_dependencies && let Some((key, _)) = line.split_once('=') {
            let name = key.split('.').next().unwrap_or(key).trim().trim_matches('"');
            found.push((i + 1, name.to_owned()));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const CORE_TOML: &str = "[package]\nname = \"faasflow-core\"\n\n[dependencies]\nthiserror.workspace = true\n\
                             serde = { workspace = true }\n\n[dev-dependencies]\nproptest.workspace = true\n";
    const PLANNER_TOML: &str =
        "[package]\nname = \"faasflow-planner\"\n\n[dependencies]\nfaasflow-core.workspace = true\n";

    fn run(files: &[(&str, &str)]) -> Findings {
        let mut all = vec![
            ("core/Cargo.toml".to_owned(), CORE_TOML.to_owned()),
            ("planner/Cargo.toml".to_owned(), PLANNER_TOML.to_owned()),
        ];
        all.retain(|(p, _)| !files.iter().any(|(q, _)| q == p));
        all.extend(files.iter().map(|(p, t)| ((*p).to_owned(), (*t).to_owned())));
        let mut findings = Findings::default();
        check(&Workspace::from_files(all), &mut findings);
        findings
    }

    #[test]
    fn pure_core_and_planner_pass() {
        let f = run(&[
            (
                "core/src/engine.rs",
                "//! No std::fs, no Instant::now here.\nuse std::time::Duration;\n\
                 pub fn handle(now: Duration) {}\n\
                 #[cfg(test)]\nmod tests {\n    fn t() { std::time::Instant::now(); }\n}\n",
            ),
            ("planner/src/load.rs", "pub fn load(p: &str) { std::fs::read(p); }\n"),
            ("planner/src/wdl.rs", "use std::{collections::BTreeMap, fmt};\n"),
        ]);
        assert!(f.failures.is_empty(), "{f:?}");
    }

    #[test]
    fn a_clock_io_or_runtime_in_core_fails() {
        let f = run(&[
            (
                "core/src/engine.rs",
                "fn f() {\n    let t = std::time::Instant::now();\n}\n",
            ),
            (
                "core/src/trace.rs",
                "use std::{\n    fs,\n    time::{Duration, SystemTime},\n};\n",
            ),
            ("core/src/io.rs", "async fn f() { tokio::time::sleep(d).await; }\n"),
        ]);
        let starts = [
            "core/src/engine.rs:2: `Instant::now` in faasflow-core",
            "core/src/io.rs:1: `tokio` in faasflow-core",
            "core/src/trace.rs:1: `std::fs` in faasflow-core",
        ];
        assert_eq!(f.failures.len(), starts.len(), "{f:?}");
        for (failure, start) in f.failures.iter().zip(starts) {
            assert!(failure.starts_with(start), "{failure}");
        }
    }

    #[test]
    fn a_dependency_outside_the_list_fails() {
        let toml = format!("{CORE_TOML}\n[target.'cfg(unix)'.dependencies]\nlibc = \"0.2\"\n\n[dependencies.tokio]\n");
        let f = run(&[("core/Cargo.toml", &toml)]);
        assert_eq!(f.failures.len(), 2, "{f:?}");
        assert!(
            f.failures[0].starts_with("core/Cargo.toml:12: dependency `libc`"),
            "{f:?}"
        );
        assert!(
            f.failures[1].starts_with("core/Cargo.toml:14: dependency `tokio`"),
            "{f:?}"
        );
    }

    #[test]
    fn the_planner_fails_on_a_runtime_or_files_outside_load_rs() {
        let toml = format!("{PLANNER_TOML}tokio = \"1\"\n");
        let f = run(&[
            ("planner/Cargo.toml", &toml),
            (
                "planner/src/compile.rs",
                "fn f() { let _ = std::fs::read_to_string(\"x\"); }\n",
            ),
            ("planner/src/partition.rs", "use tonic::Status;\n"),
        ]);
        let starts = [
            "planner/Cargo.toml:6: dependency `tokio`",
            "planner/src/compile.rs:1: `std::fs` in the planner: only planner/src/load.rs reads files",
            "planner/src/partition.rs:1: `tonic` in the planner",
        ];
        assert_eq!(f.failures.len(), starts.len(), "{f:?}");
        for (failure, start) in f.failures.iter().zip(starts) {
            assert!(failure.starts_with(start), "{failure}");
        }
    }
}
