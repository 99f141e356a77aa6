//! Objects: every sealed output, arriving object and staged input this worker holds, where
//! its bytes are ([`Place`]), who still needs them, and the bytes each workflow version keeps
//! in the arena (its quota's measure).
//!
//! Spilling moves an object out of the arena (into Redis when the daemon has a remote tier,
//! else into a file of the spill directory) without the loop waiting: the write runs on the
//! storage driver, reading the object's extent in place, and the extent is freed only when
//! the write is through ([`Objects::spill_done`]). Until then the object counts as in use: it
//! is never freed, chosen again or read elsewhere than in the arena. A spill whose object a
//! running call reads meanwhile is thrown away instead (the object stays in the arena).
//!
//! The extent a spill leaves is not freed at once: it stays until the end of the loop's turn
//! as the object's *shadow* ([`Objects::take_shadow`]). A call that reads the object and is
//! prepared in that turn (typically its consumer, which the spill's completion triggers)
//! takes the shadow as its loaded copy instead of reading the bytes back; an untaken shadow
//! is freed by [`Objects::drop_shadows`], or as soon as the arena needs the room.
//!
//! Spill files are numbered (`spill-N`), and the storage driver creates the next
//! [`CREATED_AHEAD`] of them (empty) before they are needed: a spill only fills its file.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Instant;

use faasflow_core::engine::InvocationId;
use faasflow_remote::ObjectKey;

use super::io::{Io, Part, arena_source};
use super::types::WfKey;
use crate::remote::{Dest, RemoteIoError, Source};
use crate::store::arena::{Arena, ArenaFull, Extent};
use crate::store::spill::SpillDir;

/// Spill files created before they are needed.
pub(crate) const CREATED_AHEAD: u64 = 2;

/// Where an object's bytes are.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Place {
    Arena(Extent),
    Spilled(PathBuf),
    Empty,
    /// Produced on another worker (or fetched from the remote tier); its bytes are on their
    /// way.
    Pending,
    /// In the remote tier: spilled there by this daemon (`spilled`), stored there by it for
    /// a workflow planned with every edge remote (`Mode::WorkerSpRemote`), or stored there
    /// by another worker for an edge the plan marks remote. `owned`: deleted when freed.
    Remote {
        key: ObjectKey,
        owned: bool,
        spilled: bool,
    },
}

/// One object.
#[derive(Debug)]
pub(crate) struct Object {
    pub(crate) place: Place,
    pub(crate) len: u64,
    pub(crate) wf: WfKey,
    pub(crate) invocation: InvocationId,
    pub(crate) producer: String,
    /// The instance of this worker that produced it (`u32::MAX`: none).
    pub(crate) instance: u32,
    /// The foreach element of the call that produced it (here), if any.
    pub(crate) element: Option<u32>,
    /// The engine released it while something still needed it (a sent call read it, a push
    /// or a storage operation used it, or it was still arriving): freed when that ends.
    pub(crate) released: bool,
    /// Pushes to other workers in progress (and writes of it for a central engine).
    pub(crate) pushes: u32,
    /// A result of an invocation whose end waits for other result objects still arriving.
    pub(crate) held: bool,
    /// Storage operations using its bytes where they are: a spill writing them out, loads
    /// reading them back.
    pub(crate) io: u32,
    /// A copy in the remote tier for edges the plan marks remote (deleted with the object).
    pub(crate) remote_copy: Option<ObjectKey>,
    /// Received from another worker (`peer`) or fetched from the remote tier (`remote`):
    /// how, and the transfer's time, µs.
    pub(crate) transfer_us: Option<(&'static str, f64)>,
    /// When it was created (objects of invocations that never start here are swept).
    pub(crate) born: Instant,
}

impl Object {
    /// An object that no instance of this worker produced (it arrives from another worker or
    /// the remote tier, or is a workflow input), not yet released, pushed or held.
    pub(crate) fn foreign(
        place: Place,
        len: u64,
        wf: WfKey,
        invocation: InvocationId,
        producer: String,
        now: Instant,
    ) -> Object {
        Object::new(place, len, wf, invocation, producer, u32::MAX, now)
    }

    /// An object of `invocation` produced by `instance` of this worker (`u32::MAX`: by
    /// none), not yet released, pushed or held.
    pub(crate) fn new(
        place: Place,
        len: u64,
        wf: WfKey,
        invocation: InvocationId,
        producer: String,
        instance: u32,
        now: Instant,
    ) -> Object {
        Object {
            place,
            len,
            wf,
            invocation,
            producer,
            instance,
            element: None,
            released: false,
            pushes: 0,
            held: false,
            io: 0,
            remote_copy: None,
            transfer_us: None,
            born: now,
        }
    }

    /// Something other than a call still needs its bytes where they are (or they are not
    /// there yet).
    pub(crate) fn busy(&self) -> bool {
        self.pushes > 0 || self.held || self.io > 0 || matches!(self.place, Place::Pending)
    }
}

/// A spill being written: the object, the extent it leaves, and where it goes.
#[derive(Debug)]
struct Spill {
    object: u64,
    extent: Extent,
    to: Dest,
}

/// How a spill ended ([`Objects::spill_done`]).
#[derive(Debug, PartialEq)]
pub(crate) enum Spilled {
    /// The object left the arena; the write took `us`.
    Moved {
        object: u64,
        invocation: InvocationId,
        us: f64,
    },
    /// It stays in the arena (its write failed, or a call reads it there now).
    Stayed { object: u64 },
    /// The remote tier refused it: it is being written to a file instead.
    Retried,
}

/// A report's view of an object's bytes ([`Objects::shown`]).
pub(crate) enum Shown {
    /// Here (or gone: `None`).
    Bytes(Option<Vec<u8>>),
    /// To be read from the spill directory or the remote tier.
    Read(Source),
}

/// The objects this worker holds.
pub(crate) struct Objects {
    map: HashMap<u64, Object>,
    next: u64,
    /// Arena bytes each workflow version's objects hold.
    resident: HashMap<WfKey, u64>,
    /// The daemon's own spill directory (removed when it stops).
    spill_dir: SpillDir,
    /// The daemon's own arena segment, mapped by no instance: objects that arrive before their
    /// invocation is known here land in it (and are copied for their readers).
    private_segment: u32,
    /// Spills being written, by token.
    spills: HashMap<u64, Spill>,
    /// Arena bytes those spills will free.
    spilling_bytes: u64,
    /// Objects spilled since start.
    spills_total: u64,
    /// Objects whose spill file could not be written (they stayed in the arena), since start.
    spill_failures_total: u64,
    /// Why spill files could not be written, each said once in the log.
    spill_failures_said: HashSet<String>,
    /// Extents that objects spilled this turn left, by object: still holding their bytes
    /// until the turn ends.
    shadows: HashMap<u64, Extent>,
    /// Spill files named so far.
    spill_files: u64,
    /// Pushes to and arrivals from other workers in progress (they hold arena bytes the
    /// arena waits for).
    pub(crate) transfers: usize,
    /// Objects kept in the arena over their quota while a call read them: spilled at the end
    /// of the turn if still needed by then ([`Objects::take_recheck`]).
    recheck: Vec<u64>,
}

impl Objects {
    /// Object `id` stayed in the arena over quota for a reader that just ended.
    pub(crate) fn recheck(&mut self, id: u64) {
        self.recheck.push(id);
    }

    /// The objects to look at again: still held, still in the arena, over their workflow's
    /// quota (the caller spills those no running call reads).
    pub(crate) fn take_recheck(&mut self, quota: impl Fn(&WfKey) -> u64) -> Vec<u64> {
        let ids = std::mem::take(&mut self.recheck);
        ids.into_iter()
            .filter(|id| {
                self.map.get(id).is_some_and(|o| {
                    !o.released
                        && o.io == 0
                        && matches!(o.place, Place::Arena(_))
                        && self.resident(&o.wf) > quota(&o.wf)
                })
            })
            .collect()
    }

    /// No objects yet; `spill_dir` is where spill files go.
    pub(crate) fn new(arena: &mut Arena, spill_dir: SpillDir) -> Self {
        // Without it, early arrivals go to spill files.
        let private_segment = arena.add_segment("daemon").unwrap_or(u32::MAX);
        Objects {
            map: HashMap::new(),
            next: 1,
            resident: HashMap::new(),
            spill_dir,
            private_segment,
            spills: HashMap::new(),
            spilling_bytes: 0,
            spills_total: 0,
            spill_failures_total: 0,
            spill_failures_said: HashSet::new(),
            shadows: HashMap::new(),
            spill_files: 0,
            transfers: 0,
            recheck: Vec::new(),
        }
    }

    /// A new object id (ids are never reused).
    pub(crate) fn new_id(&mut self) -> u64 {
        let id = self.next;
        self.next += 1;
        id
    }

    pub(crate) fn insert(&mut self, id: u64, object: Object) {
        self.map.insert(id, object);
    }

    pub(crate) fn get(&self, id: u64) -> Option<&Object> {
        self.map.get(&id)
    }

    pub(crate) fn get_mut(&mut self, id: u64) -> Option<&mut Object> {
        self.map.get_mut(&id)
    }

    pub(crate) fn contains(&self, id: u64) -> bool {
        self.map.contains_key(&id)
    }

    /// Forgets an object without freeing anything (it has no bytes: still arriving, or its
    /// fetch failed).
    pub(crate) fn forget(&mut self, id: u64) -> Option<Object> {
        self.map.remove(&id)
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Objects whose bytes are out of the arena (in a spill file or the remote tier).
    pub(crate) fn spilled_count(&self) -> usize {
        self.map
            .values()
            .filter(|o| matches!(o.place, Place::Spilled(_) | Place::Remote { .. }))
            .count()
    }

    pub(crate) fn spills_total(&self) -> u64 {
        self.spills_total
    }

    pub(crate) fn spill_failures_total(&self) -> u64 {
        self.spill_failures_total
    }

    /// Whether spills are being written.
    pub(crate) fn spilling(&self) -> bool {
        !self.spills.is_empty()
    }

    pub(crate) fn private_segment(&self) -> u32 {
        self.private_segment
    }

    /// A path in the daemon's spill directory.
    pub(crate) fn spill_path(&self, file: &str) -> PathBuf {
        self.spill_dir.path().join(file)
    }

    /// The next spill file, whose successors the storage driver creates ahead (the first
    /// time, all of them: the first spill creates its own).
    fn next_spill_file(&mut self, io: &Io) -> PathBuf {
        let first = if self.spill_files == 0 {
            2
        } else {
            self.spill_files + 1 + CREATED_AHEAD
        };
        self.spill_files += 1;
        for n in first..=self.spill_files + CREATED_AHEAD {
            io.create_ahead(self.spill_path(&format!("spill-{n}")));
        }
        self.spill_path(&format!("spill-{}", self.spill_files))
    }

    /// The daemon's spill directory.
    pub(crate) fn spill_dir(&self) -> &SpillDir {
        &self.spill_dir
    }

    /// Arena bytes `wf`'s objects hold.
    pub(crate) fn resident(&self, wf: &WfKey) -> u64 {
        self.resident.get(wf).copied().unwrap_or(0)
    }

    /// `wf`'s objects hold `len` more arena bytes.
    pub(crate) fn add_resident(&mut self, wf: &WfKey, len: u64) {
        *self.resident.entry(wf.clone()).or_default() += len;
    }

    fn sub_resident(&mut self, wf: &WfKey, len: u64) {
        if let Some(r) = self.resident.get_mut(wf) {
            *r = r.saturating_sub(len);
        }
    }

    /// Marks an object released (freed when nothing needs it any more).
    pub(crate) fn mark_released(&mut self, id: u64) {
        if let Some(o) = self.map.get_mut(&id) {
            o.released = true;
        }
    }

    /// Frees an object's bytes and forgets it, unless a storage operation still uses them
    /// (then it is only marked released, and freed when that ends). Returns the object freed.
    pub(crate) fn free(&mut self, id: u64, arena: &mut Arena, io: &Io) -> Option<Object> {
        if let Some(o) = self.map.get_mut(&id)
            && o.io > 0
        {
            o.released = true;
            return None;
        }
        let obj = self.map.remove(&id)?;
        if let Some(key) = obj.remote_copy.clone() {
            io.delete(key);
        }
        if let Some(e) = self.shadows.remove(&id) {
            arena.free(e);
        }
        match &obj.place {
            Place::Arena(e) => {
                arena.free(*e);
                self.sub_resident(&obj.wf, e.len);
            }
            Place::Spilled(path) => io.remove_file(path.clone()),
            Place::Remote { key, owned: true, .. } => io.delete(key.clone()),
            Place::Empty | Place::Pending | Place::Remote { .. } => {}
        }
        Some(obj)
    }

    /// Object `id`, whose bytes were at `e` in the arena, is now at `place`: frees the
    /// extent. Returns its invocation (`None` when the object is gone).
    pub(crate) fn moved_out(&mut self, id: u64, e: Extent, place: Place, arena: &mut Arena) -> Option<InvocationId> {
        let inv = self.left(id, e, place)?;
        arena.free(e);
        Some(inv)
    }

    /// Object `id` left extent `e` for `place` (no longer counted against its quota); the
    /// extent is the caller's to free.
    fn left(&mut self, id: u64, e: Extent, place: Place) -> Option<InvocationId> {
        let obj = self.map.get_mut(&id)?;
        obj.place = place;
        let (inv, wf) = (obj.invocation, obj.wf.clone());
        self.sub_resident(&wf, e.len);
        Some(inv)
    }

    /// The extent object `id` (spilled this turn) left, still holding its bytes, when it is
    /// in `segment`: the caller owns it from now on (a call's loaded copy).
    pub(crate) fn take_shadow(&mut self, id: u64, segment: u32) -> Option<Extent> {
        let e = self.shadows.get(&id).filter(|e| e.segment == segment)?;
        let e = *e;
        self.shadows.remove(&id);
        Some(e)
    }

    /// Frees the shadows no call took (at the end of each loop turn). Returns whether there
    /// were any.
    pub(crate) fn drop_shadows(&mut self, arena: &mut Arena) -> bool {
        let any = !self.shadows.is_empty();
        for (_, e) in self.shadows.drain() {
            arena.free(e);
        }
        any
    }

    /// Reserves `len` bytes in `segment`. When the arena is full, starts moving sealed objects
    /// that nothing `held` names (asked only then) out of it, largest first, until the bytes those spills
    /// free would make room, and says it is full: the caller waits for the spills to end (an
    /// extent leaves the arena only once its bytes are written elsewhere). When even spilling
    /// everything movable could not make room, it spills nothing.
    pub(crate) fn alloc_or_spill(
        &mut self,
        arena: &mut Arena,
        segment: u32,
        len: u64,
        held: impl FnOnce() -> HashSet<u64>,
        io: &mut Io,
        worker: &str,
    ) -> Result<Extent, ArenaFull> {
        let mut full = match arena.alloc(segment, len) {
            Ok(e) => return Ok(e),
            Err(full) => full,
        };
        if self.drop_shadows(arena) {
            full = match arena.alloc(segment, len) {
                Ok(e) => return Ok(e),
                Err(full) => full,
            };
        }
        if len > arena.capacity() {
            return Err(full);
        }
        let held = held();
        let mut movable: Vec<(u64, u64)> = self
            .map
            .iter()
            .filter_map(|(id, o)| match o.place {
                // Not while a push to another worker or a storage operation reads it.
                Place::Arena(e) if !held.contains(id) && o.pushes == 0 && o.io == 0 => Some((e.len, *id)),
                _ => None,
            })
            .collect();
        let could_free: u64 = movable.iter().map(|(len, _)| len).sum();
        let mut coming = arena.capacity().saturating_sub(arena.used()) + self.spilling_bytes;
        if coming + could_free < len {
            return Err(full);
        }
        movable.sort_unstable_by(|a, b| b.cmp(a));
        for (bytes, id) in movable {
            if coming >= len {
                break;
            }
            if self.spill(id, arena, io, worker) {
                coming += bytes;
            }
        }
        Err(full)
    }

    /// Starts moving an object out of the arena: to the remote tier when the daemon has one,
    /// else to a file of the spill directory. Returns whether a spill started.
    pub(crate) fn spill(&mut self, id: u64, arena: &Arena, io: &mut Io, worker: &str) -> bool {
        let Some(obj) = self.map.get(&id) else { return false };
        let Place::Arena(e) = obj.place else { return false };
        if obj.io > 0 {
            return false;
        }
        let to = if io.has_store() {
            Dest::Key(ObjectKey::new(
                obj.wf.0.clone(),
                obj.wf.1,
                obj.invocation,
                format!("spill/{worker}/{id}"),
            ))
        } else {
            Dest::File(self.next_spill_file(io))
        };
        self.start_spill(id, e, to, arena, io)
    }

    fn start_spill(&mut self, id: u64, e: Extent, to: Dest, arena: &Arena, io: &mut Io) -> bool {
        let Some(obj) = self.map.get_mut(&id) else { return false };
        let Some(from) = arena_source(arena, e, obj.len) else {
            return false;
        };
        obj.io += 1;
        let token = io.write(Part::Spill, from, to.clone());
        self.spilling_bytes += e.len;
        self.spills.insert(
            token,
            Spill {
                object: id,
                extent: e,
                to,
            },
        );
        true
    }

    /// Spill `token` ended with `result` after `us`. The object leaves the arena (its extent
    /// stays this turn as its shadow) unless
    /// `in_use` says a call reads it there now (then the written copy is thrown away). A
    /// refused remote write is tried again as a file; a failed file write leaves the object in
    /// the arena, over quota, rather than lose it (counted, and said once per cause).
    pub(crate) fn spill_done(
        &mut self,
        token: u64,
        result: Result<(), RemoteIoError>,
        us: f64,
        arena: &mut Arena,
        io: &mut Io,
        in_use: impl Fn(u64) -> bool,
    ) -> Option<Spilled> {
        let spill = self.spills.remove(&token)?;
        self.spilling_bytes = self.spilling_bytes.saturating_sub(spill.extent.len);
        let id = spill.object;
        let obj = self.map.get_mut(&id)?;
        obj.io = obj.io.saturating_sub(1);
        match (result, spill.to) {
            (Err(err), Dest::Key(_)) => {
                let to = self.next_spill_file(io);
                tracing::warn!(
                    object = id,
                    cause = %err,
                    dir = %self.spill_dir.path().display(),
                    "cannot spill to the remote tier; spilling to the spill directory"
                );
                if self.start_spill(id, spill.extent, Dest::File(to), arena, io) {
                    Some(Spilled::Retried)
                } else {
                    Some(Spilled::Stayed { object: id })
                }
            }
            (Err(err), Dest::File(path)) => {
                io.remove_file(path);
                self.spill_failed(&err);
                Some(Spilled::Stayed { object: id })
            }
            (Ok(()), to) if in_use(id) || obj.pushes > 0 => {
                match to {
                    Dest::File(path) => io.remove_file(path),
                    Dest::Key(key) => io.delete(key),
                }
                Some(Spilled::Stayed { object: id })
            }
            (Ok(()), to) => {
                let place = match to {
                    Dest::File(path) => Place::Spilled(path),
                    Dest::Key(key) => Place::Remote {
                        key,
                        owned: true,
                        spilled: true,
                    },
                };
                // Its extent is freed at the turn's end, unless a call reading the object
                // takes it first.
                let invocation = self.left(id, spill.extent, place)?;
                self.shadows.insert(id, spill.extent);
                self.spills_total += 1;
                Some(Spilled::Moved {
                    object: id,
                    invocation,
                    us,
                })
            }
        }
    }

    /// A spill file could not be written: counted, and said once per cause (a full disk would
    /// otherwise say so for every object).
    fn spill_failed(&mut self, err: &RemoteIoError) {
        self.spill_failures_total += 1;
        let cause = match err {
            RemoteIoError::File { cause, .. } => cause.to_string(),
            other => other.to_string(),
        };
        if self.spill_failures_said.insert(cause.clone()) {
            tracing::warn!(
                dir = %self.spill_dir.path().display(),
                cause = %cause,
                "cannot write spill files: objects over their workflow's quota stay in memory; free or fix the \
                 spill directory (said once per cause; counted in faasflow_spill_failures_total)"
            );
        }
    }

    /// How a report shows object `id`'s bytes: here, or to be read.
    pub(crate) fn shown(&self, id: u64, len: u64, arena: &Arena) -> Shown {
        match self.map.get(&id).map(|o| &o.place) {
            Some(Place::Arena(e)) => Shown::Bytes(arena.read(*e, len)),
            Some(Place::Empty) => Shown::Bytes(Some(Vec::new())),
            Some(Place::Spilled(p)) => Shown::Read(Source::File(p.clone())),
            Some(Place::Remote { key, .. }) => Shown::Read(Source::Key(key.clone())),
            Some(Place::Pending) | None => Shown::Bytes(None),
        }
    }

    /// Ids of the objects of `invocation` the engine has not released.
    pub(crate) fn unreleased_of(&self, invocation: InvocationId) -> Vec<u64> {
        self.map
            .iter()
            .filter(|(_, o)| o.invocation == invocation && !o.released)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Forgets the objects of `invocation` still arriving (their bytes will be refused).
    pub(crate) fn forget_arriving(&mut self, invocation: InvocationId) {
        self.map
            .retain(|_, o| !(o.invocation == invocation && matches!(o.place, Place::Pending)));
    }

    /// Objects of invocations not running here (`running` says which are) older than `ttl`.
    pub(crate) fn strays(
        &self,
        running: impl Fn(InvocationId) -> bool,
        now: Instant,
        ttl: std::time::Duration,
    ) -> Vec<u64> {
        self.map
            .iter()
            // Held: a result its entry keeps (`kept.rs`), or one its report waits on. Being
            // written (an input put before its invocation, `peers/put.rs`): swept once whole.
            .filter(|(_, o)| {
                !o.held && o.io == 0 && !running(o.invocation) && now.saturating_duration_since(o.born) >= ttl
            })
            .map(|(id, _)| *id)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, mpsc};
    use std::time::Duration;

    use super::*;
    use crate::remote::{Done, RemoteEvent, RemoteIo};

    /// An arena of 1 MiB with one segment, objects spilling into a directory of their own, and
    /// a storage driver whose events come back on a channel.
    struct Fixture {
        arena: Arena,
        segment: u32,
        objects: Objects,
        io: Io,
        events: mpsc::Receiver<RemoteEvent>,
        wf: WfKey,
        _dir: tempdir::Dir,
    }

    mod tempdir {
        /// A directory removed when dropped.
        pub(super) struct Dir(pub(super) std::path::PathBuf);

        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    const KIB: u64 = 1 << 10;

    fn fixture(name: &str) -> Fixture {
        let dir = std::env::temp_dir().join(format!("faasflow-objects-test-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut arena = Arena::create("objects-test", 1 << 20).unwrap();
        let segment = arena.add_segment("wf@1").unwrap();
        let objects = Objects::new(&mut arena, SpillDir::create(&dir, "test").unwrap());
        let (tx, events) = mpsc::channel();
        let tx = std::sync::Mutex::new(tx);
        let post = Arc::new(move |e| {
            let _ = tx.lock().unwrap().send(e);
        });
        let io = Io::new(RemoteIo::start(None, post).unwrap());
        Fixture {
            arena,
            segment,
            objects,
            io,
            events,
            wf: Arc::new(("wf".into(), 1)),
            _dir: tempdir::Dir(dir),
        }
    }

    impl Fixture {
        /// A sealed object of `len` bytes of `fill`, resident in the arena.
        fn object(&mut self, len: u64, fill: u8) -> u64 {
            let e = self.arena.alloc(self.segment, len).unwrap();
            assert!(self.arena.write(e, 0, &vec![fill; len as usize]));
            let id = self.objects.new_id();
            let o = Object::new(Place::Arena(e), len, self.wf.clone(), 7, "f".into(), 1, Instant::now());
            self.objects.insert(id, o);
            self.objects.add_resident(&self.wf, e.len);
            id
        }

        /// The next storage event: it must be a spill's, and is handed to the objects.
        fn spill_event(&mut self, in_use: impl Fn(u64) -> bool) -> Option<Spilled> {
            let e = self
                .events
                .recv_timeout(Duration::from_secs(10))
                .expect("a storage event");
            assert_eq!(self.io.finished(e.token), Some(Part::Spill));
            let Done::Stored(result) = e.result else {
                panic!("a spill writes");
            };
            self.objects
                .spill_done(e.token, result, e.us, &mut self.arena, &mut self.io, in_use)
        }

        fn alloc(&mut self, len: u64, held: &[u64]) -> Result<Extent, ArenaFull> {
            let held: HashSet<u64> = held.iter().copied().collect();
            self.objects
                .alloc_or_spill(&mut self.arena, self.segment, len, || held, &mut self.io, "w")
        }
    }

    #[test]
    fn a_full_arena_spills_the_largest_unheld_object_and_frees_it_only_once_written() {
        let mut f = fixture("largest");
        let big = f.object(512 * KIB, b'b');
        let small = f.object(256 * KIB, b's');
        let held = f.object(256 * KIB, b'h');
        let used = f.arena.used();
        // 256 KiB more: the largest object not held goes, and only it.
        assert!(
            f.alloc(256 * KIB, &[held]).is_err(),
            "the extent comes once the spill is written"
        );
        assert!(f.objects.spilling());
        assert_eq!(f.objects.get(big).unwrap().io, 1);
        assert_eq!(f.objects.get(small).unwrap().io, 0);
        assert_eq!(f.objects.get(held).unwrap().io, 0);
        assert_eq!(f.arena.used(), used, "nothing is freed before the write is through");
        // Another request meanwhile counts the bytes already on their way out.
        assert!(f.alloc(256 * KIB, &[held]).is_err());
        assert_eq!(f.objects.get(small).unwrap().io, 0, "no second spill for the same room");
        let moved = f.spill_event(|_| false);
        assert!(matches!(moved, Some(Spilled::Moved { object, invocation: 7, .. }) if object == big));
        assert!(!f.objects.spilling());
        let Place::Spilled(path) = &f.objects.get(big).unwrap().place else {
            panic!("it is in a spill file");
        };
        assert_eq!(std::fs::read(path).unwrap(), vec![b'b'; 512 * KIB as usize]);
        assert_eq!(f.objects.resident(&f.wf), 512 * KIB);
        assert_eq!(f.objects.spills_total(), 1);
        assert!(f.alloc(256 * KIB, &[held]).is_ok(), "room now");
    }

    #[test]
    fn a_spill_read_meanwhile_stays_in_the_arena_and_its_copy_goes() {
        let mut f = fixture("read");
        let a = f.object(768 * KIB, b'a');
        assert!(f.alloc(512 * KIB, &[]).is_err());
        let used = f.arena.used();
        assert_eq!(f.spill_event(|id| id == a), Some(Spilled::Stayed { object: a }));
        assert!(matches!(f.objects.get(a).unwrap().place, Place::Arena(_)));
        assert_eq!(f.arena.used(), used);
        assert_eq!(f.objects.get(a).unwrap().io, 0, "it can be chosen again");
        // Its file is removed in the background.
        let file = f.objects.spill_path("spill-1");
        let until = Instant::now() + Duration::from_secs(10);
        while file.exists() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(!file.exists());
    }

    #[test]
    fn an_object_being_written_is_not_freed_until_the_write_is_through() {
        let mut f = fixture("busy");
        let a = f.object(768 * KIB, b'a');
        assert!(f.alloc(512 * KIB, &[]).is_err());
        assert!(f.objects.get(a).unwrap().busy());
        assert!(f.objects.free(a, &mut f.arena, &f.io).is_none());
        assert!(f.objects.get(a).unwrap().released, "freed when the write ends");
        assert!(matches!(f.spill_event(|_| false), Some(Spilled::Moved { .. })));
        assert!(!f.objects.get(a).unwrap().busy());
        assert!(f.objects.free(a, &mut f.arena, &f.io).is_some());
        assert_eq!(f.objects.len(), 0);
        assert_eq!(f.arena.used(), 0);
        assert_eq!(f.objects.resident(&f.wf), 0);
    }

    #[test]
    fn the_extent_a_spill_leaves_holds_its_bytes_until_taken_dropped_or_needed() {
        let mut f = fixture("shadow");
        let other = f.arena.add_segment("wf@2").unwrap();
        let a = f.object(768 * KIB, b'a');
        assert!(f.alloc(512 * KIB, &[]).is_err());
        let used = f.arena.used();
        assert!(matches!(f.spill_event(|_| false), Some(Spilled::Moved { .. })));
        assert!(matches!(f.objects.get(a).unwrap().place, Place::Spilled(_)));
        assert_eq!(f.objects.resident(&f.wf), 0, "no longer counted against the quota");
        assert_eq!(f.arena.used(), used, "the extent stays for this turn");
        // A call of another segment cannot map it; one of the object's can, once.
        assert_eq!(f.objects.take_shadow(a, other), None);
        let e = f.objects.take_shadow(a, f.segment).expect("the shadow");
        assert_eq!(f.arena.read(e, 768 * KIB), Some(vec![b'a'; 768 * KIB as usize]));
        assert_eq!(f.objects.take_shadow(a, f.segment), None);
        assert!(!f.objects.drop_shadows(&mut f.arena), "the taker owns it now");
        assert_eq!(f.arena.used(), used);
        f.arena.free(e);

        // Untaken, it goes at the end of the turn.
        let b = f.object(768 * KIB, b'b');
        assert!(f.alloc(512 * KIB, &[]).is_err());
        assert!(matches!(f.spill_event(|_| false), Some(Spilled::Moved { .. })));
        assert!(f.objects.drop_shadows(&mut f.arena));
        assert_eq!(f.arena.used(), 0);
        assert_eq!(f.objects.take_shadow(b, f.segment), None);

        // Or as soon as the arena needs its room.
        let c = f.object(768 * KIB, b'c');
        assert!(f.alloc(512 * KIB, &[]).is_err());
        assert!(matches!(f.spill_event(|_| false), Some(Spilled::Moved { .. })));
        let room = f.alloc(512 * KIB, &[]).expect("the shadow makes way");
        assert_eq!(f.objects.take_shadow(c, f.segment), None);
        f.arena.free(room);

        // Or when its object is freed.
        let d = f.object(768 * KIB, b'd');
        assert!(f.alloc(512 * KIB, &[]).is_err());
        assert!(matches!(f.spill_event(|_| false), Some(Spilled::Moved { .. })));
        assert!(f.objects.free(d, &mut f.arena, &f.io).is_some());
        assert_eq!(f.arena.used(), 0);
        assert!(!f.objects.drop_shadows(&mut f.arena));
        for id in [a, b, c] {
            assert!(f.objects.free(id, &mut f.arena, &f.io).is_some());
        }
        assert_eq!(f.arena.used(), 0);
    }

    /// The file thread's queue is in order: once a later job's file exists, earlier jobs ran.
    fn wait_for(file: &std::path::Path) {
        let until = Instant::now() + Duration::from_secs(10);
        while !file.exists() {
            assert!(Instant::now() < until, "{} never came", file.display());
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn spill_files_are_created_ahead_and_one_removed_meanwhile_is_made_again() {
        let mut f = fixture("ahead");
        let file = |f: &Fixture, n: u32| f.objects.spill_path(&format!("spill-{n}"));
        let spill = |f: &mut Fixture, fill: u8| {
            let id = f.object(768 * KIB, fill);
            assert!(f.alloc(512 * KIB, &[]).is_err());
            assert!(matches!(f.spill_event(|_| false), Some(Spilled::Moved { .. })));
            f.objects.drop_shadows(&mut f.arena);
            let Place::Spilled(path) = f.objects.get(id).unwrap().place.clone() else {
                panic!("spilled");
            };
            assert_eq!(std::fs::read(&path).unwrap(), vec![fill; 768 * KIB as usize]);
            assert!(f.objects.free(id, &mut f.arena, &f.io).is_some());
            path
        };
        assert_eq!(spill(&mut f, b'a'), file(&f, 1));
        wait_for(&file(&f, 3));
        for n in [2, 3] {
            assert_eq!(
                std::fs::metadata(file(&f, n)).unwrap().len(),
                0,
                "spill-{n} waits, empty"
            );
        }
        assert_eq!(spill(&mut f, b'b'), file(&f, 2), "written into the file made ahead");
        wait_for(&file(&f, 4));
        // Someone removes the next one: the spill makes it again rather than write into a
        // file no one can open.
        std::fs::remove_file(file(&f, 3)).unwrap();
        assert_eq!(spill(&mut f, b'c'), file(&f, 3));
    }

    #[test]
    fn nothing_is_spilled_when_spilling_all_that_may_move_would_not_make_room() {
        let mut f = fixture("hopeless");
        let a = f.object(256 * KIB, b'a');
        let held = f.object(768 * KIB, b'h');
        assert!(f.alloc(512 * KIB, &[held]).is_err());
        assert!(!f.objects.spilling());
        assert_eq!(f.objects.get(a).unwrap().io, 0);
        // More than the arena holds: never.
        assert!(f.alloc(2 << 20, &[]).is_err());
        assert!(!f.objects.spilling());
    }
}
