//! The pack runtime against a daemon played by the test: real shared memory, real rings, a
//! real socket; `serve_on` runs in a thread of the test.

mod common;

use std::collections::BTreeSet;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{FakeDaemon, PATIENCE, SEGMENT};
use faasflow_sdk::{Context, Error, Pack, ServeError, serve_on};
use faasflow_shm::frame::{Alloc, Frame, MAX_TEXT, ObjectRef, Status, Value};
use faasflow_shm::handshake::PROTOCOL_VERSION;

fn start(pack: Pack, threads: u32) -> (FakeDaemon, JoinHandle<Result<(), ServeError>>) {
    let (daemon_end, instance_end) = UnixStream::pair().expect("socketpair");
    let serving = std::thread::spawn(move || serve_on(pack, instance_end));
    (FakeDaemon::handshake(daemon_end, threads), serving)
}

fn echo(ctx: &mut Context<'_>) -> Result<(), Error> {
    let input = ctx.input("in")?;
    ctx.output("out", input)
}

/// Returns the error of reading the input named by the parameters, as its own error.
fn probe(ctx: &mut Context<'_>) -> Result<(), Error> {
    let name = std::str::from_utf8(ctx.params())?;
    ctx.input(name)?;
    Ok(())
}

fn pack() -> Pack {
    Pack::new("test")
        .function("echo", echo)
        .function("probe", probe)
        .function("fail", |_| Err("asked to fail".into()))
        .function("panic", |_| panic!("asked to panic"))
        .function("big", |ctx| ctx.output_with("out", 100, |b| b.fill(7)))
        .function("swallow", |ctx| {
            let _ = ctx.input("in");
            Ok(())
        })
        .function("long_error", |_| Err("é".repeat(MAX_TEXT).into()))
        .function("sleep", |ctx| {
            let ms: u64 = ctx.params_json()?;
            std::thread::sleep(Duration::from_millis(ms));
            Ok(())
        })
        .function("noop", |_| Ok(()))
        .function("sized", |ctx| {
            let n: usize = ctx.params_json()?;
            ctx.output_with("out", n, |b| b.fill(1))
        })
        // Sleeps (params: ms), then writes its input (if any) and its thread's name.
        .function("thread", |ctx| {
            let ms: u64 = ctx.params_json()?;
            std::thread::sleep(Duration::from_millis(ms));
            let input = ctx.input_opt("in")?.unwrap_or_default().to_vec();
            ctx.output("out", &input)?;
            let me = std::thread::current().name().unwrap_or_default().to_owned();
            ctx.output("thread", me.as_bytes())
        })
}

/// A call sent to follow another runs on the same thread right after it succeeds, its input
/// bound to the output just written, with no frame from the daemon in between.
#[test]
fn a_follower_runs_on_the_thread_of_the_call_it_follows_with_its_outputs() {
    let (mut d, _serving) = start(pack(), 4);
    let input = d.put(b"passed along");
    let (out1, thread1) = (d.reserve(64), d.reserve(64));
    let (out2, thread2) = (d.reserve(64), d.reserve(64));
    d.invoke(
        1,
        "thread",
        b"30",
        vec![("in", Value::One(input))],
        vec![("out", out1), ("thread", thread1)],
    );
    d.follow(
        2,
        1,
        "thread",
        b"0",
        vec![("in", Value::Prior("out".into()))],
        vec![("out", out2), ("thread", thread2)],
    );
    let first = d.complete();
    assert_eq!((first.call, first.status), (1, Status::Ok), "{}", first.message);
    let second = d.complete();
    assert_eq!((second.call, second.status), (2, Status::Ok), "{}", second.message);
    let read = |d: &FakeDaemon, c: &faasflow_shm::frame::Complete, name: &str| {
        let (_, r) = c.outputs.iter().find(|(n, _)| n == name).expect("written");
        d.read(r)
    };
    assert_eq!(read(&d, &second, "out"), b"passed along");
    assert_eq!(read(&d, &first, "thread"), read(&d, &second, "thread"));
    // It started when the first ended (both stamped on the host's monotonic clock).
    assert!(
        second.ended_ns >= first.ended_ns + second.exec_ns,
        "{first:?} {second:?}"
    );
}

/// A follower of a call that fails, of a call that did not write an output reserved for it,
/// or of a call the instance does not know is declined, not run.
#[test]
fn a_follower_that_cannot_run_is_declined() {
    let (mut d, _serving) = start(pack(), 2);
    let room = d.reserve(64);
    d.invoke(1, "fail", b"", vec![], vec![]);
    d.follow(2, 1, "noop", b"", vec![], vec![]);
    let failed = d.complete();
    assert_eq!((failed.call, failed.status), (1, Status::Failed));
    let c = d.complete();
    assert_eq!((c.call, c.status), (2, Status::Declined));
    // `noop` writes nothing, though `out` was reserved for it.
    d.invoke(3, "sleep", b"20", vec![], vec![("out", room)]);
    d.follow(4, 3, "echo", b"", vec![("in", Value::Prior("out".into()))], vec![]);
    let ended = d.complete();
    assert_eq!((ended.call, ended.status), (3, Status::Ok));
    let c = d.complete();
    assert_eq!((c.call, c.status), (4, Status::Declined));
    d.follow(6, 77, "noop", b"", vec![], vec![]);
    let c = d.complete();
    assert_eq!((c.call, c.status, c.exec_ns), (6, Status::Declined, 0));
}

/// A follower that arrives after the call it follows ended well runs at once on that
/// call's outputs (the instance remembers the last calls' outputs).
#[test]
fn a_follower_that_comes_late_runs_at_once() {
    let (mut d, _serving) = start(pack(), 2);
    let input = d.put(b"late");
    let (out1, thread1) = (d.reserve(64), d.reserve(64));
    d.invoke(
        1,
        "thread",
        b"0",
        vec![("in", Value::One(input))],
        vec![("out", out1), ("thread", thread1)],
    );
    assert_eq!(d.complete().status, Status::Ok);
    let (out2, thread2) = (d.reserve(64), d.reserve(64));
    d.follow(
        2,
        1,
        "thread",
        b"0",
        vec![("in", Value::Prior("out".into()))],
        vec![("out", out2), ("thread", thread2)],
    );
    let c = d.complete();
    assert_eq!((c.call, c.status), (2, Status::Ok), "{}", c.message);
    let (_, r) = c.outputs.iter().find(|(n, _)| n == "out").expect("written");
    assert_eq!(d.read(r), b"late");
}

#[test]
fn a_short_function_run_inline_by_the_leader_can_still_ask_for_room() {
    let (mut d, _serving) = start(pack(), 2);
    // Many quick calls: the function is measured short, so the leader runs it itself.
    for call in 0..50 {
        let room = d.reserve(8);
        d.invoke(call, "sized", b"4", vec![], vec![("out", room)]);
        let c = d.complete();
        assert_eq!((c.call, c.status), (call, Status::Ok), "{}", c.message);
    }
    // Now one does not fit its reservation: it asks, while other calls arrive behind it.
    d.invoke(100, "sized", b"64", vec![], vec![("out", ObjectRef::default())]);
    match d.recv() {
        Frame::Alloc(a) => assert_eq!((a.call, a.len), (100, 64)),
        other => panic!("expected an alloc, got {other:?}"),
    }
    d.invoke(101, "noop", b"", vec![], vec![]);
    let granted = d.reserve(64);
    d.grant(100, Ok(granted));
    let mut done = BTreeSet::new();
    for _ in 0..2 {
        let c = d.complete();
        assert_eq!(c.status, Status::Ok, "call {}: {}", c.call, c.message);
        done.insert(c.call);
    }
    assert_eq!(done, BTreeSet::from([100, 101]));
    assert_eq!(d.read(&ObjectRef { len: 64, ..granted }), [1; 64]);
}

#[test]
fn the_hello_announces_the_pack_and_its_functions() {
    let (d, _serving) = start(pack(), 1);
    assert_eq!(d.hello.version, PROTOCOL_VERSION);
    assert_eq!(d.hello.pack, "test");
    assert_eq!(d.hello.pid, std::process::id());
    assert_eq!(d.hello.functions[..3], ["echo", "probe", "fail"]);
}

#[test]
fn outputs_land_in_the_reserved_extents() {
    let (mut d, _serving) = start(pack(), 1);
    let input = d.put(b"hello arena");
    let room = d.reserve(64);
    d.invoke(5, "echo", b"", vec![("in", Value::One(input))], vec![("out", room)]);
    let c = d.complete();
    assert_eq!((c.call, c.status, c.message.as_str()), (5, Status::Ok, ""));
    assert!(c.exec_ns > 0);
    let written = ObjectRef { len: 11, ..room };
    assert_eq!(c.outputs, [("out".to_string(), written)]);
    assert_eq!(d.read(&written), b"hello arena");
}

#[test]
fn a_too_small_reservation_asks_for_room_and_writes_the_grant() {
    let (mut d, _serving) = start(pack(), 1);
    let small = d.reserve(2);
    d.invoke(9, "big", b"", vec![], vec![("out", small)]);
    let asked = d.recv();
    assert_eq!(
        asked,
        Frame::Alloc(Alloc {
            call: 9,
            name: "out".into(),
            len: 100
        })
    );
    let granted = d.reserve(128);
    d.grant(9, Ok(granted));
    let c = d.complete();
    assert_eq!(c.status, Status::Ok, "{}", c.message);
    let written = ObjectRef { len: 100, ..granted };
    assert_eq!(c.outputs, [("out".to_string(), written)]);
    assert_eq!(d.read(&written), [7; 100]);
}

#[test]
fn a_refused_grant_fails_the_call_with_its_message() {
    let (mut d, _serving) = start(pack(), 1);
    d.invoke(3, "big", b"", vec![], vec![]);
    assert!(matches!(d.recv(), Frame::Alloc(Alloc { call: 3, len: 100, .. })));
    d.grant(3, Err("the arena is full".into()));
    let c = d.complete();
    assert_eq!(c.status, Status::Failed);
    assert_eq!(c.message, "output `out` (100 bytes): the arena is full");
    assert!(c.outputs.is_empty());
}

#[test]
fn absent_list_and_unknown_inputs_are_explained() {
    let (mut d, _serving) = start(pack(), 1);
    let a = d.put(b"a");
    let inputs = || {
        vec![
            ("gone", Value::Absent),
            ("many", Value::List(vec![a, a])),
            ("one", Value::One(a)),
        ]
    };
    let message = |d: &mut FakeDaemon, name: &str| {
        d.invoke(1, "probe", name.as_bytes(), inputs(), vec![]);
        let c = d.complete();
        assert_eq!(c.status, Status::Failed, "{name}");
        c.message
    };
    let gone = message(&mut d, "gone");
    assert!(
        gone.starts_with("input `gone` is absent: every step that produces it was skipped by a switch"),
        "{gone}"
    );
    let many = message(&mut d, "many");
    assert!(
        many.contains("is a list of 2 objects") && many.contains("`inputs`"),
        "{many}"
    );
    assert_eq!(
        message(&mut d, "nope"),
        "`probe` has no input `nope`; its inputs are: gone, many, one"
    );
    d.invoke(2, "probe", b"one", inputs(), vec![]);
    assert_eq!(d.complete().status, Status::Ok);
}

#[test]
fn errors_and_panics_become_failed_and_panicked() {
    let (mut d, _serving) = start(pack(), 2);
    d.invoke(1, "fail", b"", vec![], vec![]);
    let c = d.complete();
    assert_eq!((c.status, c.message.as_str()), (Status::Failed, "asked to fail"));
    d.invoke(2, "panic", b"", vec![], vec![]);
    let c = d.complete();
    assert_eq!((c.status, c.message.as_str()), (Status::Panicked, "asked to panic"));
    // The instance survives both.
    d.invoke(3, "noop", b"", vec![], vec![]);
    assert_eq!(d.complete().status, Status::Ok);
}

#[test]
fn long_messages_are_cut_on_a_character_boundary() {
    let (mut d, _serving) = start(pack(), 1);
    d.invoke(1, "long_error", b"", vec![], vec![]);
    let c = d.complete();
    assert_eq!(c.status, Status::Failed);
    assert!(c.message.len() <= MAX_TEXT && c.message.len() > MAX_TEXT - 4);
    assert!(c.message.chars().all(|ch| ch == 'é'));
}

#[test]
fn bad_object_refs_fail_the_call_as_protocol_violations() {
    let (mut d, _serving) = start(pack(), 1);
    let input = d.put(b"data");
    let room = d.reserve(16);
    /// Function, inputs, reserved outputs, and what the message must say.
    type Case<'a> = (&'a str, Vec<(&'a str, Value)>, Vec<(&'a str, ObjectRef)>, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (
            "echo",
            vec![(
                "in",
                Value::One(ObjectRef {
                    offset: u64::MAX - 1,
                    ..input
                }),
            )],
            vec![("out", room)],
            "outside the",
        ),
        (
            "echo",
            vec![("in", Value::One(ObjectRef { segment: 7, ..input }))],
            vec![("out", room)],
            "segment 7",
        ),
        (
            "echo",
            vec![("in", Value::One(input))],
            vec![("out", input)],
            "overlaps input `in`",
        ),
        (
            "echo",
            vec![("in", Value::One(input))],
            vec![(
                "out",
                ObjectRef {
                    segment: SEGMENT + 1,
                    ..room
                },
            )],
            "segment 1",
        ),
        // The function ignores the error; the call fails all the same.
        (
            "swallow",
            vec![("in", Value::One(ObjectRef { len: u64::MAX, ..input }))],
            vec![],
            "outside the",
        ),
    ];
    for (call, (function, inputs, outputs, expect)) in cases.into_iter().enumerate() {
        d.invoke(call as u64, function, b"", inputs, outputs);
        let c = d.complete();
        assert_eq!(c.status, Status::Failed, "case {call}");
        assert!(
            c.message.starts_with("protocol violation: ") && c.message.contains(expect),
            "case {call}: {}",
            c.message
        );
        assert!(c.outputs.is_empty());
    }
    let f = d.function("noop");
    d.send(&Frame::Invoke(faasflow_shm::frame::Invoke {
        call: 99,
        after: 0,
        function: f + 1000,
        params: vec![],
        inputs: vec![],
        outputs: vec![],
    }));
    let c = d.complete();
    assert_eq!(c.status, Status::Failed);
    assert!(c.message.contains("function index"), "{}", c.message);
}

#[test]
fn many_concurrent_calls_all_complete_on_at_most_threads_threads() {
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (r, m) = (running.clone(), most.clone());
    let pack = Pack::new("wide").function("sleep", move |_| {
        let now = r.fetch_add(1, Ordering::SeqCst) + 1;
        m.fetch_max(now, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(20));
        r.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    });
    let (mut d, _serving) = start(pack, 8);
    let start = Instant::now();
    for call in 0..64 {
        d.invoke(call, "sleep", b"", vec![], vec![]);
    }
    let mut done = BTreeSet::new();
    for _ in 0..64 {
        let c = d.complete();
        assert_eq!(c.status, Status::Ok);
        assert!(done.insert(c.call), "call {} completed twice", c.call);
    }
    assert_eq!(done, (0..64).collect());
    let elapsed = start.elapsed();
    let most = most.load(Ordering::SeqCst);
    assert!(most <= 8, "{most} calls ran at once with 8 threads");
    assert!(most >= 4, "only {most} calls ran at once with 8 threads");
    // One at a time would take 64 × 20 ms = 1.28 s; 8 at a time, 160 ms.
    assert!(elapsed < Duration::from_millis(1100), "{elapsed:?}");
}

#[test]
fn one_thread_waiting_for_a_grant_still_takes_the_calls_behind_it() {
    let (mut d, _serving) = start(pack(), 1);
    d.invoke(1, "big", b"", vec![], vec![]);
    assert!(matches!(d.recv(), Frame::Alloc(Alloc { call: 1, .. })));
    // Queued behind the waiting call, on the only thread.
    let input = d.put(b"x");
    let room = d.reserve(8);
    d.invoke(2, "noop", b"", vec![], vec![]);
    d.invoke(3, "echo", b"", vec![("in", Value::One(input))], vec![("out", room)]);
    assert!(
        d.try_recv(Duration::from_millis(100)).is_none(),
        "nothing completes before the grant"
    );
    let granted = d.reserve(100);
    d.grant(1, Ok(granted));
    let mut done = BTreeSet::new();
    for _ in 0..3 {
        let c = d.complete();
        assert_eq!(c.status, Status::Ok, "call {}: {}", c.call, c.message);
        done.insert(c.call);
    }
    assert_eq!(done, BTreeSet::from([1, 2, 3]));
}

#[test]
fn grants_reach_their_calls_whatever_the_order() {
    let (mut d, _serving) = start(pack(), 3);
    for call in [10, 11, 12] {
        d.invoke(call, "big", b"", vec![], vec![]);
    }
    let mut asked = Vec::new();
    for _ in 0..3 {
        match d.recv() {
            Frame::Alloc(a) => asked.push(a.call),
            other => panic!("expected an alloc, got {other:?}"),
        }
    }
    asked.sort_unstable();
    assert_eq!(asked, [10, 11, 12]);
    // A busy call occupies nothing: grants come back in reverse order, one refused.
    let mut extents = Vec::new();
    for call in [12, 11] {
        let r = d.reserve(100);
        extents.push((call, r));
        d.grant(call, Ok(r));
    }
    d.grant(10, Err("no".into()));
    let mut seen = BTreeSet::new();
    for _ in 0..3 {
        let c = d.complete();
        seen.insert(c.call);
        match extents.iter().find(|(call, _)| *call == c.call) {
            Some((_, r)) => {
                assert_eq!(c.status, Status::Ok);
                assert_eq!(c.outputs, [("out".to_string(), *r)]);
                assert_eq!(d.read(r), [7; 100]);
            }
            None => assert_eq!((c.call, c.status), (10, Status::Failed)),
        }
    }
    assert_eq!(seen.len(), 3);
}

#[test]
fn completions_ring_the_doorbell() {
    let (mut d, _serving) = start(pack(), 1);
    // The call sleeps long enough for the waiting "daemon" to park on its doorbell; only a
    // ring wakes it before the 20 s patience.
    d.invoke(1, "sleep", b"200", vec![], vec![]);
    let start = Instant::now();
    assert_eq!(d.complete().status, Status::Ok);
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(200) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
}

#[test]
fn the_synthetic_body_fills_its_outputs_and_takes_its_runtime() {
    let (mut d, _serving) = start(faasflow_sdk::synthetic::pack(), 2);
    let a = d.put(&[1; 3000]);
    let b = d.put(&[2; 5]);
    let x = d.reserve(10_000);
    let y = d.reserve(1);
    d.invoke(
        1,
        "synthetic",
        br#"{"runtime_us": 30000}"#,
        vec![
            ("a", Value::One(a)),
            ("b", Value::List(vec![a, b])),
            ("c", Value::Absent),
        ],
        vec![("x", x), ("y", y)],
    );
    let c = d.complete();
    assert_eq!(c.status, Status::Ok, "{}", c.message);
    assert!(c.exec_ns >= 30_000_000, "{} ns", c.exec_ns);
    assert_eq!(c.outputs, [("x".to_string(), x), ("y".to_string(), y)]);
    let bytes = d.read(&x);
    assert!(bytes.iter().enumerate().all(|(i, b)| usize::from(*b) == i % 251));
    d.invoke(2, "synthetic", b"", vec![], vec![]);
    let c = d.complete();
    assert_eq!(c.status, Status::Ok);
    assert!(c.exec_ns < 30_000_000);
}

#[test]
fn closing_the_socket_stops_serving() {
    let (d, serving) = start(pack(), 2);
    drop(d);
    let deadline = Instant::now() + PATIENCE;
    while !serving.is_finished() {
        assert!(Instant::now() < deadline, "serve_on still runs");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(serving.join().expect("no panic").is_ok());
}

#[test]
fn an_undecodable_frame_is_fatal_and_closes_the_socket() {
    let (mut d, serving) = start(pack(), 1);
    d.send_raw(&[0xee, 1, 2, 3]);
    assert!(d.socket_closed(PATIENCE), "the instance shuts the socket down");
    let err = serving.join().expect("no panic").unwrap_err();
    assert!(matches!(err, ServeError::Protocol(_)), "{err}");
    assert!(err.to_string().contains("undecodable frame"), "{err}");
}

#[test]
fn an_unexpected_grant_is_fatal() {
    let (mut d, serving) = start(pack(), 1);
    d.grant(77, Ok(ObjectRef::default()));
    assert!(d.socket_closed(PATIENCE));
    let err = serving.join().expect("no panic").unwrap_err();
    assert!(err.to_string().contains("call 77"), "{err}");
}

#[test]
fn a_call_waiting_for_a_grant_does_not_hold_up_other_threads() {
    let (mut d, _serving) = start(pack(), 2);
    d.invoke(1, "big", b"", vec![], vec![]);
    assert!(matches!(d.recv(), Frame::Alloc(Alloc { call: 1, .. })));
    d.invoke(2, "noop", b"", vec![], vec![]);
    let c = d.complete();
    assert_eq!((c.call, c.status), (2, Status::Ok), "runs while call 1 waits");
    let granted = d.reserve(100);
    d.grant(1, Ok(granted));
    let c = d.complete();
    assert_eq!((c.call, c.status), (1, Status::Ok));
}
