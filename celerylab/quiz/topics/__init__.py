"""Quiz questions by subject: each module defines ``QUESTIONS`` (built with
:func:`celerylab.quiz.bank.choice`, ``myth`` or ``code``) and, when it adds a lesson,
``LESSON = ("10", "10_workflows.ipynb", "Workflows")``. See :mod:`celerylab.quiz.bank`."""
