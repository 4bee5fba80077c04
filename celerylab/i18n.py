"""The kit's own messages in the learner's language (``CELERYLAB_LANG``).

Every sentence the kit prints (a grader's verdict, a hint, a scorecard line, a widget label) is
written in English in the code, marked for extraction:

* ``_("the retries were planned {waits} after each failure", waits=shown)`` translates the
  template, then fills in its fields (never an f-string: the catalog holds the template);
* ``N_("...")`` only marks a string kept for later (a class's ``correct`` text, its hints, a
  scenario's ``about``); whoever shows it calls ``_(text)``.

``python -m celerylab.translation update`` extracts the marked strings with Babel into
``locale/<lang>/kit.po``; the catalog's translations are used when ``CELERYLAB_LANG`` names that
language (``zh_CN``, also ``zh``/``zh-CN``), or, with it unset, in a translated edition's folder.
English is the default, and an entry that is missing,
empty or stale (fuzzy) falls back to the English, so a half-done catalog never hides a message.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

ENV = "CELERYLAB_LANG"
DEFAULT = "en"
#: what ``CELERYLAB_LANG`` may say, and the catalog's language it means
ALIASES = {"zh": "zh_CN", "zh_cn": "zh_CN", "zh-cn": "zh_CN", "zh_hans": "zh_CN", "zh-hans": "zh_CN"}
CATALOG = "kit.po"


#: written by a translated edition's build into its folder (zh/): a kernel started in that edition
#: (JupyterLab starts it in the notebook's folder) speaks its language without any setting
MARKER = ".celerylab-lang"


def language() -> str:
    """The language messages are shown in: ``CELERYLAB_LANG``; when unset, the edition's language
    if the kernel runs in a translated edition's folder (its :data:`MARKER` in the working
    directory or the one above it); else English. An unknown language means English."""
    raw = (os.environ.get(ENV) or _edition_language() or DEFAULT).strip()
    lang = ALIASES.get(raw.lower(), raw)
    return lang if lang == DEFAULT or catalog_path(lang).exists() else DEFAULT


def _edition_language() -> str | None:
    try:
        here = Path.cwd()
    except OSError:
        return None
    for folder in (here, here.parent):
        marker = folder / MARKER
        if marker.is_file():
            return marker.read_text(encoding="utf-8").strip() or None
    return None


def catalog_path(lang: str) -> Path:
    return Path(__file__).resolve().parent.parent / "locale" / lang / CATALOG


@functools.lru_cache(maxsize=None)
def _translations(lang: str) -> dict:
    """``{English: translation}`` and ``{(context, English): translation}`` of the catalog's done
    entries (not empty, not fuzzy)."""
    from babel.messages.pofile import read_po

    path = catalog_path(lang)
    if not path.exists():
        return {}
    with path.open("rb") as fh:
        catalog = read_po(fh, locale=lang)
    found: dict = {}
    for m in catalog:
        if m.id and m.string and not m.fuzzy and isinstance(m.id, str):
            found.setdefault(m.id, m.string)
            found[(m.context, m.id)] = m.string
    return found


def translate(message: str, lang: str | None = None, context: str | None = None) -> str:
    """The message's translation in ``lang`` (default: :func:`language`), or the English.

    ``context``: the catalog entry's context (``msgctxt``) to prefer, for a short text whose
    translation depends on where it is (a quiz choice "Nothing" under one question or another)."""
    lang = lang or language()
    if lang == DEFAULT:
        return message
    table = _translations(lang)
    if context is not None and (context, message) in table:
        return table[(context, message)]
    return table.get(message, message)


def _(message: str, **fields) -> str:
    """``message`` translated, then ``.format(**fields)`` (only when fields are given, so a text
    with literal braces, such as a code hint, can be passed as it is)."""
    text = translate(message)
    return text.format(**fields) if fields else text


def N_(message: str) -> str:
    """Marks ``message`` for the catalog without translating it now; show it with ``_(message)``."""
    return message


def reload() -> None:
    """Forget the loaded catalogs (after the .po files changed)."""
    _translations.cache_clear()
