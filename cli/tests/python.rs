//! Functions in Python, end to end on one worker: the daemon serves `cli/tests/python/*.py` with
//! a real interpreter (`python -m faasflow.serve`, the package `cargo xtask python` installs into
//! `target/python/venv`) over the arena and the rings, and every fault the SDK promises to
//! handle is made for real. Each test checks that the daemon holds nothing afterwards.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use faasflow_core::report::Report;
use faasflow_core::{ClusterView, PlannerConfig};
use faasflow_daemon::api::{self as faasflow_api, Invoke};
use faasflow_daemon::config::DaemonConfig;
use faasflow_daemon::daemon::Daemon;
use faasflow_daemon::pool::PackCommand;
use faasflow_planner::load::load_str_in;
use faasflow_planner::partition::partition;
use serde_json::json;

mod support;
use support::python;

fn code() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python")
}

struct Harness {
    daemon: Daemon,
}

impl Harness {
    fn new() -> Harness {
        Harness::with(python())
    }

    fn with(python: PathBuf) -> Harness {
        let mut c = DaemonConfig::new(PackCommand {
            program: env!("CARGO_BIN_EXE_faasflow").into(),
            args: vec!["__pack".into(), "synthetic".into()],
        });
        c.arena_bytes = 256 << 20;
        c.python = python;
        Harness {
            daemon: Daemon::start(c).expect("daemon starts"),
        }
    }

    fn try_install(&self, yaml: &str) -> Result<(), String> {
        let wf = load_str_in(yaml, "test.yaml", "test", Some(&code()))
            .map_err(|e| e.to_string())?
            .workflow;
        let cfg = PlannerConfig {
            allow_overcommit: true,
            ..PlannerConfig::default()
        };
        let plan = partition(&wf, &ClusterView::uniform(1, 64), &cfg).expect("plan");
        self.daemon.install(Arc::new(wf), plan).map_err(|e| e.to_string())
    }

    fn install(&self, yaml: &str) {
        self.try_install(yaml).expect("installs");
    }

    fn invoke(&self, wf: &str, input: serde_json::Value) -> Report {
        let r = self
            .daemon
            .invoke(Invoke::new(wf, 1, input))
            .report()
            .expect("invocation starts");
        support::assert_clean(&self.daemon);
        r
    }
}

fn ok(r: &Report) -> &serde_json::Value {
    assert_eq!(r.status, "ok", "invocation failed: {:?}", r.error);
    &r.output
}

/// The failed function's error and failure kind.
fn failure<'a>(r: &'a Report, name: &str) -> (&'a str, &'a str) {
    assert_eq!(r.status, "failed", "invocation should fail: {:?}", r.output);
    let f = r
        .functions
        .iter()
        .rfind(|f| f.name == name)
        .unwrap_or_else(|| panic!("no record of `{name}`: {:?}", r.functions));
    (
        f.error.as_deref().expect("an error"),
        f.failure.as_deref().expect("a failure kind"),
    )
}

/// `upper`'s output.
const UPPER: &str = ", outputs: {text: bytes}";

/// A workflow of one Python function `handler` from `kit.py` as step `f`.
fn one(name: &str, handler: &str, extra: &str) -> String {
    format!(
        "name: {name}\nfunctions:\n  f: {{language: python, handler: 'kit:{handler}'{extra}}}\nsteps:\n  - task: f\n    inputs: {{text: input.text, n: input.n}}\n"
    )
}

#[test]
fn a_python_word_count_splits_counts_each_line_and_merges() {
    let h = Harness::new();
    h.install(
        "name: wc
functions:
  split: {language: python, handler: 'kit:split', outputs: {lines: list}}
  count: {language: python, handler: 'kit:count', outputs: {counts: json}}
  merge: {language: python, handler: 'kit:merge', outputs: {total: json}}
steps:
  - task: split
    inputs: {text: input.text}
  - foreach:
      over: split.lines
      do:
        - task: count
          inputs: {line: each.item}
  - task: merge
    inputs: {counts: count.counts}
output:
  total: merge.total
",
    );
    let r = h.invoke("wc", json!({"text": "a b a\nc a\nb\nd\ne"}));
    assert_eq!(ok(&r), &json!({"total": {"a": 3, "b": 2, "c": 1, "d": 1, "e": 1}}));
    // Faastlane's rule: split and merge run in sequence in one interpreter; the foreach's
    // elements may run at once, so they go to processes of their own (up to the cores).
    let instance = |name: &str| r.functions.iter().find(|f| f.name == name).and_then(|f| f.instance);
    assert_eq!(instance("split"), instance("merge"), "{:?}", r.functions);
    let counted: std::collections::BTreeSet<_> = r
        .functions
        .iter()
        .filter(|f| f.name == "count")
        .map(|f| f.instance)
        .collect();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(counted.len(), cores.min(4), "{:?}", r.functions);
}

#[test]
fn outputs_are_written_in_place_and_inputs_read_in_place_read_only() {
    let h = Harness::new();
    h.install(
        "name: blob
functions:
  fill: {language: python, handler: 'kit:fill', outputs: {blob: {type: bytes, size: 1KB}}}
  check: {language: python, handler: 'kit:check', isolation: process, outputs: {seen: json}}
  upper: {language: python, handler: 'kit:upper', outputs: {text: bytes}}
steps:
  - task: fill
    inputs: {n: input.n}
  - task: check
    inputs: {blob: fill.blob}
  - task: upper
    inputs: {text: input.text}
output:
  seen: check.seen
  text: upper.text
",
    );
    // 3 MiB: past the 1 KB reservation, so the output's room is granted on request.
    let n = 3 << 20;
    let r = h.invoke("blob", json!({"n": n, "text": "shout"}));
    let sum: u64 = (0..n as u64).map(|i| i % 251).sum();
    assert_eq!(
        ok(&r),
        &json!({"seen": {"len": n, "sum": sum, "readonly": true}, "text": "SHOUT"})
    );
    let edge = r.edges.iter().find(|e| e.from == "fill").expect("fill → check");
    assert_eq!((edge.bytes, edge.tier.as_str()), (n as u64, "shared-memory"));
}

#[test]
fn views_and_contexts_kept_past_their_call_raise_when_used() {
    let h = Harness::new();
    h.install(
        "name: keep
functions:
  keep: {language: python, handler: 'kit:keep', outputs: {ok: json}}
  keep_ctx: {language: python, handler: 'kit:keep_ctx', outputs: {ok: json}}
  kept_view: {language: python, handler: 'kit:kept_view', outputs: {seen: json}}
steps:
  - task: keep
    inputs: {text: input.text}
  - task: keep_ctx
  - task: kept_view
output:
  seen: kept_view.seen
",
    );
    let r = h.invoke("keep", json!({"text": "secret"}));
    let seen = ok(&r)["seen"].as_array().expect("a list").clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0], json!("operation forbidden on released memoryview object"));
    let ctx = seen[1].as_str().expect("text");
    assert!(ctx.starts_with("Error: call ") && ctx.contains("has ended"), "{ctx}");
}

#[test]
fn a_slice_or_array_kept_past_the_call_fails_it_and_the_instance_is_replaced() {
    let h = Harness::new();
    h.install(&one("slice", "keep_slice", ""));
    let r = h.invoke("slice", json!({"text": "secret", "n": 1}));
    let (error, _) = failure(&r, "f");
    assert!(
        error.contains("kept input `text` past its call") && error.contains("bytes(view)"),
        "{error}"
    );
    let first = r.functions[0].instance;
    // The instance ended itself; the next call runs on a new one.
    h.install(&one("again", "upper", UPPER));
    let r = h.invoke("again", json!({"text": "x", "n": 1}));
    assert_eq!(r.status, "ok", "{:?}", r.error);
    h.install(
        "name: np
functions:
  produce: {language: python, handler: 'numpy_kit:produce', outputs: {array: bytes}}
  hold: {language: python, handler: 'numpy_kit:hold', outputs: {sum: json}}
steps:
  - task: produce
    inputs: {n: input.n}
  - task: hold
    inputs: {array: produce.array}
",
    );
    let r = h.invoke("np", json!({"n": 1000}));
    let (error, _) = failure(&r, "hold");
    assert!(error.contains("kept input `array` past its call"), "{error}");
    assert_ne!(r.functions[0].instance, first);
    // A view of the view's exporter (`view.obj`) counts as well.
    h.install(&one("lease", "keep_lease", ""));
    let r = h.invoke("lease", json!({"text": "secret", "n": 1}));
    let (error, _) = failure(&r, "f");
    assert!(error.contains("kept input `text` past its call"), "{error}");
    // A slice alive only in the traceback of the exception that fails the call is not kept:
    // the call fails with its own error, and the instance goes on.
    h.install(&one("tb", "raises_holding", ""));
    let r = h.invoke("tb", json!({"text": "secret", "n": 1}));
    let (error, kind) = failure(&r, "f");
    assert!(
        error.contains("returned an error: RuntimeError: failed while holding 5 bytes"),
        "{error}"
    );
    assert_eq!(kind, "error");
}

#[test]
fn a_numpy_array_is_handed_over_in_place_between_processes() {
    let h = Harness::new();
    h.install(
        "name: np2
functions:
  produce: {language: python, handler: 'numpy_kit:produce', outputs: {array: bytes}}
  consume: {language: python, handler: 'numpy_kit:consume', isolation: process, outputs: {sum: json}}
steps:
  - task: produce
    inputs: {n: input.n}
  - task: consume
    inputs: {array: produce.array}
output:
  sum: consume.sum
",
    );
    let n: u64 = 1 << 20;
    let r = h.invoke("np2", json!({"n": n}));
    assert_eq!(ok(&r), &json!({"sum": (n * (n - 1) / 2) as f64}));
    let (p, c) = (&r.functions[0], &r.functions[1]);
    assert_ne!(p.instance, c.instance, "isolation: process");
}

#[test]
fn exceptions_exits_and_bad_outputs_fail_the_call_with_what_happened() {
    let h = Harness::new();
    let cases = [
        (
            "raises",
            vec![
                "ValueError: no luck with 7",
                "Traceback (most recent call last)",
                "kit.py\", line",
                "in helper",
            ],
        ),
        ("exits", vec!["called sys.exit(3)", "returns to end its call"]),
        ("overflow", vec!["ValueError", "memoryview assignment"]),
        (
            "unserialisable",
            vec!["output `out` cannot be encoded as JSON", "set is not JSON serializable"],
        ),
        ("returns", vec!["returned dict instead of None"]),
        (
            "missing_input",
            vec!["faasflow.Error", "has no input `nope`; its inputs are: text, n"],
        ),
    ];
    for (handler, expected) in cases {
        h.install(&one(handler, handler, ""));
        let r = h.invoke(handler, json!({"text": "t", "n": 7}));
        let (error, kind) = failure(&r, "f");
        for e in expected {
            assert!(error.contains(e), "{handler}: `{e}` not in: {error}");
        }
        assert_eq!(kind, "error", "{handler}");
    }
    // The instance that served them all is still serving.
    h.install(&one("fine", "upper", UPPER));
    assert_eq!(h.invoke("fine", json!({"text": "t", "n": 1})).status, "ok");
}

#[test]
fn a_segfault_is_a_crash_and_a_loop_a_timeout_and_the_instance_is_replaced() {
    let h = Harness::new();
    h.install(&one("segv", "segfault", ""));
    let r = h.invoke("segv", json!({"text": "t", "n": 1}));
    let (error, kind) = failure(&r, "f");
    assert_eq!(kind, "crash", "{error}");
    assert!(error.contains("SIGSEGV"), "{error}");
    h.install(&one("loop", "spins", ", timeout: 300ms"));
    let r = h.invoke("loop", json!({"text": "t", "n": 1}));
    let (error, kind) = failure(&r, "f");
    assert_eq!(kind, "timeout", "{error}");
    h.install(&one("after", "upper", UPPER));
    let r = h.invoke("after", json!({"text": "t", "n": 1}));
    assert_eq!(r.status, "ok", "{:?}", r.error);
}

#[test]
fn what_cannot_be_served_is_refused_at_install_naming_the_cause() {
    let h = Harness::new();
    let cases = [
        (
            "name: a\nfunctions:\n  f: {language: python, handler: 'kit:nope'}\nsteps:\n  - task: f\n",
            vec![
                "step `f` (in Python)",
                "module `kit`",
                "has no function `nope`",
                "(its functions: check, count, exits",
            ],
        ),
        (
            "name: b\nfunctions:\n  f: {language: python, handler: 'nothere:f'}\nsteps:\n  - task: f\n",
            vec!["there is no module `nothere` in", "tests/python"],
        ),
        (
            "name: c\nfunctions:\n  f: {language: python, handler: 'broken_syntax:f'}\nsteps:\n  - task: f\n",
            vec!["broken_syntax.py:2: syntax error"],
        ),
        (
            "name: d\nfunctions:\n  f: {language: python, handler: 'broken_import:f'}\nsteps:\n  - task: f\n",
            vec![
                "importing `broken_import` failed",
                "No module named 'a_module_that_is_not_there'",
            ],
        ),
        (
            "name: e\nfunctions:\n  f: {language: python, handler: 'kit:split', requirements: [numpy, not_a_real_module]}\nsteps:\n  - task: f\n",
            vec!["required module `not_a_real_module` not installed"],
        ),
        (
            "name: g\nfunctions:\n  f: {language: python, handler: 'kit:split', code: missing_dir}\nsteps:\n  - task: f\n",
            vec!["the code directory", "missing_dir` does not exist on this worker"],
        ),
    ];
    for (yaml, expected) in cases {
        let error = h.try_install(yaml).expect_err("refused");
        for e in expected {
            assert!(error.contains(e), "`{e}` not in: {error}");
        }
    }
    // A daemon whose interpreter is missing, or lacks the package, says so.
    let h = Harness::with("/nonexistent/python3".into());
    let error = h.try_install(&one("x", "split", "")).expect_err("refused");
    assert!(
        error.contains("`/nonexistent/python3` cannot be run") && error.contains("--python PATH"),
        "{error}"
    );
    let bare = std::process::Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3");
    let bare = String::from_utf8_lossy(&bare.stdout).trim().to_owned();
    let has_faasflow = std::process::Command::new(&bare)
        .args(["-c", "import faasflow"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_faasflow {
        let h = Harness::with(bare.into());
        let error = h.try_install(&one("y", "split", "")).expect_err("refused");
        assert!(error.contains("faasflow package is not installed"), "{error}");
    }
}

#[test]
fn faasflows_own_word_count_runs_unmodified_and_counts_what_plain_python_counts() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/faasflow-v1/benchmark/wordcount");
    let h = Harness::new();
    let wf = faasflow_planner::load::load_file(&dir.join("flat_workflow.yaml"))
        .expect("FaaSFlow's file loads")
        .workflow;
    for task in ["start", "count", "merge"] {
        let n = wf
            .graph
            .node_indices()
            .find(|&n| wf.graph[n].name == task)
            .expect("a task");
        let py = wf.graph[n]
            .task()
            .and_then(|t| t.spec.python.as_ref())
            .expect("in Python");
        assert!(
            py.faasflow_v1 && py.code.ends_with(&format!("wordcount/{task}")),
            "{py:?}"
        );
    }
    let cfg = PlannerConfig {
        allow_overcommit: true,
        ..PlannerConfig::default()
    };
    let plan = partition(&wf, &ClusterView::uniform(1, 64), &cfg).expect("plan");
    h.daemon.install(Arc::new(wf), plan).expect("installs");
    let mut invoke = Invoke::new("wordcount", 1, json!({}));
    invoke.keep_outputs = Some(Duration::from_secs(60));
    let r = h.daemon.invoke(invoke).report().expect("runs");
    assert_eq!(r.status, "ok", "{:?}", r.error);
    // Over 64 KiB: the report shows its size; the output itself is kept to be read.
    let piece = h
        .daemon
        .read_output(r.invocation, "result", 0, 0, 64 << 20)
        .expect("daemon")
        .expect("kept");
    let faasflow_api::OutputPiece::Bytes { bytes, .. } = piece else {
        panic!("the output is in the arena: {piece:?}")
    };
    h.daemon.output_read(r.invocation, "result", 0).expect("freed");
    let counts: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON");
    // The reference: FaaSFlow's algorithm in plain Python over the same texts.
    let reference = std::process::Command::new(python())
        .args([
            "-c",
            "import json, os, re, sys\n\
             d = sys.argv[1]\nres = {}\n\
             for fn in os.listdir(d):\n    \
                 for w in re.split(r'\\W+', open(os.path.join(d, fn)).read()):\n        \
                     res[w] = res.get(w, 0) + 1\n\
             print(json.dumps(res))",
        ])
        .arg(dir.join("start/text"))
        .output()
        .expect("python runs");
    assert!(
        reference.status.success(),
        "{}",
        String::from_utf8_lossy(&reference.stderr)
    );
    let reference: serde_json::Value = serde_json::from_slice(&reference.stdout).expect("JSON");
    let words = counts.as_object().map_or(0, |o| o.len());
    assert!(words > 20_000, "{words} distinct words");
    assert_eq!(counts, reference, "the same counts as plain Python");
    assert_eq!(counts["Frankenstein"], reference["Frankenstein"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.daemon.stats().expect("stats").arena_used != 0 {
        assert!(Instant::now() < deadline, "the kept output was not freed");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether Docker answers and `faasflow/python` is built; panics where they are required.
fn python_image() -> bool {
    let ok = std::process::Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", "faasflow/python"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let why = "Docker is not reachable, or the image faasflow/python is not built (`cargo xtask images`)";
        assert!(
            std::env::var_os("FAASFLOW_REQUIRE_DOCKER").is_none_or(|v| v != "1"),
            "{why}, and FAASFLOW_REQUIRE_DOCKER=1"
        );
        eprintln!("skipped: {why}");
    }
    ok
}

#[test]
fn a_python_function_runs_in_a_container_of_faasflow_python_with_its_code_mounted() {
    if !python_image() {
        return;
    }
    let h = Harness::new();
    h.install(
        "name: boxed
functions:
  whoami: {language: python, handler: 'kit:whoami', isolation: container, outputs: {me: json}}
  shout: {language: python, handler: 'kit:upper', outputs: {text: bytes}}
steps:
  - task: whoami
    inputs: {text: input.text}
  - task: shout
    inputs: {text: input.text}
output:
  me: whoami.me
  text: shout.text
",
    );
    let r = h.invoke("boxed", json!({"text": "in a box"}));
    let out = ok(&r);
    // In the container: user 65534, a read-only root, no network but loopback; the input read
    // in place from the arena, as in a process.
    assert_eq!(
        out["me"],
        json!({"uid": 65534, "root_writable": false, "interfaces": ["lo"], "text": "in a box"})
    );
    assert_eq!(out["text"], json!("IN A BOX"), "the other, a process, ran beside it");
    // What cannot be served is refused at install, from inside the image too.
    let error = h
        .try_install(
            "name: boxed_bad\nfunctions:\n  f: {language: python, handler: 'kit:nope', isolation: container}\nsteps:\n  - task: f\n",
        )
        .expect_err("refused");
    assert!(error.contains("has no function `nope`"), "{error}");
}
