//! Running a function in a unit test, without a daemon: [`TestCall`] lays out a call's inputs
//! and reservations in an arena of this process, runs the function, and hands back what it
//! wrote. The function sees exactly the [`Context`] it sees under the daemon.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use faasflow_shm::Region;
use faasflow_shm::frame::{ObjectRef, Value};
use serde::de::DeserializeOwned;

use crate::context::{AllocError, Arena, CallSpec, Grants};
use crate::{Context, Error, Pack};

/// Room left for outputs that were not reserved, by default.
const DEFAULT_SPARE: usize = 1 << 20;
const SEGMENT: u32 = 0;

#[derive(Debug, Clone)]
enum TestValue {
    Absent,
    One(Vec<u8>),
    List(Vec<Vec<u8>>),
}

/// One call of a function, built for a test.
///
/// ```
/// use faasflow_sdk::testing::TestCall;
/// use faasflow_sdk::{Context, Error};
///
/// fn shout(ctx: &mut Context<'_>) -> Result<(), Error> {
///     let text = std::str::from_utf8(ctx.input("text")?)?;
///     ctx.output("text", text.to_uppercase().as_bytes())
/// }
///
/// let outcome = TestCall::new("shout").input("text", "hi").run(shout)?;
/// assert_eq!(outcome.output("text"), Some(&b"HI"[..]));
/// // No input: the function's error comes back.
/// assert!(TestCall::new("shout").run(shout).is_err());
/// # Ok::<(), Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct TestCall {
    function: String,
    call: u64,
    params: Vec<u8>,
    inputs: Vec<(String, TestValue)>,
    reserved: Vec<(String, usize)>,
    spare: usize,
    refusal: Option<String>,
}

/// What a [`TestCall`] wrote.
///
/// ```
/// use faasflow_sdk::testing::TestCall;
///
/// let outcome = TestCall::new("f").run(|ctx| ctx.output_json("n", &42))?;
/// assert_eq!(outcome.output_json::<u32>("n")?, 42);
/// assert_eq!(outcome.outputs().count(), 1);
/// # Ok::<(), faasflow_sdk::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    outputs: Vec<(String, Vec<u8>)>,
    allocs: Vec<(String, u64)>,
}

impl Outcome {
    /// The bytes of output `name`, if it was written.
    /// ```
    /// # use faasflow_sdk::testing::TestCall;
    /// let outcome = TestCall::new("f").run(|ctx| ctx.output("a", b"1"))?;
    /// assert_eq!(outcome.output("a"), Some(&b"1"[..]));
    /// assert_eq!(outcome.output("b"), None);
    /// # Ok::<(), faasflow_sdk::Error>(())
    /// ```
    pub fn output(&self, name: &str) -> Option<&[u8]> {
        self.outputs.iter().find(|(n, _)| n == name).map(|(_, b)| b.as_slice())
    }

    /// Output `name` parsed as JSON (an error if it is missing or not valid JSON for `T`).
    /// ```
    /// # use faasflow_sdk::testing::TestCall;
    /// let outcome = TestCall::new("f").run(|ctx| ctx.output_json("n", &[1, 2]))?;
    /// assert_eq!(outcome.output_json::<Vec<u8>>("n")?, [1, 2]);
    /// # Ok::<(), faasflow_sdk::Error>(())
    /// ```
    pub fn output_json<T: DeserializeOwned>(&self, name: &str) -> Result<T, Error> {
        let bytes = self
            .output(name)
            .ok_or_else(|| Error::new(format_args!("output `{name}` was not written")))?;
        Ok(serde_json::from_slice(bytes)?)
    }

    /// Every output written, in the order it was written.
    /// ```
    /// # use faasflow_sdk::testing::TestCall;
    /// let outcome = TestCall::new("f").run(|ctx| {
    ///     ctx.output("b", b"")?;
    ///     ctx.output("a", b"x")
    /// })?;
    /// assert_eq!(outcome.outputs().map(|(n, _)| n).collect::<Vec<_>>(), ["b", "a"]);
    /// # Ok::<(), faasflow_sdk::Error>(())
    /// ```
    pub fn outputs(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.outputs.iter().map(|(n, b)| (n.as_str(), b.as_slice()))
    }

    /// The room the function had to ask for (outputs without a reservation, or larger than
    /// it), by output name and length: each of these costs a round trip to the daemon.
    /// ```
    /// # use faasflow_sdk::testing::TestCall;
    /// let outcome = TestCall::new("f").reserve("a", 4).run(|ctx| {
    ///     ctx.output("a", b"fits")?;
    ///     ctx.output("b", b"no reservation")
    /// })?;
    /// assert_eq!(outcome.allocs(), [("b".to_string(), 14)]);
    /// # Ok::<(), faasflow_sdk::Error>(())
    /// ```
    pub fn allocs(&self) -> &[(String, u64)] {
        &self.allocs
    }
}

impl TestCall {
    /// A call of function `function` with no parameters, inputs or reservations.
    /// ```
    /// let outcome = faasflow_sdk::testing::TestCall::new("noop").run(|_| Ok(()))?;
    /// assert_eq!(outcome.outputs().count(), 0);
    /// # Ok::<(), faasflow_sdk::Error>(())
    /// ```
    pub fn new(function: &str) -> TestCall {
        TestCall {
            function: function.to_owned(),
            call: 1,
            params: Vec::new(),
            inputs: Vec::new(),
            reserved: Vec::new(),
            spare: DEFAULT_SPARE,
            refusal: None,
        }
    }

    /// Sets the call id ([`Context::call`]).
    /// ```
    /// # use faasflow_sdk::testing::TestCall;
    /// TestCall::new("f").call_id(9).run(|ctx| Ok(assert_eq!(ctx.call(), 9)))?;
    /// # Ok::<(), faasflow_sdk::Error>(())
    /// ```
    pub fn call_id(mut self, call: u64) -> TestCall {
        self.call = call;
        self
    }

    /// Sets the parameters ([`Context::params`]).
    /// ```
    /// # use faasflow_sdk::testing::TestCall;
    /// TestCall::new("f").params(r#"{"n": 1}"#).run(|ctx| Ok(assert_eq!(ctx.params(), br#"{"n": 1}"#)))?;
    /// # Ok::<(), faasflow_sdk::Error>(())
    /// ```
    pub fn params(mut self, params: impl AsRef<[u8]>) -> TestCall {
        self.params = params.as_ref().to_vec();
        self
    }

    /// Adds input `name` holding one object.
    /// ```
    /// # use faasflow_sdk::testing::TestCall;
    /// TestCall::new("f").input("x", [1u8, 2]).run(|ctx| Ok(assert_eq!(ctx.input("x")?, [1, 2])))?;
    /// # Ok::<(), faasflow_sdk::Error>(())
    /// ```
    pub fn input(mut self, name: &str, bytes: impl AsRef<[u8]>) -> TestCall {
        self.inputs
            .push((name.to_owned(), TestValue::One(bytes.as_ref().to_vec())));
        self
    }

    /// Adds input `name` holding a list of objects (as after a foreach).
    /// ```
    /// # use faasflow_sdk::testing::TestCall;
    /// TestCall::new("f").input_list("xs", ["a", "b"]).run(|ctx| Ok(assert_eq!(ctx.inputs("xs")?.len(), 2)))?;
    /// # Ok::<(), faasflow_sdk::Error>(())
    /// ```
    pub fn input_list<B: AsRef<[u8]>>(mut self, name: &str, items: impl IntoIterator<Item = B>) -> TestCall {
        let items = items.into_iter().map(|b| b.as_ref().to_vec()).collect();
        self.inputs.push((name.to_owned(), TestValue::List(items)));
        self
    }

    /// Adds input `name`, absent (as when a switch skipped its producers).
    /// ```
    /// # use faasflow_sdk::testing::TestCall;
    /// TestCall::new("f").input_absent("x").run(|ctx| Ok(assert_eq!(ctx.input_opt("x")?, None)))?;
    /// # Ok::<(), faasflow_sdk::Error>(())
    /// ```
    pub fn input_absent(mut self, name: &str) -> TestCall {
        self.inputs.push((name.to_owned(), TestValue::Absent));
        self
    }

    /// Reserves `len` bytes for output `name`, as the daemon does for declared outputs.
    /// ```
    /// # use faasflow_sdk::testing::TestCall;
    /// let outcome = TestCall::new("f").reserve("out", 8).run(|ctx| ctx.output("out", b"12345678"))?;
    /// assert!(outcome.allocs().is_empty());
    /// # Ok::<(), faasflow_sdk::Error>(())
    /// ```
    pub fn reserve(mut self, name: &str, len: usize) -> TestCall {
        self.reserved.push((name.to_owned(), len));
        self
    }

    /// Sets the room for outputs beyond their reservations (1 MiB by default); asking for
    /// more fails the output, as a full arena does.
    /// ```
    /// # use faasflow_sdk::testing::TestCall;
    /// TestCall::new("f").spare(16).run(|ctx| {
    ///     assert!(ctx.output("big", &[0; 17]).is_err());
    ///     ctx.output("small", &[0; 16])
    /// })?;
    /// # Ok::<(), faasflow_sdk::Error>(())
    /// ```
    pub fn spare(mut self, bytes: usize) -> TestCall {
        self.spare = bytes;
        self
    }

    /// Refuses every request for room beyond the reservations with `message`, as a daemon
    /// whose arena is full does.
    /// ```
    /// # use faasflow_sdk::testing::TestCall;
    /// TestCall::new("f").refuse_allocs("arena full").run(|ctx| {
    ///     let err = ctx.output("out", b"x").unwrap_err();
    ///     assert_eq!(err.message(), "output `out` (1 bytes): arena full");
    ///     Ok(())
    /// })?;
    /// # Ok::<(), faasflow_sdk::Error>(())
    /// ```
    pub fn refuse_allocs(mut self, message: &str) -> TestCall {
        self.refusal = Some(message.to_owned());
        self
    }

    /// Runs function `self`'s function of `pack`.
    /// ```
    /// # use faasflow_sdk::{Pack, testing::TestCall};
    /// let pack = Pack::new("p").function("hi", |ctx| ctx.output("out", b"hi"));
    /// assert_eq!(TestCall::new("hi").run_in(&pack)?.output("out"), Some(&b"hi"[..]));
    /// assert!(TestCall::new("bye").run_in(&pack).is_err());
    /// # Ok::<(), faasflow_sdk::Error>(())
    /// ```
    pub fn run_in(self, pack: &Pack) -> Result<Outcome, Error> {
        let f = pack.find(&self.function).cloned().ok_or_else(|| {
            Error::new(format_args!(
                "pack `{}` has no function `{}`",
                pack.name(),
                self.function
            ))
        })?;
        self.run(|ctx| f(ctx))
    }

    /// Runs `function` once on this call; returns what it wrote, or its error (or the
    /// protocol violation it hit). A panic in the function propagates.
    /// ```
    /// # use faasflow_sdk::testing::TestCall;
    /// let err = TestCall::new("f").run(|_| Err("no".into())).unwrap_err();
    /// assert_eq!(err.message(), "no");
    /// ```
    pub fn run(self, function: impl FnOnce(&mut Context<'_>) -> Result<(), Error>) -> Result<Outcome, Error> {
        let mut layout = Layout::default();
        let inputs: Vec<(String, Value, &TestValue)> = self
            .inputs
            .iter()
            .map(|(n, v)| {
                let value = match v {
                    TestValue::Absent => Value::Absent,
                    TestValue::One(b) => Value::One(layout.place(b.len())),
                    TestValue::List(l) => Value::List(l.iter().map(|b| layout.place(b.len())).collect()),
                };
                (n.clone(), value, v)
            })
            .collect();
        let reserved: Vec<(String, ObjectRef)> = self
            .reserved
            .iter()
            .map(|(n, len)| (n.clone(), layout.place(*len)))
            .collect();
        let spare_start = layout.next;
        let end = (spare_start as usize).saturating_add(self.spare);
        let len = end.max(4096);
        let region = Arc::new(
            Region::create("faasflow-test-arena", len)
                .map_err(|e| Error::new(format_args!("cannot create a test arena: {e}")))?,
        );
        for (_, value, test) in &inputs {
            match (value, test) {
                (Value::One(r), TestValue::One(b)) => write(&region, r, b),
                (Value::List(rs), TestValue::List(bs)) => rs.iter().zip(bs).for_each(|(r, b)| write(&region, r, b)),
                _ => {}
            }
        }
        let arena = Arena::new(region.clone(), SEGMENT);
        let grants = TestGrants {
            state: Mutex::new((spare_start, Vec::new())),
            end: end as u64,
            refusal: self.refusal.clone(),
        };
        let inputs: Vec<(String, Value)> = inputs.into_iter().map(|(n, v, _)| (n, v)).collect();
        let spec = CallSpec {
            function: &self.function,
            call: self.call,
            params: &self.params,
            inputs: &inputs,
            reserved: &reserved,
        };
        let mut ctx = Context::new(spec, &arena, &grants, Instant::now());
        let result = function(&mut ctx);
        let finished = ctx.finish();
        if let Some(violation) = finished.violation {
            return Err(violation.into());
        }
        result?;
        let outputs = finished
            .written
            .iter()
            .map(|(n, r)| (n.clone(), read(&region, r)))
            .collect();
        let allocs = grants.state.into_inner().unwrap_or_else(|e| e.into_inner()).1;
        Ok(Outcome { outputs, allocs })
    }
}

/// Bump placement of objects, 8-byte aligned.
#[derive(Default)]
struct Layout {
    next: u64,
}

impl Layout {
    fn place(&mut self, len: usize) -> ObjectRef {
        let r = ObjectRef {
            segment: SEGMENT,
            offset: self.next,
            len: len as u64,
        };
        self.next = (self.next + len as u64).next_multiple_of(8);
        r
    }
}

fn write(region: &Region, r: &ObjectRef, bytes: &[u8]) {
    let ptr = region.range_ptr(r.offset, r.len).expect("placed inside the test arena");
    // SAFETY: `range_ptr` checked the `bytes.len()` (= `r.len`) bytes are inside the mapping;
    // the region was just created by this function and nothing else uses it yet.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr, bytes.len()) };
}

fn read(region: &Region, r: &ObjectRef) -> Vec<u8> {
    // The extent was checked against this arena when the function wrote it.
    let Some(ptr) = region.range_ptr(r.offset, r.len) else {
        return Vec::new();
    };
    // SAFETY: inside the mapping (checked just above); the function that wrote it has
    // returned, and nothing else in this process or another writes this private arena.
    unsafe { std::slice::from_raw_parts(ptr, r.len as usize) }.to_vec()
}

/// Grants room from the spare end of the test arena.
struct TestGrants {
    /// Next free offset, and the allocations made.
    state: Mutex<(u64, Vec<(String, u64)>)>,
    end: u64,
    refusal: Option<String>,
}

impl Grants for TestGrants {
    fn abandon(&self, _call: u64, _exec_ns: u64, message: String) -> ! {
        panic!("{message}")
    }

    fn alloc(&self, _call: u64, name: &str, len: u64) -> Result<ObjectRef, AllocError> {
        if let Some(refusal) = &self.refusal {
            return Err(AllocError::Refused(refusal.clone()));
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let offset = state.0;
        if offset.saturating_add(len) > self.end {
            return Err(AllocError::Refused(format!(
                "the test arena has {} spare bytes left (see `TestCall::spare`)",
                self.end.saturating_sub(offset)
            )));
        }
        state.0 = (offset + len).next_multiple_of(8);
        state.1.push((name.to_owned(), len));
        Ok(ObjectRef {
            segment: SEGMENT,
            offset,
            len,
        })
    }
}
