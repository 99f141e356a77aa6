//! `cargo xtask tidy`, also the first step of `cargo xtask ci`: checks that read the workspace's
//! source text (no build) and fail naming `file:line` and what to do.
//!
//! - [`proto`]: the generated proto types stay in proto/, rpc/ and the two server adapters.
//! - [`purity`]: faasflow-core does no I/O, reads no clock and depends on no runtime; the
//!   planner depends on no runtime and reads files only in `load.rs`.
//! - [`printing`]: libraries print nothing (`println!`, `eprintln!`, `print!`, `eprint!`, `dbg!`).
//! - [`errors`]: libraries return no `Result<_, String>`.
//! - [`size`]: no source file has more than 1,000 lines of non-test code.
//! - [`cycles`]: the top-level modules of a crate do not use each other in a cycle.
//!
//! Test code is exempt: tests/, benches/ and fuzz/, and in `src/` everything from a file's
//! first `#[cfg(test)]` line on (`mod tests` comes last), and files declared as test modules
//! (`#[cfg(test)] mod name;`). Comments and string literals are not read.
//!
//! A check that the code does not pass yet lists its exemptions in its own `KNOWN` (what is
//! exempt, and why); each exemption is printed as a note, and one that no longer violates the
//! check fails it, so that a list only shrinks.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Result, bail};

mod cycles;
mod errors;
mod printing;
mod proto;
mod purity;
mod size;
mod source;

use source::{Source, Workspace};

/// `cargo xtask tidy`: runs every check over the workspace at `root`; fails listing every
/// problem.
pub(crate) fn tidy(root: &Path) -> Result<()> {
    eprintln!("==> tidy");
    let ws = Workspace::read(root)?;
    let findings = check(&ws);
    if !findings.notes.is_empty() {
        eprintln!("    exempt until fixed (each check's KNOWN list must shrink to empty):");
    }
    for note in &findings.notes {
        eprintln!("    note: {note}");
    }
    if findings.failures.is_empty() {
        eprintln!("    tidy: ok ({} Rust files)", ws.sources.len());
        return Ok(());
    }
    for failure in &findings.failures {
        eprintln!("error: {failure}");
    }
    bail!("tidy: {} problems (listed above)", findings.failures.len())
}

/// Every check over `ws`.
fn check(ws: &Workspace) -> Findings {
    let mut findings = Findings::default();
    proto::check(ws, proto::KNOWN, &mut findings);
    purity::check(ws, &mut findings);
    printing::check(ws, printing::KNOWN, &mut findings);
    errors::check(ws, errors::KNOWN, &mut findings);
    size::check(ws, size::KNOWN, &mut findings);
    cycles::check(ws, cycles::KNOWN, &mut findings);
    findings
}

/// What the checks found: failures, and notes (the exemptions still in use).
#[derive(Debug, Default)]
struct Findings {
    failures: Vec<String>,
    notes: Vec<String>,
}

/// A check's violations, by what an exemption names (a file, or a cycle), each a message.
type Violations = BTreeMap<String, Vec<String>>;

impl Findings {
    /// Adds the `violations` of `check` (the name of its module). Those of an entry of
    /// `known` become one note; the others are failures; an entry of `known` without
    /// violations is a failure too (the exemption is no longer needed: remove it).
    fn add(&mut self, check: &str, violations: Violations, known: &[(&str, &str)]) {
        for (key, why) in known {
            match violations.get(*key) {
                Some(found) => self
                    .notes
                    .push(format!("{check}: {key} ({} found): {why}", found.len())),
                None => self.failures.push(format!(
                    "{check}: {key} no longer violates the check: remove it from KNOWN in xtask/src/tidy/{check}.rs"
                )),
            }
        }
        for (key, found) in violations {
            if !known.iter().any(|(k, _)| *k == key) {
                self.failures.extend(found);
            }
        }
    }
}

/// Each code line of `sources` that names one of `words` (as a word), as a violation of its
/// file: `message(path, line number, word)`.
fn lines_naming<'a>(
    sources: impl Iterator<Item = &'a Source>,
    words: &[&str],
    message: impl Fn(&str, usize, &str) -> String,
) -> Violations {
    let mut violations = Violations::new();
    for source in sources {
        for (n, line) in source.code_lines() {
            if let Some(w) = words.iter().find(|w| !source::find_word(line, w).is_empty()) {
                violations
                    .entry(source.path.clone())
                    .or_default()
                    .push(message(&source.path, n, w));
            }
        }
    }
    violations
}

/// The library crates, whose code returns what it has to say instead of printing it.
const LIBRARIES: [&str; 10] = [
    "core", "planner", "rpc", "remote", "control", "daemon", "shm", "sdk", "ebpf", "proto",
];

/// The non-test sources of the library crates, and of the CLI's modules (not its `main.rs`,
/// which prints what they return).
fn library_sources(ws: &Workspace) -> impl Iterator<Item = &Source> {
    ws.sources.iter().filter(|s| {
        let library = LIBRARIES.iter().any(|c| s.is_under(&format!("{c}/src")));
        library || (s.is_under("cli/src") && s.path != "cli/src/main.rs")
    })
}

/// What `check` finds in a tree of `files` (path, text) with the exemptions `known`: for the
/// checks' tests.
#[cfg(test)]
fn run_check(
    check: fn(&Workspace, &[(&str, &str)], &mut Findings),
    files: &[(&str, &str)],
    known: &[(&str, &str)],
) -> Findings {
    let ws = Workspace::from_files(files.iter().map(|(p, t)| ((*p).into(), (*t).into())).collect());
    let mut findings = Findings::default();
    check(&ws, known, &mut findings);
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn violations(entries: &[(&str, &str)]) -> Violations {
        let mut v = Violations::new();
        for (key, message) in entries {
            v.entry((*key).to_owned()).or_default().push((*message).to_owned());
        }
        v
    }

    #[test]
    fn an_exemption_is_a_note_until_it_is_stale() {
        let mut f = Findings::default();
        let known = [("a.rs", "being split"), ("b.rs", "fixed since")];
        f.add(
            "size",
            violations(&[("a.rs", "a.rs:1: x"), ("c.rs", "c.rs:2: y")]),
            &known,
        );
        assert_eq!(f.failures.len(), 2, "{f:?}");
        assert_eq!(f.failures[1], "c.rs:2: y");
        assert_eq!(
            f.failures[0],
            "size: b.rs no longer violates the check: remove it from KNOWN in xtask/src/tidy/size.rs"
        );
        assert_eq!(f.notes, ["size: a.rs (1 found): being split"]);
    }
}
