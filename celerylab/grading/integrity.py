"""Is the grader in this kernel still the kit's code? Checked before each graded check runs.

A learner's cell runs in the same kernel as the checks, so it could rebind or monkeypatch
them (``q1.check = ...``, ``AddTask._check = ...``, ``Exercise.check = ...``,
``m.q1 = Fake()``, ``sys.modules[...] = ...``) and turn a blank answer green. The check
cells the grader inserts (:mod:`.plugin`) load this file afresh from disk (never from
``sys.modules``, so a patched copy of it does not matter) and call :func:`graded_check`,
which compares every function and class of the exercise module, of ``celerylab.grading``
and of the kit modules the exercise module imports with the source files on disk:

* each function's code object must be the one compiled from the file, under its own name,
  with the module's globals (a replacement defined in a notebook cell is not);
* each class holds only what its source defines, with the values the source gives them;
* each ``qN`` is an instance of the module's own class, with nothing set on it;
* the module in ``sys.modules`` is the one loaded from the kit's file.

Then it runs the module's own ``qN.check`` on the notebook's names. A difference fails the
check with one line: "a cell in this notebook changes the grader: ...". The plugin also
flags such cells before they run (:func:`changes_to_grader`, a static check).

Only absolute imports and the standard library here: this file is executed on its own.
"""
from __future__ import annotations

import abc
import ast
import os
import sys
import types
from pathlib import Path

from celerylab.i18n import N_, _

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # celerylab/
GRADING = ("celerylab.grading", "celerylab.grading.exercise", "celerylab.grading.kinds",
           "celerylab.grading.probe", "celerylab.grading.outcomes", "celerylab.worker",
           "celerylab.i18n")  # the checks' lines go through celerylab.i18n
#: templates (shown with ``_()``, in the kernel's language)
MESSAGE = N_("a cell in this notebook changes the grader: {what}; remove that change and restart the kernel")
EDITED = N_("not graded: {what}; restart the kernel and run the notebook again")


class GraderChanged(AssertionError):
    """A graded check found the grader changed in the kernel (shown as one line)."""

    def __init__(self, what: str, label: str | None = None, template: str = MESSAGE):
        self.what = what
        self.label = label
        self.template = template
        super().__init__(_(template, what=what))

    def __str__(self) -> str:
        text = _(self.template, what=self.what)
        return f"{self.label}: {text}" if self.label else text

    def _render_traceback_(self) -> list[str]:
        return [f"\x1b[0;31mGraderChanged\x1b[0m: {self}"]


def source_path(module: str) -> Path | None:
    """The kit's file for ``celerylab.x.y`` (found from this file's place, not from sys.modules)."""
    parts = module.split(".")
    if parts[0] != "celerylab":
        return None
    base = PACKAGE_DIR.joinpath(*parts[1:])
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


DEF = ast.Pass()  # marks a member defined by `def` or `class` in a class body


class _Source:
    """One module's source: its code objects by qualified name, its class bodies, its imports."""

    def __init__(self, module: str, path: Path):
        self.module = module
        self.path = path
        text = path.read_text(encoding="utf-8")
        self.tree = ast.parse(text, str(path))
        code = compile(text, str(path), "exec", dont_inherit=True)
        self.codes: dict[str, types.CodeType] = {}
        todo = [code]
        while todo:
            c = todo.pop()
            for const in c.co_consts:
                if isinstance(const, types.CodeType):
                    self.codes.setdefault(const.co_qualname, const)
                    todo.append(const)
        self.classes: dict[str, dict[str, ast.AST | None]] = {}
        self._collect_classes(self.tree.body, "")
        self.top_defs = {n.name for n in self.tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
        self.imports: dict[str, tuple[str, str]] = {}  # local name -> (module, attribute)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in self.tree.body:
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                if base.startswith("celerylab"):
                    for alias in node.names:
                        if alias.name != "*":
                            self.imports[alias.asname or alias.name] = (base, alias.name)

    def _collect_classes(self, body, prefix: str) -> None:
        for node in body:
            if isinstance(node, ast.ClassDef):
                qual = f"{prefix}{node.name}"
                members: dict[str, ast.AST | None] = {}
                for item in node.body:
                    if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                        members[item.name] = DEF
                    elif isinstance(item, ast.Assign):
                        for target in item.targets:
                            for name in ast.walk(target):
                                if isinstance(name, ast.Name):
                                    members[name.id] = item.value
                    elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                        members[item.target.id] = item.value
                self.classes[qual] = members
                self._collect_classes(node.body, f"{qual}.")


def _function_of(value):
    if isinstance(value, (staticmethod, classmethod)):
        value = value.__func__
    elif isinstance(value, property):
        value = value.fget
    for _ in range(10):  # functools.wraps wrappers (contextmanager, ...): the function they wrap
        inner = getattr(value, "__wrapped__", None)
        if inner is None or not isinstance(value, types.FunctionType):
            break
        value = inner
    return value if isinstance(value, types.FunctionType) else None


#: class attributes a metaclass sets on every class it makes (ABCMeta, and pydantic's model
#: metaclass, a subclass of it): not in the class body, not a sign of tampering
METACLASS_MADE = frozenset({"_abc_impl", "model_config"})
PLAIN = (str, int, float, bool, type(None), tuple, list, dict, set, frozenset)


def _same(a, b) -> bool:
    try:
        return bool(a == b) or repr(a) == repr(b)
    except Exception:  # noqa: BLE001 - uncomparable: judged by repr
        return repr(a) == repr(b)


class Verifier:
    def __init__(self):
        self.sources: dict[str, _Source] = {}
        self.problems: list[str] = []
        self.edited: list[str] = []  #: kit files changed on disk after this process started

    def source(self, module: str) -> _Source | None:
        if module not in self.sources:
            path = source_path(module)
            self.sources[module] = _Source(module, path) if path else None
            if path and path.stat().st_mtime > _process_started():
                self.edited.append(str(path.relative_to(PACKAGE_DIR.parent)))
        return self.sources[module]

    def live(self, module: str) -> types.ModuleType | None:
        mod = sys.modules.get(module)
        src = self.source(module)
        if mod is None or src is None:
            return None
        if not isinstance(mod, types.ModuleType):
            self.problems.append(_("sys.modules[{module}] was replaced by {kind} object", module=repr(module),
                                   kind=type(mod).__name__))
            return None
        file = getattr(mod, "__file__", None)
        if not file or Path(file).resolve() != src.path.resolve() or getattr(mod, "__name__", None) != module:
            self.problems.append(_("sys.modules[{key}] is not the kit's module {module}", key=repr(module),
                                   module=module))
            return None
        return mod

    def function(self, fn, qualname: str, module: str, where: str) -> None:
        src = self.source(module)
        code = src.codes.get(qualname)
        actual = getattr(fn, "__code__", None)
        if getattr(fn, "__qualname__", None) != qualname or code is None or actual is None \
                or actual != code or actual.co_filename != code.co_filename:
            self.problems.append(_("{where} was replaced (it is not the code in {module})", where=where, module=module))
            return
        mod = sys.modules.get(module)
        if getattr(fn, "__globals__", None) is not getattr(mod, "__dict__", None):
            self.problems.append(_("{where} runs with other globals than {module}'s", where=where, module=module))

    def klass(self, cls, module: str, fresh_cls=None) -> None:
        src = self.source(module)
        qual = cls.__qualname__
        members = src.classes.get(qual)
        if members is None:
            self.problems.append(_("{where} is not a class of {module}", where=qual, module=module))
            return
        for name, value in list(vars(cls).items()):
            where = f"{qual}.{name}"
            fn = _function_of(value)
            if name.startswith("__") and name.endswith("__") and name not in members:
                code = getattr(fn, "__code__", None)
                if code is None or (code.co_filename == "<string>"
                                    and (fn.__qualname__ == where or "__create_fn__" in fn.__qualname__)):
                    continue  # made by Python or a decorator (dataclass)
                self.problems.append(_("{where} was added", where=where))
                continue
            if name not in members and name in METACLASS_MADE and isinstance(cls, abc.ABCMeta) and fn is None:
                continue  # set by the class's metaclass: ABCMeta's cache, a pydantic model's config
            if name not in members:
                self.problems.append(_("{where} was added", where=where))
            elif fn is not None and f"{qual}.{name}" in src.codes:
                self.function(fn, f"{qual}.{name}", module, where)
            elif fn is not None and isinstance(members[name], ast.Name) and fn.__qualname__ == f"{qual}.{members[name].id}":
                self.function(fn, fn.__qualname__, module, where)  # an alias: `__str__ = __repr__`
            elif fn is not None or isinstance(value, type):
                if isinstance(value, type) and value.__qualname__ == where:
                    self.klass(value, module)
                else:
                    self.problems.append(_("{where} was replaced", where=where))
            elif fresh_cls is not None and name in vars(fresh_cls):
                if not _same(value, vars(fresh_cls)[name]):
                    self.problems.append(_("{where} was changed", where=where))
            elif isinstance(value, PLAIN):
                node = members.get(name)
                if node is None or node is DEF:
                    continue
                try:
                    expected = ast.literal_eval(node)
                except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                    continue
                if not _same(value, expected):
                    self.problems.append(_("{where} was changed", where=where))
        for name, node in members.items():
            if node is DEF and name not in vars(cls):
                where = f"{qual}.{name}"
                self.problems.append(_("{where} was deleted", where=where))

    def module(self, module: str, fresh: dict | None = None) -> types.ModuleType | None:
        mod = self.live(module)
        if mod is None:
            return None
        src = self.source(module)
        names = vars(mod)
        for name in src.top_defs:
            if name not in names:
                where = f"{module}.{name}"
                self.problems.append(_("{where} was deleted", where=where))
                continue
            value = names[name]
            where = f"{module.rsplit('.', 1)[-1]}.{name}"
            if isinstance(value, type):
                if value.__qualname__ != name or value.__module__ != module:
                    self.problems.append(_("{where} was replaced", where=where))
                else:
                    self.klass(value, module, (fresh or {}).get(name) if isinstance((fresh or {}).get(name), type) else None)
            elif _function_of(value) is not None:
                fn = _function_of(value)
                if fn.__qualname__ == name or fn.__module__ == module:
                    self.function(fn, name, module, where)
                else:
                    self.problems.append(_("{where} was replaced", where=where))
            elif isinstance(value, PLAIN):
                self.problems.append(_("{where} was replaced", where=where))
        for name, (home, attr) in src.imports.items():
            if name in names and home in sys.modules and self.source(home) is not None:
                expected = getattr(sys.modules[home], attr, None)
                if names[name] is not expected and not isinstance(expected, types.ModuleType):
                    where = f"{module.rsplit('.', 1)[-1]}.{name}"
                    self.problems.append(_("{where} was replaced", where=where))
        return mod

    def exercises(self, mod: types.ModuleType, fresh: dict) -> None:
        from_kit = set(GRADING)
        for name, expected in fresh.items():
            if not (name[:1] == "q" and name[1:].isdigit()):
                continue
            value = vars(mod).get(name)
            cls = type(value)
            home = sys.modules.get(cls.__module__)
            if value is None or getattr(home, "__dict__", {}).get(cls.__name__) is not cls \
                    or cls.__module__ not in from_kit | {mod.__name__} or cls.__name__ != type(expected).__name__:
                where = f"{mod.__name__.rsplit('.', 1)[-1]}.{name}"
                self.problems.append(_("{where} was replaced", where=where))
            else:
                # what its own methods keep on it (a cache) is fine; a label, a method or a class
                # setting (cases, timeout) set on the instance is not
                for key, val in vars(value).items():
                    where = f"{name}.{key}"
                    if key in vars(expected):
                        if not _same(val, vars(expected)[key]):
                            self.problems.append(_("{where} was changed", where=where))
                    elif callable(val) or hasattr(cls, key):
                        self.problems.append(_("{where} was set", where=where))


def _process_started() -> float:
    try:
        return os.stat(f"/proc/{os.getpid()}").st_ctime
    except OSError:
        return 0.0


def fresh_namespace(module: str) -> dict:
    """The exercise module's names as its file defines them (run afresh, not kept anywhere)."""
    path = source_path(module)
    namespace = {"__name__": module, "__file__": str(path), "__package__": module.rpartition(".")[0]}
    exec(compile(path.read_text(encoding="utf-8"), str(path), "exec", dont_inherit=True), namespace)
    return namespace


def problems(module: str) -> list[str]:
    """What differs between the grader in this kernel and the kit's files (empty: nothing)."""
    return _verify(module)[0]


def _verify(module: str) -> tuple[list[str], list[str]]:
    """``(differences, kit files edited on disk since this process started)``."""
    v = Verifier()
    fresh = fresh_namespace(module)
    mod = v.module(module, fresh)
    if mod is not None:
        v.exercises(mod, fresh)
        for name in sorted({home for home, _ in v.source(module).imports.values()} | set(GRADING)):
            if name != module and source_path(name) is not None:
                v.module(name)
    return list(dict.fromkeys(v.problems)), v.edited


def graded_check(module: str, label: str, namespace: dict) -> None:
    """What a graded check cell runs: verify the grader, then the module's own ``label.check``."""
    found, edited = _verify(module)
    if found and edited:  # not the learner: the kit changed under a running kernel
        raise GraderChanged(_("the kit's file {path} changed on disk after this kernel started", path=edited[0]),
                            label, template=EDITED)
    if found:
        what = ", ".join(found[:2])
        if len(found) > 2:
            what = _("{problems} (and {count} more)", problems=what, count=len(found) - 2)
        raise GraderChanged(what, label)
    sys.modules[module].__dict__[label].check(namespace=namespace)


def check_cell_source(module: str, label: str) -> str:
    """The source of a graded check cell: load this file afresh and run :func:`graded_check`."""
    path = str(Path(__file__).resolve())
    return (f"[g for g in [{{'__name__': 'celerylab_graded_check', '__file__': {path!r}}}] if exec(compile("
            f"open({path!r}).read(), {path!r}, 'exec'), g) or True][0]['graded_check']({module!r}, {label!r}, globals())")


# -- the static check: answer cells that assign to the kit's objects ------------------------
def _names_in(node) -> set[str]:
    found = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            found.add(sub.id)
        elif isinstance(sub, ast.Constant) and isinstance(sub.value, str):
            found.add(sub.value)
    return found


def _container(target):
    """For ``a.b.c = ...`` -> ``a.b``; ``a[k] = ...`` -> ``a``; else None."""
    if isinstance(target, ast.Attribute):
        return target.value
    if isinstance(target, ast.Subscript):
        return target.value
    return None


def _is_sys_modules(node) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "modules" and isinstance(node.value, ast.Name) \
        and node.value.id == "sys"


CHECK_CELL_NAMES = {"exec", "compile", "open", "globals", "__import__", "__builtins__"}  #: what a check cell calls


def _top_level_bindings(tree) -> list[tuple[str, ast.AST]]:
    """Names bound at the notebook's top level (not inside a function or class body)."""
    found, todo = [], list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found.append((node.name, node))
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.extend(((a.asname or a.name).split(".")[0], node) for a in node.names)
            continue
        for sub in ast.iter_child_nodes(node):
            if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
                found.append((sub.id, node))
            elif isinstance(sub, (ast.stmt, ast.expr, ast.excepthandler, ast.withitem, ast.comprehension)) \
                    and not isinstance(sub, (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
                todo.append(sub)
    return found


PATCHERS = {"setattr", "delattr", "patch", "object", "setitem", "delitem", "reload"}
MUTATORS = {"pop", "update", "clear", "setdefault", "popitem", "__setitem__", "__delitem__"}


def changes_to_grader(source: str, kit_names=()) -> str | None:
    """Why an answer cell changes the grader (one phrase), or None.

    ``kit_names``: names the notebook got from the kit (``q1``, ``Exercise``, ...), besides
    the ones this cell imports from ``celerylab`` itself.
    """
    lines = [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
    try:
        tree = ast.parse("\n".join(lines))
    except SyntaxError:
        return None
    for name, node in _top_level_bindings(tree):
        if name in CHECK_CELL_NAMES:
            return _("it rebinds `{name}`, which the grader's check cells call", name=name)
    kit = set(kit_names) | {"celerylab"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "celerylab":
                    kit.add(alias.asname or "celerylab")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[:2] in (
                ["celerylab"], ["celerylab", "grading"], ["celerylab", "exercises"]):
            # the grader's parts; a lesson's Celery app (celerylab.lessons...) is the learner's to configure
            kit.update(alias.asname or alias.name for alias in node.names if alias.name != "*")
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        elif isinstance(node, ast.Delete):
            targets = node.targets
        for target in targets:
            for sub in ast.walk(target):
                container = _container(sub)
                if container is None:
                    continue
                if _is_sys_modules(container):
                    return _("it edits sys.modules (`{code}`)", code=ast.unparse(sub))
                if _names_in(container) & {"builtins", "__builtins__"}:
                    return _("it replaces a built-in the grader uses (`{code}`)", code=ast.unparse(sub))
                if _names_in(container) & kit:
                    if isinstance(node, ast.Delete):
                        return _("it deletes `{code}`, part of the kit", code=ast.unparse(sub))
                    return _("it assigns to `{code}`, part of the kit", code=ast.unparse(sub))
        if isinstance(node, ast.Call):
            func = node.func
            fname = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if isinstance(func, ast.Attribute) and _is_sys_modules(func.value) and fname in MUTATORS:
                return _("it edits sys.modules (`{code}`)", code=ast.unparse(node)[:60])
            args = list(node.args) + [k.value for k in node.keywords]
            mentioned = set().union(*(_names_in(a) for a in args)) if args else set()
            # a lesson's module (celerylab.lessons...) is the learner's to patch, as its imports are
            if fname in PATCHERS and (mentioned & kit or any(isinstance(m, str) and m.startswith("celerylab")
                                                              and not m.startswith("celerylab.lessons.")
                                                              for m in mentioned)):
                return _("it patches the kit (`{code}`)", code=ast.unparse(node)[:60])
            if fname in MUTATORS | {"__setattr__", "__delattr__"} and isinstance(func, ast.Attribute) \
                    and (_names_in(func.value) & kit) and (isinstance(func.value, ast.Attribute) and func.value.attr == "__dict__"
                                                           or fname in ("__setattr__", "__delattr__")
                                                           or isinstance(func.value, ast.Call)):
                return _("it changes the kit (`{code}`)", code=ast.unparse(node)[:60])
    return None
