//! The peer transport between two daemons' endpoints on 127.0.0.1: object bandwidth by size
//! (QUIC `send_object` landing in an arena extent) next to a raw single-stream TCP transfer of
//! the same bytes into the same kind of extent, and the one-way latency of a control message
//! next to a TCP ping-pong of the same frame. Every reference is measured in the same run, the
//! QUIC and TCP runs of one size interleaved. Prints Markdown tables on stdout and progress on
//! stderr.
//!
//! Each endpoint runs on a tokio runtime of its own (one worker thread each, as two daemons
//! would), with certificates issued by a cluster CA generated for the run, and the default
//! [`PeerConfig`] (what the daemon uses).
//!
//! Run: `cargo bench -p faasflow-benchmarks --bench peer` (or `cargo xtask bench`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use faasflow_benchmarks::{fmt_us, machine_line, median, pct};
use faasflow_daemon::io::message::{ControlMessage, Done, ObjectHeader, OutputRef};
use faasflow_daemon::io::peer::{PeerConfig, PeerConnection, PeerEndpoint};
use faasflow_daemon::io::tls::ClusterCa;
use faasflow_daemon::store::arena::Arena;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;

const MIB: u64 = 1 << 20;
/// Object sizes and timed runs of each (QUIC and TCP alike), after one warm-up run each.
const SIZES: [(u64, usize); 5] = [(MIB, 30), (4 * MIB, 20), (16 * MIB, 12), (64 * MIB, 9), (256 * MIB, 7)];
const PING_WARMUP: usize = 200;
const PINGS: usize = 2_000;

/// One daemon's runtime: a single worker thread.
fn runtime(name: &str) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(name)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().expect("an address")
}

/// Deterministic bytes (xorshift), so that nothing compresses or dedups them.
fn pattern(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The two workers: `a` sends, `b` receives into its arena.
struct Pair {
    rt_a: Runtime,
    rt_b: Runtime,
    /// Kept alive: the connections are theirs.
    _endpoints: (PeerEndpoint, PeerEndpoint),
    ab: Arc<PeerConnection>,
    ba: Arc<PeerConnection>,
    /// Bulk TCP: a → b.
    tcp_ab: Option<TcpStream>,
    tcp_ba: Option<TcpStream>,
    arena: Arc<Arena>,
    /// The extent every object lands in (as large as the largest object).
    base: faasflow_daemon::store::arena::Extent,
    data: Arc<Vec<u8>>,
}

fn setup(config: &PeerConfig) -> Pair {
    let (rt_a, rt_b) = (runtime("worker-0"), runtime("worker-1"));
    let ca = ClusterCa::generate("bench").expect("a cluster CA");
    let trust = ca.trust();
    let a = {
        let _g = rt_a.enter();
        PeerEndpoint::bind(
            localhost(),
            &ca.issue("worker-0").expect("cert"),
            &trust,
            config.clone(),
        )
        .expect("bind")
    };
    let b = {
        let _g = rt_b.enter();
        PeerEndpoint::bind(
            localhost(),
            &ca.issue("worker-1").expect("cert"),
            &trust,
            config.clone(),
        )
        .expect("bind")
    };
    let b_addr = b.local_addr().expect("an address");
    let (ab, ba) = std::thread::scope(|s| {
        let accepted = s.spawn(|| rt_b.block_on(b.accept()).expect("accept"));
        let ab = rt_a.block_on(a.connect(b_addr, "worker-1")).expect("connect");
        (ab, accepted.join().expect("the accepting thread"))
    });
    let listener = rt_b.block_on(TcpListener::bind(localhost())).expect("listen");
    let tcp_addr = listener.local_addr().expect("an address");
    let accepted = rt_b.spawn(async move { listener.accept().await.map(|(s, _)| s) });
    let tcp_ab = rt_a.block_on(TcpStream::connect(tcp_addr)).expect("tcp connect");
    let tcp_ba = rt_b.block_on(accepted).expect("join").expect("tcp accept");
    let largest = SIZES.iter().map(|s| s.0).max().unwrap_or(MIB);
    let mut arena = Arena::create("peer-bench", largest + MIB).expect("an arena");
    // Its pages allocated up front, as a workflow's first objects' are at install.
    let segment = arena.add_segment("bench").expect("a segment");
    arena.prefault(segment, largest);
    let base = arena.alloc(segment, largest).expect("room");
    Pair {
        rt_a,
        rt_b,
        _endpoints: (a, b),
        ab: Arc::new(ab),
        ba: Arc::new(ba),
        tcp_ab: Some(tcp_ab),
        tcp_ba: Some(tcp_ba),
        arena: Arc::new(arena),
        base,
        data: Arc::new(pattern(usize::try_from(largest).expect("fits"))),
    }
}

impl Pair {
    /// One object of `len` bytes a → b over QUIC, every chunk written into b's arena extent as
    /// it comes; seconds from the call of `send_object` to the last byte stored.
    fn quic(&self, object: u64, len: u64) -> f64 {
        let (ba, arena, base) = (self.ba.clone(), self.arena.clone(), self.base);
        let recv = self.rt_b.spawn(async move {
            let incoming = ba.accept_object().await.expect("an object");
            let mut sink = |offset: u64, chunk: &[u8]| {
                if arena.write(base, offset, chunk) {
                    Ok(())
                } else {
                    Err(std::io::Error::other("outside the arena"))
                }
            };
            let n = incoming.read_into(&mut sink).await.expect("received");
            assert_eq!(n, len);
            Instant::now()
        });
        let (ab, data) = (self.ab.clone(), self.data.clone());
        let send = self.rt_a.spawn(async move {
            let header = ObjectHeader {
                invocation: 1,
                object,
                len,
            };
            let start = Instant::now();
            ab.send_object(header, &data[..len as usize]).await.expect("sent");
            start
        });
        let end = self.rt_b.block_on(recv).expect("the receiver");
        let start = self.rt_a.block_on(send).expect("the sender");
        (end - start).as_secs_f64()
    }

    /// The same bytes a → b over the TCP connection, read in chunks of the peer transport's
    /// size into a buffer and copied into the same arena extent.
    fn tcp(&mut self, len: u64, chunk: usize) -> f64 {
        let (mut rx, arena, base) = (self.tcp_ba.take().expect("tcp"), self.arena.clone(), self.base);
        let recv = self.rt_b.spawn(async move {
            let mut buf = vec![0u8; chunk];
            let mut got = 0u64;
            while got < len {
                let want = usize::try_from(len - got).unwrap_or(usize::MAX).min(chunk);
                let n = rx.read(&mut buf[..want]).await.expect("tcp read");
                assert!(n > 0, "the TCP stream ended early");
                assert!(arena.write(base, got, &buf[..n]));
                got += n as u64;
            }
            (Instant::now(), rx)
        });
        let (mut tx, data) = (self.tcp_ab.take().expect("tcp"), self.data.clone());
        let send = self.rt_a.spawn(async move {
            let start = Instant::now();
            tx.write_all(&data[..len as usize]).await.expect("tcp write");
            (start, tx)
        });
        let (end, rx) = self.rt_b.block_on(recv).expect("the receiver");
        let (start, tx) = self.rt_a.block_on(send).expect("the sender");
        self.tcp_ab = Some(tx);
        self.tcp_ba = Some(rx);
        (end - start).as_secs_f64()
    }

    /// Whether b's extent holds the first `len` bytes that were sent.
    fn landed(&self, len: u64) -> bool {
        self.arena.read(self.base, len).as_deref() == Some(&self.data[..len as usize])
    }
}

fn gbps(len: u64, secs: f64) -> f64 {
    len as f64 / secs / 1e9
}

fn bandwidth(pair: &mut Pair, chunk: usize) {
    let mut rows = Vec::new();
    let mut object = 0;
    for (len, runs) in SIZES {
        eprintln!("peer: {} MiB × {runs}", len / MIB);
        object += 1;
        pair.quic(object, len);
        assert!(pair.landed(len), "QUIC: the arena holds other bytes than were sent");
        pair.tcp(len, chunk);
        assert!(pair.landed(len), "TCP: the arena holds other bytes than were sent");
        let (mut quic, mut tcp) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            object += 1;
            quic.push(gbps(len, pair.quic(object, len)));
            tcp.push(gbps(len, pair.tcp(len, chunk)));
        }
        rows.push((len, runs, quic, tcp));
    }
    println!(
        "Object bandwidth worker-0 → worker-1 on 127.0.0.1, landing in the receiver's arena extent; median, min and max GB/s (10⁹ B/s) over the runs, QUIC and TCP runs interleaved"
    );
    println!();
    println!(
        "| size | runs | QUIC GB/s | QUIC min–max | raw TCP GB/s | TCP min–max | QUIC / TCP (medians) | target ≥ 50% |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---|");
    let mut figure = Vec::new();
    for (len, runs, mut quic, mut tcp) in rows {
        let (q, t) = (median(&mut quic), median(&mut tcp));
        figure.push(serde_json::json!({"bytes": len, "quic_gbps": q, "tcp_gbps": t}));
        let ratio = q / t;
        println!(
            "| {} MiB | {runs} | {q:.2} | {:.2}–{:.2} | {t:.2} | {:.2}–{:.2} | {:.0}% | {} |",
            len / MIB,
            quic[0],
            quic[quic.len() - 1],
            tcp[0],
            tcp[tcp.len() - 1],
            ratio * 100.0,
            if ratio >= 0.5 { "met" } else { "not met" }
        );
    }
    faasflow_benchmarks::record_figure("peer_bandwidth", serde_json::json!(figure));
    println!();
    println!(
        "QUIC encrypts every packet (AES-256-GCM) and runs its stack in user space; to a peer on a loopback address its packets are `PeerConfig::loopback_udp_payload` bytes ({} B by default; 1472 B to other hosts), so the per-packet work is paid once per ~64 KiB as in TCP, and each leaves as soon as it is encrypted (one packet per send, no segmentation-offload batches), so the receiver decrypts one while the sender encrypts the next. Loopback TCP carries plain bytes in 64 KiB segments, the copies done by the kernel.",
        PeerConfig::default().loopback_udp_payload
    );
    println!();
}

fn message() -> ControlMessage {
    ControlMessage::Done(Done {
        invocation: 42,
        node: 3,
        element: None,
        outputs: vec![OutputRef {
            name: "words".into(),
            object: 7,
            len: 1 << 20,
            json: None,
            remote: false,
        }],
        record: Vec::new(),
    })
}

/// One-way latencies (half round trips), µs, of `PINGS` control messages a → b → a.
fn quic_pings(pair: &Pair) -> Vec<f64> {
    let ba = pair.ba.clone();
    let echo = pair.rt_b.spawn(async move {
        while let Some(m) = ba.recv().await.expect("recv") {
            ba.send(&m).await.expect("send");
        }
    });
    let ab = pair.ab.clone();
    let out = pair
        .rt_a
        .block_on(pair.rt_a.spawn(async move {
            let msg = message();
            let mut out = Vec::with_capacity(PINGS);
            for i in 0..PING_WARMUP + PINGS {
                let t = Instant::now();
                ab.send(&msg).await.expect("send");
                let back = ab.recv().await.expect("recv").expect("an echo");
                let us = t.elapsed().as_secs_f64() * 1e6 / 2.0;
                assert_eq!(back, msg);
                if i >= PING_WARMUP {
                    out.push(us);
                }
            }
            ab.finish_control().await.expect("finish");
            out
        }))
        .expect("the pinging task");
    pair.rt_b.block_on(echo).expect("the echo task");
    out
}

/// The same frame over a TCP connection (`TCP_NODELAY`), echoed the same way.
fn tcp_pings(pair: &Pair) -> Vec<f64> {
    let mut frame = Vec::new();
    message().encode(&mut frame).expect("encodes");
    let listener = pair.rt_b.block_on(TcpListener::bind(localhost())).expect("listen");
    let addr = listener.local_addr().expect("an address");
    let echo = pair.rt_b.spawn(async move {
        let (mut s, _) = listener.accept().await.expect("accept");
        s.set_nodelay(true).expect("nodelay");
        let mut prefix = [0u8; 4];
        while s.read_exact(&mut prefix).await.is_ok() {
            let mut frame = prefix.to_vec();
            frame.resize(4 + u32::from_le_bytes(prefix) as usize, 0);
            s.read_exact(&mut frame[4..]).await.expect("a frame");
            s.write_all(&frame).await.expect("echo");
        }
    });
    let out = pair
        .rt_a
        .block_on(pair.rt_a.spawn(async move {
            let mut s = TcpStream::connect(addr).await.expect("connect");
            s.set_nodelay(true).expect("nodelay");
            let mut back = vec![0u8; frame.len()];
            let mut out = Vec::with_capacity(PINGS);
            for i in 0..PING_WARMUP + PINGS {
                let t = Instant::now();
                s.write_all(&frame).await.expect("send");
                s.read_exact(&mut back).await.expect("an echo");
                let us = t.elapsed().as_secs_f64() * 1e6 / 2.0;
                assert_eq!(back, frame);
                if i >= PING_WARMUP {
                    out.push(us);
                }
            }
            out
        }))
        .expect("the pinging task");
    pair.rt_b.block_on(echo).expect("the echo task");
    out
}

fn latency(pair: &Pair) {
    eprintln!("peer: control messages");
    let mut frame = Vec::new();
    message().encode(&mut frame).expect("encodes");
    let mut quic = quic_pings(pair);
    let mut tcp = tcp_pings(pair);
    println!(
        "One-way latency of a control message (a `Done` of one output, {}-byte frame) worker-0 → worker-1 → worker-0, half the round trip, {PINGS} round trips after {PING_WARMUP} warm-up ones",
        frame.len()
    );
    println!();
    println!("| path | p50 one-way | p99 one-way |");
    println!("|---|---:|---:|");
    faasflow_benchmarks::record_figure(
        "peer_message_one_way_us",
        serde_json::json!({
            "quic": {"p50": median(&mut quic), "p99": pct(&mut quic, 99.0)},
            "tcp": {"p50": median(&mut tcp), "p99": pct(&mut tcp, 99.0)},
        }),
    );
    println!(
        "| QUIC control stream (`PeerConnection::send` / `recv`) | {} | {} |",
        fmt_us(median(&mut quic)),
        fmt_us(pct(&mut quic, 99.0))
    );
    println!(
        "| reference: TCP ping-pong of the same frame (`TCP_NODELAY`) | {} | {} |",
        fmt_us(median(&mut tcp)),
        fmt_us(pct(&mut tcp, 99.0))
    );
    println!();
}

fn main() {
    // `cargo test --benches` runs bench targets with `--bench`-less arguments: do nothing then.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("peer bench: run with `cargo bench -p faasflow-benchmarks --bench peer`");
        return;
    }
    let t = Instant::now();
    let config = PeerConfig::default();
    println!(
        "Machine: {}; two endpoints in one process, one tokio runtime (1 worker thread) each; PeerConfig::default() (stream window {} MiB, connection window {} MiB, send window {} MiB, chunk {} KiB, UDP payload {} B to loopback peers)",
        machine_line(),
        config.stream_window >> 20,
        config.connection_window >> 20,
        config.send_window >> 20,
        config.chunk >> 10,
        config.loopback_udp_payload,
    );
    println!();
    let mut pair = setup(&config);
    bandwidth(&mut pair, config.chunk);
    latency(&pair);
    eprintln!("peer: done in {:.0} s", t.elapsed().as_secs_f64());
}
