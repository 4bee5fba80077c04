"""Recorded RabbitMQ results: what a lesson shows when the class broker is not RabbitMQ.

Some claims of lessons 04 and 06 are about RabbitMQ itself (native priority, dead-lettering,
where the seed article's queue configurations send a task). Their experiments are in the
notebook cells. When the kit's broker is RabbitMQ (``CELERYLAB_BROKER_URL=amqp://...``) the cell
runs the experiment live; otherwise it shows the result the same cell wrote the last time it ran
on a RabbitMQ, stored as JSON in ``notebooks/recorded/<name>.json`` with the RabbitMQ version
(as the server reported it) and the date. In a cell::

    live = experiment() if on_rabbitmq else None     # the experiment, in the cell above
    recorded.show("l04-seed-priority", live)         # prints the recording; checks `live` against it

:func:`show` prints the recording, labelled as such. Given a live result, it raises
:class:`RecordingMismatch` when the live result differs from the recording, so the RabbitMQ run
of ``make test-brokers`` fails (nbval reports the error) until someone looks and re-records.

Re-record (starts a RabbitMQ of its own, runs the notebooks in memory, writes only the JSON files;
the notebooks' stored outputs are untouched)::

    .venv/bin/python -m celerylab.servers rabbitmq --results redis -- \\
        .venv/bin/python -m celerylab.recorded record notebooks/04_priority_routing.ipynb \\
        notebooks/06_dead_letter.ipynb

``python -m celerylab.recorded list`` prints what is recorded.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from .i18n import N_, _

#: Set (to 1) by ``python -m celerylab.recorded record``: :func:`show` writes live results.
RECORD_ENV = "CELERYLAB_RECORD"
#: Where recordings live (next to the notebooks that show them).
RECORDED_DIR = Path(__file__).resolve().parent.parent / "notebooks" / "recorded"
RECORD_COMMAND = ("python -m celerylab.servers rabbitmq --results redis -- "
                  "python -m celerylab.recorded record NOTEBOOK")
#: The status line of a live run (tests/sanitize_brokers.cfg maps it to the non-live one).
LIVE_LINE = N_("This run: live on RabbitMQ {version}, same result as the recording.")
NOT_LIVE_LINE = N_("This run: the kit's broker is not RabbitMQ, so the result above is the recording.")


class RecordingMismatch(AssertionError):
    """A live RabbitMQ result differs from its recording."""


class RecordingMissing(FileNotFoundError):
    """No recording of that name (record it on RabbitMQ first)."""


@dataclass(frozen=True)
class Recording:
    name: str
    broker: str          # e.g. "RabbitMQ 3.10.8", as the server reported it
    recorded_on: str     # ISO date (UTC)
    notebook: str        # the notebook whose cell ran the experiment
    result: object       # JSON: what the experiment returned

    @property
    def path(self) -> Path:
        return path_for(self.name)

    def header(self) -> str:
        return _("Recorded on {broker}, {date}, by the code above (notebooks/recorded/{name}.json):",
                 broker=self.broker, date=self.recorded_on, name=self.name)


def path_for(name: str, directory: Path | None = None) -> Path:
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"bad recording name {name!r}")
    return (directory or RECORDED_DIR) / f"{name}.json"


def normalize(result):
    """The result as JSON gives it back (tuples become lists, dict keys strings)."""
    return json.loads(json.dumps(result))


def load(name: str, directory: Path | None = None) -> Recording:
    path = path_for(name, directory)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise RecordingMissing(f"no recording {path}; record it on RabbitMQ: {RECORD_COMMAND}") from None
    return Recording(data["name"], data["broker"], data["recorded_on"], data["notebook"], data["result"])


def save(name: str, result, broker: str, notebook: str = "", directory: Path | None = None,
         today: str | None = None) -> Recording:
    """Write a recording (what ``record`` mode does with a live result)."""
    rec = Recording(name, broker, today or _dt.datetime.now(_dt.timezone.utc).date().isoformat(),
                    notebook, normalize(result))
    path = path_for(name, directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"name": rec.name, "broker": rec.broker, "recorded_on": rec.recorded_on,
                                "notebook": rec.notebook, "recorded_by": RECORD_COMMAND,
                                "result": rec.result}, indent=2, sort_keys=False) + "\n")
    return rec


def rabbitmq_version(app) -> str:
    """``"RabbitMQ <version>"`` as the app's broker reports it when we connect."""
    with app.connection_for_write() as conn:
        conn.connect()
        props = getattr(conn.connection, "server_properties", None) or {}
    product, version = props.get("product", "RabbitMQ"), props.get("version", "?")
    as_text = [v.decode() if isinstance(v, bytes) else str(v) for v in (product, version)]
    return " ".join(as_text)


def format_result(result) -> str:
    rows = list(result.values()) if isinstance(result, dict) else []
    if rows and all(isinstance(r, dict) and list(r) == list(rows[0]) for r in rows):   # a table
        width = max(len(str(k)) for k in result)
        cols = {c: max([len(c)] + [len(str(r[c])) for r in rows]) for c in rows[0]}
        lines = [f"  {'':{width}}" + "".join(f"  {c:>{n}}" for c, n in cols.items())]
        lines += [f"  {str(k):{width}}" + "".join(f"  {r[c]!s:>{n}}" for c, n in cols.items())
                  for k, r in result.items()]
        return "\n".join(lines)
    if isinstance(result, dict):
        width = max((len(str(k)) for k in result), default=0)
        return "\n".join(f"  {str(k):{width}}  {v}" for k, v in result.items())
    return f"  {result}"


def recording_mode() -> bool:
    return os.environ.get(RECORD_ENV, "") not in ("", "0")


def show(name: str, live=None, app=None, notebook: str = "", directory: Path | None = None):
    """Print the recording ``name``; with a ``live`` result (from RabbitMQ), check it against it.

    In record mode (``CELERYLAB_RECORD=1``) a live result first replaces the recording; ``app``
    (on the RabbitMQ) gives the version to store. Returns the recorded result.
    """
    version = None
    if live is not None:
        version = rabbitmq_version(app) if app is not None else "RabbitMQ ?"
        if recording_mode():
            save(name, live, version, notebook, directory)
    rec = load(name, directory)
    print(rec.header())
    print(format_result(rec.result))
    if live is None:
        print(_(NOT_LIVE_LINE))
    elif normalize(live) != rec.result:
        raise RecordingMismatch(
            f"{name}: the live result on {version} differs from the recording of {rec.recorded_on} "
            f"({rec.broker}):\n live:     {normalize(live)}\n recorded: {rec.result}\n"
            f"Find out why; if RabbitMQ is right, re-record: {RECORD_COMMAND}")
    else:
        print(_(LIVE_LINE, version=version.removeprefix("RabbitMQ ")))
    return rec.result


def _record(notebooks: list[str]) -> int:
    url = os.environ.get("CELERYLAB_BROKER_URL", "")
    if not url.startswith(("amqp://", "amqps://", "pyamqp://")):
        print("record: CELERYLAB_BROKER_URL must point at a RabbitMQ (amqp://...); run it under\n  "
              + RECORD_COMMAND, file=sys.stderr)
        return 2
    import nbformat
    from nbclient import NotebookClient

    os.environ[RECORD_ENV] = "1"   # inherited by the kernels
    before = {p: p.stat().st_mtime for p in RECORDED_DIR.glob("*.json")} if RECORDED_DIR.exists() else {}
    for path in map(Path, notebooks):
        nb = nbformat.read(path, as_version=4)   # executed in memory: the notebook file is not written
        client = NotebookClient(nb, timeout=180, kernel_name="python3")
        client.kernel_manager_class = "jupyter_client.manager.KernelManager"
        client.execute(cwd=str(path.parent))
        print(f"{path}: executed on RabbitMQ")
    for p in sorted(RECORDED_DIR.glob("*.json")):
        if before.get(p) != p.stat().st_mtime:
            print(f"recorded {p.relative_to(RECORDED_DIR.parent.parent)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["record"] and argv[1:]:
        return _record(argv[1:])
    if argv[:1] == ["list"]:
        for p in sorted(RECORDED_DIR.glob("*.json")):
            rec = load(p.stem)
            print(f"{rec.name:28} {rec.broker:18} {rec.recorded_on}  {rec.notebook}")
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
