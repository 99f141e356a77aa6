//! A doorbell: one futex word that many notifiers ring and one waiter parks on.
//!
//! The daemon reads the completion rings of all its instances from one thread. It cannot park
//! on all of their futexes at once, so after pushing a completion an instance also rings the
//! daemon's doorbell, which lives in shared memory every instance maps. The waiter spins over
//! its rings for a bounded time ([`crate::ring::DEFAULT_SPIN`]) and then parks on the
//! doorbell; the protocol is the ring's (Dekker's pattern with two SeqCst fences, see
//! [`crate::ring`]): a ring that comes after the waiter's last check is never lost, and a
//! notifier makes a syscall only when the waiter is asleep.
//!
//! In-process threads (a request queue, a process reaper) ring the same doorbell.

use std::fmt;
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::Duration;

use crate::ring::Ring;
use crate::sync::Futex;

/// Bytes a doorbell takes in a region (one cache line).
pub const DOORBELL_LEN: usize = 64;

/// A view of a doorbell word, wherever it lives. Cheap to clone.
#[derive(Clone)]
pub struct Doorbell {
    word: NonNull<Futex>,
    _keep: Arc<dyn Send + Sync>,
}

// SAFETY: a `Doorbell` only hands out shared references to an atomic futex word (`Sync`) in
// memory kept alive by `_keep` (`Send + Sync`).
unsafe impl Send for Doorbell {}
// SAFETY: as above; every access to the word is atomic.
unsafe impl Sync for Doorbell {}

impl fmt::Debug for Doorbell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Doorbell").field("word", &self.word).finish()
    }
}

/// The doorbell could not be placed in the region.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("doorbell at offset {offset} does not fit a 64-byte aligned line of a {region_len}-byte region")]
pub struct DoorbellError {
    /// The offset asked for.
    pub offset: usize,
    /// The region's length.
    pub region_len: usize,
}

impl Doorbell {
    /// A doorbell in ordinary memory, for threads of one process.
    pub fn new_local() -> Doorbell {
        let word = Arc::new(Futex::new(0));
        Doorbell {
            word: NonNull::from(&*word),
            _keep: word,
        }
    }

    /// The doorbell at `offset` in `region` (64-byte aligned, [`DOORBELL_LEN`] bytes). The
    /// creator of the region calls [`Doorbell::reset`] once before handing it out.
    #[cfg(not(loom))]
    pub fn attach(region: &Arc<crate::Region>, offset: usize) -> Result<Doorbell, DoorbellError> {
        let err = DoorbellError {
            offset,
            region_len: region.len(),
        };
        if !offset.is_multiple_of(64) || offset.checked_add(DOORBELL_LEN).is_none_or(|end| end > region.len()) {
            return Err(err);
        }
        // SAFETY: `offset + 64 <= region.len()` was checked, so the pointer is inside the mapping;
        // the mapping is page-aligned and `offset` a multiple of 64, so it is aligned for a u32.
        let ptr = unsafe { region.as_ptr().add(offset) };
        let word = NonNull::new(ptr.cast::<Futex>()).ok_or(err)?;
        Ok(Doorbell {
            word,
            _keep: region.clone(),
        })
    }

    fn futex(&self) -> &Futex {
        // SAFETY: `word` points at a live (kept by `_keep`), aligned futex word made only of an
        // atomic, so a shared reference is sound even while other processes access it.
        unsafe { self.word.as_ref() }
    }

    /// Clears the word (nobody parked). Call once, before any peer uses the doorbell.
    pub fn reset(&self) {
        self.futex().word.store(0, std::sync::atomic::Ordering::Relaxed);
    }

    /// Rings: wakes the waiter if it is parked. Call after publishing what the waiter should
    /// see (a ring push, a queued request). Costs a fence and a load when nobody sleeps.
    pub fn ring(&self) {
        Ring::notify(self.futex());
    }

    /// Spins for `spin`, then parks until `ready()` returns true, the doorbell rings, or
    /// `timeout` passes; returns whether `ready()` held. `ready` must read what notifiers
    /// publish with Acquire (e.g. a ring's `is_ready`). One waiter at a time.
    pub fn wait(&self, spin: Duration, timeout: Option<Duration>, ready: impl FnMut() -> bool) -> bool {
        Ring::wait(self.futex(), spin, timeout, ready)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Instant;

    #[test]
    fn a_ring_wakes_a_parked_waiter() {
        let bell = Doorbell::new_local();
        let flag = Arc::new(AtomicBool::new(false));
        let (b, f) = (bell.clone(), flag.clone());
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            f.store(true, Ordering::Release);
            b.ring();
        });
        let start = Instant::now();
        assert!(bell.wait(Duration::from_micros(5), Some(Duration::from_secs(10)), || {
            flag.load(Ordering::Acquire)
        }));
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "woken by the ring, not the timeout"
        );
        t.join().expect("notifier");
    }

    #[test]
    fn waiting_times_out_when_nothing_comes() {
        let bell = Doorbell::new_local();
        let start = Instant::now();
        assert!(!bell.wait(Duration::from_micros(5), Some(Duration::from_millis(30)), || false));
        assert!(start.elapsed() >= Duration::from_millis(30));
    }

    #[test]
    fn attach_checks_bounds_and_alignment() {
        let region = Arc::new(crate::Region::create("doorbell-test", 4096).expect("memfd"));
        assert!(Doorbell::attach(&region, 64).is_ok());
        assert!(Doorbell::attach(&region, 65).is_err());
        assert!(Doorbell::attach(&region, 4096 - 32).is_err());
        assert!(Doorbell::attach(&region, usize::MAX - 10).is_err());
    }
}
