//! A lock-free single-producer single-consumer ring of variable-length frames in shared memory.
//!
//! # Layout
//! ```text
//! offset   0  line 0: magic u64 | version u32 | reserved u32 | capacity (bytes) u64
//! offset  64  line 1: tail  u64  (words ever pushed; written by the producer only)
//! offset 128  line 2: head  u64  (words ever popped; written by the consumer only)
//! offset 192  line 3: consumer-parked futex word u32 (1 = the consumer is, or is about to be, asleep)
//! offset 256  line 4: producer-parked futex word u32 (1 = the producer waits for room)
//! offset 320  data: `capacity / 8` little-endian u64 words
//! ```
//! Head and tail are free-running counters of 8-byte words (they never wrap in practice: 2^64
//! words), so `tail - head` is the fill level and `index & (words - 1)` the slot.
//!
//! # Frames: variable length, not fixed slots
//! A frame is one header word (`FRAME_MARK << 32 | len`) followed by `ceil(len / 8)` payload
//! words. Control frames vary from ~20 bytes (a completion without outputs) to a few hundred
//! (an invocation with many input references): fixed 64-byte slots would either cap the
//! number of references or need fragmentation, and waste space on small frames. Because
//! payloads are copied word by word with the index masked, a frame may wrap around the end of
//! the data area; no padding or wrap marker is needed.
//!
//! # Why every shared access is atomic
//! The peer is another process that may be buggy or hostile. Plain (non-atomic) reads of memory
//! another process writes concurrently would be data races, i.e. undefined behaviour, so all
//! shared memory, payload included, is read and written through `AtomicU64`/`AtomicU32`
//! (relaxed payload accesses compile to plain `mov`s on x86-64). For the same reason there is no
//! zero-copy `peek -> &[u8]`: a slice of memory the peer can still write is not sound in Rust;
//! frames are small and copying one costs a few nanoseconds. Every index or length read from
//! shared memory is validated before use; a bad one gives [`Corruption`], never a panic or an
//! out-of-bounds access (all indices are masked).
//!
//! # Ordering
//! - The producer writes the payload (relaxed), then publishes `tail` with **Release**; the
//!   consumer reads `tail` with **Acquire** before reading the payload. So the payload writes
//!   happen-before the payload reads.
//! - The consumer reads the payload, then publishes `head` with **Release**; the producer reads
//!   `head` with **Acquire** before overwriting those words. So the consumer's reads of a slot
//!   happen-before the producer's next writes to it.
//! - Parking is Dekker's pattern with two SeqCst fences. Waiter: `parked.swap(1); fence(SeqCst);
//!   re-check the index; sleep if parked == 1`. Notifier: `publish index; fence(SeqCst); if
//!   parked == 1 { parked = 0; FUTEX_WAKE }`. Of two SeqCst fences one comes first in the total
//!   order, so either the waiter sees the new index (and does not sleep) or the notifier sees
//!   `parked == 1` (and wakes it). FUTEX_WAIT only sleeps if the word is still 1, so a wake that
//!   comes before the sleep is not lost. The notifier pays only a fence and a load per push
//!   unless the peer is parked: no syscall per frame.
//!
//! # Waiting on 2 cores
//! Waits spin for a bounded time ([`DEFAULT_SPIN`], 50 µs) and then park on the futex. With
//! two cores, a waiter that spun indefinitely could take the core the peer needs to make
//! progress; after the spin the waiter uses no CPU until woken.

use std::fmt;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};
use std::time::{Duration, Instant};

use crate::sync::{AtomicU32, AtomicU64, Futex, fence, spin_hint};

/// Identifies an initialised ring header ("FFRING", 0, 1).
pub const MAGIC: u64 = u64::from_le_bytes(*b"FFRING\x00\x01");
/// Layout version; attaching to another version fails.
pub const VERSION: u32 = 1;
/// Smallest data-area capacity in bytes.
#[cfg(not(loom))]
pub const MIN_CAPACITY: usize = 64;
/// Smallest data-area capacity in bytes (tiny under loom, to reach full/wrap-around states).
#[cfg(loom)]
pub const MIN_CAPACITY: usize = 16;
/// Largest data-area capacity in bytes.
pub const MAX_CAPACITY: usize = 1 << 30;
/// How long a wait spins before parking, by default. A futex wake-up costs 20–50 µs on the
/// 2-vCPU VMs faasflow is measured on, so a shorter spin adds that wake-up to every hand-off
/// whose peer takes more than the spin to answer (the daemon's work between a completion and
/// the next invocation is a few µs); a longer one burns a core for longer when nothing comes.
/// Measured with the data-plane bench: 5 µs gave 25–80 µs per in-process edge, 50 µs 7 µs.
pub const DEFAULT_SPIN: Duration = Duration::from_micros(50);
/// High half of every frame header word; anything else is corruption.
const FRAME_MARK: u32 = 0x4652_4D31;
const WORD: usize = 8;

#[repr(C, align(64))]
#[derive(Debug)]
struct Line<T>(T);

#[repr(C)]
#[derive(Debug)]
struct Meta {
    magic: AtomicU64,
    version: AtomicU32,
    reserved: AtomicU32,
    capacity: AtomicU64,
}

/// The shared header. Outside loom it is laid out in shared memory (`repr(C)`, only atomics).
#[repr(C)]
#[derive(Debug)]
struct Header {
    meta: Line<Meta>,
    tail: Line<AtomicU64>,
    head: Line<AtomicU64>,
    consumer_parked: Line<Futex>,
    producer_parked: Line<Futex>,
}

/// Bytes taken by the header, before the data area.
#[cfg(not(loom))]
pub const HEADER_LEN: usize = std::mem::size_of::<Header>();
#[cfg(not(loom))]
const _: () = assert!(HEADER_LEN == 320);

/// Why a ring could not be created in or attached to a region.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AttachError {
    /// The ring must start on a 64-byte boundary of the region.
    #[error("ring offset {offset} is not a multiple of 64")]
    Misaligned { offset: usize },
    /// The header or data area would extend past the end of the region.
    #[error("ring at offset {offset} needs {needed} bytes but the region has {region_len}")]
    OutOfBounds {
        offset: usize,
        needed: usize,
        region_len: usize,
    },
    /// No ring header here (not initialised, or overwritten).
    #[error("bad ring magic {0:#018x}")]
    BadMagic(u64),
    /// A ring of another layout version.
    #[error("ring layout version {0}, expected {VERSION}")]
    BadVersion(u32),
    /// Capacity not a power of two in `MIN_CAPACITY..=MAX_CAPACITY`.
    #[error("ring capacity {0} is not a power of two between {MIN_CAPACITY} and {MAX_CAPACITY}")]
    BadCapacity(u64),
}

/// The peer broke the ring protocol (a bug, or a hostile process). The ring cannot be used
/// any more; the caller should drop the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Corruption {
    /// The peer's index is behind ours or more than a capacity away.
    #[error("peer index {theirs} is inconsistent with ours ({ours})")]
    PeerIndex { ours: u64, theirs: u64 },
    /// A frame header without the frame mark.
    #[error("bad frame header word {0:#018x}")]
    BadFrameHeader(u64),
    /// A frame longer than what has been published.
    #[error("frame of {len} bytes overruns the {available} published bytes")]
    FrameOverrun { len: u64, available: u64 },
}

/// Why [`Producer::push`] did not push.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PushError {
    /// Not enough room now (or before the timeout, for [`Producer::push_wait`]).
    #[error("ring full")]
    Full,
    /// The frame can never fit.
    #[error("frame of {len} bytes is larger than the ring's maximum {max}")]
    TooLarge { len: usize, max: usize },
    /// The consumer corrupted the ring.
    #[error(transparent)]
    Corrupt(#[from] Corruption),
}

/// Why [`Consumer::pop`] failed. An empty ring is not an error (`Ok(None)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PopError {
    /// The next frame does not fit the buffer; it stays in the ring.
    #[error("next frame has {needed} bytes, buffer is smaller")]
    BufferTooSmall { needed: usize },
    /// The producer corrupted the ring.
    #[error(transparent)]
    Corrupt(#[from] Corruption),
}

/// A view of one ring: header and data area, wherever they live. Turn it into its
/// [`Producer`] or its [`Consumer`] end; each end must exist once across all processes.
pub struct Ring {
    header: NonNull<Header>,
    data: NonNull<AtomicU64>,
    /// Data words; a power of two.
    words: u64,
    /// Keeps the memory `header` and `data` point into alive.
    _keep: Arc<dyn Send + Sync>,
}

// SAFETY: `Ring` only hands out shared references to atomics (`Sync`) in memory kept alive by
// `_keep` (`Send + Sync`); nothing in it is tied to a thread.
unsafe impl Send for Ring {}

impl fmt::Debug for Ring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("capacity", &self.capacity())
            .finish_non_exhaustive()
    }
}

fn check_capacity(capacity: u64) -> Result<(), AttachError> {
    if capacity.is_power_of_two() && (MIN_CAPACITY as u64..=MAX_CAPACITY as u64).contains(&capacity) {
        Ok(())
    } else {
        Err(AttachError::BadCapacity(capacity))
    }
}

/// Data words a frame of `len` bytes takes, header word included.
fn frame_words(len: u64) -> u64 {
    1 + len.div_ceil(WORD as u64)
}

impl Ring {
    /// Bytes a ring of `capacity` data bytes takes in a region.
    #[cfg(not(loom))]
    pub fn required_len(capacity: usize) -> usize {
        HEADER_LEN + capacity
    }

    /// Initialises a new, empty ring at `offset` in `region` (overwriting what was there) and
    /// returns a view of it. The peer then [`attach`](Self::attach)es to the same place.
    #[cfg(not(loom))]
    pub fn init(region: &Arc<crate::Region>, offset: usize, capacity: usize) -> Result<Ring, AttachError> {
        check_capacity(capacity as u64)?;
        let ring = Self::view(region, offset, capacity)?;
        let h = ring.header();
        h.meta.0.magic.store(0, Relaxed);
        h.meta.0.version.store(VERSION, Relaxed);
        h.meta.0.reserved.store(0, Relaxed);
        h.meta.0.capacity.store(capacity as u64, Relaxed);
        h.tail.0.store(0, Relaxed);
        h.head.0.store(0, Relaxed);
        h.consumer_parked.0.word.store(0, Relaxed);
        h.producer_parked.0.word.store(0, Relaxed);
        // Release: whoever reads the magic with Acquire sees the fields above.
        h.meta.0.magic.store(MAGIC, Release);
        Ok(ring)
    }

    /// Attaches to a ring initialised (possibly by another process) at `offset` in `region`,
    /// validating its header.
    #[cfg(not(loom))]
    pub fn attach(region: &Arc<crate::Region>, offset: usize) -> Result<Ring, AttachError> {
        let header = Self::view(region, offset, 0)?;
        let h = header.header();
        let magic = h.meta.0.magic.load(Acquire);
        if magic != MAGIC {
            return Err(AttachError::BadMagic(magic));
        }
        let version = h.meta.0.version.load(Relaxed);
        if version != VERSION {
            return Err(AttachError::BadVersion(version));
        }
        // Read once: the peer could change it later, but our view keeps this value.
        let capacity = h.meta.0.capacity.load(Relaxed);
        check_capacity(capacity)?;
        Self::view(region, offset, capacity as usize)
    }

    /// Bounds-checks and builds a view of `capacity` data bytes at `offset`.
    #[cfg(not(loom))]
    fn view(region: &Arc<crate::Region>, offset: usize, capacity: usize) -> Result<Ring, AttachError> {
        if !offset.is_multiple_of(64) {
            return Err(AttachError::Misaligned { offset });
        }
        let needed = HEADER_LEN + capacity;
        if offset.checked_add(needed).is_none_or(|end| end > region.len()) {
            return Err(AttachError::OutOfBounds {
                offset,
                needed,
                region_len: region.len(),
            });
        }
        let base = region.as_ptr();
        // SAFETY: `offset + HEADER_LEN + capacity <= region.len()` was checked just above, so
        // both pointers stay inside the mapping (one past its end at most for an empty data area).
        let (header, data) = unsafe { (base.add(offset), base.add(offset + HEADER_LEN)) };
        let (Some(header), Some(data)) = (
            NonNull::new(header.cast::<Header>()),
            NonNull::new(data.cast::<AtomicU64>()),
        ) else {
            return Err(AttachError::OutOfBounds {
                offset,
                needed,
                region_len: region.len(),
            });
        };
        // The mapping is page-aligned and `offset` a multiple of 64, so `header` meets Header's
        // 64-byte alignment and `data` (header + 320) the 8-byte alignment of AtomicU64.
        Ok(Ring {
            header,
            data,
            words: (capacity / WORD) as u64,
            _keep: region.clone(),
        })
    }

    /// A ring in ordinary (heap) memory, for one process: tests, loom models, in-process use.
    pub fn new_local(capacity: usize) -> Result<Ring, AttachError> {
        check_capacity(capacity as u64)?;
        struct Local {
            header: Header,
            data: Box<[AtomicU64]>,
        }
        let line = |v| Line(AtomicU64::new(v));
        let local = Arc::new(Local {
            header: Header {
                meta: Line(Meta {
                    magic: AtomicU64::new(MAGIC),
                    version: AtomicU32::new(VERSION),
                    reserved: AtomicU32::new(0),
                    capacity: AtomicU64::new(capacity as u64),
                }),
                tail: line(0),
                head: line(0),
                consumer_parked: Line(Futex::new(0)),
                producer_parked: Line(Futex::new(0)),
            },
            data: (0..capacity / WORD).map(|_| AtomicU64::new(0)).collect(),
        });
        let header = NonNull::from(&local.header);
        // From the whole slice, so the pointer may reach every word (not just the first).
        let data = NonNull::from(&*local.data).cast::<AtomicU64>();
        Ok(Ring {
            header,
            data,
            words: (capacity / WORD) as u64,
            _keep: local,
        })
    }

    /// Another view of the same ring, for the other end in the same process.
    pub fn clone_view(&self) -> Ring {
        Ring {
            header: self.header,
            data: self.data,
            words: self.words,
            _keep: self._keep.clone(),
        }
    }

    /// Data-area capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.words as usize * WORD
    }

    /// Largest frame this ring can carry.
    pub fn max_frame_len(&self) -> usize {
        self.capacity() - WORD
    }

    /// The producer end.
    pub fn into_producer(self) -> Producer {
        let tail = self.header().tail.0.load(Acquire);
        Producer {
            head_cache: tail,
            tail,
            spin: DEFAULT_SPIN,
            ring: self,
        }
    }

    /// The consumer end.
    pub fn into_consumer(self) -> Consumer {
        let head = self.header().head.0.load(Acquire);
        Consumer {
            tail_cache: head,
            head,
            spin: DEFAULT_SPIN,
            ring: self,
        }
    }

    fn header(&self) -> &Header {
        // SAFETY: `header` points at a live (kept alive by `_keep`), aligned `Header` made only of
        // atomics, so a shared reference is sound even while another process writes it.
        unsafe { self.header.as_ref() }
    }

    /// The data word for free-running word index `index` (masked, so never out of bounds).
    fn word(&self, index: u64) -> &AtomicU64 {
        let i = (index & (self.words - 1)) as usize;
        // SAFETY: `i < words` and the data area holds `words` aligned atomics, alive as long as
        // `_keep`; see `header` for why sharing them with the peer is sound.
        unsafe { &*self.data.as_ptr().add(i) }
    }

    /// Bounded spin, then park on `futex` until `ready()` or the deadline; `true` if ready.
    /// `ready` must read the peer's index with Acquire.
    pub(crate) fn wait(
        futex: &Futex,
        spin: Duration,
        timeout: Option<Duration>,
        mut ready: impl FnMut() -> bool,
    ) -> bool {
        if spin_phase(spin, &mut ready) {
            return true;
        }
        // A timeout too large to add to now is no timeout.
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            // An RMW, not a plain store: it is ordered after the notifier's last `swap(0)` in the
            // word's modification order, which loom's (partial) modification order needs to see.
            futex.word.swap(1, Relaxed);
            // Dekker with the notifier's fence: see the module docs.
            fence(SeqCst);
            if ready() {
                futex.word.store(0, Relaxed);
                return true;
            }
            let remaining = match deadline {
                None => None,
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(r) if !r.is_zero() => Some(r),
                    _ => {
                        futex.word.store(0, Relaxed);
                        return false;
                    }
                },
            };
            futex.wait(1, remaining);
        }
    }

    /// Wakes the peer parked on `futex`, if it is parked. Call after publishing an index.
    pub(crate) fn notify(futex: &Futex) {
        fence(SeqCst);
        if futex.word.load(Relaxed) != 0 && futex.word.swap(0, Relaxed) != 0 {
            futex.wake();
        }
    }
}

#[cfg(not(loom))]
fn spin_phase(spin: Duration, ready: &mut impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        for _ in 0..32 {
            if ready() {
                return true;
            }
            spin_hint();
        }
        if start.elapsed() >= spin {
            return false;
        }
    }
}

#[cfg(loom)]
fn spin_phase(_spin: Duration, ready: &mut impl FnMut() -> bool) -> bool {
    if ready() {
        return true;
    }
    spin_hint();
    ready()
}

/// The writing end of a ring.
#[derive(Debug)]
pub struct Producer {
    ring: Ring,
    /// Our tail (we are its only writer: never re-read from shared memory).
    tail: u64,
    /// Last head seen; refreshed only when the ring looks full.
    head_cache: u64,
    spin: Duration,
}

impl Producer {
    /// Sets how long waits spin before parking.
    pub fn set_spin(&mut self, spin: Duration) {
        self.spin = spin;
    }

    /// Largest frame this ring can carry.
    pub fn max_frame_len(&self) -> usize {
        self.ring.max_frame_len()
    }

    /// Re-reads the consumer's head (Acquire: its reads of the slots we are about to reuse
    /// happen-before our writes) and checks it.
    fn refresh_head(&mut self) -> Result<(), Corruption> {
        let head = self.ring.header().head.0.load(Acquire);
        if head > self.tail || self.tail - head > self.ring.words {
            return Err(Corruption::PeerIndex {
                ours: self.tail,
                theirs: head,
            });
        }
        self.head_cache = head;
        Ok(())
    }

    fn fits(&mut self, need: u64) -> Result<bool, Corruption> {
        if self.tail - self.head_cache + need <= self.ring.words {
            return Ok(true);
        }
        self.refresh_head()?;
        Ok(self.tail - self.head_cache + need <= self.ring.words)
    }

    /// Pushes one frame without waiting.
    pub fn push(&mut self, frame: &[u8]) -> Result<(), PushError> {
        let max = self.max_frame_len();
        if frame.len() > max {
            return Err(PushError::TooLarge { len: frame.len(), max });
        }
        let need = frame_words(frame.len() as u64);
        if !self.fits(need)? {
            return Err(PushError::Full);
        }
        let ring = &self.ring;
        ring.word(self.tail)
            .store(u64::from(FRAME_MARK) << 32 | frame.len() as u64, Relaxed);
        for (i, chunk) in frame.chunks(WORD).enumerate() {
            let mut w = [0u8; WORD];
            w[..chunk.len()].copy_from_slice(chunk);
            ring.word(self.tail + 1 + i as u64)
                .store(u64::from_le_bytes(w), Relaxed);
        }
        self.tail += need;
        // Release: the payload stores above happen-before the consumer's Acquire of this tail.
        ring.header().tail.0.store(self.tail, Release);
        Ring::notify(&ring.header().consumer_parked.0);
        Ok(())
    }

    /// Pushes one frame, waiting (spin, then park) up to `timeout` (`None`: forever) for room.
    pub fn push_wait(&mut self, frame: &[u8], timeout: Option<Duration>) -> Result<(), PushError> {
        match self.push(frame) {
            Err(PushError::Full) => {}
            other => return other,
        }
        let need = frame_words(frame.len() as u64);
        let mut corrupt = None;
        let ring = &self.ring;
        let (tail, words) = (self.tail, ring.words);
        let head_cell = &ring.header().head.0;
        let ready = Ring::wait(&ring.header().producer_parked.0, self.spin, timeout, || {
            let head = head_cell.load(Acquire);
            if head > tail || tail - head > words {
                corrupt = Some(Corruption::PeerIndex {
                    ours: tail,
                    theirs: head,
                });
                return true;
            }
            tail - head + need <= words
        });
        if let Some(c) = corrupt {
            return Err(c.into());
        }
        if !ready {
            return Err(PushError::Full);
        }
        self.push(frame)
    }
}

/// The reading end of a ring.
#[derive(Debug)]
pub struct Consumer {
    ring: Ring,
    /// Our head (we are its only writer: never re-read from shared memory).
    head: u64,
    /// Last tail seen; refreshed only when the ring looks empty.
    tail_cache: u64,
    spin: Duration,
}

impl Consumer {
    /// Sets how long waits spin before parking.
    pub fn set_spin(&mut self, spin: Duration) {
        self.spin = spin;
    }

    /// Largest frame this ring can carry (a buffer this long always suffices).
    pub fn max_frame_len(&self) -> usize {
        self.ring.max_frame_len()
    }

    /// Re-reads the producer's tail (Acquire: its payload writes happen-before our reads).
    fn refresh_tail(&mut self) -> Result<(), Corruption> {
        let tail = self.ring.header().tail.0.load(Acquire);
        if tail < self.head || tail - self.head > self.ring.words {
            return Err(Corruption::PeerIndex {
                ours: self.head,
                theirs: tail,
            });
        }
        self.tail_cache = tail;
        Ok(())
    }

    /// Whether a frame is ready (or the ring is corrupt, which the next `pop` reports).
    pub fn is_ready(&mut self) -> bool {
        if self.head != self.tail_cache {
            return true;
        }
        match self.refresh_tail() {
            Err(_) => true,
            Ok(()) => self.head != self.tail_cache,
        }
    }

    /// Pops the next frame into `buf`, returning its length, or `None` if the ring is empty.
    pub fn pop(&mut self, buf: &mut [u8]) -> Result<Option<usize>, PopError> {
        if self.head == self.tail_cache {
            self.refresh_tail()?;
            if self.head == self.tail_cache {
                return Ok(None);
            }
        }
        let ring = &self.ring;
        let available = self.tail_cache - self.head;
        let header = ring.word(self.head).load(Relaxed);
        if (header >> 32) as u32 != FRAME_MARK {
            return Err(Corruption::BadFrameHeader(header).into());
        }
        let len = header & 0xffff_ffff;
        let need = frame_words(len);
        if need > available {
            return Err(Corruption::FrameOverrun {
                len,
                available: available * WORD as u64,
            }
            .into());
        }
        // `len <= available * 8 <= capacity <= MAX_CAPACITY`, so it fits a usize.
        let len = len as usize;
        let Some(out) = buf.get_mut(..len) else {
            return Err(PopError::BufferTooSmall { needed: len });
        };
        for (i, chunk) in out.chunks_mut(WORD).enumerate() {
            let w = ring.word(self.head + 1 + i as u64).load(Relaxed).to_le_bytes();
            chunk.copy_from_slice(&w[..chunk.len()]);
        }
        self.head += need;
        // Release: our payload reads above happen-before the producer's Acquire of this head,
        // hence before it overwrites those words.
        ring.header().head.0.store(self.head, Release);
        Ring::notify(&ring.header().producer_parked.0);
        Ok(Some(len))
    }

    /// Waits (spin, then park) up to `timeout` (`None`: forever) until a frame is ready;
    /// `true` if one is.
    pub fn wait_nonempty(&mut self, timeout: Option<Duration>) -> bool {
        if self.is_ready() {
            return true;
        }
        let (head, tail_cell) = (self.head, &self.ring.header().tail.0);
        // Acquire, as in `refresh_tail`; a corrupt tail counts as ready so `pop` reports it.
        Ring::wait(&self.ring.header().consumer_parked.0, self.spin, timeout, || {
            tail_cell.load(Acquire) != head
        })
    }

    /// Pops the next frame, waiting up to `timeout` for one.
    pub fn pop_wait(&mut self, buf: &mut [u8], timeout: Option<Duration>) -> Result<Option<usize>, PopError> {
        if self.wait_nonempty(timeout) {
            self.pop(buf)
        } else {
            Ok(None)
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::Region;

    fn pair(capacity: usize) -> (Producer, Consumer) {
        let ring = Ring::new_local(capacity).expect("capacity");
        (ring.clone_view().into_producer(), ring.into_consumer())
    }

    #[test]
    fn push_pop_in_order_with_wrap_around() {
        let (mut p, mut c) = pair(64);
        let mut buf = [0u8; 64];
        for round in 0..100u32 {
            let len = (round % 20) as usize;
            let frame: Vec<u8> = (0..len).map(|i| (round as u8).wrapping_add(i as u8)).collect();
            p.push(&frame).expect("room");
            assert_eq!(c.pop(&mut buf), Ok(Some(len)));
            assert_eq!(&buf[..len], &frame[..]);
        }
        assert_eq!(c.pop(&mut buf), Ok(None));
    }

    #[test]
    fn full_too_large_and_small_buffer() {
        let (mut p, mut c) = pair(64);
        assert_eq!(p.max_frame_len(), 56);
        assert_eq!(p.push(&[0; 57]), Err(PushError::TooLarge { len: 57, max: 56 }));
        p.push(&[1; 24]).expect("4 words");
        p.push(&[2; 24]).expect("4 words");
        assert_eq!(p.push(&[]), Err(PushError::Full));
        let mut small = [0u8; 8];
        assert_eq!(c.pop(&mut small), Err(PopError::BufferTooSmall { needed: 24 }));
        let mut buf = [0u8; 56];
        assert_eq!(c.pop(&mut buf), Ok(Some(24)));
        p.push(&[]).expect("room again");
    }

    #[test]
    fn region_init_attach_and_header_validation() {
        let region = Arc::new(Region::create("ring-test", 4096).expect("memfd"));
        assert_eq!(Ring::init(&region, 0, 100).unwrap_err(), AttachError::BadCapacity(100));
        assert_eq!(
            Ring::init(&region, 8, 64).unwrap_err(),
            AttachError::Misaligned { offset: 8 }
        );
        assert!(matches!(
            Ring::init(&region, 0, 4096),
            Err(AttachError::OutOfBounds { .. })
        ));
        assert_eq!(Ring::attach(&region, 0).unwrap_err(), AttachError::BadMagic(0));
        let ring = Ring::init(&region, 0, 2048).expect("fits");
        let attached = Ring::attach(&region, 0).expect("valid header");
        assert_eq!(attached.capacity(), 2048);
        let h = ring.header();
        h.meta.0.version.store(9, Relaxed);
        assert_eq!(Ring::attach(&region, 0).unwrap_err(), AttachError::BadVersion(9));
        h.meta.0.version.store(VERSION, Relaxed);
        h.meta.0.capacity.store(1 << 20, Relaxed);
        assert!(matches!(Ring::attach(&region, 0), Err(AttachError::OutOfBounds { .. })));
        h.meta.0.capacity.store(3, Relaxed);
        assert_eq!(Ring::attach(&region, 0).unwrap_err(), AttachError::BadCapacity(3));
        h.meta.0.capacity.store(2048, Relaxed);
        let (mut p, mut c) = (ring.into_producer(), attached.into_consumer());
        p.push(b"hello").expect("room");
        let mut buf = [0u8; 16];
        assert_eq!(c.pop(&mut buf), Ok(Some(5)));
        assert_eq!(&buf[..5], b"hello");
    }

    /// A hostile producer: every bad index or length is an error, never a panic.
    #[test]
    fn corrupted_peer_gives_errors() {
        let ring = Ring::new_local(64).expect("capacity");
        let shared = ring.clone_view();
        let (mut p, mut c) = (ring.clone_view().into_producer(), ring.into_consumer());
        let mut buf = [0u8; 64];
        // Tail beyond one capacity.
        shared.header().tail.0.store(100, Release);
        assert!(matches!(
            c.pop(&mut buf),
            Err(PopError::Corrupt(Corruption::PeerIndex { .. }))
        ));
        // A bad frame header word.
        shared.header().tail.0.store(2, Release);
        shared.word(0).store(0xdead_beef, Relaxed);
        assert!(matches!(
            c.pop(&mut buf),
            Err(PopError::Corrupt(Corruption::BadFrameHeader(_)))
        ));
        // A length longer than what was published.
        shared.word(0).store(u64::from(FRAME_MARK) << 32 | 0xffff_ffff, Relaxed);
        assert!(matches!(
            c.pop(&mut buf),
            Err(PopError::Corrupt(Corruption::FrameOverrun { .. }))
        ));
        // A head ahead of the producer's tail.
        shared.header().head.0.store(1000, Release);
        for _ in 0..10 {
            if let Err(e) = p.push(&[0; 8]) {
                assert!(matches!(e, PushError::Corrupt(Corruption::PeerIndex { .. })));
                return;
            }
        }
        panic!("corrupt head never detected");
    }

    #[test]
    fn waits_time_out_and_wake_across_threads() {
        let (mut p, mut c) = pair(64);
        let mut buf = [0u8; 64];
        let t0 = Instant::now();
        assert_eq!(c.pop_wait(&mut buf, Some(Duration::from_millis(20))), Ok(None));
        p.push(&[1]).expect("room");
        assert_eq!(c.pop_wait(&mut buf, Some(Duration::MAX)), Ok(Some(1)));
        assert!(t0.elapsed() >= Duration::from_millis(20));
        p.push(&[0; 56]).expect("room");
        assert_eq!(
            p.push_wait(&[0; 8], Some(Duration::from_millis(5))),
            Err(PushError::Full)
        );
        let n = 20_000u32;
        let t = std::thread::spawn(move || {
            for i in 0..n {
                p.push_wait(&i.to_le_bytes(), None).expect("push");
            }
        });
        assert_eq!(c.pop_wait(&mut buf, None), Ok(Some(56)));
        for i in 0..n {
            assert_eq!(c.pop_wait(&mut buf, None), Ok(Some(4)));
            assert_eq!(buf[..4], i.to_le_bytes());
        }
        t.join().expect("producer");
    }
}
