//! `faasflow._native`: the native part of the `faasflow` Python package.
//!
//! Python functions are served by the same pack runtime as functions in Rust
//! ([`faasflow_sdk::serve_with_args`]: the handshake, the rings, the doorbell, the arena): each
//! Python function is registered in a [`Pack`] as a closure that attaches to the interpreter
//! and calls it with a [`PyContext`] over the call's [`Context`]. The interpreter is detached
//! everywhere else: while the runtime's threads wait on the ring, and while a call waits for
//! the daemon to grant room for an output. So calls of one instance run on several threads,
//! taking turns at the interpreter, and an instance waiting for work holds nothing.
//!
//! # Views of the arena
//! `ctx.input(name)` is a read-only `memoryview` over the input's bytes in the arena, and
//! `ctx.output(name, size)` a writable one over the output's extent: no copy either way. The
//! memory is the call's only while the call runs (see `faasflow_sdk::Context`), so a view
//! must not be used after it, and CPython cannot take a buffer back from whoever holds it.
//! Each view handed out is a `memoryview` of a [`lease`] of the memory: an object of a type of
//! this crate that counts the buffers taken from it. Everything made from the view (a slice
//! `view[2:]`, a memoryview of it, the one `numpy.frombuffer` keeps, `memoryview(view.obj)`, a
//! `pyarrow` buffer) holds such a buffer until it is released. When the call returns, the view
//! is released and its lease ended (it gives no buffer any more):
//! When every buffer is back, no Python object can reach the memory any more:
//! using a kept view raises `ValueError` ("operation forbidden on released memoryview
//! object"). When one is still held after a garbage collection, the call fails with a message
//! naming the view and what to do, and the instance ends itself at once
//! ([`Context::abandon_instance`], with the interpreter still attached, so that no Python code
//! runs in between): the daemon replaces it, and no pointer into reused memory is ever read.

use std::ffi::OsString;
use std::ptr::NonNull;
use std::sync::Mutex;
use std::thread::ThreadId;

use faasflow_sdk::{Context, Error, Pack};
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString};
use pyo3::{ffi, intern};

mod lease;

mod errors {
    pyo3::create_exception!(
        faasflow,
        Error,
        pyo3::exceptions::PyException,
        "A call's request that cannot be met: an input it does not have, an output written twice, \
         no room for an output. Uncaught, it fails the call with its message."
    );
}
use errors::Error as PyFaasflowError;

/// The most functions one pack serves (the handshake's limit).
const MAX_FUNCTIONS: usize = 4096;

/// The longest message a call's failure carries (the protocol's limit, 8 KiB, with room to
/// spare).
const MAX_MESSAGE: usize = 8000;

/// A pointer to the call's [`Context`], valid while the call runs.
struct Raw(NonNull<Context<'static>>);

// SAFETY: the pointer is dereferenced only on the thread that runs the call (checked by
// `PyContext::with` against `owner`), and only while the call runs (`close` clears it before
// the call's closure returns); moving it between threads dereferences nothing.
unsafe impl Send for Raw {}

/// A view handed out during a call, and the lease it was made from.
struct View {
    lease: Py<PyAny>,
    view: Py<PyAny>,
    /// `input `text``, `output `blob``: named when it is kept past the call.
    what: String,
}

struct Call {
    ctx: Option<Raw>,
    views: Vec<View>,
}

/// What a Python function gets: its call's inputs, outputs and parameters.
///
/// Valid during its call only: afterwards every method raises `faasflow.Error`, and every view
/// it handed out is released.
#[pyclass(module = "faasflow", name = "Context", frozen)]
struct PyContext {
    call: Mutex<Call>,
    owner: ThreadId,
    function: String,
    id: u64,
}

impl PyContext {
    fn new(ctx: &mut Context<'_>) -> PyContext {
        PyContext {
            function: ctx.function().to_owned(),
            id: ctx.call(),
            owner: std::thread::current().id(),
            call: Mutex::new(Call {
                ctx: Some(Raw(NonNull::from(ctx).cast::<Context<'static>>())),
                views: Vec::new(),
            }),
        }
    }

    /// Runs `f` on the call's context, on the call's thread, while the call runs.
    fn with<R>(&self, f: impl FnOnce(&mut Context<'static>, &mut Vec<View>) -> PyResult<R>) -> PyResult<R> {
        if std::thread::current().id() != self.owner {
            return Err(PyRuntimeError::new_err(format!(
                "the ctx of call {} of `{}` is used on another thread than the call's: use it on the thread \
                 the function was called on",
                self.id, self.function
            )));
        }
        // Only the call's thread gets here, so a lock already taken is this thread's own, taken
        // again from Python code run during a use (a finalizer during an allocation, say).
        let mut call = match self.call.try_lock() {
            Ok(call) => call,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => {
                return Err(PyRuntimeError::new_err(format!(
                    "the ctx of call {} of `{}` is used from code run while it is in use (a finalizer?)",
                    self.id, self.function
                )));
            }
        };
        let Call { ctx, views } = &mut *call;
        let Some(Raw(ptr)) = ctx else {
            return Err(PyFaasflowError::new_err(format!(
                "call {} of `{}` has ended: its ctx, and the views it gave, are valid during the call only",
                self.id, self.function
            )));
        };
        // SAFETY: `ptr` was made from the `&mut Context` the call's closure holds, which
        // outlives this (the closure calls `close`, clearing it, before it returns); it is
        // used on the call's own thread (checked above), and not re-entered: the mutex is held
        // for the whole use.
        let ctx = unsafe { ptr.as_mut() };
        f(ctx, views)
    }

    /// Ends the call: the context is no longer reachable, and every view is released. Returns
    /// the views that could not be released (something made from them is still alive).
    fn close(&self, py: Python<'_>) -> Vec<String> {
        let mut call = self.call.lock().unwrap_or_else(|e| e.into_inner());
        call.ctx = None;
        let views = std::mem::take(&mut call.views);
        drop(call);
        if views.is_empty() {
            return Vec::new();
        }
        // Released, and no buffer of its lease out (the lease gives none from now on).
        let release = |v: &View| {
            let _ = v.view.bind(py).call_method0(intern!(py, "release"));
            lease::end(v.lease.bind(py))
        };
        let mut held: Vec<View> = views.into_iter().filter(|v| !release(v)).collect();
        if !held.is_empty() {
            // A cycle may be what keeps them: collect once and look again.
            if let Ok(gc) = py.import(intern!(py, "gc")) {
                let _ = gc.call_method0(intern!(py, "collect"));
            }
            held.retain(|v| {
                let _ = v.view.bind(py).call_method0(intern!(py, "release"));
                !lease::idle(v.lease.bind(py))
            });
        }
        held.into_iter().map(|v| v.what).collect()
    }
}

/// A view over `len` bytes at `ptr` (a memoryview of a [`lease`] of them), named `what`.
fn view_over(py: Python<'_>, ptr: *mut u8, len: usize, writable: bool, what: String) -> PyResult<View> {
    // The memory is arena memory of the running call (an input, sealed, or an output extent that
    // belongs to the call), mapped for the instance's life; the lease does not own it, and it is
    // ended before the call ends (`PyContext::close`).
    let lease = lease::new(py, ptr, len, writable)?;
    // SAFETY: `lease` is a live object with the buffer protocol; the view takes one buffer from
    // it (counted in the lease until the view and everything made from it are released).
    let view = unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyMemoryView_FromObject(lease.as_ptr()))? };
    Ok(View {
        lease: lease.unbind(),
        view: view.unbind(),
        what,
    })
}

fn sdk_error(e: Error) -> PyErr {
    PyFaasflowError::new_err(e.message().to_owned())
}

#[pymethods]
impl PyContext {
    /// The name of the function called (its handler, `module:function`).
    #[getter]
    fn function(&self) -> &str {
        &self.function
    }

    /// The call's id (in the daemon's logs).
    #[getter]
    fn call(&self) -> u64 {
        self.id
    }

    /// The call site's parameters, parsed as JSON (`{}` when there are none).
    #[getter]
    fn params<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let bytes = self.with(|ctx, _| Ok(ctx.params().to_vec()))?;
        if bytes.is_empty() {
            return Ok(PyDict::new(py).into_any());
        }
        json_loads(py, &bytes, "the parameters")
    }

    /// The names of the call's inputs.
    fn input_names(&self) -> PyResult<Vec<String>> {
        self.with(|ctx, _| Ok(ctx.input_names().map(str::to_owned).collect()))
    }

    /// The names of the outputs the workflow declares for the function (the daemon reserved
    /// room for each).
    fn output_names(&self) -> PyResult<Vec<String>> {
        self.with(|ctx, _| Ok(ctx.output_reservations().map(|(n, _)| n.to_owned()).collect()))
    }

    /// Input `name` as a read-only memoryview over the arena (no copy): `bytes(view)` copies
    /// it, `numpy.frombuffer(view, dtype)` reads it as an array. Valid during the call only.
    fn input<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
        self.with(|ctx, views| {
            let bytes = ctx.input(name).map_err(sdk_error)?;
            lend(py, views, bytes, &format!("input `{name}`"))
        })
    }

    /// Input `name`, or `None` when it is absent (every step producing it was skipped by a
    /// switch).
    fn input_opt<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.with(|ctx, views| match ctx.input_opt(name).map_err(sdk_error)? {
            Some(bytes) => lend(py, views, bytes, &format!("input `{name}`")).map(Some),
            None => Ok(None),
        })
    }

    /// Input `name` as a list of read-only memoryviews: a foreach's element outputs in order,
    /// one object as a list of one, an absent input as `[]`.
    fn inputs<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyList>> {
        self.with(|ctx, views| {
            let items = ctx.inputs(name).map_err(sdk_error)?;
            let list = PyList::empty(py);
            for (i, bytes) in items.into_iter().enumerate() {
                list.append(lend(py, views, bytes, &format!("input `{name}` [{i}]"))?)?;
            }
            Ok(list)
        })
    }

    /// Input `name` as text (UTF-8): a string given as a workflow input or a foreach element
    /// arrives as its text.
    fn input_text(&self, name: &str) -> PyResult<String> {
        self.with(|ctx, _| {
            let bytes = ctx.input(name).map_err(sdk_error)?;
            std::str::from_utf8(bytes)
                .map(str::to_owned)
                .map_err(|e| PyFaasflowError::new_err(format!("input `{name}` is not UTF-8 text: {e}")))
        })
    }

    /// Input `name` parsed as JSON.
    fn input_json<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
        let bytes = self.with(|ctx, _| ctx.input(name).map(<[u8]>::to_vec).map_err(sdk_error))?;
        json_loads(py, &bytes, &format!("input `{name}`"))
    }

    /// Output `name` of `size` bytes, as a writable memoryview over its room in the arena: fill
    /// all of it (it starts with unspecified bytes). Each output is written once. Use it as is,
    /// or as `with ctx.output(name, size) as buf: ...`.
    fn output<'py>(&self, py: Python<'py>, name: &str, size: usize) -> PyResult<Bound<'py, PyAny>> {
        self.with(|ctx, views| {
            let fits = ctx.output_reservations().any(|(n, room)| n == name && size <= room);
            let ptr = if fits {
                ctx.output_with(name, size, |buf| buf.as_mut_ptr())
            } else {
                // The daemon is asked for room: wait for it detached from the interpreter.
                let ctx = Raw(NonNull::from(&mut *ctx));
                let name = name.to_owned();
                py.detach(move || {
                    let mut ctx = ctx;
                    // SAFETY: the same context as above, on the same thread (detaching does not
                    // move the call), while `with` holds the call's mutex.
                    let ctx = unsafe { ctx.0.as_mut() };
                    ctx.output_with(&name, size, |buf| Addr(buf.as_mut_ptr()))
                })
                .map(|a| a.0)
            }
            .map_err(sdk_error)?;
            // The extent is the call's until its completion, which is pushed after the function
            // returns and its views are released (`PyContext::close`).
            let view = view_over(py, ptr, size, true, format!("output `{name}`"))?;
            let handed = view.view.clone_ref(py).into_bound(py);
            views.push(view);
            Ok(handed)
        })
    }

    /// Writes output `name` from `data` (bytes, or anything with the buffer protocol): one
    /// copy, into the arena.
    fn output_bytes(&self, py: Python<'_>, name: &str, data: &Bound<'_, PyAny>) -> PyResult<()> {
        if let Ok(b) = data.cast::<PyBytes>() {
            let bytes = b.as_bytes();
            return self.with(|ctx, _| ctx.output(name, bytes).map_err(sdk_error));
        }
        let len = data
            .call_method0(intern!(py, "__len__"))
            .and_then(|_| {
                py.import(intern!(py, "builtins"))?
                    .getattr("memoryview")?
                    .call1((data,))
            })
            .map_err(|_| {
                PyTypeError::new_err(format!(
                    "output `{name}`: {} is not bytes-like: give bytes, a bytearray, a memoryview or an array",
                    type_name(data)
                ))
            })?;
        let nbytes: usize = len.getattr(intern!(py, "nbytes"))?.extract()?;
        let flat = len.call_method1(intern!(py, "cast"), ("B",))?;
        let buf = self.output(py, name, nbytes)?;
        buf.set_item(pyo3::types::PySlice::full(py), flat)?;
        Ok(())
    }

    /// Writes output `name` as the JSON encoding of `value` (dicts, lists, strings, numbers,
    /// booleans, None).
    fn output_json(&self, py: Python<'_>, name: &str, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let json = py.import(intern!(py, "json"))?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("separators", (",", ":"))?;
        kwargs.set_item("ensure_ascii", false)?;
        let text = json.call_method("dumps", (value,), Some(&kwargs)).map_err(|e| {
            let err = PyTypeError::new_err(format!("output `{name}` cannot be encoded as JSON: {}", e.value(py)));
            err.set_cause(py, Some(e));
            err
        })?;
        let text = text.cast_into::<PyString>()?;
        let text = text.to_cow()?;
        self.with(|ctx, _| ctx.output(name, text.as_bytes()).map_err(sdk_error))
    }

    fn __repr__(&self) -> String {
        format!("<faasflow.Context of call {} of `{}`>", self.id, self.function)
    }
}

/// A pointer that may cross [`Python::detach`] (it is only used on the same thread).
struct Addr(*mut u8);

// SAFETY: an address; see `PyContext::output`, which uses it on the call's thread.
unsafe impl Send for Addr {}

fn lend<'py>(py: Python<'py>, views: &mut Vec<View>, bytes: &[u8], what: &str) -> PyResult<Bound<'py, PyAny>> {
    let view = view_over(py, bytes.as_ptr().cast_mut(), bytes.len(), false, what.to_owned())?;
    let handed = view.view.clone_ref(py).into_bound(py);
    views.push(view);
    Ok(handed)
}

fn json_loads<'py>(py: Python<'py>, bytes: &[u8], what: &str) -> PyResult<Bound<'py, PyAny>> {
    let json = py.import(intern!(py, "json"))?;
    json.call_method1(intern!(py, "loads"), (PyBytes::new(py, bytes),))
        .map_err(|e| {
            let err = PyFaasflowError::new_err(format!("{what} is not valid JSON: {}", e.value(py)));
            err.set_cause(py, Some(e));
            err
        })
}

fn type_name(v: &Bound<'_, PyAny>) -> String {
    v.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "the value".to_owned())
}

/// The closure that serves Python function `handler` under `name`.
fn serving(name: String, handler: Py<PyAny>) -> impl Fn(&mut Context<'_>) -> Result<(), Error> + Send + Sync + 'static {
    move |ctx| {
        keep_thread_state();
        Python::attach(|py| {
            let pyctx = Bound::new(py, PyContext::new(ctx)).map_err(|e| Error::from(describe(py, &name, &e)))?;
            // The context is closed however the call ends, a panic in it included (caught here,
            // raised again once it is closed), so no pointer to this call outlives it.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler.bind(py).call1((&pyctx,))));
            // What the call says, before its context is closed: an exception's traceback keeps
            // the frames' locals (views among them) alive until it is dropped.
            let said = match &result {
                Ok(Ok(v)) if v.is_none() => Ok(()),
                Ok(Ok(v)) => Err(Error::new(format_args!(
                    "`{name}` returned {} instead of None: a function writes its outputs with ctx.output_json, \
                     ctx.output_bytes or ctx.output",
                    type_name(v)
                ))),
                Ok(Err(e)) => Err(Error::from(describe(py, &name, e))),
                Err(_) => Ok(()),
            };
            let result = result.map(drop);
            let held = pyctx.get().close(py);
            if !held.is_empty() {
                let message = format!(
                    "`{name}` kept {} past its call (something made from it is still alive: a slice, a \
                     numpy array, a pyarrow buffer); its memory is reused once the call ends, so this \
                     instance stopped itself: copy what you keep (`bytes(view)`, `array.copy()`)",
                    held.join(", ")
                );
                // Attached: no Python code runs before the process ends.
                ctx.abandon_instance(&message);
            }
            match result {
                Ok(()) => said,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }
}

thread_local! {
    /// This thread has a Python thread state of its own for good ([`keep_thread_state`]).
    static KEPT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Gives the runtime thread calling this a Python thread state that lives as long as the
/// thread, so that attaching for each call only takes the GIL. Without it, every call would
/// create and destroy one (`PyGILState_Ensure` on a thread without one, then
/// `PyGILState_Release` back to zero), a few µs per call.
fn keep_thread_state() {
    if KEPT.get() {
        return;
    }
    // SAFETY: the interpreter is initialised (this runs inside `faasflow._native.serve`, called
    // from Python) and this thread holds no GIL and no thread state of pyo3's (it is a thread of
    // the sdk runtime, between calls). `PyGILState_Ensure` makes this thread's state and takes
    // the GIL; `PyEval_SaveThread` releases the GIL and keeps the state, whose count stays at
    // one, so later `PyGILState_Ensure`/`Release` pairs (`Python::attach`) never drop it.
    unsafe {
        let _ = ffi::PyGILState_Ensure();
        let _ = ffi::PyEval_SaveThread();
    }
    KEPT.set(true);
}

/// The failure of a call from its exception: the exception's line first, then the traceback
/// (its last frames when it is long). `sys.exit` says what to do instead.
fn describe(py: Python<'_>, name: &str, e: &PyErr) -> String {
    if e.is_instance_of::<pyo3::exceptions::PySystemExit>(py) {
        let code = e
            .value(py)
            .getattr("code")
            .map(|c| c.to_string())
            .unwrap_or_else(|_| "None".into());
        return format!(
            "`{name}` called sys.exit({code}): a function returns to end its call, or raises an exception to fail it"
        );
    }
    let formatted = (|| -> PyResult<(String, String)> {
        let tb = py.import("traceback")?;
        let only: Vec<String> = tb
            .call_method1("format_exception_only", (e.get_type(py), e.value(py)))?
            .extract()?;
        let frames = match e.traceback(py) {
            Some(t) => tb.call_method1("format_tb", (t,))?.extract::<Vec<String>>()?.concat(),
            None => String::new(),
        };
        Ok((only.concat().trim_end().to_owned(), frames))
    })();
    let (head, frames) = formatted.unwrap_or_else(|_| (e.to_string(), String::new()));
    if frames.is_empty() {
        return head;
    }
    let room = MAX_MESSAGE.saturating_sub(head.len() + 80);
    let frames = if frames.len() > room {
        let mut start = frames.len() - room;
        while !frames.is_char_boundary(start) {
            start += 1;
        }
        format!(
            "Traceback (most recent call last, cut to its last frames):\n…{}",
            &frames[start..]
        )
    } else {
        format!("Traceback (most recent call last):\n{frames}")
    };
    format!("{head}\n{}", frames.trim_end())
}

/// Serves `functions` (name, callable) as pack `pack`, an instance of the faasflow daemon;
/// `args` are `[]` or `["--list"]`. Does not return: the process exits when the daemon closes
/// the instance (see `faasflow_sdk::serve`).
#[pyfunction]
fn serve(py: Python<'_>, pack: String, functions: Vec<(String, Py<PyAny>)>, args: Vec<String>) -> PyResult<()> {
    if pack.is_empty() || pack.len() > 255 {
        return Err(PyValueError::new_err(format!(
            "a pack name has 1 to 255 bytes, `{pack}` has {}",
            pack.len()
        )));
    }
    if functions.len() > MAX_FUNCTIONS {
        return Err(PyValueError::new_err(format!(
            "a pack serves at most {MAX_FUNCTIONS} functions, not {}",
            functions.len()
        )));
    }
    let mut p = Pack::new(pack);
    let mut seen = std::collections::HashSet::new();
    for (name, f) in functions {
        if name.is_empty() || name.len() > 255 || !seen.insert(name.clone()) {
            return Err(PyValueError::new_err(format!(
                "function name `{name}` is empty, longer than 255 bytes or given twice"
            )));
        }
        if !f.bind(py).is_callable() {
            return Err(PyTypeError::new_err(format!("`{name}` is not callable")));
        }
        p = p.function(&name.clone(), serving(name, f));
    }
    let args: Vec<OsString> = args.into_iter().map(OsString::from).collect();
    py.detach(move || faasflow_sdk::serve_with_args(p, args))
}

/// The native part of the `faasflow` package.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyContext>()?;
    m.add("Error", m.py().get_type::<PyFaasflowError>())?;
    m.add_function(wrap_pyfunction!(serve, m)?)?;
    Ok(())
}
