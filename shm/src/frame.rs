//! Control frames carried by the rings. Objects themselves stay in the arena; frames carry
//! references to them.
//!
//! | frame | direction | meaning |
//! |---|---|---|
//! | [`Invoke`] | daemon → instance | run one call of a function |
//! | [`Grant`] | daemon → instance | the answer to an [`Alloc`] |
//! | [`Complete`] | instance → daemon | a call ended (ok, failed or panicked) |
//! | [`Alloc`] | instance → daemon | a call needs an arena extent for an output |
//!
//! Encoding (little-endian, no padding; `str8` = len u8 + UTF-8 bytes, `str16` = len u16 +
//! UTF-8 bytes, `bytes16` = len u16 + bytes):
//! ```text
//! Invoke:   kind=1 u8 | call u64 | after u64 | function u32 | params bytes16
//!           | n_in u16 | n_in × (name str8 | value) | n_out u16 | n_out × (name str8 | ObjectRef)
//! value:    tag=0 (absent) | tag=1 ObjectRef | tag=2 n u16 | n × ObjectRef | tag=3 output str8
//! Complete: kind=2 u8 | call u64 | status u8 | exec_ns u64 | ended_ns u64 | message str16
//!           | n_out u16 | n_out × (name str8 | ObjectRef)
//! Alloc:    kind=3 u8 | call u64 | name str8 | len u64
//! Grant:    kind=4 u8 | call u64 | tag=0 ObjectRef  or  tag=1 message str16
//! ObjectRef: segment u32 | offset u64 | len u64               (20 bytes)
//! ```
//! Every frame has exactly one encoding. [`Frame::decode`] treats its input as untrusted:
//! every malformed input gives a [`DecodeError`], it never panics, and it allocates only after
//! checking that the bytes announced are present (at most [`MAX_REFS`] references,
//! [`MAX_NAMES`] names, [`MAX_TEXT`] bytes of text per field).

/// Most object references one frame may carry, inputs and outputs together.
pub const MAX_REFS: usize = 4096;
/// Most named inputs, or named outputs, of one frame.
pub const MAX_NAMES: usize = 256;
/// Longest message or parameter block, in bytes.
pub const MAX_TEXT: usize = 8192;
/// Longest input or output name, in bytes.
pub const MAX_NAME: usize = 255;
const REF_LEN: usize = 20;
const KIND_INVOKE: u8 = 1;
const KIND_COMPLETE: u8 = 2;
const KIND_ALLOC: u8 = 3;
const KIND_GRANT: u8 = 4;

/// `CLOCK_MONOTONIC` now, ns: the clock [`Complete::ended_ns`] is read on (the one
/// `std::time::Instant` reads on Linux), common to the processes of one host.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// Where an object lives in the shared arena.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ObjectRef {
    /// Arena segment.
    pub segment: u32,
    /// Byte offset in the segment.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
}

/// The value of one named input of a call.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Value {
    /// Every source of the input was skipped (a switch did not take its branch).
    Absent,
    /// One object.
    One(ObjectRef),
    /// The outputs of a foreach body, in element order.
    List(Vec<ObjectRef>),
    /// Output `name` of the call this one follows ([`Invoke::after`]), bound by the instance
    /// when that call ends.
    Prior(String),
}

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// The function returned its outputs.
    Ok,
    /// The function returned an error (the message says which).
    Failed,
    /// The function panicked (the message holds the panic's payload).
    Panicked,
    /// A call to run after another ([`Invoke::after`]) that the instance did not run: the call
    /// it follows had already ended when it arrived. The daemon sends it again as a plain call.
    Declined,
}

/// Daemon → instance: run one call of a function.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Invoke {
    /// The call's id, chosen by the daemon; echoed in [`Alloc`] and [`Complete`].
    pub call: u64,
    /// 0: run now. Otherwise the call this one follows: the instance runs it on the thread
    /// that ran call `after`, right after it, when that call succeeds with every output it
    /// was reserved written (its [`Value::Prior`] inputs are those outputs), and does not run
    /// it otherwise. One that arrives after call `after` ended is run at once when it succeeded
    /// that way and the instance still knows its outputs, else answered
    /// [`Status::Declined`]. The daemon learns it started from the completion of call `after`.
    pub after: u64,
    /// Index of the function in the list the instance announced at its handshake.
    pub function: u32,
    /// Static parameters of the call site (e.g. a synthetic body's runtime), opaque here.
    pub params: Vec<u8>,
    /// Inputs by name.
    pub inputs: Vec<(String, Value)>,
    /// Extents reserved for outputs by name (their `len` is the room reserved); the function
    /// writes an output there when it fits and asks with [`Alloc`] otherwise.
    pub outputs: Vec<(String, ObjectRef)>,
}

/// Instance → daemon: a call ended.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Complete {
    /// The call, as in the [`Invoke`].
    pub call: u64,
    /// Outcome.
    pub status: Status,
    /// Time the function ran, measured in the instance.
    pub exec_ns: u64,
    /// When it ended: `CLOCK_MONOTONIC` in the instance, ns ([`monotonic_ns`]); the daemon,
    /// on the same host, reads the same clock. A call that follows it starts then.
    pub ended_ns: u64,
    /// Why it failed (empty when it did not).
    pub message: String,
    /// Outputs written, by name: each is a prefix of an extent the daemon reserved or
    /// granted for this call.
    pub outputs: Vec<(String, ObjectRef)>,
}

/// Instance → daemon: call `call` needs `len` bytes of arena for output `name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Alloc {
    /// The call.
    pub call: u64,
    /// The output's name.
    pub name: String,
    /// Bytes needed.
    pub len: u64,
}

/// Daemon → instance: the answer to an [`Alloc`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Grant {
    /// The call.
    pub call: u64,
    /// The extent, or why there is none (e.g. the arena is full).
    pub result: Result<ObjectRef, Refusal>,
}

/// Why the daemon granted no extent, in its words (the text crosses the ring as it is).
#[derive(Debug, Clone, PartialEq, Eq, Hash, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

/// A control frame.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Frame {
    /// See [`Invoke`].
    Invoke(Invoke),
    /// See [`Complete`].
    Complete(Complete),
    /// See [`Alloc`].
    Alloc(Alloc),
    /// See [`Grant`].
    Grant(Grant),
}

/// A frame could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// More than [`MAX_REFS`] references.
    #[error("{0} object references, at most {MAX_REFS} fit in a frame")]
    TooManyRefs(usize),
    /// More than [`MAX_NAMES`] named inputs or outputs.
    #[error("{0} named values, at most {MAX_NAMES} fit in a frame")]
    TooManyNames(usize),
    /// A name longer than [`MAX_NAME`] bytes.
    #[error("name `{0}` is longer than {MAX_NAME} bytes")]
    NameTooLong(String),
    /// A message or parameter block longer than [`MAX_TEXT`] bytes.
    #[error("{0} bytes of text, at most {MAX_TEXT} fit in a frame")]
    TextTooLong(usize),
}

/// Bytes that are not a valid frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The frame ends before field `field`.
    #[error("frame truncated in {field}")]
    Truncated { field: &'static str },
    /// Unknown frame kind byte.
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    /// Unknown status byte.
    #[error("unknown completion status {0}")]
    UnknownStatus(u8),
    /// Unknown tag of an input value or grant.
    #[error("unknown tag {tag} in {field}")]
    UnknownTag { field: &'static str, tag: u8 },
    /// A name or message is not UTF-8.
    #[error("{field} is not valid UTF-8")]
    NotUtf8 { field: &'static str },
    /// More than [`MAX_REFS`] references.
    #[error("{0} object references announced, at most {MAX_REFS} allowed")]
    TooManyRefs(usize),
    /// More than [`MAX_NAMES`] names.
    #[error("{0} named values announced, at most {MAX_NAMES} allowed")]
    TooManyNames(u16),
    /// A text longer than [`MAX_TEXT`].
    #[error("{0} bytes of text announced, at most {MAX_TEXT} allowed")]
    TextTooLong(u16),
    /// Bytes left after a complete frame.
    #[error("{0} trailing bytes after the frame")]
    TrailingBytes(usize),
}

fn named_len<T>(v: &[(String, T)], len: impl Fn(&T) -> usize) -> usize {
    2 + v.iter().map(|(n, x)| 1 + n.len() + len(x)).sum::<usize>()
}

fn check_names<'a>(mut names: impl Iterator<Item = &'a String>, count: usize) -> Result<(), EncodeError> {
    if count > MAX_NAMES {
        return Err(EncodeError::TooManyNames(count));
    }
    match names.find(|n| n.len() > MAX_NAME) {
        Some(long) => Err(EncodeError::NameTooLong(long.clone())),
        None => Ok(()),
    }
}

fn value_len(v: &Value) -> usize {
    match v {
        Value::Absent => 1,
        Value::One(_) => 1 + REF_LEN,
        Value::List(l) => 1 + 2 + REF_LEN * l.len(),
        Value::Prior(name) => 1 + 1 + name.len(),
    }
}

impl Frame {
    /// Encoded length in bytes.
    pub fn encoded_len(&self) -> usize {
        match self {
            Frame::Invoke(i) => {
                1 + 8
                    + 8
                    + 4
                    + 2
                    + i.params.len()
                    + named_len(&i.inputs, value_len)
                    + named_len(&i.outputs, |_| REF_LEN)
            }
            Frame::Complete(c) => 1 + 8 + 1 + 8 + 8 + 2 + c.message.len() + named_len(&c.outputs, |_| REF_LEN),
            Frame::Alloc(a) => 1 + 8 + 1 + a.name.len() + 8,
            Frame::Grant(g) => {
                1 + 8
                    + 1
                    + match &g.result {
                        Ok(_) => REF_LEN,
                        Err(m) => 2 + m.0.len(),
                    }
            }
        }
    }

    fn check(&self) -> Result<(), EncodeError> {
        let text = |len: usize| {
            if len > MAX_TEXT {
                Err(EncodeError::TextTooLong(len))
            } else {
                Ok(())
            }
        };
        match self {
            Frame::Invoke(i) => {
                check_names(i.inputs.iter().map(|(n, _)| n), i.inputs.len())?;
                let prior = i.inputs.iter().filter_map(|(_, v)| match v {
                    Value::Prior(name) => Some(name),
                    _ => None,
                });
                check_names(prior, 0)?;
                check_names(i.outputs.iter().map(|(n, _)| n), i.outputs.len())?;
                text(i.params.len())?;
                let refs = i.outputs.len()
                    + i.inputs
                        .iter()
                        .map(|(_, v)| match v {
                            Value::Absent | Value::Prior(_) => 0,
                            Value::One(_) => 1,
                            Value::List(l) => l.len(),
                        })
                        .sum::<usize>();
                if refs > MAX_REFS {
                    return Err(EncodeError::TooManyRefs(refs));
                }
            }
            Frame::Complete(c) => {
                check_names(c.outputs.iter().map(|(n, _)| n), c.outputs.len())?;
                text(c.message.len())?;
            }
            Frame::Alloc(a) => check_names(std::iter::once(&a.name), 1)?,
            Frame::Grant(g) => {
                if let Err(m) = &g.result {
                    text(m.0.len())?;
                }
            }
        }
        Ok(())
    }

    /// Appends the encoding to `out`. On error nothing is appended.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        self.check()?;
        out.reserve(self.encoded_len());
        let mut w = Writer(out);
        match self {
            Frame::Invoke(i) => {
                w.u8(KIND_INVOKE);
                w.u64(i.call);
                w.u64(i.after);
                w.u32(i.function);
                w.bytes16(&i.params);
                w.u16(i.inputs.len());
                for (name, v) in &i.inputs {
                    w.str8(name);
                    match v {
                        Value::Absent => w.u8(0),
                        Value::One(r) => {
                            w.u8(1);
                            w.object(r);
                        }
                        Value::List(l) => {
                            w.u8(2);
                            w.u16(l.len());
                            l.iter().for_each(|r| w.object(r));
                        }
                        Value::Prior(name) => {
                            w.u8(3);
                            w.str8(name);
                        }
                    }
                }
                w.named_refs(&i.outputs);
            }
            Frame::Complete(c) => {
                w.u8(KIND_COMPLETE);
                w.u64(c.call);
                w.u8(match c.status {
                    Status::Ok => 0,
                    Status::Failed => 1,
                    Status::Panicked => 2,
                    Status::Declined => 3,
                });
                w.u64(c.exec_ns);
                w.u64(c.ended_ns);
                w.bytes16(c.message.as_bytes());
                w.named_refs(&c.outputs);
            }
            Frame::Alloc(a) => {
                w.u8(KIND_ALLOC);
                w.u64(a.call);
                w.str8(&a.name);
                w.u64(a.len);
            }
            Frame::Grant(g) => {
                w.u8(KIND_GRANT);
                w.u64(g.call);
                match &g.result {
                    Ok(r) => {
                        w.u8(0);
                        w.object(r);
                    }
                    Err(m) => {
                        w.u8(1);
                        w.bytes16(m.0.as_bytes());
                    }
                }
            }
        }
        Ok(())
    }

    /// Decodes one frame that spans all of `bytes` (untrusted).
    pub fn decode(bytes: &[u8]) -> Result<Frame, DecodeError> {
        let mut r = Reader { rest: bytes, refs: 0 };
        let frame = match r.u8("kind")? {
            KIND_INVOKE => {
                let call = r.u64("call")?;
                let after = r.u64("after")?;
                let function = r.u32("function")?;
                let params = r.bytes16("params")?.to_vec();
                let n = r.count("input count")?;
                let mut inputs = Vec::with_capacity(n.min(r.rest.len() / 2));
                for _ in 0..n {
                    let name = r.str8("input name")?;
                    let value = match r.u8("input tag")? {
                        0 => Value::Absent,
                        1 => {
                            r.charge(1)?;
                            Value::One(r.object()?)
                        }
                        2 => {
                            let n = usize::from(r.u16("list length")?);
                            r.charge(n)?;
                            if r.rest.len() < n * REF_LEN {
                                return Err(DecodeError::Truncated { field: "object refs" });
                            }
                            Value::List((0..n).map(|_| r.object()).collect::<Result<_, _>>()?)
                        }
                        3 => Value::Prior(r.str8("prior output name")?),
                        tag => return Err(DecodeError::UnknownTag { field: "input", tag }),
                    };
                    inputs.push((name, value));
                }
                Frame::Invoke(Invoke {
                    call,
                    after,
                    function,
                    params,
                    inputs,
                    outputs: r.named_refs()?,
                })
            }
            KIND_COMPLETE => {
                let call = r.u64("call")?;
                let status = match r.u8("status")? {
                    0 => Status::Ok,
                    1 => Status::Failed,
                    2 => Status::Panicked,
                    3 => Status::Declined,
                    s => return Err(DecodeError::UnknownStatus(s)),
                };
                Frame::Complete(Complete {
                    call,
                    status,
                    exec_ns: r.u64("exec_ns")?,
                    ended_ns: r.u64("ended_ns")?,
                    message: r.str16("message")?,
                    outputs: r.named_refs()?,
                })
            }
            KIND_ALLOC => Frame::Alloc(Alloc {
                call: r.u64("call")?,
                name: r.str8("output name")?,
                len: r.u64("len")?,
            }),
            KIND_GRANT => {
                let call = r.u64("call")?;
                let result = match r.u8("grant tag")? {
                    0 => Ok(r.object()?),
                    1 => Err(Refusal(r.str16("grant message")?)),
                    tag => return Err(DecodeError::UnknownTag { field: "grant", tag }),
                };
                Frame::Grant(Grant { call, result })
            }
            k => return Err(DecodeError::UnknownKind(k)),
        };
        if !r.rest.is_empty() {
            return Err(DecodeError::TrailingBytes(r.rest.len()));
        }
        Ok(frame)
    }
}

struct Writer<'a>(&'a mut Vec<u8>);

impl Writer<'_> {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    /// `v` was checked against the limits (all below `u16::MAX`) by `Frame::check`.
    fn u16(&mut self, v: usize) {
        self.0.extend_from_slice(&(v as u16).to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn str8(&mut self, s: &str) {
        // Checked: at most MAX_NAME (255) bytes.
        self.u8(s.len() as u8);
        self.0.extend_from_slice(s.as_bytes());
    }
    fn bytes16(&mut self, b: &[u8]) {
        self.u16(b.len());
        self.0.extend_from_slice(b);
    }
    fn object(&mut self, r: &ObjectRef) {
        self.u32(r.segment);
        self.u64(r.offset);
        self.u64(r.len);
    }
    fn named_refs(&mut self, v: &[(String, ObjectRef)]) {
        self.u16(v.len());
        for (name, r) in v {
            self.str8(name);
            self.object(r);
        }
    }
}

struct Reader<'a> {
    rest: &'a [u8],
    /// References decoded so far (bounded by MAX_REFS).
    refs: usize,
}

impl<'a> Reader<'a> {
    fn take<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let (head, rest) = self
            .rest
            .split_first_chunk::<N>()
            .ok_or(DecodeError::Truncated { field })?;
        self.rest = rest;
        Ok(*head)
    }
    fn slice(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.rest.len() < n {
            return Err(DecodeError::Truncated { field });
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(head)
    }
    fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take::<1>(field)?[0])
    }
    fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.take(field)?))
    }
    fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.take(field)?))
    }
    fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.take(field)?))
    }
    fn count(&mut self, field: &'static str) -> Result<usize, DecodeError> {
        let n = self.u16(field)?;
        if usize::from(n) > MAX_NAMES {
            return Err(DecodeError::TooManyNames(n));
        }
        Ok(usize::from(n))
    }
    fn charge(&mut self, n: usize) -> Result<(), DecodeError> {
        self.refs += n;
        if self.refs > MAX_REFS {
            return Err(DecodeError::TooManyRefs(self.refs));
        }
        Ok(())
    }
    fn bytes16(&mut self, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let n = self.u16(field)?;
        if usize::from(n) > MAX_TEXT {
            return Err(DecodeError::TextTooLong(n));
        }
        self.slice(usize::from(n), field)
    }
    fn str16(&mut self, field: &'static str) -> Result<String, DecodeError> {
        let b = self.bytes16(field)?;
        Ok(std::str::from_utf8(b)
            .map_err(|_| DecodeError::NotUtf8 { field })?
            .to_owned())
    }
    fn str8(&mut self, field: &'static str) -> Result<String, DecodeError> {
        let n = self.u8(field)?;
        let b = self.slice(usize::from(n), field)?;
        Ok(std::str::from_utf8(b)
            .map_err(|_| DecodeError::NotUtf8 { field })?
            .to_owned())
    }
    fn object(&mut self) -> Result<ObjectRef, DecodeError> {
        Ok(ObjectRef {
            segment: self.u32("segment")?,
            offset: self.u64("offset")?,
            len: self.u64("len")?,
        })
    }
    fn named_refs(&mut self) -> Result<Vec<(String, ObjectRef)>, DecodeError> {
        let n = self.count("output count")?;
        self.charge(n)?;
        let mut v = Vec::with_capacity(n.min(self.rest.len() / (1 + REF_LEN)));
        for _ in 0..n {
            let name = self.str8("output name")?;
            v.push((name, self.object()?));
        }
        Ok(v)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn object_ref() -> impl Strategy<Value = ObjectRef> {
        (any::<u32>(), any::<u64>(), any::<u64>()).prop_map(|(segment, offset, len)| ObjectRef { segment, offset, len })
    }

    fn name() -> impl Strategy<Value = String> {
        "[a-z_][a-z0-9_]{0,12}|é{0,3}"
    }

    fn named_refs() -> impl Strategy<Value = Vec<(String, ObjectRef)>> {
        proptest::collection::vec((name(), object_ref()), 0..6)
    }

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Absent),
            object_ref().prop_map(Value::One),
            proptest::collection::vec(object_ref(), 0..20).prop_map(Value::List),
            name().prop_map(Value::Prior),
        ]
    }

    fn frame() -> impl Strategy<Value = Frame> {
        let status = prop_oneof![
            Just(Status::Ok),
            Just(Status::Failed),
            Just(Status::Panicked),
            Just(Status::Declined)
        ];
        let text = || proptest::collection::vec(any::<u8>(), 0..40);
        prop_oneof![
            (
                (any::<u64>(), any::<u64>()),
                any::<u32>(),
                text(),
                proptest::collection::vec((name(), value()), 0..6),
                named_refs()
            )
                .prop_map(
                    |((call, after), function, params, inputs, outputs)| Frame::Invoke(Invoke {
                        call,
                        after,
                        function,
                        params,
                        inputs,
                        outputs
                    })
                ),
            (
                any::<u64>(),
                status,
                (any::<u64>(), any::<u64>()),
                ".{0,30}",
                named_refs()
            )
                .prop_map(|(call, status, (exec_ns, ended_ns), message, outputs)| Frame::Complete(
                    Complete {
                        call,
                        status,
                        exec_ns,
                        ended_ns,
                        message,
                        outputs
                    }
                )),
            (any::<u64>(), name(), any::<u64>()).prop_map(|(call, name, len)| Frame::Alloc(Alloc { call, name, len })),
            (
                any::<u64>(),
                prop_oneof![object_ref().prop_map(Ok), ".{0,30}".prop_map(|m| Err(Refusal(m)))]
            )
                .prop_map(|(call, result)| Frame::Grant(Grant { call, result })),
        ]
    }

    proptest! {
        #[test]
        fn round_trip(f in frame()) {
            let mut bytes = Vec::new();
            f.encode(&mut bytes).expect("within limits");
            prop_assert_eq!(bytes.len(), f.encoded_len());
            prop_assert_eq!(Frame::decode(&bytes), Ok(f));
        }

        #[test]
        fn decode_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(f) = Frame::decode(&bytes) {
                let mut again = Vec::new();
                f.encode(&mut again).expect("a decoded frame encodes");
                prop_assert_eq!(again, bytes);
            }
        }

        #[test]
        fn truncations_and_extensions_are_errors(f in frame(), cut in any::<prop::sample::Index>(), extra in 1usize..4) {
            let mut bytes = Vec::new();
            f.encode(&mut bytes).expect("within limits");
            let cut = cut.index(bytes.len());
            prop_assert!(Frame::decode(&bytes[..cut]).is_err());
            bytes.extend(std::iter::repeat_n(0, extra));
            prop_assert_eq!(Frame::decode(&bytes), Err(DecodeError::TrailingBytes(extra)));
        }
    }

    #[test]
    fn typed_errors() {
        assert_eq!(Frame::decode(&[]), Err(DecodeError::Truncated { field: "kind" }));
        assert_eq!(Frame::decode(&[9]), Err(DecodeError::UnknownKind(9)));
        let mut b = vec![KIND_INVOKE];
        b.extend_from_slice(&[0; 22]);
        b.extend_from_slice(&u16::MAX.to_le_bytes());
        assert_eq!(Frame::decode(&b), Err(DecodeError::TooManyNames(u16::MAX)));
        let mut b = vec![KIND_COMPLETE];
        b.extend_from_slice(&[0; 8]);
        b.push(7);
        assert_eq!(Frame::decode(&b), Err(DecodeError::UnknownStatus(7)));
        let mut b = vec![KIND_ALLOC];
        b.extend_from_slice(&[0; 8]);
        b.extend_from_slice(&[2, 0xff, 0xfe]);
        b.extend_from_slice(&[0; 8]);
        assert_eq!(Frame::decode(&b), Err(DecodeError::NotUtf8 { field: "output name" }));
        let mut b = vec![KIND_GRANT];
        b.extend_from_slice(&[0; 8]);
        b.push(5);
        assert_eq!(
            Frame::decode(&b),
            Err(DecodeError::UnknownTag { field: "grant", tag: 5 })
        );
    }

    #[test]
    fn limits_are_enforced_on_both_sides() {
        let r = ObjectRef::default();
        let too_many = Frame::Invoke(Invoke {
            call: 1,
            after: 0,
            function: 2,
            params: Vec::new(),
            inputs: vec![("xs".into(), Value::List(vec![r; MAX_REFS + 1]))],
            outputs: Vec::new(),
        });
        assert_eq!(
            too_many.encode(&mut Vec::new()),
            Err(EncodeError::TooManyRefs(MAX_REFS + 1))
        );
        let long = Frame::Alloc(Alloc {
            call: 1,
            name: "x".repeat(MAX_NAME + 1),
            len: 1,
        });
        assert!(matches!(long.encode(&mut Vec::new()), Err(EncodeError::NameTooLong(_))));
        let msg = Frame::Grant(Grant {
            call: 1,
            result: Err(Refusal("m".repeat(MAX_TEXT + 1))),
        });
        assert_eq!(msg.encode(&mut Vec::new()), Err(EncodeError::TextTooLong(MAX_TEXT + 1)));
        // A hand-made invoke announcing more references than allowed, spread over two lists.
        let half = MAX_REFS / 2 + 1;
        let mut b = vec![KIND_INVOKE];
        b.extend_from_slice(&[0; 20]);
        b.extend_from_slice(&0u16.to_le_bytes());
        b.extend_from_slice(&2u16.to_le_bytes());
        for name in [b'a', b'b'] {
            b.extend_from_slice(&[1, name, 2]);
            b.extend_from_slice(&(half as u16).to_le_bytes());
            b.extend(std::iter::repeat_n(0, half * REF_LEN));
        }
        b.extend_from_slice(&0u16.to_le_bytes());
        assert_eq!(Frame::decode(&b), Err(DecodeError::TooManyRefs(2 * half)));
    }
}
