"""Checking answers: a choice, a myth-or-fact verdict, or a few lines of code run for real."""
from __future__ import annotations

from dataclasses import dataclass

from ..i18n import _
from .bank import Question

CODE_TIMEOUT = 5.0


@dataclass
class Verdict:
    correct: bool
    message: str  #: one line: what was right or wrong (never the answer itself)


def check_choice(question: Question, picked) -> Verdict:
    if picked is None:
        return Verdict(False, _("pick an answer first"))
    if question.kind == "myth":
        picked = {"myth": False, "fact": True}.get(str(picked).lower(), picked)
        right = picked is question.answer
    else:
        right = picked == question.answer
    return Verdict(right, _("Correct.") if right else _("Not quite."))


def run_code(question: Question, source: str, timeout: float = CODE_TIMEOUT) -> Verdict:
    """Run the learner's code in a fresh namespace (bounded by ``timeout``), then the question's checker.

    Broken code (a syntax error, an exception, an endless loop) is a wrong answer with a one-line
    reason; nothing escapes to the caller.
    """
    from ..grading.probe import call_with_deadline

    if question.checker is None:
        raise ValueError(f"question {question.id} has no code checker")
    if not source or not source.strip() or source.strip() == question.stub.strip():
        return Verdict(False, _("write your answer in the box first"))
    try:
        compiled = compile(source, f"<answer to {question.id}>", "exec")
    except SyntaxError as exc:
        return Verdict(False, _("your code does not run: SyntaxError on line {line}: {error}", line=exc.lineno,
                                 error=exc.msg))
    namespace: dict = {"__name__": f"quiz_{question.id.replace('-', '_')}"}

    def run():
        exec(compiled, namespace)
        question.checker(namespace)

    got = call_with_deadline(run, timeout=timeout)
    if got.timed_out:
        return Verdict(False, _("your code did not finish within {timeout:g} s", timeout=timeout))
    if isinstance(got.error, AssertionError):
        return Verdict(False, str(got.error) or _("not quite"))
    if got.error is not None:
        text = " ".join(str(got.error).split())[:160]
        error = type(got.error).__name__
        if text:
            return Verdict(False, _("your code raised {error}: {text}", error=error, text=text))
        return Verdict(False, _("your code raised {error}", error=error))
    return Verdict(True, _("Correct."))


def check(question: Question, answer) -> Verdict:
    """One entry point: an index / "myth" / "fact" for choices, source code for code questions."""
    if question.kind == "code":
        return run_code(question, answer if isinstance(answer, str) else "")
    return check_choice(question, answer)
