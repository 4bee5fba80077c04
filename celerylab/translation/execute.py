"""Run a translated edition's notebooks, so that their stored outputs speak the edition's language.

The edition's build copies the English outputs; the kit's own lines in them (a check's verdict, a
final-state line, a chart's title) are English. Running each notebook once more, in a kernel with
``CELERYLAB_LANG`` set to the edition's language, records what a learner of that edition sees;
nbval then checks the edition against those outputs, as it checks the English notebooks against
theirs, and a translated lab is graded against its executed solution.

A notebook is run again only when what it was built from changed: the build stores a key (the
translated notebook and the kit's catalog, hashed) in its ``celerylab_edition`` metadata, and a
run records the key it ran. Each run is a subprocess (``python -m celerylab.translation run``),
``jobs`` at a time.
"""
from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import time
from pathlib import Path

import nbformat

from ..errors import CeleryLabError
from ..i18n import ENV, catalog_path

#: worker log lines in a cell's output: nbval could never reproduce them
LOG_MARKERS = ("celery.worker", "kombu.", "[INFO", "[WARNING", "Connected to redis")
CELL_TIMEOUT = 180


def build_key(rendered: str, lang: str) -> str:
    """What a translated notebook was built from: its text (code, outputs, translations) and the kit's catalog."""
    digest = hashlib.sha256(rendered.encode("utf-8"))
    kit = catalog_path(lang)
    if kit.exists():
        digest.update(kit.read_bytes())
    return digest.hexdigest()[:16]


def edition_meta(nb) -> dict:
    return nb.metadata.setdefault("celerylab_edition", {})


def is_current(path: Path) -> bool:
    """``path`` was run since it was last built."""
    meta = nbformat.read(path, as_version=4).metadata.get("celerylab_edition", {}) or {}
    return bool(meta.get("built_from")) and meta.get("ran") == meta.get("built_from")


def _forget_run(path: Path) -> None:
    """Mark ``path`` as not run, so the next build runs it again."""
    try:
        nb = nbformat.read(path, as_version=4)
        edition_meta(nb).pop("ran", None)
        nbformat.write(nb, path)
    except Exception:
        pass


def run_one(path: Path, timeout: int = CELL_TIMEOUT) -> float:
    """Execute ``path`` in place in a fresh kernel speaking its edition's language; seconds taken."""
    import os

    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    meta = edition_meta(nb)
    lang = meta.get("lang")
    if not lang:
        raise CeleryLabError(f"{path}: not a translated edition's notebook (no celerylab_edition.lang)")
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    client.kernel_manager_class = "jupyter_client.manager.KernelManager"
    start = time.monotonic()
    client.execute(cwd=str(path.parent), env={**os.environ, ENV: lang})
    elapsed = time.monotonic() - start
    nb.metadata.pop("widgets", None)  # plotly FigureWidget state: megabytes, and nbval ignores it
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if any(marker in out.get("text", "") for marker in LOG_MARKERS):
                raise CeleryLabError(f"{path}: a cell output holds worker log lines:\n{out['text'][:300]}")
    meta["ran"] = meta.get("built_from")
    meta["outputs_lang"] = lang
    nbformat.write(nb, path)
    return elapsed


_CJK = re.compile(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]")
_SKIP_TAGS = {"nbval-ignore-output", "nbval-skip", "raises-exception"}


def _sanitizers() -> list[tuple[re.Pattern, str]]:
    """The regex/replace pairs nbval sanitizes outputs with (tests/sanitize.cfg), if present."""
    from .catalogs import repo_root

    path = repo_root() / "tests" / "sanitize.cfg"
    if not path.exists():
        return []
    pairs, pattern = [], None
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("regex: "):
            pattern = re.compile(line[len("regex: "):])
        elif line.startswith("replace: ") and pattern is not None:
            pairs.append((pattern, line[len("replace: "):]))
            pattern = None
    return pairs


def _output_lines(cell, sanitizers) -> list[str]:
    lines = []
    for out in cell.get("outputs", []):
        text = out.get("text", "") if out.get("output_type") == "stream" else \
            (out.get("data", {}) or {}).get("text/plain", "")
        text = "".join(text) if isinstance(text, list) else text
        for pattern, replace in sanitizers:
            text = pattern.sub(replace, text)
        lines.extend(line.rstrip() for line in text.splitlines() if line.strip())
    return lines


def unexplained_lines(path: Path) -> list[str]:
    """Output lines of a run edition notebook that the English run never printed.

    A kit's line in the edition's language has Chinese in it and is not compared; every other
    line (a task's state, a count, a value) must be one the English notebook's cell printed too.
    A line that is not there means this run went another way than the English one (a busy
    machine can do that to a timing-sensitive demo): the recording is not kept."""
    from .catalogs import repo_root

    nb = nbformat.read(path, as_version=4)
    source = (nb.metadata.get("celerylab_edition", {}) or {}).get("translated_from")
    english_path = repo_root() / source if source else None
    if not english_path or not english_path.exists():
        return []
    english = {c.get("id"): c for c in nbformat.read(english_path, as_version=4).cells}
    sanitizers = _sanitizers()
    found = []
    for cell in nb.cells:
        if cell.cell_type != "code" or _SKIP_TAGS & set(cell.get("metadata", {}).get("tags", []) or []):
            continue
        theirs = set(_output_lines(english.get(cell.get("id"), {}), sanitizers))
        for line in _output_lines(cell, sanitizers):
            if not _CJK.search(line) and line not in theirs:
                found.append(f"cell {cell.get('id')}: {line[:160]}")
    return found


def run_all(paths: list[Path], jobs: int = 2, out=sys.stdout, attempts: int = 2) -> None:
    """Run every notebook of ``paths`` not run since its build, ``jobs`` at a time, with progress.

    A run whose outputs have a line the English run never printed (:func:`unexplained_lines`) is
    run again, up to ``attempts`` runs in all; then the build fails, naming the lines."""
    todo = [p for p in paths if not is_current(p)]
    if not todo:
        print(f"all {len(paths)} notebooks of the edition are current", file=out)
        return
    print(f"running {len(todo)} of {len(paths)} notebooks in the edition's language ({jobs} at a time)", file=out, flush=True)
    pending, running, failed, done = list(todo), {}, [], 0
    tries = {p: 0 for p in todo}
    started = time.monotonic()
    while pending or running:
        while pending and len(running) < max(1, jobs):
            path = pending.pop(0)
            tries[path] += 1
            running[path] = subprocess.Popen([sys.executable, "-m", "celerylab.translation", "run", str(path)],
                                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for path, proc in list(running.items()):
            if proc.poll() is None:
                continue
            del running[path]
            text = (proc.stdout.read() if proc.stdout else "").strip()
            odd = [] if proc.returncode else unexplained_lines(path)
            if odd and tries[path] < attempts:
                print(f"[{done + 1}/{len(todo)}] {path}: this run printed what the English run did not "
                      f"({odd[0]}); running it again", file=out, flush=True)
                pending.insert(0, path)
                continue
            done += 1
            if proc.returncode or odd:
                failed.append(path)
                why = text[-2000:] if proc.returncode else "lines the English run never printed:\n" + "\n".join(odd[:10])
                print(f"[{done}/{len(todo)}] {path}: FAILED\n{why}", file=out, flush=True)
                _forget_run(path)
            else:
                print(f"[{done}/{len(todo)}] {text.splitlines()[-1] if text else path}", file=out, flush=True)
        time.sleep(0.2)
    print(f"ran {len(todo) - len(failed)} notebooks in {time.monotonic() - started:.0f} s", file=out, flush=True)
    if failed:
        raise CeleryLabError(f"{len(failed)} notebooks of the edition failed to run: {', '.join(map(str, failed))}")
