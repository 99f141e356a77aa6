//! What daemons say to each other on a peer connection: control messages ([`ControlMessage`],
//! framed, on the connection's control stream) and the header that opens an object's stream
//! ([`ObjectHeader`]). A small binary codec, no I/O.
//!
//! Every byte decoded here comes from another machine: decoding checks every length against
//! what is left and against [`MAX_FRAME`], and a bad frame is a [`DecodeError`], never a panic.
//!
//! Frame: `u32` body length (little-endian, at most [`MAX_FRAME`]), then the body: a tag byte
//! and the fields. Integers are little-endian; a string is a `u16` length and UTF-8 bytes; an
//! optional `u32` is a flag byte (0 or 1) and the value when 1; a list is a `u32` count and
//! its items.

/// Largest body of a control frame.
pub const MAX_FRAME: usize = 1 << 20;

/// Bytes of the length prefix of a control frame.
pub const FRAME_PREFIX: usize = 4;

/// Bytes of an encoded [`ObjectHeader`].
pub const OBJECT_HEADER_LEN: usize = 25;

const TAG_TRIGGER: u8 = 1;
const TAG_SKIPPED: u8 = 2;
const TAG_OBJECT: u8 = 0x10;

/// Which edge of which invocation a control message is about: a predecessor on the sending
/// daemon and its successor on the receiving one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The workflow's name.
    pub workflow: String,
    /// The plan version the invocation runs on.
    pub version: u64,
    /// The invocation.
    pub invocation: u64,
    /// The predecessor (the function that finished, or was skipped).
    pub from_node: String,
    /// The function on the receiving daemon it precedes.
    pub to_node: String,
    /// The foreach element, if the predecessor is in a foreach body.
    pub element: Option<u32>,
}

/// A successor's predecessor finished on another daemon: its outputs, by name, are objects
/// pushed (or being pushed) on their own streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    /// The edge.
    pub route: Route,
    /// The predecessor's outputs.
    pub outputs: Vec<OutputRef>,
}

/// One output named in a [`Trigger`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputRef {
    /// The output's name.
    pub name: String,
    /// The object's id (as in its [`ObjectHeader`]).
    pub object: u64,
    /// Its size in bytes.
    pub len: u64,
}

/// A message on a peer connection's control stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlMessage {
    /// A predecessor finished.
    Trigger(Trigger),
    /// A predecessor was skipped (a switch case not taken) on another daemon.
    Skipped(Route),
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
            ControlMessage::Trigger(t) => {
                out.push(TAG_TRIGGER);
                put_route(out, &t.route)?;
                let count = u32::try_from(t.outputs.len()).map_err(|_| EncodeError::TooLarge { len: usize::MAX })?;
                out.extend_from_slice(&count.to_le_bytes());
                for o in &t.outputs {
                    put_str(out, &o.name, "an output name")?;
                    out.extend_from_slice(&o.object.to_le_bytes());
                    out.extend_from_slice(&o.len.to_le_bytes());
                }
            }
            ControlMessage::Skipped(s) => {
                out.push(TAG_SKIPPED);
                put_route(out, s)?;
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
            TAG_TRIGGER => {
                let route = r.route()?;
                let count = r.u32()?;
                // Each output takes at least 18 bytes: a count beyond what is left is a lie.
                let mut outputs = Vec::with_capacity((count as usize).min(r.0.len() / 18));
                for _ in 0..count {
                    outputs.push(OutputRef {
                        name: r.string()?,
                        object: r.u64()?,
                        len: r.u64()?,
                    });
                }
                ControlMessage::Trigger(Trigger { route, outputs })
            }
            TAG_SKIPPED => ControlMessage::Skipped(r.route()?),
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

fn put_route(out: &mut Vec<u8>, r: &Route) -> Result<(), EncodeError> {
    put_str(out, &r.workflow, "the workflow name")?;
    out.extend_from_slice(&r.version.to_le_bytes());
    out.extend_from_slice(&r.invocation.to_le_bytes());
    put_str(out, &r.from_node, "the predecessor's name")?;
    put_str(out, &r.to_node, "the successor's name")?;
    match r.element {
        None => out.push(0),
        Some(e) => {
            out.push(1);
            out.extend_from_slice(&e.to_le_bytes());
        }
    }
    Ok(())
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

    fn route(&mut self) -> Result<Route, DecodeError> {
        Ok(Route {
            workflow: self.string()?,
            version: self.u64()?,
            invocation: self.u64()?,
            from_node: self.string()?,
            to_node: self.string()?,
            element: match self.u8()? {
                0 => None,
                1 => Some(self.u32()?),
                flag => return Err(DecodeError::BadFlag(flag)),
            },
        })
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
        let output = (name, any::<u64>(), any::<u64>()).prop_map(|(name, object, len)| OutputRef { name, object, len });
        let trigger = (
            name,
            any::<u64>(),
            any::<u64>(),
            name,
            name,
            element(),
            proptest::collection::vec(output, 0..20),
        )
            .prop_map(
                |(workflow, version, invocation, from_node, to_node, element, outputs)| {
                    ControlMessage::Trigger(Trigger {
                        route: Route {
                            workflow,
                            version,
                            invocation,
                            from_node,
                            to_node,
                            element,
                        },
                        outputs,
                    })
                },
            );
        let skipped = (name, any::<u64>(), any::<u64>(), name, name, element()).prop_map(
            |(workflow, version, invocation, from_node, to_node, element)| {
                ControlMessage::Skipped(Route {
                    workflow,
                    version,
                    invocation,
                    from_node,
                    to_node,
                    element,
                })
            },
        );
        prop_oneof![trigger, skipped]
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
        let huge = ControlMessage::Trigger(Trigger {
            route: Route {
                workflow: "w".into(),
                version: 1,
                invocation: 1,
                from_node: "a".into(),
                to_node: "b".into(),
                element: None,
            },
            outputs: vec![
                OutputRef {
                    name: "x".repeat(1000),
                    object: 0,
                    len: 0,
                };
                2000
            ],
        });
        let mut buf = vec![7];
        assert!(matches!(huge.encode(&mut buf), Err(EncodeError::TooLarge { .. })));
        assert_eq!(buf, [7], "a failed encode leaves the buffer as it was");
        let long = ControlMessage::Skipped(Route {
            workflow: "w".repeat(70_000),
            version: 1,
            invocation: 1,
            from_node: "a".into(),
            to_node: "b".into(),
            element: Some(3),
        });
        assert!(matches!(long.encode(&mut buf), Err(EncodeError::StringTooLong { .. })));
    }

    #[test]
    fn malformed_bodies_have_their_own_errors() {
        assert_eq!(ControlMessage::decode(&[9]), Err(DecodeError::UnknownTag(9)));
        assert_eq!(ControlMessage::decode(&[]), Err(DecodeError::Truncated));
        let mut buf = Vec::new();
        ControlMessage::Skipped(Route {
            workflow: "w".into(),
            version: 1,
            invocation: 2,
            from_node: "a".into(),
            to_node: "b".into(),
            element: None,
        })
        .encode(&mut buf)
        .unwrap();
        let mut body = buf[FRAME_PREFIX..].to_vec();
        body.push(0);
        assert_eq!(ControlMessage::decode(&body), Err(DecodeError::Trailing(1)));
        body.pop();
        *body.last_mut().unwrap() = 2;
        assert_eq!(ControlMessage::decode(&body), Err(DecodeError::BadFlag(2)));
        body[3] = 0xff; // the workflow name's only byte
        *body.last_mut().unwrap() = 0;
        assert_eq!(ControlMessage::decode(&body), Err(DecodeError::BadUtf8));
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
