//! [`Lease`]: the exporter of every view a call is given, a Python type of its own that counts
//! the buffers taken from it and refuses new ones once its call has ended.
//!
//! A `memoryview` made from a lease (`PyMemoryView_FromObject`) takes one buffer from it, which
//! it and everything made from it (slices, `memoryview(view)`, the one `numpy.frombuffer`
//! keeps) share until the last of them is released; a `pyarrow` buffer, or `memoryview(
//! view.obj)`, takes one more. So `exports == 0` once the handed-out view is released means
//! no Python object holds a buffer of the memory, and `released` makes sure none takes one
//! later (`view.obj` is the lease itself).
//!
//! The type is made with `PyType_FromSpec` and the buffer slots (`Py_bf_getbuffer`,
//! `Py_bf_releasebuffer`), and fills `Py_buffer` with `PyBuffer_FillInfo`: CPython's stable ABI
//! lists these from Python 3.11 on, and every CPython 3 has them with the same numbers and the
//! same `Py_buffer` layout, which is how this one abi3 wheel serves 3.9 and 3.10 too.

use std::ffi::{c_int, c_void};
use std::sync::OnceLock;

use pyo3::exceptions::PyValueError;
use pyo3::ffi;
use pyo3::prelude::*;

/// CPython's `Py_buffer` (Include/pybuffer.h), the same in every CPython 3.
#[repr(C)]
pub(crate) struct PyBuffer {
    buf: *mut c_void,
    obj: *mut ffi::PyObject,
    len: ffi::Py_ssize_t,
    itemsize: ffi::Py_ssize_t,
    readonly: c_int,
    ndim: c_int,
    format: *mut std::ffi::c_char,
    shape: *mut ffi::Py_ssize_t,
    strides: *mut ffi::Py_ssize_t,
    suboffsets: *mut ffi::Py_ssize_t,
    internal: *mut c_void,
}

unsafe extern "C" {
    fn PyBuffer_FillInfo(
        view: *mut PyBuffer,
        obj: *mut ffi::PyObject,
        buf: *mut c_void,
        len: ffi::Py_ssize_t,
        readonly: c_int,
        flags: c_int,
    ) -> c_int;
}

/// `Py_bf_getbuffer` and `Py_bf_releasebuffer` of CPython's typeslots.h.
const BF_GETBUFFER: c_int = 1;
const BF_RELEASEBUFFER: c_int = 2;

/// The object: a Python object header, then the memory it lends.
#[repr(C)]
struct Lease {
    ob_base: ffi::PyObject,
    ptr: *mut u8,
    len: ffi::Py_ssize_t,
    readonly: c_int,
    /// Its call ended: no buffer is given any more.
    released: c_int,
    /// Buffers given and not yet given back.
    exports: ffi::Py_ssize_t,
}

unsafe extern "C" fn getbuffer(obj: *mut ffi::PyObject, view: *mut PyBuffer, flags: c_int) -> c_int {
    let lease = obj.cast::<Lease>();
    // SAFETY: CPython calls this slot with an object of this type (`obj`), attached to the
    // interpreter, and a `Py_buffer` to fill (`view`).
    unsafe {
        if (*lease).released != 0 {
            ffi::PyErr_SetString(
                ffi::PyExc_ValueError,
                c"operation forbidden on the view of a call that has ended".as_ptr(),
            );
            return -1;
        }
        let filled = PyBuffer_FillInfo(view, obj, (*lease).ptr.cast(), (*lease).len, (*lease).readonly, flags);
        if filled == 0 {
            (*lease).exports += 1;
        }
        filled
    }
}

unsafe extern "C" fn releasebuffer(obj: *mut ffi::PyObject, _view: *mut PyBuffer) {
    // SAFETY: CPython calls this slot with an object of this type, attached, once per buffer
    // `getbuffer` gave.
    unsafe { (*obj.cast::<Lease>()).exports -= 1 };
}

/// The type, made once (it lives as long as the process).
fn lease_type(py: Python<'_>) -> PyResult<*mut ffi::PyTypeObject> {
    struct Type(*mut ffi::PyTypeObject);
    // SAFETY: a type object, made once and never freed; used only while attached.
    unsafe impl Send for Type {}
    // SAFETY: as above.
    unsafe impl Sync for Type {}
    static TYPE: OnceLock<Type> = OnceLock::new();
    if let Some(t) = TYPE.get() {
        return Ok(t.0);
    }
    let slots = Box::leak(Box::new([
        ffi::PyType_Slot {
            slot: BF_GETBUFFER,
            pfunc: getbuffer as *mut c_void,
        },
        ffi::PyType_Slot {
            slot: BF_RELEASEBUFFER,
            pfunc: releasebuffer as *mut c_void,
        },
        ffi::PyType_Slot {
            slot: 0,
            pfunc: std::ptr::null_mut(),
        },
    ]));
    let spec = Box::leak(Box::new(ffi::PyType_Spec {
        name: c"faasflow.Lease".as_ptr(),
        basicsize: c_int::try_from(std::mem::size_of::<Lease>()).unwrap_or(c_int::MAX),
        itemsize: 0,
        flags: ffi::Py_TPFLAGS_DEFAULT as std::ffi::c_uint,
        slots: slots.as_mut_ptr(),
    }));
    // SAFETY: the spec and its slots are leaked, so they outlive the type; attached (`py`).
    let t = unsafe { ffi::PyType_FromSpec(spec) };
    if t.is_null() {
        return Err(PyErr::fetch(py));
    }
    Ok(TYPE.get_or_init(|| Type(t.cast())).0)
}

/// A lease of `len` bytes at `ptr`, read-only unless `writable`.
pub(crate) fn new(py: Python<'_>, ptr: *mut u8, len: usize, writable: bool) -> PyResult<Bound<'_, PyAny>> {
    let len = ffi::Py_ssize_t::try_from(len).map_err(|_| PyValueError::new_err("an object too large for a view"))?;
    let tp = lease_type(py)?;
    // SAFETY: `tp` is the lease type; `PyType_GenericAlloc` returns a zeroed object of its
    // size (or null with an exception set), whose fields are set before anyone sees it.
    unsafe {
        let obj = ffi::PyType_GenericAlloc(tp, 0);
        let bound = Bound::from_owned_ptr_or_err(py, obj)?;
        let lease = obj.cast::<Lease>();
        (*lease).ptr = ptr;
        (*lease).len = len;
        (*lease).readonly = c_int::from(!writable);
        Ok(bound)
    }
}

/// Ends `lease` (no buffer is given any more) and says whether every buffer it gave is back.
pub(crate) fn end(lease: &Bound<'_, PyAny>) -> bool {
    // SAFETY: `lease` was made by [`new`], so it is a `Lease`; attached (`Bound`).
    unsafe {
        let l = lease.as_ptr().cast::<Lease>();
        (*l).released = 1;
        (*l).exports == 0
    }
}

/// Whether every buffer `lease` gave is back.
pub(crate) fn idle(lease: &Bound<'_, PyAny>) -> bool {
    // SAFETY: as in [`end`].
    unsafe { (*lease.as_ptr().cast::<Lease>()).exports == 0 }
}
