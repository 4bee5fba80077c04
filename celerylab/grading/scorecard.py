"""Grading results: one :class:`LabResult` per notebook, printed as a scorecard or a CSV row."""
from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..i18n import N_, _

#: an exercise's status: data (JSON, CSV, comparisons) in English; the scorecard shows it translated
PASSED = N_("passed")
STATUSES = (PASSED, N_("incorrect"), N_("not attempted"), N_("error"), N_("missing"), N_("not run"))
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class ExerciseResult:
    label: str
    status: str = "not run"
    message: str = ""


@dataclass
class LabResult:
    notebook: str
    lab: str | None = None
    exercises: dict[str, ExerciseResult] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  #: other cells that failed, or why grading failed
    state: str = "pending"  #: pending | running | done | timed out | error
    started_at: float | None = None

    @property
    def passed(self) -> int:
        return sum(e.status == PASSED for e in self.exercises.values())

    @property
    def total(self) -> int:
        return len(self.exercises)

    @property
    def ok(self) -> bool:
        return self.state == "done" and self.total > 0 and self.passed == self.total and not self.problems

    def record(self, label: str, status: str, message: str = "") -> None:
        """Keep the worst result of an exercise (a check cell may appear more than once)."""
        current = self.exercises.get(label)
        if current is None or current.status in (PASSED, "not run"):
            self.exercises[label] = ExerciseResult(label, status, clean(message))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "LabResult":
        exercises = {k: ExerciseResult(**v) for k, v in data.pop("exercises", {}).items()}
        return cls(exercises=exercises, **data)


def clean(text: str) -> str:
    """One line, no ANSI colours."""
    return " ".join(_ANSI.sub("", text or "").split())


def format_card(result: LabResult, name: str | None = None) -> str:
    name = name or result.notebook
    if result.total and result.lab:
        head = _("{name} (lab {lab}): {passed}/{total} exercises passed", name=name, lab=result.lab,
                 passed=result.passed, total=result.total)
    elif result.total:
        head = _("{name}: {passed}/{total} exercises passed", name=name, passed=result.passed, total=result.total)
    elif result.lab:
        head = _("{name} (lab {lab}): not graded", name=name, lab=result.lab)
    else:
        head = _("{name}: not graded", name=name)
    if result.state == "timed out":
        head += " " + _("(stopped: time limit)")
    lines = [head]
    width = max((len(_(e.status)) for e in result.exercises.values()), default=6)
    for ex in result.exercises.values():
        message = f"  {ex.message}" if ex.message and ex.status != PASSED else ""
        lines.append(f"  {ex.label:<4}{_(ex.status):<{width}}{message}".rstrip())
    for problem in result.problems:
        lines.append(f"  !   {problem}")
    return "\n".join(lines)


def save_json(results: list[LabResult], path: os.PathLike | str) -> None:
    """Write atomically: a grader killed mid-write leaves the previous complete file."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps([r.to_dict() for r in results], indent=1), encoding="utf-8")
    os.replace(tmp, path)


def load_json(path: os.PathLike | str) -> list[LabResult]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [LabResult.from_dict(d) for d in data]


def _label_key(label: str):
    digits = re.sub(r"\D", "", label)
    return (int(digits) if digits else 0, label)


def write_csv(results: list[LabResult], path: os.PathLike | str, base: os.PathLike | str | None = None) -> None:
    """One row per notebook: passed, total, one column per exercise (its status), messages."""
    labels = sorted({label for r in results for label in r.exercises}, key=_label_key)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["notebook", "lab", "passed", "total", "state", *labels, "messages"])
        for r in results:
            name = os.path.relpath(r.notebook, base) if base else r.notebook
            messages = [f"{e.label}: {e.message}" for e in r.exercises.values() if e.status != PASSED and e.message]
            messages += r.problems
            writer.writerow([name, r.lab or "", r.passed, r.total, r.state,
                             *[r.exercises[label].status if label in r.exercises else "" for label in labels],
                             " | ".join(messages)])
