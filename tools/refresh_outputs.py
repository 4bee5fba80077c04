"""Execute notebooks in place so their stored outputs are the reference nbval compares against.

    python tools/refresh_outputs.py notebooks/00_start_here.ipynb [...]

Runs each notebook top to bottom in a fresh kernel of this Python (the kit's venv), then strips
widget state (plotly FigureWidget stores megabytes of it, and nbval ignores it anyway) and
checks that no cell output holds worker log lines, which nbval cannot reproduce.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

LOG_MARKERS = ("celery.worker", "kombu.", "[INFO", "[WARNING", "Connected to redis")


def refresh(path: Path, timeout: int = 120) -> float:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    client.kernel_manager_class = "jupyter_client.manager.KernelManager"
    start = time.monotonic()
    client.execute(cwd=str(path.parent))
    elapsed = time.monotonic() - start
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:  # nbclient's per-cell timestamps: noise in every diff
        cell.metadata.pop("execution", None)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for out in cell.get("outputs", []):
            text = out.get("text", "")
            if any(marker in text for marker in LOG_MARKERS):
                raise SystemExit(f"{path}: a cell output holds log lines; send them to a file:\n{text[:300]}")
    nbformat.write(nb, path)
    return elapsed


def main(paths: list[str]) -> int:
    for p in paths:
        elapsed = refresh(Path(p))
        print(f"{p}: executed in {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
