//! Workflow inputs put here before their invocation starts ([`crate::api::Put`]): the
//! planner streams an uploaded file into the arena (or a spill file when the arena has no
//! room), and the invocation then reads it by reference, like a large string input that is
//! staged ([`super::tell`]): pushed to the other workers whose tasks read it, freed after its
//! last reader.
//!
//! While its bytes are written the object counts a storage operation (`io`), so nothing
//! spills or frees it under the writer; one its invocation never takes is swept as a stray.

use std::path::PathBuf;

use faasflow_core::engine::InvocationId;

use super::Peers;
use crate::api::{InputError, Put};
use crate::runtime::calls::{Calls, Cx};
use crate::runtime::objects::{Object, Objects, Place};

impl Peers {
    /// One step of a put: a spill file to write to, when `Begin` found no room in the arena.
    pub(crate) fn put(&mut self, put: Put, calls: &Calls, cx: &mut Cx<'_>) -> Result<Option<PathBuf>, InputError> {
        match put {
            Put::Begin {
                invocation,
                workflow,
                version,
                name,
                len,
            } => self.put_begin(invocation, (workflow, version), name, len, cx),
            Put::Bytes {
                invocation,
                name,
                offset,
                bytes,
            } => {
                let id = self.put_id(invocation, &name, cx)?;
                let Some(o) = cx.objects.get(id) else {
                    return Err(InputError::Unknown { invocation, name });
                };
                let end = offset + bytes.len() as u64;
                if end > o.len {
                    return Err(InputError::TooLong { name, len: o.len, end });
                }
                match &o.place {
                    Place::Arena(e) => {
                        let e = *e;
                        cx.arena.write(e, offset, &bytes);
                        Ok(None)
                    }
                    _ => Err(InputError::Refused {
                        invocation,
                        name,
                        why: "its bytes go to a spill file, not the arena".into(),
                    }),
                }
            }
            Put::End { invocation, name, ok } => {
                let id = self.put_id(invocation, &name, cx)?;
                let now = cx.now;
                let released = match cx.objects.get_mut(id) {
                    Some(o) => {
                        o.io = o.io.saturating_sub(1);
                        // Swept a minute after it is whole, not after it was begun.
                        o.born = now;
                        o.released || !ok
                    }
                    None => true,
                };
                if released {
                    self.puts.remove(&(invocation, name.clone()));
                    calls.free_object(id, cx);
                }
                if ok && released {
                    return Err(InputError::Unknown { invocation, name });
                }
                Ok(None)
            }
        }
    }

    fn put_begin(
        &mut self,
        invocation: InvocationId,
        key: (String, u64),
        name: String,
        len: u64,
        cx: &mut Cx<'_>,
    ) -> Result<Option<PathBuf>, InputError> {
        let Some(wf) = cx.installs.key(&key) else {
            return Err(InputError::NotInstalled {
                workflow: key.0,
                version: key.1,
            });
        };
        let refused = |why: &str| InputError::Refused {
            invocation,
            name: name.clone(),
            why: why.to_owned(),
        };
        if cx.invocations.contains(invocation) || cx.invocations.ended.contains(invocation) {
            return Err(refused("the invocation has started already"));
        }
        if cx.invocations.cancelled.contains(invocation) {
            return Err(refused("the invocation was cancelled"));
        }
        // Refused before any byte moves (a planner retries an overloaded worker).
        if cx.invocations.len() >= cx.config.max_invocations {
            return Err(InputError::Overloaded(format!(
                "worker `{}` is overloaded: {} invocations are running on it (its --max-invocations); retry later",
                cx.config.name,
                cx.invocations.len()
            )));
        }
        if len > cx.arena.capacity() {
            return Err(InputError::LargerThanArena {
                name,
                len,
                capacity: cx.arena.capacity(),
                worker: cx.config.name.clone(),
            });
        }
        if self
            .puts
            .get(&(invocation, name.clone()))
            .is_some_and(|id| cx.objects.contains(*id))
        {
            return Err(refused("it is being put already"));
        }
        let id = cx.objects.new_id();
        let segment = cx.installs.segment_of(&wf);
        let (place, file) = if len == 0 {
            (Place::Empty, None)
        } else {
            match cx.arena.alloc(segment, len) {
                Ok(e) => {
                    cx.objects.add_resident(&wf, e.len);
                    (Place::Arena(e), None)
                }
                Err(_) => {
                    let path = cx.objects.spill_path(&format!("put-{invocation}-{id}"));
                    (Place::Spilled(path.clone()), Some(path))
                }
            }
        };
        let mut o = Object::foreign(place, len, wf, invocation, format!("input.{name}"), cx.now);
        o.io = 1;
        cx.objects.insert(id, o);
        self.puts.insert((invocation, name), id);
        Ok(file)
    }

    /// The object of a put under way or done.
    fn put_id(&self, invocation: InvocationId, name: &str, cx: &Cx<'_>) -> Result<u64, InputError> {
        self.puts
            .get(&(invocation, name.to_owned()))
            .copied()
            .filter(|id| cx.objects.contains(*id))
            .ok_or_else(|| InputError::Unknown {
                invocation,
                name: name.to_owned(),
            })
    }

    /// The objects put for inputs `names` of `invocation`, which starts now (each whole).
    pub(crate) fn take_puts(
        &mut self,
        invocation: InvocationId,
        names: &[String],
        objects: &Objects,
    ) -> Result<Vec<(String, u64)>, InputError> {
        let mut taken = Vec::with_capacity(names.len());
        for name in names {
            let id = self
                .puts
                .get(&(invocation, name.clone()))
                .copied()
                .filter(|id| objects.get(*id).is_some_and(|o| o.io == 0 && !o.released));
            match id {
                Some(id) => taken.push((name.clone(), id)),
                // The caller frees the others ([`Peers::drop_puts`]).
                None => {
                    return Err(InputError::NotPut {
                        invocation,
                        name: name.clone(),
                    });
                }
            }
        }
        for name in names {
            self.puts.remove(&(invocation, name.clone()));
        }
        Ok(taken)
    }

    /// Frees the puts of inputs `names` of `invocation`, which will not start here.
    pub(crate) fn drop_puts(&mut self, invocation: InvocationId, names: &[String], calls: &Calls, cx: &mut Cx<'_>) {
        for name in names {
            let key = (invocation, name.clone());
            let Some(&id) = self.puts.get(&key) else { continue };
            match cx.objects.get_mut(id) {
                // Still being written: freed when its writer ends it (`End` finds it here).
                Some(o) if o.io > 0 => o.released = true,
                _ => {
                    self.puts.remove(&key);
                    calls.free_object(id, cx);
                }
            }
        }
    }

    /// Forgets puts whose objects were freed (swept, or abandoned).
    pub(crate) fn forget_swept_puts(&mut self, cx: &Cx<'_>) {
        self.puts.retain(|_, id| cx.objects.contains(*id));
    }
}
