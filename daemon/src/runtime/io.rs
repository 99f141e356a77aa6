//! The runtime's side of the storage driver ([`RemoteIo`]): every operation gets a token, and
//! the token remembers which part of the runtime asked, so that its [`RemoteEvent`] goes back
//! there. The parts keep what they need to finish the operation under the same token.
//!
//! [`RemoteEvent`]: crate::remote::RemoteEvent

use std::collections::HashMap;
use std::path::PathBuf;

use faasflow_remote::ObjectKey;

use crate::remote::{Dest, InArena, RemoteIo, Source};
use crate::store::arena::{Arena, Extent};

/// The part of the runtime an operation is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    /// An object moving out of the arena ([`super::objects::Objects`]).
    Spill,
    /// A call's input loaded back into the arena ([`super::calls::Calls`]).
    Load,
    /// A new output written to the remote tier before its completion goes on.
    Seal,
    /// A result's bytes read for the report.
    Report,
    /// An object's bytes for a push, or a staged input's spill file.
    Peers,
    /// A central engine's inputs and outputs.
    Execute,
}

/// The driver, and who asked for what.
pub(crate) struct Io {
    driver: RemoteIo,
    next: u64,
    owners: HashMap<u64, Part>,
    /// It was said that the remote tier refused an object planned for it.
    refused: bool,
}

impl Io {
    pub(crate) fn new(driver: RemoteIo) -> Self {
        Io {
            driver,
            next: 1,
            owners: HashMap::new(),
            refused: false,
        }
    }

    /// Whether the daemon has a remote tier.
    pub(crate) fn has_store(&self) -> bool {
        self.driver.has_store()
    }

    /// Whether the remote tier refusing an object planned for it is to be said now: the
    /// first time only (the log would say it for every object).
    pub(crate) fn first_refusal(&mut self) -> bool {
        !std::mem::replace(&mut self.refused, true)
    }

    /// Operations in flight.
    pub(crate) fn in_flight(&self) -> usize {
        self.owners.len()
    }

    /// Which part asked for operation `token` (once: the token is forgotten).
    pub(crate) fn finished(&mut self, token: u64) -> Option<Part> {
        self.owners.remove(&token)
    }

    fn token(&mut self, part: Part) -> u64 {
        let t = self.next;
        self.next += 1;
        self.owners.insert(t, part);
        t
    }

    /// Writes `from` to `to`.
    pub(crate) fn write(&mut self, part: Part, from: Source, to: Dest) -> u64 {
        let t = self.token(part);
        self.driver.write(t, from, to);
        t
    }

    /// Loads `from` (exactly `into.len` bytes) into an arena extent.
    pub(crate) fn load(&mut self, part: Part, from: Source, into: InArena) -> u64 {
        let t = self.token(part);
        self.driver.load(t, from, into);
        t
    }

    /// Reads the bytes of `from`.
    pub(crate) fn fetch(&mut self, part: Part, from: Source) -> u64 {
        let t = self.token(part);
        self.driver.fetch(t, from);
        t
    }

    /// Writes each source to its key, in order.
    pub(crate) fn write_all(&mut self, part: Part, writes: Vec<(ObjectKey, Source)>) -> u64 {
        let t = self.token(part);
        self.driver.write_all(t, writes);
        t
    }

    /// Deletes a key, in the background.
    pub(crate) fn delete(&self, key: ObjectKey) {
        self.driver.delete(key);
    }

    /// Says a file job comes soon (the file thread wakes and waits for it a little).
    pub(crate) fn expect_file_work(&self) {
        self.driver.expect_file_work();
    }

    /// Creates spill file `path` ahead of its write, in the background.
    pub(crate) fn create_ahead(&self, path: PathBuf) {
        self.driver.create_ahead(path);
    }

    /// Removes a spill file, in the background.
    pub(crate) fn remove_file(&self, path: PathBuf) {
        self.driver.remove_file(path);
    }
}

/// The bytes of arena extent `e` (`len` of them) as a source (`None`: its segment is gone).
pub(crate) fn arena_source(arena: &Arena, e: Extent, len: u64) -> Option<Source> {
    arena.region(e.segment).map(|region| Source::Arena {
        region: region.clone(),
        offset: e.offset,
        len,
    })
}

/// Arena extent `e` (`len` bytes of it) as a place to load into (`None`: its segment is gone).
pub(crate) fn arena_target(arena: &Arena, e: Extent, len: u64) -> Option<InArena> {
    arena.region(e.segment).map(|region| InArena {
        region: region.clone(),
        offset: e.offset,
        len,
    })
}
