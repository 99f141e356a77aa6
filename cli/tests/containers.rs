//! Functions in Docker containers: the daemon starts its packs' images (`cargo xtask images`)
//! through the Docker engine and runs them exactly as it runs processes. These tests need
//! Docker and the images; without them they say they are skipped, unless
//! `FAASFLOW_REQUIRE_DOCKER=1` (set by `.ci/run`), where that is a failure.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use faasflow_core::dag::Workflow;
use faasflow_core::report::Report;
use faasflow_core::{ClusterView, PlannerConfig};
use faasflow_daemon::api::{DaemonError, Invoke};
use faasflow_daemon::config::{DaemonConfig, ProbeMode};
use faasflow_daemon::daemon::Daemon;
use faasflow_daemon::pool::PackCommand;
use faasflow_planner::load::load_str;
use faasflow_planner::partition::partition;
use serde_json::json;

#[path = "support/function_logs.rs"]
mod function_logs;

const MIB: u64 = 1 << 20;

/// Whether Docker answers and the testkit image exists; panics where they are required.
fn docker() -> bool {
    let ok = Command::new("docker")
        .args([
            "image",
            "inspect",
            "--format",
            "{{.Id}}",
            "faasflow/testkit",
            "faasflow/example",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let why = "Docker is not reachable, or the images faasflow/testkit and faasflow/example are not built \
                   (`cargo xtask images`)";
        assert!(
            std::env::var_os("FAASFLOW_REQUIRE_DOCKER").is_none_or(|v| v != "1"),
            "{why}, and FAASFLOW_REQUIRE_DOCKER=1"
        );
        eprintln!("skipped: {why}");
    }
    ok
}

fn pack(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_BIN_EXE_faasflow")).with_file_name(format!("faasflow-pack-{name}"));
    assert!(
        p.is_file(),
        "{} is missing: build every binary first (`cargo build --workspace --bins`; `cargo xtask ci` does)",
        p.display()
    );
    p
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn config() -> DaemonConfig {
    let mut c = DaemonConfig::new(PackCommand {
        program: env!("CARGO_BIN_EXE_faasflow").into(),
        args: vec!["__pack".into(), "synthetic".into()],
    });
    c.packs.insert("testkit".into(), PackCommand::program(pack("testkit")));
    c.packs.insert("example".into(), PackCommand::program(pack("example")));
    c.arena_bytes = 64 << 20;
    // A directory of the test's: containers are labelled with it.
    c.spill_dir = Some(std::env::temp_dir().join(format!("faasflow-containers-{}-{}", std::process::id(), unique())));
    c
}

fn workflow(yaml: &str) -> Arc<Workflow> {
    Arc::new(load_str(yaml, "test.yaml", "test").expect("valid workflow").workflow)
}

fn install(d: &Daemon, yaml: &str) -> Result<(), DaemonError> {
    let wf = workflow(yaml);
    let cfg = PlannerConfig {
        allow_overcommit: true,
        ..PlannerConfig::default()
    };
    let plan = partition(&wf, &ClusterView::uniform(1, 64), &cfg).expect("plan");
    d.install(wf, plan)
}

fn ok(r: &Report) -> &serde_json::Value {
    assert_eq!(r.status, "ok", "invocation failed: {:?}", r.error);
    &r.output
}

/// The containers a daemon with this configuration owns (by label), running or not.
fn owned_containers(c: &DaemonConfig) -> Vec<String> {
    let out = Command::new("docker")
        .args(["ps", "-aq", "--filter"])
        .arg(format!(
            "label=faasflow.owner={}:{}",
            c.name,
            c.spill_dir.as_deref().expect("a spill directory").display()
        ))
        .output()
        .expect("docker ps");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_workflow_in_containers_gives_the_output_it_gives_in_processes() {
    if !docker() {
        return;
    }
    let yaml = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../packs/example/wordcount.yaml"))
        .expect("the example workflow");
    let in_containers = yaml.replace("    pack: example\n", "    pack: example\n    isolation: container\n");
    assert_ne!(yaml, in_containers);
    let input = json!({"text": "the quick brown fox jumps over the lazy dog the end", "parts": 3});
    let mut outputs = Vec::new();
    for y in [&yaml, &in_containers] {
        let c = config();
        let d = Daemon::start(c.clone()).expect("daemon starts");
        install(&d, y).expect("install");
        let r = d
            .invoke(Invoke::new("wordcount-example", 1, input.clone()))
            .report()
            .expect("invoke");
        outputs.push(ok(&r).clone());
        let containers = owned_containers(&c);
        if y == &in_containers {
            // split, count and merge: one container each, labelled with their daemon.
            assert_eq!(containers.len(), 3, "{containers:?}");
        } else {
            assert!(containers.is_empty(), "{containers:?}");
        }
        drop(d);
        assert!(owned_containers(&c).is_empty(), "a stopped daemon leaves no container");
    }
    assert_eq!(outputs[0], outputs[1]);
    assert_eq!(outputs[0]["total"]["the"], json!(3));
}

#[test]
fn what_a_function_in_a_container_writes_to_stderr_is_logged_with_its_call() {
    if !docker() {
        return;
    }
    function_logs::check(Some("container"));
}

#[test]
fn a_container_runs_as_nobody_read_only_without_network_unless_asked() {
    if !docker() {
        return;
    }
    let d = Daemon::start(config()).expect("daemon starts");
    let sandbox = |name: &str, settings: &str| {
        install(
            &d,
            &format!(
                "name: {name}\nfunctions:\n  sandbox: {{pack: testkit, {settings}, outputs: {{out: json}}}}\nsteps:\n  - task: sandbox\noutput:\n  out: sandbox.out\n"
            ),
        )
        .expect("install");
        let r = d.invoke(Invoke::new(name, 1, json!({}))).report().expect("invoke");
        ok(&r)["out"].clone()
    };
    let closed = sandbox("closed", "isolation: container");
    let open = sandbox("open", "isolation: container, network: true");
    let host = sandbox("host", "isolation: process");
    assert_eq!(closed["uid"], json!(65534), "{closed}");
    assert_eq!(closed["pid"], json!(1), "a container of its own: {closed}");
    assert_eq!(closed["root_writable"], json!(false), "{closed}");
    assert_eq!(closed["interfaces"], json!(["lo"]), "{closed}");
    let interfaces = open["interfaces"].as_array().expect("interfaces");
    assert!(
        interfaces.len() >= 2 && interfaces.contains(&json!("lo")),
        "network: true: {open}"
    );
    // The same function as a process runs in the daemon's namespaces.
    assert_ne!(host["pid"], json!(1), "{host}");
}

#[test]
fn a_container_killed_for_memory_fails_its_call_saying_so_and_is_replaced() {
    if !docker() {
        return;
    }
    let d = Daemon::start(config()).expect("daemon starts");
    install(
        &d,
        "name: oom\nfunctions:\n  touch: {pack: testkit, isolation: container, memory: 32MiB, outputs: {out: json}}\nsteps:\n  - task: touch\n    inputs: {mib: input.mib}\noutput:\n  mib: touch.out\n",
    )
    .expect("install");
    let r = d
        .invoke(Invoke::new("oom", 1, json!({"mib": 128})))
        .report()
        .expect("invoke");
    assert_eq!(r.status, "failed");
    let e = r.error.as_deref().unwrap_or_default();
    assert!(
        e.contains("out of memory") && e.contains("32 MiB") && e.contains("container"),
        "{e}"
    );
    // The pool starts a new container; the function works within its limit.
    let r = d
        .invoke(Invoke::new("oom", 1, json!({"mib": 4})))
        .report()
        .expect("invoke");
    assert_eq!(ok(&r), &json!({"mib": 4}));
    assert!(d.stats().expect("stats").instances_started >= 2);
}

#[test]
fn peak_memory_in_a_container_is_measured_through_ebpf_and_proc() {
    if !docker() {
        return;
    }
    for probe in [ProbeMode::Ebpf, ProbeMode::Proc] {
        let mut c = config();
        c.memory_probe = probe;
        let d = Daemon::start(c).expect("daemon starts");
        install(
            &d,
            "name: mem\nfunctions:\n  touch: {pack: testkit, isolation: container, memory: 512MiB, outputs: {out: json}}\nsteps:\n  - task: touch\n    inputs: {mib: input.mib}\noutput:\n  mib: touch.out\n",
        )
        .expect("install");
        let r = d
            .invoke(Invoke::new("mem", 1, json!({"mib": 64})))
            .report()
            .expect("invoke");
        assert_eq!(ok(&r), &json!({"mib": 64}));
        let peak = r.functions[0].peak_memory_bytes.expect("measured");
        println!("{probe}: touch in a container {} MiB", peak / MIB);
        // What it touched, far below the container's limit (and not the arena it maps).
        assert!((64 * MIB..112 * MIB).contains(&peak), "{probe}: {peak}");
    }
}

#[test]
fn an_image_that_does_not_exist_fails_the_install_naming_it() {
    if !docker() {
        return;
    }
    let d = Daemon::start(config()).expect("daemon starts");
    let e = install(
        &d,
        "name: noimage\nfunctions:\n  noop: {pack: testkit, image: faasflow/no-such-image}\nsteps:\n  - task: noop\n",
    )
    .expect_err("no such image");
    let e = e.to_string();
    assert!(
        e.contains("faasflow/no-such-image") && e.contains("does not exist") && e.contains("cargo xtask images"),
        "{e}"
    );
}

#[test]
fn without_docker_container_functions_fail_naming_the_socket_and_processes_still_run() {
    // Needs no Docker: the socket does not exist.
    let mut c = config();
    c.docker_socket = std::env::temp_dir().join("faasflow-no-docker-here.sock");
    let d = Daemon::start(c).expect("daemon starts");
    let e = install(
        &d,
        "name: boxed\nfunctions:\n  noop: {pack: testkit, isolation: container}\nsteps:\n  - task: noop\n",
    )
    .expect_err("no Docker")
    .to_string();
    assert!(
        e.contains("faasflow-no-docker-here.sock") && e.contains("Docker is not reachable") && e.contains("dockerd"),
        "{e}"
    );
    install(
        &d,
        "name: plain\nfunctions:\n  echo: {pack: testkit, outputs: {out: bytes}}\nsteps:\n  - task: echo\n    inputs: {in: input.text}\noutput:\n  out: echo.out\n",
    )
    .expect("a process workflow installs");
    let r = d
        .invoke(Invoke::new("plain", 1, json!({"text": "still here"})))
        .report()
        .expect("invoke");
    assert_eq!(ok(&r), &json!({"out": "still here"}));
}

#[test]
fn a_restarted_daemon_removes_the_containers_an_earlier_run_left() {
    if !docker() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("faasflow-orphans-{}-{}", std::process::id(), unique()));
    let spill = dir.join("spill");
    std::fs::create_dir_all(&dir).expect("dir");
    let hang = dir.join("hang.yaml");
    std::fs::write(
        &hang,
        "name: hang\nfunctions:\n  hang: {pack: testkit, isolation: container}\nsteps:\n  - task: hang\n",
    )
    .expect("write");
    let mut c = config();
    c.spill_dir = Some(spill.clone());
    let faasflow = env!("CARGO_BIN_EXE_faasflow");
    // A run whose function never ends, killed (SIGKILL) while its container runs.
    let mut first = Command::new(faasflow)
        .args(["run", "--spill-dir"])
        .arg(&spill)
        .arg(&hang)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("faasflow run");
    let deadline = Instant::now() + Duration::from_secs(60);
    while owned_containers(&c).is_empty() {
        assert!(Instant::now() < deadline, "no container started");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The call is sent once the instance is up; give it a moment to be inside `hang`.
    std::thread::sleep(Duration::from_millis(500));
    first.kill().expect("kill");
    let _ = first.wait();
    let left = owned_containers(&c);
    assert_eq!(left.len(), 1, "the killed run leaves its container: {left:?}");
    // The next daemon with the same name and directory removes it when it starts.
    let echo = dir.join("echo.yaml");
    std::fs::write(
        &echo,
        "name: echo\nfunctions:\n  echo: {pack: testkit, outputs: {out: bytes}}\nsteps:\n  - task: echo\n    inputs: {in: input.text}\noutput:\n  out: echo.out\n",
    )
    .expect("write");
    let second = Command::new(faasflow)
        .args(["run", "--spill-dir"])
        .arg(&spill)
        .arg(&echo)
        .args(["--input", r#"{"text": "hi"}"#])
        .output()
        .expect("faasflow run");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(second.status.success(), "{stderr}");
    assert!(
        stderr.contains("removed 1 container(s) left by an earlier run"),
        "{stderr}"
    );
    assert!(owned_containers(&c).is_empty(), "{:?}", owned_containers(&c));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_function_starting_warms_the_pool_of_the_function_after_it() {
    // Processes: the pre-warming is the pool's, whatever starts its instances.
    let mut c = config();
    c.min_instances = 0;
    let d = Daemon::start(c).expect("daemon starts");
    install(
        &d,
        "name: warm\nfunctions:\n  a: {runtime: 1500ms, isolation: process}\n  b: {isolation: process}\nsteps:\n  - task: a\n  - task: b\n",
    )
    .expect("install");
    assert_eq!(d.stats().expect("stats").instances_started, 0, "min_instances 0");
    let mut rx = d.invoke(Invoke::new("warm", 1, json!({})));
    // While `a` still runs, `b`'s pool has started its instance.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(r) = rx.try_take() {
            panic!("the invocation ended before b's instance was started: {r:?}");
        }
        if d.stats().expect("stats").instances_started >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "b's pool was not warmed");
        std::thread::sleep(Duration::from_millis(10));
    }
    let r = rx.wait().expect("report").expect("invocation");
    ok(&r);
    assert_eq!(d.stats().expect("stats").instances_started, 2);
}

/// A container instance, like a process, maps its own workflow's arena segment and no other:
/// searching every shared-memory file it holds or maps, it finds neither another workflow's
/// secret nor its segment.
#[test]
fn a_container_maps_no_other_workflows_objects() {
    if !docker() {
        return;
    }
    let d = Daemon::start(config()).expect("daemon starts");
    let secret = format!("secret-{}-{}-of-vault", std::process::id(), unique());
    let probe: String = secret.chars().rev().collect();
    install(
        &d,
        "name: vault\nfunctions:\n  echo: {pack: testkit, outputs: {out: bytes}}\nsteps:\n  - task: keep\n    function: echo\n    inputs: {in: input.text}\noutput:\n  kept: keep.out\n",
    )
    .expect("install");
    install(
        &d,
        "name: other\nfunctions:\n  snoop: {pack: testkit, isolation: container, outputs: {out: json}}\nsteps:\n  - task: look\n    function: snoop\n    inputs: {in: input.probe}\noutput:\n  seen: look.out\n",
    )
    .expect("install");
    let r = d
        .invoke(Invoke::new("vault", 1, json!({"text": secret})))
        .report()
        .expect("invoke");
    assert_eq!(ok(&r)["kept"], json!(secret));
    let r = d
        .invoke(Invoke::new("other", 1, json!({"probe": probe})))
        .report()
        .expect("invoke");
    let seen = &ok(&r)["seen"];
    assert_eq!(seen["found"], json!(false), "{seen}");
    let held: Vec<&str> = seen["memfds"]
        .as_array()
        .expect("memfds")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(held.iter().any(|n| n.contains("other@")), "{held:?}");
    assert!(!held.iter().any(|n| n.contains("vault@")), "{held:?}");
}
