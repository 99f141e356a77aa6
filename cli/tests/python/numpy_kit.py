"""Functions that hand numpy arrays over in place (cli/tests/python.rs)."""

import numpy

import faasflow

held = []


@faasflow.function
def produce(ctx):
    n = ctx.input_json("n")
    out = numpy.frombuffer(ctx.output("array", n * 8), dtype=numpy.float64)
    out[:] = numpy.arange(n, dtype=numpy.float64)


@faasflow.function
def consume(ctx):
    a = numpy.frombuffer(ctx.input("array"), dtype=numpy.float64)
    ctx.output_json("sum", float(a.sum()))


@faasflow.function
def hold(ctx):
    held.append(numpy.frombuffer(ctx.input("array"), dtype=numpy.float64))
    ctx.output_json("sum", 0.0)
