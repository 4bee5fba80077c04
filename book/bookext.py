"""Sphinx hooks of the course book (loaded by conf.py as an extension).

* heading anchors: the heading's text with spaces as dashes, as JupyterLab makes them, so the
  lessons' links (``01_architecture.ipynb#1.-Four-components``) work in the book too;
* plotly.js from the installed plotly package, copied into ``_static`` and loaded only by the
  pages that draw a chart (no CDN);
* the language switch: every page links to the same page in the book's other languages (the
  English at the site's root, a translation in a folder of it: ``zh/``), from the ``_edition.json``
  book/build.py stages (templates/lang-switch.html, in the article's header);
* Chinese search (``language = "zh_CN"``): Sphinx's own indexes Chinese words only with jieba, and
  its page script names a ``ChineseStemmer`` it never defines (a page error on every page). Here
  Chinese text is indexed and searched as overlapping pairs of characters (死信队列 -> 死信 信队
  队列; a page must hold all of a query's pairs), English words as Sphinx does.
"""
from __future__ import annotations

import json
import posixpath
import re
import shutil
from pathlib import Path

from sphinx.search.zh import SearchChinese

PLOTLY_JS = "plotly.min.js"


def slug(text: str) -> str:
    return text.strip().replace(" ", "-")


def plotly_js_source() -> Path:
    import plotly

    return Path(plotly.__file__).parent / "package_data" / PLOTLY_JS


def _edition(app) -> dict:
    path = Path(app.srcdir) / "_edition.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {"lang": "en", "others": {}}


def language_links(edition: dict, pagename: str) -> list[dict]:
    """The same page in each other language: ``[{"lang", "name", "href"}]``, hrefs relative to the page."""
    up = "../" * pagename.count("/")
    return [{"lang": lang.replace("_", "-"), "name": name, "href": posixpath.normpath(f"{up}{prefix}{pagename}.html")}
            for lang, (prefix, name) in edition.get("others", {}).items()]


def _page_context(app, pagename, templatename, context, doctree):
    context["book_languages"] = language_links(app.config.book_edition, pagename)
    if "plotly-graph-div" in context.get("body", ""):
        # before the page's own scripts: the charts' inline scripts call Plotly.newPlot
        app.add_js_file(PLOTLY_JS, priority=200)


def _finished(app, exception):
    if exception is None and app.builder.format == "html":
        static = Path(app.outdir) / "_static"
        static.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(plotly_js_source(), static / PLOTLY_JS)


def _config_inited(app, config):
    config.book_edition = _edition(app)


HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")


def han_pairs(text: str) -> list[str]:
    """Each run of Chinese characters as its overlapping pairs (a lone character as itself)."""
    out = []
    for run in HAN.findall(text):
        out += [run] if len(run) == 1 else [run[i:i + 2] for i in range(len(run) - 1)]
    return out


class ChineseSearch(SearchChinese):
    """Chinese search without a dictionary: the same pairs of characters in the index and in the query."""

    language_name = "English"    # the page script's stemmer: Sphinx ships the English one for zh
    js_splitter_code = r"""
function splitQuery(query) {
  const out = [];
  for (const part of query.split(/[^\p{Letter}\p{Number}_\p{Emoji_Presentation}]+/gu)) {
    for (const run of part.split(/(\p{Script=Han}+)/u)) {
      if (!run) continue;
      if (!/^\p{Script=Han}+$/u.test(run)) { out.push(run); continue; }
      if (run.length === 1) out.push(run);
      for (let i = 0; i + 1 < run.length; i++) out.push(run.slice(i, i + 2));
    }
  }
  return out;
}
"""

    def split(self, input: str) -> list[str]:
        latin = [term.strip() for term in self.latin1_letters.findall(input)]
        self.latin_terms.update(latin)
        return han_pairs(input) + latin


def setup(app):
    app.add_search_language(ChineseSearch)
    app.add_config_value("book_edition", {}, "html")
    app.connect("config-inited", _config_inited)
    app.connect("html-page-context", _page_context)
    app.connect("build-finished", _finished)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
