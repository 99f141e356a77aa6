//! Control frames carried by the rings: invocations (daemon → instance) and completions
//! (instance → daemon). Objects themselves stay in the arena; frames carry references.
//!
//! Encoding (little-endian, no padding):
//! ```text
//! Invoke:   kind=1 u8 | invocation u64 | function u32 | n u16 | n × ObjectRef
//! Complete: kind=2 u8 | invocation u64 | status u8 | code u32 | n u16 | n × ObjectRef
//! ObjectRef: segment u32 | offset u64 | len u64               (20 bytes)
//! ```
//! [`Frame::decode`] treats its input as untrusted: every malformed input gives a
//! [`DecodeError`], it never panics, and it allocates at most [`MAX_REFS`] references, only
//! after checking that the bytes for them are present.

/// Most object references one frame may carry.
pub const MAX_REFS: usize = 256;
const REF_LEN: usize = 20;
const KIND_INVOKE: u8 = 1;
const KIND_COMPLETE: u8 = 2;

/// Where an object lives in the shared arena.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ObjectRef {
    /// Arena segment.
    pub segment: u32,
    /// Byte offset in the segment.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
}

/// How a function invocation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Returned normally.
    Ok,
    /// Returned an error; `code` is function-defined.
    Failed { code: u32 },
    /// Panicked.
    Panicked,
}

/// Daemon → instance: run a function.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Invoke {
    /// Invocation id.
    pub invocation: u64,
    /// Index of the function in the pack.
    pub function: u32,
    /// Input objects, in the function's input order.
    pub inputs: Vec<ObjectRef>,
}

/// Instance → daemon: a function finished.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Complete {
    /// Invocation id, as in the [`Invoke`].
    pub invocation: u64,
    /// Outcome.
    pub status: Status,
    /// Output objects, in the function's output order.
    pub outputs: Vec<ObjectRef>,
}

/// A control frame.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Frame {
    /// See [`Invoke`].
    Invoke(Invoke),
    /// See [`Complete`].
    Complete(Complete),
}

/// A frame could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// More than [`MAX_REFS`] references.
    #[error("{0} object references, at most {MAX_REFS} fit in a frame")]
    TooManyRefs(usize),
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
    /// An error code on a status that has none (it must be 0, so that every frame has exactly
    /// one encoding).
    #[error("status {status} carries error code {code}, expected 0")]
    UnexpectedCode { status: u8, code: u32 },
    /// More than [`MAX_REFS`] references announced.
    #[error("{0} object references announced, at most {MAX_REFS} allowed")]
    TooManyRefs(u16),
    /// Bytes left after a complete frame.
    #[error("{0} trailing bytes after the frame")]
    TrailingBytes(usize),
}

impl Frame {
    /// Encoded length in bytes.
    pub fn encoded_len(&self) -> usize {
        match self {
            Frame::Invoke(i) => 1 + 8 + 4 + 2 + REF_LEN * i.inputs.len(),
            Frame::Complete(c) => 1 + 8 + 1 + 4 + 2 + REF_LEN * c.outputs.len(),
        }
    }

    /// Appends the encoding to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let refs = match self {
            Frame::Invoke(i) => &i.inputs,
            Frame::Complete(c) => &c.outputs,
        };
        if refs.len() > MAX_REFS {
            return Err(EncodeError::TooManyRefs(refs.len()));
        }
        out.reserve(self.encoded_len());
        match self {
            Frame::Invoke(i) => {
                out.push(KIND_INVOKE);
                out.extend_from_slice(&i.invocation.to_le_bytes());
                out.extend_from_slice(&i.function.to_le_bytes());
            }
            Frame::Complete(c) => {
                out.push(KIND_COMPLETE);
                out.extend_from_slice(&c.invocation.to_le_bytes());
                let (status, code) = match c.status {
                    Status::Ok => (0u8, 0u32),
                    Status::Failed { code } => (1, code),
                    Status::Panicked => (2, 0),
                };
                out.push(status);
                out.extend_from_slice(&code.to_le_bytes());
            }
        }
        // `refs.len() <= MAX_REFS < u16::MAX`.
        out.extend_from_slice(&(refs.len() as u16).to_le_bytes());
        for r in refs {
            out.extend_from_slice(&r.segment.to_le_bytes());
            out.extend_from_slice(&r.offset.to_le_bytes());
            out.extend_from_slice(&r.len.to_le_bytes());
        }
        Ok(())
    }

    /// Decodes one frame that spans all of `bytes` (untrusted).
    pub fn decode(bytes: &[u8]) -> Result<Frame, DecodeError> {
        let mut r = Reader(bytes);
        let frame = match r.u8("kind")? {
            KIND_INVOKE => {
                let invocation = r.u64("invocation")?;
                let function = r.u32("function")?;
                Frame::Invoke(Invoke {
                    invocation,
                    function,
                    inputs: r.refs()?,
                })
            }
            KIND_COMPLETE => {
                let invocation = r.u64("invocation")?;
                let status = r.u8("status")?;
                let code = r.u32("code")?;
                let status = match (status, code) {
                    (0, 0) => Status::Ok,
                    (1, code) => Status::Failed { code },
                    (2, 0) => Status::Panicked,
                    (0 | 2, code) => return Err(DecodeError::UnexpectedCode { status, code }),
                    (s, _) => return Err(DecodeError::UnknownStatus(s)),
                };
                Frame::Complete(Complete {
                    invocation,
                    status,
                    outputs: r.refs()?,
                })
            }
            k => return Err(DecodeError::UnknownKind(k)),
        };
        if !r.0.is_empty() {
            return Err(DecodeError::TrailingBytes(r.0.len()));
        }
        Ok(frame)
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let (head, rest) = self
            .0
            .split_first_chunk::<N>()
            .ok_or(DecodeError::Truncated { field })?;
        self.0 = rest;
        Ok(*head)
    }
    fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take::<1>(field)?[0])
    }
    fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.take(field)?))
    }
    fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.take(field)?))
    }
    fn refs(&mut self) -> Result<Vec<ObjectRef>, DecodeError> {
        let n = u16::from_le_bytes(self.take("ref count")?);
        if usize::from(n) > MAX_REFS {
            return Err(DecodeError::TooManyRefs(n));
        }
        if self.0.len() < usize::from(n) * REF_LEN {
            return Err(DecodeError::Truncated { field: "object refs" });
        }
        let mut refs = Vec::with_capacity(usize::from(n));
        for _ in 0..n {
            refs.push(ObjectRef {
                segment: self.u32("segment")?,
                offset: self.u64("offset")?,
                len: self.u64("len")?,
            });
        }
        Ok(refs)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn object_ref() -> impl Strategy<Value = ObjectRef> {
        (any::<u32>(), any::<u64>(), any::<u64>()).prop_map(|(segment, offset, len)| ObjectRef { segment, offset, len })
    }

    fn frame() -> impl Strategy<Value = Frame> {
        let refs = || proptest::collection::vec(object_ref(), 0..40);
        let status = prop_oneof![
            Just(Status::Ok),
            any::<u32>().prop_map(|code| Status::Failed { code }),
            Just(Status::Panicked)
        ];
        prop_oneof![
            (any::<u64>(), any::<u32>(), refs()).prop_map(|(invocation, function, inputs)| Frame::Invoke(Invoke {
                invocation,
                function,
                inputs
            })),
            (any::<u64>(), status, refs()).prop_map(|(invocation, status, outputs)| Frame::Complete(Complete {
                invocation,
                status,
                outputs
            })),
        ]
    }

    proptest! {
        #[test]
        fn round_trip(f in frame()) {
            let mut bytes = Vec::new();
            f.encode(&mut bytes).expect("few refs");
            prop_assert_eq!(bytes.len(), f.encoded_len());
            prop_assert_eq!(Frame::decode(&bytes), Ok(f));
        }

        #[test]
        fn decode_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = Frame::decode(&bytes);
        }

        #[test]
        fn truncations_and_extensions_are_errors(f in frame(), cut in any::<prop::sample::Index>(), extra in 1usize..4) {
            let mut bytes = Vec::new();
            f.encode(&mut bytes).expect("few refs");
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
        b.extend_from_slice(&[0; 12]);
        b.extend_from_slice(&u16::MAX.to_le_bytes());
        assert_eq!(Frame::decode(&b), Err(DecodeError::TooManyRefs(u16::MAX)));
        let mut b = vec![KIND_COMPLETE];
        b.extend_from_slice(&[0; 8]);
        b.push(7);
        b.extend_from_slice(&[0; 6]);
        assert_eq!(Frame::decode(&b), Err(DecodeError::UnknownStatus(7)));
        // Found by the `ring_frame` fuzz target: a code on an Ok status used to be dropped.
        let mut b = vec![KIND_COMPLETE];
        b.extend_from_slice(&[0; 9]);
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&[0; 2]);
        assert_eq!(
            Frame::decode(&b),
            Err(DecodeError::UnexpectedCode { status: 0, code: 3 })
        );
        let too_many = Frame::Invoke(Invoke {
            invocation: 1,
            function: 2,
            inputs: vec![
                ObjectRef {
                    segment: 0,
                    offset: 0,
                    len: 0
                };
                MAX_REFS + 1
            ],
        });
        assert_eq!(
            too_many.encode(&mut Vec::new()),
            Err(EncodeError::TooManyRefs(MAX_REFS + 1))
        );
    }
}
