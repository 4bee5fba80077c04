"""celerylab.recorded: recorded RabbitMQ results, labelled, and checked against live runs."""
from __future__ import annotations

import json

import nbformat
import pytest

from celerylab import recorded


def test_show_prints_a_labelled_recording_and_returns_it(tmp_path, capsys):
    recorded.save("demo", {"order run": ("p9", "p0")}, "RabbitMQ 3.10.8", "notebooks/x.ipynb",
                  directory=tmp_path, today="2026-12-03")
    result = recorded.show("demo", None, directory=tmp_path)
    out = capsys.readouterr().out
    assert result == {"order run": ["p9", "p0"]}
    assert out.splitlines()[0] == ("Recorded on RabbitMQ 3.10.8, 2026-12-03, by the code above "
                                   "(notebooks/recorded/demo.json):")
    assert "['p9', 'p0']" in out and recorded.NOT_LIVE_LINE in out


def test_a_live_result_that_differs_from_the_recording_raises(tmp_path, monkeypatch):
    monkeypatch.delenv(recorded.RECORD_ENV, raising=False)
    monkeypatch.setattr(recorded, "rabbitmq_version", lambda app: "RabbitMQ 3.13.0")
    recorded.save("demo", {"order run": ["p9", "p0"]}, "RabbitMQ 3.10.8", directory=tmp_path)
    with pytest.raises(recorded.RecordingMismatch, match="differs from the recording"):
        recorded.show("demo", {"order run": ["p0", "p9"]}, app=object(), directory=tmp_path)


def test_a_matching_live_result_says_it_ran_live(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(recorded.RECORD_ENV, raising=False)
    monkeypatch.setattr(recorded, "rabbitmq_version", lambda app: "RabbitMQ 3.13.0")
    recorded.save("demo", {"order run": ["p9", "p0"]}, "RabbitMQ 3.10.8", directory=tmp_path)
    recorded.show("demo", {"order run": ("p9", "p0")}, app=object(), directory=tmp_path)
    assert "This run: live on RabbitMQ 3.13.0, same result as the recording." in capsys.readouterr().out


def test_record_mode_writes_the_live_result_with_the_servers_version(tmp_path, monkeypatch):
    monkeypatch.setenv(recorded.RECORD_ENV, "1")
    monkeypatch.setattr(recorded, "rabbitmq_version", lambda app: "RabbitMQ 3.13.0")
    recorded.show("demo", {"dead": 1}, app=object(), notebook="nb.ipynb", directory=tmp_path)
    data = json.loads((tmp_path / "demo.json").read_text())
    assert (data["broker"], data["result"], data["notebook"]) == ("RabbitMQ 3.13.0", {"dead": 1}, "nb.ipynb")


def test_a_missing_recording_says_how_to_record(tmp_path):
    with pytest.raises(recorded.RecordingMissing, match="celerylab.recorded record"):
        recorded.show("nothing", None, directory=tmp_path)


def test_record_refuses_without_a_rabbitmq(monkeypatch, capsys):
    monkeypatch.setenv("CELERYLAB_BROKER_URL", "redis://127.0.0.1:6379/0")
    assert recorded.main(["record", "notebooks/04_priority_routing.ipynb"]) == 2
    assert "amqp://" in capsys.readouterr().err


def _shown_recordings() -> dict[str, str]:
    """{recording name: notebook} for every recorded.show("name", ...) in a lesson cell."""
    import re

    shown = {}
    for path in sorted(recorded.RECORDED_DIR.parent.glob("*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            for name in re.findall(r'recorded\.show\("([^"]+)"', cell.source):
                shown[name] = f"notebooks/{path.name}"
    return shown


def test_every_recording_a_lesson_shows_exists_and_came_from_rabbitmq():
    shown = _shown_recordings()
    assert {"l04-seed-priority", "l04-fixed-priority", "l06-rabbitmq-dead-lettering",
            "l06-seed-dead-lettering"} <= set(shown)
    for name, notebook in shown.items():
        rec = recorded.load(name)
        assert rec.broker.startswith("RabbitMQ "), rec.broker
        assert rec.notebook == notebook


def test_the_recordings_say_what_the_lessons_teach():
    """The sentences next to the recordings (lessons 04 and 06) rest on these values."""
    seed = recorded.load("l04-seed-priority").result
    assert seed["queue"] == "celery"
    assert seed["order run"] == ["p0", "p9", "p5", "p1", "p8"]          # sent order: priority ignored
    assert "inequivalent arg 'x-max-priority'" in seed["redeclared with x-max-priority"]
    fixed = recorded.load("l04-fixed-priority").result
    assert fixed["queue"] == "high" and fixed["order run"] == ["p9", "p8", "p5", "p1", "p0"]
    rows = recorded.load("l06-rabbitmq-dead-lettering").result
    assert {case: row["l06_dead"] for case, row in rows.items()} == {
        "a task raises (default: early ack)": 0,            # acknowledged: gone
        "acks_late + raise Reject(requeue=False)": 1,        # rejected: dead-lettered
        "acks_late + acks_on_failure=False": 1}
    assert rows["acks_late + raise Reject(requeue=False)"]["dead letter"] == "l06x.reject, x-death: rejected"
    seed06 = recorded.load("l06-seed-dead-lettering").result
    assert (seed06["queue"], seed06["dead_letter"]) == ("celery", 0)
    assert "inequivalent arg 'x-dead-letter-exchange'" in seed06["redeclared with x-dead-letter-exchange"]


@pytest.mark.parametrize("lang", ["english", "zh"])
def test_the_broker_tracks_sanitising_turns_the_live_line_into_the_recorded_one(lang, request, tmp_path, monkeypatch, capsys):
    """On the RabbitMQ track a cell prints the live line where the stored output (embedded broker) has
    the recording's: tests/sanitize_brokers.cfg maps one to the other, in English and in Chinese."""
    import configparser
    import re
    from pathlib import Path

    request.getfixturevalue(lang)
    monkeypatch.delenv(recorded.RECORD_ENV, raising=False)
    monkeypatch.setattr(recorded, "rabbitmq_version", lambda app: "RabbitMQ 3.13.0")
    recorded.save("demo", {"order run": ["p9", "p0"]}, "RabbitMQ 3.10.8", directory=tmp_path)
    recorded.show("demo", {"order run": ["p9", "p0"]}, app=object(), directory=tmp_path)
    live = capsys.readouterr().out
    recorded.show("demo", None, directory=tmp_path)
    stored = capsys.readouterr().out
    assert live != stored
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(Path(__file__).with_name("sanitize_brokers.cfg"), encoding="utf-8")
    for section in cfg.sections():
        live = re.sub(cfg[section]["regex"], cfg[section]["replace"], live)
    assert live == stored
