//! FaaStore on one worker: the bookkeeping of the daemon's shared-memory arena.
//!
//! [`allocator`] hands out cache-line-aligned extents of the arena for sealed objects and takes
//! them back when the engine releases an object. The mapping of the arena itself and the quota
//! and spill policy arrive with the arena driver. [`spill`] is the directory of the daemon's
//! own that objects out of the arena are written to.

pub mod allocator;
pub mod arena;
pub mod spill;
