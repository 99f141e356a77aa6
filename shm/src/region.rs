//! Shared-memory regions: an anonymous memory file (`memfd_create`), sized, sealed against
//! resizing and mapped shared; its fd is handed to another process, which maps the same pages.

use std::ffi::CString;
use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use memmap2::{MmapOptions, MmapRaw};

/// Bytes of a page (what [`Region::punch`] and [`Region::prefault_range`] work in).
const PAGE: u64 = 4096;

/// A shared mapping of a memory file. Only ever accessed through raw pointers and atomics
/// (never as `&[u8]`), since another process may write it at any time.
pub struct Region {
    map: MmapRaw,
    file: File,
}

impl fmt::Debug for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Region")
            .field("len", &self.len())
            .field("file", &self.file)
            .finish()
    }
}

impl Region {
    /// Creates a memory file of `len` bytes named `name` (shown in `/proc/<pid>/fd`, for
    /// debugging), seals it so that no process can shrink or grow it (a peer shrinking it would
    /// make our accesses fault), and maps it, pre-faulted. The fd is close-on-exec; pass it to a
    /// child explicitly (see [`Region::fd`]).
    pub fn create(name: &str, len: usize) -> io::Result<Region> {
        Region::create_with(name, len, true)
    }

    /// [`Region::create`] without pre-faulting: no page is allocated until it is touched (or
    /// [`Region::prefault`]ed), so a large region costs only what is used of it.
    pub fn create_sparse(name: &str, len: usize) -> io::Result<Region> {
        Region::create_with(name, len, false)
    }

    fn create_with(name: &str, len: usize, populate: bool) -> io::Result<Region> {
        let cname = CString::new(name).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // SAFETY: `cname` is a valid NUL-terminated string alive across the call; the flags are
        // valid memfd_create flags.
        let fd = unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by memfd_create, is open, and is owned by nobody else.
        let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        file.set_len(len as u64)?;
        let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
        // SAFETY: F_ADD_SEALS on an fd we own; takes an int argument, touches no memory of ours.
        if unsafe { libc::fcntl(fd, libc::F_ADD_SEALS, seals) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let map = map(&file, len, populate)?;
        Ok(Region { map, file })
    }

    /// Maps a region received from another process. Its length is the file's length; it must be
    /// sealed against shrinking (as [`Region::create`] does), or a peer could make our accesses
    /// fault by truncating it.
    pub fn open(fd: OwnedFd) -> io::Result<Region> {
        Region::open_with(fd, true)
    }

    /// [`Region::open`] without pre-faulting: pages are mapped as they are first touched (or
    /// [`Region::prefault`]ed). Pre-faulting a sparse region would allocate all of it.
    pub fn open_sparse(fd: OwnedFd) -> io::Result<Region> {
        Region::open_with(fd, false)
    }

    fn open_with(fd: OwnedFd, populate: bool) -> io::Result<Region> {
        let file = File::from(fd);
        // SAFETY: F_GET_SEALS on an fd we own; no memory is passed.
        let seals = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GET_SEALS) };
        if seals < 0 || seals & libc::F_SEAL_SHRINK == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "shared memory file is not sealed against shrinking",
            ));
        }
        let len = usize::try_from(file.metadata()?.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "shared memory file too large"))?;
        let map = map(&file, len, populate)?;
        Ok(Region { map, file })
    }

    /// Maps (allocating them if they are not yet) the pages of bytes `0..len` of the region
    /// (clamped to its length), so that first accesses there take no page fault.
    pub fn prefault(&self, len: u64) -> io::Result<()> {
        self.prefault_range(0, len)
    }

    /// [`Region::prefault`] for the pages of bytes `offset..offset + len` (clamped to the
    /// region). Pages this process allocates are charged to it, not to a peer that touches
    /// them later.
    pub fn prefault_range(&self, offset: u64, len: u64) -> io::Result<()> {
        let size = self.len() as u64;
        let start = offset.min(size) / PAGE * PAGE;
        let end = offset.saturating_add(len).min(size);
        if start >= end {
            return Ok(());
        }
        let len = usize::try_from(end - start).unwrap_or(usize::MAX);
        // SAFETY: `start` is page-aligned and `start..end` lies inside the live mapping (both
        // are clamped to its length). MADV_POPULATE_WRITE only faults pages in, as a write would
        // without changing a byte; no memory of ours is passed.
        let r = unsafe { libc::madvise(self.as_ptr().add(start as usize).cast(), len, libc::MADV_POPULATE_WRITE) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Gives the pages of bytes `offset..offset + len` back to the system (the bytes read as
    /// zero afterwards, in every process that maps the region). Only whole pages inside the
    /// range are freed; `false` when the range is not inside the region or the system refused.
    pub fn punch(&self, offset: u64, len: u64) -> bool {
        let Some(end) = offset.checked_add(len).filter(|e| *e <= self.map.len() as u64) else {
            return false;
        };
        let (start, end) = (offset.div_ceil(PAGE) * PAGE, end / PAGE * PAGE);
        if start >= end {
            return true;
        }
        let (Ok(start), Ok(len)) = (libc::off_t::try_from(start), libc::off_t::try_from(end - start)) else {
            return false;
        };
        // SAFETY: fallocate on an fd we own, with flags and a range; no memory is passed.
        let r = unsafe {
            libc::fallocate(
                self.file.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                start,
                len,
            )
        };
        r == 0
    }

    /// The memory file, to pass to another process (e.g. with `SCM_RIGHTS`, or inherited).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the region is empty.
    pub fn is_empty(&self) -> bool {
        self.map.len() == 0
    }

    /// A pointer to bytes `offset..offset + len` of the mapping, or `None` when that range is
    /// not inside it. What may be done through the pointer is the caller's protocol: bytes a
    /// peer may write concurrently must not be read as `&[u8]`.
    pub fn range_ptr(&self, offset: u64, len: u64) -> Option<*mut u8> {
        let end = offset.checked_add(len)?;
        if end > self.map.len() as u64 {
            return None;
        }
        // SAFETY: `offset <= end <= len of the mapping`, so the result is inside the mapping or
        // one past its end (for an empty range at the end).
        Some(unsafe { self.as_ptr().add(offset as usize) })
    }

    /// Copies bytes `offset..offset + dst.len()` of the region into `dst`; `false` (and nothing
    /// copied) when the range is not inside the region. For bytes no peer writes any more (a
    /// sealed object); if a misbehaving peer still writes them, `dst` gets some mix of old
    /// and new bytes, and nothing else happens.
    pub fn copy_out(&self, offset: u64, dst: &mut [u8]) -> bool {
        let Some(src) = self.range_ptr(offset, dst.len() as u64) else {
            return false;
        };
        // SAFETY: `src..src + dst.len()` is inside the live mapping (checked by `range_ptr`) and
        // cannot overlap `dst`, a Rust allocation of ours. A byte copy through raw pointers
        // forms no reference to the shared bytes, so a peer writing them concurrently only
        // changes which values are copied.
        unsafe { std::ptr::copy_nonoverlapping(src, dst.as_mut_ptr(), dst.len()) };
        true
    }

    /// Copies `src` into the region at `offset`; `false` (and nothing written) when the range
    /// is not inside the region. For bytes no peer reads yet (an extent not handed out).
    pub fn copy_in(&self, offset: u64, src: &[u8]) -> bool {
        let Some(dst) = self.range_ptr(offset, src.len() as u64) else {
            return false;
        };
        // SAFETY: `dst..dst + src.len()` is inside the live, writable shared mapping (checked by
        // `range_ptr`) and cannot overlap `src`; no reference to the shared bytes is formed.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst, src.len()) };
        true
    }

    /// Start of the mapping (page-aligned). Access it only atomically.
    pub fn as_ptr(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    /// Makes the whole mapping inaccessible to this process (`mprotect(PROT_NONE)`): any later
    /// read or write through it faults. For a process about to end that must not touch the
    /// memory meanwhile (another process reuses it).
    ///
    /// # Safety
    /// Nothing may access the region through this mapping afterwards unless faulting is what
    /// is wanted: references into it must not be used again.
    pub unsafe fn revoke(&self) -> io::Result<()> {
        if self.map.len() == 0 {
            return Ok(());
        }
        // SAFETY: the range is exactly this region's own mapping; the caller vouches that
        // nothing relies on accessing it any more.
        let r = unsafe { libc::mprotect(self.map.as_mut_ptr().cast(), self.map.len(), libc::PROT_NONE) };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

fn map(file: &File, len: usize, populate: bool) -> io::Result<MmapRaw> {
    let mut options = MmapOptions::new();
    options.len(len);
    if populate {
        options.populate();
    }
    options.map_raw(file)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// Bytes of the region's pages the system holds (from the file's block count).
    fn allocated(r: &Region) -> u64 {
        use std::os::unix::fs::MetadataExt;
        r.file.metadata().expect("metadata").blocks() * 512
    }

    #[test]
    fn a_sparse_region_costs_what_is_touched_and_punched_pages_come_back() {
        let r = Region::create_sparse("region-test", 1 << 20).expect("memfd");
        assert_eq!(allocated(&r), 0, "nothing touched yet");
        r.prefault(64 << 10).expect("prefault");
        assert_eq!(allocated(&r), 64 << 10);
        assert!(r.copy_in(8192, b"kept"));
        assert!(r.copy_in(20000, b"gone"));
        // Whole pages inside the range only: 12288..32768 goes, the page of 8192 stays.
        assert!(r.punch(8200, 30000 - 8200 + 4096));
        let mut b = [0u8; 4];
        assert!(r.copy_out(8192, &mut b));
        assert_eq!(&b, b"kept");
        assert!(r.copy_out(20000, &mut b));
        assert_eq!(&b, &[0; 4], "punched pages read as zero");
        assert!(allocated(&r) < 64 << 10);
        assert!(!r.punch(1 << 20, 1), "outside the region");
    }
}
