//! The daemon's side of the instance protocol, for tests: creates the arena and the rings,
//! answers the handshake, lays objects out in the arena, sends frames and receives them the
//! way the daemon does (parked on its doorbell).
#![allow(dead_code, unreachable_pub)]

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use faasflow_shm::frame::{Complete, Frame, Grant, Invoke, ObjectRef, Refusal, Value};
use faasflow_shm::handshake::{Hello, Welcome, WelcomeFiles};
use faasflow_shm::{Consumer, Doorbell, Producer, Region, Ring};

pub const ARENA_LEN: usize = 16 << 20;
pub const DOORBELL: u64 = 64;
/// Objects start past the first page (offset 0 is left to empty references).
pub const RESERVED: u64 = 4096;
pub const SEGMENT: u32 = 0;
const RING_CAPACITY: usize = 1 << 16;
/// How long a test waits for a frame before it fails.
pub const PATIENCE: Duration = Duration::from_secs(20);

pub struct FakeDaemon {
    pub hello: Hello,
    pub sock: UnixStream,
    arena: Arc<Region>,
    _rings: Arc<Region>,
    _bell: Arc<Region>,
    to_instance: Producer,
    to_daemon: Consumer,
    bell: Doorbell,
    next: u64,
    buf: Vec<u8>,
}

impl FakeDaemon {
    /// Answers the handshake of the instance at the other end of `sock`.
    pub fn handshake(mut sock: UnixStream, threads: u32) -> FakeDaemon {
        let hello = Hello::recv(&mut sock).expect("the instance says hello");
        let arena = Arc::new(Region::create("test-arena", ARENA_LEN).expect("arena"));
        let bell_region = Arc::new(Region::create("test-bell", 4096).expect("bell"));
        let bell = Doorbell::attach(&bell_region, DOORBELL as usize).expect("doorbell");
        bell.reset();
        let ring_len = Ring::required_len(RING_CAPACITY);
        let rings = Arc::new(Region::create("test-rings", 2 * ring_len).expect("rings"));
        let to_instance = Ring::init(&rings, 0, RING_CAPACITY).expect("ring").into_producer();
        let to_daemon = Ring::init(&rings, ring_len, RING_CAPACITY)
            .expect("ring")
            .into_consumer();
        Welcome {
            instance: 1,
            segment: SEGMENT,
            prefault: ARENA_LEN as u64,
            doorbell: DOORBELL,
            to_instance: 0,
            to_daemon: ring_len as u64,
            threads,
        }
        .send(
            &mut sock,
            WelcomeFiles {
                arena: arena.fd(),
                rings: rings.fd(),
                bell: bell_region.fd(),
            },
        )
        .expect("welcome");
        faasflow_shm::handshake::recv_ready(&mut sock).expect("the instance says it is ready");
        FakeDaemon {
            hello,
            sock,
            arena,
            _rings: rings,
            _bell: bell_region,
            to_instance,
            to_daemon,
            bell,
            next: RESERVED,
            buf: vec![0; RING_CAPACITY],
        }
    }

    /// Room for `len` bytes in the arena (8-byte aligned, never reused).
    pub fn reserve(&mut self, len: u64) -> ObjectRef {
        let r = ObjectRef {
            segment: SEGMENT,
            offset: self.next,
            len,
        };
        self.next = (self.next + len).next_multiple_of(8);
        assert!(self.next <= ARENA_LEN as u64, "test arena exhausted");
        r
    }

    /// A sealed object holding `bytes`.
    pub fn put(&mut self, bytes: &[u8]) -> ObjectRef {
        let r = self.reserve(bytes.len() as u64);
        let ptr = self.arena.range_ptr(r.offset, r.len).expect("inside");
        // SAFETY: (test) inside the mapping; fresh extent nobody else reads or writes yet.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr, bytes.len()) };
        r
    }

    /// The bytes of `r` (a completed output).
    pub fn read(&self, r: &ObjectRef) -> Vec<u8> {
        assert_eq!(r.segment, SEGMENT);
        let ptr = self.arena.range_ptr(r.offset, r.len).expect("inside the arena");
        // SAFETY: (test) inside the mapping; the call that wrote it completed.
        unsafe { std::slice::from_raw_parts(ptr, r.len as usize) }.to_vec()
    }

    /// The index of function `name` in the hello.
    pub fn function(&self, name: &str) -> u32 {
        self.hello
            .functions
            .iter()
            .position(|f| f == name)
            .unwrap_or_else(|| panic!("the pack has no function `{name}`")) as u32
    }

    pub fn send(&mut self, frame: &Frame) {
        let mut bytes = Vec::new();
        frame.encode(&mut bytes).expect("encodes");
        self.send_raw(&bytes);
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.to_instance
            .push_wait(bytes, Some(PATIENCE))
            .expect("room in the ring");
    }

    pub fn invoke(
        &mut self,
        call: u64,
        function: &str,
        params: &[u8],
        inputs: Vec<(&str, Value)>,
        outputs: Vec<(&str, ObjectRef)>,
    ) {
        self.follow(call, 0, function, params, inputs, outputs);
    }

    /// Sends call `call` to run after call `after` (0: now).
    pub fn follow(
        &mut self,
        call: u64,
        after: u64,
        function: &str,
        params: &[u8],
        inputs: Vec<(&str, Value)>,
        outputs: Vec<(&str, ObjectRef)>,
    ) {
        let function = self.function(function);
        self.send(&Frame::Invoke(Invoke {
            call,
            after,
            function,
            params: params.to_vec(),
            inputs: inputs.into_iter().map(|(n, v)| (n.to_owned(), v)).collect(),
            outputs: outputs.into_iter().map(|(n, r)| (n.to_owned(), r)).collect(),
        }));
    }

    pub fn grant(&mut self, call: u64, result: Result<ObjectRef, String>) {
        self.send(&Frame::Grant(Grant {
            call,
            result: result.map_err(Refusal),
        }));
    }

    /// The next frame from the instance within `timeout`, waiting like the daemon: parked
    /// on the doorbell (so an instance that forgets to ring it makes this wait the timeout).
    pub fn try_recv(&mut self, timeout: Duration) -> Option<Frame> {
        let FakeDaemon {
            bell, to_daemon, buf, ..
        } = self;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(n) = to_daemon.pop(buf).expect("a sound ring") {
                return Some(Frame::decode(&buf[..n]).expect("a valid frame"));
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            bell.wait(Duration::from_micros(5), Some(left), || to_daemon.is_ready());
        }
    }

    pub fn recv(&mut self) -> Frame {
        self.try_recv(PATIENCE).expect("a frame from the instance in time")
    }

    pub fn complete(&mut self) -> Complete {
        match self.recv() {
            Frame::Complete(c) => c,
            other => panic!("expected a completion, got {other:?}"),
        }
    }

    /// Reads the handshake socket until end-of-file (the instance is gone); whether it came.
    pub fn socket_closed(&mut self, timeout: Duration) -> bool {
        self.sock.set_read_timeout(Some(timeout)).expect("timeout");
        let mut b = [0u8; 16];
        matches!(self.sock.read(&mut b), Ok(0))
    }
}
