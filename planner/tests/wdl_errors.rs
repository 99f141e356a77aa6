//! One test per kind of error a workflow file can have. Each shows the whole message, as a
//! user would read it: place, what is wrong, what was expected, and a hint.

use expect_test::{Expect, expect};
use faasflow_planner::load::load_str;

fn check(src: &str, expect: Expect) {
    let err = load_str(src, "wf.yaml", "wf").expect_err("this workflow must be rejected");
    expect.assert_eq(&format!("[{}] {err}", err.kind.as_str()));
}

const HEAD: &str = "name: wf\nfunctions:\n  start: {outputs: {files: {type: list}, n: json, blob: bytes}}\n  count: {outputs: [counts]}\n";

fn wf(steps: &str) -> String {
    format!("{HEAD}steps:\n{steps}")
}

#[test]
fn unreadable_yaml() {
    check(
        "name: wf\nsteps:\n  - task: a\n    inputs: {x: start.files\n",
        expect![[r#"
        [yaml] wf.yaml:5:1: error: this is not readable YAML: while parsing a flow mapping, did not find expected ',' or '}'
          hint: check the indentation and the `:` and `-` around this place"#]],
    );
}

#[test]
fn wrong_type() {
    check(
        "name: wf\nfunctions:\n  a: {memory: lots}\nsteps:\n  - task: a\n",
        expect![[r#"
            [type] wf.yaml:3:15: error: found `lots` here
              expected: a memory size, like 256MiB
              hint: `lots` cannot be used: it does not start with a number; write bytes, or a number with a unit: 512, 64KB, 1.5MB, 2TB, 256MiB"#]],
    );
}

#[test]
fn unknown_key() {
    check(
        "name: wf\nfunctions:\n  a: {timout: 3s}\nsteps:\n  - task: a\n",
        expect![[r#"
            [unknown-key] wf.yaml:3:7: error: unknown key `timout` in function `a`
              expected: one of: pack, image, memory, cpu, timeout, retry, isolation, network, idempotent, scale, runtime, memory_use, outputs, description, language, handler, code, requirements
              hint: did you mean `timeout`?"#]],
    );
}

#[test]
fn missing_key() {
    check(
        "name: wf\nfunctions:\n  a: {}\n",
        expect![[r#"
        [missing-key] wf.yaml:1:1: error: the workflow has no `steps`
          expected: `steps:` with a list of steps"#]],
    );
}

#[test]
fn unknown_function() {
    check(
        &wf("  - task: start\n  - task: cout\n"),
        expect![[r#"
        [unknown-function] wf.yaml:7:11: error: unknown function `cout`
          expected: one of the functions declared under `functions:` (count, start)
          hint: did you mean `count`?"#]],
    );
}

#[test]
fn duplicate_name() {
    check(
        &wf("  - task: start\n  - task: start\n"),
        expect![[r#"
        [duplicate-name] wf.yaml:7:11: error: the name `start` is used twice
          expected: a name no other step has
          hint: it was first used at line 6, column 11; rename one of them (`function:` lets two tasks call one function)"#]],
    );
}

#[test]
fn cycle() {
    check(
        &wf("  - task: count\n    inputs: {x: start.n}\n  - task: start\n    inputs: {y: count.counts}\n"),
        expect![[r#"
            [cycle] wf.yaml:6:11: error: `count` reads `start.n`, but `start` runs after `count` (count → start → count)
              expected: each step reads only outputs of steps that run before it
              hint: move `start` before `count`, or read an output of a step that runs earlier"#]],
    );
}

#[test]
fn dangling_reference_to_step() {
    check(
        &wf("  - task: start\n  - task: count\n    inputs: {x: strat.files}\n"),
        expect![[r#"
            [dangling-reference] wf.yaml:8:17: error: there is no step named `strat`
              expected: `input.<name>` or `<step>.<output>` with one of the steps: count, start
              hint: did you mean `start`?"#]],
    );
}

#[test]
fn dangling_reference_to_output() {
    check(
        &wf("  - task: start\n  - task: count\n    inputs: {x: start.file}\n"),
        expect![[r#"
        [dangling-reference] wf.yaml:8:17: error: task `start` (function `start`) has no output `file`
          expected: one of its declared outputs: files, n, blob
          hint: did you mean `start.files`?"#]],
    );
}

#[test]
fn dangling_reference_to_input() {
    check(
        "name: wf\ninputs:\n  text: bytes\nfunctions:\n  a: {}\nsteps:\n  - task: a\n    inputs: {x: input.txt}\n",
        expect![[r#"
            [dangling-reference] wf.yaml:8:17: error: the workflow has no input `txt`
              expected: one of the inputs declared under `inputs:`: text
              hint: did you mean `input.text`?"#]],
    );
}

#[test]
fn foreach_over_non_list() {
    check(
        &wf("  - task: start\n  - foreach:\n      over: start.blob\n      do:\n        - task: count\n"),
        expect![[r#"
        [foreach-over-non-list] wf.yaml:8:13: error: foreach iterates over `start.blob`, which is bytes
          expected: a list: an output or input declared with `type: list`
          hint: declare it as `{type: list}` if the function returns a JSON list"#]],
    );
}

#[test]
fn element_outside_foreach() {
    check(
        &wf("  - task: start\n  - task: count\n    inputs: {x: each.item}\n"),
        expect![[r#"
        [dangling-reference] wf.yaml:8:17: error: `each.item` is used outside of its foreach
          expected: a foreach element is read only inside the foreach's `do` steps
          hint: read the foreach's results after it through the body's outputs (`<step>.<output>` gives the list)"#]],
    );
}

#[test]
fn switch_without_default() {
    check(
        &wf("  - task: start\n  - switch:\n      cases:\n        - if: start.n > 3\n          then: [{task: count}]\n"),
        expect![[r#"
        [switch-without-default] wf.yaml:8:7: error: this switch has no `default`
          expected: `default:` with the steps to run when no case holds
          hint: write `default: []` if nothing should run then"#]],
    );
}

#[test]
fn condition_not_cel() {
    check(
        &wf(
            "  - task: start\n  - switch:\n      cases:\n        - if: start.n > 3 and start.n < 9\n          then: [{task: count}]\n      default: []\n",
        ),
        expect![[r#"
            [condition] wf.yaml:9:15: error: `start.n > 3 and start.n < 9` is not a valid CEL condition: Syntax error: mismatched input 'and'
              expected: a CEL expression such as `upload.flag == true && input.size > 10`
              hint: CEL uses && || ! (not and/or/not), == for equality, and double or single quotes for strings"#]],
    );
}

#[test]
fn condition_reads_bytes() {
    check(
        &wf(
            "  - task: start\n  - switch:\n      cases:\n        - if: start.blob == 'x'\n          then: [{task: count}]\n      default: []\n",
        ),
        expect![[r#"
            [condition] wf.yaml:9:15: error: the condition reads `start.blob`, which is declared as bytes
              expected: conditions read json (or list) values
              hint: declare the output with `type: json` if it holds a JSON value like true, 3 or "x""#]],
    );
}

#[test]
fn step_without_kind() {
    check(
        &wf("  - tsk: start\n"),
        expect![[r#"
        [missing-key] wf.yaml:6:5: error: this step says neither what it runs nor how
          expected: one of the keys: task, sequence, parallel, switch, foreach
          hint: did you mean `task` instead of `tsk`?"#]],
    );
}

#[test]
fn not_a_workflow() {
    check(
        "- just\n- a list\n",
        expect![[r#"
        [missing-key] wf.yaml:1:1: error: this does not look like a workflow (found a list at the top)
          expected: faasflow WDL (`name`, `functions`, `steps`), or a FaaSFlow workflow.yaml (`type`) or flat_workflow.yaml (`functions` list)
          hint: see docs/wdl.md for the format"#]],
    );
}

#[test]
fn faasflow_unknown_next_node() {
    check(
        "functions:\n- name: a\n  source: a\n  next:\n    type: pass\n    nodes: [b]\n",
        expect![[r#"
            [unknown-function] wf.yaml:6:13: error: unknown function `b`
              expected: one of the functions of this workflow: a
              hint: did you mean `a`?"#]],
    );
}

#[test]
fn faasflow_switch_without_default() {
    check(
        "functions:\n- name: v\n  source: VIRTUAL\n  next:\n    type: switch\n    conditions: [INPUT.x]\n    nodes: [a]\n- name: a\n  source: a\n",
        expect![[r#"
            [switch-without-default] wf.yaml:5:5: error: the switch after `v` has no `default` condition
              expected: `default` as one of the conditions, for the node to run when no other holds
              hint: add `- default` to `conditions` and the node to run then to `nodes` (END if nothing should run)"#]],
    );
}

#[test]
fn faasflow_untranslatable_condition() {
    check(
        "functions:\n- name: v\n  source: VIRTUAL\n  next:\n    type: switch\n    conditions: [INPUT.x ** 2 > 4, default]\n    nodes: [a, b]\n- name: a\n  source: a\n- name: b\n  source: b\n",
        expect![[r#"
            [unsupported] wf.yaml:6:18: error: cannot translate the condition `INPUT.x ** 2 > 4` to CEL: the operator `**`
              expected: names like INPUT.x, numbers, strings, comparisons (< <= > >= == !=), + - * / %, and, or, not, True, False, None, parentheses
              hint: rewrite the workflow in faasflow's own WDL, where conditions are CEL (docs/wdl.md)"#]],
    );
}

#[test]
fn faasflow_cycle() {
    check(
        "functions:\n- name: a\n  source: a\n  next: {type: pass, nodes: [b]}\n- name: b\n  source: b\n  next: {type: pass, nodes: [a]}\n",
        expect![[r#"
            [cycle] wf.yaml:2:9: error: the steps lead in a circle: a → b → a
              expected: a graph without cycles
              hint: remove the `next` entry (or the reference) that leads back to an earlier step"#]],
    );
}

#[test]
fn faasflow_foreach_without_keys() {
    check(
        "functions:\n- name: a\n  source: a\n  output: {x: {type: normal, size: 8}}\n  next: {type: foreach, nodes: [b]}\n- name: b\n  source: b\n",
        expect![[r#"
            [foreach-over-non-list] wf.yaml:5:9: error: `a` is followed by a foreach but has no output of type `keys` to iterate over
              expected: an output declared with `type: keys` (the list of elements)"#]],
    );
}

#[test]
fn element_of_a_named_foreach() {
    check(
        &wf(
            "  - task: start\n  - foreach:\n      name: pages\n      over: start.files\n      do:\n        - task: count\n          inputs: {x: each.item}\n",
        ),
        expect![[r#"
            [dangling-reference] wf.yaml:12:23: error: this foreach is named `pages`, so its element is `pages.item`
              expected: `pages.item` or `pages.index`
              hint: `each` is the element of a foreach that has no name"#]],
    );
}

#[test]
fn step_name_with_a_dot() {
    check(
        &wf("  - task: start.now\n    function: start\n"),
        expect![[r#"
            [type] wf.yaml:6:11: error: `start.now` cannot be a step name
              expected: letters, digits and `_`, not starting with a digit, so that `<name>.<output>` can be read in references and CEL conditions
              hint: rename it, e.g. `start_now`"#]],
    );
}

#[test]
fn condition_that_is_a_constant() {
    check(
        &wf(
            "  - task: start\n  - switch:\n      cases:\n        - if: '42'\n          then: [{task: count}]\n      default: []\n",
        ),
        expect![[r#"
            [condition] wf.yaml:9:15: error: the condition `42` is a constant, not true or false
              expected: a comparison or a test that is true or false, like `step.count > 3`"#]],
    );
}

#[test]
fn condition_calling_an_unknown_function() {
    check(
        &wf(
            "  - task: start\n  - switch:\n      cases:\n        - if: foo(start.n)\n          then: [{task: count}]\n      default: []\n",
        ),
        expect![[r#"
            [condition] wf.yaml:9:15: error: the condition `foo(start.n)` calls `foo`, which CEL does not have
              expected: CEL's functions: size, contains, startsWith, endsWith, matches, int, uint, double, string, bool, bytes, type, dyn, duration, timestamp, max, min"#]],
    );
}

#[test]
fn switch_case_without_then() {
    check(
        &wf("  - task: start\n  - switch:\n      cases:\n        - if: start.n > 1\n      default: []\n"),
        expect![[r#"
        [missing-key] wf.yaml:9:11: error: a switch case has no `then`
          expected: `then:` with the steps to run when the condition holds (`[]` for none)"#]],
    );
}

#[test]
fn contention_with_an_unknown_task() {
    check(
        &format!(
            "{}contention:\n  - [start, cont]\n",
            wf("  - task: start\n  - task: count\n")
        ),
        expect![[r#"
        [dangling-reference] wf.yaml:9:13: error: there is no task named `cont`
          expected: contention pairs name tasks: count, start
          hint: did you mean `count`?"#]],
    );
}

#[test]
fn memory_use_above_memory() {
    check(
        "name: wf\nfunctions:\n  a: {memory: 256MiB, memory_use: 1GiB}\nsteps:\n  - task: a\n",
        expect![[r#"
        [type] wf.yaml:3:35: error: `memory_use` (1024 MiB) is more than `memory` (256 MiB)
          expected: the peak memory the function uses, at most the memory it is given
          hint: raise `memory`, or lower `memory_use`"#]],
    );
}

#[test]
fn negative_and_oversized_numbers() {
    check(
        "name: wf\nfunctions:\n  a: {outputs: {x: {size: 2000TB}}}\nsteps:\n  - task: a\n",
        expect![[r#"
        [type] wf.yaml:3:27: error: found `2000TB` here
          expected: a size, like 64KB
          hint: `2000TB` cannot be used: it is larger than 1 PB; write bytes, or a number with a unit: 512, 64KB, 1.5MB, 2TB, 256MiB"#]],
    );
    check(
        "name: wf\nfunctions:\n  a: {scale: -1}\nsteps:\n  - task: a\n",
        expect![[r#"
        [type] wf.yaml:3:14: error: found `-1` here
          expected: a number of instances (an integer from 1 to 10000)
          hint: `-1` cannot be used: it is negative"#]],
    );
    check(
        "name: wf\nfunctions:\n  a: {outputs: {x: {size: 5PB}}}\nsteps:\n  - task: a\n",
        expect![[r#"
        [type] wf.yaml:3:27: error: found `5PB` here
          expected: a size, like 64KB
          hint: `5PB` cannot be used: its unit is not one of B, KB, MB, GB, TB, KiB, MiB, GiB, TiB; write bytes, or a number with a unit: 512, 64KB, 1.5MB, 2TB, 256MiB"#]],
    );
}

#[test]
fn tab_in_yaml() {
    check(
        "name:\twf\nsteps: []\n",
        expect![[r#"
        [yaml] wf.yaml:1:7: error: this is not readable YAML: ':' must be followed by a valid YAML whitespace
          hint: YAML wants spaces here: replace tabs with spaces (indentation, and after `:` and `-`)"#]],
    );
}

#[test]
fn valid_cel_functions_and_macros_are_accepted() {
    let src = wf(
        "  - task: start\n  - switch:\n      cases:\n        - if: size(start.files) > 2 && start.files.all(f, f != '') && string(start.n).startsWith('1')\n          then: [{task: count}]\n      default: []\n",
    );
    faasflow_planner::load::load_str(&src, "wf.yaml", "wf").unwrap();
}

#[test]
fn read_from_another_case_of_the_same_switch() {
    check(
        &wf(
            "  - task: start\n  - switch:\n      cases:\n        - if: start.n > 1\n          then: [{task: count}]\n      default:\n        - task: again\n          function: count\n          inputs: {x: count.counts}\n",
        ),
        expect![[r#"
            [dangling-reference] wf.yaml:14:23: error: `again` reads `count.counts`, but `count` is in another case of switch `switch@7:5`, so it never runs when `again` does
              expected: an output of a step that runs before this one on the same path
              hint: read it after the switch (a list of references takes whichever case ran), or from a step before the switch"#]],
    );
}

#[test]
fn faasflow_condition_on_a_name_cel_cannot_read() {
    check(
        "functions:\n- name: get-flag\n  source: g\n  output: {flag: {type: normal, size: 8}}\n  next: {type: switch, conditions: [INPUT.flag, default], nodes: [a, b]}\n- name: a\n  source: a\n- name: b\n  source: b\n",
        expect![[r#"
            [unsupported] wf.yaml:5:37: error: the condition `INPUT.flag` reads `get-flag.flag`, which CEL cannot name
              expected: function and output names of letters, digits and `_`
              hint: rename `get-flag` (or its output `flag`) in the workflow file"#]],
    );
}

#[test]
fn faasflow_nested_foreach() {
    check(
        "functions:\n- name: a\n  source: a\n  output: {k: {type: keys, size: 8}}\n  next: {type: foreach, nodes: [b]}\n- name: b\n  source: b\n  output: {k: {type: keys, size: 8}}\n  next: {type: foreach, nodes: [c]}\n- name: c\n  source: c\n",
        expect![[r#"
            [unsupported] wf.yaml:9:9: error: `b` runs inside a foreach and starts another foreach
              expected: one function per foreach element, as FaaSFlow ran them
              hint: write nested foreach steps in faasflow's WDL (docs/wdl.md)"#]],
    );
}

#[test]
fn faasflow_hierarchical_condition_with_two_producers() {
    check(
        "name: main\ntype: pass\nsteps:\n  - {name: p, type: function, source: p, output: [x]}\n  - name: s\n    type: switch\n    choices:\n      - condition: LOCAL.x == 1\n        go: {name: q, type: function, source: q, output: [x]}\n      - condition: default\n        go: {name: r, type: function, source: r, output: [x]}\n  - name: t\n    type: switch\n    choices:\n      - condition: LOCAL.x == 1\n        go: {name: u, type: function, source: u}\n      - condition: default\n        go: {name: v, type: function, source: v}\n",
        expect![[r#"
            [unsupported] wf.yaml:15:20: error: `LOCAL.x` in `LOCAL.x == 1` could come from q.x or r.x
              hint: write the condition in faasflow's WDL and name the producer"#]],
    );
}

#[test]
fn retry_on_an_unknown_kind_of_failure() {
    check(
        "name: wf\nfunctions:\n  a: {retry: {attempts: 3, on: [crash, timout]}}\nsteps:\n  - task: a\n",
        expect![[r#"
            [type] wf.yaml:3:40: error: `timout` is not a kind of failure
              expected: one of error, panic, crash, timeout, data
              hint: did you mean `timeout`?"#]],
    );
}

#[test]
fn retry_on_nothing() {
    check(
        "name: wf\nfunctions:\n  a: {retry: {attempts: 3, on: []}}\nsteps:\n  - task: a\n",
        expect![[r#"
            [type] wf.yaml:3:32: error: `on` lists no kind of failure
              expected: one or more of error, panic, crash, timeout, data
              hint: to never retry, write `retry: 1` (one attempt)"#]],
    );
}

#[test]
fn a_deadline_of_zero() {
    check(
        "name: wf\ndeadline: 0s\nfunctions:\n  a: {}\nsteps:\n  - task: a\n",
        expect![[r#"
            [type] wf.yaml:2:11: error: `deadline` must be longer than 0
              expected: a duration, like 30s"#]],
    );
}

const CATCHING: &str = "name: wf\nfunctions:\n  fetch: {outputs: {page: bytes, meta: json}}\n  cached: {outputs: {page: bytes}}\n  render: {}\nsteps:\n  - task: fetch\n    catch: cached\n";

#[test]
fn a_catch_step_without_an_output_read_later() {
    check(
        &format!("{CATCHING}  - task: render\n    inputs: {{m: fetch.meta}}\n"),
        expect![[r#"
            [dangling-reference] wf.yaml:10:17: error: `fetch.meta` is read here, but catch step `cached` (function `cached`), which stands in for `fetch` when it fails, has no output `meta`
              expected: every output of `fetch` that later steps read, declared on the catch step's function too
              hint: declare `meta` under `functions: cached: outputs:`"#]],
    );
}

#[test]
fn a_catch_step_reading_the_output_of_the_step_it_catches() {
    check(
        "name: wf\nfunctions:\n  fetch: {outputs: {page: bytes}}\n  cached: {outputs: {page: bytes}}\nsteps:\n  - task: fetch\n    catch: {task: cached, inputs: {p: fetch.page}}\n",
        expect![[r#"
            [dangling-reference] wf.yaml:7:39: error: catch step `cached` reads `fetch.page`, but it runs only when `fetch` failed, so that output never exists
              expected: the failure, as the input `error`, or outputs of earlier steps"#]],
    );
}

#[test]
fn a_catch_step_declaring_the_error_input() {
    check(
        "name: wf\nfunctions:\n  fetch: {}\n  cached: {}\nsteps:\n  - task: fetch\n    catch: {task: cached, inputs: {error: input.x}}\n",
        expect![[r#"
            [duplicate-name] wf.yaml:7:36: error: catch step `cached` declares an input `error`
              expected: inputs other than `error`
              hint: a catch step receives the failure of `fetch` as its input `error`"#]],
    );
}

#[test]
fn a_catch_step_with_a_catch() {
    check(
        "name: wf\nfunctions:\n  fetch: {}\n  cached: {}\n  stale: {}\nsteps:\n  - task: fetch\n    catch: {task: cached, catch: stale}\n",
        expect![[r#"
            [type] wf.yaml:8:34: error: catch step `cached` has a catch of its own
              expected: a catch step without `catch`
              hint: when the catch step fails, the invocation fails with its error"#]],
    );
}

#[test]
fn too_many_values_written() {
    // No alias: the message is about values in the file, not about aliases.
    let text = format!("[{}0]\n", "0,".repeat(faasflow_planner::yaml::MAX_VALUES));
    check(
        &text,
        expect![[r#"
            [yaml] wf.yaml:1:8000002: error: the YAML holds more than 4,000,000 values, the limit of values in a workflow file
              hint: split the workflow, or write it with fewer keys (defaults need not be written)"#]],
    );
}

#[test]
fn too_many_values_copied_through_aliases() {
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..8 {
        let p = i - 1;
        text.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    check(
        &text,
        expect![[r#"
            [yaml] wf.yaml:6:45: error: the YAML's aliases copy more than 1,000,000 values, the limit of values copied through aliases
              hint: each `*alias` copies all of its anchor's values: repeat less through aliases"#]],
    );
}

#[test]
fn a_workflow_name_with_a_line_break() {
    check(
        "name: \"wf\\nINFO forged log line\"\nfunctions:\n  a: {}\nsteps:\n  - task: a\n",
        expect![[r#"
            [type] wf.yaml:1:7: error: the workflow's name `wf\nINFO forged log line` holds a control character (\n, U+000A)
              expected: a name of at most 256 bytes, without control characters
              hint: remove the line break, tab or other control character"#]],
    );
}

#[test]
fn a_workflow_name_with_a_nul() {
    check(
        "name: \"wf\\0\"\nfunctions:\n  a: {}\nsteps:\n  - task: a\n",
        expect![[r#"
            [type] wf.yaml:1:7: error: the workflow's name `wf\0` holds a control character (\0, U+0000)
              expected: a name of at most 256 bytes, without control characters
              hint: remove the line break, tab or other control character"#]],
    );
}

#[test]
fn a_workflow_name_of_a_megabyte() {
    check(
        &format!(
            "name: {}\nfunctions:\n  a: {{}}\nsteps:\n  - task: a\n",
            "w".repeat(1 << 20)
        ),
        expect![[r#"
            [type] wf.yaml:1:7: error: the workflow's name `wwwwwwwwwwwwwwwwwwwwwwwwwwwwwwww…` is 1048576 bytes long
              expected: a name of at most 256 bytes, without control characters
              hint: shorten it"#]],
    );
}

#[test]
fn a_step_name_too_long() {
    check(
        &format!(
            "name: wf\nfunctions:\n  a: {{}}\nsteps:\n  - task: {}\n    function: a\n",
            "s".repeat(300)
        ),
        expect![[r#"
            [type] wf.yaml:5:11: error: the step name `ssssssssssssssssssssssssssssssss…` is 300 bytes long
              expected: a name of at most 256 bytes, without control characters
              hint: shorten it"#]],
    );
}

#[test]
fn a_function_name_with_a_tab() {
    check(
        "name: wf\nfunctions:\n  \"a\\tb\": {}\nsteps:\n  - task: a\n",
        expect![[r#"
        [type] wf.yaml:3:3: error: the function name `a\tb` holds a control character (\t, U+0009)
          expected: a name of at most 256 bytes, without control characters
          hint: remove the line break, tab or other control character"#]],
    );
}

#[test]
fn a_faasflow_function_name_with_a_line_break() {
    check(
        "functions:\n  - name: \"a\\nb\"\n    runtime: 1\n    next: {type: pass, nodes: []}\n",
        expect![[r#"
            [type] wf.yaml:2:11: error: the function name `a\nb` holds a control character (\n, U+000A)
              expected: a name of at most 256 bytes, without control characters
              hint: remove the line break, tab or other control character"#]],
    );
}

#[test]
fn a_faasflow_workflow_named_after_a_file_with_a_line_break() {
    let flat = "functions:\n  - name: a\n    runtime: 1\n    next: {type: pass, nodes: []}\n";
    let hier = "type: function\nname: a\n";
    for text in [flat, hier] {
        let err = load_str(text, "flat_workflow.yaml", "bad\nname").expect_err("refused");
        expect![[r#"
            [type] flat_workflow.yaml: error: the workflow's name `bad\nname` holds a control character (\n, U+000A)
              expected: a name of at most 256 bytes, without control characters
              hint: FaaSFlow files carry no name, so it was taken from the file's name (or its directory's): rename them, or give the flat form a `name:`"#]]
        .assert_eq(&format!("[{}] {err}", err.kind.as_str()));
    }
}

#[test]
fn python_functions_are_checked_where_they_are_declared() {
    check(
        "name: wf\nfunctions:\n  a: {language: ruby, handler: 'x:y'}\nsteps:\n  - task: a\n",
        expect![[r#"
            [type] wf.yaml:3:17: error: unknown language `ruby`
              expected: python (a function in Rust names its `pack` instead)"#]],
    );
    check(
        "name: wf\nfunctions:\n  a: {handler: 'words:count'}\nsteps:\n  - task: a\n",
        expect![[r#"
            [type] wf.yaml:3:16: error: `handler`, `code` and `requirements` are for functions in Python
              expected: `language: python` beside them
              hint: add `language: python`, or name the function's `pack` if it is in Rust"#]],
    );
    check(
        "name: wf\nfunctions:\n  a: {language: python}\nsteps:\n  - task: a\n",
        expect![[r#"
            [missing-key] wf.yaml:3:17: error: a function in Python needs its `handler`
              expected: `handler: module:function`, like `handler: words:count` for `def count(ctx)` in words.py"#]],
    );
    check(
        "name: wf\nfunctions:\n  a: {language: python, handler: words.count}\nsteps:\n  - task: a\n",
        expect![[r#"
            [type] wf.yaml:3:34: error: `words.count` is not a handler
              expected: module:function, like `words:count` for `def count(ctx)` in words.py (a package's module: `text.words:count`)"#]],
    );
    check(
        "name: wf\nfunctions:\n  a: {language: python, pack: words, handler: 'words:count'}\nsteps:\n  - task: a\n",
        expect![[r#"
            [type] wf.yaml:3:17: error: a function in Python has no `pack`: the daemon serves it with its Python interpreter
              expected: `language: python` with `handler: module:function`, or `pack` alone"#]],
    );
    check(
        "name: wf\nfunctions:\n  a: {language: python, handler: 'words:count', requirements: ['numpy>=2']}\nsteps:\n  - task: a\n",
        expect![[r#"
            [type] wf.yaml:3:64: error: `numpy>=2` is not a module name
              expected: the name `import` takes, like numpy or PIL.Image (not a pip requirement like numpy>=2)"#]],
    );
    // Sent as text, without its file's directory: `code` must be absolute.
    check(
        "name: wf\nfunctions:\n  a: {language: python, handler: 'words:count'}\nsteps:\n  - task: a\n",
        expect![[r#"
            [type] wf.yaml:3:3: error: function `a` is in Python and gives no `code`, but this workflow was sent without the directory of its file
              expected: an absolute `code` directory
              hint: deploy it from its file (`faasflow deploy FILE` sends the file's directory), or give `code: /absolute/dir`"#]],
    );
}

#[test]
fn python_code_is_relative_to_the_workflow_files_directory() {
    let src = "name: wf\nfunctions:\n  a: {language: python, handler: 'words:count'}\n  b: {language: python, handler: 'words:count', code: lib}\n  c: {language: python, handler: 'words:count', code: /opt/fns}\nsteps:\n  - task: a\n  - task: b\n  - task: c\n";
    let wf = faasflow_planner::load::load_str_in(src, "wf.yaml", "wf", Some(std::path::Path::new("/srv/flows")))
        .expect("valid")
        .workflow;
    let code: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|name| {
            let n = wf
                .graph
                .node_indices()
                .find(|&n| wf.graph[n].name == *name)
                .expect("a task");
            wf.graph[n]
                .task()
                .and_then(|t| t.spec.python.as_ref())
                .expect("python")
                .code
                .clone()
        })
        .collect();
    assert_eq!(code, ["/srv/flows", "/srv/flows/lib", "/opt/fns"]);
}
