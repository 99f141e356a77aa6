//! Loom models of the ring: one producer thread, one consumer thread, tiny capacities so that
//! full rings, wrap-around (frames split across the end of the data area) and parking are all
//! explored. Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p faasflow-shm --release --lib loom` (preemption bound 2,
//! well under a second); `LOOM_MAX_PREEMPTIONS=5` explores more and passes in about 12 s.

use loom::thread;

/// Explores interleavings with at most 2 preemptions (as tokio's loom tests do; more takes
/// hours). Override with `LOOM_MAX_PREEMPTIONS`.
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(2);
    }
    b.check(f);
}

use crate::Ring;
use crate::ring::PushError;

/// Frame `i`: `len` bytes derived from `i`, so a lost, duplicated, reordered or torn frame
/// shows up as a mismatch.
fn frame(i: u8, len: usize) -> Vec<u8> {
    (0..len).map(|k| i.wrapping_mul(31).wrapping_add(k as u8)).collect()
}

/// Non-blocking push/pop with yields: 4-word ring, frames of 2, 3 and 2 words (7 words in all),
/// so the second frame wraps around the end.
#[test]
fn loom_spsc_no_loss_no_dup_wraps() {
    model(|| {
        let lens = [5usize, 12, 3];
        let ring = Ring::new_local(32).expect("valid capacity");
        let mut producer = ring_clone(&ring).into_producer();
        let mut consumer = ring.into_consumer();
        let t = thread::spawn(move || {
            for (i, &len) in lens.iter().enumerate() {
                let f = frame(i as u8, len);
                loop {
                    match producer.push(&f) {
                        Ok(()) => break,
                        Err(PushError::Full) => thread::yield_now(),
                        Err(e) => panic!("push: {e}"),
                    }
                }
            }
        });
        let mut buf = [0u8; 32];
        for (i, &len) in lens.iter().enumerate() {
            let n = loop {
                match consumer.pop(&mut buf) {
                    Ok(Some(n)) => break n,
                    Ok(None) => thread::yield_now(),
                    Err(e) => panic!("pop: {e}"),
                }
            };
            assert_eq!(&buf[..n], &frame(i as u8, len)[..], "frame {i}");
        }
        assert_eq!(consumer.pop(&mut buf), Ok(None));
        t.join().expect("producer");
    });
}

/// Blocking waits on both sides: a 2-word ring holds one frame, so the producer parks on a full
/// ring and the consumer on an empty one. A lost wake-up would be a loom deadlock.
#[test]
fn loom_park_and_wake_both_ways() {
    model(|| {
        let ring = Ring::new_local(16).expect("valid capacity");
        let mut producer = ring_clone(&ring).into_producer();
        let mut consumer = ring.into_consumer();
        let t = thread::spawn(move || {
            for i in 0..3u8 {
                producer.push_wait(&frame(i, 8), None).expect("push_wait");
            }
        });
        let mut buf = [0u8; 8];
        for i in 0..3u8 {
            let n = consumer
                .pop_wait(&mut buf, None)
                .expect("pop_wait")
                .expect("no timeout");
            assert_eq!(&buf[..n], &frame(i, 8)[..]);
        }
        t.join().expect("producer");
    });
}

fn ring_clone(ring: &Ring) -> Ring {
    ring.clone_view()
}
