//! File size: no source file (`src/` of every crate) has more than [`LIMIT`] lines of
//! non-test code; a longer one holds more than one concern and is split into modules.

use super::source::Workspace;
use super::{Findings, Violations};

/// The most lines of non-test code a source file may have.
const LIMIT: usize = 1000;

/// Files over the limit, and why they are not split yet. This list must shrink to empty.
pub(crate) const KNOWN: &[(&str, &str)] = &[(
    "core/src/engine.rs",
    "the invocation engine's state machine with its events and actions",
)];

pub(crate) fn check(ws: &Workspace, known: &[(&str, &str)], findings: &mut Findings) {
    let mut violations = Violations::new();
    for krate in ws.crates() {
        let src = if krate.is_empty() {
            "src".to_owned()
        } else {
            format!("{krate}/src")
        };
        for source in ws.under(&src).filter(|s| s.non_test_lines > LIMIT) {
            violations.entry(source.path.clone()).or_default().push(format!(
                "{}: {} lines of non-test code (at most {LIMIT}): split it into modules, one concern each",
                source.path, source.non_test_lines
            ));
        }
    }
    findings.add("size", violations, known);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(files: &[(&str, String)], known: &[(&str, &str)]) -> Findings {
        let mut all = vec![("core/Cargo.toml".to_owned(), "[package]\nname = \"c\"\n".to_owned())];
        all.extend(files.iter().map(|(p, t)| ((*p).to_owned(), t.clone())));
        let mut findings = Findings::default();
        check(&Workspace::from_files(all), known, &mut findings);
        findings
    }

    fn lines(n: usize) -> String {
        "fn f() {}\n".repeat(n)
    }

    #[test]
    fn a_file_over_the_limit_fails_and_tests_do_not_count() {
        let with_tests = format!("{}#[cfg(test)]\nmod tests {{\n{}}}\n", lines(LIMIT), lines(500));
        let f = run(
            &[
                ("core/src/engine.rs", lines(LIMIT + 1)),
                ("core/src/dag.rs", with_tests),
                ("core/tests/engine.rs", lines(3000)),
                ("docs/src/x.rs", lines(3000)),
            ],
            &[],
        );
        assert_eq!(
            f.failures,
            ["core/src/engine.rs: 1001 lines of non-test code (at most 1000): split it into modules, one concern each"]
        );
    }

    #[test]
    fn an_exempt_file_is_a_note_and_a_short_one_must_leave_the_list() {
        let known = [("core/src/engine.rs", "being split")];
        let f = run(&[("core/src/engine.rs", lines(LIMIT + 1))], &known);
        assert!(f.failures.is_empty() && f.notes.len() == 1, "{f:?}");
        let f = run(&[("core/src/engine.rs", lines(LIMIT))], &known);
        assert_eq!(f.failures.len(), 1, "{f:?}");
    }
}
