//! End to end on one worker, with real processes: the daemon's runtime drives pack instances
//! (`faasflow-pack-testkit`, and `faasflow __pack synthetic` for functions without a pack)
//! through the shared-memory arena and the rings. Every test checks that the daemon holds no
//! arena byte, object or invocation after each invocation, whatever its outcome.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use faasflow_core::dag::Workflow;
use faasflow_core::report::Report;
use faasflow_core::{ClusterView, PlannerConfig};
use faasflow_daemon::api::{DaemonError, Invoke};
use faasflow_daemon::config::{DaemonConfig, ProbeMode};
use faasflow_daemon::daemon::Daemon;
use faasflow_daemon::pool::PackCommand;
use faasflow_planner::load::{load_file, load_str};
use faasflow_planner::partition::partition;
use serde_json::json;

mod support;

fn testkit() -> PathBuf {
    let p = Path::new(env!("CARGO_BIN_EXE_faasflow")).with_file_name("faasflow-pack-testkit");
    assert!(
        p.is_file(),
        "{} is missing: build every binary first (`cargo build --workspace --bins`; `cargo xtask ci` does)",
        p.display()
    );
    p
}

fn config() -> DaemonConfig {
    let mut c = DaemonConfig::new(PackCommand {
        program: env!("CARGO_BIN_EXE_faasflow").into(),
        args: vec!["__pack".into(), "synthetic".into()],
    });
    c.packs.insert("testkit".into(), PackCommand::program(testkit()));
    c.arena_bytes = 64 << 20;
    c
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

struct Harness {
    daemon: Daemon,
}

impl Harness {
    fn new() -> Self {
        Self::with(config())
    }

    fn with(c: DaemonConfig) -> Self {
        Harness {
            daemon: Daemon::start(c).expect("daemon starts"),
        }
    }

    fn install(&self, yaml: &str) -> Arc<Workflow> {
        let wf = Arc::new(load_str(yaml, "test.yaml", "test").expect("valid workflow").workflow);
        self.install_wf(wf.clone());
        wf
    }

    fn install_wf(&self, wf: Arc<Workflow>) {
        let cfg = PlannerConfig {
            allow_overcommit: true,
            ..PlannerConfig::default()
        };
        let plan = partition(&wf, &ClusterView::uniform(1, 64), &cfg).expect("plan");
        self.daemon.install(wf, plan).expect("install");
    }

    /// Invokes and checks that nothing is left behind afterwards.
    fn invoke(&self, wf: &str, input: serde_json::Value) -> Report {
        let r = self
            .daemon
            .invoke(Invoke::new(wf, 1, input))
            .report()
            .expect("invocation starts");
        self.assert_clean();
        r
    }

    fn assert_clean(&self) {
        support::assert_clean(&self.daemon);
    }
}

fn ok(r: &Report) -> &serde_json::Value {
    assert_eq!(r.status, "ok", "invocation failed: {:?}", r.error);
    &r.output
}

fn failed(r: &Report) -> &str {
    assert_eq!(r.status, "failed", "invocation should fail: {:?}", r.output);
    r.error.as_deref().expect("a failed report has an error")
}

fn record<'a>(r: &'a Report, name: &str) -> &'a faasflow_core::report::FunctionRecord {
    r.functions
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no record of `{name}`"))
}

const TESTKIT: &str = "
functions:
  echo: {pack: testkit, outputs: {out: bytes}}
  concat: {pack: testkit, outputs: {out: bytes}}
  len: {pack: testkit, outputs: {out: json}}
";

#[test]
fn each_call_s_peak_memory_is_measured_through_ebpf_and_proc() {
    const MIB: u64 = 1 << 20;
    for probe in [ProbeMode::Ebpf, ProbeMode::Proc] {
        let mut c = config();
        c.memory_probe = probe;
        let h = Harness::with(c);
        h.install(
            "name: mem\nfunctions:\n  touch: {pack: testkit, outputs: {out: json}}\n  noop: {pack: testkit}\nsteps:\n  - task: touch\n    inputs: {mib: input.mib}\n  - task: noop\noutput:\n  mib: touch.out\n",
        );
        let r = h.invoke("mem", json!({"mib": 64}));
        assert_eq!(ok(&r), &json!({"mib": 64}));
        let touch = record(&r, "touch").peak_memory_bytes.expect("touch is measured");
        let noop = record(&r, "noop").peak_memory_bytes.expect("noop is measured");
        println!("{probe}: touch {} MiB, noop {} MiB", touch / MIB, noop / MIB);
        // What it touched, not the arena every instance maps (64 MiB here too).
        assert!(
            (64 * MIB..112 * MIB).contains(&touch),
            "{probe}: touch peaked at {touch}"
        );
        // The next call in the same instance starts over from what it holds now.
        assert_eq!(record(&r, "noop").instance, record(&r, "touch").instance);
        assert!(noop < 32 * MIB, "{probe}: noop peaked at {noop}");
    }
}

#[test]
fn task_passes_its_input_through_the_arena() {
    let h = Harness::new();
    h.install(&format!(
        "name: one\n{TESTKIT}steps:\n  - task: echo\n    inputs: {{in: input.text}}\noutput:\n  out: echo.out\n"
    ));
    let r = h.invoke("one", json!({"text": "hello"}));
    assert_eq!(ok(&r), &json!({"out": "hello"}));
    let f = record(&r, "echo");
    assert_eq!((f.attempt, f.skipped), (1, false));
    assert_eq!(
        f.output_bytes,
        std::collections::BTreeMap::from([("out".to_owned(), 5)])
    );
    assert!(f.instance.is_some() && f.end_us >= f.start_us && f.end_us <= r.e2e_us);
}

#[test]
fn sequence_runs_in_order_and_hands_objects_over() {
    let h = Harness::new();
    h.install(&format!(
        "name: seq\n{TESTKIT}steps:\n  - task: a\n    function: echo\n    inputs: {{in: input.text}}\n  - task: b\n    function: echo\n    inputs: {{in: a.out}}\n  - task: c\n    function: len\n    inputs: {{in: b.out}}\noutput:\n  text: b.out\n  n: c.out\n"
    ));
    let r = h.invoke("seq", json!({"text": "abcdef"}));
    assert_eq!(ok(&r), &json!({"text": "abcdef", "n": 6}));
    let (a, b, c) = (record(&r, "a"), record(&r, "b"), record(&r, "c"));
    assert!(b.start_us >= a.end_us && c.start_us >= b.end_us, "{:?}", r.functions);
    assert_eq!(r.edges.len(), 2);
    assert!(r.edges.iter().all(|e| e.bytes == 6 && e.transfer_us == 0.0));
    assert!(
        r.edges.iter().all(|e| e.tier == "in-process"),
        "one group, one instance: {:?}",
        r.edges
    );
}

#[test]
fn parallel_branches_join() {
    let h = Harness::new();
    h.install(&format!(
        "name: par\n{TESTKIT}steps:\n  - parallel:\n      - task: a\n        function: echo\n        inputs: {{in: input.x}}\n      - task: b\n        function: echo\n        inputs: {{in: input.y}}\n  - task: j\n    function: concat\n    inputs: {{a: a.out, b: b.out}}\noutput:\n  out: j.out\n"
    ));
    let r = h.invoke("par", json!({"x": "left-", "y": "right"}));
    assert_eq!(ok(&r), &json!({"out": "left-right"}));
    let j = record(&r, "j");
    assert!(j.start_us >= record(&r, "a").end_us && j.start_us >= record(&r, "b").end_us);
}

const SWITCH: &str = "name: sw
functions:
  echo: {pack: testkit, outputs: {out: bytes}}
  concat: {pack: testkit, outputs: {out: bytes}}
  len: {pack: testkit, outputs: {out: json}}
steps:
  - task: measure
    function: len
    inputs: {in: input.text}
  - switch:
      cases:
        - if: measure.out > 3
          then:
            - task: long
              function: echo
              inputs: {in: input.text}
      default:
        - task: short
          function: echo
          inputs: {in: input.text}
  - task: join
    function: concat
    inputs: {x: [long.out, short.out]}
output:
  out: join.out
  long: long.out
";

#[test]
fn switch_skips_the_branch_not_taken_and_the_join_runs() {
    let h = Harness::new();
    h.install(SWITCH);
    let r = h.invoke("sw", json!({"text": "abcdef"}));
    assert_eq!(ok(&r), &json!({"out": "abcdef", "long": "abcdef"}));
    assert!(record(&r, "short").skipped && !record(&r, "long").skipped);
    let r = h.invoke("sw", json!({"text": "ab"}));
    assert_eq!(ok(&r), &json!({"out": "ab", "long": null}));
    assert!(record(&r, "long").skipped && !record(&r, "short").skipped);
}

const FOREACH: &str = "name: fe
functions:
  echo: {pack: testkit, outputs: {out: bytes}}
  concat: {pack: testkit, outputs: {out: bytes}}
steps:
  - foreach:
      over: input.words
      max_concurrency: 2
      do:
        - task: word
          function: echo
          inputs: {in: each.item}
  - task: merge
    function: concat
    inputs: {parts: word.out}
output:
  out: merge.out
  parts: word.out
";

#[test]
fn foreach_merges_outputs_in_element_order() {
    let h = Harness::new();
    h.install(FOREACH);
    let words: Vec<String> = (0..12).map(|i| format!("w{i},")).collect();
    let r = h.invoke("fe", json!({ "words": words }));
    let out = ok(&r);
    assert_eq!(out["out"], json!(words.concat()));
    assert_eq!(out["parts"], json!(words));
    let elements: Vec<u32> = r
        .functions
        .iter()
        .filter(|f| f.name == "word")
        .filter_map(|f| f.element)
        .collect();
    assert_eq!(elements.len(), 12);
    // Each element's call has its fan-out edge: from the list's source to the element, with
    // the bytes copied for it; then the elements' outputs go to `merge`.
    for (i, w) in words.iter().enumerate() {
        let fan_out: Vec<_> = r
            .edges
            .iter()
            .filter(|e| e.to == "word" && e.to_element == Some(i as u32))
            .collect();
        assert_eq!(fan_out.len(), 1, "element {i}: {:?}", r.edges);
        let e = fan_out[0];
        assert_eq!(
            (e.from.as_str(), e.tier.as_str(), e.bytes),
            ("input.words", "element", w.len() as u64)
        );
        assert!(
            r.edges
                .iter()
                .any(|e| e.from == "word" && e.from_element == Some(i as u32) && e.to == "merge"),
            "word[{i}] -> merge: {:?}",
            r.edges
        );
    }
    // At most 2 elements at a time: at each start, at most 2 are running.
    let words_run: Vec<_> = r.functions.iter().filter(|f| f.name == "word").collect();
    for f in &words_run {
        let running = words_run
            .iter()
            .filter(|g| g.start_us <= f.start_us && f.start_us < g.end_us)
            .count();
        assert!(running <= 2, "max_concurrency exceeded at {f:?}: {words_run:#?}");
    }
}

#[test]
fn an_empty_foreach_gives_empty_lists() {
    let h = Harness::new();
    h.install(FOREACH);
    let r = h.invoke("fe", json!({"words": []}));
    assert_eq!(ok(&r), &json!({"out": "", "parts": []}));
    assert!(record(&r, "word").skipped);
}

#[test]
fn nested_constructs() {
    let h = Harness::new();
    h.install(
        "name: nest
functions:
  echo: {pack: testkit, outputs: {out: bytes}}
  concat: {pack: testkit, outputs: {out: bytes}}
  len: {pack: testkit, outputs: {out: json}}
steps:
  - parallel:
      - foreach:
          over: input.words
          do:
            - task: m
              function: len
              inputs: {in: each.item}
            - switch:
                cases:
                  - if: m.out > 2
                    then:
                      - task: big
                        function: echo
                        inputs: {in: each.item}
                default: []
      - sequence:
          - task: x
            function: echo
            inputs: {in: input.tail}
          - task: y
            function: echo
            inputs: {in: x.out}
  - task: all
    function: concat
    inputs: {a: big.out, b: y.out}
output:
  out: all.out
",
    );
    let r = h.invoke("nest", json!({"words": ["a", "bbb", "cc", "dddd"], "tail": "!"}));
    assert_eq!(ok(&r), &json!({"out": "bbbdddd!"}));
}

#[test]
fn missing_inputs_are_refused_before_anything_runs() {
    let h = Harness::new();
    h.install(&format!(
        "name: needs\ninputs:\n  text: bytes\n  n: json\n{TESTKIT}steps:\n  - task: echo\n    inputs: {{in: input.text}}\n"
    ));
    let err = h
        .daemon
        .invoke(Invoke::new("needs", 1, json!({"text": "x"})))
        .report()
        .expect_err("n is missing");
    assert_eq!(
        err,
        DaemonError::Invoke("workflow `needs` is missing inputs: n; pass them as a JSON object".into())
    );
    let err = h
        .daemon
        .invoke(Invoke::new("nope", 1, json!({})))
        .report()
        .expect_err("unknown workflow");
    assert!(err.to_string().contains("`nope`"), "{err}");
    h.assert_clean();
}

fn fault_workflow(h: &Harness, name: &str, function: &str, extra: &str) {
    h.install(&format!(
        "name: {name}\nfunctions:\n  echo: {{pack: testkit, outputs: {{out: bytes}}}}\n  {function}: {{pack: testkit{extra}, outputs: {{out: bytes}}}}\nsteps:\n  - task: first\n    function: echo\n    inputs: {{in: input.text}}\n  - task: bad\n    function: {function}\n    inputs: {{in: first.out}}\n  - task: after\n    function: echo\n    inputs: {{in: bad.out}}\n"
    ));
}

#[test]
fn a_function_error_fails_the_invocation_with_its_message() {
    let h = Harness::new();
    fault_workflow(&h, "f1", "fail", "");
    let r = h.invoke("f1", json!({"text": "x"}));
    let e = failed(&r);
    assert!(
        e.contains("step `bad` failed") && e.contains("testkit: asked to fail"),
        "{e}"
    );
    assert!(!r.functions.iter().any(|f| f.name == "after" && !f.skipped));
}

#[test]
fn a_panic_fails_the_invocation_and_the_instance_keeps_serving() {
    let h = Harness::new();
    fault_workflow(&h, "f2", "panic", "");
    let r = h.invoke("f2", json!({"text": "x"}));
    let e = failed(&r);
    assert!(e.contains("panicked") && e.contains("testkit: asked to panic"), "{e}");
    let before = h.daemon.stats().expect("stats").instances_started;
    let r = h.invoke("f2", json!({"text": "y"}));
    failed(&r);
    assert_eq!(
        h.daemon.stats().expect("stats").instances_started,
        before,
        "a panic does not kill the instance"
    );
}

#[test]
fn a_crashed_instance_is_named_and_replaced() {
    let h = Harness::new();
    fault_workflow(&h, "f3", "exit", "");
    h.install(&format!(
        "name: fine\n{TESTKIT}steps:\n  - task: echo\n    inputs: {{in: input.text}}\noutput:\n  out: echo.out\n"
    ));
    let start = Instant::now();
    let r = h.invoke("f3", json!({"text": "x"}));
    let e = failed(&r);
    assert!(
        e.contains("function `exit`") && e.contains("exited with status 3"),
        "{e}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "detected at once, not by a timeout"
    );
    // The pool replaces the instance: the same workflow runs (and crashes) again, and others
    // are served.
    let e = failed(&h.invoke("f3", json!({"text": "x"}))).to_owned();
    assert!(e.contains("exited with status 3"), "{e}");
    assert_eq!(
        ok(&h.invoke("fine", json!({"text": "still here"}))),
        &json!({"out": "still here"})
    );
}

#[test]
fn a_hung_function_times_out_and_its_instance_is_stopped() {
    let h = Harness::new();
    fault_workflow(&h, "f4", "hang", ", timeout: 300ms");
    let start = Instant::now();
    let r = h.invoke("f4", json!({"text": "x"}));
    let e = failed(&r);
    assert!(e.contains("timed out after 300 ms"), "{e}");
    assert!(start.elapsed() < Duration::from_secs(10));
    h.install(&format!(
        "name: fine\n{TESTKIT}steps:\n  - task: echo\n    inputs: {{in: input.text}}\noutput:\n  out: echo.out\n"
    ));
    assert_eq!(ok(&h.invoke("fine", json!({"text": "next"}))), &json!({"out": "next"}));
}

#[test]
fn retry_on_picks_the_failures_that_are_retried() {
    let h = Harness::new();
    // Crashes are retried: three attempts, each a new instance, each in the report.
    fault_workflow(
        &h,
        "r1",
        "exit",
        ", retry: {attempts: 3, backoff: 10ms, on: [crash, timeout]}",
    );
    let r = h.invoke("r1", json!({"text": "x"}));
    let e = failed(&r);
    assert!(
        e.contains("step `bad` failed after 3 attempts") && e.contains("exited with status 3"),
        "{e}"
    );
    let attempts: Vec<(u32, Option<&str>)> = r
        .functions
        .iter()
        .filter(|f| f.name == "bad")
        .map(|f| (f.attempt, f.failure.as_deref()))
        .collect();
    assert_eq!(attempts, [(1, Some("crash")), (2, Some("crash")), (3, Some("crash"))]);
    // An error is not in `on`: one attempt, and the message says why it was not retried.
    fault_workflow(
        &h,
        "r2",
        "fail",
        ", retry: {attempts: 3, backoff: 10ms, on: [crash, timeout]}",
    );
    let r = h.invoke("r2", json!({"text": "x"}));
    let e = failed(&r);
    assert!(
        e.contains("testkit: asked to fail")
            && e.ends_with("(not retried: a failure of kind `error`, and `retry.on` is [crash, timeout])"),
        "{e}"
    );
    let bad: Vec<_> = r.functions.iter().filter(|f| f.name == "bad").collect();
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0].failure.as_deref(), Some("error"));
    // A panic is its own kind.
    fault_workflow(&h, "r3", "panic", ", retry: {attempts: 2, backoff: 10ms, on: panic}");
    let r = h.invoke("r3", json!({"text": "x"}));
    assert!(failed(&r).contains("after 2 attempts"), "{}", failed(&r));
    assert!(
        r.functions
            .iter()
            .filter(|f| f.name == "bad")
            .all(|f| f.failure.as_deref() == Some("panic"))
    );
}

#[test]
fn a_caught_step_hands_its_failure_to_its_catch_step_and_the_workflow_goes_on() {
    let h = Harness::new();
    h.install(support::RESCUED);
    let r = h.invoke("rescued", json!({"text": "x"}));
    support::check_rescued(&r);
}

#[test]
fn a_deadline_ends_the_invocation_and_stops_what_runs() {
    let h = Harness::new();
    // The workflow's own deadline: `hang` never returns and its timeout is a minute away.
    h.install(
        "name: late\ndeadline: 400ms\nfunctions:\n  echo: {pack: testkit, outputs: {out: bytes}}\n  hang: {pack: testkit, outputs: {out: bytes}}\nsteps:\n  - task: first\n    function: echo\n    inputs: {in: input.text}\n  - task: bad\n    function: hang\n    inputs: {in: first.out}\n",
    );
    let started = h.daemon.stats().expect("stats").instances_started;
    let start = Instant::now();
    let r = h.invoke("late", json!({"text": "x"}));
    let took = start.elapsed();
    let e = failed(&r);
    assert_eq!(
        e,
        "the invocation did not end within its deadline of 400 ms; still open: `bad`: attempt 1 running"
    );
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(10),
        "{took:?}"
    );
    // `invoke` checked that nothing is held: the hung call was stopped with its instance.
    // A deadline given with the invocation wins over the workflow's.
    let rx = h
        .daemon
        .invoke(Invoke::new("late", 1, json!({"text": "y"})).with_deadline(Some(Duration::from_millis(150))));
    let r = rx.wait().expect("report").expect("started");
    assert!(failed(&r).contains("deadline of 150 ms"), "{}", failed(&r));
    h.assert_clean();
    // The second `hang` call could not use the stopped instance: a new one was started for it
    // (its start may complete after the invocation's short deadline, so wait for it).
    let replaced = Instant::now() + Duration::from_secs(10);
    while h.daemon.stats().expect("stats").instances_started <= started {
        assert!(Instant::now() < replaced, "the hung instance was not replaced");
        std::thread::sleep(Duration::from_millis(10));
    }
    h.install(&format!(
        "name: fine\n{TESTKIT}steps:\n  - task: echo\n    inputs: {{in: input.text}}\noutput:\n  out: echo.out\n"
    ));
    assert_eq!(ok(&h.invoke("fine", json!({"text": "next"}))), &json!({"out": "next"}));
}

#[test]
fn a_hung_call_of_a_failed_invocation_is_stopped_at_its_timeout() {
    let h = Harness::new();
    // One branch fails at once; the other hangs. The invocation fails, and the hung call,
    // which nobody waits for any more, is stopped at its own timeout (`invoke` checks that
    // the daemon holds no call afterwards).
    h.install(
        "name: branches\nfunctions:\n  fail: {pack: testkit, outputs: {out: bytes}}\n  hang: {pack: testkit, timeout: 500ms, isolation: process, outputs: {out: bytes}}\nsteps:\n  - parallel:\n      - - task: fail\n          inputs: {in: input.text}\n      - - task: hang\n          inputs: {in: input.text}\n",
    );
    let r = h.invoke("branches", json!({"text": "x"}));
    assert!(failed(&r).contains("testkit: asked to fail"), "{}", failed(&r));
}

#[test]
fn an_output_larger_than_the_arena_fails_precisely() {
    let mut c = config();
    c.arena_bytes = 8 << 20;
    let h = Harness::with(c);
    // A synthetic body reserves its declared size before it runs.
    h.install("name: big\nfunctions:\n  make: {outputs: {blob: {size: 64MiB}}}\nsteps:\n  - task: make\n");
    let e = failed(&h.invoke("big", json!({}))).to_owned();
    assert!(
        e.contains("output `blob` needs 67108864 bytes") && e.contains("--arena-mib"),
        "{e}"
    );
    // A pack function asks for room while it writes.
    h.install(
        "name: big2\nfunctions:\n  emit: {pack: testkit, outputs: {out: bytes}}\nsteps:\n  - task: emit\n    inputs: {bytes: input.n}\n",
    );
    let e = failed(&h.invoke("big2", json!({"n": 32 << 20}))).to_owned();
    assert!(e.contains("do not fit in the arena"), "{e}");
    // And the daemon still serves.
    let r = h.invoke("big2", json!({"n": 1000}));
    ok(&r);
}

#[test]
fn a_condition_that_cannot_be_evaluated_fails_the_invocation() {
    let h = Harness::new();
    h.install(&format!(
        "name: badcond\n{TESTKIT}steps:\n  - task: len\n    inputs: {{in: input.text}}\n  - switch:\n      name: pick\n      cases:\n        - if: len.out.size > 1\n          then:\n            - task: echo\n              inputs: {{in: input.text}}\n      default: []\n"
    ));
    let e = failed(&h.invoke("badcond", json!({"text": "abc"}))).to_owned();
    assert!(e.contains("pick"), "{e}");
}

/// With quota 0 every output is spilled, except while a running call reads it. A consumer
/// prepared in the turn its input's spill ends takes the extent the object left (no read
/// back: 0 µs); one that comes later reads the object back from its spill file.
///
/// `b` follows `a` on its thread and reads `a.out` in place; `c` reads `a.out` too, after
/// `d` (100 ms, another pool): `a.out` is spilled once `b` ended, and read back by `c`. When
/// `c` runs straight after `b` instead, `a.out` never leaves memory: a reader always runs.
#[test]
fn objects_over_quota_spill_and_come_back() {
    let mut c = config();
    c.quota_bytes = Some(0);
    let h = Harness::with(c);
    let steps = |d: &str| {
        format!(
            "{TESTKIT}  d: {{runtime: 100ms}}\nsteps:\n  - task: a\n    function: echo\n    inputs: {{in: input.text}}\n  - task: b\n    function: echo\n    inputs: {{in: a.out}}\n{d}  - task: c\n    function: concat\n    inputs: {{x: a.out, y: b.out}}\noutput:\n  out: c.out\n"
        )
    };
    h.install(&format!("name: spill\n{}", steps("  - task: d\n")));
    h.install(&format!("name: straight\n{}", steps("")));
    let r = h.invoke("spill", json!({"text": "spilled bytes"}));
    assert_eq!(ok(&r), &json!({"out": "spilled bytesspilled bytes"}));
    // a.out, b.out, c.out (d has no output).
    assert_eq!(r.spills, 3);
    let edge = |r: &Report, from: &str, to: &str| {
        r.edges
            .iter()
            .find(|e| e.from == from && e.to == to)
            .unwrap_or_else(|| panic!("no edge {from} -> {to}: {:?}", r.edges))
            .clone()
    };
    assert!(record(&r, "b").chained, "{:?}", r.functions);
    assert_eq!(edge(&r, "a", "b").tier, "in-process");
    for (from, to) in [("a", "c"), ("b", "c")] {
        assert_eq!(edge(&r, from, to).tier, "spill", "{from} -> {to}");
    }
    assert!(
        edge(&r, "a", "c").transfer_us > 0.0,
        "c reads a's output back from its file"
    );
    let s = h.daemon.stats().expect("stats");
    assert_eq!((s.spills_total, s.spilled_objects), (3, 0));
    assert_eq!(s.arena_used, 0, "nothing is left in the arena");
    let r = h.invoke("straight", json!({"text": "in memory"}));
    assert_eq!(ok(&r), &json!({"out": "in memoryin memory"}));
    // b.out, c.out.
    assert_eq!(r.spills, 2);
    assert_eq!(edge(&r, "a", "c").tier, "in-process", "read where it was");
    assert_eq!(
        edge(&r, "b", "c").transfer_us,
        0.0,
        "c takes what b's output left in the arena"
    );
    assert_eq!(h.daemon.stats().expect("stats").arena_used, 0);
}

/// Every FaaSFlow workflow file runs to completion with synthetic bodies, and every
/// function starts after all of its predecessors ended.
#[test]
fn faasflow_workflows_run_with_synthetic_bodies() {
    let mut c = config();
    c.arena_bytes = 256 << 20;
    c.runtime_scale = 0.001;
    c.data_scale = 0.01;
    let h = Harness::with(c);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/faasflow-v1");
    let mut files = Vec::new();
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .expect("dir")
            .map(|e| e.expect("entry").path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out);
            } else if p
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.contains("workflow"))
            {
                out.push(p);
            }
        }
    }
    walk(&root, &mut files);
    assert!(files.len() >= 18, "{files:?}");
    let mut names = std::collections::HashSet::new();
    for file in &files {
        let mut wf = support::synthetic(load_file(file).expect("loads").workflow);
        // Several files share a directory name: make the names unique.
        while !names.insert(wf.name.clone()) {
            wf.name.push('_');
        }
        let wf = Arc::new(wf);
        h.install_wf(wf.clone());
        let mut input = serde_json::Map::new();
        for i in &wf.inputs {
            input.insert(i.name.clone(), json!("x".repeat((i.size / 100).min(4096) as usize)));
        }
        let r = h.invoke(&wf.name, serde_json::Value::Object(input));
        assert_eq!(r.status, "ok", "{}: {:?}", file.display(), r.error);
        check_dependencies(&wf, &r);
    }
}

/// Each function that ran started after every task it depends on (through virtual nodes) ended.
fn check_dependencies(wf: &Workflow, r: &Report) {
    use petgraph::Direction;
    for n in wf.graph.node_indices() {
        let Some(_) = wf.graph[n].task() else { continue };
        let mut preds = Vec::new();
        let mut stack: Vec<_> = wf.graph.neighbors_directed(n, Direction::Incoming).collect();
        while let Some(p) = stack.pop() {
            if wf.graph[p].task().is_some() {
                preds.push(p);
            } else {
                stack.extend(wf.graph.neighbors_directed(p, Direction::Incoming));
            }
        }
        for f in r.functions.iter().filter(|f| f.name == wf.graph[n].name && !f.skipped) {
            for &p in &preds {
                for g in r.functions.iter().filter(|g| g.name == wf.graph[p].name && !g.skipped) {
                    if f.element.is_some() && g.element.is_some() && f.element != g.element {
                        continue;
                    }
                    assert!(
                        f.start_us >= g.end_us,
                        "{}: `{}` started at {} µs before `{}` ended at {} µs",
                        wf.name,
                        f.name,
                        f.start_us,
                        g.name,
                        g.end_us
                    );
                }
            }
        }
    }
}

#[test]
fn a_full_pool_queues_calls_and_never_deadlocks() {
    let mut c = config();
    c.max_instances = 1;
    c.threads = 1;
    let h = Harness::with(c);
    h.install(FOREACH);
    let words: Vec<String> = (0..40).map(|i| format!("{i} ")).collect();
    let r = h.invoke("fe", json!({ "words": words }));
    assert_eq!(ok(&r)["out"], json!(words.concat()));
    let instances: std::collections::HashSet<_> = r.functions.iter().filter_map(|f| f.instance).collect();
    assert_eq!(instances.len(), 1, "one instance at most: {instances:?}");
    // One thread: the calls ran one after the other.
    let mut runs: Vec<_> = r.functions.iter().filter(|f| f.name == "word").collect();
    runs.sort_by(|a, b| a.end_us.total_cmp(&b.end_us));
    assert_eq!(runs.len(), 40);
}

#[test]
fn isolation_process_gives_a_function_its_own_instance() {
    let h = Harness::new();
    h.install(
        "name: iso
functions:
  echo: {pack: testkit, outputs: {out: bytes}}
  concat: {pack: testkit, isolation: process, outputs: {out: bytes}}
steps:
  - task: a
    function: echo
    inputs: {in: input.text}
  - task: b
    function: concat
    inputs: {in: a.out}
  - task: c
    function: echo
    inputs: {in: b.out}
output:
  out: c.out
",
    );
    let r = h.invoke("iso", json!({"text": "isolated"}));
    assert_eq!(ok(&r), &json!({"out": "isolated"}));
    let (a, b, c) = (record(&r, "a"), record(&r, "b"), record(&r, "c"));
    assert_ne!(a.instance, b.instance);
    assert_ne!(b.instance, c.instance);
    assert!(r.edges.iter().all(|e| e.tier == "shared-memory"), "{:?}", r.edges);
}

#[test]
fn idle_instances_beyond_the_minimum_are_stopped() {
    let mut c = config();
    c.min_instances = 0;
    c.idle_timeout = Duration::from_millis(200);
    let h = Harness::with(c);
    h.install(&format!(
        "name: idle\n{TESTKIT}steps:\n  - task: echo\n    inputs: {{in: input.text}}\noutput:\n  out: echo.out\n"
    ));
    assert_eq!(ok(&h.invoke("idle", json!({"text": "x"}))), &json!({"out": "x"}));
    assert_eq!(h.daemon.stats().expect("stats").instances, 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.daemon.stats().expect("stats").instances > 0 {
        assert!(Instant::now() < deadline, "the idle instance was not stopped");
        std::thread::sleep(Duration::from_millis(50));
    }
    // A new call starts a new instance.
    assert_eq!(ok(&h.invoke("idle", json!({"text": "y"}))), &json!({"out": "y"}));
}

#[test]
fn an_unknown_pack_or_function_is_refused_at_install() {
    let h = Harness::new();
    let wf = Arc::new(
        load_str(
            "name: u\nfunctions:\n  f: {pack: nosuch}\nsteps:\n  - task: f\n",
            "u.yaml",
            "u",
        )
        .expect("valid")
        .workflow,
    );
    let plan = partition(&wf, &ClusterView::uniform(1, 64), &PlannerConfig::default()).expect("plan");
    let e = h.daemon.install(wf, plan).expect_err("unknown pack").to_string();
    assert!(e.contains("pack `nosuch`") && e.contains("--pack nosuch=PATH"), "{e}");
    let wf = Arc::new(
        load_str(
            "name: v\nfunctions:\n  ecko: {pack: testkit}\nsteps:\n  - task: ecko\n",
            "v.yaml",
            "v",
        )
        .expect("valid")
        .workflow,
    );
    let plan = partition(&wf, &ClusterView::uniform(1, 64), &PlannerConfig::default()).expect("plan");
    let e = h.daemon.install(wf, plan).expect_err("unknown function").to_string();
    assert!(e.contains("function `ecko`") && e.contains("echo"), "{e}");
}

#[test]
fn concurrent_invocations_share_instances_and_all_finish() {
    let h = Harness::new();
    h.install(SWITCH);
    let pending: Vec<_> = (0..50)
        .map(|i| {
            let text = "x".repeat(i % 7);
            (
                text.clone(),
                h.daemon.invoke(Invoke::new("sw", 1, json!({ "text": text }))),
            )
        })
        .collect();
    for (text, rx) in pending {
        let r = rx.wait().expect("a report").expect("started");
        assert_eq!(ok(&r)["out"], json!(text));
    }
    h.assert_clean();
}

#[test]
fn a_pack_that_never_answers_the_handshake_fails_the_install_clearly() {
    let dir = std::env::temp_dir().join(format!("faasflow-e2e-mute-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let script = dir.join("mute-pack");
    std::fs::write(
        &script,
        "#!/bin/sh\nif [ \"$1\" = \"--list\" ]; then echo f; exit 0; fi\nexec sleep 100\n",
    )
    .expect("write");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let mut c = config();
    c.packs.insert("mute".into(), PackCommand::program(&script));
    c.spawn_timeout = Duration::from_millis(300);
    let h = Harness::with(c);
    let wf = Arc::new(
        load_str(
            "name: m\nfunctions:\n  f: {pack: mute}\nsteps:\n  - task: f\n",
            "m.yaml",
            "m",
        )
        .expect("valid")
        .workflow,
    );
    let plan = partition(&wf, &ClusterView::uniform(1, 64), &PlannerConfig::default()).expect("plan");
    let start = Instant::now();
    let e = h.daemon.install(wf, plan).expect_err("no handshake").to_string();
    assert!(
        e.contains("did not start") && e.contains("no handshake within 300ms"),
        "{e}"
    );
    assert!(start.elapsed() < Duration::from_secs(10));
    // One that does not even list its functions.
    let stuck = dir.join("stuck-pack");
    std::fs::write(&stuck, "#!/bin/sh\nexec sleep 100\n").expect("write");
    std::fs::set_permissions(&stuck, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let mut c = config();
    c.packs.insert("stuck".into(), PackCommand::program(&stuck));
    c.spawn_timeout = Duration::from_millis(300);
    let h = Harness::with(c);
    let wf = Arc::new(
        load_str(
            "name: s\nfunctions:\n  f: {pack: stuck}\nsteps:\n  - task: f\n",
            "s.yaml",
            "s",
        )
        .expect("valid")
        .workflow,
    );
    let plan = partition(&wf, &ClusterView::uniform(1, 64), &PlannerConfig::default()).expect("plan");
    let e = h.daemon.install(wf, plan).expect_err("no list").to_string();
    assert!(e.contains("--list` did not answer within 300ms"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_instance_that_corrupts_its_ring_is_stopped_and_the_daemon_serves_on() {
    let mut c = config();
    c.packs.insert(
        "rogue".into(),
        PackCommand {
            program: testkit(),
            args: vec!["--rogue".into(), "corrupt-ring".into()],
        },
    );
    let h = Harness::with(c);
    h.install("name: rogue\nfunctions:\n  f: {pack: rogue}\nsteps:\n  - task: f\n");
    h.install(&format!(
        "name: fine\n{TESTKIT}steps:\n  - task: echo\n    inputs: {{in: input.text}}\noutput:\n  out: echo.out\n"
    ));
    let start = Instant::now();
    let r = h.invoke("rogue", json!({}));
    let e = failed(&r);
    assert!(e.contains("malformed frame") && e.contains("function `f`"), "{e}");
    assert!(start.elapsed() < Duration::from_secs(10));
    assert_eq!(ok(&h.invoke("fine", json!({"text": "on"}))), &json!({"out": "on"}));
    drop(h);
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "stopping the daemon does not hang"
    );
}

#[test]
fn where_bpf_is_refused_auto_says_so_once_and_measures_through_proc() {
    // Run as user nobody (no CAP_BPF): needs root to switch.
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next())
        == Some("0");
    if !root || std::process::Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("skipped: needs root and setpriv to run faasflow as another user");
        return;
    }
    let dir = std::env::temp_dir().join(format!("faasflow-nobpf-{}-{}", std::process::id(), unique()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("touch.yaml");
    std::fs::write(
        &file,
        "name: p\nfunctions:\n  touch: {pack: testkit, outputs: {out: json}}\nsteps:\n  - task: touch\n    inputs: {mib: input.mib}\noutput:\n  mib: touch.out\n",
    )
    .expect("write");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let as_nobody = |probe: &str| {
        std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_faasflow"))
            .arg("run")
            .arg(&file)
            .args(["--input", r#"{"mib": 16}"#, "--report", "json", "--memory-probe", probe])
            .output()
            .expect("faasflow run")
    };
    // The build must be reachable by that user (it is not under a private home, say).
    let reachable = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_faasflow"))
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !reachable {
        eprintln!("skipped: user 65534 cannot run {}", env!("CARGO_BIN_EXE_faasflow"));
        return;
    }
    let out = as_nobody("auto");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let said: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("measuring memory through /proc"))
        .collect();
    assert_eq!(said.len(), 1, "{stderr}");
    assert!(said[0].contains("CAP_BPF"), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
    let peak = report["functions"][0]["peak_memory_bytes"].as_u64().expect("measured");
    assert!(peak >= 16 << 20, "{report}");
    // Asked for eBPF alone, the daemon does not start, and says what to do instead.
    let out = as_nobody("ebpf");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("--memory-probe proc"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// An instance is given its own workflow's arena segment and nothing else: a function that
/// searches every shared-memory file its process holds or maps finds a secret of its own
/// workflow, and neither the secret nor the file of another workflow that holds it.
#[test]
fn an_instance_maps_its_own_workflows_objects_and_no_others() {
    let h = Harness::new();
    let secret = format!("secret-{}-{}-of-vault", std::process::id(), unique());
    let probe: String = secret.chars().rev().collect();
    let functions =
        "functions:\n  echo: {pack: testkit, outputs: {out: bytes}}\n  snoop: {pack: testkit, outputs: {out: json}}\n";
    h.install(&format!(
        "name: vault\n{functions}steps:\n  - task: keep\n    function: echo\n    inputs: {{in: input.text}}\n  - task: look\n    function: snoop\n    inputs: {{in: input.probe, after: keep.out}}\noutput:\n  seen: look.out\n  kept: keep.out\n"
    ));
    h.install(&format!(
        "name: other\n{functions}steps:\n  - task: look\n    function: snoop\n    inputs: {{in: input.probe}}\noutput:\n  seen: look.out\n"
    ));
    let names = |seen: &serde_json::Value| -> Vec<String> {
        seen["memfds"]
            .as_array()
            .expect("memfds")
            .iter()
            .map(|v| v.as_str().expect("a name").to_owned())
            .collect()
    };
    // Within the vault, the secret is found: the search works.
    let r = h.invoke("vault", json!({"text": secret, "probe": probe}));
    let out = ok(&r);
    assert_eq!(out["kept"], json!(secret));
    assert_eq!(out["seen"]["found"], json!(true), "{out}");
    assert!(names(&out["seen"]).iter().any(|n| n.contains("vault@")), "{out}");
    // Keep a vault invocation's objects live in its segment while the other workflow looks.
    let rx = h
        .daemon
        .invoke(Invoke::new("vault", 1, json!({"text": secret, "probe": probe})));
    let r = h.invoke("other", json!({"probe": probe}));
    let seen = &ok(&r)["seen"];
    assert_eq!(
        seen["found"],
        json!(false),
        "another workflow's instance found the secret: {seen}"
    );
    let held = names(seen);
    assert!(held.iter().any(|n| n.contains("other@")), "its own segment: {held:?}");
    assert!(
        !held.iter().any(|n| n.contains("vault@") || n.ends_with("-daemon")),
        "another workflow's instance holds a segment not its own: {held:?}"
    );
    assert_eq!(ok(&rx.wait().expect("report").expect("started"))["kept"], json!(secret));
    h.assert_clean();
    // The daemon's own segment and one per version; a dropped version's goes with it.
    let segments = || {
        let text = h.daemon.metrics_text().expect("metrics");
        text.lines()
            .find_map(|l| l.strip_prefix("faasflow_arena_segments "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .expect("faasflow_arena_segments")
    };
    assert_eq!(segments(), 3.0);
    assert_eq!(h.daemon.drop_plan("other", 1).expect("drop"), 0);
    assert_eq!(segments(), 2.0);
}

/// A spill file that cannot be written (the spill directory replaced by a file: root cannot
/// write there either) leaves the object in memory, counted, and the invocation succeeds.
#[test]
fn a_spill_that_cannot_be_written_is_counted_and_the_object_stays_in_memory() {
    let mut c = config();
    c.quota_bytes = Some(0);
    let h = Harness::with(c);
    let spill = h.daemon.spill_dir().to_owned();
    std::fs::remove_dir(&spill).expect("the daemon's spill directory is empty");
    std::fs::write(&spill, "").expect("a file in its place");
    h.install(&format!(
        "name: spill\n{TESTKIT}steps:\n  - task: a\n    function: echo\n    inputs: {{in: input.text}}\n  - task: b\n    function: echo\n    inputs: {{in: a.out}}\noutput:\n  out: b.out\n"
    ));
    let r = h.invoke("spill", json!({"text": "kept in memory"}));
    assert_eq!(ok(&r), &json!({"out": "kept in memory"}));
    assert_eq!(r.spills, 0);
    assert_ne!(r.edges[0].tier, "spill", "read from memory");
    // `b` started on `a`'s thread the moment `a` ended, reading `a.out`: that output stays in
    // memory while it is read (no spill); `b.out`, the workflow's output, is spilled, and the
    // write fails.
    assert!(record(&r, "b").chained, "{:?}", r.functions);
    let metrics = h.daemon.metrics_text().expect("metrics");
    assert!(metrics.contains("\nfaasflow_spill_failures_total 1\n"), "{metrics}");
    assert!(metrics.contains("\nfaasflow_spills_total 0\n"), "{metrics}");
    drop(h);
    assert!(!spill.exists(), "the daemon removes what is in its place when it stops");
}

const HOPS: &str = "steps:\n  - task: a\n    function: echo\n    inputs: {in: input.text}\n  - task: b\n    function: echo\n    inputs: {in: a.out}\n  - task: c\n    function: echo\n    inputs: {in: b.out}\noutput:\n  out: c.out\n";

/// In a sequence whose steps run in one instance, each step after the first starts on the
/// thread of the step before it the moment that step ends (its start is that step's end, as
/// the instance stamped it), reading its input in place; the daemon counts those calls. With
/// `chain` off, every call goes on its own.
#[test]
fn a_step_that_waits_for_its_predecessor_alone_starts_on_its_thread() {
    for chain in [true, false] {
        let mut c = config();
        c.chain = chain;
        let h = Harness::with(c);
        h.install(&format!("name: hops\n{TESTKIT}{HOPS}"));
        for _ in 0..3 {
            let r = h.invoke("hops", json!({"text": "hop"}));
            assert_eq!(ok(&r), &json!({"out": "hop"}));
            let (a, b, c) = (record(&r, "a"), record(&r, "b"), record(&r, "c"));
            // `b` is sent with `a`; `c` is sent once the daemon takes `b` as started, which
            // `b`, a function of a few µs, may have ended by then: `c` then goes on its own.
            assert!(!a.chained);
            assert_eq!(b.chained, chain, "{:?}", r.functions);
            assert!(chain || !c.chained);
            if chain {
                assert_eq!(b.start_us, a.end_us);
            }
            if c.chained {
                assert_eq!(c.start_us, b.end_us);
            }
            for e in r.edges.iter().filter(|e| !e.from.starts_with("input.")) {
                assert_eq!(e.tier, "in-process", "{e:?}");
            }
            support::assert_exec_within_windows(&r, "hops");
        }
        let metrics = h.daemon.metrics_text().expect("metrics");
        let chained: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix("faasflow_calls_chained_total "))
            .and_then(|v| v.trim().parse().ok())
            .expect("faasflow_calls_chained_total");
        assert!(
            if chain {
                (3..=6).contains(&chained)
            } else {
                chained == 0
            },
            "{chained}"
        );
    }
}

/// A step sent to follow one that fails, panics or takes its instance down never runs and
/// holds nothing (`invoke` checks that the daemon is left clean), and the daemon serves on.
#[test]
fn a_follower_of_a_step_that_fails_never_runs_and_holds_nothing() {
    let h = Harness::new();
    h.install(&format!("name: hops\n{TESTKIT}{HOPS}"));
    for (function, says) in [("fail", "asked to fail"), ("panic", "panicked"), ("exit", "exit")] {
        h.install(&format!(
            "name: {function}s\nfunctions:\n  {function}: {{pack: testkit, outputs: {{out: bytes}}}}\n  echo: {{pack: testkit, outputs: {{out: bytes}}}}\nsteps:\n  - task: a\n    function: {function}\n  - task: b\n    function: echo\n    inputs: {{in: a.out}}\n"
        ));
        let r = h.invoke(&format!("{function}s"), json!({}));
        let e = failed(&r);
        assert!(e.contains(says), "{function}: {e}");
        let runs_of_b = r.functions.iter().filter(|f| f.name == "b" && !f.skipped);
        assert_eq!(runs_of_b.count(), 0, "{:?}", r.functions);
        let r = h.invoke("hops", json!({"text": "still here"}));
        assert_eq!(ok(&r), &json!({"out": "still here"}));
        assert!(record(&r, "b").chained);
    }
}
