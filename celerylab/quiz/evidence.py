"""Where each quiz answer is proved: a lesson cell's stored output, or a test against the installed library.

Every :class:`~celerylab.quiz.bank.Question` names its evidence in ``Question.evidence``:

* ``""`` (the default): the cell tagged ``evidence:<question id>`` in the question's lesson notebook;
* ``"notebooks/NN_x.ipynb::evidence:<tag>"``: a tagged cell in another notebook, or under another tag;
* ``"tests/test_claims.py::test_name"``: a test (claims about Celery's, kombu's or Flower's own
  defaults and code, checked against the installed versions).

:func:`problems` lists every question whose evidence is missing or unusable; tests/test_evidence.py
fails with that list, and ``python -m celerylab.quiz evidence`` prints it.
"""
from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TAG_PREFIX = "evidence:"
#: nbval tags that would stop nbval re-checking a cell's output against the stored one
UNCHECKED_TAGS = ("nbval-ignore-output", "nbval-skip", "skip-execution")
#: evidence cells allowed to carry one of UNCHECKED_TAGS anyway: {(notebook, tag): why}. Empty: none needed.
UNCHECKED_ALLOWED: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Evidence:
    kind: str   #: "cell" | "test"
    path: str   #: relative to the repository root: notebooks/NN_x.ipynb or tests/test_x.py
    name: str   #: the cell tag (evidence:<id>) or the test function's name

    def __str__(self) -> str:
        return f"{self.path}::{self.name}"

    def link(self, base: str = "../") -> str:
        return base + self.path

    @property
    def label(self) -> str:
        if self.kind == "cell":
            return f"cell `{self.name}` in {Path(self.path).name}"
        return f"test `{Path(self.path).name}::{self.name}`"


def resolve(question) -> Evidence:
    ref = question.evidence or f"notebooks/{question.notebook}::{TAG_PREFIX}{question.id}"
    path, sep, name = ref.partition("::")
    if not sep or not name:
        raise ValueError(f"{question.id}: evidence {ref!r} is not 'path::tag-or-test'")
    if path.startswith("tests/"):
        return Evidence("test", path, name)
    if path.startswith("notebooks/") and name.startswith(TAG_PREFIX):
        return Evidence("cell", path, name)
    raise ValueError(f"{question.id}: evidence {ref!r} is neither notebooks/...::evidence:<tag> nor tests/...::test_x")


def tagged_cells(notebook: Path, tag: str) -> list[dict]:
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    return [c for c in nb["cells"] if tag in (c.get("metadata", {}).get("tags") or [])]


def test_functions(test_file: Path) -> set[str]:
    """Names of the module-level test functions (what pytest collects from the file)."""
    tree = ast.parse(test_file.read_text(encoding="utf-8"))
    return {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
            and n.name.startswith("test")}


def has_stored_output(cell: dict) -> bool:
    if cell.get("cell_type") != "code" or cell.get("execution_count") is None:
        return False
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream" and "".join(out.get("text", "")).strip():
            return True
        if out.get("output_type") in ("execute_result", "display_data") and out.get("data"):
            return True
    return False


def problems(questions=None, root: Path = ROOT) -> list[tuple[str, Evidence, str]]:
    """``(question id, evidence, what is wrong)`` for every question whose evidence does not hold."""
    from .bank import QUESTIONS

    out = []
    for q in QUESTIONS if questions is None else questions:
        try:
            ev = resolve(q)
        except ValueError as exc:
            out.append((q.id, Evidence("none", q.evidence, ""), str(exc)))
            continue
        target = root / ev.path
        if not target.exists():
            out.append((q.id, ev, f"{ev.path} does not exist"))
            continue
        if ev.kind == "test":
            if ev.name not in test_functions(target):
                out.append((q.id, ev, f"no test function {ev.name} in {ev.path}"))
            continue
        cells = tagged_cells(target, ev.name)
        if not cells:
            out.append((q.id, ev, "missing tag: no cell has it"))
            continue
        for cell in cells:
            if not has_stored_output(cell):
                out.append((q.id, ev, f"tagged cell {cell.get('id')} has no stored output"))
            unchecked = [t for t in UNCHECKED_TAGS if t in (cell.get("metadata", {}).get("tags") or [])]
            if unchecked and (ev.path, ev.name) not in UNCHECKED_ALLOWED:
                out.append((q.id, ev, f"tagged cell {cell.get('id')} is {unchecked[0]}: nbval would not "
                                      f"re-check its output"))
    return out


def report(found: list[tuple[str, Evidence, str]]) -> str:
    """One line per problem: question id -> notebook (or test file), expected tag (or test): what is wrong."""
    if not found:
        return "every quiz question has its evidence"
    lines = [f"{len(found)} quiz question(s) without usable evidence (question id -> file, expected tag/test: problem):"]
    lines += [f"  {qid} -> {ev.path}, {ev.name}: {why}" for qid, ev, why in found]
    return "\n".join(lines)
