"""Run a learner's task (defined in a notebook cell) on a worker *process*.

A worker process imports its tasks from a module; a task defined in a notebook exists only in
the kernel. Checks whose point is "every worker sees it" (not only the one in this kernel) write
the task's source, with the notebook names it uses, into a module of their own and start
``celery -A thatmodule worker`` on it. Module-level state of the notebook (a set, a dict) is
copied as it is now: the worker process gets its own copy, as a worker on another machine would.
"""
from __future__ import annotations

import atexit
import builtins
import inspect
import itertools
import os
import shutil
import tempfile
import textwrap
import types

from celery.app.task import Task

_ids = itertools.count(1)
_dir: str | None = None


def _code_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names) | set(code.co_freevars)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


def _closure(fn) -> dict:
    cells = getattr(fn, "__closure__", None) or ()
    return {name: cell.cell_contents for name, cell in zip(fn.__code__.co_freevars, cells)
            if _filled(cell)}


def _filled(cell) -> bool:
    try:
        cell.cell_contents
    except ValueError:
        return False
    return True


def _learner_function(task: Task):
    """The function the learner decorated (the grader's probe may have wrapped ``task.run``)."""
    task = task._get_current_object() if hasattr(task, "_get_current_object") else task  # a lazy task proxy
    fn = getattr(task, "_orig_run", None) or task.run  # autoretry_for wraps run and keeps the original
    while getattr(fn, "__celerylab_unguarded__", None) is not None:
        fn = fn.__celerylab_unguarded__
    return getattr(fn, "__func__", fn)


def _source(fn) -> str:
    return textwrap.dedent(inspect.getsource(fn))


def _literal(value) -> str | None:
    """``repr(value)`` when it evaluates back to an equal value, else None."""
    try:
        text = repr(value)
        return text if eval(text, {}) == value else None  # noqa: S307 - our own repr of plain data
    except Exception:  # noqa: BLE001 - not plain data
        return None


def module_source(task: Task, ns: dict, preamble: str, provided: set[str]) -> str:
    """Python source that defines ``task`` (same name, same decorator) on a fresh ``app``.

    ``preamble`` imports what the lab's setup cell imports and creates ``app``; ``provided`` are
    the names it defines. Other names the task uses are taken from ``ns`` (the notebook): modules
    are imported, functions and tasks defined in the notebook are copied as source, plain data
    (sets, dicts, numbers, strings) as a literal of its current value.
    """
    fn = _learner_function(task)
    lines = [preamble.rstrip(), ""]
    done = set(provided) | set(dir(builtins)) | {fn.__name__}
    pending = [fn]
    defs: list[str] = []
    while pending:
        f = pending.pop()
        scope = {**f.__globals__, **_closure(f)} if f is not fn else {**ns, **f.__globals__, **_closure(f)}
        for name in sorted(_code_names(f.__code__) - done):
            if name not in scope:
                continue
            value = scope[name]
            done.add(name)
            if isinstance(value, types.ModuleType):
                lines.append(f"import {value.__name__} as {name}")
            elif isinstance(value, Task) and getattr(value, "run", None) is not None:
                pending.append(_learner_function(value))
                defs.append(_source(_learner_function(value)))
            elif isinstance(value, types.FunctionType):
                if (value.__module__ != "__main__" and "<locals>" not in value.__qualname__
                        and not value.__module__.startswith("test")):
                    lines.append(f"from {value.__module__} import {value.__name__} as {name}")
                else:
                    pending.append(value)
                    defs.append(_source(value))
            elif isinstance(value, type) and value.__module__ not in ("__main__",):
                lines.append(f"from {value.__module__} import {value.__qualname__} as {name}")
            else:
                literal = _literal(value)
                if literal is not None:
                    lines.append(f"{name} = {literal}")
    # the task keeps the name it has in the notebook (``<app main>.pay`` for ``__main__``)
    lines.append(f"__name__, _real_name = {fn.__module__!r}, __name__")
    lines.extend(reversed(defs))
    lines.append(_source(fn))
    lines.append("__name__ = _real_name")
    return "\n".join(lines) + "\n"


def write_module(source: str, stem: str) -> tuple[str, str]:
    """Write ``source`` to a fresh module in a private folder; ``(folder, module name)``."""
    global _dir
    if _dir is None:
        _dir = tempfile.mkdtemp(prefix="celerylab-lab-tasks-")
        # the folder goes with the kernel (its worker processes are stopped before atexit runs)
        atexit.register(shutil.rmtree, _dir, ignore_errors=True)
    name = f"{stem}_{os.getpid()}_{next(_ids)}"
    with open(os.path.join(_dir, f"{name}.py"), "w", encoding="utf-8") as f:
        f.write(source)
    return _dir, name


def spawn_task_worker(task: Task, ns: dict, preamble: str, provided: set[str], stem: str, **kwargs):
    """A worker process (``celerylab.spawn_worker``) that has the learner's ``task``; not yet ready."""
    import celerylab

    folder, module = write_module(module_source(task, ns, preamble, provided), stem)
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (folder, saved) if p)
    try:
        return celerylab.spawn_worker(module, **kwargs)
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved
