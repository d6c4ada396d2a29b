"""Lesson files (TOML) by tables, and `trainmon lesson` off a terminal: the handout and the one-line refusals."""

import subprocess
import sys

import pytest

from trainmon.engine.core.lesson_file import LessonFile, LessonFileError, StopNote, parse_lesson, read_lesson

CLASS = """\
job = "seed-example"
batch_size = 100
accum = 3
epochs = 1
drop_last = false
seed = 7
questions = false

[[stop]]
where = "iteration 5"
say = "Ask the class what the window holds now."
"""


def test_a_full_file():
    assert parse_lesson(CLASS) == LessonFile(job="seed-example", batch_size=100, accum=3, epochs=1, drop_last=False,
                                             seed=7, questions=False,
                                             stop=[StopNote(where="iteration 5",
                                                            say="Ask the class what the window holds now.")])


def test_an_empty_file_is_the_default_lesson():
    assert parse_lesson("") == LessonFile()
    assert (LessonFile().job, LessonFile().batch_size, LessonFile().accum, LessonFile().epochs) == (
        "seed-example", None, 4, 1)


@pytest.mark.parametrize("text, line", [
    ("accum = 0", "class.toml: accum: expected int >= 1, got 0"),
    ('batch_size = "64"', "class.toml: batch_size: expected int, got str"),
    ("batch_size = 64.0", "class.toml: batch_size: expected int, got float"),
    ("batch_size = 4294967296", "class.toml: batch_size: expected int <= 2147483647, got 4294967296"),
    ("bogus = 1", "class.toml: bogus: unknown key"),
    ("drop_last = 1", "class.toml: drop_last: expected bool, got int"),
    ("epochs = true", "class.toml: epochs: expected int, got bool"),
    ("seed = -1", "class.toml: seed: expected int >= 0, got -1"),
    ("questions = \"no\"", "class.toml: questions: expected bool, got str"),
    ('[[stop]]\nwhere = "plan"', "class.toml: stop[0].say: missing"),
    ('[[stop]]\nwhere = "plan"\nsay = ""', "class.toml: stop[0].say: expected str of length >= 1, got ''"),
    ('[[stop]]\nwhere = "plan"\nsay = "x"\nwhen = 1', "class.toml: stop[0].when: unknown key"),
    ('stop = "plan"', "class.toml: stop: expected array, got str"),
    ("accum = = 3", "class.toml: not TOML: Invalid value (at line 1, column 9)"),
])
def test_a_bad_file_is_one_line_naming_the_key(text, line):
    with pytest.raises(LessonFileError) as error:
        parse_lesson(text, "class.toml")
    assert str(error.value) == line


def test_missing_file(tmp_path):
    with pytest.raises(LessonFileError, match=r"nope\.toml: no such lesson file$"):
        read_lesson(str(tmp_path / "nope.toml"))


def _lesson(*args, cwd):
    return subprocess.run([sys.executable, "-m", "trainmon", "lesson", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_default_handout_off_a_terminal(tmp_path):
    result = _lesson(cwd=tmp_path)  # stdout is a pipe: the handout, no TUI
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert text.splitlines()[0] == ("trainmon lesson: seed-example, 1000 samples, batch size 64, accumulation 4, "
                                    "1 epoch")
    assert "16 iterations, the last holding 40 samples" in text
    assert "1000 // 64 = 15 undercounts" in text
    titles = [line for line in text.splitlines() if line[:1].isdigit()]
    assert titles == ["1. The plan of an epoch", "2. Iteration 1: the first micro-batch",
                      "3. Iteration 3: the window fills", "4. Iteration 4: the optimizer step lands",
                      "5. Iteration 8: optimizer step 2 lands", "6. Iteration 12: optimizer step 3 lands",
                      "7. Iteration 16: the last batch is short", "8. Epoch 1 ends", "9. Validation",
                      "10. The run is done"]
    block = text.split("7. Iteration 16")[1].split("\n\n")[0]
    assert block.splitlines()[1:] == [
        "   Predict: How many samples will the last batch hold?",
        "   The loader had 1000 − 15 × 64 = 40 samples left, so the last micro-batch holds 40, not 64. Window 4 is "
        "full (4 micro-batches, 232 samples): optimizer step 4 lands and the epoch's gradients are all used.",
        "     iteration       16 of 16",
        "     last batch      40 samples",
        "     last window     4 micro-batches, 232 samples",
        "     optimizer step  4 of 4",
        "   Answer: 40 = 1000 − 15 × 64",
    ]


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_class_file_handout_and_refusals(tmp_path):
    (tmp_path / "class.toml").write_text(CLASS)
    result = _lesson("class.toml", "--headless", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "batch size 100, accumulation 3" in text.splitlines()[0]
    assert "an epoch is 1000 / 100 = 10 iterations" in text
    assert "     windows                    3 + 3 + 3 + 1" in text
    assert "     optimizer steps per epoch  4" in text
    assert "Predict:" not in text and "Answer:" not in text  # questions = false
    assert "5. Iteration 5\n" in text and "   Teacher: Ask the class what the window holds now." in text
    for body, line in [
        ("accum = 0", "bad.toml: accum: expected int >= 1, got 0"),
        ("batch_size = 2000\ndrop_last = true", "bad.toml: batch_size: batch size 2000 is larger than the 1000 "
                                                "samples and drop_last drops them all: no batches would run"),
        ('[[stop]]\nwhere = "plan"\nsay = "a"\n[[stop]]\nwhere = "iteration 17"\nsay = "b"',
         "bad.toml: stop[1].where: must be one of plan, first_iteration, window_filling, optimizer_step, window, "
         "last_batch, epoch_end, validation, run_end or 'iteration N' with N from 1 to 16, got 'iteration 17'"),
        ('job = "nope"', "bad.toml: job: unknown job 'nope': built-in jobs are digits, seed-example; or give "
                         "FILE.py or package.module"),
    ]:
        (tmp_path / "bad.toml").write_text(body)
        bad = _lesson("bad.toml", cwd=tmp_path)
        assert (bad.returncode, bad.stdout, bad.stderr) == (2, "", f"trainmon: error: {line}\n")
    missing = _lesson("missing.toml", cwd=tmp_path)
    assert (missing.returncode, missing.stderr) == (2, "trainmon: error: missing.toml: no such lesson file\n")


def test_a_batch_size_past_the_training_set_is_refused(tmp_path, capsys):
    from trainmon.cli.lesson import load_lesson

    (tmp_path / "big.toml").write_text("batch_size = 2000\n")
    with pytest.raises(SystemExit) as exit_:
        load_lesson(str(tmp_path / "big.toml"))
    assert exit_.value.code == 2
    assert capsys.readouterr().err == (f"trainmon: error: {tmp_path / 'big.toml'}: batch_size: batch size 2000 is "
                                       "larger than the 1000 samples of the training set: an epoch would be one "
                                       "short batch\n")
