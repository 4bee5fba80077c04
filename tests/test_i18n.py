"""The kit's messages in the learner's language (celerylab.i18n, locale/<lang>/kit.po)."""
from __future__ import annotations

import ast
import string
from pathlib import Path

import pytest

from celerylab import i18n
from celerylab.translation import catalogs

ROOT = Path(__file__).resolve().parent.parent
LANG = "zh_CN"


def fields(text: str) -> set[str] | None:
    """The {fields} str.format fills in (None for a text that is not a template, e.g. a code hint)."""
    try:
        return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except ValueError:
        return None


def test_english_is_the_default_and_unknown_languages_fall_back_to_it(monkeypatch):
    monkeypatch.delenv(i18n.ENV, raising=False)
    assert i18n.language() == "en"
    assert i18n._("Correct: {label}: {text}", label="q1", text="done") == "Correct: q1: done"
    monkeypatch.setenv(i18n.ENV, "xx_YY")
    assert i18n.language() == "en"
    for alias in ("zh", "zh-CN", "zh_cn", "zh_CN"):
        monkeypatch.setenv(i18n.ENV, alias)
        assert i18n.language() == LANG


def test_a_check_speaks_chinese_under_celerylab_lang(zh, capsys):
    from celerylab.grading.exercise import Exercise

    class Done(Exercise):
        correct = i18n.N_("well done.")

        def _check(self, ns):
            pass

    Done("q1").check({})
    out = capsys.readouterr().out
    assert out.strip() == i18n._("Correct: {label}: {text}", label="q1", text=i18n._("well done."))
    assert "Correct" not in out and "q1" in out  # the label is code; the sentence is Chinese


def test_a_stale_or_missing_entry_shows_the_english(zh, tmp_path, monkeypatch):
    po = tmp_path / "locale" / LANG / "kit.po"
    po.parent.mkdir(parents=True)
    po.write_text('msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=utf-8\\n"\n\n'
                  '#, fuzzy\nmsgid "stale {x}"\nmsgstr "旧的 {x}"\n\nmsgid "fresh {x}"\nmsgstr "新的 {x}"\n',
                  encoding="utf-8")
    monkeypatch.setattr(i18n, "catalog_path", lambda lang: tmp_path / "locale" / lang / "kit.po")
    i18n.reload()
    assert i18n._("fresh {x}", x=1) == "新的 1"
    assert i18n._("stale {x}", x=1) == "stale 1"
    assert i18n._("not in the catalog") == "not in the catalog"


def marked_calls():
    """(file, line, first argument node) of every _( ) and N_( ) call in the package and the book's builder."""
    for path in sorted(p for folder in catalogs.kit_folders() for p in folder.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("_", "N_"):
                if node.args:
                    yield path.relative_to(ROOT), node.lineno, node.args[0], node


def test_every_marked_message_is_a_literal_template_not_an_f_string():
    """Babel can only extract a literal: an f-string (or a variable) in _() would never be translated.
    _(variable) is allowed only for texts marked with N_() where they are written."""
    bad = [f"{path}:{line}" for path, line, arg, _ in marked_calls() if isinstance(arg, ast.JoinedStr)]
    assert not bad, f"f-strings inside _(): {bad}; write _('... {{name}} ...', name=value)"


def test_every_fields_of_a_template_are_passed():
    """_("... {call} ...", call=...) names every field it formats (a missing one is a KeyError at run time)."""
    bad = []
    for path, line, arg, call in marked_calls():
        if call.func.id == "_" and isinstance(arg, ast.Constant) and isinstance(arg.value, str) and call.keywords:
            passed = {k.arg for k in call.keywords}
            if None not in passed and (fields(arg.value) or set()) - passed:
                bad.append(f"{path}:{line} {sorted(fields(arg.value) - passed)}")
    assert not bad


def test_the_kit_catalog_is_current_and_complete():
    path = catalogs.catalog_path(catalogs.kit_source(), LANG)
    assert path.exists(), "run python -m celerylab.translation update kit"
    catalog = catalogs.read(path, LANG)
    wanted = {(e.text, e.context) for e in catalogs.kit_entries()}
    have = {(m.id, m.context) for m in catalog if m.id}
    assert wanted == have, ("the catalog does not match the code: run `python -m celerylab.translation update kit`",
                            sorted(wanted ^ have)[:5])
    untranslated = [m.id for m in catalog if m.id and not catalogs.translated(m)]
    assert not untranslated, f"{len(untranslated)} kit messages untranslated or stale, e.g. {untranslated[:3]}"


def test_translations_keep_every_field_and_no_more():
    """A translation formats the same {fields} as its English, so no message can fail or lose a value."""
    catalog = catalogs.read(catalogs.catalog_path(catalogs.kit_source(), LANG), LANG)
    bad = [(m.id, m.string) for m in catalog
           if m.id and m.string and "python-brace-format" in m.flags and fields(m.id) != fields(m.string)]
    assert not bad, bad[:3]
