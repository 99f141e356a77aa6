//! No `Result<_, String>` in libraries: an error the caller can only print cannot be told
//! apart, matched or wrapped; the libraries return typed errors (`thiserror` enums).

use super::source::{Workspace, find_word, line_of, split_top_level};
use super::{Findings, Violations, library_sources};

/// Library files that still return or pass `Result<_, String>`, and why. This list must
/// shrink to empty.
pub(crate) const KNOWN: &[(&str, &str)] = &[];

pub(crate) fn check(ws: &Workspace, known: &[(&str, &str)], findings: &mut Findings) {
    let mut violations = Violations::new();
    for source in library_sources(ws) {
        let code = source.non_test_code();
        for at in string_errors(code) {
            violations.entry(source.path.clone()).or_default().push(format!(
                "{}:{}: `Result<_, String>` in a library: give the error a type (a `thiserror` enum naming \
                 what went wrong) so that callers can tell the cases apart",
                source.path,
                line_of(code, at)
            ));
        }
    }
    findings.add("errors", violations, known);
}

/// The offsets in masked `code` of each `Result<T, String>` (any `T`, nested generics
/// included; also `io::Result`-style paths and `std::string::String`).
fn string_errors(code: &str) -> Vec<usize> {
    find_word(code, "Result<")
        .into_iter()
        .filter(|&at| {
            let Some(args) = generic_args(&code[at + "Result".len()..]) else {
                return false;
            };
            // A trailing comma leaves an empty last part.
            let args: Vec<&str> = split_top_level(args, ',')
                .into_iter()
                .filter(|a| !a.trim().is_empty())
                .collect();
            let error = args.get(1).map(|e| e.split_whitespace().collect::<String>());
            args.len() == 2 && error.is_some_and(|e| e.rsplit("::").next() == Some("String"))
        })
        .collect()
}

/// The text between the `<` that `text` starts with and its matching `>`.
fn generic_args(text: &str) -> Option<&str> {
    let mut depth = 0i32;
    let mut prev = ' ';
    for (i, c) in text.char_indices() {
        match c {
            '<' | '(' | '[' => depth += 1,
            '>' if prev == '-' || prev == '=' => {}
            '>' | ')' | ']' => {
                depth -= 1;
                if depth == 0 {
                    return Some(&text[1..i]);
                }
            }
            ';' | '{' | '}' => return None,
            _ => {}
        }
        prev = c;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(files: &[(&str, &str)], known: &[(&str, &str)]) -> Findings {
        crate::tidy::run_check(check, files, known)
    }

    #[test]
    fn string_errors_are_found_with_nested_generics() {
        let code = "fn a() -> Result<(), String> {}\nfn b() -> Result<Vec<(String, Box<dyn Fn() -> u8>)>, String> {}\n\
                    type C = Arc<dyn Fn() -> Result<String, std::string::String>>;\n\
                    fn d() -> Result<\n    HashMap<String, u8>,\n    String,\n> {}\n\
                    fn e() -> Result<String, Error> {}\nfn f() -> io::Result<String> {}\n\
                    fn g() -> MyResult<u8, String> {}\n";
        let lines: Vec<usize> = string_errors(code).into_iter().map(|at| line_of(code, at)).collect();
        assert_eq!(lines, [1, 2, 3, 4]);
    }

    #[test]
    fn a_string_error_in_a_library_fails_and_tests_may_use_them() {
        let f = run(
            &[
                (
                    "daemon/src/pool.rs",
                    "pub fn list() -> Result<Vec<String>, String> {\n    todo!()\n}\n",
                ),
                ("xtask/src/main.rs", "fn f() -> Result<(), String> { Ok(()) }\n"),
                (
                    "core/src/engine.rs",
                    "fn f() -> Result<(), Error> { Ok(()) }\n#[cfg(test)]\nmod tests {\n    \
                     fn t() -> Result<(), String> { Ok(()) }\n}\n",
                ),
            ],
            &[],
        );
        assert_eq!(f.failures.len(), 1, "{f:?}");
        assert!(
            f.failures[0].starts_with("daemon/src/pool.rs:1: `Result<_, String>` in a library"),
            "{f:?}"
        );
    }

    #[test]
    fn an_exempt_file_is_a_note_and_a_clean_one_must_leave_the_list() {
        let known = [("daemon/src/pool.rs", "errors from the pool's threads")];
        let f = run(&[("daemon/src/pool.rs", "fn f() -> Result<u8, String> {}\n")], &known);
        assert!(f.failures.is_empty() && f.notes.len() == 1, "{f:?}");
        let f = run(
            &[("daemon/src/pool.rs", "fn f() -> Result<u8, PoolError> {}\n")],
            &known,
        );
        assert_eq!(f.failures.len(), 1, "{f:?}");
    }
}
