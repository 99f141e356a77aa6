//! An execution's outputs of any size, out of a local cluster over real sockets: an output
//! its report cannot show whole is kept on its entry worker, read over HTTPS
//! (`GET /v1/executions/{id}/outputs/{name}`) or with `faasflow result`, streamed in pieces,
//! the same bytes that went in; a client that goes away mid-download frees nothing, and an
//! output read whole once is freed (nothing left in the worker's arena).

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use faasflow_rpc::tls::ALPN_HTTP1;
use serde_json::Value;

mod support;

use support::local::{Cluster, https, sum, text};

const ECHO: &str = "name: echo
functions:
  echo: {pack: testkit, outputs: {out: bytes}}
steps:
  - task: echo
    inputs: {in: input.text}
output:
  out: echo.out
";

/// A 40 MiB output of the synthetic body, for a download cut short: far more than the planner
/// reads ahead (two 4 MiB pieces) and loopback sockets hold, so the client goes before the
/// planner's side has taken it whole (a 5 MiB one may be in the sockets already, and counts as
/// read: the planner cannot know what the client received).
const WIDE: &str = "name: wide
functions:
  wide: {runtime: 0ms, outputs: {out: {type: bytes, size: 40MiB}}}
steps:
  - task: wide
output:
  out: wide.out
";

/// 5 MiB of text no pattern repeats in.
fn big_text() -> String {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..5 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'a' + (x % 26) as u8)
        })
        .collect()
}

/// Starts an execution of `echo` with `input` (a file); waits for its end; its id and output.
fn run(c: &Cluster, input: &std::path::Path) -> (String, Value) {
    let at = format!("@{}", input.display());
    let o = c.run(&["start", "echo", "--input", &at]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let id = text(&o.stdout).trim().to_owned();
    let o = c.run(&["describe", &id, "--wait", "60", "--json"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let e: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(e["status"], "succeeded", "{e}");
    (id, e["output"].clone())
}

/// Bytes of outputs worker-0 keeps, once they are `want` (waiting up to 10 s).
fn kept(c: &Cluster, want: f64) -> f64 {
    let addr = c.worker("worker-0")["metrics"].as_str().expect("metrics").to_owned();
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let m = c.scrape("worker-0", &addr).expect("metrics");
        let v = sum(&m, "faasflow_kept_output_bytes");
        if v == want || Instant::now() > end {
            return v;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_output_of_any_size_is_read_whole_once_then_freed_and_a_cut_download_frees_nothing() {
    let c = Cluster::up("outputs", 1, &["--heartbeat-ms", "200"]);
    let wf = c.write("echo.yaml", ECHO);
    c.deploy(&wf);
    let big = big_text();
    let input = c.write("input.json", &serde_json::json!({ "text": big }).to_string());
    let bearer = format!("Bearer {}", c.token_text());
    let tls = c.tls(None, ALPN_HTTP1);
    let get = |id: &str| {
        format!(
            "GET /v1/executions/{id}/outputs/out HTTP/1.1\r\nHost: x\r\nAuthorization: {bearer}\r\nConnection: close\r\n\r\n"
        )
    };
    let size = (5u64 << 20) as f64;

    // Too long to show: the report says its size, and the worker keeps it.
    let (first, output) = run(&c, &input);
    assert_eq!(output["out"], serde_json::json!({"bytes": 5 << 20}), "{output}");
    assert_eq!(kept(&c, size), size);

    // A download cut short frees nothing.
    let wide_wf = c.write("wide.yaml", WIDE);
    c.deploy(&wide_wf);
    let o = c.run(&["start", "wide", "--input", "{}"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let wide = text(&o.stdout).trim().to_owned();
    let o = c.run(&["describe", &wide, "--wait", "60", "--json"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let both = size + (40u64 << 20) as f64;
    assert_eq!(kept(&c, both), both);
    {
        let s = std::net::TcpStream::connect(c.planner()).expect("connect");
        let name = rustls::pki_types::ServerName::try_from("planner").expect("name");
        let mut s = rustls::StreamOwned::new(rustls::ClientConnection::new(tls.clone(), name).expect("TLS"), s);
        s.write_all(get(&wide).as_bytes()).expect("request");
        let mut some = vec![0u8; 64 << 10];
        s.read_exact(&mut some).expect("the first bytes");
        assert!(String::from_utf8_lossy(&some).starts_with("HTTP/1.1 200"));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(kept(&c, both), both, "a cut download freed the output");
    // Read whole, it goes.
    let o = c.run(&["result", &wide, "--output", "out"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(o.stdout.len(), 40 << 20);
    assert_eq!(kept(&c, size), size);

    // Read whole with `faasflow result`: the same bytes that went in, then freed.
    let o = c.run(&["result", &first, "--output", "out"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        o.stdout == big.as_bytes(),
        "{} bytes came, not the input's",
        o.stdout.len()
    );
    assert_eq!(kept(&c, 0.0), 0.0, "read whole, it is freed");
    // Read again: it is gone, and the answer says why.
    let answer = https(&tls, &c.planner(), "planner", get(&first).as_bytes()).expect("an answer");
    let answer = String::from_utf8_lossy(&answer).into_owned();
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    assert!(answer.contains("read whole already"), "{answer}");

    // Over HTTPS, whole: its length first, then the bytes, then freed.
    let (second, _) = run(&c, &input);
    let answer = https(&tls, &c.planner(), "planner", get(&second).as_bytes()).expect("an answer");
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n").expect("a head");
    let head = String::from_utf8_lossy(&answer[..split]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains(&format!("content-length: {}", 5 << 20)), "{head}");
    assert!(head.contains("content-type: application/octet-stream"), "{head}");
    assert!(&answer[split + 4..] == big.as_bytes(), "the body is not the input");
    assert_eq!(kept(&c, 0.0), 0.0);

    // `result --output-dir` writes each output to a file of its name.
    let (third, _) = run(&c, &input);
    let dir = c.dir.join("results");
    let o = c.run(&["result", &third, "--output-dir", &dir.to_string_lossy()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(std::fs::read(dir.join("out")).expect("out") == big.as_bytes());
    assert_eq!(kept(&c, 0.0), 0.0);
    // Nothing is left in the worker's arena.
    let addr = c.worker("worker-0")["metrics"].as_str().expect("metrics").to_owned();
    let m = c.scrape("worker-0", &addr).expect("metrics");
    assert_eq!(sum(&m, "faasflow_arena_used_bytes"), 0.0, "the arena still holds bytes");
    // An output that is not there is named with those that are.
    let o = c.run(&["result", &third, "--output", "nothing"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("has no output `nothing` (its outputs: out)"),
        "{}",
        text(&o.stderr)
    );
}

const BLOB: &str = "name: blob
functions:
  blob:
    runtime: 0ms
    memory: 64MiB
    outputs:
      out: {type: bytes, size: 48MiB}
steps:
  - task: blob
output:
  out: blob.out
";

#[test]
fn an_output_over_its_quota_is_read_from_the_remote_tier_and_freed_there() {
    // 64 MiB of memory, half of it declared used and a 16 MiB margin: a quota of 16 MiB, so
    // the 48 MiB output goes to the remote tier.
    let c = Cluster::up("outputs-remote", 1, &["--heartbeat-ms", "200"]);
    let wf = c.write("blob.yaml", BLOB);
    c.deploy(&wf);
    let o = c.run(&["start", "blob"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let id = text(&o.stdout).trim().to_owned();
    let o = c.run(&["describe", &id, "--wait", "60", "--json"]);
    let e: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(e["status"], "succeeded", "{e}");
    assert_eq!(e["output"]["out"], serde_json::json!({"bytes": 48 << 20}), "{e}");
    assert!(
        c.redis_keys().expect("the cluster's Redis answers") >= 1,
        "the output is not in the remote tier"
    );
    let o = c.run(&["result", &id, "--output", "out"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(o.stdout.len(), 48 << 20);
    // The synthetic body's bytes: byte i is i mod 251.
    let wrong = o.stdout.iter().enumerate().position(|(i, b)| *b != (i % 251) as u8);
    assert_eq!(wrong, None, "a byte differs from what the function wrote");
    assert_eq!(kept(&c, 0.0), 0.0);
    let end = Instant::now() + Duration::from_secs(10);
    while c.redis_keys().expect("the cluster's Redis answers") > 0 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        c.redis_keys().expect("the cluster's Redis answers"),
        0,
        "read whole, it is deleted from the remote tier"
    );
}
