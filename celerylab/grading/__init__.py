"""Graded exercises for the labs: check / hint / solution, behaviour checks, nbval as the grader.

* Exercise modules (``celerylab/exercises/lNN_topic.py``) declare questions with the kinds
  in :mod:`.kinds` and bind them to ``q1``, ``q2``... (:func:`bind`).
* Labs are generated from solution notebooks (:mod:`.labs`, ``make labs``).
* ``python -m celerylab grade`` runs nbval with :mod:`.plugin` and prints a scorecard
  (:mod:`.runner`, :mod:`.scorecard`).
"""
from __future__ import annotations

from .exercise import Exercise, bind, exercises_in
from .kinds import Attempts, BehaviourCheck, DeadLetters, PriorityOrder, RetriesOn, RoutesToQueue, TaskReturns
from .outcomes import PLACEHOLDER, ExerciseError, ExerciseIncorrect, ExerciseNotAttempted, ____, is_placeholder
from .probe import Recorder, Trial, call_with_deadline

__all__ = [
    "Attempts", "BehaviourCheck", "DeadLetters", "Exercise", "ExerciseError", "ExerciseIncorrect",
    "ExerciseNotAttempted", "PLACEHOLDER", "PriorityOrder", "Recorder", "RetriesOn", "RoutesToQueue",
    "TaskReturns", "Trial", "____", "bind", "call_with_deadline", "exercises_in", "is_placeholder",
]
