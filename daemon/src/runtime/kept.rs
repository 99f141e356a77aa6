//! Outputs kept past their invocation's end: an execution's entry daemon keeps every workflow
//! output its report does not show whole (binary, or over 64 KiB: the report says
//! `{"bytes": N}`), where its bytes are (arena, spill file, remote tier), until it has been read
//! whole once (`ReadOutput`, then `OutputRead`) or its time is up, or the planner forgets the
//! execution. A kept object is `held` (never swept or freed meanwhile); letting it go frees it
//! as any result.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use faasflow_core::engine::InvocationId;

use super::objects::{Objects, Place};
use crate::api::{OutputError, OutputPiece};
use crate::store::arena::Arena;

/// One kept output: its objects (one, or a foreach's elements), each (object, bytes).
type Elements = Vec<(u64, u64)>;

/// The outputs kept for one invocation.
#[derive(Debug)]
struct KeptOutputs {
    outputs: BTreeMap<String, Elements>,
    /// Elements read whole, (output, element).
    read: BTreeSet<(String, u32)>,
    until: Instant,
}

impl KeptOutputs {
    fn ids(&self) -> Vec<u64> {
        self.outputs.values().flatten().map(|(id, _)| *id).collect()
    }

    fn elements(&self) -> usize {
        self.outputs.values().map(Vec::len).sum()
    }
}

/// Why an output cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum KeptError {
    /// Nothing is kept for the invocation here.
    #[error(
        "no outputs of invocation {0} are kept on this worker: they were read whole already, their time ran out, \
         or the report showed them whole"
    )]
    Invocation(InvocationId),
    /// The invocation's outputs here do not include it.
    #[error("invocation {invocation} has no kept output `{name}` (kept: {kept})")]
    Output {
        invocation: InvocationId,
        name: String,
        kept: String,
    },
    /// The output has fewer elements.
    #[error("output `{name}` has {len} element(s); element {element} is not one of them")]
    Element { name: String, len: usize, element: u32 },
}

/// Every invocation's kept outputs.
#[derive(Debug, Default)]
pub(crate) struct Kept {
    map: HashMap<InvocationId, KeptOutputs>,
    /// Bytes kept, for `/metrics`.
    bytes: u64,
}

impl Kept {
    /// Keeps `outputs` of `invocation` until `until`; the elements in `shown` (shown whole
    /// by the report) count as read. Returns the objects of what was kept for the same
    /// invocation before (an id used again), to let go.
    pub(crate) fn keep(
        &mut self,
        invocation: InvocationId,
        outputs: BTreeMap<String, Elements>,
        shown: BTreeSet<(String, u32)>,
        until: Instant,
    ) -> Vec<u64> {
        let before = self.release(invocation).unwrap_or_default();
        self.bytes += outputs.values().flatten().map(|(_, len)| len).sum::<u64>();
        self.map.insert(
            invocation,
            KeptOutputs {
                outputs,
                read: shown,
                until,
            },
        );
        before
    }

    /// The object and size of element `element` of output `name` of `invocation`.
    pub(crate) fn object(&self, invocation: InvocationId, name: &str, element: u32) -> Result<(u64, u64), KeptError> {
        let k = self.map.get(&invocation).ok_or(KeptError::Invocation(invocation))?;
        let elements = k.outputs.get(name).ok_or_else(|| KeptError::Output {
            invocation,
            name: name.to_owned(),
            kept: k.outputs.keys().cloned().collect::<Vec<_>>().join(", "),
        })?;
        elements
            .get(element as usize)
            .copied()
            .ok_or_else(|| KeptError::Element {
                name: name.to_owned(),
                len: elements.len(),
                element,
            })
    }

    /// Element `element` of output `name` of `invocation` was read whole: when every kept
    /// element of it has been, its objects to let go (it is forgotten).
    pub(crate) fn read_whole(&mut self, invocation: InvocationId, name: &str, element: u32) -> Option<Vec<u64>> {
        let k = self.map.get_mut(&invocation)?;
        k.read.insert((name.to_owned(), element));
        (k.read.len() >= k.elements())
            .then(|| self.release(invocation))
            .flatten()
    }

    /// Forgets what is kept for `invocation`: its objects to let go.
    pub(crate) fn release(&mut self, invocation: InvocationId) -> Option<Vec<u64>> {
        let k = self.map.remove(&invocation)?;
        self.bytes -= k.outputs.values().flatten().map(|(_, len)| len).sum::<u64>();
        Some(k.ids())
    }

    /// Forgets what was kept past its time: the objects to let go.
    pub(crate) fn expired(&mut self, now: Instant) -> Vec<u64> {
        let due: Vec<InvocationId> = self
            .map
            .iter()
            .filter(|(_, k)| k.until <= now)
            .map(|(id, _)| *id)
            .collect();
        due.into_iter().filter_map(|id| self.release(id)).flatten().collect()
    }

    /// Bytes kept.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Invocations with outputs kept.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

impl Kept {
    /// Keeps the outputs of `invocation` that its report (`shown`) does not show whole, until
    /// `until`; returns their objects (now held), and those of what was kept for the same id
    /// before, to let go.
    pub(crate) fn keep_unshown(
        &mut self,
        objects: &mut Objects,
        invocation: InvocationId,
        shown: &serde_json::Value,
        outputs: Vec<(String, Elements)>,
        until: Instant,
    ) -> (Vec<u64>, Vec<u64>) {
        let keep: BTreeMap<String, Elements> = outputs
            .into_iter()
            .filter(|(name, _)| {
                let v = &shown[name.as_str()];
                match v.as_array() {
                    Some(elements) => elements.iter().any(not_shown),
                    None => not_shown(v),
                }
            })
            .collect();
        let ids: Vec<u64> = keep.values().flatten().map(|(id, _)| *id).collect();
        for id in &ids {
            if let Some(o) = objects.get_mut(*id) {
                o.held = true;
            }
        }
        // Elements of a kept list that the report shows whole need no reading.
        let read: BTreeSet<(String, u32)> = keep
            .keys()
            .filter_map(|name| Some((name, shown[name.as_str()].as_array()?)))
            .flat_map(|(name, elements)| {
                (0u32..)
                    .zip(elements)
                    .filter(|(_, e)| !not_shown(e))
                    .map(|(i, _)| (name.clone(), i))
            })
            .collect();
        let before = if keep.is_empty() {
            Vec::new()
        } else {
            self.keep(invocation, keep, read, until)
        };
        (ids, before)
    }

    /// Bytes of kept output `name` (element `element`) of `invocation` from `offset`, at most
    /// `max` (or where they are in the remote tier).
    pub(crate) fn read(
        &self,
        (objects, arena): (&Objects, &Arena),
        invocation: InvocationId,
        (name, element): (&str, u32),
        (offset, max): (u64, u64),
    ) -> Result<OutputPiece, OutputError> {
        let (id, len) = self
            .object(invocation, name, element)
            .map_err(|e| OutputError::NotKept(e.to_string()))?;
        if offset > len {
            return Err(OutputError::PastEnd {
                name: name.to_owned(),
                len,
                offset,
            });
        }
        let end = len.min(offset.saturating_add(max));
        let unreadable = |cause: String| OutputError::Unreadable {
            name: name.to_owned(),
            cause,
        };
        let mut buf = Vec::new();
        let read = match objects.get(id).map(|o| &o.place) {
            Some(Place::Arena(e)) => {
                buf = vec![0u8; usize::try_from(end - offset).map_err(|e| unreadable(e.to_string()))?];
                arena.read_into(*e, offset, &mut buf)
            }
            Some(Place::Empty) => end == offset,
            // Read by the caller, off the loop.
            Some(Place::Spilled(path)) => {
                return Ok(OutputPiece::File {
                    total: len,
                    path: path.clone(),
                    end,
                });
            }
            Some(Place::Remote { key, .. }) => {
                return Ok(OutputPiece::Remote {
                    total: len,
                    key: key.clone(),
                    end,
                });
            }
            Some(Place::Pending) | None => false,
        };
        if !read {
            return Err(unreadable("its bytes are not on this worker".into()));
        }
        Ok(OutputPiece::Bytes { total: len, bytes: buf })
    }
}

/// Whether a report shows a value not whole (`{"bytes": N}`: binary, or too long).
fn not_shown(v: &serde_json::Value) -> bool {
    faasflow_core::report::not_shown(v).is_some()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn outputs_go_once_read_whole_or_when_their_time_is_up() {
        let now = Instant::now();
        let mut kept = Kept::default();
        let outputs = BTreeMap::from([
            ("video".to_owned(), vec![(7, 100)]),
            ("parts".to_owned(), vec![(8, 10), (9, 20)]),
        ]);
        kept.keep(1, outputs, BTreeSet::new(), now + Duration::from_secs(60));
        let x = BTreeMap::from([("x".to_owned(), vec![(10, 5)])]);
        assert!(
            kept.keep(2, x.clone(), BTreeSet::new(), now + Duration::from_secs(1))
                .is_empty()
        );
        // The same id kept again: what it held before goes.
        assert_eq!(kept.keep(2, x, BTreeSet::new(), now + Duration::from_secs(1)), [10]);
        assert_eq!(kept.bytes(), 135);
        assert_eq!(kept.object(1, "parts", 1), Ok((9, 20)));
        assert!(matches!(
            kept.object(1, "parts", 2),
            Err(KeptError::Element { len: 2, .. })
        ));
        let e = kept.object(1, "nothing", 0).unwrap_err().to_string();
        assert!(e.contains("kept: parts, video"), "{e}");
        assert_eq!(kept.object(3, "x", 0), Err(KeptError::Invocation(3)));
        // Read whole, element by element: it goes with the last.
        assert_eq!(kept.read_whole(1, "video", 0), None);
        assert_eq!(kept.read_whole(1, "parts", 0), None);
        assert_eq!(kept.read_whole(1, "parts", 0), None, "read twice counts once");
        let mut ids = kept.read_whole(1, "parts", 1).expect("all read");
        ids.sort_unstable();
        assert_eq!(ids, [7, 8, 9]);
        assert_eq!(kept.bytes(), 5);
        // The other's time runs out.
        assert!(kept.expired(now).is_empty());
        assert_eq!(kept.expired(now + Duration::from_secs(2)), [10]);
        assert_eq!((kept.bytes(), kept.len()), (0, 0));
        // A list whose element 0 the report showed whole: reading the others is reading it all.
        let parts = BTreeMap::from([("parts".to_owned(), vec![(11, 3), (12, 90_000)])]);
        kept.keep(
            3,
            parts,
            BTreeSet::from([("parts".to_owned(), 0)]),
            now + Duration::from_secs(9),
        );
        assert_eq!(kept.read_whole(3, "parts", 1), Some(vec![11, 12]));
        assert!(not_shown(&serde_json::json!({"bytes": 3})));
        assert!(!not_shown(&serde_json::json!("text")));
    }
}
