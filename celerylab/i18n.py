"""The kit's own messages in the learner's language (``CELERYLAB_LANG``).

Every sentence the kit prints (a grader's verdict, a hint, a scorecard line, a widget label) is
written in English in the code, marked for extraction:

* ``_("the retries were planned {waits} after each failure", waits=shown)`` translates the
  template, then fills in its fields (never an f-string: the catalog holds the template);
* ``N_("...")`` only marks a string kept for later (a class's ``correct`` text, its hints, a
  scenario's ``about``); whoever shows it calls ``_(text)``.

``python -m celerylab.translation update`` extracts the marked strings with Babel into
``locale/<lang>/kit.po``; the catalog's translations are used when ``CELERYLAB_LANG`` names that
language (``zh_CN``, also ``zh``/``zh-CN``). English is the default, and an entry that is missing,
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


def language() -> str:
    """The language messages are shown in: ``CELERYLAB_LANG`` (``en`` when unset or unknown)."""
    raw = (os.environ.get(ENV) or DEFAULT).strip()
    lang = ALIASES.get(raw.lower(), raw)
    return lang if lang == DEFAULT or catalog_path(lang).exists() else DEFAULT


def catalog_path(lang: str) -> Path:
    return Path(__file__).resolve().parent.parent / "locale" / lang / CATALOG


@functools.lru_cache(maxsize=None)
def _translations(lang: str) -> dict[str, str]:
    """``{English: translation}`` of the catalog's done entries (not empty, not fuzzy)."""
    from babel.messages.pofile import read_po

    path = catalog_path(lang)
    if not path.exists():
        return {}
    with path.open("rb") as fh:
        catalog = read_po(fh, locale=lang)
    return {m.id: m.string for m in catalog if m.id and m.string and not m.fuzzy and isinstance(m.id, str)}


def translate(message: str, lang: str | None = None) -> str:
    """The message's translation in ``lang`` (default: :func:`language`), or the English."""
    lang = lang or language()
    if lang == DEFAULT:
        return message
    return _translations(lang).get(message, message)


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
