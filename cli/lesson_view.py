"""The lesson's handout: every stop's explanation and numbers as plain text, in order (`trainmon lesson | cat`)."""

from __future__ import annotations

from trainmon.engine.core.lesson import Stop


def handout(title: str, stops: list[Stop]) -> str:
    """The handout of a lesson: its `title` line, then one numbered block per stop — the question to
    predict (when the stop has one), the explanation, the numbers, the answer, the teacher's note.
    Paragraphs stay one line each (a pager or a printer wraps them)."""
    lines = [title, ""]
    for number, stop in enumerate(stops, 1):
        lines.append(f"{number}. {stop.title}")
        if stop.question:
            lines.append(f"   Predict: {stop.question.prompt}")
        if stop.text:
            lines.append(f"   {stop.text}")
        width = max((len(label) for label, _ in stop.numbers), default=0)
        lines += [f"     {label.ljust(width)}  {value}" for label, value in stop.numbers]
        if stop.question:
            lines.append(f"   Answer: {stop.question.answer}")
        lines += [f"   Teacher: {line}" for line in stop.note.splitlines()]
        lines.append("")
    return "\n".join(lines)
