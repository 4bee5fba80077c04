"""Translated editions, from one source: the English notebooks.

The English lessons and solutions stay the source. Their text goes into gettext catalogs
(``locale/<lang>/<folder>/<notebook>.po``, read and written with Babel): one entry per markdown
cell and one per comment in a code cell, keyed by the cell's id. A translator fills the
``msgstr`` entries; ``python -m celerylab.translation update`` re-extracts after the English
changed and marks every entry whose English changed as fuzzy (stale), keeping the old
translation beside it; ``build`` writes the edition (``<lang>/notebooks``, ``<lang>/solutions``)
from the English notebooks and the catalogs, code and outputs untouched.

See :mod:`celerylab.translation.catalogs` (extracting, updating, coverage) and
:mod:`celerylab.translation.edition` (building the translated notebooks).
"""
