//! Workflow files are untrusted input: whatever the bytes, loading ends with a workflow or a
//! located error, never a panic.

use faasflow_planner::load::load_str;
use proptest::prelude::*;

const SEEDS: [&str; 4] = [
    include_str!("../../tests/fixtures/faasflow-v1/benchmark/video/flat_workflow.yaml"),
    include_str!("../../tests/fixtures/faasflow-v1/benchmark/illgal_recognizer/flat_workflow.yaml"),
    include_str!("../../tests/fixtures/faasflow-v1/examples/foreach/workflow.yaml"),
    include_str!("../../docs/wdl.md"),
];

fn seed_text(i: usize) -> String {
    let s = SEEDS[i % SEEDS.len()];
    // The docs file: take its first YAML example.
    match s.split_once("```yaml\n") {
        Some((_, rest)) => rest.split("```").next().unwrap().to_owned(),
        None => s.to_owned(),
    }
}

fn check(text: &str) {
    if let Err(e) = load_str(text, "fuzz.yaml", "fuzz") {
        assert!(!e.message.is_empty());
        assert!(e.to_string().starts_with("fuzz.yaml"));
        // YAML breaks lines at \n, \r\n and a lone \r (FaaSFlow's examples use \r\n).
        let lines = text.replace("\r\n", "\n").replace('\r', "\n").lines().count() as u32 + 1;
        assert!(e.pos.line <= lines, "error past the end: {e}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        check(&text);
    }

    #[test]
    fn yaml_like_text_never_panics(text in "([a-z_]{1,6}|[:\\-\\[\\]{},&*!|>'\" ]|\n {0,4}){0,120}") {
        check(&text);
    }

    #[test]
    fn mutated_workflows_never_panic(seed in 0usize..4, cuts in proptest::collection::vec((0usize..4000, 0usize..40, "[a-z:\\- \n{}\\[\\]*&]{0,5}"), 1..6)) {
        let mut text = seed_text(seed);
        for (at, len, insert) in cuts {
            let chars: Vec<char> = text.chars().collect();
            let at = at % (chars.len() + 1);
            let end = (at + len).min(chars.len());
            text = chars[..at].iter().chain(insert.chars().collect::<Vec<_>>().iter()).chain(chars[end..].iter()).collect();
        }
        check(&text);
    }
}

#[test]
fn a_lone_carriage_return_ends_a_line() {
    // Found by the property above: a CRLF file with its \n cut off leaves a lone \r.
    let text =
        "name: main\r\ntype: pass\r\nsteps:\r\n  - {name: a, type: function}\r\n      \r{z-c ---> square \r\n\r\n# end";
    check(text);
}

#[test]
fn alias_bombs_are_refused() {
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let p = i - 1;
        text.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    let e = load_str(&text, "bomb.yaml", "bomb").unwrap_err();
    assert_eq!(
        e.message,
        "the YAML's aliases copy more than 1,000,000 values, the limit of values copied through aliases"
    );
}

#[test]
fn deep_nesting_is_refused() {
    let text = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let e = load_str(&text, "deep.yaml", "deep").unwrap_err();
    assert!(e.message.contains("nested"), "{e}");
}
