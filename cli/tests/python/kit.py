"""Python functions the end-to-end tests run (cli/tests/python.rs)."""

import ctypes
import sys
import time

import faasflow

kept = []


@faasflow.function
def split(ctx):
    """Splits input `text` into lines: output `lines` (a JSON list)."""
    ctx.output_json("lines", bytes(ctx.input("text")).decode().splitlines())


@faasflow.function
def count(ctx):
    """Counts the words of one line (a foreach element, JSON) into output `counts`."""
    line = ctx.input_text("line")
    counts = {}
    for w in line.split():
        counts[w] = counts.get(w, 0) + 1
    ctx.output_json("counts", counts)


@faasflow.function
def merge(ctx):
    """Adds up the `counts` of every element."""
    total = {}
    for view in ctx.inputs("counts"):
        for w, n in faasflow_json(view).items():
            total[w] = total.get(w, 0) + n
    ctx.output_json("total", dict(sorted(total.items())))


def faasflow_json(view):
    import json

    return json.loads(bytes(view))


@faasflow.function
def fill(ctx):
    """Writes output `blob`: `n` bytes (param-less: from input `n`), byte i = i % 251, in place."""
    n = ctx.input_json("n")
    with ctx.output("blob", n) as buf:
        buf[:] = bytes(i % 251 for i in range(n))


@faasflow.function
def check(ctx):
    """Reads input `blob` in place and says its length, its checksum and whether it is read-only."""
    view = ctx.input("blob")
    ctx.output_json("seen", {"len": len(view), "sum": sum(view), "readonly": view.readonly})


@faasflow.function
def upper(ctx):
    """Copies input `text` upper-cased into output `text` with output_bytes."""
    ctx.output_bytes("text", bytes(ctx.input("text")).upper())


@faasflow.function
def keep(ctx):
    """Keeps its input's view in a global past the call (released at the call's end)."""
    kept.append(ctx.input("text"))
    ctx.output_json("ok", True)


@faasflow.function
def kept_view(ctx):
    """Says what using the views `keep` kept does now."""
    out = []
    for view in kept:
        try:
            bytes(view)
            out.append("readable")
        except ValueError as e:
            out.append(str(e))
    try:
        ctx_kept[0].input("text")
    except Exception as e:
        out.append(f"{type(e).__name__}: {e}")
    ctx.output_json("seen", out)


ctx_kept = []


@faasflow.function
def keep_ctx(ctx):
    ctx_kept.append(ctx)
    ctx.output_json("ok", True)


@faasflow.function
def keep_slice(ctx):
    """Keeps a slice of its input past the call: its instance must stop itself."""
    kept.append(ctx.input("text")[1:])
    ctx.output_json("ok", True)


@faasflow.function
def whoami(ctx):
    """Says who and where it runs: its user, whether it can write its root, its network."""
    import os
    import socket

    try:
        open("/written-by-a-function", "w").close()
        writable = True
    except OSError:
        writable = False
    interfaces = sorted(name for _, name in socket.if_nameindex())
    ctx.output_json("me", {"uid": os.getuid(), "root_writable": writable, "interfaces": interfaces, "text": ctx.input_text("text")})


@faasflow.function
def raises(ctx):
    helper(ctx.input_json("n"))


def helper(n):
    raise ValueError(f"no luck with {n}")


@faasflow.function
def exits(ctx):
    sys.exit(3)


@faasflow.function
def spins(ctx):
    while True:
        time.sleep(0.01)


@faasflow.function
def segfault(ctx):
    ctypes.string_at(0)


@faasflow.function
def overflow(ctx):
    buf = ctx.output("out", 4)
    buf[:] = b"12345"


@faasflow.function
def unserialisable(ctx):
    ctx.output_json("out", {1, 2})


@faasflow.function
def returns(ctx):
    return {"a": 1}


@faasflow.function
def missing_input(ctx):
    ctx.input("nope")


@faasflow.function
def keep_lease(ctx):
    """Keeps a view of its input's exporter (`view.obj`) past the call."""
    kept.append(memoryview(ctx.input("text").obj)[1:])
    ctx.output_json("ok", True)


@faasflow.function
def raises_holding(ctx):
    """Raises while a local holds a slice of its input: the traceback keeps it until the call's
    failure is taken, which is not a view kept past the call."""
    held = ctx.input("text")[1:]
    raise RuntimeError(f"failed while holding {len(held)} bytes")
