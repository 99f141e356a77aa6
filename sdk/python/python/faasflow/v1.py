"""FaaSFlow's own functions, unmodified.

A FaaSFlow v1.1 function is a ``main.py`` with ``def main():`` that reads and writes through a
global ``store``: ``store.fetch([keys])`` returns a dict of the keys' values and
``store.put({key: value}, {key: content_type})`` stores values. Here ``store`` is backed by the
call's context, so the values live in the arena:

- ``fetch`` of a key that names one of the call's inputs returns that input (a foreach
  element for FaaSFlow's ``key`` inputs inside a foreach; a list for an input that gathers the
  outputs of every element), decoded: JSON when it parses, else text when it is UTF-8, else
  bytes. Other keys are looked up among what the producers put under names the workflow does
  not declare (see below).
- ``put`` of a declared output writes it: bytes as they are, anything else as JSON (FaaSFlow's
  default content type). FaaSFlow's code also puts values under keys the workflow file does not
  declare (``start`` puts each text under its file name, ``count`` its counts under
  ``wordcount_<file>``): those are gathered, as FaaSFlow's key-value store held them, into the
  declared outputs the function did not write (a JSON object of keys to values, bytes in
  base64), which carry them along the workflow's edges to the functions that fetch them.

FaaSFlow built each function into an image (``COPY text /text``). The directories a function's
Dockerfile copies are mapped to its source directory, for its own calls (and its import):
``open``, ``os.listdir``, ``os.scandir``, ``os.stat`` and ``os.path.exists``/``isfile``/``isdir``
of ``/text/...`` read ``<source>/text/...``. ``os.listdir()`` without an argument is not mapped.
"""

import base64
import builtins
import importlib.util
import json
import os
import re
import sys
import threading

BUNDLE = "__faasflow_store__"
BYTES = "__bytes__"

_current = threading.local()


class _StoreProxy:
    """The global ``store`` of every FaaSFlow module: the store of the call running on this
    thread (calls of one instance run on several threads)."""

    def fetch(self, keys):
        return _store().fetch(keys)

    def put(self, values, content_types=None):
        return _store().put(values, content_types or {})

    def __repr__(self):
        return "<faasflow store of the running call>"


def _store():
    store = getattr(_current, "store", None)
    if store is None:
        raise RuntimeError("FaaSFlow's `store` is used outside a call of its function")
    return store


def _decode(view):
    data = bytes(view)
    try:
        return json.loads(data)
    except ValueError:
        pass
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data


def _encode_value(value):
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {BYTES: base64.b64encode(bytes(value)).decode("ascii")}
    return value


def _decode_value(value):
    if isinstance(value, dict) and len(value) == 1 and BYTES in value:
        return base64.b64decode(value[BYTES])
    return value


class Store:
    """One call's store (see the module docs)."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.inputs = set(ctx.input_names())
        self.outputs = ctx.output_names()
        self.put_keys = {}
        self.undeclared = {}
        self._gathered = None

    def _bundles(self):
        if self._gathered is None:
            gathered = {}
            for name in self.inputs:
                for view in self.ctx.inputs(name):
                    head = bytes(view[: len(BUNDLE) + 2])
                    if head.startswith(b'{"' + BUNDLE.encode()[: len(head) - 2]):
                        value = json.loads(bytes(view))
                        if isinstance(value, dict) and BUNDLE in value:
                            gathered.update(value[BUNDLE])
            self._gathered = gathered
        return self._gathered

    def fetch(self, keys):
        out = {}
        for k in keys:
            if k in self.put_keys:
                out[k] = self.put_keys[k]
            elif k in self.undeclared:
                out[k] = self.undeclared[k]
            elif k in self.inputs:
                views = self.ctx.inputs(k)
                values = [_decode(v) for v in views]
                out[k] = values[0] if len(values) == 1 and self._single(k) else values
            elif k in self._bundles():
                out[k] = _decode_value(self._bundles()[k])
            else:
                known = sorted(self.inputs | set(self._bundles()))
                raise KeyError(
                    f"store.fetch: no key `{k}` among this call's inputs and what its producers put "
                    f"(known: {', '.join(known[:20]) or 'none'}{', …' if len(known) > 20 else ''})"
                )
        return out

    def _single(self, name):
        try:
            self.ctx.input(name)
            return True
        except Exception:
            return False

    def put(self, values, content_types):
        for k, v in values.items():
            if k in self.outputs:
                if k in self.put_keys:
                    raise ValueError(f"store.put: output `{k}` was already put; each output is written once")
                if isinstance(v, (bytes, bytearray, memoryview)) or content_types.get(k, "application/json") != "application/json":
                    data = v if isinstance(v, (bytes, bytearray, memoryview)) else str(v).encode()
                    self.ctx.output_bytes(k, data)
                else:
                    self.ctx.output_json(k, v)
                self.put_keys[k] = v
            else:
                self.undeclared[k] = v

    def finish(self):
        """Writes what was put under undeclared keys into the declared outputs not written."""
        rest = [o for o in self.outputs if o not in self.put_keys]
        if not rest:
            if self.undeclared:
                print(
                    f"faasflow: keys {', '.join(sorted(self.undeclared))} were put but every declared output "
                    "was written: no function can fetch them",
                    file=sys.stderr,
                )
            return
        bundle = {BUNDLE: {k: _encode_value(v) for k, v in self.undeclared.items()}}
        for name in rest:
            self.ctx.output_json(name, bundle)


def load(path):
    """Loads FaaSFlow function ``path`` (a main.py) as a module of its own and returns the
    function the daemon calls with a context."""
    path = os.path.abspath(path)
    source = os.path.dirname(path)
    name = "faasflow_v1_" + re.sub(r"\W", "_", source)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    module.store = _StoreProxy()
    sys.modules[name] = module
    # Mapped before the module runs: it may read its files at import.
    mapping = _copied_directories(source)
    _current.mapping = mapping
    try:
        spec.loader.exec_module(module)
    finally:
        _current.mapping = None
    main = getattr(module, "main", None)
    if not callable(main):
        raise AttributeError(f"{path} has no `def main():`, which a FaaSFlow function is")

    def call(ctx):
        store = Store(ctx)
        _current.store = store
        _current.mapping = mapping
        try:
            main()
        finally:
            _current.store = None
            _current.mapping = None
        store.finish()

    call.__name__ = f"{os.path.basename(source)}.main"
    return call


_patched = False


def _copied_directories(source):
    """The absolute directories the Dockerfile beside ``source``'s main.py copies into its image
    (``COPY text /text``), each to its place in ``source``: the mapping of this function's
    calls (each function has its own, chosen by the running call)."""
    mapping = {}
    dockerfile = os.path.join(source, "Dockerfile")
    if not os.path.isfile(dockerfile):
        return mapping
    with open(dockerfile) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[0].upper() == "COPY" and parts[2].startswith("/"):
                src = os.path.join(source, parts[1])
                if os.path.isdir(src) or os.path.isfile(src):
                    mapping[parts[2].rstrip("/")] = src
    if mapping:
        _patch()
    return mapping


def _remap(path):
    mapping = getattr(_current, "mapping", None)
    if mapping and isinstance(path, (str, bytes, os.PathLike)):
        p = os.fsdecode(path)
        for image, host in mapping.items():
            if p == image or p.startswith(image + "/"):
                return host + p[len(image):]
    return path


def _patch():
    global _patched
    if _patched:
        return
    _patched = True

    def wrap(f, name):
        def mapped(*args, **kwargs):
            if args:
                args = (_remap(args[0]),) + args[1:]
            elif name in kwargs:
                kwargs[name] = _remap(kwargs[name])
            return f(*args, **kwargs)

        mapped.__wrapped__ = f
        return mapped

    builtins.open = wrap(builtins.open, "file")
    for name in ("listdir", "scandir", "stat"):
        setattr(os, name, wrap(getattr(os, name), "path"))
    for name in ("exists", "isfile", "isdir"):
        setattr(os.path, name, wrap(getattr(os.path, name), "path"))
