"""Self-check quiz widgets (ipywidgets): multiple choice, myth or fact, and code answers run for real.

``celerylab.quiz.show(round="myths")`` (or ``lesson="08"``, or ``ids=[...]``) returns a
:class:`Quiz`; as the last expression of a cell it displays one card per question. Feedback
goes into HTML widgets, never printed: a stored notebook has nothing but a fixed text line
(widget views and their state are not compared by nbval).
"""
from __future__ import annotations

import html

from ..i18n import N_, _, translate
from .bank import QUESTIONS, TITLES, Question
from .check import Verdict, check

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
GOOD, BAD = "#2e7d32", "#c62828"
#: how many questions of a kind a quiz has, as its text line says it (kinds are "choice", "code", "myth")
KIND_COUNTS = {"choice": N_("{n} choice"), "code": N_("{n} code"), "myth": N_("{n} myth")}
#: the titles notebook 09 gives its rounds (a lesson's round is titled "<lesson> · <its TITLES entry>");
#: a quiz's title is shown translated when the catalog has it
ROUND_TITLES = (N_("Round 1: the seed's FAQ"), N_("Round 3: myth or fact"))


def _md_code(text: str) -> str:
    """Escape ``text`` and turn `backticks` into <code>."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def feedback_html(question: Question, verdict: Verdict, reveal: bool = False) -> str:
    """What a learner sees after checking (also used by tests: plain HTML, no widgets).

    The question's texts are shown in the learner's language (``translate``), like the verdict."""
    link = f'<a href="{html.escape(question.link())}" target="_blank">{html.escape(question.where)}</a>'
    explanation = _md_code(translate(question.explanation))
    proof = question.proof
    proved = f'<a href="{html.escape(proof.link("../"))}" target="_blank">{_md_code(proof.label)}</a>'
    if verdict.correct:
        taught = _("Taught in {link}; evidence: {proof}.", link=link, proof=proved)
        return (f'<div style="color:{GOOD}"><b>✔ {_md_code(verdict.message)}</b></div>'
                f"<div>{explanation}</div><div>{taught}</div>")
    out = f'<div style="color:{BAD}"><b>✘ {_md_code(verdict.message)}</b></div>'
    if reveal:
        answer = question.right_answer_in()
        shown = f"<pre>{html.escape(answer)}</pre>" if question.kind == "code" else f"<b>{_md_code(answer)}</b>"
        answer_line = _("Answer: {answer}", answer=shown)
        out += f"<div>{answer_line}</div><div>{explanation}</div>"
    see = _("See {link}.", link=link)
    return out + f"<div>{see}</div>"


class Card:
    """One question: prompt, answer input, Check and Show answer buttons, feedback."""

    def __init__(self, question: Question, number: int, on_result=None):
        import ipywidgets as w

        self.question = question
        self.on_result = on_result
        self.solved = False
        title = f"<b>Q{number}.</b> {_md_code(translate(question.prompt))}"
        if question.kind == "myth":
            ask = html.escape(_("Myth or fact?"))
            title = f"<b>Q{number}. {ask}</b> “{_md_code(translate(question.claim))}”"
        self.prompt = w.HTML(title, layout=w.Layout(width="100%"))
        if question.kind == "code":
            self.input = w.Textarea(value=question.stub, rows=max(4, question.stub.count("\n") + 3),
                                    layout=w.Layout(width="100%"))
        else:
            self.input = w.RadioButtons(options=[(c, i) for i, c in enumerate(question.text("choices"))], value=None,
                                        layout=w.Layout(width="100%"))
        self.check_button = w.Button(description=_("Check"), button_style="primary")
        self.reveal_button = w.Button(description=_("Show answer"))
        self.feedback = w.HTML("")
        self.check_button.on_click(lambda _: self.check())
        self.reveal_button.on_click(lambda _: self.reveal())
        self.widget = w.VBox([self.prompt, self.input, w.HBox([self.check_button, self.reveal_button]),
                              self.feedback], layout=w.Layout(border="1px solid #ddd", padding="6px", margin="4px 0"))

    def answer(self):
        value = self.input.value
        if self.question.kind == "myth" and value is not None:
            return bool(value)  # option 0 "Myth" -> False, 1 "Fact" -> True
        return value

    def check(self) -> Verdict:
        verdict = check(self.question, self.answer())
        self.feedback.value = feedback_html(self.question, verdict)
        if verdict.correct and not self.solved:
            self.solved = True
            if self.on_result:
                self.on_result()
        return verdict

    def reveal(self) -> None:
        self.feedback.value = feedback_html(self.question, Verdict(False, _("The answer:")), reveal=True)


class Quiz:
    """A set of cards with a running score."""

    def __init__(self, questions: list[Question], title: str = ""):
        import ipywidgets as w

        self.questions = list(questions)
        self.title = title
        self.score = w.HTML()
        self.cards = [Card(q, i, on_result=self._update) for i, q in enumerate(self.questions, start=1)]
        self._update()
        self.widget = w.VBox([self.score, *[c.widget for c in self.cards]])

    def _update(self) -> None:
        solved = sum(c.solved for c in getattr(self, "cards", []))
        if self.title:
            self.score.value = _("<b>{title}</b> score: {solved} / {total}",
                                 title=html.escape(shown_title(self.title)), solved=solved, total=len(self.questions))
        else:
            self.score.value = _("score: {solved} / {total}", solved=solved, total=len(self.questions))

    def text(self) -> str:
        kinds = {}
        for q in self.questions:
            kinds[q.kind] = kinds.get(q.kind, 0) + 1
        detail = ", ".join(_(KIND_COUNTS[k], n=n) if k in KIND_COUNTS else f"{n} {k}"
                           for k, n in sorted(kinds.items()))
        return _("quiz: {count} questions ({detail}); interactive in JupyterLab", count=len(self.questions),
                 detail=detail)

    def _repr_mimebundle_(self, include=None, exclude=None):
        model = self.widget.model_id
        return {"text/plain": self.text(), WIDGET_MIME: {"version_major": 2, "version_minor": 0, "model_id": model}}


def shown_title(title: str) -> str:
    """A quiz's title in the learner's language: a round title the catalog has, or
    ``<lesson> · <lesson title>`` with the lesson's title translated; any other title as it is."""
    lesson, sep, name = title.partition(" · ")
    if sep and TITLES.get(lesson) == name:
        return f"{lesson} · {translate(name)}"
    return translate(title)


def select(round: str | None = None, lesson: str | None = None, ids=None) -> list[Question]:
    chosen = QUESTIONS
    if round is not None:
        chosen = [q for q in chosen if q.round == round]
    if lesson is not None:
        chosen = [q for q in chosen if q.lesson == lesson]
    if ids is not None:
        wanted = list(ids)
        index = {q.id: q for q in QUESTIONS}
        chosen = [index[i] for i in wanted]
    return list(chosen)


def show(round: str | None = None, lesson: str | None = None, ids=None, title: str = "") -> Quiz:
    """A quiz of the chosen questions (a cell's last expression displays it)."""
    questions = select(round, lesson, ids)
    if not questions:
        raise ValueError(_("no questions match: round is one of faq, lessons, myths; lesson is '00' to '08'"))
    return Quiz(questions, title)
