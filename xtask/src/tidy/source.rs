//! The workspace as the checks read it: its Rust files with comments and literals blanked out,
//! where each file's test code starts, and its manifests.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, Result};

/// One Rust source file.
#[derive(Debug)]
pub(crate) struct Source {
    /// Relative to the workspace root, `/`-separated.
    pub(crate) path: String,
    /// The text with comments, string literals and char literals blanked out (same lines).
    pub(crate) code: String,
    /// The lines before the test code: up to the first `#[cfg(test)]` line (0 for a file that
    /// is a test module, such as `mod tests;` under `#[cfg(test)]`).
    pub(crate) non_test_lines: usize,
}

impl Source {
    /// The lines of non-test code, masked, with their 1-based numbers.
    pub(crate) fn code_lines(&self) -> impl Iterator<Item = (usize, &str)> {
        self.code
            .lines()
            .take(self.non_test_lines)
            .enumerate()
            .map(|(i, l)| (i + 1, l))
    }

    /// The non-test code, masked.
    pub(crate) fn non_test_code(&self) -> &str {
        let end = self
            .code
            .split_inclusive('\n')
            .take(self.non_test_lines)
            .map(str::len)
            .sum();
        &self.code[..end]
    }

    /// Whether the file is under `dir` (a `/`-separated prefix such as `core/src`).
    pub(crate) fn is_under(&self, dir: &str) -> bool {
        under(&self.path, dir)
    }
}

/// Whether `path` is `dir` or inside it.
pub(crate) fn under(path: &str, dir: &str) -> bool {
    path.strip_prefix(dir)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The workspace's Rust files and manifests.
#[derive(Debug)]
pub(crate) struct Workspace {
    pub(crate) sources: Vec<Source>,
    /// `Cargo.toml` files by path.
    pub(crate) manifests: BTreeMap<String, String>,
}

impl Workspace {
    /// Reads every `.rs` file and `Cargo.toml` under `root`, except in `target` directories
    /// and hidden ones.
    pub(crate) fn read(root: &Path) -> Result<Workspace> {
        let mut files = Vec::new();
        collect(root, root, &mut files)?;
        Ok(Workspace::from_files(files))
    }

    /// A workspace of the given (path, text) pairs.
    pub(crate) fn from_files(files: Vec<(String, String)>) -> Workspace {
        let mut manifests = BTreeMap::new();
        let mut code = Vec::new();
        for (path, text) in files {
            if path == "Cargo.toml" || path.ends_with("/Cargo.toml") {
                manifests.insert(path, text);
            } else if path.ends_with(".rs") {
                code.push((path, mask(&text)));
            }
        }
        let test_modules: BTreeSet<String> = code.iter().flat_map(|(p, c)| test_module_files(p, c)).collect();
        let sources = code
            .into_iter()
            .map(|(path, code)| {
                let non_test_lines = if test_modules.contains(&path) || is_test_file(&code) {
                    0
                } else {
                    test_part_start(&code)
                };
                Source {
                    path,
                    code,
                    non_test_lines,
                }
            })
            .collect();
        Workspace { sources, manifests }
    }

    /// The directories of the workspace's packages (those whose `Cargo.toml` has `[package]`).
    pub(crate) fn crates(&self) -> Vec<&str> {
        self.manifests
            .iter()
            .filter(|(_, text)| text.lines().any(|l| l.trim() == "[package]"))
            .map(|(path, _)| path.strip_suffix("Cargo.toml").unwrap_or("").trim_end_matches('/'))
            .collect()
    }

    /// The files under `dir`.
    pub(crate) fn under<'a>(&'a self, dir: &'a str) -> impl Iterator<Item = &'a Source> {
        self.sources.iter().filter(move |s| s.is_under(dir))
    }
}

fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, String)>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let path = entry.path();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            if name != "target" && !name.starts_with('.') {
                collect(root, &path, files)?;
            }
        } else if kind.is_file() && (name.ends_with(".rs") || name == "Cargo.toml") {
            let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
            let rel = path.strip_prefix(root).unwrap_or(&path);
            let rel: Vec<_> = rel.components().map(|c| c.as_os_str().to_string_lossy()).collect();
            files.push((rel.join("/"), text));
        }
    }
    Ok(())
}

/// Whether a masked line is an attribute that compiles what follows for tests only
/// (`#[cfg(test)]`, `#[cfg(all(test, …))]`).
fn is_cfg_test(line: &str) -> bool {
    let t = line.trim();
    t == "#[cfg(test)]" || t.starts_with("#[cfg(all(test,")
}

/// Whether a masked file says it is compiled for tests only (`#![cfg(test)]`).
fn is_test_file(code: &str) -> bool {
    code.lines().any(|l| l.trim() == "#![cfg(test)]")
}

/// The item a `#[cfg(test)]` line applies to: the next line that is not an attribute.
fn item_after(lines: &[&str], attr: usize) -> &'static str {
    let next = lines[attr + 1..]
        .iter()
        .map(|l| l.trim())
        .find(|l| !l.is_empty() && !l.starts_with("#["));
    match next {
        Some(l) if module_declared(l).is_some() => "mod;",
        _ => "other",
    }
}

/// The name of the module a masked line declares without a body (`mod name;`).
fn module_declared(line: &str) -> Option<&str> {
    let l = line.trim();
    let l = match l.strip_prefix("pub") {
        Some(rest) if rest.starts_with('(') => rest.split_once(')')?.1.trim_start(),
        Some(rest) => rest.trim_start(),
        None => l,
    };
    let name = l.strip_prefix("mod ")?.strip_suffix(';')?.trim();
    name.chars().all(|c| c.is_alphanumeric() || c == '_').then_some(name)
}

/// The line index where the test code of a masked file starts: its first `#[cfg(test)]` line
/// that is not on a `mod name;` (which makes that file a test module instead); the number of
/// lines when there is none. `mod tests` comes last, so everything after it is test code.
fn test_part_start(code: &str) -> usize {
    let lines: Vec<&str> = code.lines().collect();
    (0..lines.len())
        .find(|&i| is_cfg_test(lines[i]) && item_after(&lines, i) != "mod;")
        .unwrap_or(lines.len())
}

/// The files of the modules that `path` declares for tests only (`#[cfg(test)] mod name;`).
fn test_module_files(path: &str, code: &str) -> Vec<String> {
    let lines: Vec<&str> = code.lines().collect();
    let dir = children_dir(path);
    (0..lines.len())
        .filter(|&i| is_cfg_test(lines[i]) && item_after(&lines, i) == "mod;")
        .filter_map(|i| {
            let decl = lines[i + 1..].iter().find(|l| module_declared(l).is_some())?;
            let name = module_declared(decl)?;
            Some([format!("{dir}/{name}.rs"), format!("{dir}/{name}/mod.rs")])
        })
        .flatten()
        .collect()
}

/// The directory of the files of the modules that `path` declares: its own directory for
/// `lib.rs`, `main.rs` and `mod.rs`, else the directory named after it.
pub(crate) fn children_dir(path: &str) -> String {
    let (dir, file) = path.rsplit_once('/').unwrap_or(("", path));
    let stem = file.strip_suffix(".rs").unwrap_or(file);
    match stem {
        "lib" | "main" | "mod" => dir.to_owned(),
        _ if dir.is_empty() => stem.to_owned(),
        _ => format!("{dir}/{stem}"),
    }
}

/// `text` with the contents of comments, string literals (plain, byte, raw) and char literals
/// replaced by spaces, keeping every line break, so that a check reads only code.
pub(crate) fn mask(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let is_ident = |c: Option<&char>| c.is_some_and(|c| c.is_alphanumeric() || *c == '_');
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if c == 'r' && raw_string_at(&chars, i) && raw_prefix_ok(&chars, i, is_ident) {
            // r"…", r#"…"#: no escapes; ends at `"` and as many `#` as it opened with.
            let hashes = chars[i + 1..].iter().take_while(|&&h| h == '#').count();
            out.push('r');
            out.extend(std::iter::repeat_n('#', hashes));
            out.push('"');
            i += 2 + hashes;
            while i < chars.len() {
                if chars[i] == '"' && chars[i + 1..].iter().take(hashes).filter(|&&h| h == '#').count() == hashes {
                    out.push('"');
                    out.extend(std::iter::repeat_n('#', hashes));
                    i += 1 + hashes;
                    break;
                }
                out.push(blank(chars[i]));
                i += 1;
            }
        } else if c == '"' {
            out.push('"');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if let Some(&ch) = chars.get(i) {
                    out.push(blank(ch));
                }
                i += 1;
            }
            out.push('"');
            i += 1;
        } else if c == '\'' && char_literal_len(&chars, i).is_some() {
            let len = char_literal_len(&chars, i).unwrap_or(1);
            out.push('\'');
            out.extend(std::iter::repeat_n(' ', len - 2));
            out.push('\'');
            i += len;
        } else {
            // Code, or the quote of a lifetime or label.
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Whether a raw string (`r"` or `r#…"`) starts at `i`.
fn raw_string_at(chars: &[char], i: usize) -> bool {
    let hashes = chars[i + 1..].iter().take_while(|&&h| h == '#').count();
    chars.get(i + 1 + hashes) == Some(&'"')
}

/// Whether the `r` at `i` starts a literal rather than ending an identifier (`br"…"` and
/// `cr"…"` are literals too).
fn raw_prefix_ok(chars: &[char], i: usize, is_ident: impl Fn(Option<&char>) -> bool) -> bool {
    let before = i.checked_sub(1).and_then(|j| chars.get(j));
    match before {
        Some('b' | 'c') => !is_ident(i.checked_sub(2).and_then(|j| chars.get(j))),
        other => !is_ident(other),
    }
}

/// The length in chars of the char literal at `i` (`'a'`, `'\n'`, `'\u{1F600}'`), or `None`
/// when the quote starts a lifetime or a label.
fn char_literal_len(chars: &[char], i: usize) -> Option<usize> {
    match chars.get(i + 1)? {
        '\\' => {
            let close = chars[i + 3..].iter().take(10).position(|&c| c == '\'')?;
            Some(close + 4)
        }
        _ => (chars.get(i + 2) == Some(&'\'')).then_some(3),
    }
}

/// The byte offsets in `line` where `word` occurs as a whole: not inside a longer identifier
/// (a `word` ending in `!` or `::` may be followed by anything).
pub(crate) fn find_word(line: &str, word: &str) -> Vec<usize> {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    line.match_indices(word)
        .map(|(i, _)| i)
        .filter(|&i| {
            let before_ok = !line[..i].chars().next_back().is_some_and(ident);
            let after_ok = !word.ends_with(ident) || !line[i + word.len()..].chars().next().is_some_and(ident);
            before_ok && after_ok
        })
        .collect()
}

/// The paths a use tree names: `std::{fs, time::{Instant, SystemTime}}` names `std::fs`,
/// `std::time::Instant` and `std::time::SystemTime` (a rename `as x` is dropped).
pub(crate) fn expand_use_tree(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        let path = tree.split(" as ").next().unwrap_or(tree);
        return vec![path.split_whitespace().collect()];
    };
    let prefix: String = tree[..open].split_whitespace().collect();
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    split_top_level(inner, ',')
        .into_iter()
        .filter(|part| !part.trim().is_empty())
        .flat_map(|part| {
            expand_use_tree(part)
                .into_iter()
                .map(|p| format!("{prefix}{p}"))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The use tree that starts at `at` in `code` (a path, or a path and a `{…}` group), up to
/// the `;`, `,` or `)` that ends it.
pub(crate) fn use_tree_at(code: &str, at: usize) -> &str {
    let mut depth = 0usize;
    for (i, c) in code[at..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth > 0 => {
                depth -= 1;
                if depth == 0 {
                    return &code[at..=at + i];
                }
            }
            _ if depth == 0 && !(c.is_alphanumeric() || c == '_' || c == ':' || c == '*') => {
                return &code[at..at + i];
            }
            _ => {}
        }
    }
    &code[at..]
}

/// `text` split at each `sep` outside brackets (`<>`, `()`, `[]`, `{}`); the `>` of `->` and
/// `=>` closes nothing.
pub(crate) fn split_top_level(text: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    let mut prev = ' ';
    for (i, c) in text.char_indices() {
        match c {
            '<' | '(' | '[' | '{' => depth += 1,
            '>' if prev == '-' || prev == '=' => {}
            '>' | ')' | ']' | '}' => depth -= 1,
            c if c == sep && depth == 0 => {
                parts.push(&text[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
        prev = c;
    }
    parts.push(&text[start..]);
    parts
}

/// The 1-based line of byte offset `at` in `text`.
pub(crate) fn line_of(text: &str, at: usize) -> usize {
    text[..at].matches('\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_and_literals_are_blanked_on_the_same_lines() {
        let text = "let a = \"pb::X\\\" //\"; // tokio\n/* std::fs /* nested */ */ let c = '\"';\n\
                    let r = r#\"Result<(), String>\"#; let l: &'a str = b\"x\"; 'outer: loop {}\n";
        let code = mask(text);
        assert_eq!(code.lines().count(), 3);
        for gone in ["pb::", "tokio", "std::fs", "Result<", "x\""] {
            assert!(!code.contains(gone), "{gone} in {code}");
        }
        assert!(
            code.contains("let l: &'a str") && code.contains("'outer: loop {}"),
            "{code}"
        );
        assert!(code.lines().nth(1).unwrap().ends_with("let c = ' ';"), "{code}");
    }

    #[test]
    fn test_code_starts_at_cfg_test_and_test_modules_are_test_files() {
        let ws = Workspace::from_files(vec![
            (
                "c/src/lib.rs".into(),
                "mod a;\n#[cfg(all(test, loom))]\nmod loom_tests;\nfn f() {}\n#[cfg(test)]\nmod tests {\n}\n".into(),
            ),
            ("c/src/loom_tests.rs".into(), "fn t() {}\n".into()),
            ("c/src/a.rs".into(), "#[cfg(not(test))]\nfn x() {}\n".into()),
            ("c/src/b.rs".into(), "#![cfg(test)]\nfn y() {}\n".into()),
        ]);
        let lines = |p: &str| ws.sources.iter().find(|s| s.path == p).unwrap().non_test_lines;
        assert_eq!(lines("c/src/lib.rs"), 4);
        assert_eq!(lines("c/src/loom_tests.rs"), 0);
        assert_eq!(lines("c/src/a.rs"), 2);
        assert_eq!(lines("c/src/b.rs"), 0);
        let lib = ws.sources.iter().find(|s| s.path == "c/src/lib.rs").unwrap();
        assert_eq!(lib.code_lines().last(), Some((4, "fn f() {}")));
        assert!(lib.non_test_code().ends_with("fn f() {}\n"));
    }

    #[test]
    fn use_trees_are_expanded() {
        assert_eq!(
            expand_use_tree("std::{fs, time::{Instant, SystemTime as T}, self}"),
            ["std::fs", "std::time::Instant", "std::time::SystemTime", "std::self"]
        );
        assert_eq!(expand_use_tree("crate::engine::Engine"), ["crate::engine::Engine"]);
        let code = "use crate::{a, b::{C, D}};\nfn f(x: crate::e::F) {}";
        assert_eq!(use_tree_at(code, 4), "crate::{a, b::{C, D}}");
        assert_eq!(use_tree_at(code, code.find("crate::e").unwrap()), "crate::e::F");
        assert_eq!(
            split_top_level("(A, B), Fn(u8) -> C<D, E>, F", ','),
            ["(A, B)", " Fn(u8) -> C<D, E>", " F"]
        );
    }

    #[test]
    fn words_are_found_whole() {
        assert_eq!(find_word("tokio::spawn; tokio_util; mytokio", "tokio"), [0]);
        assert_eq!(find_word("eprintln!(); println!()", "println!"), [13]);
        assert_eq!(find_word("x.pb::A; pb::B; cpb::C", "pb::"), [2, 9]);
    }
}
