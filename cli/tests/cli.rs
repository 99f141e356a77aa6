//! The `faasflow` binary, run as a user would run it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[path = "support/function_logs.rs"]
mod function_logs;

fn faasflow(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_faasflow"))
        .args(args)
        .output()
        .expect("the faasflow binary runs")
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/faasflow-v1")
}

fn all_fixture_workflows() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out);
            } else if p.file_name().is_some_and(|n| n.to_str().unwrap().contains("workflow")) {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&fixtures(), &mut out);
    out
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

#[test]
fn plans_every_faasflow_file_in_every_format_and_mode() {
    let files = all_fixture_workflows();
    assert_eq!(files.len(), 18, "FaaSFlow's 8 benchmarks and 10 example files");
    for f in &files {
        let f = f.to_str().unwrap();
        for mode in ["workersp", "mastersp"] {
            for format in ["text", "json", "dot"] {
                let o = faasflow(&["plan", f, "--mode", mode, "--format", format]);
                assert!(o.status.success(), "{f} {mode} {format}: {}", stderr(&o));
                assert!(!o.stdout.is_empty());
            }
        }
    }
}

#[test]
fn json_places_every_function_once_under_its_own_name() {
    for f in all_fixture_workflows() {
        let graph = stdout(&faasflow(&["plan", f.to_str().unwrap(), "--format", "graph"]));
        let tasks: Vec<String> = graph
            .lines()
            .filter_map(|l| {
                l.strip_prefix("  ")
                    .and_then(|l| l.split_once(" = task "))
                    .map(|(n, _)| n.to_owned())
            })
            .collect();
        let o = faasflow(&["plan", f.to_str().unwrap(), "--format", "json"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        for key in ["workflow", "version", "mode", "groups", "edges", "critical_path"] {
            assert!(v.get(key).is_some(), "{key} missing");
        }
        let mut placed: Vec<String> = v["groups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| {
                g["functions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|n| n.as_str().unwrap().to_owned())
            })
            .collect();
        placed.sort();
        let mut expected = tasks.clone();
        expected.sort();
        assert_eq!(placed, expected, "{}", f.display());
        for g in v["groups"].as_array().unwrap() {
            assert!(
                g["virtual_nodes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|n| n["virtual"] == true)
            );
        }
        for e in v["edges"].as_array().unwrap() {
            assert!(["in-process", "shared-memory", "peer", "remote"].contains(&e["tier"].as_str().unwrap()));
        }
    }
}

#[test]
fn same_input_gives_byte_identical_plans() {
    let f = fixtures().join("benchmark/generator/soykb/flat_workflow.yaml");
    let a = faasflow(&["plan", f.to_str().unwrap(), "--format", "json", "--workers", "4"]);
    let b = faasflow(&["plan", f.to_str().unwrap(), "--format", "json", "--workers", "4"]);
    assert!(a.status.success());
    assert_eq!(a.stdout, b.stdout);
}

#[test]
fn mastersp_sends_every_edge_to_remote_storage() {
    let f = fixtures().join("benchmark/video/flat_workflow.yaml");
    let v: serde_json::Value = serde_json::from_slice(
        &faasflow(&["plan", f.to_str().unwrap(), "--format", "json", "--mode", "mastersp"]).stdout,
    )
    .unwrap();
    assert!(v["edges"].as_array().unwrap().iter().all(|e| e["tier"] == "remote"));
    let w: serde_json::Value =
        serde_json::from_slice(&faasflow(&["plan", f.to_str().unwrap(), "--format", "json"]).stdout).unwrap();
    assert!(
        w["summary"]["bytes_local"].as_u64().unwrap() > 0,
        "WorkerSP keeps some data local"
    );
}

#[test]
fn a_bad_workflow_gets_a_located_message_and_exit_status_2() {
    let dir = tempdir();
    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, "name: wf\nfunctions:\n  count: {}\nsteps:\n  - task: cout\n").unwrap();
    let o = faasflow(&["plan", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("bad.yaml:5:11: error: unknown function `cout`"), "{err}");
    assert!(err.contains("hint: did you mean `count`?"), "{err}");
    assert!(o.stdout.is_empty());
}

#[test]
fn a_missing_file_is_reported() {
    let o = faasflow(&["plan", "/nonexistent/wf.yaml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("/nonexistent/wf.yaml: error: cannot read the workflow file"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn overcommit_is_an_error_unless_allowed() {
    let f = fixtures().join("benchmark/generator/cycles/flat_workflow.yaml");
    let f = f.to_str().unwrap();
    // Cycles needs 46 × 3 = 138 slots.
    let o = faasflow(&["plan", f, "--workers", "2", "--slots", "20"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("needs 138 container slots") && err.contains("has 40"),
        "{err}"
    );
    assert!(err.contains("--allow-overcommit"), "{err}");
    let o = faasflow(&[
        "plan",
        f,
        "--workers",
        "2",
        "--slots",
        "20",
        "--allow-overcommit",
        "--format",
        "json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["summary"]["overcommitted"], true);
}

#[test]
fn plans_generated_workflows_of_hundreds_of_functions() {
    let dir = tempdir();
    let file = dir.join("big.yaml");
    let o = faasflow(&[
        "generate",
        "--functions",
        "600",
        "--seed",
        "3",
        "-o",
        file.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = faasflow(&[
        "plan",
        file.to_str().unwrap(),
        "--workers",
        "8",
        "--slots",
        "200",
        "--format",
        "json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["summary"]["functions"], 600);
    let check = faasflow(&["check", file.to_str().unwrap()]);
    assert!(stdout(&check).contains("is valid: 600 functions"), "{}", stdout(&check));
}

#[test]
fn warnings_go_to_stderr_and_do_not_fail() {
    // FaaSFlow's switch example maps an output its `invalid` function does not produce.
    let f = fixtures().join("examples/switch/flat_workflow.yaml");
    let o = faasflow(&["plan", f.to_str().unwrap()]);
    assert!(o.status.success());
    assert!(
        stderr(&o).contains("warning: global output `result` names `invalid.sqrt_result`"),
        "{}",
        stderr(&o)
    );
}

fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "faasflow-cli-test-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn output_onto_the_workflow_file_is_refused_in_every_format() {
    let dir = tempdir();
    let file = dir.join("victim.yaml");
    let text = "name: wf\nfunctions:\n  a: {}\nsteps:\n  - task: a\n";
    std::fs::write(&file, text).unwrap();
    for format in ["text", "graph"] {
        let o = faasflow(&[
            "plan",
            "-f",
            format,
            "-o",
            file.to_str().unwrap(),
            file.to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(2), "{format}");
        assert!(stderr(&o).contains("would overwrite the workflow file"));
        assert_eq!(std::fs::read_to_string(&file).unwrap(), text);
    }
}

fn example_workflow() -> PathBuf {
    let pack = Path::new(env!("CARGO_BIN_EXE_faasflow")).with_file_name("faasflow-pack-example");
    assert!(
        pack.is_file(),
        "{} is missing: build every binary first (`cargo build --workspace --bins`; `cargo xtask ci` does)",
        pack.display()
    );
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../packs/example/wordcount.yaml")
}

fn json_lines(o: &Output) -> Vec<serde_json::Value> {
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

#[test]
fn run_executes_the_example_pack_and_reports_json() {
    let wf = example_workflow();
    let o = faasflow(&[
        "run",
        wf.to_str().unwrap(),
        "--input",
        r#"{"text": "The cat saw the dog. The end", "parts": 2}"#,
        "--report",
        "json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let reports = json_lines(&o);
    assert_eq!(reports.len(), 1);
    let r = &reports[0];
    assert_eq!(r["status"], "ok");
    assert_eq!(
        r["output"]["total"],
        serde_json::json!({"the": 3, "cat": 1, "saw": 1, "dog": 1, "end": 1})
    );
    for key in ["e2e_us", "scheduling_overhead_us", "data_overhead_us"] {
        assert!(r[key].as_f64().is_some_and(|v| v >= 0.0), "{key}: {r}");
    }
    let names: Vec<&str> = r["functions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.iter().filter(|n| **n == "count").count(), 2, "{names:?}");
    for f in r["functions"].as_array().unwrap() {
        for key in ["name", "instance", "start_us", "end_us", "attempt", "skipped"] {
            assert!(f.get(key).is_some(), "function record without {key}: {f}");
        }
    }
    let edges = r["edges"].as_array().unwrap();
    assert!(!edges.is_empty());
    for e in edges {
        for key in ["from", "to", "bytes", "tier", "transfer_us"] {
            assert!(e.get(key).is_some(), "edge without {key}: {e}");
        }
    }
}

#[test]
fn run_text_report_repeat_and_input_from_a_file() {
    let dir = tempdir();
    let input = dir.join("input.json");
    std::fs::write(&input, r#"{"text": "a b a", "parts": 1}"#).unwrap();
    let wf = example_workflow();
    let at = format!("@{}", input.display());
    let o = faasflow(&["run", wf.to_str().unwrap(), "--input", &at, "--repeat", "3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).matches("\"total\"").count(), 3, "{}", stdout(&o));
    let err = stderr(&o);
    assert!(
        err.contains("end-to-end") && err.contains("3 invocations: 3 ok, 0 failed"),
        "{err}"
    );
    let o = faasflow(&[
        "run",
        wf.to_str().unwrap(),
        "--input",
        &at,
        "--repeat",
        "2",
        "--report",
        "json",
    ]);
    assert_eq!(json_lines(&o).len(), 2);
}

#[test]
fn run_rejects_bad_input_with_status_2() {
    let wf = example_workflow();
    let wf = wf.to_str().unwrap();
    let o = faasflow(&["run", wf, "--input", "{not json"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--input is not valid JSON"), "{}", stderr(&o));
    let o = faasflow(&["run", wf, "--input", "[1, 2]"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("must be a JSON object"), "{}", stderr(&o));
    let o = faasflow(&["run", wf, "--input", "{}"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("missing inputs: text, parts"), "{}", stderr(&o));
    let o = faasflow(&["run", wf, "--input", "@/nonexistent/input.json"]);
    assert_eq!(o.status.code(), Some(2));
    let o = faasflow(&["run", wf, "--runtime-scale", "-1"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn run_exits_1_when_an_invocation_fails() {
    let dir = tempdir();
    let file = dir.join("fails.yaml");
    std::fs::write(
        &file,
        "name: fails\nfunctions:\n  fail: {pack: testkit}\nsteps:\n  - task: fail\n",
    )
    .unwrap();
    let o = faasflow(&["run", file.to_str().unwrap(), "--report", "json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let r = &json_lines(&o)[0];
    assert_eq!(r["status"], "failed");
    assert!(r["error"].as_str().unwrap().contains("testkit: asked to fail"), "{r}");
}

#[test]
fn what_a_function_writes_to_stderr_is_logged_with_its_instance_function_and_invocation() {
    function_logs::check(None);
}

#[test]
fn run_executes_faasflow_files_with_synthetic_bodies() {
    let file = fixtures().join("benchmark/video/flat_workflow.yaml");
    let o = faasflow(&[
        "run",
        file.to_str().unwrap(),
        "--runtime-scale",
        "0.001",
        "--report",
        "json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = &json_lines(&o)[0];
    assert_eq!(r["status"], "ok", "{r}");
    assert!(r["functions"].as_array().unwrap().len() >= 3);
}

#[test]
fn the_synthetic_pack_lists_its_function_and_refuses_others() {
    let o = faasflow(&["__pack", "synthetic", "--list"]);
    assert!(o.status.success());
    assert_eq!(stdout(&o), "synthetic\n");
    let o = faasflow(&["__pack", "other"]);
    assert_eq!(o.status.code(), Some(2));
    let o = faasflow(&["__pack", "synthetic"]);
    assert_eq!(o.status.code(), Some(2), "run by hand, it says what it is");
}

#[test]
fn cluster_init_writes_certificates_the_daemon_loads_and_keeps_an_existing_ca() {
    use faasflow_daemon::io::tls::{ClusterTrust, NodeIdentity, node_name_of};
    let dir = tempdir().join("cluster");
    let d = dir.to_str().unwrap();
    let o = faasflow(&["cluster", "init", "--dir", d]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("4 node certificates (planner, worker-0, worker-1, worker-2)"),
        "{out}"
    );
    assert!(out.contains("ca-key.pem  (secret, mode 0600)"), "{out}");
    assert!(out.contains("token  (secret, mode 0600)"), "{out}");
    faasflow_rpc::auth::Token::load(&dir.join("token")).expect("the cluster's API token");
    ClusterTrust::load(&dir).unwrap();
    for node in ["planner", "worker-0", "worker-1", "worker-2"] {
        let id = NodeIdentity::load(&dir, node).unwrap();
        assert_eq!(node_name_of(id.cert_der()).unwrap(), node);
    }
    let ca = std::fs::read(dir.join("ca.pem")).unwrap();
    let o = faasflow(&["cluster", "init", "--dir", d, "--nodes", "1"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("already holds a cluster CA") && stderr(&o).contains("--force"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        std::fs::read(dir.join("ca.pem")).unwrap(),
        ca,
        "the CA was replaced without --force"
    );
    let o = faasflow(&["cluster", "init", "--dir", d, "--force", "--node", "edge-7"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_ne!(std::fs::read(dir.join("ca.pem")).unwrap(), ca);
    NodeIdentity::load(&dir, "edge-7").unwrap();
    let o = faasflow(&["cluster", "init", "--dir", d, "--force", "--node", "Bad_Name"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("invalid node name `Bad_Name`"), "{}", stderr(&o));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_report_file_becomes_a_chrome_trace() {
    let dir = std::env::temp_dir().join(format!("faasflow-trace-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packs/example/wordcount.yaml");
    let run = faasflow(&[
        "run",
        &example.to_string_lossy(),
        "--input",
        r#"{"text": "a b c a b a", "parts": 2}"#,
        "--report",
        "json",
        "--repeat",
        "2",
        "--arena-mib",
        "64",
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let reports = dir.join("reports.json");
    std::fs::write(&reports, &run.stdout).unwrap();
    let trace = dir.join("trace.json");
    let out = faasflow(&[
        "trace",
        &reports.to_string_lossy(),
        "--invocation",
        "2",
        "--chrome",
        &trace.to_string_lossy(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let t: serde_json::Value = serde_json::from_slice(&std::fs::read(&trace).unwrap()).unwrap();
    assert_eq!(t["metadata"]["invocation"], 2);
    let events = t["traceEvents"].as_array().unwrap();
    let spans: Vec<&str> = events
        .iter()
        .filter(|e| e["ph"] == "X" && e["cat"] == "function")
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(spans, ["split", "count[0]", "count[1]", "merge"]);
    // Each count element's object reaches merge: one arrow from each element; and split's
    // list fans out to the elements: one arrow to each, from split's end.
    let starts = |fan_out: bool| -> Vec<f64> {
        events
            .iter()
            .filter(|e| e["ph"] == "s" && (e["name"] == "element") == fan_out)
            .map(|e| e["ts"].as_f64().unwrap())
            .collect()
    };
    let (to_merge, from_split) = (starts(false), starts(true));
    assert_eq!((to_merge.len(), from_split.len()), (2, 2));
    assert_ne!(to_merge[0], to_merge[1], "the arrows start at the two elements' ends");
    assert_eq!(from_split[0], from_split[1], "the fan-out starts at split's end");
    // A file that is not reports, and an id it does not hold: exit 2, saying so.
    let out = faasflow(&[
        "trace",
        &example.to_string_lossy(),
        "--chrome",
        &trace.to_string_lossy(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("not a JSON report"), "{}", stderr(&out));
    let out = faasflow(&[
        "trace",
        &reports.to_string_lossy(),
        "--invocation",
        "9",
        "--chrome",
        &trace.to_string_lossy(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("holds no report of invocation 9"),
        "{}",
        stderr(&out)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn run_spills_into_a_directory_of_its_own_and_leaves_the_users_files() {
    let dir = tempdir().join("spill-here");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("notes.txt"), "mine").unwrap();
    std::fs::create_dir(dir.join("project")).unwrap();
    std::fs::write(dir.join("project/data.csv"), "1,2").unwrap();
    let wf = example_workflow();
    // Quota 0: every object goes through the spill directory.
    let o = faasflow(&[
        "run",
        wf.to_str().unwrap(),
        "--input",
        r#"{"text": "a b a", "parts": 2}"#,
        "--quota-mib",
        "0",
        "--report",
        "json",
        "--spill-dir",
        dir.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(json_lines(&o)[0]["spills"].as_u64().unwrap() > 0, "{}", stdout(&o));
    let mut left: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["notes.txt", "project"],
        "the daemon's own directory is gone, the rest stays"
    );
    assert_eq!(std::fs::read_to_string(dir.join("notes.txt")).unwrap(), "mine");
    assert_eq!(std::fs::read_to_string(dir.join("project/data.csv")).unwrap(), "1,2");
    // A file is no spill directory: refused at start, saying so.
    let o = faasflow(&[
        "run",
        wf.to_str().unwrap(),
        "--spill-dir",
        dir.join("notes.txt").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("notes.txt is not a directory; pass a directory of your own with --spill-dir"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read_to_string(dir.join("notes.txt")).unwrap(), "mine");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_address_file_is_written_through_a_name_of_its_own() {
    let dir = tempdir().join("addr");
    std::fs::create_dir_all(&dir).unwrap();
    // A file of the user's where a careless writer would put its temporary copy.
    std::fs::write(dir.join("planner.tmp"), "mine").unwrap();
    let file = dir.join("planner.addr");
    let (mut planner, addr) = start_planner(&file, &[]);
    planner.kill().unwrap();
    planner.wait().unwrap();
    assert_ne!(addr.port(), 0);
    assert_eq!(std::fs::read_to_string(dir.join("planner.tmp")).unwrap(), "mine");
    let mut left: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["planner.addr", "planner.tmp"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_trace_onto_its_own_file_of_reports_is_refused() {
    let dir = tempdir().join("trace-self");
    std::fs::create_dir_all(&dir).unwrap();
    let reports = dir.join("reports.json");
    std::fs::write(&reports, "{}\n").unwrap();
    let o = faasflow(&[
        "trace",
        reports.to_str().unwrap(),
        "--chrome",
        reports.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("would overwrite the file of reports it reads"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read_to_string(&reports).unwrap(), "{}\n");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn up_and_down_leave_a_cluster_json_they_did_not_write() {
    let dir = tempdir().join("not-a-cluster");
    std::fs::create_dir_all(&dir).unwrap();
    let mine = r#"{"name": "my project", "version": 3}"#;
    std::fs::write(dir.join("cluster.json"), mine).unwrap();
    for args in [&["down", "--dir"][..], &["up", "--workers", "1", "--dir"][..]] {
        let mut args = args.to_vec();
        args.push(dir.to_str().unwrap());
        let o = faasflow(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("is not the record of a cluster `faasflow up` started"),
            "{args:?}: {}",
            stderr(&o)
        );
        assert_eq!(std::fs::read_to_string(dir.join("cluster.json")).unwrap(), mine);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `faasflow ARGS` with at most 3 GB of address space and 60 s (a command that reads without
/// bound fails here instead of taking the machine's memory).
fn faasflow_bounded(args: &[&str]) -> Output {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -v 3000000 && exec "$0" "$@""#)
        .arg(env!("CARGO_BIN_EXE_faasflow"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the faasflow binary runs");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn endless_and_oversized_files_are_refused_naming_the_file_and_the_limit() {
    // No cluster is needed: the files are refused before anything is sent.
    let nowhere = ["--planner", "127.0.0.1:1", "--insecure-loopback"];
    let o = faasflow_bounded(&[&["deploy", "/dev/zero"][..], &nowhere].concat());
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("/dev/zero: error: the file is larger than 32 MiB, the limit for workflow files"),
        "{}",
        stderr(&o)
    );
    let o = faasflow_bounded(&[&["invoke", "wf", "--input", "@/dev/zero"][..], &nowhere].concat());
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("--input @/dev/zero: the input file is larger than 256 MiB, the most the cluster's API"),
        "{}",
        stderr(&o)
    );
    let o = faasflow_bounded(&["run", example_workflow().to_str().unwrap(), "--input", "@/dev/zero"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("--input @/dev/zero: the input file is larger than 256 MiB"),
        "{}",
        stderr(&o)
    );

    let dir = tempdir().join("oversized");
    std::fs::create_dir_all(&dir).unwrap();
    // Sparse files one byte over each limit.
    let reports = dir.join("reports.json");
    std::fs::File::create(&reports)
        .unwrap()
        .set_len((32 << 20) + 1)
        .unwrap();
    let trace = dir.join("trace.json");
    let o = faasflow_bounded(&["trace", reports.to_str().unwrap(), "--chrome", trace.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o)
            .contains("reports.json is larger than 32 MiB (it holds 33554433 bytes), the limit for files of reports"),
        "{}",
        stderr(&o)
    );
    let input = dir.join("input.json");
    std::fs::File::create(&input).unwrap().set_len((256 << 20) + 1).unwrap();
    let at = format!("@{}", input.display());
    let o = faasflow_bounded(&[&["invoke", "wf", "--input", &at][..], &nowhere].concat());
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("the input file is larger than 256 MiB (it holds 268435457 bytes)"),
        "{}",
        stderr(&o)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_input_over_the_apis_message_limit_is_refused_before_it_is_sent() {
    let dir = tempdir().join("big-input");
    std::fs::create_dir_all(&dir).unwrap();
    // Exactly 256 MiB of JSON: the file fits, the request around it does not.
    let input = dir.join("input.json");
    let head = br#"{"text":""#;
    let tail = br#""}"#;
    let mut bytes = Vec::with_capacity(256 << 20);
    bytes.extend_from_slice(head);
    bytes.resize((256 << 20) - tail.len(), b'x');
    bytes.extend_from_slice(tail);
    std::fs::write(&input, &bytes).unwrap();
    drop(bytes);
    let at = format!("@{}", input.display());
    let o = faasflow_bounded(&[
        "invoke",
        "wf",
        "--input",
        &at,
        "--planner",
        "127.0.0.1:1",
        "--insecure-loopback",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("error: the input of `wf` is 268435456 bytes of JSON (")
            && err.contains("more than the 256 MiB the planner's API takes in one message; pass a smaller input"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `faasflow ARGS` with its standard output a pipe whose reader is gone.
fn faasflow_into_a_closed_pipe(args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    Command::new(env!("CARGO_BIN_EXE_faasflow"))
        .args(args)
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("the faasflow binary runs")
}

#[test]
fn commands_printing_into_a_closed_pipe_end_quietly() {
    let dir = tempdir().join("closed-pipe");
    std::fs::create_dir_all(&dir).unwrap();
    let wf = example_workflow();
    let wf = wf.to_str().unwrap();
    let certs = dir.join("certs");
    let empty = dir.join("empty");
    let commands: Vec<Vec<&str>> = vec![
        vec!["generate", "--functions", "2000"],
        vec!["plan", wf],
        vec!["check", wf],
        vec!["down", "--dir", empty.to_str().unwrap()],
        vec!["cluster", "init", "--dir", certs.to_str().unwrap()],
        vec![
            "run",
            wf,
            "--input",
            r#"{"text": "a b", "parts": 1}"#,
            "--report",
            "json",
        ],
    ];
    for args in commands {
        let o = faasflow_into_a_closed_pipe(&args);
        let err = stderr(&o);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(o.status.code(), Some(141), "{args:?}: {err}");
        // Quietly: nothing about the pipe (`run` says how it measures memory).
        assert!(
            !err.contains("pipe") && !err.contains("standard output"),
            "{args:?}: {err}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn zero_deadlines_and_limits_are_refused_by_the_parser() {
    let wf = example_workflow();
    let wf = wf.to_str().unwrap();
    let cases: [(&[&str], &str); 5] = [
        (&["invoke", "wf", "--deadline-ms", "0"], "--deadline-ms <MS>"),
        (&["run", wf, "--max-invocations", "0"], "--max-invocations <N>"),
        (
            &[
                "daemon",
                "--planner",
                "127.0.0.1:1",
                "--name",
                "w",
                "--max-invocations",
                "0",
            ],
            "--max-invocations <N>",
        ),
        (&["up", "--max-in-flight", "0"], "--max-in-flight <N>"),
        (
            &["planner", "--insecure-loopback", "--max-in-flight", "0"],
            "--max-in-flight <N>",
        ),
    ];
    for (args, flag) in cases {
        let o = faasflow_bounded(args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(&format!("invalid value '0' for '{flag}'")) && err.contains("0 is not in 1.."),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn a_token_file_that_cannot_be_read_is_named_with_its_error() {
    let dir = tempdir().join("token-cluster");
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::write(
        dir.join("cluster.json"),
        r#"{"planner": {"addr": "127.0.0.1:1", "pid": 1}, "workers": []}"#,
    )
    .unwrap();
    let token = certs.join("token");
    // A link to itself: `exists` says no, reading it fails (whoever runs the test, root too).
    std::os::unix::fs::symlink(&token, &token).unwrap();
    let status = |args: &[&str], env: Option<&Path>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_faasflow"));
        c.arg("status").args(args).env_remove("FAASFLOW_DIR");
        if let Some(d) = env {
            c.env("FAASFLOW_DIR", d);
        }
        c.output().unwrap()
    };
    let d = dir.to_str().unwrap();
    let o = status(&["--dir", d], None);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "error: cannot use the cluster's token file: {}: Too many levels of symbolic links",
            token.display()
        )),
        "{err}"
    );
    assert!(err.contains("or pass the token with --token-file"), "{err}");
    assert!(!err.contains("--dir"), "--dir was given: {err}");
    // Found through $FAASFLOW_DIR: --dir is worth suggesting.
    let o = status(&[], Some(&dir));
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "the cluster's directory is {d} ($FAASFLOW_DIR): pass --dir DIR when the cluster is elsewhere"
        )),
        "{err}"
    );
    // A directory in its place, and the same file given with --token-file.
    std::fs::remove_file(&token).unwrap();
    std::fs::create_dir(&token).unwrap();
    let o = status(&["--dir", d], None);
    assert!(stderr(&o).contains("token: Is a directory"), "{}", stderr(&o));
    let o = status(
        &["--planner", "127.0.0.1:1", "--token-file", token.to_str().unwrap()],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("error: cannot use the token file given with --token-file:")
            && stderr(&o).contains("Is a directory"),
        "{}",
        stderr(&o)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn generate_refuses_more_functions_than_a_workflow_file_can_hold() {
    let o = faasflow(&["generate", "--functions", "70001"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        "error: --functions must be from 1 to 70,000: more would not load (a workflow file holds at most 32 MiB and \
         4,000,000 YAML values)\n"
    );
    assert!(o.stdout.is_empty());
    let o = faasflow(&["generate", "--functions", "0"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn down_run_by_another_user_says_it_may_not_stop_the_processes() {
    let root = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"));
    if !root || !Path::new("/usr/bin/setpriv").exists() {
        eprintln!("skipped: needs root and setpriv to run `faasflow down` as another user");
        return;
    }
    let dir = tempdir().join("other-user");
    std::fs::create_dir_all(&dir).unwrap();
    // The binary where the user nobody can run it.
    let exe = dir.join("faasflow");
    std::fs::copy(env!("CARGO_BIN_EXE_faasflow"), &exe).unwrap();
    // A process of root's whose command line says faasflow, as the planner of the record.
    let mut planner = {
        use std::os::unix::process::CommandExt as _;
        Command::new("sleep")
            .arg0("faasflow-planner")
            .arg("60")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    std::fs::write(
        dir.join("cluster.json"),
        format!(
            r#"{{"planner": {{"addr": "127.0.0.1:1", "pid": {}}}, "workers": []}}"#,
            planner.id()
        ),
    )
    .unwrap();
    for d in [dir.parent().unwrap(), &dir] {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let started = std::time::Instant::now();
    let o = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&exe)
        .args(["down", "--dir", dir.to_str().unwrap()])
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "planner (pid {}): not permitted to stop it (Operation not permitted (os error 1)): it belongs to another \
             user (uid 0; you are uid 65534)",
            planner.id()
        )),
        "{err}"
    );
    assert!(!err.contains("did not stop within"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(4), "it waited");
    assert!(dir.join("cluster.json").exists(), "the record is kept");
    assert!(planner.try_wait().unwrap().is_none(), "the process is untouched");
    planner.kill().unwrap();
    planner.wait().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_probe_built_without_clang_says_to_rebuild_once_clang_is_installed() {
    let run = |path: &std::ffi::OsStr| {
        Command::new(env!("CARGO_BIN_EXE_faasflow"))
            .args(["run", example_workflow().to_str().unwrap()])
            .args(["--input", r#"{"text": "a", "parts": 1}"#, "--memory-probe", "auto"])
            .env("PATH", path)
            .output()
            .unwrap()
    };
    let path = std::env::var_os("PATH").unwrap_or_default();
    let err = stderr(&run(&path));
    // The compiler the build tried (`clang`, or $CLANG when it was set): the message names it.
    let Some(clang) = err
        .split_once("built without its BPF program (`")
        .and_then(|(_, rest)| rest.split_once('`'))
        .map(|(c, _)| c.to_owned())
        .filter(|c| !c.contains('/'))
    else {
        eprintln!("skipped: this faasflow was built with its BPF program (or with CLANG naming a path)");
        return;
    };
    if !std::env::split_paths(&path).any(|d| d.join(&clang).is_file()) {
        assert!(err.contains("install clang and rebuild faasflow"), "{err}");
    }
    // Now there is one.
    let dir = tempdir().join("fake-clang");
    std::fs::create_dir_all(&dir).unwrap();
    let fake = dir.join(&clang);
    std::fs::write(&fake, "#!/bin/sh\nexit 0\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut with_clang = dir.clone().into_os_string();
    with_clang.push(":");
    with_clang.push(&path);
    let o = run(&with_clang);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("clang is installed now: rebuild faasflow"), "{err}");
    assert!(!err.contains("install clang"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Starts `faasflow planner` on a free port with `args`; returns it and its address once it
/// listens (its output is dropped).
fn start_planner(addr_file: &Path, args: &[&str]) -> (std::process::Child, std::net::SocketAddr) {
    let mut planner = Command::new(env!("CARGO_BIN_EXE_faasflow"))
        .args([
            "planner",
            "--insecure-loopback",
            "--listen",
            "127.0.0.1:0",
            "--addr-file",
        ])
        .arg(addr_file)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if let Ok(text) = std::fs::read_to_string(addr_file)
            && let Ok(addr) = text.trim().parse::<std::net::SocketAddr>()
        {
            return (planner, addr);
        }
        assert!(planner.try_wait().unwrap().is_none(), "the planner exited");
        assert!(std::time::Instant::now() < deadline, "no address written");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn a_state_directory_serves_one_planner_and_a_damaged_state_is_refused_untouched() {
    let dir = tempdir().join("state-dir");
    let _ = std::fs::remove_dir_all(&dir);
    let state = dir.join("state");
    let state_arg = state.to_str().unwrap();
    let planner_on = |state: &str| {
        faasflow(&[
            "planner",
            "--insecure-loopback",
            "--listen",
            "127.0.0.1:0",
            "--state-dir",
            state,
        ])
    };
    let (mut first, addr) = start_planner(&dir.join("first.addr"), &["--state-dir", state_arg]);
    // A second planner on the same directory: refused before it takes a port, naming the first.
    let o = planner_on(state_arg);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let holder = format!(
        "is in use by another planner (pid {} serving on {addr}, since ",
        first.id()
    );
    assert!(stderr(&o).contains(&holder), "{}", stderr(&o));
    first.kill().unwrap();
    first.wait().unwrap();
    // Killed, it left the lock behind it: the next planner takes the directory.
    let (mut next, _) = start_planner(&dir.join("next.addr"), &["--state-dir", state_arg]);
    next.kill().unwrap();
    next.wait().unwrap();
    // A state file that is not one: a clear error, and the file is left as it was.
    std::fs::write(state.join("state.redb"), "not a database").unwrap();
    let o = planner_on(state_arg);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("state.redb cannot be used") && stderr(&o).contains("nothing in it was changed"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        std::fs::read_to_string(state.join("state.redb")).unwrap(),
        "not a database"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
