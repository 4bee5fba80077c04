"""Interview prep: the question bank, quiz widgets, and the cheat sheet made from the same source.

    from celerylab import quiz
    quiz.show(round="myths")              # in a notebook: one card per question
    python -m celerylab.quiz cheatsheet   # regenerate docs/cheatsheet.md (--check: fail if stale)
"""
from __future__ import annotations

from .bank import LESSONS, QUESTIONS, TITLES, Question, by_id, rounds
from .check import Verdict, check, run_code
from .widgets import Quiz, feedback_html, select, show

__all__ = ["LESSONS", "QUESTIONS", "TITLES", "Question", "Quiz", "Verdict", "by_id", "check", "feedback_html",
           "rounds", "run_code", "select", "show"]
