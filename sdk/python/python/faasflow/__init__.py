"""Functions in Python for faasflow.

A function takes one argument, its call's context, and writes its outputs through it::

    import faasflow

    @faasflow.function
    def count(ctx):
        text = ctx.input("text")            # a read-only memoryview over the arena: no copy
        counts = {}
        for word in bytes(text).split():
            counts[word.decode()] = counts.get(word.decode(), 0) + 1
        ctx.output_json("counts", counts)

A workflow names it with ``language: python`` and ``handler: module:function``; the faasflow
daemon serves it (``python -m faasflow.serve``) over the same shared memory as functions in
Rust. See docs/python.md.
"""

from ._native import Context, Error

__all__ = ["Context", "Error", "function"]


def function(f):
    """Marks ``f`` as a faasflow function (it takes the call's :class:`Context`).

    The function itself is returned unchanged, so it can still be called directly (in a test,
    say). Functions work without the mark; it says what they are to the reader, and the daemon
    checks at install that a marked function takes one argument.
    """
    if not callable(f):
        raise TypeError(f"@faasflow.function marks a function, not {type(f).__name__}")
    f.__faasflow_function__ = True
    return f
