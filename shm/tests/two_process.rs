//! Two real processes share a memfd region holding two rings (parent → child and child →
//! parent) and each sends 100,000 checksummed frames of varying length while receiving the
//! other's; both check order, lengths and checksums. The child is this test binary, re-run
//! with `FAASFLOW_SHM_CHILD_FD` set and the region's fd inherited.
#![cfg(not(loom))]

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use faasflow_shm::{Consumer, Producer, Region, Ring};

const FRAMES: u64 = 100_000;
const CAPACITY: usize = 4096;
const ENV_FD: &str = "FAASFLOW_SHM_CHILD_FD";
const TIMEOUT: Option<Duration> = Some(Duration::from_secs(30));

fn ring_offsets() -> (usize, usize) {
    (0, Ring::required_len(CAPACITY).next_multiple_of(64))
}

/// Frame `i` of the stream tagged `salt`: seq u64 | payload | FNV-1a of seq and payload.
fn make_frame(salt: u64, i: u64, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&i.to_le_bytes());
    let len = ((i * 7919 + salt) % 200) as usize;
    out.extend((0..len).map(|k| (i as u8).wrapping_mul(13).wrapping_add(k as u8) ^ salt as u8));
    let sum = fnv(out);
    out.extend_from_slice(&sum.to_le_bytes());
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn send_all(mut p: Producer, salt: u64) {
    let mut f = Vec::new();
    for i in 0..FRAMES {
        make_frame(salt, i, &mut f);
        p.push_wait(&f, TIMEOUT).expect("push within the timeout");
    }
}

fn receive_all(mut c: Consumer, salt: u64) {
    let mut buf = vec![0u8; c.max_frame_len()];
    let mut expected = Vec::new();
    for i in 0..FRAMES {
        let n = c
            .pop_wait(&mut buf, TIMEOUT)
            .expect("valid frame")
            .expect("frame within the timeout");
        let got = &buf[..n];
        let (body, sum) = got.split_at(n - 8);
        assert_eq!(fnv(body).to_le_bytes(), sum, "checksum of frame {i}");
        make_frame(salt, i, &mut expected);
        assert_eq!(got, &expected[..], "frame {i} out of order or damaged");
    }
}

/// Sends on `out` from a second thread while receiving on `inp`.
fn exchange(out: Producer, inp: Consumer, send_salt: u64, recv_salt: u64) {
    let sender = std::thread::spawn(move || send_all(out, send_salt));
    receive_all(inp, recv_salt);
    sender.join().expect("sender thread");
}

#[test]
fn two_processes_exchange_100k_frames_each_way() {
    if let Ok(fd) = std::env::var(ENV_FD) {
        return child(fd.parse().expect("fd number"));
    }
    let (a, b) = ring_offsets();
    let region = Arc::new(Region::create("two-process-test", b + Ring::required_len(CAPACITY)).expect("memfd"));
    let to_child = Ring::init(&region, a, CAPACITY).expect("ring a").into_producer();
    let from_child = Ring::init(&region, b, CAPACITY).expect("ring b").into_consumer();
    let fd = region.fd().as_raw_fd();
    let mut cmd = Command::new(std::env::current_exe().expect("test binary"));
    cmd.args([
        "--exact",
        "two_processes_exchange_100k_frames_each_way",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(ENV_FD, fd.to_string());
    // SAFETY: the closure runs in the forked child before exec and only calls fcntl, which is
    // async-signal-safe; it clears close-on-exec on the region's fd so the child inherits it.
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("spawn child");
    exchange(to_child, from_child, 1, 2);
    let status = child.wait().expect("child exit");
    assert!(status.success(), "child failed: {status}");
}

fn child(fd: i32) {
    // SAFETY: the parent passed this fd number and cleared close-on-exec on it before exec; it
    // is open in this process and nothing else here owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let region = Arc::new(Region::open(fd).expect("map the parent's region"));
    let (a, b) = ring_offsets();
    let from_parent = Ring::attach(&region, a).expect("ring a header").into_consumer();
    let to_parent = Ring::attach(&region, b).expect("ring b header").into_producer();
    exchange(to_parent, from_parent, 2, 1);
}
