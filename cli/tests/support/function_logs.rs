//! What functions write to stderr, seen in the log of `faasflow run --log-format json`: a
//! workflow whose first function writes two lines and whose second panics (with
//! `RUST_BACKTRACE=1`, which a process instance inherits), and the checks that every line is in the log tied to its function and
//! invocation, with no call tag left in it.

use std::process::Command;

/// Runs the workflow (its functions in `isolation`, when given) and checks the log.
pub(crate) fn check(isolation: Option<&str>) {
    let dir = std::env::temp_dir().join(format!(
        "faasflow-function-logs-{}-{}",
        std::process::id(),
        isolation.unwrap_or("thread")
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("talks.yaml");
    let iso = isolation.map(|i| format!(", isolation: {i}")).unwrap_or_default();
    std::fs::write(
        &file,
        format!(
            "name: talks\nfunctions:\n  say: {{pack: testkit{iso}}}\n  panic: {{pack: testkit{iso}}}\n\
             steps:\n  - task: say\n  - task: panic\n"
        ),
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_faasflow"))
        .args([
            "run",
            file.to_str().unwrap(),
            "--report",
            "json",
            "--log-format",
            "json",
        ])
        .env("FAASFLOW_LOG", "info")
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    let events: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    let said: Vec<&serde_json::Value> = events.iter().filter(|e| e["target"] == "faasflow::function").collect();
    let line = |text: &str| {
        said.iter()
            .find(|e| e["fields"]["message"].as_str().is_some_and(|m| m.starts_with(text)))
            .unwrap_or_else(|| panic!("no `{text}` in the log: {said:?}"))
    };
    for text in ["testkit says: hello", "testkit said it"] {
        let e = line(text);
        assert_eq!(e["fields"]["function"], "say", "{e}");
        assert_eq!(e["fields"]["invocation"], 1, "{e}");
        assert_eq!(e["fields"]["pack"], "testkit", "{e}");
        assert!(e["fields"]["instance"].is_u64(), "{e}");
        assert!(e["timestamp"].is_string() && e["level"] == "INFO", "{e}");
    }
    // A panic says where it happened, with its backtrace, every line tied to its call.
    let panicked = line("thread '");
    let message = panicked["fields"]["message"].as_str().unwrap();
    assert!(
        message.contains("panicked at") && message.contains("lib.rs"),
        "{panicked}"
    );
    let mut lines = vec![panicked, line("testkit: asked to panic")];
    if isolation.is_none() {
        // A process instance has the daemon's environment (a container has its image's).
        lines.push(line("stack backtrace:"));
    }
    for e in lines {
        assert_eq!(e["fields"]["function"], "panic", "{e}");
        assert_eq!(e["fields"]["invocation"], 1, "{e}");
    }
    assert!(
        !said
            .iter()
            .any(|e| e["fields"]["message"].as_str().unwrap_or_default().contains("[call ")),
        "a call's tag reached the log: {said:?}"
    );
}
