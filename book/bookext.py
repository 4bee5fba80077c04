"""Sphinx hooks of the course book (loaded by conf.py as an extension).

* heading anchors: the heading's text with spaces as dashes, as JupyterLab makes them, so the
  lessons' links (``01_architecture.ipynb#1.-Four-components``) work in the book too;
* plotly.js from the installed plotly package, copied into ``_static`` and loaded only by the
  pages that draw a chart (no CDN).
"""
from __future__ import annotations

import shutil
from pathlib import Path

PLOTLY_JS = "plotly.min.js"


def slug(text: str) -> str:
    return text.strip().replace(" ", "-")


def plotly_js_source() -> Path:
    import plotly

    return Path(plotly.__file__).parent / "package_data" / PLOTLY_JS


def _page_context(app, pagename, templatename, context, doctree):
    if "plotly-graph-div" in context.get("body", ""):
        # before the page's own scripts: the charts' inline scripts call Plotly.newPlot
        app.add_js_file(PLOTLY_JS, priority=200)


def _finished(app, exception):
    if exception is None and app.builder.format == "html":
        static = Path(app.outdir) / "_static"
        static.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(plotly_js_source(), static / PLOTLY_JS)


def setup(app):
    app.connect("html-page-context", _page_context)
    app.connect("build-finished", _finished)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
