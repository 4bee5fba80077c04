"""Sphinx configuration of the course book. Build it with `make book` (book/build.py stages the sources)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

project = "Celery Lab Kit"
author = "Celery Lab Kit"
copyright = "Celery Lab Kit authors"
extensions = ["myst_nb", "sphinx_design", "bookext"]

# The book shows the notebooks' stored outputs: nothing is executed at build time.
nb_execution_mode = "off"
nb_merge_streams = True
# Widget outputs are replaced by notes when staging; never load the widget manager (it comes from a CDN).
nb_ipywidgets_js = {}
myst_enable_extensions = ["colon_fence"]     # no dollarmath: "$" is a shell variable here, not math
myst_heading_anchors = 4
myst_heading_slug_func = "bookext.slug"
suppress_warnings = ["myst.header"]          # lessons may start a section at ### under a ##

html_theme = "sphinx_book_theme"
html_title = "Celery Lab Kit"
templates_path = ["_templates"]
html_static_path = ["_static"]
html_css_files = ["book.css"]
html_copy_source = False
html_show_sourcelink = False
html_last_updated_fmt = None
html_theme_options = {
    "home_page_in_toc": True,
    "show_navbar_depth": 1,
    "use_download_button": False,
    "use_fullscreen_button": False,
    "use_repository_button": False,
    "navigation_with_keys": True,
    "show_toc_level": 2,
    # the language switch (English <-> 中文) first, then the theme's buttons
    "article_header_end": ["lang-switch.html", "article-header-buttons.html"],
}
# The theme logs a console error on a first visit when no colour mode is set: start in light mode.
html_context = {"default_mode": "light"}
