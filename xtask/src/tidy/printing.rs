//! No printing in libraries: the library crates and the CLI's modules return what they have to
//! say (a value, a typed error, a report) and the binaries print it; a library that prints
//! writes into its caller's output without asking.

use super::source::Workspace;
use super::{Findings, library_sources, lines_naming};

/// Library files that still print, and why. This list must shrink to empty.
pub(crate) const KNOWN: &[(&str, &str)] = &[(
    "sdk/src/program.rs",
    "the `main` of every pack (its `main.rs` only calls `serve`): answers `--list` and `--help` on stdout and \
     says why it exits on stderr",
)];

/// The macros that print.
const MACROS: [&str; 5] = ["println!", "eprintln!", "print!", "eprint!", "dbg!"];

pub(crate) fn check(ws: &Workspace, known: &[(&str, &str)], findings: &mut Findings) {
    let violations = lines_naming(library_sources(ws), &MACROS, |path, n, m| {
        format!(
            "{path}:{n}: `{m}` in a library: return the text (or a typed error) to the caller and let the binary print it"
        )
    });
    findings.add("printing", violations, known);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(files: &[(&str, &str)], known: &[(&str, &str)]) -> Findings {
        crate::tidy::run_check(check, files, known)
    }

    #[test]
    fn printing_in_a_library_fails() {
        let f = run(
            &[
                ("daemon/src/net.rs", "fn f() {\n    eprintln!(\"peer lost\");\n}\n"),
                ("cli/src/run.rs", "fn f() { print!(\"x\"); }\n"),
                ("core/src/dag.rs", "fn f(x: u8) -> u8 { dbg!(x) }\n"),
            ],
            &[],
        );
        let starts = [
            "cli/src/run.rs:1: `print!` in a library",
            "core/src/dag.rs:1: `dbg!` in a library",
            "daemon/src/net.rs:2: `eprintln!` in a library",
        ];
        assert_eq!(f.failures.len(), starts.len(), "{f:?}");
        for (failure, start) in f.failures.iter().zip(starts) {
            assert!(failure.starts_with(start), "{failure}");
        }
    }

    #[test]
    fn binaries_tests_and_text_may_print() {
        let f = run(
            &[
                ("cli/src/main.rs", "fn main() { println!(\"hi\"); }\n"),
                ("xtask/src/main.rs", "fn main() { eprintln!(\"hi\"); }\n"),
                ("daemon/tests/e2e.rs", "fn t() { println!(\"hi\"); }\n"),
                (
                    "daemon/src/net.rs",
                    "/// Never `println!`.\nfn f() -> &'static str { \"eprintln!\" }\n\
                     #[cfg(test)]\nmod tests {\n    fn t() { println!(\"hi\"); }\n}\n",
                ),
            ],
            &[],
        );
        assert!(f.failures.is_empty(), "{f:?}");
    }

    #[test]
    fn an_exempt_file_is_a_note_and_a_clean_one_must_leave_the_list() {
        let known = [("daemon/src/net.rs", "logs peers")];
        let f = run(&[("daemon/src/net.rs", "fn f() { eprintln!(\"x\"); }\n")], &known);
        assert!(f.failures.is_empty() && f.notes.len() == 1, "{f:?}");
        let f = run(&[("daemon/src/net.rs", "fn f() {}\n")], &known);
        assert_eq!(f.failures.len(), 1, "{f:?}");
    }
}
