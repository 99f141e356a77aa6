//! The critical path is the chain of attempts that determined the invocation's end, observed
//! from the attempts' times: not the path of the heaviest functions.

use faasflow_core::dag::Workflow;
use faasflow_core::report::{FunctionRecord, critical_path};

fn load(src: &str) -> Workflow {
    faasflow_planner::load::load_str(src, "test.yaml", "test")
        .unwrap()
        .workflow
}

fn rec(name: &str, element: Option<u32>, start: f64, end: f64, exec: f64) -> FunctionRecord {
    FunctionRecord {
        name: name.into(),
        worker: "local".into(),
        element,
        instance: Some(1),
        start_us: start,
        end_us: end,
        exec_us: exec,
        data_us: 0.0,
        peak_memory_bytes: None,
        output_bytes: Default::default(),
        attempt: 1,
        skipped: false,
        error: None,
        failure: None,
        chained: false,
    }
}

const PARALLEL: &str = "name: par
functions: {a: {}, b: {}, c: {}, d: {}}
steps:
  - task: a
  - parallel:
      - task: b
      - task: c
  - task: d
";

/// `b` works longest, but `c` waited for an instance and ended last: `d` waited for `c`.
#[test]
fn the_input_that_arrived_last_is_on_the_path_not_the_heaviest() {
    let wf = load(PARALLEL);
    let runs = [
        rec("a", None, 0.0, 10.0, 9.0),
        rec("b", None, 11.0, 100.0, 88.0),
        rec("c", None, 90.0, 110.0, 19.0),
        rec("d", None, 112.0, 120.0, 7.0),
    ];
    let path = critical_path(&wf, &runs);
    assert_eq!(path.names, ["a", "c", "d"]);
    assert_eq!(path.exec_us, 9.0 + 19.0 + 7.0);
    // When `b` ends last, it is on the path.
    let runs = [
        rec("a", None, 0.0, 10.0, 9.0),
        rec("b", None, 11.0, 100.0, 88.0),
        rec("c", None, 11.0, 20.0, 8.0),
        rec("d", None, 101.0, 120.0, 18.0),
    ];
    assert_eq!(critical_path(&wf, &runs).names, ["a", "b", "d"]);
}

/// Within a foreach body, an element waits for its own element's steps; after the foreach,
/// the step waits for the element that ended last; a retry waits for its earlier attempt.
#[test]
fn elements_and_retries_are_followed_as_they_ran() {
    let wf = load(
        "name: fe
functions: {split: {outputs: {parts: list}}, count: {}, tally: {}, merge: {}}
steps:
  - task: split
  - foreach:
      over: split.parts
      do:
        - task: count
          inputs: {x: each.item}
        - task: tally
  - task: merge
",
    );
    let mut retry = rec("count", Some(0), 40.0, 70.0, 29.0);
    retry.attempt = 2;
    let mut failed = rec("count", Some(0), 12.0, 35.0, 22.0);
    failed.error = Some("crashed".into());
    let runs = [
        rec("split", None, 0.0, 10.0, 9.0),
        failed,
        rec("count", Some(1), 12.0, 60.0, 47.0),
        rec("tally", Some(1), 61.0, 65.0, 3.0),
        retry,
        rec("tally", Some(0), 71.0, 75.0, 3.0),
        rec("merge", None, 76.0, 80.0, 3.0),
    ];
    let path = critical_path(&wf, &runs);
    assert_eq!(path.names, ["split", "count[0]", "count[0]", "tally[0]", "merge"]);
    assert_eq!(path.exec_us, 9.0 + 22.0 + 29.0 + 3.0 + 3.0);
}

#[test]
fn no_attempt_no_path() {
    let wf = load(PARALLEL);
    assert!(critical_path(&wf, &[]).names.is_empty());
}
