//! The arena: the daemon's in-memory object store, one sealed memory file (*segment*) per
//! installed workflow version.
//!
//! An instance maps the segment of its own workflow and nothing else: the objects of other
//! workflows are in files it never receives, so it cannot read them whatever it tries. An
//! object is addressed by (segment, offset, len); offsets are from the start of its segment.
//!
//! One budget for all: the bytes held in every segment together never exceed the arena's
//! capacity (`--arena-mib`), whatever the segments' sizes. Every segment is as large as the
//! budget (so one workflow may use all of it) but sparse: its pages are allocated as they are
//! touched. Freed pages stay mapped (the next object there costs no page fault) until the
//! pages the segments may hold together would exceed the budget; then the free parts of other
//! segments (busiest first) are given back to the system ([`Region::punch`]). So memory stays
//! bounded by the budget (plus part of a page per free piece) with any number of workflows.
//!
//! The daemon's doorbell, which every instance rings, is in a file of its own
//! ([`Arena::bell`]): it holds no object.

use std::collections::BTreeMap;
use std::sync::Arc;

use faasflow_shm::{Doorbell, Region};

use super::allocator::{self, AllocError, Allocator};

/// Alignment of objects.
pub const ALIGN: u64 = 64;
/// Offset of the doorbell in its file.
pub const DOORBELL_OFFSET: u64 = 0;
const PAGE: u64 = 4096;
const BELL_LEN: usize = 4096;

/// Where an object lives: its segment and its bytes there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Extent {
    /// The segment (one per workflow version).
    pub segment: u32,
    /// Byte offset from the start of the segment.
    pub offset: u64,
    /// Bytes reserved (the requested length rounded up to the alignment).
    pub len: u64,
}

/// Why an extent could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{wanted} bytes do not fit in the arena: {free} of {capacity} bytes are free, the largest free piece is {largest} bytes"
)]
pub struct ArenaFull {
    /// Bytes asked for.
    pub wanted: u64,
    /// Bytes free in all.
    pub free: u64,
    /// The largest free piece.
    pub largest: u64,
    /// Bytes for objects in all.
    pub capacity: u64,
}

#[derive(Debug)]
struct Segment {
    region: Arc<Region>,
    alloc: Allocator,
    /// The end of the highest extent allocated since the last trim: no page past it has been
    /// touched since.
    high: u64,
    /// Bytes freed since the last trim (their pages may still be allocated).
    freed: u64,
    /// The pages of bytes `0..populated` are all allocated, by the daemon: what its instances
    /// may map eagerly.
    populated: u64,
    /// Its workflow is gone: removed once it holds nothing.
    dropped: bool,
}

impl Segment {
    /// An upper bound of the bytes of pages it holds.
    fn resident(&self) -> u64 {
        self.high.min(self.alloc.used() + self.freed)
    }

    /// Gives the pages of its free pieces back; returns the bytes given back (at most).
    fn trim(&mut self) -> u64 {
        let before = self.resident();
        for f in self.alloc.free_extents() {
            if f.offset >= self.high {
                break;
            }
            self.region.punch(f.offset, f.len.min(self.high - f.offset));
            // Holes from here on: instances started from now on must not fault them in again
            // (they would take memory the budget no longer counts).
            self.populated = self.populated.min(f.offset / PAGE * PAGE);
        }
        self.high = self.alloc.used_end();
        self.freed = 0;
        before.saturating_sub(self.resident())
    }
}

/// The daemon's side of the arena.
#[derive(Debug)]
pub struct Arena {
    name: String,
    capacity: u64,
    used: u64,
    segments: BTreeMap<u32, Segment>,
    next_segment: u32,
    bell_region: Arc<Region>,
    doorbell: Doorbell,
    /// Times a segment's free pages were given back, since start.
    trims: u64,
}

impl Arena {
    /// An arena of `capacity` bytes for objects, with no segment yet. `name` prefixes the
    /// names of its memory files (seen in `/proc/PID/fd`).
    pub fn create(name: &str, capacity: u64) -> std::io::Result<Arena> {
        let capacity = capacity.max(ALIGN) / ALIGN * ALIGN;
        usize::try_from(capacity).map_err(|_| std::io::Error::other("arena size does not fit in memory"))?;
        let bell_region = Arc::new(Region::create(&format!("{name}-doorbell"), BELL_LEN)?);
        let doorbell = Doorbell::attach(&bell_region, DOORBELL_OFFSET as usize).map_err(std::io::Error::other)?;
        doorbell.reset();
        Ok(Arena {
            name: name.to_owned(),
            capacity,
            used: 0,
            segments: BTreeMap::new(),
            next_segment: 1,
            bell_region,
            doorbell,
            trims: 0,
        })
    }

    /// Creates a segment (for a workflow version named `label`), with no page allocated yet
    /// (see [`Arena::prefault`]).
    pub fn add_segment(&mut self, label: &str) -> std::io::Result<u32> {
        let id = self.next_segment;
        let len = usize::try_from(self.capacity).map_err(|_| std::io::Error::other("arena size does not fit"))?;
        // Memory file names are for people reading /proc: keep them short and printable.
        let label: String = label
            .chars()
            .map(|c| if c.is_ascii_graphic() { c } else { '_' })
            .take(48)
            .collect();
        let region = Arc::new(Region::create_sparse(&format!("{}-{label}", self.name), len)?);
        self.segments.insert(
            id,
            Segment {
                region,
                alloc: Allocator::new(self.capacity, ALIGN),
                high: 0,
                freed: 0,
                populated: 0,
                dropped: false,
            },
        );
        self.next_segment += 1;
        Ok(id)
    }

    /// Allocates the pages of the first `len` bytes of `segment` now (as far as the budget
    /// allows with what the other segments hold), so that its first objects take no page
    /// fault. Best effort: pages the system refuses now come as they are touched.
    pub fn prefault(&mut self, segment: u32, len: u64) {
        let others: u64 = self
            .segments
            .iter()
            .filter(|(id, _)| **id != segment)
            .map(|(_, s)| s.resident())
            .sum();
        let room = self.capacity.saturating_sub(others);
        let Some(s) = self.segments.get_mut(&segment) else {
            return;
        };
        let len = len.min(room) / PAGE * PAGE;
        if len <= s.populated || s.region.prefault(len).is_err() {
            return;
        }
        s.freed += len - s.populated;
        s.high = s.high.max(len);
        s.populated = len;
    }

    /// Its workflow is gone: the segment is removed (its memory file closed here; instances
    /// still mapping it keep it until they exit) as soon as it holds no extent.
    pub fn drop_segment(&mut self, segment: u32) {
        if let Some(s) = self.segments.get_mut(&segment) {
            s.dropped = true;
            if s.alloc.used() == 0 {
                self.segments.remove(&segment);
            }
        }
    }

    /// The memory file of `segment`, to pass to its workflow's instances.
    pub fn region(&self, segment: u32) -> Option<&Arc<Region>> {
        self.segments.get(&segment).map(|s| &s.region)
    }

    /// Bytes at the start of `segment` whose pages are all allocated (an instance may map
    /// them eagerly without taking memory).
    pub fn populated(&self, segment: u32) -> u64 {
        self.segments.get(&segment).map_or(0, |s| s.populated)
    }

    /// The memory file holding the daemon's doorbell (at [`DOORBELL_OFFSET`]).
    pub fn bell(&self) -> &Arc<Region> {
        &self.bell_region
    }

    /// The daemon's doorbell.
    pub fn doorbell(&self) -> &Doorbell {
        &self.doorbell
    }

    /// Bytes for objects, all segments together.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Bytes held by objects and reservations, all segments together.
    pub fn used(&self) -> u64 {
        self.used
    }

    /// Segments alive.
    pub fn segments(&self) -> usize {
        self.segments.len()
    }

    /// An upper bound of the bytes of pages the segments hold together.
    pub fn resident(&self) -> u64 {
        self.segments.values().map(Segment::resident).sum()
    }

    /// Times a segment's free pages were given back, since start.
    pub fn trims(&self) -> u64 {
        self.trims
    }

    /// Reserves at least `len` bytes (`len > 0`) in `segment`.
    pub fn alloc(&mut self, segment: u32, len: u64) -> Result<Extent, ArenaFull> {
        let rounded = len.div_ceil(ALIGN).saturating_mul(ALIGN);
        let free = self.capacity - self.used;
        let largest = |s: Option<&Segment>| s.map_or(0, |s| s.alloc.largest_free().min(free));
        let full = |s: Option<&Segment>| ArenaFull {
            wanted: len,
            free,
            largest: largest(s),
            capacity: self.capacity,
        };
        let Some(seg) = self.segments.get_mut(&segment) else {
            return Err(full(None));
        };
        if len == 0 || rounded > free {
            return Err(full(Some(seg)));
        }
        let e = match seg.alloc.alloc(len) {
            Ok(e) => e,
            Err(AllocError::BadSize | AllocError::Full { .. }) => {
                let seg = self.segments.get(&segment);
                return Err(full(seg));
            }
        };
        seg.high = seg.high.max(e.offset + e.len);
        self.used += e.len;
        self.keep_in_budget(segment);
        self.populate(segment, e);
        Ok(Extent {
            segment,
            offset: e.offset,
            len: e.len,
        })
    }

    /// Allocates the pages of a new extent here, in the daemon, unless they are known to be:
    /// the instance that writes them (in a container with a memory limit, say) is then not
    /// charged for them, and takes no page fault that allocates.
    fn populate(&mut self, segment: u32, e: allocator::Extent) {
        let Some(seg) = self.segments.get_mut(&segment) else {
            return;
        };
        let end = e.offset + e.len;
        if end <= seg.populated {
            return;
        }
        // Best effort: a page the system refuses now is allocated by its first writer.
        if seg.region.prefault_range(e.offset, e.len).is_ok() && e.offset <= seg.populated {
            seg.populated = end;
        }
    }

    /// When the segments may hold more pages than the budget, gives back the free pages of
    /// the others (those with the most freed first), then of `current`'s.
    fn keep_in_budget(&mut self, current: u32) {
        let mut resident = self.resident();
        if resident <= self.capacity {
            return;
        }
        let mut order: Vec<(u64, u32)> = self
            .segments
            .iter()
            .filter(|(_, s)| s.freed > 0)
            .map(|(id, s)| (s.freed, *id))
            .collect();
        // The others first, most freed first; the current one last.
        order.sort_unstable_by_key(|(freed, id)| (*id == current, std::cmp::Reverse(*freed)));
        for (_, id) in order {
            if resident <= self.capacity {
                break;
            }
            if let Some(s) = self.segments.get_mut(&id) {
                resident = resident.saturating_sub(s.trim());
                self.trims += 1;
            }
        }
    }

    /// Returns an extent (or the tail of one, see [`Arena::trim`]); `false` if it was not held.
    pub fn free(&mut self, e: Extent) -> bool {
        let Some(seg) = self.segments.get_mut(&e.segment) else {
            return false;
        };
        if !seg.alloc.free(allocator::Extent {
            offset: e.offset,
            len: e.len,
        }) {
            return false;
        }
        seg.freed += e.len;
        self.used -= e.len;
        if seg.dropped && seg.alloc.used() == 0 {
            self.segments.remove(&e.segment);
        }
        true
    }

    /// Keeps the first `keep` bytes of `e` (rounded up to the alignment) and frees the rest;
    /// returns what is kept (an empty extent when `keep` is 0).
    pub fn trim(&mut self, e: Extent, keep: u64) -> Extent {
        let kept = keep.div_ceil(ALIGN) * ALIGN;
        if kept < e.len {
            self.free(Extent {
                segment: e.segment,
                offset: e.offset + kept,
                len: e.len - kept,
            });
            Extent { len: kept, ..e }
        } else {
            e
        }
    }

    /// Writes `bytes` at `at` in extent `e` (one this daemon holds and has not handed out yet);
    /// `false` when they do not fit in it.
    pub fn write(&self, e: Extent, at: u64, bytes: &[u8]) -> bool {
        at.checked_add(bytes.len() as u64).is_some_and(|end| end <= e.len)
            && self
                .segments
                .get(&e.segment)
                .is_some_and(|s| s.region.copy_in(e.offset + at, bytes))
    }

    /// Reads the first `len` bytes of extent `e` (a sealed object).
    pub fn read(&self, e: Extent, len: u64) -> Option<Vec<u8>> {
        let mut v = vec![0u8; usize::try_from(len).ok()?];
        self.read_into(e, 0, &mut v).then_some(v)
    }

    /// Reads bytes at `at` in extent `e` into `buf` (a sealed object).
    pub fn read_into(&self, e: Extent, at: u64, buf: &mut [u8]) -> bool {
        at.checked_add(buf.len() as u64).is_some_and(|end| end <= e.len)
            && self
                .segments
                .get(&e.segment)
                .is_some_and(|s| s.region.copy_out(e.offset + at, buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extents_live_in_their_segment_and_trimmed_tails_come_back() {
        let mut a = Arena::create("arena-test", 1 << 20).expect("memfd");
        let s = a.add_segment("wf@1").expect("segment");
        assert_eq!(a.capacity(), 1 << 20);
        let e = a.alloc(s, 1000).expect("room");
        assert!(e.segment == s && e.len == 1024);
        let kept = a.trim(e, 100);
        assert_eq!(kept.len, 128);
        assert_eq!(a.used(), 128);
        assert!(a.write(kept, 0, b"hello"));
        assert!(!a.write(kept, 125, b"hello"), "past the extent");
        assert_eq!(a.read(kept, 5).as_deref(), Some(&b"hello"[..]));
        assert!(a.free(kept));
        assert!(!a.free(kept), "a double free is refused");
        assert_eq!(a.used(), 0);
        let err = a.alloc(s, 2 << 20).expect_err("too big");
        assert_eq!(err.capacity, 1 << 20);
        assert!(err.to_string().contains("do not fit in the arena"), "{err}");
        assert!(a.alloc(99, 10).is_err(), "no such segment");
    }

    #[test]
    fn the_budget_is_shared_by_all_segments() {
        let mut a = Arena::create("arena-test", 1 << 20).expect("memfd");
        let (s1, s2) = (a.add_segment("a@1").expect("s1"), a.add_segment("b@1").expect("s2"));
        let e1 = a.alloc(s1, 600 << 10).expect("room");
        let err = a.alloc(s2, 600 << 10).expect_err("over the budget");
        assert_eq!(err.free, (1 << 20) - (600 << 10));
        let e2 = a.alloc(s2, 424 << 10).expect("what is left");
        assert_eq!(a.used(), 1 << 20);
        assert!(a.free(e1) && a.free(e2));
        assert_eq!(a.used(), 0);
    }

    /// Bytes of pages the system holds for `segment`'s memory file.
    fn allocated(a: &Arena, segment: u32) -> u64 {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::MetadataExt;
        let fd = a.region(segment).expect("segment").fd().as_raw_fd();
        std::fs::metadata(format!("/proc/self/fd/{fd}")).expect("stat").blocks() * 512
    }

    #[test]
    fn the_segments_hold_no_more_pages_than_the_budget() {
        let mut a = Arena::create("arena-test", 1 << 20).expect("memfd");
        let s1 = a.add_segment("a@1").expect("s1");
        a.prefault(s1, 1 << 20);
        assert_eq!(a.populated(s1), 1 << 20, "the whole budget was free");
        // The second segment gets no pre-faulted pages: the first holds them all.
        let s2 = a.add_segment("b@1").expect("s2");
        a.prefault(s2, 1 << 20);
        assert_eq!(a.populated(s2), 0);
        let e1 = a.alloc(s1, 256 << 10).expect("room");
        assert!(a.write(e1, 0, &[7; 4096]));
        // Using the second segment makes the first give its free pages back, not its object.
        let e2 = a.alloc(s2, 512 << 10).expect("room");
        assert!(a.resident() <= a.capacity(), "{} > {}", a.resident(), a.capacity());
        assert!(a.trims() >= 1);
        assert_eq!(a.populated(s1), 256 << 10, "only what is still allocated");
        assert_eq!(
            a.populated(s2),
            512 << 10,
            "the daemon allocated the new extent's pages"
        );
        assert!(allocated(&a, s2) >= 512 << 10, "before anyone wrote them");
        assert_eq!(a.read(e1, 4096).expect("read"), vec![7; 4096], "live bytes are kept");
        assert!(a.free(e1) && a.free(e2));
    }

    #[test]
    fn a_dropped_segment_goes_when_it_is_empty() {
        let mut a = Arena::create("arena-test", 1 << 20).expect("memfd");
        let s = a.add_segment("a@1").expect("segment");
        let e = a.alloc(s, 100).expect("room");
        a.drop_segment(s);
        assert!(a.region(s).is_some(), "kept while it holds an object");
        assert!(a.free(e));
        assert!(a.region(s).is_none(), "gone once empty");
        assert_eq!(a.segments(), 0);
    }
}
