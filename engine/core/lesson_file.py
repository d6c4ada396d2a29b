"""A lesson file: the TOML a teacher writes and shares for `trainmon lesson`, checked key by key.

Torch-free. Every key is optional and defaults to the default lesson's (the `seed-example` job, its
batch size, accumulation 4, one epoch): so an empty file is the textbook lesson. A bad file is refused
with one line that names the file and the key (`LessonFileError`).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import msgspec

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, from PyPI
    import tomli as tomllib

from trainmon.engine.core.arithmetic import MAX_BATCH_SIZE

MAX_SEED = 2**63 - 1  # the same bound as a run's --seed (engine/jobs/job.py check_seed)


class LessonFileError(ValueError):
    """A lesson file that cannot be used; the message is one line: `FILE: KEY: why`."""


class StopNote(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """`[[stop]]`: where the teacher speaks (a stop's name, or `iteration N`) and what to say."""

    where: str
    say: Annotated[str, msgspec.Meta(min_length=1)]  # an empty note would show as a blank "Teacher:" line


class LessonFile(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """A lesson's settings. `batch_size = None` takes the job's own; `seed` seeds the weights and the
    shuffling; `questions = false` turns predict-then-reveal off; `stop` holds the teacher's notes."""

    job: str = "seed-example"
    batch_size: Optional[Annotated[int, msgspec.Meta(ge=1, le=MAX_BATCH_SIZE)]] = None
    accum: Annotated[int, msgspec.Meta(ge=1, le=MAX_BATCH_SIZE)] = 4
    epochs: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 1
    drop_last: bool = False
    seed: Annotated[int, msgspec.Meta(ge=0, le=MAX_SEED)] = 0
    questions: bool = True
    stop: list[StopNote] = []

    @property
    def notes(self) -> tuple[tuple[str, str], ...]:
        """The `[[stop]]` notes as `(where, say)` pairs, in the file's order."""
        return tuple((s.where, s.say) for s in self.stop)


_AT = re.compile(r"^(?P<why>.*?)(?: - at `\$(?P<path>[^`]*)`)?$")
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<key>[^`]*)`$")
_MISSING = re.compile(r"^Object missing required field `(?P<key>[^`]*)`$")


def _key_and_reason(message: str, data: dict) -> tuple[str, str]:
    """msgspec's `Expected `int` >= 1 - at `$.accum`` as `("accum", "expected int >= 1, got 0")`."""
    match = _AT.match(message)
    why, path = match.group("why"), (match.group("path") or "").lstrip(".")
    for pattern, reason in ((_UNKNOWN, "unknown key"), (_MISSING, "missing")):
        found = pattern.match(why)
        if found:
            return ".".join(p for p in (path, found.group("key")) if p), reason
    why = why.replace("`", "").replace(" | null", "")  # TOML has no null: an optional key is left out
    why = why[:1].lower() + why[1:]
    if ", got " not in why:  # a bound: say which value broke it
        value = _value_at(data, path)
        if value is not None:
            why = f"{why}, got {value!r}"
    return path or "(file)", why


def _value_at(data: Any, path: str) -> Any:
    """The value at msgspec's path `stop[0].where` in `data`, or `None`."""
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        try:
            data = data[int(part[1:-1])] if part.startswith("[") else data[part]
        except (KeyError, IndexError, TypeError, ValueError):
            return None
    return data


def parse_lesson(text: str, name: str = "lesson.toml") -> LessonFile:
    """A `LessonFile` from TOML `text`. Raises `LessonFileError` (`name: KEY: why`, one line) for text
    that is not TOML, an unknown key, a wrong type or a value out of range."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise LessonFileError(f"{name}: not TOML: {str(exc).splitlines()[0]}") from None
    try:
        return msgspec.convert(data, LessonFile)
    except msgspec.ValidationError as exc:
        key, why = _key_and_reason(str(exc).splitlines()[0], data)
        raise LessonFileError(f"{name}: {key}: {why}") from None


def read_lesson(path: str) -> LessonFile:
    """`parse_lesson` of the file at `path`. Raises `LessonFileError` (one line) for a missing or
    unreadable file too. A relative `job` file path is taken relative to the lesson file's folder."""
    file = Path(path).expanduser()
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LessonFileError(f"{path}: no such lesson file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LessonFileError(f"{path}: cannot read it ({type(exc).__name__})") from None
    lesson = parse_lesson(text, path)
    job_file = file.parent / lesson.job.split(":")[0]
    if lesson.job.split(":")[0].endswith(".py") and not Path(lesson.job).is_absolute() and job_file.exists():
        return msgspec.structs.replace(lesson, job=str(file.parent / lesson.job))
    return lesson


def plan_error_key(message: str) -> str:
    """Which lesson-file key a `PlanError` from planning the lesson is about (`batch_size` for a batch
    size the samples cannot fill); a note's place is a `NoteError`, named `stop[i].where` by the caller."""
    for words, key in (("accumulation", "accum"),
                       ("epochs", "epochs"), ("seed", "seed"), ("drop_last", "batch_size"),
                       ("batch size", "batch_size"), ("empty", "job")):
        if words in message:
            return key
    return "job"
