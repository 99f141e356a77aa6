//! Workflow inputs given as files, into a local cluster over real sockets: uploaded to the
//! planner (`--input-file`, `POST /v1/uploads`), streamed from its disk into the entry
//! worker's arena (or, in MasterSP, the remote tier), and read by every function that reads
//! them, on any worker, byte for byte; an upload over the limit is refused with a clear 413
//! and nothing of it is kept; a start naming an unknown upload or input is refused at once.

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use faasflow_rpc::tls::ALPN_HTTP1;
use serde_json::Value;

mod support;

use support::local::{Cluster, https, plan_workers, rt, sum, text};

/// Two functions, one per worker, each reading the input and answering its
/// hash; and a third giving its bytes back.
const FAN: &str = "name: fan
functions:
  fnv: {pack: testkit, outputs: {out: json}}
  echo: {pack: testkit, outputs: {out: bytes}}
steps:
  - parallel:
      - - task: left
          function: fnv
          inputs: {in: input.data}
      - - task: right
          function: fnv
          inputs: {in: input.data}
        - task: back
          function: echo
          inputs: {in: input.data}
output:
  left: left.out
  right: right.out
  back: back.out
";

/// 64-bit FNV-1a, as the testkit's `fnv` answers it.
fn fnv1a(bytes: &[u8]) -> String {
    let h = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{h:016x}")
}

/// `n` bytes of every value, in no repeating order: not text.
fn binary(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn upload_dir(c: &Cluster) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(c.dir.join("state").join("uploads"))
        .expect("the uploads directory")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Arena bytes in use on `worker`, once they are 0 (waiting up to 10 s).
fn arena_used(c: &Cluster, worker: &str) -> f64 {
    let addr = c.worker(worker)["metrics"].as_str().expect("metrics").to_owned();
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let m = c.scrape(worker, &addr).expect("metrics");
        let v = sum(&m, "faasflow_arena_used_bytes");
        if v == 0.0 || Instant::now() > end {
            return v;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn describe(c: &Cluster, id: &str) -> Value {
    let o = c.run(&["describe", id, "--wait", "60", "--json"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    serde_json::from_slice(&o.stdout).expect("JSON")
}

fn check_outputs(e: &Value, bytes: &[u8]) {
    assert_eq!(e["status"], "succeeded", "{e}");
    let want = fnv1a(bytes);
    assert_eq!(e["output"]["left"], want.as_str(), "`left` read other bytes: {e}");
    assert_eq!(e["output"]["right"], want.as_str(), "`right` read other bytes: {e}");
}

#[test]
fn an_input_file_reaches_every_function_that_reads_it_on_every_worker_byte_for_byte() {
    let mut c = Cluster::up(
        "inputs",
        2,
        &["--slots", "2", "--heartbeat-ms", "200", "--max-upload-mib", "8"],
    );
    let wf = c.write("fan.yaml", FAN);
    c.deploy(&wf);
    let placed = plan_workers(&c.newest_plan(&rt(), "fan"));
    assert_ne!(placed["left"], placed["right"], "one reader per worker: {placed:?}");
    let bytes = binary(5 << 20);
    let file = c.dir.join("clip.bin");
    std::fs::write(&file, &bytes).expect("write");
    let arg = format!("data={}", file.display());

    // An execution: both workers' functions read the file's bytes, and the one echoing it
    // gives them back whole.
    let o = c.run(&["start", "fan", "--input-file", &arg]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let id = text(&o.stdout).trim().to_owned();
    let e = describe(&c, &id);
    check_outputs(&e, &bytes);
    let edges = e["report"]["edges"].as_array().expect("edges");
    assert!(
        edges
            .iter()
            .any(|x| x["from"] == "input.data" && x["tier"] == "peer" && x["bytes"] == 5 << 20),
        "the file went to the other worker over the peer link: {edges:?}"
    );
    let o = c.run(&["result", &id, "--output", "back"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(o.stdout == bytes, "{} bytes came back, not the file's", o.stdout.len());

    // A synchronous invoke too; the file was kept once (its id is its content's).
    let o = c.run(&["invoke", "fan", "--input-file", &arg, "--report", "json"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let r: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(r["output"]["left"], fnv1a(&bytes).as_str(), "{r}");
    assert_eq!(upload_dir(&c).len(), 1, "{:?}", upload_dir(&c));
    // Nothing of the inputs is left in either arena.
    assert_eq!(arena_used(&c, "worker-0"), 0.0, "worker-0's arena still holds bytes");
    assert_eq!(arena_used(&c, "worker-1"), 0.0, "worker-1's arena still holds bytes");

    // MasterSP: the file goes to the remote tier, and is deleted from it with the run.
    let master = c.write("fan-master.yaml", &FAN.replace("name: fan", "name: fanm"));
    let o = c.run(&["deploy", &master.to_string_lossy(), "--mode", "mastersp"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = c.run(&["start", "fanm", "--input-file", &arg]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    check_outputs(&describe(&c, text(&o.stdout).trim()), &bytes);
    let end = Instant::now() + Duration::from_secs(10);
    while c.redis_keys().expect("the cluster's Redis answers") > 0 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(c.redis_keys(), Some(0), "the run's objects are left in the remote tier");

    // Over HTTPS: upload, then start with `files`.
    let bearer = format!("Bearer {}", c.token_text());
    let tls = c.tls(None, ALPN_HTTP1);
    let small = binary(3000);
    let mut request = format!(
        "POST /v1/uploads HTTP/1.1\r\nHost: x\r\nAuthorization: {bearer}\r\nContent-Length: {}\r\nConnection: \
         close\r\n\r\n",
        small.len()
    )
    .into_bytes();
    request.extend_from_slice(&small);
    let answer = https(&tls, &c.planner(), "planner", &request).expect("an answer");
    let (head, body) = split(&answer);
    assert!(head.starts_with("HTTP/1.1 201"), "{head}");
    let up: Value = serde_json::from_slice(body).expect("JSON");
    assert_eq!(up["bytes"], 3000, "{up}");
    let start = serde_json::json!({"files": {"data": up["upload_id"]}}).to_string();
    let request = format!(
        "POST /v1/workflows/fan/executions HTTP/1.1\r\nHost: x\r\nAuthorization: {bearer}\r\nContent-Type: \
         application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{start}",
        start.len()
    );
    let answer = https(&tls, &c.planner(), "planner", request.as_bytes()).expect("an answer");
    let (head, body) = split(&answer);
    assert!(head.starts_with("HTTP/1.1 201"), "{head}");
    let started: Value = serde_json::from_slice(body).expect("JSON");
    check_outputs(&describe(&c, &started["execution_id"].to_string()), &small);
    // Uploads are in the state directory: a planner killed and started again still has it.
    c.restart("planner", true);
    let answer = https(&tls, &c.planner(), "planner", request.as_bytes()).expect("an answer");
    let (head, body) = split(&answer);
    assert!(head.starts_with("HTTP/1.1 201"), "{head}");
    let started: Value = serde_json::from_slice(body).expect("JSON");
    check_outputs(&describe(&c, &started["execution_id"].to_string()), &small);

    // Over the limit, said by its length: 413 at once, nothing kept.
    let before = upload_dir(&c);
    {
        let s = std::net::TcpStream::connect(c.planner()).expect("connect");
        let name = rustls::pki_types::ServerName::try_from("planner").expect("name");
        let mut s = rustls::StreamOwned::new(rustls::ClientConnection::new(tls.clone(), name).expect("TLS"), s);
        let head = format!(
            "POST /v1/uploads HTTP/1.1\r\nHost: x\r\nAuthorization: {bearer}\r\nContent-Length: {}\r\nConnection: \
             close\r\n\r\n",
            9 << 20
        );
        s.write_all(head.as_bytes()).expect("request");
        s.write_all(&[0u8; 4096]).expect("some of the body");
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        let answer = String::from_utf8_lossy(&answer).into_owned();
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert!(answer.contains("--max-upload-mib is 8"), "{answer}");
        assert!(answer.contains("nothing of it was kept"), "{answer}");
    }
    // Over the limit as it streams in (gRPC, from the CLI): refused, nothing kept.
    let big = c.dir.join("big.bin");
    std::fs::write(&big, binary(9 << 20)).expect("write");
    let o = c.run(&["start", "fan", "--input-file", &format!("data={}", big.display())]);
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(err.contains("larger than the 8388608 bytes"), "{err}");
    assert_eq!(upload_dir(&c), before, "something of the refused uploads was kept");

    // Starts that cannot run are refused at once, naming what is wrong.
    let refused = |args: &[&str], says: &str| {
        let o = c.run(args);
        assert!(!o.status.success(), "{args:?} was taken");
        let err = text(&o.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    };
    refused(
        &["start", "fan", "--input-file", &format!("other={}", file.display())],
        "has no input `other` to give a file for (its inputs: data)",
    );
    refused(
        &["start", "fan", "--input", r#"{"data": "x"}"#, "--input-file", &arg],
        "input `data` is given twice",
    );
    refused(
        &["start", "fan", "--input-file", "data=/nonexistent/clip.bin"],
        "--input-file data=/nonexistent/clip.bin: cannot read it",
    );
    refused(&["start", "fan", "--input-file", "clip.bin"], "expected NAME=PATH");
    let start = serde_json::json!({"files": {"data": "00112233445566778899aabbccddeeff"}}).to_string();
    let request = format!(
        "POST /v1/workflows/fan/executions HTTP/1.1\r\nHost: x\r\nAuthorization: {bearer}\r\nContent-Type: \
         application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{start}",
        start.len()
    );
    let answer = https(&tls, &c.planner(), "planner", request.as_bytes()).expect("an answer");
    let answer = String::from_utf8_lossy(&answer).into_owned();
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    assert!(answer.contains("upload the file first"), "{answer}");
    assert!(!exists_part(&c.dir.join("state").join("uploads")));
}

/// A head and body of an HTTP answer.
fn split(answer: &[u8]) -> (String, &[u8]) {
    let at = answer.windows(4).position(|w| w == b"\r\n\r\n").expect("a head");
    (String::from_utf8_lossy(&answer[..at]).into_owned(), &answer[at + 4..])
}

fn exists_part(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .expect("uploads")
        .flatten()
        .any(|e| e.file_name().to_string_lossy().ends_with(".part"))
}

/// One function hashing the input.
const HASH: &str = "name: hash
functions:
  fnv: {pack: testkit, outputs: {out: json}}
steps:
  - task: fnv
    inputs: {in: input.data}
output:
  hash: fnv.out
";

#[test]
fn an_input_file_larger_than_the_arena_or_cut_short_is_refused_and_leaves_nothing() {
    // A 64 MiB arena: no function could map 80 MiB, so the worker refuses them up front.
    let c = Cluster::up("inputs-spill", 1, &["--heartbeat-ms", "200"]);
    let wf = c.write("hash.yaml", HASH);
    c.deploy(&wf);
    let file = c.dir.join("large.bin");
    std::fs::write(&file, binary(80 << 20)).expect("write");
    let o = c.run(&["invoke", "hash", "--input-file", &format!("data={}", file.display())]);
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(
        err.contains("uploading") && err.contains("80.0 MiB"),
        "a large upload is said: {err}"
    );
    assert!(
        err.contains(
            "input `data` has 83886080 bytes, more than worker `worker-0`'s whole arena (67108864 bytes): functions map \
             their inputs"
        ),
        "{err}"
    );
    assert!(
        c.dir.join("spill").is_dir(),
        "the workers' spill directories are in DIR/spill"
    );
    // A put cut short by its deadline lets go of its room (in the arena, or its spill file).
    let cut = c.dir.join("cut.bin");
    std::fs::write(&cut, binary(40 << 20)).expect("write");
    for deadline in ["5", "20", "80"] {
        let _ = c.run(&[
            "invoke",
            "hash",
            "--deadline-ms",
            deadline,
            "--input-file",
            &format!("data={}", cut.display()),
        ]);
    }
    // The daemon lets go when it sees the stream cut, which may come after the client gave up.
    let end = Instant::now() + Duration::from_secs(10);
    while arena_used(&c, "worker-0") != 0.0 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(arena_used(&c, "worker-0"), 0.0, "a cut put holds arena room");
    let end = Instant::now() + Duration::from_secs(10);
    while !put_files(&c.dir.join("spill")).is_empty() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    let left = put_files(&c.dir.join("spill"));
    assert!(left.is_empty(), "a cut put's spill file is left: {left:?}");
    // The worker serves on: a file that fits is read.
    let small = binary(1 << 20);
    std::fs::write(&file, &small).expect("write");
    let o = c.run(&["invoke", "hash", "--input-file", &format!("data={}", file.display())]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(out["hash"], fnv1a(&small).as_str(), "{out}");
    assert_eq!(arena_used(&c, "worker-0"), 0.0);
}

/// The put spill files under `dir`, at any depth.
fn put_files(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut dirs = vec![dir.to_owned()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if e.path().is_dir() {
                dirs.push(e.path());
            } else if name.starts_with("put-") {
                found.push(name);
            }
        }
    }
    found
}
