//! One-way latency of a 64-byte frame through the shm ring (half a ping-pong round trip),
//! between two threads and between two processes, spinning and parked, next to references
//! measured in the same run: a std mpsc channel between threads and a pipe between processes.
//! Prints a Markdown table. Run: `cargo bench -p faasflow-shm --bench ring`.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use faasflow_shm::ring::DEFAULT_SPIN;
use faasflow_shm::{Consumer, Producer, Region, Ring};

const FRAME: usize = 64;
const ROUNDS: usize = 20_000;
const CAPACITY: usize = 4096;
const ENV_MODE: &str = "FAASFLOW_SHM_BENCH_CHILD";
const FOREVER: Duration = Duration::from_secs(3600);

fn offsets() -> (usize, usize) {
    (0, Ring::required_len(CAPACITY).next_multiple_of(64))
}

fn region_len() -> usize {
    offsets().1 + Ring::required_len(CAPACITY)
}

/// Echoes `ROUNDS` frames from `inp` to `out`.
fn echo(mut inp: Consumer, mut out: Producer, spin: Duration) {
    inp.set_spin(spin);
    out.set_spin(spin);
    let mut buf = [0u8; FRAME];
    for _ in 0..ROUNDS {
        let n = inp.pop_wait(&mut buf, None).expect("valid").expect("no timeout");
        out.push_wait(&buf[..n], None).expect("push");
    }
}

/// Round trips through `out` and back on `inp`; returns one-way latencies (half of each RTT).
fn ping(mut out: Producer, mut inp: Consumer, spin: Duration) -> Vec<Duration> {
    out.set_spin(spin);
    inp.set_spin(spin);
    let frame = [7u8; FRAME];
    let mut buf = [0u8; FRAME];
    let mut samples = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let t = Instant::now();
        out.push_wait(&frame, None).expect("push");
        inp.pop_wait(&mut buf, None).expect("valid").expect("no timeout");
        samples.push(t.elapsed() / 2);
    }
    samples
}

fn threads_ring(spin: Duration) -> Vec<Duration> {
    let a = Ring::new_local(CAPACITY).expect("capacity");
    let b = Ring::new_local(CAPACITY).expect("capacity");
    let (a_in, b_out) = (a.clone_view().into_consumer(), b.clone_view().into_producer());
    let t = std::thread::spawn(move || echo(a_in, b_out, spin));
    let s = ping(a.into_producer(), b.into_consumer(), spin);
    t.join().expect("echo thread");
    s
}

fn threads_mpsc() -> Vec<Duration> {
    let (tx, rx) = mpsc::channel::<[u8; FRAME]>();
    let (tx2, rx2) = mpsc::channel::<[u8; FRAME]>();
    let t = std::thread::spawn(move || {
        for _ in 0..ROUNDS {
            let f = rx.recv().expect("frame");
            tx2.send(f).expect("send back");
        }
    });
    let mut samples = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let t = Instant::now();
        tx.send([7; FRAME]).expect("send");
        rx2.recv().expect("frame back");
        samples.push(t.elapsed() / 2);
    }
    t.join().expect("echo thread");
    samples
}

fn spawn_child(mode: &str, fd: Option<i32>) -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("bench binary"));
    cmd.env(ENV_MODE, mode);
    if let Some(fd) = fd {
        cmd.env("FAASFLOW_SHM_BENCH_FD", fd.to_string());
        // SAFETY: runs in the forked child before exec and only calls the async-signal-safe
        // fcntl, clearing close-on-exec so the child inherits the region's fd.
        unsafe {
            cmd.pre_exec(move || {
                if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    cmd
}

fn processes_ring(spin: Duration) -> Vec<Duration> {
    let (a, b) = offsets();
    let region = Arc::new(Region::create("bench", region_len()).expect("memfd"));
    let out = Ring::init(&region, a, CAPACITY).expect("ring").into_producer();
    let inp = Ring::init(&region, b, CAPACITY).expect("ring").into_consumer();
    let mode = if spin >= FOREVER {
        "ring-spin"
    } else if spin.is_zero() {
        "ring-park"
    } else {
        "ring-default"
    };
    let mut child = spawn_child(mode, Some(region.fd().as_raw_fd())).spawn().expect("spawn");
    let s = ping(out, inp, spin);
    assert!(child.wait().expect("child").success());
    s
}

fn processes_pipe() -> Vec<Duration> {
    let mut child = spawn_child("pipe", None)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut w = child.stdin.take().expect("stdin");
    let mut r = child.stdout.take().expect("stdout");
    let mut buf = [0u8; FRAME];
    let mut samples = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let t = Instant::now();
        w.write_all(&[7; FRAME]).expect("write");
        r.read_exact(&mut buf).expect("read");
        samples.push(t.elapsed() / 2);
    }
    drop(w);
    assert!(child.wait().expect("child").success());
    samples
}

fn child(mode: &str) {
    if mode == "pipe" {
        let (mut i, mut o) = (std::io::stdin().lock(), std::io::stdout().lock());
        let mut buf = [0u8; FRAME];
        for _ in 0..ROUNDS {
            i.read_exact(&mut buf).expect("read");
            o.write_all(&buf).expect("write");
            o.flush().expect("flush");
        }
        return;
    }
    let fd: i32 = std::env::var("FAASFLOW_SHM_BENCH_FD")
        .expect("fd")
        .parse()
        .expect("fd number");
    // SAFETY: the parent cleared close-on-exec on this fd and passed its number; we own it now.
    let region = Arc::new(Region::open(unsafe { OwnedFd::from_raw_fd(fd) }).expect("region"));
    let (a, b) = offsets();
    let inp = Ring::attach(&region, a).expect("ring a").into_consumer();
    let out = Ring::attach(&region, b).expect("ring b").into_producer();
    let spin = match mode {
        "ring-spin" => FOREVER,
        "ring-park" => Duration::ZERO,
        _ => DEFAULT_SPIN,
    };
    echo(inp, out, spin);
}

/// A measurement: one-way latency samples.
type Case = Box<dyn Fn() -> Vec<Duration>>;

fn pct(s: &mut [Duration], p: f64) -> f64 {
    s.sort_unstable();
    let i = ((s.len() as f64 - 1.0) * p).round() as usize;
    s[i].as_nanos() as f64 / 1000.0
}

fn main() {
    if let Ok(mode) = std::env::var(ENV_MODE) {
        return child(&mode);
    }
    // `cargo test --benches` runs benches with `--bench` absent; keep that quick.
    if !std::env::args().any(|a| a == "--bench") {
        println!("ring bench: run with `cargo bench -p faasflow-shm --bench ring`");
        return;
    }
    let cases: Vec<(&str, Case)> = vec![
        ("shm ring, 2 threads, spinning", Box::new(|| threads_ring(FOREVER))),
        (
            "shm ring, 2 threads, parking (no spin)",
            Box::new(|| threads_ring(Duration::ZERO)),
        ),
        (
            "shm ring, 2 threads, default (5 µs spin, then park)",
            Box::new(|| threads_ring(DEFAULT_SPIN)),
        ),
        ("reference: std mpsc channel, 2 threads", Box::new(threads_mpsc)),
        ("shm ring, 2 processes, spinning", Box::new(|| processes_ring(FOREVER))),
        (
            "shm ring, 2 processes, parking (no spin)",
            Box::new(|| processes_ring(Duration::ZERO)),
        ),
        (
            "shm ring, 2 processes, default (5 µs spin, then park)",
            Box::new(|| processes_ring(DEFAULT_SPIN)),
        ),
        ("reference: pipe, 2 processes", Box::new(processes_pipe)),
    ];
    println!("One-way latency of a {FRAME}-byte frame (half a ping-pong round trip), {ROUNDS} round trips each\n");
    println!("| path | p50 µs | p99 µs |");
    println!("|---|---:|---:|");
    for (name, run) in cases {
        let mut s = run();
        println!("| {name} | {:.2} | {:.2} |", pct(&mut s, 0.5), pct(&mut s, 0.99));
    }
}
