"""One exercise module per lab: ``lNN_topic.py`` for ``labs/NN_topic.ipynb``.

A lab binds its questions with one line: ``from celerylab.exercises.l00_first_tasks import *``.
"""
