"""`pytest --nbval labs/NN_topic.ipynb` grades: check cells come from the master copy.

See celerylab/grading/plugin.py. `python -m celerylab grade` does the same and prints a scorecard.
"""
from celerylab.grading.plugin import pytest_configure  # noqa: F401
