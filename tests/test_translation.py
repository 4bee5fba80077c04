"""Translated editions (celerylab.translation): catalogs from the English notebooks, stale entries
marked when the English changes, and an edition whose code, ids and outputs are the English ones."""
from __future__ import annotations

import io
import re
import tokenize

import nbformat
import pytest

from celerylab.translation import catalogs, edition

LANG = "zh_CN"


def _notebook(path, cells):
    nb = nbformat.v4.new_notebook()
    nb.cells = cells
    for n, cell in enumerate(nb.cells):
        cell.id = f"cell{n}"
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A tiny repository: one lesson with a markdown cell and a commented code cell."""
    monkeypatch.setattr(catalogs, "repo_root", lambda: tmp_path)
    source = _notebook(tmp_path / "notebooks" / "01_demo.ipynb", [
        nbformat.v4.new_markdown_cell("## Prefetch\n\nA worker **prefetches** messages."),
        nbformat.v4.new_code_cell('%time x = 1\nurl = "redis://h#not-a-comment"  # the broker\n# wait for it\n'
                                  'print(url)  # noqa: T201'),
    ])
    return tmp_path, source


def test_entries_are_markdown_cells_and_comments_not_code(repo):
    _, source = repo
    got = [(e.context, e.text) for e in catalogs.entries(source)]
    assert got == [("cell0", "## Prefetch\n\nA worker **prefetches** messages."),
                   ("cell1#comment", "the broker"), ("cell1#comment", "wait for it")]


def test_update_keeps_translations_and_marks_changed_english_stale(repo):
    root, source = repo
    catalog = catalogs.update(source, LANG)
    assert catalogs.coverage(source, LANG).done == 0
    for message in catalog:
        if message.id:
            message.string = {"the broker": "Broker", "wait for it": "等它完成"}.get(message.id, "## 预取\n\nWorker 会**预取**消息。")
    catalogs.write(catalog, catalogs.catalog_path(source, LANG))
    assert (catalogs.coverage(source, LANG).done, catalogs.coverage(source, LANG).total) == (3, 3)

    nb = nbformat.read(source, as_version=4)
    nb.cells[0].source = "## Prefetch\n\nA worker **prefetches** messages: four per process by default."
    nbformat.write(nb, source)
    catalog = catalogs.update(source, LANG)
    changed = catalog.get(nb.cells[0].source, context="cell0")
    assert changed.fuzzy and changed.string == "## 预取\n\nWorker 会**预取**消息。"
    catalog = catalogs.read(catalogs.catalog_path(source, LANG), LANG)   # as written: the old English kept
    changed = catalog.get(nb.cells[0].source, context="cell0")
    assert changed.fuzzy and catalogs.previous_english(changed) == "## Prefetch\n\nA worker **prefetches** messages."
    assert not catalog.get("the broker", context="cell1#comment").fuzzy
    cov = catalogs.coverage(source, LANG)
    assert (cov.done, cov.stale, cov.total) == (2, 1, 3)

    long_text = nb.cells[0].source + " A long line, longer than the 76 columns Babel wraps comments at."
    nb.cells[0].source = long_text
    nbformat.write(nb, source)
    catalogs.update(source, LANG)
    nb.cells[0].source = long_text + " Changed again."
    nbformat.write(nb, source)
    catalogs.update(source, LANG)
    catalog = catalogs.read(catalogs.catalog_path(source, LANG), LANG)
    assert catalogs.previous_english(catalog.get(nb.cells[0].source, context="cell0")) == long_text

    nb.cells = nb.cells[1:]                    # a cell removed: its entry goes
    nbformat.write(nb, source)
    catalog = catalogs.update(source, LANG)
    assert [m.context for m in catalog if m.id] == ["cell1#comment", "cell1#comment"]


def test_the_edition_translates_text_and_leaves_code_alone(repo):
    root, source = repo
    catalog = catalogs.update(source, LANG)
    for message in catalog:
        if message.id == "the broker":
            message.string = "Broker 地址"
    catalogs.write(catalog, catalogs.catalog_path(source, LANG))
    built = edition.Built()
    nb = edition.translate_notebook(source, LANG, built)
    assert nb.cells[1].source == ('%time x = 1\nurl = "redis://h#not-a-comment"  # Broker 地址\n# wait for it\n'
                                  'print(url)  # noqa: T201')
    assert nb.cells[0].source == "## Prefetch\n\nA worker **prefetches** messages."   # untranslated: English
    assert built.untranslated == ["notebooks/01_demo.ipynb: cell0", "notebooks/01_demo.ipynb: cell1#comment"]


def _code_without_comments(source: str) -> list:
    lines = "".join("\n" if l.lstrip().startswith(("%", "!")) else l for l in source.splitlines(keepends=True))
    try:
        return [(t.type, t.string) for t in tokenize.generate_tokens(io.StringIO(lines).readline)
                if t.type not in (tokenize.COMMENT, tokenize.NL)]
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return [source]


def test_catalogs_are_current_with_the_english():
    """Every entry of every English notebook is in its catalog (run `make zh-update` after an edit)."""
    missing = []
    for source in catalogs.sources():
        path = catalogs.catalog_path(source, LANG)
        catalog = catalogs.read(path, LANG) if path.exists() else None
        for entry in catalogs.entries(source):
            if catalog is None or catalog.get(entry.text, context=entry.context) is None:
                missing.append(f"{source.relative_to(catalogs.repo_root())}: {entry.context}")
    assert not missing, f"{len(missing)} entries missing (make zh-update), e.g. {missing[:3]}"


def test_every_lesson_and_solution_is_fully_translated():
    """`make zh` refuses to build with an untranslated or stale entry; so does this test."""
    low = [f"{c.path.relative_to(catalogs.repo_root())}: {c.done}/{c.total} ({c.stale} stale)"
           for c in (catalogs.coverage(s, LANG) for s in catalogs.sources()) if c.done < c.total]
    assert not low, "translate these (python -m celerylab.translation export/import): " + "; ".join(low)


def test_every_edition_notebook_keeps_the_english_code_ids_tags_and_outputs():
    report = edition.Built()
    for source in catalogs.sources():
        english = nbformat.read(source, as_version=4)
        translated = edition.translate_notebook(source, LANG, report)
        assert [c.id for c in translated.cells] == [c.id for c in english.cells]
        for en, zh in zip(english.cells, translated.cells):
            assert zh.cell_type == en.cell_type and zh.metadata == en.metadata
            if en.cell_type == "code":
                assert zh.get("outputs") == en.get("outputs"), (source.name, en.id)
                assert _code_without_comments(zh.source) == _code_without_comments(en.source), (source.name, en.id)


def test_the_edition_builds_with_labs_that_grade_against_its_own_solutions(monkeypatch):
    built = edition.build(LANG)   # into zh/ (ignored by git), as `make zh` does
    target = edition.edition_dir(LANG)
    labs = sorted((target / "labs").glob("*.ipynb"))
    assert [p.name for p in labs] == sorted(p.name for p in catalogs.repo_root().glob("solutions/[0-9][0-9]_*.ipynb"))
    from celerylab.grading.plugin import master_path

    monkeypatch.delenv("CELERYLAB_SOLUTIONS", raising=False)
    lab = nbformat.read(labs[0], as_version=4)
    origin = lab.metadata["celerylab"]["generated_from"]
    assert master_path(lab, labs[0].stem) == catalogs.repo_root() / origin
    assert origin == f"zh/solutions/{labs[0].name}"
    assert len(built.written) == len(catalogs.sources()) + len(labs) + 1  # and the cheat sheet
    assert (target / "docs" / "cheatsheet.md").read_text(encoding="utf-8").count("\n- ") > 100
    for path in labs:   # a translated lab is the English lab's code: no answer left in, no blank lost
        zh, en = nbformat.read(path, as_version=4), nbformat.read(catalogs.repo_root() / "labs" / path.name, as_version=4)
        assert [c.id for c in zh.cells] == [c.id for c in en.cells], path.name
        for a, b in zip(zh.cells, en.cells):
            if a.cell_type == "code":
                assert _code_without_comments(a.source) == _code_without_comments(b.source), (path.name, a.id)
                assert a.outputs == [] and b.outputs == []


@pytest.mark.slow
def test_a_translated_lab_gets_the_same_verdicts_as_the_english_one(tmp_path, monkeypatch):
    """The regression set's first answers for lab 00, written into the zh lab, graded against the
    zh solution (the lab's own master copy): the verdicts the English lab gets; the blank zh lab
    is 'not attempted' throughout."""
    import yaml

    from celerylab.grading.runner import grade

    monkeypatch.delenv("CELERYLAB_SOLUTIONS", raising=False)
    edition.build(LANG)
    root = catalogs.repo_root()
    spec = yaml.safe_load((root / "tests" / "learner_answers" / "00_first_tasks.yaml").read_text(encoding="utf-8"))
    variant = spec["variants"][0]
    zh_lab = edition.edition_dir(LANG) / "labs" / "00_first_tasks.ipynb"
    nb = nbformat.read(zh_lab, as_version=4)
    ids = [c.id for c in nb.cells]
    for cid, source in variant["answers"].items():
        nb.cells[ids.index(str(cid))].source = source.rstrip("\n")
    answered = tmp_path / "answered" / "00_first_tasks.ipynb"
    answered.parent.mkdir()
    nbformat.write(nb, answered)
    blank = tmp_path / "blank" / "00_first_tasks.ipynb"
    blank.parent.mkdir()
    blank.write_bytes(zh_lab.read_bytes())
    results = {r.notebook: r for r in grade([answered, blank], time_limit=150)}
    got = results[str(answered.resolve())]
    # the zh solution's outputs: English as copied by the build, Chinese once `make zh` ran it in Chinese
    master = nbformat.read(edition.edition_dir(LANG) / "solutions" / "00_first_tasks.ipynb", as_version=4)
    chinese = master.metadata["celerylab_edition"].get("outputs_lang") == LANG
    for label, expected in variant["expect"].items():
        outcome = got.exercises[label]
        assert outcome.status == expected[0], (label, outcome)
        if len(expected) > 1 and not chinese:
            assert expected[1] in outcome.message, (label, outcome.message)
        elif len(expected) > 1:  # the same verdict in Chinese: the code and names it quotes, in a Chinese sentence
            assert re.search(r"[\u4e00-\u9fff]", outcome.message), (label, outcome.message)
            for quoted in re.findall(r"'[^']+'|@\S+", expected[1]):
                assert quoted in outcome.message, (label, quoted, outcome.message)
    assert {e.status for e in results[str(blank.resolve())].exercises.values()} == {"not attempted"}


def test_a_comment_kept_as_is_stays_byte_for_byte():
    """The lab generator finds `### BEGIN SOLUTION`: a marker copied unchanged must not become `# ## ...`."""
    source = "def add(x, y):\n    ### BEGIN SOLUTION\n    return x + y  # the sum\n    ### END SOLUTION\n"
    out = edition.translate_comments(source, lambda text: {"the sum": "求和"}.get(text, text))
    assert out == "def add(x, y):\n    ### BEGIN SOLUTION\n    return x + y  # 求和\n    ### END SOLUTION\n"


def _structure(markdown: str):
    """What a translation must keep: code spans and blocks verbatim, the count of each element."""
    from collections import Counter

    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark").enable("table")
    counts, code = Counter(), Counter()
    for token in md.parse(markdown):
        for t in [token, *(token.children or [])]:
            if t.nesting == 1 or t.type in ("code_inline", "fence", "code_block", "image", "hr"):
                counts[t.tag or t.type] += 1
            if t.type in ("code_inline", "fence", "code_block"):
                code[" ".join(t.content.split())] += 1
            if t.type == "link_open":
                code["link:" + t.attrs.get("href", "")] += 1
    return counts, code


def test_every_translated_markdown_cell_keeps_its_code_links_and_markup():
    """Rendered as CommonMark: the same code spans, code blocks and link targets, and as many
    headings, list items, table cells, bold and italic runs as the English (a bold label ending in
    full-width punctuation, for one, silently stops being bold)."""
    problems = []
    for source in catalogs.sources():
        path = catalogs.catalog_path(source, LANG)
        if not path.exists():
            continue
        for message in catalogs.read(path, LANG):
            if not message.id or message.context.endswith(catalogs.COMMENT_CONTEXT) or not catalogs.translated(message):
                continue
            (en_counts, en_code), (zh_counts, zh_code) = _structure(message.id), _structure(message.string)
            if en_code != zh_code or en_counts != zh_counts:
                diff = {k: (en_counts[k], zh_counts[k]) for k in en_counts | zh_counts if en_counts[k] != zh_counts[k]}
                lost = list((en_code - zh_code).elements())[:2]
                problems.append(f"{path.relative_to(catalogs.repo_root())} {message.context}: {diff} {lost}")
    assert not problems, f"{len(problems)} cells differ:\n" + "\n".join(problems)


def test_a_run_of_the_edition_that_went_another_way_is_not_kept(tmp_path):
    """make zh runs the edition in Chinese; a recorded line the English run never printed (a task that
    ended otherwise on a busy machine) is caught, while the kit's Chinese lines are not compared."""
    from celerylab.translation.execute import unexplained_lines

    source = catalogs.repo_root() / "solutions" / "05_retries.ipynb"
    nb = edition.translate_notebook(source, LANG, edition.Built())
    checks = [c for c in nb.cells if c.cell_type == "code" and any(
        "Correct:" in "".join(o.get("text", "")) for o in c.get("outputs", []))]
    assert checks
    checks[0].outputs[0]["text"] = "正确：q1：间隔 0.2 秒重试两次\n"  # the kit's line, in Chinese: fine
    path = tmp_path / "05_retries.ipynb"
    nbformat.write(nb, path)
    assert unexplained_lines(path) == []
    checks[0].outputs[0]["text"] = "q1 FAILURE after 1 runs\n"  # a line the English run never printed
    nbformat.write(nb, path)
    assert unexplained_lines(path) == [f"cell {checks[0].id}: q1 FAILURE after 1 runs"]
