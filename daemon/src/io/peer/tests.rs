//! The transport's internals: what a failed handshake's message blames, and concurrent reading
//! of object streams. The transport as a whole is tested in `daemon/tests/peer.rs`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::error::handshake_hint;
use super::*;
use crate::io::message::ObjectHeader;
use crate::io::tls::ClusterCa;

#[test]
fn a_handshake_that_times_out_does_not_blame_the_certificates() {
    let timed_out = handshake_hint(&quinn::ConnectionError::TimedOut);
    assert!(timed_out.starts_with("nothing answered at that address"), "{timed_out}");
    assert!(!timed_out.contains("certificate"), "{timed_out}");
    let refused = handshake_hint(&quinn::ConnectionError::ConnectionClosed(quinn::ConnectionClose {
        error_code: quinn::TransportErrorCode::crypto(42),
        frame_type: None,
        reason: Vec::new().into(),
    }));
    assert!(refused.contains("certificates from the same"), "{refused}");
    let closed = handshake_hint(&quinn::ConnectionError::LocallyClosed);
    assert!(!closed.contains("certificate"), "{closed}");
}

/// A stream opened first but silent (its bytes wait for credit) must not keep later
/// objects from being read: they hold the connection's credit until they are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_stream_does_not_hold_up_later_objects() {
    let limit = Duration::from_secs(20);
    let ca = ClusterCa::generate("test").unwrap();
    let trust = ca.trust();
    // Windows far smaller than the object: it can only arrive if it is read as it comes.
    let config = PeerConfig {
        stream_window: 64 << 10,
        connection_window: 64 << 10,
        ..PeerConfig::default()
    };
    let local: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let a = PeerEndpoint::bind(local, &ca.issue("worker-0").unwrap(), &trust, config.clone()).unwrap();
    let b = PeerEndpoint::bind(local, &ca.issue("worker-1").unwrap(), &trust, config).unwrap();
    let (ab, ba) = tokio::join!(a.connect(b.local_addr().unwrap(), "worker-1"), b.accept());
    let (ab, ba) = (ab.unwrap(), Arc::new(ba.unwrap()));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let server = ba.clone();
    tokio::spawn(async move {
        server
            .serve_objects(
                move |obj| {
                    let tx = tx.clone();
                    async move {
                        let id = obj.header().object;
                        let mut got = Vec::new();
                        let _ = obj.read_into(&mut got).await;
                        let _ = tx.send((id, got));
                    }
                },
                |e| panic!("refused: {e}"),
            )
            .await
    });
    // The first stream is opened and says nothing yet; the next carries 1 MiB.
    let mut silent = ab.conn.open_uni().await.unwrap();
    let big: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
    let header = |object, len| ObjectHeader {
        invocation: 1,
        object,
        len,
    };
    tokio::time::timeout(limit, ab.send_object(header(2, big.len() as u64), &big[..]))
        .await
        .expect("the later object was held up by the silent stream")
        .unwrap();
    let (id, got) = tokio::time::timeout(limit, rx.recv()).await.unwrap().unwrap();
    assert_eq!(id, 2);
    assert!(got == big, "the object's bytes differ");
    // The silent stream speaks at last, and is read too.
    silent.write_all(&header(1, 3).encode()).await.unwrap();
    silent.write_all(b"abc").await.unwrap();
    silent.finish().unwrap();
    let (id, got) = tokio::time::timeout(limit, rx.recv()).await.unwrap().unwrap();
    assert_eq!((id, got.as_slice()), (1, &b"abc"[..]));
}
