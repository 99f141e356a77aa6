//! The arena: one sealed memory file, mapped and pre-faulted by the daemon and by every
//! instance, holding the daemon's doorbell and the objects of all invocations.
//!
//! ```text
//! offset 0      header page: magic u64 (`FFARENA1`) | … | doorbell line at 64
//! offset 4096   objects, placed by the allocator in 64-byte aligned extents
//! ```
//! Offsets handed out ([`Extent::offset`]) are offsets in the memory file, header included.

use std::sync::Arc;

use faasflow_shm::{Doorbell, Region};

use super::allocator::{AllocError, Allocator, Extent};

/// Bytes before the first object.
pub const HEADER_LEN: u64 = 4096;
/// Offset of the doorbell in the header.
pub const DOORBELL_OFFSET: u64 = 64;
/// Alignment of objects.
pub const ALIGN: u64 = 64;
const MAGIC: &[u8; 8] = b"FFARENA1";

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

/// The daemon's side of the arena.
#[derive(Debug)]
pub struct Arena {
    region: Arc<Region>,
    alloc: Allocator,
    doorbell: Doorbell,
}

impl Arena {
    /// Creates an arena of `len` bytes (header included), pre-faulted.
    pub fn create(name: &str, len: u64) -> std::io::Result<Arena> {
        let len = len.max(HEADER_LEN + ALIGN);
        let len_usize = usize::try_from(len).map_err(|_| std::io::Error::other("arena size does not fit in memory"))?;
        let region = Arc::new(Region::create(name, len_usize)?);
        region.copy_in(0, MAGIC);
        let doorbell = Doorbell::attach(&region, DOORBELL_OFFSET as usize).map_err(std::io::Error::other)?;
        doorbell.reset();
        Ok(Arena {
            alloc: Allocator::new(len - HEADER_LEN, ALIGN),
            region,
            doorbell,
        })
    }

    /// The memory file, to pass to instances.
    pub fn region(&self) -> &Arc<Region> {
        &self.region
    }

    /// The daemon's doorbell (in the header).
    pub fn doorbell(&self) -> &Doorbell {
        &self.doorbell
    }

    /// Bytes for objects.
    pub fn capacity(&self) -> u64 {
        self.alloc.capacity()
    }

    /// Bytes held by objects and reservations.
    pub fn used(&self) -> u64 {
        self.alloc.used()
    }

    /// Reserves at least `len` bytes (`len > 0`).
    pub fn alloc(&mut self, len: u64) -> Result<Extent, ArenaFull> {
        let full = |a: &Allocator| ArenaFull {
            wanted: len,
            free: a.capacity() - a.used(),
            largest: a.largest_free(),
            capacity: a.capacity(),
        };
        match self.alloc.alloc(len) {
            Ok(e) => Ok(Extent {
                offset: e.offset + HEADER_LEN,
                len: e.len,
            }),
            Err(AllocError::BadSize | AllocError::Full { .. }) => Err(full(&self.alloc)),
        }
    }

    /// Returns an extent (or the tail of one, see [`Arena::trim`]); `false` if it was not held.
    pub fn free(&mut self, e: Extent) -> bool {
        e.offset >= HEADER_LEN
            && self.alloc.free(Extent {
                offset: e.offset - HEADER_LEN,
                len: e.len,
            })
    }

    /// Keeps the first `keep` bytes of `e` (rounded up to the alignment) and frees the rest;
    /// returns what is kept (an empty extent when `keep` is 0).
    pub fn trim(&mut self, e: Extent, keep: u64) -> Extent {
        let kept = keep.div_ceil(ALIGN) * ALIGN;
        if kept < e.len {
            self.free(Extent {
                offset: e.offset + kept,
                len: e.len - kept,
            });
            Extent {
                offset: e.offset,
                len: kept,
            }
        } else {
            e
        }
    }

    /// Writes `bytes` at `offset` (an extent this daemon holds and has not handed out yet).
    pub fn write(&self, offset: u64, bytes: &[u8]) -> bool {
        self.region.copy_in(offset, bytes)
    }

    /// Reads `len` bytes at `offset` (a sealed object).
    pub fn read(&self, offset: u64, len: u64) -> Option<Vec<u8>> {
        let mut v = vec![0u8; usize::try_from(len).ok()?];
        self.region.copy_out(offset, &mut v).then_some(v)
    }

    /// Reads bytes at `offset` into `buf` (a sealed object).
    pub fn read_into(&self, offset: u64, buf: &mut [u8]) -> bool {
        self.region.copy_out(offset, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extents_are_past_the_header_and_trimmed_tails_come_back() {
        let mut a = Arena::create("arena-test", 1 << 20).expect("memfd");
        assert_eq!(a.capacity(), (1 << 20) - HEADER_LEN);
        let e = a.alloc(1000).expect("room");
        assert!(e.offset >= HEADER_LEN && e.len == 1024);
        let kept = a.trim(e, 100);
        assert_eq!(kept.len, 128);
        assert_eq!(a.used(), 128);
        assert!(a.write(kept.offset, b"hello"));
        assert_eq!(a.read(kept.offset, 5).as_deref(), Some(&b"hello"[..]));
        assert!(a.free(kept));
        assert!(!a.free(kept), "a double free is refused");
        assert_eq!(a.used(), 0);
        let err = a.alloc(2 << 20).expect_err("too big");
        assert_eq!(err.capacity, (1 << 20) - HEADER_LEN);
        assert!(err.to_string().contains("do not fit in the arena"), "{err}");
    }
}
