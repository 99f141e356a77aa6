//! How references resolve where a workflow branches: alternatives after a switch, values from
//! before a switch, inputs declared by use.

use faasflow_core::Workflow;
use faasflow_planner::load::load_str;
use faasflow_planner::render::graph_text;

fn load(src: &str) -> Workflow {
    load_str(src, "wf.yaml", "wf")
        .unwrap_or_else(|e| panic!("{e}"))
        .workflow
}

fn line<'a>(text: &'a str, start: &str) -> &'a str {
    text.lines()
        .map(str::trim)
        .find(|l| l.starts_with(start))
        .unwrap_or_else(|| panic!("no line `{start}` in\n{text}"))
}

#[test]
fn flat_input_matched_in_both_branches_of_a_switch_takes_either() {
    let wf = load(
        "functions:\n- name: v\n  source: VIRTUAL\n  next: {type: switch, conditions: [INPUT.go, default], nodes: [a, b]}\n- name: a\n  source: a\n  output: {r: {type: normal, size: 8}}\n  next: {type: pass, nodes: [c]}\n- name: b\n  source: b\n  output: {r: {type: normal, size: 8}}\n  next: {type: pass, nodes: [c]}\n- name: c\n  source: c\n  input: {x: {type: pass, value: {function: INPUT, parameter: r}}}\n",
    );
    let g = graph_text(&wf);
    assert_eq!(line(&g, "x <-"), "x <- b.r | a.r", "{g}");
}

#[test]
fn hierarchical_switch_keeps_the_earlier_value_when_a_case_does_not_produce_it() {
    let wf = load(
        "name: main\ntype: pass\nsteps:\n  - {name: p, type: function, source: p, output: [x]}\n  - name: s\n    type: switch\n    choices:\n      - condition: INPUT.go == 1\n        go: {name: q, type: function, source: q, output: [x]}\n      - condition: default\n        go: {name: r, type: function, source: r, output: [y]}\n  - name: t\n    type: function\n    source: t\n    inputMappings: [{target: v, source: LOCAL.x}]\n",
    );
    let g = graph_text(&wf);
    assert_eq!(line(&g, "v <-"), "v <- q.x | p.x", "{g}");
}

#[test]
fn an_input_declared_by_use_becomes_a_list_when_iterated() {
    let wf = load(
        "name: wf\nfunctions:\n  a: {}\n  b: {}\nsteps:\n  - task: a\n    inputs: {x: input.items}\n  - foreach:\n      over: input.items\n      do: [{task: b, inputs: {i: each.item}}]\n",
    );
    assert_eq!(wf.inputs[0].kind, faasflow_core::dag::ValueKind::List);
}

#[test]
fn flat_foreach_body_followed_by_a_switch_goes_through_the_collect_node() {
    let wf = load(
        "functions:\n- name: a\n  source: a\n  output: {k: {type: keys, size: 8}}\n  next: {type: foreach, nodes: [b]}\n- name: b\n  source: b\n  output: {f: {type: normal, size: 8}}\n  next: {type: switch, conditions: [INPUT.f, default], nodes: [c, d]}\n- name: c\n  source: c\n- name: d\n  source: d\n",
    );
    let g = graph_text(&wf);
    assert!(g.contains("a.collect -> b.switch : control"), "{g}");
    assert!(!g.contains("b -> b.switch : control"), "{g}");
    assert!(
        line(&g, "c = task").find(" in ").is_none(),
        "c is outside the foreach:\n{g}"
    );
}

/// Large inputs may travel apart only where no engine needs their JSON value.
#[test]
fn only_inputs_tasks_alone_read_by_their_own_binding_are_stageable() {
    let wf = load_str(
        "
name: staging
inputs:
  plain: bytes
  cond: json
  out: bytes
  first: bytes
  items: list
functions:
  f: {outputs: {out: bytes}}
steps:
  - task: a
    function: f
    inputs: {x: input.plain, y: input.out}
  - switch:
      cases:
        - if: input.cond == 1
          then:
            - task: b
              function: f
              inputs: {x: [a.out, input.first]}
      default: []
  - foreach:
      over: input.items
      do:
        - task: c
          function: f
          inputs: {x: input.plain}
output:
  o: input.out
  a: a.out
",
        "staging.yaml",
        "staging",
    )
    .unwrap()
    .workflow;
    assert_eq!(wf.stageable_inputs(), vec!["plain".to_owned()]);
}
