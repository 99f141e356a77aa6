//! The atomics the ring is built from, from `std` normally and from `loom` under `cfg(loom)`
//! (tokio's `src/loom` pattern), plus the futex the ring parks on.
//!
//! Under loom the futex is modelled with a loom `Mutex` + `Condvar`: `wait` checks the word and
//! sleeps under the lock, `wake` notifies under the same lock. That is exactly the kernel's
//! guarantee (the value check and the sleep are atomic with respect to `FUTEX_WAKE`), so a lost
//! wake-up in the ring's protocol shows up in loom as a deadlock. Timeouts are not modelled
//! (loom has no clock): a loom wait with a timeout simply waits until woken.

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, fence};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, fence};

/// The CPU's spin-wait hint (a loom yield under loom, so spin loops stay finite there).
#[inline]
pub(crate) fn spin_hint() {
    #[cfg(not(loom))]
    std::hint::spin_loop();
    #[cfg(loom)]
    loom::hint::spin_loop();
}

/// A 32-bit futex word. Outside loom it is exactly an `AtomicU32` (`repr(transparent)`), so it
/// can live in shared memory and be waited on from several processes.
#[cfg_attr(not(loom), repr(transparent))]
#[derive(Debug)]
pub(crate) struct Futex {
    pub(crate) word: AtomicU32,
    #[cfg(loom)]
    lock: loom::sync::Mutex<()>,
    #[cfg(loom)]
    cv: loom::sync::Condvar,
}

impl Futex {
    #[cfg(not(loom))]
    pub(crate) fn new(v: u32) -> Self {
        Self {
            word: AtomicU32::new(v),
        }
    }

    #[cfg(loom)]
    pub(crate) fn new(v: u32) -> Self {
        Self {
            word: AtomicU32::new(v),
            lock: loom::sync::Mutex::new(()),
            cv: loom::sync::Condvar::new(),
        }
    }

    /// Sleeps while the word equals `expected`, for at most `timeout` (`None`: no limit).
    /// May return spuriously; callers re-check their condition.
    #[cfg(not(loom))]
    pub(crate) fn wait(&self, expected: u32, timeout: Option<std::time::Duration>) {
        let ts = timeout.map(|d| libc::timespec {
            tv_sec: libc::time_t::try_from(d.as_secs()).unwrap_or(libc::time_t::MAX),
            // Below 1e9, fits every c_long.
            tv_nsec: d.subsec_nanos() as libc::c_long,
        });
        let ts_ptr = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: `self.word` is a live, 4-byte aligned u32 for the duration of the call (we hold
        // `&self`); FUTEX_WAIT only reads it and compares it with `expected`. `ts_ptr` is null or
        // points at `ts`, which outlives the call. No FUTEX_PRIVATE_FLAG: the word may be in a
        // MAP_SHARED mapping waited on and woken from other processes. Errors (EAGAIN when the
        // value changed, EINTR, ETIMEDOUT) all mean "return and re-check", which callers do.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                self.word.as_ptr(),
                libc::FUTEX_WAIT,
                expected,
                ts_ptr,
                std::ptr::null::<u32>(),
                0u32,
            );
        }
    }

    /// Wakes every waiter on the word.
    #[cfg(not(loom))]
    pub(crate) fn wake(&self) {
        // SAFETY: as in `wait`; FUTEX_WAKE does not access memory through the pointer beyond
        // using its address as the key. A failure cannot leave anything inconsistent.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                self.word.as_ptr(),
                libc::FUTEX_WAKE,
                i32::MAX,
                0usize,
                0usize,
                0u32,
            );
        }
    }

    #[cfg(loom)]
    pub(crate) fn wait(&self, expected: u32, _timeout: Option<std::time::Duration>) {
        let guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        if self.word.load(std::sync::atomic::Ordering::SeqCst) == expected {
            drop(self.cv.wait(guard));
        }
    }

    #[cfg(loom)]
    pub(crate) fn wake(&self) {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.cv.notify_all();
    }
}
