//! What daemons say to each other on a peer connection: control messages ([`ControlMessage`],
//! framed, on the connection's control stream) and the header that opens an object's stream
//! ([`ObjectHeader`]). A small binary codec, no I/O.
//!
//! Every byte decoded here comes from another machine: decoding checks every length against
//! what is left and against [`MAX_FRAME`], and a bad frame is a [`DecodeError`], never a panic.
//!
//! Frame: `u32` body length (little-endian, at most [`MAX_FRAME`]), then the body: a tag byte
//! and the fields. Integers are little-endian; a string is a `u16` length and UTF-8 bytes; an
//! optional `u32` is a flag byte (0 or 1) and the value when 1; a blob is a `u32` length and
//! its bytes; a list is a `u32` count and its items.

/// Largest body of a control frame (a workflow's input travels in one, as large as the
/// remote tier's largest object).
pub const MAX_FRAME: usize = 512 << 20;

/// Bytes of the length prefix of a control frame.
pub const FRAME_PREFIX: usize = 4;

/// Bytes of an encoded [`ObjectHeader`].
pub const OBJECT_HEADER_LEN: usize = 25;

const TAG_START: u8 = 1;
const TAG_DONE: u8 = 2;
const TAG_FAILED: u8 = 3;
const TAG_CAUGHT: u8 = 4;
const TAG_OBJECT: u8 = 0x10;

/// An invocation started on the sending daemon, its entry: every daemon of the plan runs the
/// same engine over the whole workflow and triggers its own tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    /// The workflow's name.
    pub workflow: String,
    /// The plan version the invocation runs on.
    pub version: u64,
    /// The invocation (unique in the cluster).
    pub invocation: u64,
    /// When it started on the entry, µs since the Unix epoch (the origin of the times in its
    /// report on every daemon).
    pub origin_us: u64,
    /// The workflow's input, JSON (the inputs in `staged` are `null` in it).
    pub input: Vec<u8>,
    /// Large inputs that tasks of the receiver read, sent as objects on streams of their own.
    pub staged: Vec<StagedInput>,
}

/// A workflow input sent as an object (its [`ObjectHeader`] has the same `object`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedInput {
    /// The input's name.
    pub name: String,
    /// The object's id.
    pub object: u64,
    /// Its size in bytes.
    pub len: u64,
}

/// A task finished on the sending daemon: its outputs, by name. Objects a task of the
/// receiving daemon reads are pushed (or being pushed) on their own streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    /// The invocation.
    pub invocation: u64,
    /// The task (node index in the plan's graph).
    pub node: u32,
    /// The foreach element, if the task is in a foreach body.
    pub element: Option<u32>,
    /// Its outputs.
    pub outputs: Vec<OutputRef>,
    /// What the sender recorded about the run, for the invocation's report (JSON).
    pub record: Vec<u8>,
}

/// One output named in a [`Done`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputRef {
    /// The output's name.
    pub name: String,
    /// The object's id (as in its [`ObjectHeader`]), unique in the cluster.
    pub object: u64,
    /// Its size in bytes.
    pub len: u64,
    /// Its bytes when it is a `json` or `list` output (conditions and foreach lists read it).
    pub json: Option<Vec<u8>>,
    /// A copy is in the remote tier for the workers reading it over an edge the plan marks
    /// remote (they fetch it; it is not pushed to them).
    pub remote: bool,
}

/// An invocation failed for good on the sending daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    /// The invocation.
    pub invocation: u64,
    /// Why: the step and the cause.
    pub error: String,
    /// The worker whose loss ended it, when one did.
    pub lost_worker: Option<String>,
}

/// A task failed for good on the sending daemon and its catch step runs in its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caught {
    /// The invocation.
    pub invocation: u64,
    /// The task (node index in the plan's graph).
    pub node: u32,
    /// The foreach element, if the task is in a foreach body.
    pub element: Option<u32>,
    /// The failure as the catch step receives it (JSON).
    pub failure: Vec<u8>,
    /// What the sender recorded about its attempts, for the invocation's report (JSON).
    pub record: Vec<u8>,
}

/// A message on a peer connection's control stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlMessage {
    /// An invocation started.
    Start(Start),
    /// A task finished.
    Done(Done),
    /// An invocation failed.
    Failed(Failed),
    /// A task failed and was caught.
    Caught(Caught),
}

impl ControlMessage {
    /// The invocation the message is about.
    pub fn invocation(&self) -> u64 {
        match self {
            ControlMessage::Start(m) => m.invocation,
            ControlMessage::Done(m) => m.invocation,
            ControlMessage::Failed(m) => m.invocation,
            ControlMessage::Caught(m) => m.invocation,
        }
    }
}

/// The first bytes of an object's stream; the object's bytes follow, exactly `len` of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectHeader {
    /// The invocation the object belongs to.
    pub invocation: u64,
    /// The object's id.
    pub object: u64,
    /// Its size in bytes.
    pub len: u64,
}

/// Why bytes received are not a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ends inside a field.
    #[error("truncated message")]
    Truncated,
    /// A frame longer than [`MAX_FRAME`].
    #[error("frame of {len} bytes exceeds the limit of {MAX_FRAME}")]
    Oversized {
        /// The length it announced.
        len: u64,
    },
    /// An unknown message tag.
    #[error("unknown message tag {0:#04x}")]
    UnknownTag(u8),
    /// A string that is not UTF-8.
    #[error("a string is not UTF-8")]
    BadUtf8,
    /// An optional field's flag is neither 0 nor 1.
    #[error("bad flag byte {0:#04x}")]
    BadFlag(u8),
    /// Bytes after the last field.
    #[error("{0} bytes after the end of the message")]
    Trailing(usize),
}

/// Why a message cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A string longer than 65,535 bytes.
    #[error("{what} is {len} bytes long; at most 65535 fit")]
    StringTooLong {
        /// Which field.
        what: &'static str,
        /// Its length.
        len: usize,
    },
    /// The message's frame would exceed [`MAX_FRAME`].
    #[error("message of {len} bytes exceeds the frame limit of {MAX_FRAME}")]
    TooLarge {
        /// Its length.
        len: usize,
    },
}

impl ControlMessage {
    /// Appends this message's frame (length prefix and body) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let start = out.len();
        out.extend_from_slice(&[0; FRAME_PREFIX]);
        let result = self.encode_body(out);
        let len = out.len() - start - FRAME_PREFIX;
        let result = result.and_then(|()| match u32::try_from(len) {
            Ok(l) if len <= MAX_FRAME => Ok(l),
            _ => Err(EncodeError::TooLarge { len }),
        });
        match result {
            Ok(l) => {
                out[start..start + FRAME_PREFIX].copy_from_slice(&l.to_le_bytes());
                Ok(())
            }
            Err(e) => {
                out.truncate(start);
                Err(e)
            }
        }
    }

    fn encode_body(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        match self {
            ControlMessage::Start(m) => {
                out.push(TAG_START);
                put_str(out, &m.workflow, "the workflow name")?;
                out.extend_from_slice(&m.version.to_le_bytes());
                out.extend_from_slice(&m.invocation.to_le_bytes());
                out.extend_from_slice(&m.origin_us.to_le_bytes());
                put_blob(out, &m.input)?;
                put_count(out, m.staged.len())?;
                for i in &m.staged {
                    put_str(out, &i.name, "an input name")?;
                    out.extend_from_slice(&i.object.to_le_bytes());
                    out.extend_from_slice(&i.len.to_le_bytes());
                }
            }
            ControlMessage::Done(m) => {
                out.push(TAG_DONE);
                out.extend_from_slice(&m.invocation.to_le_bytes());
                out.extend_from_slice(&m.node.to_le_bytes());
                put_opt_u32(out, m.element);
                put_count(out, m.outputs.len())?;
                for o in &m.outputs {
                    put_str(out, &o.name, "an output name")?;
                    out.extend_from_slice(&o.object.to_le_bytes());
                    out.extend_from_slice(&o.len.to_le_bytes());
                    out.push(u8::from(o.remote));
                    match &o.json {
                        None => out.push(0),
                        Some(j) => {
                            out.push(1);
                            put_blob(out, j)?;
                        }
                    }
                }
                put_blob(out, &m.record)?;
            }
            ControlMessage::Failed(m) => {
                out.push(TAG_FAILED);
                out.extend_from_slice(&m.invocation.to_le_bytes());
                put_blob(out, m.error.as_bytes())?;
                match &m.lost_worker {
                    None => out.push(0),
                    Some(w) => {
                        out.push(1);
                        put_str(out, w, "a worker name")?;
                    }
                }
            }
            ControlMessage::Caught(m) => {
                out.push(TAG_CAUGHT);
                out.extend_from_slice(&m.invocation.to_le_bytes());
                out.extend_from_slice(&m.node.to_le_bytes());
                put_opt_u32(out, m.element);
                put_blob(out, &m.failure)?;
                put_blob(out, &m.record)?;
            }
        }
        Ok(())
    }

    /// Decodes a frame's body (without its length prefix).
    pub fn decode(body: &[u8]) -> Result<ControlMessage, DecodeError> {
        if body.len() > MAX_FRAME {
            return Err(DecodeError::Oversized { len: body.len() as u64 });
        }
        let mut r = Reader(body);
        let msg = match r.u8()? {
            TAG_START => {
                let (workflow, version, invocation, origin_us) = (r.string()?, r.u64()?, r.u64()?, r.u64()?);
                let input = r.blob()?.to_vec();
                let count = r.u32()?;
                // Each staged input takes at least 18 bytes: a count beyond what is left is a lie.
                let mut staged = Vec::with_capacity((count as usize).min(r.0.len() / 18));
                for _ in 0..count {
                    staged.push(StagedInput {
                        name: r.string()?,
                        object: r.u64()?,
                        len: r.u64()?,
                    });
                }
                ControlMessage::Start(Start {
                    workflow,
                    version,
                    invocation,
                    origin_us,
                    input,
                    staged,
                })
            }
            TAG_DONE => {
                let invocation = r.u64()?;
                let node = r.u32()?;
                let element = r.opt_u32()?;
                let count = r.u32()?;
                // Each output takes at least 20 bytes: a count beyond what is left is a lie.
                let mut outputs = Vec::with_capacity((count as usize).min(r.0.len() / 20));
                for _ in 0..count {
                    outputs.push(OutputRef {
                        name: r.string()?,
                        object: r.u64()?,
                        len: r.u64()?,
                        remote: match r.u8()? {
                            0 => false,
                            1 => true,
                            flag => return Err(DecodeError::BadFlag(flag)),
                        },
                        json: match r.u8()? {
                            0 => None,
                            1 => Some(r.blob()?.to_vec()),
                            flag => return Err(DecodeError::BadFlag(flag)),
                        },
                    });
                }
                ControlMessage::Done(Done {
                    invocation,
                    node,
                    element,
                    outputs,
                    record: r.blob()?.to_vec(),
                })
            }
            TAG_FAILED => ControlMessage::Failed(Failed {
                invocation: r.u64()?,
                error: String::from_utf8(r.blob()?.to_vec()).map_err(|_| DecodeError::BadUtf8)?,
                lost_worker: match r.u8()? {
                    0 => None,
                    1 => Some(r.string()?),
                    flag => return Err(DecodeError::BadFlag(flag)),
                },
            }),
            TAG_CAUGHT => ControlMessage::Caught(Caught {
                invocation: r.u64()?,
                node: r.u32()?,
                element: r.opt_u32()?,
                failure: r.blob()?.to_vec(),
                record: r.blob()?.to_vec(),
            }),
            tag => return Err(DecodeError::UnknownTag(tag)),
        };
        match r.0.len() {
            0 => Ok(msg),
            n => Err(DecodeError::Trailing(n)),
        }
    }

    /// Decodes the first frame in `buf`: the message and the bytes it took, or `None` when
    /// `buf` holds only part of it.
    pub fn decode_frame(buf: &[u8]) -> Result<Option<(ControlMessage, usize)>, DecodeError> {
        let Some(prefix) = buf.first_chunk::<FRAME_PREFIX>() else {
            return Ok(None);
        };
        let len = frame_len(*prefix)?;
        match buf.get(FRAME_PREFIX..FRAME_PREFIX + len) {
            Some(body) => Ok(Some((ControlMessage::decode(body)?, FRAME_PREFIX + len))),
            None => Ok(None),
        }
    }
}

/// The body length a frame's prefix announces, if within [`MAX_FRAME`].
pub fn frame_len(prefix: [u8; FRAME_PREFIX]) -> Result<usize, DecodeError> {
    let len = u32::from_le_bytes(prefix);
    match usize::try_from(len) {
        Ok(l) if l <= MAX_FRAME => Ok(l),
        _ => Err(DecodeError::Oversized { len: u64::from(len) }),
    }
}

impl ObjectHeader {
    /// The header's bytes.
    pub fn encode(&self) -> [u8; OBJECT_HEADER_LEN] {
        let mut out = [0; OBJECT_HEADER_LEN];
        out[0] = TAG_OBJECT;
        out[1..9].copy_from_slice(&self.invocation.to_le_bytes());
        out[9..17].copy_from_slice(&self.object.to_le_bytes());
        out[17..25].copy_from_slice(&self.len.to_le_bytes());
        out
    }

    /// Decodes a header.
    pub fn decode(bytes: &[u8; OBJECT_HEADER_LEN]) -> Result<ObjectHeader, DecodeError> {
        let mut r = Reader(bytes);
        match r.u8()? {
            TAG_OBJECT => Ok(ObjectHeader {
                invocation: r.u64()?,
                object: r.u64()?,
                len: r.u64()?,
            }),
            tag => Err(DecodeError::UnknownTag(tag)),
        }
    }
}

fn put_str(out: &mut Vec<u8>, s: &str, what: &'static str) -> Result<(), EncodeError> {
    let len = u16::try_from(s.len()).map_err(|_| EncodeError::StringTooLong { what, len: s.len() })?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

fn put_blob(out: &mut Vec<u8>, b: &[u8]) -> Result<(), EncodeError> {
    if b.len() > MAX_FRAME {
        return Err(EncodeError::TooLarge { len: b.len() });
    }
    put_count(out, b.len())?;
    out.extend_from_slice(b);
    Ok(())
}

fn put_count(out: &mut Vec<u8>, n: usize) -> Result<(), EncodeError> {
    let n = u32::try_from(n).map_err(|_| EncodeError::TooLarge { len: n })?;
    out.extend_from_slice(&n.to_le_bytes());
    Ok(())
}

fn put_opt_u32(out: &mut Vec<u8>, v: Option<u32>) {
    match v {
        None => out.push(0),
        Some(e) => {
            out.push(1);
            out.extend_from_slice(&e.to_le_bytes());
        }
    }
}

/// Reads fields from the front of a byte slice.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let (head, rest) = self.0.split_first_chunk::<N>().ok_or(DecodeError::Truncated)?;
        self.0 = rest;
        Ok(*head)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        self.take().map(u16::from_le_bytes)
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        self.take().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        self.take().map(u64::from_le_bytes)
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        let len = usize::from(self.u16()?);
        if self.0.len() < len {
            return Err(DecodeError::Truncated);
        }
        let (s, rest) = self.0.split_at(len);
        self.0 = rest;
        String::from_utf8(s.to_vec()).map_err(|_| DecodeError::BadUtf8)
    }

    fn blob(&mut self) -> Result<&[u8], DecodeError> {
        let len = self.u32()? as usize;
        if self.0.len() < len {
            return Err(DecodeError::Truncated);
        }
        let (b, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(b)
    }

    fn opt_u32(&mut self) -> Result<Option<u32>, DecodeError> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.u32()?)),
            flag => Err(DecodeError::BadFlag(flag)),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn element() -> impl Strategy<Value = Option<u32>> {
        proptest::option::of(any::<u32>())
    }

    fn message() -> impl Strategy<Value = ControlMessage> {
        let name = "[a-z0-9_-]{0,20}|\\PC{0,8}";
        let blob = proptest::collection::vec(any::<u8>(), 0..40);
        let output = (
            name,
            any::<u64>(),
            any::<u64>(),
            proptest::option::of(blob.clone()),
            any::<bool>(),
        )
            .prop_map(|(name, object, len, json, remote)| OutputRef {
                name,
                object,
                len,
                json,
                remote,
            });
        let staged =
            (name, any::<u64>(), any::<u64>()).prop_map(|(name, object, len)| StagedInput { name, object, len });
        let start = (
            name,
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            blob.clone(),
            proptest::collection::vec(staged, 0..5),
        )
            .prop_map(|(workflow, version, invocation, origin_us, input, staged)| {
                ControlMessage::Start(Start {
                    workflow,
                    version,
                    invocation,
                    origin_us,
                    input,
                    staged,
                })
            });
        let done = (
            any::<u64>(),
            any::<u32>(),
            element(),
            proptest::collection::vec(output, 0..20),
            blob.clone(),
        )
            .prop_map(|(invocation, node, element, outputs, record)| {
                ControlMessage::Done(Done {
                    invocation,
                    node,
                    element,
                    outputs,
                    record,
                })
            });
        let failed =
            (any::<u64>(), "\\PC{0,50}", proptest::option::of(name)).prop_map(|(invocation, error, lost_worker)| {
                ControlMessage::Failed(Failed {
                    invocation,
                    error,
                    lost_worker,
                })
            });
        let caught = (any::<u64>(), any::<u32>(), element(), blob.clone(), blob).prop_map(
            |(invocation, node, element, failure, record)| {
                ControlMessage::Caught(Caught {
                    invocation,
                    node,
                    element,
                    failure,
                    record,
                })
            },
        );
        prop_oneof![start, done, failed, caught]
    }

    proptest! {
        #[test]
        fn control_messages_round_trip(msgs in proptest::collection::vec(message(), 1..5)) {
            let mut buf = Vec::new();
            for m in &msgs {
                m.encode(&mut buf).unwrap();
            }
            let mut at = 0;
            for m in &msgs {
                let (got, used) = ControlMessage::decode_frame(&buf[at..]).unwrap().unwrap();
                prop_assert_eq!(&got, m);
                at += used;
            }
            prop_assert_eq!(at, buf.len());
        }

        #[test]
        fn truncated_frames_are_incomplete_and_truncated_bodies_errors(m in message(), cut in any::<prop::sample::Index>()) {
            let mut buf = Vec::new();
            m.encode(&mut buf).unwrap();
            let cut = cut.index(buf.len());
            prop_assert_eq!(ControlMessage::decode_frame(&buf[..cut]).unwrap(), None);
            let body = &buf[FRAME_PREFIX..];
            let cut = cut.min(body.len() - 1);
            prop_assert!(ControlMessage::decode(&body[..cut]).is_err());
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = ControlMessage::decode(&bytes);
            let _ = ControlMessage::decode_frame(&bytes);
            if let Some(h) = bytes.first_chunk::<OBJECT_HEADER_LEN>() {
                let _ = ObjectHeader::decode(h);
            }
        }

        #[test]
        fn object_headers_round_trip(invocation in any::<u64>(), object in any::<u64>(), len in any::<u64>()) {
            let h = ObjectHeader { invocation, object, len };
            prop_assert_eq!(ObjectHeader::decode(&h.encode()), Ok(h));
        }
    }

    #[test]
    fn oversized_frames_are_rejected_before_reading_them() {
        let prefix = u32::try_from(MAX_FRAME + 1).unwrap().to_le_bytes();
        assert_eq!(
            ControlMessage::decode_frame(&prefix),
            Err(DecodeError::Oversized {
                len: MAX_FRAME as u64 + 1
            })
        );
        assert_eq!(
            frame_len([0xff; 4]),
            Err(DecodeError::Oversized {
                len: u64::from(u32::MAX)
            })
        );
        assert_eq!(
            frame_len(u32::try_from(MAX_FRAME).unwrap().to_le_bytes()),
            Ok(MAX_FRAME)
        );
    }

    #[test]
    fn encoding_refuses_what_decoding_would_refuse() {
        let huge = ControlMessage::Start(Start {
            workflow: "w".into(),
            version: 1,
            invocation: 1,
            origin_us: 0,
            input: vec![b'x'; MAX_FRAME],
            staged: Vec::new(),
        });
        let mut buf = vec![7];
        assert!(matches!(huge.encode(&mut buf), Err(EncodeError::TooLarge { .. })));
        assert_eq!(buf, [7], "a failed encode leaves the buffer as it was");
        let long = ControlMessage::Start(Start {
            workflow: "w".repeat(70_000),
            version: 1,
            invocation: 1,
            origin_us: 0,
            input: Vec::new(),
            staged: Vec::new(),
        });
        assert!(matches!(long.encode(&mut buf), Err(EncodeError::StringTooLong { .. })));
    }

    #[test]
    fn malformed_bodies_have_their_own_errors() {
        assert_eq!(ControlMessage::decode(&[9]), Err(DecodeError::UnknownTag(9)));
        assert_eq!(ControlMessage::decode(&[]), Err(DecodeError::Truncated));
        let done = |element| {
            let mut buf = Vec::new();
            ControlMessage::Done(Done {
                invocation: 2,
                node: 1,
                element,
                outputs: Vec::new(),
                record: Vec::new(),
            })
            .encode(&mut buf)
            .unwrap();
            buf[FRAME_PREFIX..].to_vec()
        };
        let mut body = done(None);
        body.push(0);
        assert_eq!(ControlMessage::decode(&body), Err(DecodeError::Trailing(1)));
        let mut body = done(None);
        body[13] = 2; // the element's flag
        assert_eq!(ControlMessage::decode(&body), Err(DecodeError::BadFlag(2)));
        let mut buf = Vec::new();
        ControlMessage::Failed(Failed {
            invocation: 1,
            error: "e".into(),
            lost_worker: None,
        })
        .encode(&mut buf)
        .unwrap();
        let mut body = buf[FRAME_PREFIX..].to_vec();
        let n = body.len();
        body[n - 2] = 0xff; // the error's last byte (the lost worker's flag follows)
        assert_eq!(ControlMessage::decode(&body), Err(DecodeError::BadUtf8));
        body[n - 2] = b'e';
        body[n - 1] = 7;
        assert_eq!(ControlMessage::decode(&body), Err(DecodeError::BadFlag(7)));
        let mut header = ObjectHeader {
            invocation: 1,
            object: 2,
            len: 3,
        }
        .encode();
        header[0] = 1;
        assert_eq!(ObjectHeader::decode(&header), Err(DecodeError::UnknownTag(1)));
    }
}
