//! `cargo xtask chaos`: the full chaos run (`cli/tests/chaos.rs`, `chaos_full`) on release
//! builds; its table goes into docs/reliability.md between the markers.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::util::{cargo, machine_line, run};

/// The markers around the table in docs/reliability.md.
const START: &str = "<!-- chaos table: start -->";
const END: &str = "<!-- chaos table: end -->";

pub(crate) fn chaos(root: &Path) -> Result<()> {
    run(
        "cargo build --release --workspace --bins",
        cargo().args(["build", "--release", "--workspace", "--bins", "--locked"]),
    )?;
    let table = root.join("target/chaos-table.md");
    let _ = std::fs::remove_file(&table);
    run(
        "chaos (cli/tests/chaos.rs, chaos_full)",
        cargo()
            .args([
                "test",
                "--release",
                "--locked",
                "-p",
                "faasflow-cli",
                "--test",
                "chaos",
                "--",
                "--ignored",
                "--exact",
                "chaos_full",
                "--nocapture",
            ])
            .env("FAASFLOW_CHAOS_REPORT", &table),
    )?;
    let table = std::fs::read_to_string(&table).context("the chaos run wrote no table")?;
    let doc_path = root.join("docs/reliability.md");
    let doc = std::fs::read_to_string(&doc_path).context("cannot read docs/reliability.md")?;
    let when = Command::new("date")
        .args(["-u", "+%Y-%m-%d"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let doc = with_table(&doc, &machine_line(), &when, &table)?;
    std::fs::write(&doc_path, doc).context("cannot write docs/reliability.md")?;
    eprintln!("==> the table is in docs/reliability.md");
    Ok(())
}

/// `doc` with the table between its markers replaced by `table`, measured on `machine` on day
/// `when`.
fn with_table(doc: &str, machine: &str, when: &str, table: &str) -> Result<String> {
    let (Some(a), Some(b)) = (doc.find(START), doc.find(END)) else {
        bail!("docs/reliability.md has no `{START}` … `{END}` markers");
    };
    let section = format!("{START}\n`cargo xtask chaos` on {machine}, {when} (release build):\n\n{table}{END}");
    Ok(format!("{}{}{}", &doc[..a], section, &doc[b + END.len()..]))
}

#[cfg(test)]
mod tests {
    use super::with_table;

    #[test]
    fn the_table_replaces_what_is_between_the_markers() {
        let doc = "# R\n\n<!-- chaos table: start -->\nold\n<!-- chaos table: end -->\n\nmore\n";
        assert_eq!(
            with_table(doc, "2 × CPU", "2025-01-02", "| a |\n").unwrap(),
            "# R\n\n<!-- chaos table: start -->\n`cargo xtask chaos` on 2 × CPU, 2025-01-02 (release build):\n\n\
             | a |\n<!-- chaos table: end -->\n\nmore\n"
        );
        assert!(with_table("# R\n", "m", "d", "t").is_err());
    }
}
