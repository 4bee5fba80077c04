"""Labs are generated from their solution notebooks: one source per lab.

``solutions/NN_topic.ipynb`` is the master copy. Its answer code sits between
``### BEGIN SOLUTION`` and ``### END SOLUTION``; its check cells (tags ``check`` and
``exercise:qN``) hold the passing output. ``labs/NN_topic.ipynb`` is the same notebook with

* every solution block replaced: inside a function by ``raise NotImplementedError()``, at
  the top level by ``name = ____`` for each name the block assigns;
* cells tagged ``solution-only`` left out;
* shipped unrun, as Kaggle Learn ships its exercises: no cell keeps an output or an
  execution count, so a learner never sees "Correct: ..." under a check they have not run.
  ``pytest --nbval labs/NN.ipynb`` still grades: ``labs/conftest.py`` loads the grader
  plugin, which puts the master's check cells back with their passing output; and with
  no plugin at all a check still fails by raising while its answer is wrong;
* right before each check cell, a fixed markdown note (tag ``check-note``): run the next
  cell to grade your answer. Markdown only, so nbval and the grader never see it.

``python -m celerylab.grading.labs`` (``make labs``) writes the labs; ``--check`` only
reports stale ones; ``--execute`` first re-runs the solution notebooks to refresh outputs.
"""
from __future__ import annotations

import argparse
import ast
import copy
import re
import sys
import textwrap
from pathlib import Path

import nbformat

from ..errors import CeleryLabError
from ..i18n import DEFAULT as ENGLISH
from ..i18n import N_, translate

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
CHECK_TAG = "check"
EXERCISE_TAG = "exercise:"
SOLUTION_ONLY_TAG = "solution-only"
CHECK_NOTE_TAG = "check-note"
#: markdown (marked for the kit's catalog): a translated edition's labs get it in their language
CHECK_NOTE = N_("**Run the next cell to grade your answer.** It prints `Correct: ...` when your answer does "
              "what the exercise asks, and otherwise one line saying what the check observed.")
EXERCISE_MODULE = re.compile(r"^\s*from\s+(celerylab\.exercises\.\w+)\s+import\s+\*", re.MULTILINE)


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def solutions_dir() -> Path:
    return repo_root() / "solutions"


def labs_dir() -> Path:
    return repo_root() / "labs"


# -- cells -------------------------------------------------------------------------------
def tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []) or [])


def exercise_label(cell) -> str | None:
    """``q1`` for a cell tagged ``exercise:q1``."""
    for tag in tags(cell):
        if tag.startswith(EXERCISE_TAG):
            return tag[len(EXERCISE_TAG):]
    return None


def is_check(cell) -> bool:
    return cell.get("cell_type") == "code" and CHECK_TAG in tags(cell) and exercise_label(cell) is not None


def check_passed(cell, lang: str = ENGLISH) -> bool:
    """The check cell's stored output is a pass: ``Correct: ...`` in ``lang`` (the language the
    notebook was run in), and no error."""
    outputs = cell.get("outputs", [])
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream" and o.get("name") == "stdout")
    prefix = translate("Correct: {label}: {text}", lang).split("{label}")[0]  # "Correct: ", "正确："
    return not any(o.get("output_type") == "error" for o in outputs) and text.startswith(prefix)


def master_checks(nb, where: str = "notebook") -> dict[str, object]:
    """``{"q1": check cell, ...}`` in notebook order; each label once."""
    found: dict[str, object] = {}
    for cell in nb.cells:
        if is_check(cell):
            label = exercise_label(cell)
            if label in found:
                raise CeleryLabError(f"{where}: two check cells are tagged exercise:{label}")
            found[label] = cell
    return found


def exercise_module(nb) -> str | None:
    """The ``celerylab.exercises.*`` module the notebook imports its questions from."""
    for cell in nb.cells:
        if cell.get("cell_type") == "code":
            match = EXERCISE_MODULE.search(cell.source)
            if match:
                return match.group(1)
    return None


def lab_name(nb, path: Path | None = None) -> str | None:
    """The lab a notebook belongs to: its ``celerylab.lab`` metadata, else its file name."""
    name = nb.get("metadata", {}).get("celerylab", {}).get("lab")
    if name:
        return name
    if path is not None:
        match = re.search(r"(\d\d_[A-Za-z0-9_]+?)(?:[-. (]|$)", Path(path).stem)
        if match:
            return match.group(1)
    return None


# -- solution blocks ---------------------------------------------------------------------
def _blank_for(block: list[str], indent: str) -> list[str]:
    if indent:
        return [f"{indent}# YOUR CODE HERE", f"{indent}raise NotImplementedError()"]
    names: list[str] = []
    try:
        tree = ast.parse(textwrap.dedent("\n".join(block)))
    except SyntaxError:
        tree = ast.Module(body=[], type_ignores=[])
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        for target in targets:
            if isinstance(target, ast.Name) and target.id not in names:
                names.append(target.id)
    return ["# YOUR CODE HERE"] + [f"{name} = ____" for name in names]


def strip_solutions(source: str, where: str = "cell") -> str:
    """The source with every ``### BEGIN/END SOLUTION`` block replaced by a blank."""
    lines = source.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.strip().startswith(BEGIN):
            indent = line[: len(line) - len(line.lstrip())]
            end = next((j for j in range(i + 1, len(lines)) if lines[j].strip().startswith(END)), None)
            if end is None:
                raise CeleryLabError(f"{where}: {BEGIN} without {END}")
            out.extend(_blank_for(lines[i + 1:end], indent))
            i = end + 1
        elif line.strip().startswith(END):
            raise CeleryLabError(f"{where}: {END} without {BEGIN}")
        else:
            out.append(line)
            i += 1
    return "\n".join(out)


# -- notebooks ---------------------------------------------------------------------------
def check_note(check, lang: str = ENGLISH) -> nbformat.NotebookNode:
    """The markdown cell that goes right before a check cell in a lab (in the lab's language ``lang``)."""
    note = nbformat.v4.new_markdown_cell(translate(CHECK_NOTE, lang), metadata={"tags": [CHECK_NOTE_TAG]})
    label = exercise_label(check)
    note.id = f"{check.get('id') or label}-note"[:64]
    return note


def make_lab(solution, name: str, where: str = "solution", origin: str | None = None,
             lang: str = ENGLISH, outputs_lang: str = ENGLISH) -> nbformat.NotebookNode:
    """The learner's notebook for a solution notebook (which is not changed).

    ``lang``: the lab's language (a translated edition's), for the notes the generator adds;
    ``outputs_lang``: the language the solution was run in (its check cells' ``Correct: ...``).

    ``origin``: the solution's path from the repository root, which the grader reads the master
    copy from (default ``solutions/<name>.ipynb``; a translated edition's own solutions folder).
    """
    lab = copy.deepcopy(solution)
    checks = master_checks(lab, where)
    if not checks:
        raise CeleryLabError(f"{where}: no check cells (tags 'check' and 'exercise:qN')")
    for label, cell in checks.items():
        if not check_passed(cell, outputs_lang):
            raise CeleryLabError(f"{where}: the check cell for {label} has no passing output; run the solution "
                                 f"notebook first (python -m celerylab.grading.labs --execute)")
    module = exercise_module(lab)
    if module:
        import importlib

        from .exercise import exercises_in

        declared = list(exercises_in(importlib.import_module(module)))
        if declared != list(checks):
            raise CeleryLabError(f"{where}: check cells {', '.join(checks)} do not match the exercises "
                                 f"{', '.join(declared) or 'none'} of {module}")
    cells = []
    for n, cell in enumerate(lab.cells, start=1):
        if SOLUTION_ONLY_TAG in tags(cell):
            continue
        if BEGIN in cell.source:
            cell.source = strip_solutions(cell.source, f"{where} cell {n}")
            if cell.cell_type == "code":
                cell.outputs = []
        if is_check(cell):
            cells.append(check_note(cell, lang))
        if cell.cell_type == "code":  # shipped unrun
            cell.outputs = []
            cell.execution_count = None
        cells.append(cell)
    lab.cells = cells
    lab.metadata.pop("widgets", None)
    lab.metadata["celerylab"] = {"lab": name, "generated_from": origin or f"solutions/{name}.ipynb"}
    return lab


def render(nb) -> str:
    return nbformat.writes(nb) + "\n"


def planned(solutions: Path | None = None, labs: Path | None = None) -> list[tuple[Path, str]]:
    """``(lab path, lab text)`` for every solution notebook."""
    solutions = solutions or solutions_dir()
    labs = labs or labs_dir()
    out = []
    for path in sorted(solutions.glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        out.append((labs / path.name, render(make_lab(nb, path.stem, where=str(path)))))
    return out


def stale_labs(solutions: Path | None = None, labs: Path | None = None) -> list[Path]:
    """Labs that are missing or differ from what their solution notebook generates."""
    return [path for path, text in planned(solutions, labs)
            if not path.exists() or path.read_text(encoding="utf-8") != text]


def execute(path: Path, timeout: float = 120) -> None:
    """Run a solution notebook top to bottom in a fresh kernel and save its outputs."""
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient
    from nbval.kernel import CURRENT_ENV_KERNEL_NAME, NbvalKernelspecManager

    nb = nbformat.read(path, as_version=4)
    # this Python's own kernel, whatever kernelspecs are installed (like nbval --nbval-current-env)
    km = KernelManager(kernel_name=CURRENT_ENV_KERNEL_NAME, kernel_spec_manager=NbvalKernelspecManager())
    NotebookClient(nb, km=km, timeout=timeout, resources={"metadata": {"path": str(path.parent)}}).execute()
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        cell.get("metadata", {}).pop("execution", None)
    path.write_text(render(nb), encoding="utf-8")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m celerylab.grading.labs",
                                     description="Generate labs/ from solutions/ (make labs).")
    parser.add_argument("--check", action="store_true", help="only report labs that are out of date (exit 1)")
    parser.add_argument("--execute", action="store_true", help="re-run the solution notebooks first")
    args = parser.parse_args(argv)
    try:
        if args.execute:
            for path in sorted(solutions_dir().glob("[0-9][0-9]_*.ipynb")):
                print(f"executing {path.relative_to(repo_root())}", flush=True)
                execute(path)
        if args.check:
            stale = stale_labs()
            for path in stale:
                print(f"{path.relative_to(repo_root())} is out of date: run `make labs`")
            return 1 if stale else 0
        for path, text in planned():
            rel = path.relative_to(repo_root())
            if path.exists() and path.read_text(encoding="utf-8") == text:
                print(f"{rel}: up to date")
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")
                print(f"{rel}: written")
        return 0
    except CeleryLabError as exc:
        print(f"celerylab: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
