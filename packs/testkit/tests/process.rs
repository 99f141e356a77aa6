//! The real `faasflow-pack-testkit` executable as a child process, started the way the daemon
//! starts an instance: its end of the socket inherited, the fd number in the environment.

#[path = "../../../sdk/tests/common/mod.rs"]
mod common;

use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{FakeDaemon, PATIENCE};
use faasflow_shm::frame::{ObjectRef, Status, Value};
use faasflow_shm::handshake::INSTANCE_FD_ENV;

const BIN: &str = env!("CARGO_BIN_EXE_faasflow-pack-testkit");

/// Starts the pack with `fd` inherited (close-on-exec cleared in the child only).
fn spawn_instance(fd: RawFd) -> Child {
    let mut cmd = Command::new(BIN);
    cmd.env(INSTANCE_FD_ENV, fd.to_string()).stdin(Stdio::null());
    // SAFETY: the closure runs in the forked child before exec and only calls fcntl, which is
    // async-signal-safe, on an fd number; it allocates nothing and takes no lock.
    unsafe {
        cmd.pre_exec(move || {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    };
    cmd.spawn().expect("start the testkit pack")
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        assert!(Instant::now() < deadline, "the instance did not exit");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn the_real_pack_echoes_and_its_exit_is_seen() {
    let (daemon_end, instance_end) = UnixStream::pair().expect("socketpair");
    let mut child = spawn_instance(instance_end.as_raw_fd());
    drop(instance_end);
    let mut d = FakeDaemon::handshake(daemon_end, 2);
    assert_eq!(d.hello.pack, "testkit");
    assert_eq!(d.hello.pid, child.id());

    let input = d.put(b"across processes");
    let room = d.reserve(64);
    d.invoke(1, "echo", b"", vec![("in", Value::One(input))], vec![("out", room)]);
    let c = d.complete();
    assert_eq!(c.status, Status::Ok, "{}", c.message);
    let written = ObjectRef { len: 16, ..room };
    assert_eq!(c.outputs, [("out".to_string(), written)]);
    assert_eq!(d.read(&written), b"across processes");

    d.invoke(2, "panic", b"", vec![], vec![]);
    let c = d.complete();
    assert_eq!(
        (c.status, c.message.as_str()),
        (Status::Panicked, "testkit: asked to panic")
    );

    d.invoke(3, "exit", b"", vec![], vec![]);
    assert!(
        d.socket_closed(PATIENCE),
        "the socket reaches end-of-file when the instance dies"
    );
    assert_eq!(wait_exit(&mut child).code(), Some(3));
    assert!(
        d.try_recv(Duration::from_millis(50)).is_none(),
        "no completion for a call that exited"
    );
}

#[test]
fn the_pack_exits_when_the_daemon_closes_the_socket() {
    let (daemon_end, instance_end) = UnixStream::pair().expect("socketpair");
    let mut child = spawn_instance(instance_end.as_raw_fd());
    drop(instance_end);
    let mut d = FakeDaemon::handshake(daemon_end, 1);
    d.invoke(1, "noop", b"", vec![], vec![]);
    assert_eq!(d.complete().status, Status::Ok);
    drop(d);
    assert_eq!(wait_exit(&mut child).code(), Some(0));
}

#[test]
fn run_by_hand_it_says_what_it_is() {
    let out = Command::new(BIN).env_remove(INSTANCE_FD_ENV).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`testkit` is a faasflow function pack (functions: echo, concat, noop, fail, panic, exit, hang, emit, json, len, touch, sandbox, snoop, say, fnv); the faasflow daemon starts it, it is not run by hand"),
        "{err}"
    );
    let out = Command::new(BIN).arg("--list").output().expect("run");
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().collect::<Vec<_>>(),
        [
            "echo", "concat", "noop", "fail", "panic", "exit", "hang", "emit", "json", "len", "touch", "sandbox",
            "snoop", "say", "fnv"
        ]
    );
    let out = Command::new(BIN).env(INSTANCE_FD_ENV, "banana").output().expect("run");
    assert_eq!(out.status.code(), Some(2));
}
