"""``python -m faasflow.serve``: serves Python functions as an instance of the faasflow daemon.

The daemon starts it with the functions to serve, each named by its handler
(``module:function``), the directories their code is in, and the modules they need::

    python -m faasflow.serve --code /srv/functions --require numpy words:count words:merge

With ``--list`` it imports every handler, checks it and prints the functions, one per line:
the daemon runs that when it installs a workflow, so that a missing module, a syntax error or a
handler that does not exist is said at deploy time, not at the first call. Anything that cannot
be served is said on standard error, and the exit status is 1.
"""

import argparse
import importlib
import importlib.util
import inspect
import os
import sys
import traceback


def fail(message):
    print(message, file=sys.stderr)
    sys.exit(1)


def importable(module):
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def where(code):
    return ", ".join(code) if code else "sys.path"


def load(handler, code):
    module_name, _, attr = handler.partition(":")
    try:
        module = importlib.import_module(module_name)
    except SyntaxError as e:
        fail(f"handler `{handler}`: {e.filename}:{e.lineno}: syntax error: {e.msg}")
    except ModuleNotFoundError as e:
        if e.name is not None and (module_name == e.name or module_name.startswith(e.name + ".")):
            fail(
                f"handler `{handler}`: there is no module `{module_name}` in {where(code)} "
                f"(nor installed for {sys.executable}): check the handler and the function's `code` directory"
            )
        fail(f"handler `{handler}`: importing `{module_name}` failed:\n{traceback.format_exc().rstrip()}")
    except BaseException:
        fail(f"handler `{handler}`: importing `{module_name}` failed:\n{traceback.format_exc().rstrip()}")
    f = getattr(module, attr, None)
    if f is None or not callable(f):
        names = sorted(
            n
            for n, v in vars(module).items()
            if not n.startswith("_") and inspect.isfunction(v) and v.__module__ == module.__name__
        )
        what = "no function" if f is None else "a value that is not a function called"
        fail(
            f"handler `{handler}`: module `{module_name}` ({getattr(module, '__file__', '?')}) has {what} `{attr}` "
            f"(its functions: {', '.join(names) or 'none'})"
        )
    if getattr(f, "__faasflow_function__", False):
        try:
            params = inspect.signature(f).parameters.values()
        except (TypeError, ValueError):
            params = None
        if params is not None:
            required = [p for p in params if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
            takes_one = len(required) == 1 or any(p.kind == p.VAR_POSITIONAL for p in params)
            if not takes_one:
                fail(f"handler `{handler}`: a faasflow function takes one argument, its call's context (`def {attr}(ctx)`)")
    return f


def load_v1(path):
    from . import v1

    if not os.path.isfile(path):
        fail(f"FaaSFlow function `{path}` does not exist on this worker")
    try:
        return v1.load(path)
    except SyntaxError as e:
        fail(f"FaaSFlow function `{path}`: {e.filename}:{e.lineno}: syntax error: {e.msg}")
    except BaseException:
        fail(f"FaaSFlow function `{path}`: loading it failed:\n{traceback.format_exc().rstrip()}")


def check_numpy():
    """numpy before 1.22.4 keeps a view as an array's base without holding its buffer, so an
    array kept past its call could not be found: refuse it."""
    numpy = sys.modules.get("numpy")
    if numpy is None:
        return
    try:
        version = tuple(int(p) for p in numpy.__version__.split(".")[:3])
    except ValueError:
        return
    if version < (1, 22, 4):
        fail(
            f"numpy {numpy.__version__} (for {sys.executable}) is older than 1.22.4, whose arrays hold the "
            "buffers they read: upgrade it (pip install 'numpy>=1.22.4')"
        )


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m faasflow.serve",
        description="Serves Python functions as an instance of the faasflow daemon (the daemon starts it).",
    )
    parser.add_argument("--code", action="append", default=[], metavar="DIR", help="a directory added to sys.path")
    parser.add_argument("--require", action="append", default=[], metavar="MODULE", help="a module that must be importable")
    parser.add_argument("--pack", default="python", help="the pack name the daemon knows the instance by")
    parser.add_argument(
        "--faasflow-v1",
        action="append",
        default=[],
        metavar="MAIN_PY",
        help="a FaaSFlow v1.1 function (main.py with `def main()` and a global `store`), served under its path",
    )
    parser.add_argument("--list", action="store_true", help="check the handlers and print the functions")
    parser.add_argument("handlers", nargs="*", metavar="MODULE:FUNCTION")
    args = parser.parse_args(argv)
    for d in args.code:
        if not os.path.isdir(d):
            fail(f"the code directory `{d}` does not exist on this worker (or is not a directory)")
    for d in reversed(args.code):
        sys.path.insert(0, d)
    missing = [m for m in args.require if not importable(m)]
    if missing:
        fail(
            f"required module{'s' if len(missing) > 1 else ''} {', '.join(f'`{m}`' for m in missing)} "
            f"not installed for {sys.executable}: install {'them' if len(missing) > 1 else 'it'} "
            f"(pip install), or start the daemon with --python naming an interpreter that has "
            f"{'them' if len(missing) > 1 else 'it'}"
        )
    functions = [(h, load(h, args.code)) for h in args.handlers]
    functions += [(path, load_v1(path)) for path in args.faasflow_v1]
    check_numpy()
    from . import _native

    _native.serve(args.pack, functions, ["--list"] if args.list else [])


if __name__ == "__main__":
    main()
