//! The peer transport over real sockets on 127.0.0.1: mutual TLS from a cluster CA, control
//! messages, objects of any size, and flow control against a slow consumer.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use faasflow_daemon::io::message::{ControlMessage, Done, ObjectHeader, OutputRef, StagedInput, Start};
use faasflow_daemon::io::peer::{PeerConfig, PeerConnection, PeerEndpoint, PeerError};
use faasflow_daemon::io::tls::{self, ClusterCa, ClusterTrust, NodeIdentity};
use tokio::io::{AsyncRead, ReadBuf};

const LIMIT: Duration = Duration::from_secs(60);

fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Runs `f` under a time limit, so a hang fails the test instead of stalling the suite.
async fn bounded<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, f)
        .await
        .expect("test ran past its time limit")
}

struct Cluster {
    ca: ClusterCa,
    trust: ClusterTrust,
}

impl Cluster {
    fn new() -> Cluster {
        let ca = ClusterCa::generate("test").unwrap();
        let trust = ca.trust();
        Cluster { ca, trust }
    }

    fn endpoint(&self, node: &str, config: PeerConfig) -> PeerEndpoint {
        PeerEndpoint::bind(localhost(), &self.ca.issue(node).unwrap(), &self.trust, config).unwrap()
    }
}

/// Connects `a` to `b` (node `b_name`) and returns both ends.
async fn pair(a: &PeerEndpoint, b: &PeerEndpoint, b_name: &str) -> (PeerConnection, PeerConnection) {
    let addr = b.local_addr().unwrap();
    let (ca, cb) = tokio::join!(a.connect(addr, b_name), b.accept());
    (ca.unwrap(), cb.unwrap())
}

/// Deterministic bytes that differ at every position that matters (xorshift).
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
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

/// FNV-1a over 8-byte words (and the tail), enough to tell two large buffers apart.
fn checksum(bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        h = (h ^ u64::from_le_bytes(w.try_into().unwrap())).wrapping_mul(0x100_0000_01b3);
    }
    for &b in words.remainder() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    h ^ bytes.len() as u64
}

fn done_message() -> ControlMessage {
    ControlMessage::Done(Done {
        invocation: 42,
        node: 3,
        element: Some(7),
        outputs: vec![
            OutputRef {
                name: "words".into(),
                object: 1,
                len: 64 << 20,
                json: None,
                remote: false,
            },
            OutputRef {
                name: "flag".into(),
                object: 2,
                len: 4,
                json: Some(b"true".to_vec()),
                remote: false,
            },
        ],
        record: b"{}".to_vec(),
    })
}

fn start_message() -> ControlMessage {
    ControlMessage::Start(Start {
        workflow: "wordcount".into(),
        version: 3,
        invocation: 42,
        origin_us: 1_700_000_000_000_000,
        input: br#"{"text": "a b", "file": null}"#.to_vec(),
        staged: vec![StagedInput {
            name: "file".into(),
            object: u64::MAX - 1,
            len: 1 << 20,
        }],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_still_held_by_a_process_that_is_going_is_bound_once_it_is_free() {
    let cluster = Cluster::new();
    let held = std::net::UdpSocket::bind(localhost()).unwrap();
    let addr = held.local_addr().unwrap();
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(400));
        drop(held);
    });
    let started = std::time::Instant::now();
    let e = PeerEndpoint::bind(
        addr,
        &cluster.ca.issue("w0").unwrap(),
        &cluster.trust,
        PeerConfig::default(),
    )
    .expect("bound once the old socket is gone");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(e.local_addr().unwrap(), addr);
    release.join().unwrap();
    // A port that stays taken is an error after the retries, naming it.
    let kept = std::net::UdpSocket::bind(localhost()).unwrap();
    let taken = kept.local_addr().unwrap();
    let err = PeerEndpoint::bind(
        taken,
        &cluster.ca.issue("w1").unwrap(),
        &cluster.trust,
        PeerConfig::default(),
    )
    .expect_err("a taken port");
    assert!(
        err.to_string()
            .starts_with(&format!("cannot listen for peers on {taken}")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_of_one_cluster_exchange_control_messages_and_objects() {
    bounded(async {
        let cluster = Cluster::new();
        let a = cluster.endpoint("worker-0", PeerConfig::default());
        let b = cluster.endpoint("worker-1", PeerConfig::default());
        let (ab, ba) = pair(&a, &b, "worker-1").await;
        assert_eq!(ab.peer_node(), "worker-1");
        assert_eq!(
            ba.peer_node(),
            "worker-0",
            "the acceptor knows the dialler from its certificate"
        );

        // Control messages, in order, both ways; then the end of the stream.
        ab.send(&done_message()).await.unwrap();
        ab.send(&start_message()).await.unwrap();
        ab.finish_control().await.unwrap();
        assert_eq!(ba.recv().await.unwrap(), Some(done_message()));
        assert_eq!(ba.recv().await.unwrap(), Some(start_message()));
        assert_eq!(ba.recv().await.unwrap(), None);
        ba.send(&start_message()).await.unwrap();
        assert_eq!(ab.recv().await.unwrap(), Some(start_message()));
        // A control frame larger than the chunks its body is read in arrives whole.
        let mut large = start_message();
        if let ControlMessage::Start(s) = &mut large {
            s.input = pattern(5 << 20, 7);
        }
        ba.send(&large).await.unwrap();
        assert_eq!(ab.recv().await.unwrap(), Some(large));

        // A 64 MiB object and an empty one, on their own streams.
        let big = pattern(64 << 20, 1);
        let sum = checksum(&big);
        let big_header = ObjectHeader {
            invocation: 42,
            object: 1,
            len: big.len() as u64,
        };
        let empty_header = ObjectHeader {
            invocation: 42,
            object: 2,
            len: 0,
        };
        let send = async {
            ab.send_object(big_header, &big[..]).await.unwrap();
            ab.send_object(empty_header, &[][..]).await.unwrap();
        };
        let recv = async {
            let mut got = Vec::new();
            for _ in 0..2 {
                let incoming = ba.accept_object().await.unwrap();
                let header = incoming.header();
                let mut bytes = Vec::new();
                let mut offsets = Vec::new();
                let mut sink = |offset: u64, chunk: &[u8]| {
                    offsets.push(offset);
                    bytes.extend_from_slice(chunk);
                    Ok(())
                };
                let n = incoming.read_into(&mut sink).await.unwrap();
                assert_eq!(n, header.len);
                assert!(offsets.windows(2).all(|w| w[0] < w[1]), "chunks come in order");
                got.push((header, bytes));
            }
            got
        };
        let ((), got) = tokio::join!(send, recv);
        assert_eq!(got[0].0, big_header);
        assert_eq!(got[0].1.len(), big.len());
        assert_eq!(checksum(&got[0].1), sum);
        assert_eq!(got[1].0, empty_header);
        assert!(got[1].1.is_empty());
        a.close();
        b.close();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_held_in_memory_arrive_whole_and_a_wrong_length_is_refused() {
    bounded(async {
        let cluster = Cluster::new();
        let a = cluster.endpoint("worker-0", PeerConfig::default());
        let b = cluster.endpoint("worker-1", PeerConfig::default());
        let (ab, ba) = pair(&a, &b, "worker-1").await;
        // Several chunks' worth, sent as slices of one buffer.
        let data = bytes::Bytes::from(pattern(5 * (1 << 20) + 17, 4));
        let header = ObjectHeader {
            invocation: 7,
            object: 3,
            len: data.len() as u64,
        };
        let (sent, got) = tokio::join!(ab.send_bytes(header, data.clone()), async {
            let incoming = ba.accept_object().await.unwrap();
            assert_eq!(incoming.header(), header);
            let mut got = Vec::new();
            incoming.read_into(&mut got).await.unwrap();
            got
        });
        sent.unwrap();
        assert!(got == data, "the bytes differ");
        let short = ObjectHeader { len: 10, ..header };
        let err = ab.send_bytes(short, data.slice(..4)).await.unwrap_err();
        assert!(err.to_string().contains("4 bytes given for an object of 10"), "{err}");
        a.close();
        b.close();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_with_a_certificate_from_another_ca_is_refused() {
    bounded(async {
        let cluster = Cluster::new();
        let server = cluster.endpoint("worker-1", PeerConfig::default());
        // Same node names, another CA: an intruder that trusts our CA but is not trusted by it.
        let foreign = ClusterCa::generate("other").unwrap();
        let intruder = PeerEndpoint::bind(
            localhost(),
            &foreign.issue("worker-0").unwrap(),
            &cluster.trust,
            PeerConfig::default(),
        )
        .unwrap();
        let addr = server.local_addr().unwrap();
        let (dialled, accepted) = tokio::join!(intruder.connect(addr, "worker-1"), server.accept());
        let accepted = accepted.expect_err("the server accepted a foreign certificate");
        let dialled = dialled.expect_err("the intruder got a connection");
        let server_msg = accepted.to_string();
        assert!(matches!(accepted, PeerError::Handshake { .. }), "{accepted:?}");
        assert!(server_msg.contains("UnknownIssuer"), "{server_msg}");
        assert!(server_msg.contains("faasflow cluster init"), "{server_msg}");
        assert!(matches!(dialled, PeerError::Handshake { .. }), "{dialled:?}");
        let dialled_msg = dialled.to_string();
        assert!(
            dialled_msg.contains("aborted by peer") && dialled_msg.contains("error 48"),
            "{dialled_msg}"
        ); // unknown_ca

        // And the other way round: a server with a foreign certificate is refused by the client.
        let impostor = PeerEndpoint::bind(
            localhost(),
            &foreign.issue("worker-1").unwrap(),
            &foreign.trust(),
            PeerConfig::default(),
        )
        .unwrap();
        let client = cluster.endpoint("worker-0", PeerConfig::default());
        let addr = impostor.local_addr().unwrap();
        let (dialled, accepted) = tokio::join!(client.connect(addr, "worker-1"), impostor.accept());
        let dialled = dialled.expect_err("the client accepted a foreign server");
        assert!(dialled.to_string().contains("UnknownIssuer"), "{dialled}");
        assert!(accepted.is_err());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_is_not_the_node_dialled_is_refused() {
    bounded(async {
        let cluster = Cluster::new();
        let server = cluster.endpoint("worker-1", PeerConfig::default());
        let client = cluster.endpoint("worker-0", PeerConfig::default());
        let addr = server.local_addr().unwrap();
        let (dialled, _) = tokio::join!(client.connect(addr, "worker-2"), server.accept());
        let err = dialled.expect_err("connected to worker-1 believing it worker-2");
        assert!(
            err.to_string().contains(r#"certificate not valid for name "worker-2""#),
            "{err}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_a_certificate_is_refused() {
    bounded(async {
        let cluster = Cluster::new();
        let server = cluster.endpoint("worker-1", PeerConfig::default());
        tls::install_crypto_provider();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cluster.trust.cert_der().clone()).unwrap();
        let mut config =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_protocol_versions(&[&rustls::version::TLS13])
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        config.alpn_protocols = vec![tls::ALPN.to_vec()];
        let quic = quinn::crypto::rustls::QuicClientConfig::try_from(config).unwrap();
        let mut anonymous = quinn::Endpoint::client(localhost()).unwrap();
        anonymous.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic)));
        let addr = server.local_addr().unwrap();
        let dial = async {
            // The client's side of the handshake may complete; the server's refusal closes
            // the connection before it can carry anything.
            let conn = anonymous.connect(addr, "worker-1").unwrap().await?;
            let (mut send, mut recv) = conn.open_bi().await?;
            send.write_all(b"FFP\x01")
                .await
                .map_err(|_| conn.close_reason().unwrap())?;
            let mut buf = [0; 4];
            recv.read_exact(&mut buf)
                .await
                .map_err(|_| conn.close_reason().unwrap())?;
            Ok::<_, quinn::ConnectionError>(())
        };
        let (dialled, accepted) = tokio::join!(dial, server.accept());
        let accepted = accepted.expect_err("the server accepted a client without a certificate");
        assert!(matches!(accepted, PeerError::Handshake { .. }), "{accepted:?}");
        assert!(accepted.to_string().contains("peer sent no certificates"), "{accepted}");
        let dialled = dialled.expect_err("the anonymous client got through");
        let dialled = dialled.to_string();
        assert!(
            dialled.contains("aborted by peer") && dialled.contains("error 116"),
            "{dialled}"
        ); // certificate_required
    })
    .await;
}

/// A source that counts the bytes the sender has taken from it.
struct Counting<'a> {
    bytes: &'a [u8],
    taken: Arc<AtomicU64>,
}

impl AsyncRead for Counting<'_> {
    fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let n = buf.remaining().min(self.bytes.len());
        buf.put_slice(&self.bytes[..n]);
        self.bytes = &self.bytes[n..];
        self.taken.fetch_add(n as u64, Ordering::SeqCst);
        Poll::Ready(Ok(()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_holds_its_producer_back() {
    bounded(async {
        const WINDOW: u32 = 1 << 20;
        const CHUNK: usize = 256 << 10;
        const STEP: u64 = 512 << 10;
        let config = PeerConfig {
            stream_window: WINDOW,
            connection_window: 2 * WINDOW,
            send_window: u64::from(WINDOW),
            chunk: CHUNK,
            ..PeerConfig::default()
        };
        let cluster = Cluster::new();
        let a = cluster.endpoint("worker-0", config.clone());
        let b = cluster.endpoint("worker-1", config);
        let (ab, ba) = pair(&a, &b, "worker-1").await;
        let data = pattern(32 << 20, 9);
        let header = ObjectHeader {
            invocation: 1,
            object: 5,
            len: data.len() as u64,
        };
        let taken = Arc::new(AtomicU64::new(0));
        let source = Counting {
            bytes: &data,
            taken: taken.clone(),
        };
        // Bytes the sender may have taken from its source but the receiver not yet read: the
        // receiver's stream window (buffered there or in flight) plus the chunk in hand.
        let bound = u64::from(WINDOW) + CHUNK as u64;
        let mut send = Box::pin(ab.send_object(header, source));
        let mut incoming = tokio::select! {
            r = &mut send => panic!("sent 32 MiB to a receiver that read nothing: {r:?}"),
            o = ba.accept_object() => o.unwrap(),
        };
        let mut read = 0u64;
        let mut got = Vec::with_capacity(data.len());
        let mut peak_ahead = 0u64;
        let mut sent = false;
        'reading: loop {
            // Let the sender run as far as flow control allows while this side reads nothing;
            // it must stop within the bound however long it is given.
            let stalled = tokio::time::timeout(Duration::from_millis(5), &mut send).await;
            let ahead = taken.load(Ordering::SeqCst) - read;
            peak_ahead = peak_ahead.max(ahead);
            assert!(
                ahead <= bound,
                "the sender is {ahead} bytes ahead of a stalled reader (bound {bound})"
            );
            if let Ok(r) = stalled {
                r.unwrap();
                sent = true;
                assert!(
                    read + bound >= header.len,
                    "send_object returned with only {read} of {} bytes read",
                    header.len
                );
                break;
            }
            // Read a little (quinn hands over about a packet per chunk), then stall again: at
            // most what the sender has written already (all it took but the chunk in hand),
            // since the send is not polled meanwhile; on a loaded machine 5 ms may not have
            // been enough for it to write a whole step, and waiting for bytes it never writes
            // would hang.
            let written = ahead.saturating_sub(CHUNK as u64);
            let step = read + STEP.min(written);
            while read < step {
                match incoming.next_chunk().await.unwrap() {
                    Some(c) => {
                        read += c.len() as u64;
                        got.extend_from_slice(&c);
                    }
                    // Everything read; the sender may still wait for the last acknowledgement.
                    None => break 'reading,
                }
            }
        }
        while let Some(c) = incoming.next_chunk().await.unwrap() {
            got.extend_from_slice(&c);
        }
        if !sent {
            send.await.unwrap();
        }
        assert_eq!(checksum(&got), checksum(&data));
        assert!(peak_ahead > 0);
        println!("peak bytes taken from the source ahead of the reader: {peak_ahead} (bound {bound})");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_with_the_wrong_length_are_errors() {
    bounded(async {
        let cluster = Cluster::new();
        let small = PeerConfig {
            stream_window: 1 << 20,
            ..PeerConfig::default()
        };
        let a = cluster.endpoint("worker-0", small.clone());
        let b = cluster.endpoint("worker-1", small);
        let (ab, ba) = pair(&a, &b, "worker-1").await;
        // A source shorter than the header says: the sender fails and resets the stream.
        let header = ObjectHeader {
            invocation: 1,
            object: 9,
            len: 10,
        };
        let (sent, received) = tokio::join!(ab.send_object(header, &b"short"[..]), async {
            // The reset may overtake the header: either step may fail.
            ba.accept_object().await?.read_into(&mut Vec::new()).await
        });
        let sent = sent.expect_err("sent a short object");
        assert!(sent.to_string().contains("ended after 5 of 10 bytes"), "{sent}");
        assert!(received.is_err());
        // A sink that fails stops the stream, and the sender hears of it (the object is larger
        // than the window, so the sender cannot have delivered it all before the refusal).
        let header = ObjectHeader {
            invocation: 1,
            object: 10,
            len: 8 << 20,
        };
        let data = pattern(8 << 20, 3);
        let mut full = |_: u64, _: &[u8]| Err(std::io::Error::other("arena full"));
        let (sent, received) = tokio::join!(ab.send_object(header, &data[..]), async {
            ba.accept_object().await.unwrap().read_into(&mut full).await
        });
        assert!(received.unwrap_err().to_string().contains("arena full"));
        assert!(sent.unwrap_err().to_string().contains("refused"));
    })
    .await;
}

#[test]
fn certificates_written_and_loaded_work_and_missing_files_say_what_to_do() {
    let dir = std::env::temp_dir().join(format!("faasflow-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let err = ClusterTrust::load(&dir).unwrap_err().to_string();
    assert!(
        err.contains("ca.pem: no such file") && err.contains("faasflow cluster init"),
        "{err}"
    );
    let err = NodeIdentity::load(&dir, "worker-0").unwrap_err().to_string();
    assert!(err.contains("worker-0.pem: no such file"), "{err}");

    let ca = ClusterCa::generate("prod eu-1").unwrap();
    ca.write_to(&dir).unwrap();
    ca.issue("worker-0").unwrap().write_to(&dir).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    for key in ["ca-key.pem", "worker-0-key.pem"] {
        let mode = std::fs::metadata(dir.join(key)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{key}");
    }
    let loaded = ClusterCa::load(&dir).unwrap();
    assert_eq!(loaded.name(), "prod eu-1");
    // A certificate issued by the loaded CA is trusted like one issued before.
    let later = loaded.issue("worker-1").unwrap();
    later.write_to(&dir).unwrap();
    let trust = ClusterTrust::load(&dir).unwrap();
    let w0 = NodeIdentity::load(&dir, "worker-0").unwrap();
    let w1 = NodeIdentity::load(&dir, "worker-1").unwrap();
    assert_eq!(tls::node_name_of(w1.cert_der()).unwrap(), "worker-1");
    tls::server_config(&w0, &trust).unwrap();
    tls::client_config(&w1, &trust).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(bounded(async {
        let a = PeerEndpoint::bind(localhost(), &w0, &trust, PeerConfig::default()).unwrap();
        let b = PeerEndpoint::bind(localhost(), &w1, &trust, PeerConfig::default()).unwrap();
        let (ab, ba) = pair(&a, &b, "worker-1").await;
        ab.send(&start_message()).await.unwrap();
        assert_eq!(ba.recv().await.unwrap(), Some(start_message()));
    }));

    // A certificate under another node's file name, and a key that is not the CA's.
    std::fs::copy(dir.join("worker-1.pem"), dir.join("worker-2.pem")).unwrap();
    std::fs::copy(dir.join("worker-1-key.pem"), dir.join("worker-2-key.pem")).unwrap();
    let err = NodeIdentity::load(&dir, "worker-2").unwrap_err().to_string();
    assert!(err.contains("node `worker-1`'s, not `worker-2`'s"), "{err}");
    std::fs::copy(dir.join("worker-1-key.pem"), dir.join("ca-key.pem")).unwrap();
    let err = ClusterCa::load(&dir).unwrap_err().to_string();
    assert!(err.contains("does not belong to"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Sends a 4 MiB object a → b and b → a and checks that both arrive whole.
async fn exchange_object(ab: &PeerConnection, ba: &PeerConnection) {
    let data = pattern(4 << 20, 7);
    for (from, to) in [(ab, ba), (ba, ab)] {
        let header = ObjectHeader {
            invocation: 1,
            object: 9,
            len: data.len() as u64,
        };
        let recv = async {
            let mut got = Vec::new();
            to.accept_object().await.unwrap().read_into(&mut got).await.unwrap();
            got
        };
        let (sent, got) = tokio::join!(from.send_object(header, &data[..]), recv);
        sent.unwrap();
        assert_eq!(checksum(&got), checksum(&data));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packets_are_as_large_as_the_config_allows_for_the_kind_of_peer() {
    bounded(async {
        let cluster = Cluster::new();
        // Peers on a loopback address get large packets from the first one on, both ways.
        let a = cluster.endpoint("worker-0", PeerConfig::default());
        let b = cluster.endpoint("worker-1", PeerConfig::default());
        let (ab, ba) = pair(&a, &b, "worker-1").await;
        let large = PeerConfig::default().loopback_udp_payload;
        assert!(large > 9000, "the default for loopback peers is large: {large}");
        assert_eq!(ab.udp_payload(), large, "the dialler's packets");
        assert_eq!(ba.udp_payload(), large, "the acceptor's packets");
        exchange_object(&ab, &ba).await;

        // Treated like peers on another host: packets stay within an Ethernet frame, found by
        // MTU discovery.
        let network = PeerConfig {
            loopback_udp_payload: 1472,
            ..PeerConfig::default()
        };
        let c = cluster.endpoint("worker-2", network.clone());
        let d = cluster.endpoint("worker-3", network);
        let (cd, dc) = pair(&c, &d, "worker-3").await;
        exchange_object(&cd, &dc).await;
        assert!(cd.udp_payload() <= 1472, "{}", cd.udp_payload());
        assert!(dc.udp_payload() <= 1472, "{}", dc.udp_payload());

        // One side allows large packets, the other does not: the smaller limit holds.
        let (ad, da) = pair(&a, &d, "worker-3").await;
        exchange_object(&ad, &da).await;
        assert!(ad.udp_payload() <= 1472, "{}", ad.udp_payload());
        assert!(da.udp_payload() <= 1472, "{}", da.udp_payload());

        // QUIC needs 1200 bytes.
        let tiny = PeerConfig {
            max_udp_payload: 1000,
            ..PeerConfig::default()
        };
        let err = PeerEndpoint::bind(
            localhost(),
            &cluster.ca.issue("worker-4").unwrap(),
            &cluster.trust,
            tiny,
        )
        .unwrap_err();
        assert!(err.to_string().contains("1200"), "{err}");
        for e in [&a, &b, &c, &d] {
            e.close();
        }
    })
    .await;
}
