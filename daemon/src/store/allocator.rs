//! The arena's object allocator: best-fit over free extents, with immediate coalescing.
//!
//! Pure bookkeeping of offsets in a region of `capacity` bytes; it never touches the memory.
//! Every allocation is rounded up to `align` (a power of two, a cache line by default), so that
//! objects never share a cache line and a consumer in another process can read an object
//! while the producer writes the next one. Deterministic: the same sequence of calls gives the
//! same offsets (best fit, ties to the lowest offset).

use std::collections::{BTreeMap, BTreeSet};

/// Where an object lives in the arena.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Extent {
    /// Byte offset from the start of the region.
    pub offset: u64,
    /// Bytes reserved (the requested length rounded up to the alignment).
    pub len: u64,
}

/// Why an allocation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllocError {
    /// A zero-length request or one larger than the region.
    BadSize,
    /// Enough bytes are free in total, but not in one piece, or not enough are free.
    Full {
        /// Bytes requested (after rounding).
        wanted: u64,
        /// Bytes free in all.
        free: u64,
        /// The largest free piece.
        largest: u64,
    },
}

/// Best-fit allocator of extents of one region.
#[derive(Debug, Clone)]
pub struct Allocator {
    capacity: u64,
    align: u64,
    /// Free extents by offset.
    free_by_offset: BTreeMap<u64, u64>,
    /// Free extents by (len, offset), for best fit.
    free_by_len: BTreeSet<(u64, u64)>,
    used: u64,
}

impl Allocator {
    /// An allocator for `capacity` bytes (rounded down to `align`), `align` a power of two.
    pub fn new(capacity: u64, align: u64) -> Self {
        assert!(align.is_power_of_two(), "alignment must be a power of two");
        let capacity = capacity & !(align - 1);
        let mut a = Allocator {
            capacity,
            align,
            free_by_offset: BTreeMap::new(),
            free_by_len: BTreeSet::new(),
            used: 0,
        };
        if capacity > 0 {
            a.insert_free(0, capacity);
        }
        a
    }

    /// Bytes of the region.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Bytes currently allocated (after rounding).
    pub fn used(&self) -> u64 {
        self.used
    }

    /// The largest extent that could be allocated now.
    pub fn largest_free(&self) -> u64 {
        self.free_by_len.iter().next_back().map_or(0, |(len, _)| *len)
    }

    /// Reserves `len` bytes.
    pub fn alloc(&mut self, len: u64) -> Result<Extent, AllocError> {
        if len == 0 || len > self.capacity {
            return Err(AllocError::BadSize);
        }
        let want = len.div_ceil(self.align) * self.align;
        let Some(&(flen, off)) = self.free_by_len.range((want, 0)..).next() else {
            return Err(AllocError::Full {
                wanted: want,
                free: self.capacity - self.used,
                largest: self.largest_free(),
            });
        };
        self.remove_free(off, flen);
        if flen > want {
            self.insert_free(off + want, flen - want);
        }
        self.used += want;
        Ok(Extent { offset: off, len: want })
    }

    /// Returns an extent obtained from [`Allocator::alloc`]. An extent that is not allocated
    /// (freed twice, or never allocated) changes nothing and gives `false`.
    pub fn free(&mut self, e: Extent) -> bool {
        let valid = e.len > 0
            && e.offset.is_multiple_of(self.align)
            && e.len.is_multiple_of(self.align)
            && e.offset.checked_add(e.len).is_some_and(|end| end <= self.capacity)
            && !self.overlaps_free(e);
        if !valid {
            return false;
        }
        self.used -= e.len;
        let (mut off, mut len) = (e.offset, e.len);
        // Coalesce with the free extent just before and just after.
        if let Some((&poff, &plen)) = self.free_by_offset.range(..off).next_back()
            && poff + plen == off
        {
            self.remove_free(poff, plen);
            off = poff;
            len += plen;
        }
        if let Some(&nlen) = self.free_by_offset.get(&(e.offset + e.len)) {
            self.remove_free(e.offset + e.len, nlen);
            len += nlen;
        }
        self.insert_free(off, len);
        true
    }

    fn overlaps_free(&self, e: Extent) -> bool {
        let end = e.offset + e.len;
        // The free extent starting at or before `e`, and any starting inside it.
        let before = self
            .free_by_offset
            .range(..=e.offset)
            .next_back()
            .is_some_and(|(&o, &l)| o + l > e.offset);
        before || self.free_by_offset.range(e.offset..end).next().is_some()
    }

    fn insert_free(&mut self, off: u64, len: u64) {
        self.free_by_offset.insert(off, len);
        self.free_by_len.insert((len, off));
    }

    fn remove_free(&mut self, off: u64, len: u64) {
        self.free_by_offset.remove(&off);
        self.free_by_len.remove(&(len, off));
    }

    /// The end of the highest allocated extent (0 when nothing is allocated).
    pub fn used_end(&self) -> u64 {
        if self.used == 0 {
            return 0;
        }
        match self.free_by_offset.iter().next_back() {
            Some((&off, &len)) if off + len == self.capacity => off,
            _ => self.capacity,
        }
    }

    /// Free extents in offset order.
    pub fn free_extents(&self) -> impl Iterator<Item = Extent> + '_ {
        self.free_by_offset.iter().map(|(&offset, &len)| Extent { offset, len })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn best_fit_and_coalescing() {
        let mut a = Allocator::new(1024, 64);
        let x = a.alloc(100).unwrap();
        let y = a.alloc(64).unwrap();
        let z = a.alloc(200).unwrap();
        assert_eq!((x.offset, x.len, y.offset, z.offset, z.len), (0, 128, 128, 192, 256));
        assert!(a.free(y));
        // A 64-byte hole at 128 is the best fit for 10 bytes, not the tail.
        assert_eq!(a.alloc(10).unwrap().offset, 128);
        assert!(a.free(Extent { offset: 128, len: 64 }));
        assert!(a.free(x));
        assert!(a.free(z));
        assert_eq!(
            a.free_extents().collect::<Vec<_>>(),
            vec![Extent { offset: 0, len: 1024 }]
        );
        assert_eq!(a.used(), 0);
    }

    #[test]
    fn used_end_is_the_end_of_the_highest_allocation() {
        let mut a = Allocator::new(1024, 64);
        assert_eq!(a.used_end(), 0);
        let x = a.alloc(64).unwrap();
        let y = a.alloc(128).unwrap();
        assert_eq!(a.used_end(), 192);
        assert!(a.free(y));
        assert_eq!(a.used_end(), 64);
        let rest = a.alloc(960).unwrap();
        assert_eq!(a.used_end(), 1024, "full to the end");
        assert!(a.free(x) && a.free(rest));
        assert_eq!(a.used_end(), 0);
    }

    #[test]
    fn full_says_how_full() {
        let mut a = Allocator::new(256, 64);
        let x = a.alloc(64).unwrap();
        let _y = a.alloc(64).unwrap();
        let _z = a.alloc(64).unwrap();
        a.free(x);
        assert_eq!(
            a.alloc(128),
            Err(AllocError::Full {
                wanted: 128,
                free: 128,
                largest: 64
            })
        );
        assert_eq!(a.alloc(0), Err(AllocError::BadSize));
        assert_eq!(a.alloc(10_000), Err(AllocError::BadSize));
    }

    #[test]
    fn double_and_foreign_frees_change_nothing() {
        let mut a = Allocator::new(256, 64);
        let x = a.alloc(64).unwrap();
        assert!(a.free(x));
        assert!(!a.free(x));
        assert!(!a.free(Extent { offset: 3, len: 64 }));
        assert!(!a.free(Extent { offset: 192, len: 128 }));
        assert_eq!((a.used(), a.largest_free()), (0, 256));
    }

    proptest! {
        #[test]
        fn random_sequences_keep_the_books(ops in proptest::collection::vec((any::<bool>(), 1u64..5000, any::<prop::sample::Index>()), 1..300)) {
            let mut a = Allocator::new(64 * 1024, 64);
            let mut live: Vec<Extent> = Vec::new();
            for (alloc, len, pick) in ops {
                if alloc || live.is_empty() {
                    if let Ok(e) = a.alloc(len) {
                        prop_assert!(e.len >= len && e.offset % 64 == 0 && e.offset + e.len <= a.capacity());
                        for o in &live {
                            prop_assert!(e.offset + e.len <= o.offset || o.offset + o.len <= e.offset, "{e:?} overlaps {o:?}");
                        }
                        live.push(e);
                    }
                } else {
                    let e = live.swap_remove(pick.index(live.len()));
                    prop_assert!(a.free(e));
                }
                let used: u64 = live.iter().map(|e| e.len).sum();
                prop_assert_eq!(a.used(), used);
                let free: u64 = a.free_extents().map(|e| e.len).sum();
                prop_assert_eq!(free + used, a.capacity());
                // Free extents never touch (they are always coalesced).
                let f: Vec<Extent> = a.free_extents().collect();
                for w in f.windows(2) {
                    prop_assert!(w[0].offset + w[0].len < w[1].offset);
                }
            }
            for e in live.drain(..) {
                prop_assert!(a.free(e));
            }
            prop_assert_eq!(a.free_extents().count(), 1);
        }
    }
}
