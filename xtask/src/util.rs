//! Helpers every task shares: the project root, cargo, running a command, the machine's
//! description, and filling the Markdown templates of `xtask/templates/`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

/// The workspace's root directory (xtask's parent).
pub(crate) fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_owned()
}

/// Cargo's target directory: `CARGO_TARGET_DIR` (relative to the project root) or `target/`.
pub(crate) fn cargo_target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root.join(dir),
        None => root.join("target"),
    }
}

/// The cargo that runs xtask (`CARGO`), or the one on PATH.
pub(crate) fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// Runs `cmd`, saying what runs and how long it took; fails when it fails.
pub(crate) fn run(what: &str, cmd: &mut Command) -> Result<()> {
    eprintln!("==> {what}");
    let start = Instant::now();
    let status = cmd.status().with_context(|| format!("cannot start: {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    eprintln!("    {what}: ok in {:.1}s", start.elapsed().as_secs_f64());
    Ok(())
}

/// "2 × <CPU model>": the machine the figures were measured on.
pub(crate) fn machine_line() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} × {cpu}")
}

/// `template` with every placeholder `{name}` whose name `vars` lists replaced by its value, in
/// one pass (a value is never searched for placeholders). A placeholder is `{`, a lowercase
/// name (letters, digits, `_`) and `}`; other braces are text.
pub(crate) fn render(template: &str, vars: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open..];
        match placeholder_at(after).and_then(|name| Some((name, vars.iter().find(|(k, _)| *k == name)?.1))) {
            Some((name, value)) => {
                out.push_str(value);
                rest = &after[name.len() + 2..];
            }
            None => {
                out.push('{');
                rest = &after[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The name of the placeholder `text` starts with (`{name}`), if it starts with one.
fn placeholder_at(text: &str) -> Option<&str> {
    let body = text.strip_prefix('{')?;
    let end = body.find('}')?;
    let name = &body[..end];
    let ok = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    ok.then_some(name)
}

/// The first line of a template: the heading of the section it renders.
pub(crate) fn heading(template: &str) -> &str {
    template.lines().next().unwrap_or("")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::{heading, placeholder_at, render};

    /// The placeholders left in `text` (none in a fully rendered template).
    pub(crate) fn placeholders(text: &str) -> Vec<&str> {
        text.match_indices('{')
            .filter_map(|(i, _)| placeholder_at(&text[i..]))
            .collect()
    }

    /// Checks a rendered template: no placeholder left, and every value given shows.
    pub(crate) fn assert_filled(rendered: &str, values: &[&str]) {
        assert_eq!(placeholders(rendered), Vec::<&str>::new(), "{rendered}");
        for v in values {
            assert!(rendered.contains(v), "{v} missing from:\n{rendered}");
        }
    }

    #[test]
    fn placeholders_are_replaced_once_and_other_braces_stay() {
        let t = "## T\n\n{a} and {b_2} {{x}} {Not} {} {a}\n";
        let out = render(t, &[("a", "{b_2}"), ("b_2", "two")]);
        assert_eq!(out, "## T\n\n{b_2} and two {{x}} {Not} {} {b_2}\n");
        assert_eq!(placeholders("{x} {{y}} {Z} {}"), ["x", "y"]);
        assert_eq!(placeholders(&render("{x}", &[])), ["x"]);
        assert_eq!(heading(t), "## T");
    }
}
