//! [`Context`]: what one call of a function sees: its parameters, its inputs (read in place in
//! the shared arena) and its outputs (written in place in the arena).
//!
//! # Why the arena may be lent out as `&[u8]` and `&mut [u8]`
//! The arena is memory shared with the daemon (and, through the daemon, other instances), and
//! Rust references to memory another process writes concurrently would be unsound. The
//! protocol rules that out for the bytes this module lends:
//! - **Inputs are sealed objects.** An object is written once by its producer, sealed, and
//!   only then named in an `Invoke`. The daemon never writes or frees an object while a call
//!   that received it is running (it frees inputs after the call's `Complete`), and nobody
//!   else writes sealed objects. So for the whole call an input's bytes do not change: a
//!   shared `&[u8]` over them is sound. The slices live no longer than the [`Context`]'s
//!   lifetime `'a`, which ends when the function returns, before the `Complete` is pushed.
//! - **Output extents belong to the call.** An extent reserved in the `Invoke`, or granted in
//!   answer to an `Alloc`, is handed to this call alone; the daemon neither reads nor writes it
//!   nor gives it to anyone else until the call's `Complete` (pushed after the function
//!   returned). Each output is lent as `&mut [u8]` once, and it is checked not to overlap any
//!   input or any other output of the call, so the `&mut` is unique in this process too.
//!
//! What is not trusted: every [`ObjectRef`] the daemon sends is checked before use (segment,
//! bounds in the mapping, outputs not overlapping anything else the call holds). A bad one is a *protocol violation*: the access returns an error and
//! the call fails with that message even if the function ignores the error. It never panics
//! and never reads or writes outside the mapping.

use std::fmt;
use std::ops::Range;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use faasflow_shm::Region;
use faasflow_shm::frame::{MAX_NAME, MAX_NAMES, ObjectRef, Value};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;

/// The mapped arena of an instance: where objects are.
pub(crate) struct Arena {
    region: Arc<Region>,
    segment: u32,
}

impl Arena {
    pub(crate) fn new(region: Arc<Region>, segment: u32) -> Arena {
        Arena { region, segment }
    }

    /// Makes the arena inaccessible to this process (see [`Region::revoke`]).
    ///
    /// # Safety
    /// As [`Region::revoke`]: nothing in this process may read or write the arena afterwards.
    pub(crate) unsafe fn revoke(&self) -> std::io::Result<()> {
        // SAFETY: passed on to the caller.
        unsafe { self.region.revoke() }
    }

    /// Checks `r` against the arena and returns a pointer to its first byte.
    pub(crate) fn check(&self, r: &ObjectRef) -> Result<*mut u8, BadRef> {
        if r.len == 0 {
            // Empty: no byte is read or written, wherever it says it is.
            return Ok(self.region.as_ptr());
        }
        if r.segment != self.segment {
            return Err(BadRef::OtherSegment {
                segment: r.segment,
                ours: self.segment,
            });
        }
        let ptr = self
            .region
            .range_ptr(r.offset, r.len)
            .ok_or_else(|| BadRef::OutsideArena {
                offset: r.offset,
                len: r.len,
                arena: self.region.len() as u64,
            })?;
        Ok(ptr)
    }
}

/// An object reference from the daemon that does not fit this instance's arena: a protocol
/// violation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BadRef {
    #[error("object in segment {segment}, this instance's arena is segment {ours}")]
    OtherSegment { segment: u32, ours: u32 },
    #[error("object at offset {offset} of {len} bytes is outside the {arena}-byte arena")]
    OutsideArena { offset: u64, len: u64, arena: u64 },
}

/// Why the daemon gave no room for an output.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AllocError {
    /// The daemon (or the test arena) refused, and said why.
    #[error("{0}")]
    Refused(String),
    /// The call already waits for a grant.
    #[error("call {0} already waits for a grant")]
    AlreadyWaiting(u64),
    /// The request could not be sent, or the daemon went away while it waited.
    #[error("{0}")]
    Unsent(#[from] SendError),
}

/// Why a frame could not be sent to the daemon.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SendError {
    #[error("the daemon is gone")]
    Gone,
    /// The frame cannot be encoded or does not fit the ring.
    #[error("{0}")]
    Unsendable(String),
    /// The ring broke the protocol.
    #[error("{0}")]
    Ring(String),
}

fn span(r: &ObjectRef) -> Range<u64> {
    r.offset..r.offset.saturating_add(r.len)
}

fn overlap(a: &Range<u64>, b: &Range<u64>) -> bool {
    a.start < b.end && b.start < a.end
}

/// Asks the daemon for room for an output that was not reserved, or does not fit.
pub(crate) trait Grants: Sync {
    /// `len` bytes for output `name` of call `call`: the extent, or why there is none.
    fn alloc(&self, call: u64, name: &str, len: u64) -> Result<ObjectRef, AllocError>;

    /// Fails call `call` with `message` and ends the instance's process without returning.
    fn abandon(&self, call: u64, exec_ns: u64, message: String) -> !;
}

/// One call of a function: its parameters and inputs, and where its outputs go.
///
/// A function gets `&mut Context<'_>` and returns `Ok(())` once it has written its outputs:
/// ```
/// use faasflow_sdk::{Context, Error};
///
/// /// Reverses the bytes of input `in` into output `out`.
/// fn reverse(ctx: &mut Context<'_>) -> Result<(), Error> {
///     let input = ctx.input("in")?; // borrowed from the arena, not copied
///     ctx.output_with("out", input.len(), |buf| {
///         for (o, i) in buf.iter_mut().zip(input.iter().rev()) {
///             *o = *i;
///         }
///     })
/// }
///
/// // Unit tests run it against an in-process arena:
/// let outcome = faasflow_sdk::testing::TestCall::new("reverse").input("in", "abc").run(reverse)?;
/// assert_eq!(outcome.output("out"), Some(&b"cba"[..]));
/// # Ok::<(), Error>(())
/// ```
///
/// # Zero copy over shared memory
/// Inputs are lent as `&[u8]` straight from the daemon's arena: they are sealed objects, which
/// nobody writes while a call holds them. Outputs are lent as `&mut [u8]` over an extent the
/// daemon reserved or granted to this call alone until the call completes. Every object
/// reference from the daemon is checked (bounds, segment, overlaps) before a slice is made; a
/// bad one fails the call as a *protocol violation*.
pub struct Context<'a> {
    function: &'a str,
    call: u64,
    params: &'a [u8],
    inputs: &'a [(String, Value)],
    reserved: &'a [(String, ObjectRef)],
    arena: &'a Arena,
    grants: &'a dyn Grants,
    pub(crate) started: Instant,
    written: Vec<(String, ObjectRef)>,
    /// The first protocol violation seen; it fails the call.
    violation: OnceLock<String>,
}

impl fmt::Debug for Context<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("function", &self.function)
            .field("call", &self.call)
            .field("inputs", &self.inputs)
            .field("reserved", &self.reserved)
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

/// What a call left behind: the outputs it wrote and the protocol violation that fails it.
pub(crate) struct Finished {
    pub(crate) written: Vec<(String, ObjectRef)>,
    pub(crate) violation: Option<String>,
}

/// The call's static parts, owned by whoever runs it.
pub(crate) struct CallSpec<'a> {
    pub(crate) function: &'a str,
    pub(crate) call: u64,
    pub(crate) params: &'a [u8],
    pub(crate) inputs: &'a [(String, Value)],
    pub(crate) reserved: &'a [(String, ObjectRef)],
}

impl<'a> Context<'a> {
    pub(crate) fn new(spec: CallSpec<'a>, arena: &'a Arena, grants: &'a dyn Grants, started: Instant) -> Context<'a> {
        Context {
            function: spec.function,
            call: spec.call,
            params: spec.params,
            inputs: spec.inputs,
            reserved: spec.reserved,
            arena,
            grants,
            started,
            written: Vec::new(),
            violation: OnceLock::new(),
        }
    }

    pub(crate) fn finish(self) -> Finished {
        Finished {
            written: self.written,
            violation: self.violation.into_inner(),
        }
    }

    /// Records a protocol violation (the call will fail) and returns it as an error.
    fn violate(&self, message: String) -> Error {
        let message = format!("protocol violation: {message}");
        let _ = self.violation.set(message.clone());
        Error::from(message)
    }

    /// The name of the function being called.
    /// ```
    /// # use faasflow_sdk::testing::TestCall;
    /// TestCall::new("greet").run(|ctx| {
    ///     assert_eq!(ctx.function(), "greet");
    ///     Ok(())
    /// })?;
    /// # Ok::<(), faasflow_sdk::Error>(())
    /// ```
    pub fn function(&self) -> &'a str {
        self.function
    }

    /// The call's id, unique among the calls of this instance's daemon (for logs).
    /// ```
    /// # use faasflow_sdk::testing::TestCall;
    /// TestCall::new("f").call_id(7).run(|ctx| {
    ///     assert_eq!(ctx.call(), 7);
    ///     Ok(())
    /// })?;
    /// # Ok::<(), faasflow_sdk::Error>(())
    /// ```
    pub fn call(&self) -> u64 {
        self.call
    }

    /// The call site's static parameters (opaque bytes; often JSON, see
    /// [`params_json`](Self::params_json)). Empty when there are none.
    /// ```
    /// # use faasflow_sdk::testing::TestCall;
    /// TestCall::new("f").params("fast").run(|ctx| {
    ///     assert_eq!(ctx.params(), b"fast");
    ///     Ok(())
    /// })?;
    /// # Ok::<(), faasflow_sdk::Error>(())
    /// ```
    pub fn params(&self) -> &'a [u8] {
        self.params
    }

    /// The parameters parsed as JSON into `T`.
    /// ```
    /// # use faasflow_sdk::testing::TestCall;
    /// #[derive(serde::Deserialize)]
    /// struct Params {
    ///     width: u32,
    /// }
    /// TestCall::new("resize").params(r#"{"width": 640}"#).run(|ctx| {
    ///     let p: Params = ctx.params_json()?;
    ///     assert_eq!(p.width, 640);
    ///     Ok(())
    /// })?;
    /// # Ok::<(), faasflow_sdk::Error>(())
    /// ```
    pub fn params_json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(self.params).map_err(|e| {
            Error::new(format_args!(
                "the parameters of `{}` are not valid JSON for {}: {e}",
                self.function,
                std::any::type_name::<T>()
            ))
        })
    }

    /// The names of the call's inputs, in the order the daemon sent them.
    /// ```
    /// # use faasflow_sdk::testing::TestCall;
    /// TestCall::new("f").input("a", "1").input_absent("b").run(|ctx| {
    ///     assert_eq!(ctx.input_names().collect::<Vec<_>>(), ["a", "b"]);
    ///     Ok(())
    /// })?;
    /// # Ok::<(), faasflow_sdk::Error>(())
    /// ```
    pub fn input_names(&self) -> impl Iterator<Item = &'a str> + use<'a> {
        self.inputs.iter().map(|(n, _)| n.as_str())
    }

    fn value(&self, name: &str) -> Result<&'a Value, Error> {
        match self.inputs.iter().find(|(n, _)| n == name) {
            Some((_, v)) => Ok(v),
            None if self.inputs.is_empty() => Err(Error::new(format_args!(
                "`{}` has no input `{name}`: this call has no inputs",
                self.function
            ))),
            None => Err(Error::new(format_args!(
                "`{}` has no input `{name}`; its inputs are: {}",
                self.function,
                self.input_names().collect::<Vec<_>>().join(", ")
            ))),
        }
    }

    fn object(&self, name: &str, r: &ObjectRef) -> Result<&'a [u8], Error> {
        let ptr = self
            .arena
            .check(r)
            .map_err(|why| self.violate(format!("input `{name}`: {why}")))?;
        // SAFETY: `check` proved `r.offset..r.offset + r.len` lies inside the arena's mapping
        // (so `r.len` fits a usize and the pointer is non-null and valid for `r.len` bytes),
        // which `self.arena` keeps mapped for `'a`. The object is sealed: by the protocol
        // nobody writes it while this call runs, and `'a` ends before the call's `Complete`
        // (see the module docs). Output buffers are checked not to overlap it.
        Ok(unsafe { std::slice::from_raw_parts(ptr, r.len as usize) })
    }

    /// Input `name`: one object, borrowed from the arena without copying.
    ///
    /// Fails when the call has no input `name` (the message lists those it has), when the
    /// input is absent (every step producing it was skipped by a switch: see
    /// [`input_opt`](Self::input_opt)) or when it is a list (see [`inputs`](Self::inputs)).
    /// ```
    /// # use faasflow_sdk::testing::TestCall;
    /// TestCall::new("f").input("text", "hello").run(|ctx| {
    ///     assert_eq!(ctx.input("text")?, b"hello");
    ///     let err = ctx.input("txt").unwrap_err();
    ///     assert_eq!(err.message(), "`f` has no input `txt`; its inputs are: text");
    ///     Ok(())
    /// })?;
    /// # Ok::<(), faasflow_sdk::Error>(())
    /// ```
    pub fn input(&self, name: &str) -> Result<&'a [u8], Error> {
        match self.value(name)? {
            Value::One(r) => self.object(name, r),
            Value::Absent => Err(Error::new(format_args!(
                "input `{name}` is absent: every step that produces it was skipped by a switch \
                 (read it with `input_opt` to accept that)"
            ))),
            Value::List(l) => Err(Error::new(format_args!(
                "input `{name}` is a list of {} objects (the outputs of a foreach): read it with `inputs`",
                l.len()
            ))),
            Value::Prior(_) => Err(unbound(name)),
        }
    }

    /// Input `name`, or `None` when it is absent (its producers were skipped by a switch).
    /// ```
    /// # use faasflow_sdk::testing::TestCall;
    /// TestCall::new("f").input("a", "x").input_absent("b").run(|ctx| {
    ///     assert_eq!(ctx.input_opt("a")?, Some(&b"x"[..]));
    ///     assert_eq!(ctx.input_opt("b")?, None);
    ///     Ok(())
    /// })?;
    /// # Ok::<(), faasflow_sdk::Error>(())
    /// ```
    pub fn input_opt(&self, name: &str) -> Result<Option<&'a [u8]>, Error> {
        match self.value(name)? {
            Value::Absent => Ok(None),
            _ => self.input(name).map(Some),
        }
    }

    /// Input `name` as a list of objects, each borrowed from the arena: the element outputs
    /// of a foreach in element order, a single object as a list of one, an absent input as
    /// an empty list.
    /// ```
    /// # use faasflow_sdk::testing::TestCall;
    /// TestCall::new("f").input_list("parts", ["a", "bc"]).input("one", "d").run(|ctx| {
    ///     assert_eq!(ctx.inputs("parts")?, [b"a".as_slice(), b"bc"]);
    ///     assert_eq!(ctx.inputs("one")?, [b"d"]);
    ///     Ok(())
    /// })?;
    /// # Ok::<(), faasflow_sdk::Error>(())
    /// ```
    pub fn inputs(&self, name: &str) -> Result<Vec<&'a [u8]>, Error> {
        match self.value(name)? {
            Value::Absent => Ok(Vec::new()),
            Value::One(r) => Ok(vec![self.object(name, r)?]),
            Value::List(l) => l.iter().map(|r| self.object(name, r)).collect(),
            Value::Prior(_) => Err(unbound(name)),
        }
    }

    /// Input `name` (one object) parsed as JSON into `T`.
    /// ```
    /// # use faasflow_sdk::testing::TestCall;
    /// TestCall::new("f").input("n", "[1, 2, 3]").run(|ctx| {
    ///     let n: Vec<u32> = ctx.input_json("n")?;
    ///     assert_eq!(n, [1, 2, 3]);
    ///     Ok(())
    /// })?;
    /// # Ok::<(), faasflow_sdk::Error>(())
    /// ```
    pub fn input_json<T: DeserializeOwned>(&self, name: &str) -> Result<T, Error> {
        serde_json::from_slice(self.input(name)?).map_err(|e| {
            Error::new(format_args!(
                "input `{name}` is not valid JSON for {}: {e}",
                std::any::type_name::<T>()
            ))
        })
    }

    /// The outputs the daemon reserved room for, with the room in bytes: an output that fits
    /// its reservation is written without asking the daemon.
    /// ```
    /// # use faasflow_sdk::testing::TestCall;
    /// TestCall::new("f").reserve("out", 64).run(|ctx| {
    ///     assert_eq!(ctx.output_reservations().collect::<Vec<_>>(), [("out", 64)]);
    ///     Ok(())
    /// })?;
    /// # Ok::<(), faasflow_sdk::Error>(())
    /// ```
    pub fn output_reservations(&self) -> impl Iterator<Item = (&'a str, usize)> + use<'a> {
        self.reserved
            .iter()
            .map(|(n, r)| (n.as_str(), usize::try_from(r.len).unwrap_or(usize::MAX)))
    }

    /// Writes output `name`: `bytes` are copied once, straight into the arena.
    ///
    /// Fails when the output was already written, or when it needed room beyond its
    /// reservation and the daemon had none.
    /// ```
    /// # use faasflow_sdk::testing::TestCall;
    /// let outcome = TestCall::new("f").run(|ctx| {
    ///     ctx.output("greeting", b"hello")?;
    ///     assert!(ctx.output("greeting", b"again").is_err(), "each output is written once");
    ///     Ok(())
    /// })?;
    /// assert_eq!(outcome.output("greeting"), Some(&b"hello"[..]));
    /// # Ok::<(), faasflow_sdk::Error>(())
    /// ```
    pub fn output(&mut self, name: &str, bytes: &[u8]) -> Result<(), Error> {
        self.output_with(name, bytes.len(), |buf| buf.copy_from_slice(bytes))
    }

    /// Writes output `name` in place: `fill` gets the `len`-byte arena buffer of the output
    /// to fill (it starts with unspecified contents), so a large output is never built
    /// twice. Returns what `fill` returns; the output counts as written once `fill` returns.
    /// ```
    /// # use faasflow_sdk::testing::TestCall;
    /// let outcome = TestCall::new("f").run(|ctx| {
    ///     ctx.output_with("squares", 4, |buf| {
    ///         for (i, b) in buf.iter_mut().enumerate() {
    ///             *b = (i * i) as u8;
    ///         }
    ///     })
    /// })?;
    /// assert_eq!(outcome.output("squares"), Some(&[0, 1, 4, 9][..]));
    /// # Ok::<(), faasflow_sdk::Error>(())
    /// ```
    pub fn output_with<R>(&mut self, name: &str, len: usize, fill: impl FnOnce(&mut [u8]) -> R) -> Result<R, Error> {
        let (extent, ptr) = self.extent(name, len)?;
        // SAFETY: `extent` checked `ptr..ptr + len` lies inside the arena's mapping, kept
        // mapped by `self.arena` for `'a`, and does not overlap any input or earlier output
        // of this call. The extent was reserved or granted to this call alone: nobody else
        // reads or writes it until the call's `Complete`, which is pushed after the function
        // (and so this borrow) ended; and this is the only buffer lent for output `name`,
        // which cannot be written twice. So the `&mut` is unique for its lifetime.
        let buf = unsafe { std::slice::from_raw_parts_mut(ptr, len) };
        let r = fill(buf);
        self.written.push((name.to_owned(), extent));
        Ok(r)
    }

    /// Writes output `name` as the JSON encoding of `value`.
    /// ```
    /// # use faasflow_sdk::testing::TestCall;
    /// let outcome = TestCall::new("f").run(|ctx| ctx.output_json("counts", &serde_json::json!({"a": 2})))?;
    /// assert_eq!(outcome.output("counts"), Some(&br#"{"a":2}"#[..]));
    /// # Ok::<(), faasflow_sdk::Error>(())
    /// ```
    pub fn output_json<T: Serialize + ?Sized>(&mut self, name: &str, value: &T) -> Result<(), Error> {
        let bytes = serde_json::to_vec(value)
            .map_err(|e| Error::new(format_args!("output `{name}` cannot be encoded as JSON: {e}")))?;
        self.output(name, &bytes)
    }

    /// Fails this call with `message` and ends the instance's process at once: this does not
    /// return, no other call of the instance completes, and the daemon starts another
    /// instance.
    ///
    /// This is for the runtimes of other languages built on this crate (the Python package),
    /// which cannot always show that nothing refers to a call's arena memory after the call:
    /// a view of an input kept by the function would read memory the daemon reuses. The arena
    /// is made inaccessible to this process first (any access faults), then the failure is sent
    /// and the process ends, so nothing reads or writes the call's memory after the daemon
    /// frees it. Functions in
    /// Rust do not need it: the borrow checker ends their borrows with the call. In a
    /// [`testing::TestCall`](crate::testing::TestCall) it panics with `message`.
    #[doc(hidden)]
    pub fn abandon_instance(&mut self, message: &str) -> ! {
        let exec_ns = u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.grants.abandon(self.call, exec_ns, message.to_owned())
    }

    /// The arena extent output `name` of `len` bytes goes to: its reservation when it fits,
    /// else a grant from the daemon. Checked against the arena and against everything else
    /// this call holds.
    fn extent(&mut self, name: &str, len: usize) -> Result<(ObjectRef, *mut u8), Error> {
        if self.written.iter().any(|(n, _)| n == name) {
            return Err(Error::new(format_args!(
                "output `{name}` was already written; each output is written once"
            )));
        }
        if name.is_empty() || name.len() > MAX_NAME {
            return Err(Error::new(format_args!(
                "output name `{name}` must have 1 to {MAX_NAME} bytes"
            )));
        }
        if self.written.len() >= MAX_NAMES {
            return Err(Error::new(format_args!("a call writes at most {MAX_NAMES} outputs")));
        }
        let len64 = len as u64;
        let extent = match self.reserved.iter().find(|(n, _)| n == name) {
            Some((_, r)) if len64 <= r.len => ObjectRef { len: len64, ..*r },
            _ => match self.grants.alloc(self.call, name, len64) {
                Ok(g) if g.len >= len64 => ObjectRef { len: len64, ..g },
                Ok(g) => {
                    return Err(self.violate(format!(
                        "output `{name}`: the daemon granted {} bytes for {len} asked",
                        g.len
                    )));
                }
                Err(why) => return Err(Error::new(format_args!("output `{name}` ({len} bytes): {why}"))),
            },
        };
        let ptr = self
            .arena
            .check(&extent)
            .map_err(|why| self.violate(format!("output `{name}`: {why}")))?;
        if let Some(other) = self.overlapping(&extent) {
            return Err(self.violate(format!(
                "output `{name}` at offset {} of {len} bytes overlaps {other}",
                extent.offset
            )));
        }
        Ok((extent, ptr))
    }

    /// What `extent` overlaps among the call's inputs and written outputs, if anything.
    fn overlapping(&self, extent: &ObjectRef) -> Option<String> {
        if extent.len == 0 {
            return None;
        }
        let mine = span(extent);
        let hits = |r: &ObjectRef| r.segment == extent.segment && r.len > 0 && overlap(&mine, &span(r));
        for (name, v) in self.inputs {
            let hit = match v {
                Value::Absent | Value::Prior(_) => false,
                Value::One(r) => hits(r),
                Value::List(l) => l.iter().any(hits),
            };
            if hit {
                return Some(format!("input `{name}`"));
            }
        }
        self.written
            .iter()
            .find(|(_, r)| hits(r))
            .map(|(name, _)| format!("output `{name}`"))
    }
}

/// Input `name` names an output of a call this one did not follow (the daemon broke the
/// protocol: such inputs are bound before the call runs).
fn unbound(name: &str) -> Error {
    Error::new(format_args!(
        "input `{name}` was never bound to the output it names (protocol violation by the daemon)"
    ))
}
