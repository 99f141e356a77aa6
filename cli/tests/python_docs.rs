//! The examples of docs/python.md, run as they are shown: every block titled with a file name
//! (```` ```python title=words.py ````) is written to a directory, and every `faasflow run` of a
//! `console` block runs there (with the interpreter `cargo xtask python` prepares) and must
//! print the output the block shows.

use std::path::Path;
use std::process::Command;

mod support;

/// The blocks of a Markdown text: (info string, body).
fn blocks(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let Some(info) = line.strip_prefix("```") else { continue };
        let mut body = String::new();
        for l in lines.by_ref() {
            if l.starts_with("```") {
                break;
            }
            body.push_str(l);
            body.push('\n');
        }
        out.push((info.trim().to_owned(), body));
    }
    out
}

/// Splits a shell command line: words, and '…' or "…" quoted ones.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut quote = None;
    let mut any = false;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                any = true;
            }
            (None, c) if c.is_whitespace() => {
                if any || !word.is_empty() {
                    out.push(std::mem::take(&mut word));
                }
                any = false;
            }
            (None, c) => word.push(c),
        }
    }
    if any || !word.is_empty() {
        out.push(word);
    }
    out
}

#[test]
fn the_examples_of_docs_python_md_run_and_print_what_it_shows() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let doc = std::fs::read_to_string(repo.join("docs/python.md")).expect("docs/python.md");
    let dir = std::env::temp_dir().join(format!("faasflow-python-docs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a directory");
    // The FaaSFlow example runs the repository's fixtures.
    std::os::unix::fs::symlink(repo.join("tests"), dir.join("tests")).expect("a link");
    let python = support::python();
    let mut files = 0;
    let mut runs = 0;
    for (info, body) in blocks(&doc) {
        if let Some(name) = info.split_whitespace().find_map(|w| w.strip_prefix("title=")) {
            std::fs::write(dir.join(name), &body).expect("written");
            files += 1;
            continue;
        }
        if info != "console" {
            continue;
        }
        let mut lines = body.lines();
        let command = lines
            .next()
            .and_then(|l| l.strip_prefix("$ "))
            .expect("a `$ ` command line");
        let expected: String = lines.collect::<Vec<_>>().join("\n");
        let args = words(command);
        assert_eq!(args[0], "faasflow", "{command}");
        let out = Command::new(env!("CARGO_BIN_EXE_faasflow"))
            .args(&args[1..])
            .arg("--python")
            .arg(&python)
            .current_dir(&dir)
            .output()
            .expect("faasflow runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "`{command}` failed: {}\n{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The output, before the report's breakdown.
        let printed: String = stdout
            .lines()
            .take_while(|l| !l.starts_with("invocation "))
            .collect::<Vec<_>>()
            .join("\n");
        let printed: serde_json::Value =
            serde_json::from_str(&printed).unwrap_or_else(|e| panic!("`{command}` printed no JSON ({e}): {stdout}"));
        let shown: serde_json::Value = serde_json::from_str(&expected).expect("the doc shows JSON");
        assert_eq!(
            printed, shown,
            "`{command}` printed another output than docs/python.md shows"
        );
        runs += 1;
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        files >= 4 && runs >= 3,
        "{files} files and {runs} runs found in docs/python.md"
    );
}

#[test]
fn shell_words_are_split_as_a_shell_would() {
    assert_eq!(
        words(r#"faasflow run a.yaml --input '{"n": 1}'  "b c" ''"#),
        ["faasflow", "run", "a.yaml", "--input", r#"{"n": 1}"#, "b c", ""]
    );
}
