"""The job's output as a terminal leaves it (`\\r` progress, `\\r\\n`, ANSI codes, partial lines), the ranks' lines
folded, and the rotated output files read back in order. No processes: tables and files under tmp_path."""

from __future__ import annotations

import pytest

from trainmon.engine.core.terminal_lines import LineCollapser, collapse, fold_ranks, strip_escapes
from trainmon.engine.record.output_log import OutputFollower, RotatingOutput, output_ranks, pieces, read_output

RED, RESET = "\x1b[31m", "\x1b[0m"


@pytest.mark.parametrize("text, lines", [
    ("a\nb\n", ["a", "b"]),
    ("a\nb", ["a", "b"]),  # the unfinished last line counts at the end of a file
    ("", []),
    ("\n\n", ["", ""]),
    ("a\r\nb\r\n", ["a", "b"]),  # \r\n is a newline, never an overwrite
    ("\rbar 1/5\rbar 2/5\rbar 5/5\n", ["bar 5/5"]),  # a progress bar: its last state
    ("12345\rab\n", ["ab345"]),  # a terminal overwrites cell by cell
    ("12345\rab\x1b[K\n", ["ab"]),  # ESC[K erases to the end
    ("12345\x1b[2K\rab\n", ["ab"]),  # ESC[2K: the whole line
    ("abc\b\bX\n", ["aXc"]),  # backspace steps back one cell
    (f"{RED}red{RESET} plain\n", [f"{RED}red{RESET} plain"]),  # colour kept for the viewer
    (f"\r{RED}10%{RESET}\r{RED}99%{RESET}\n", [f"{RESET}{RED}99%{RESET}"]),  # the reset before: harmless
    ("a\x1b[1Ab\n", ["ab"]),  # cursor moves (tqdm's nested bars) dropped
    ("tab\there\x07\n", ["tab\there"]),  # \t kept, BEL dropped
    ("epoch 1\n" + "".join(f"\r{i:3d}%" for i in range(101)) + "\ndone\n", ["epoch 1", "100%", "done"]),
])
def test_collapse_is_what_a_terminal_shows(text, lines):
    assert collapse(text) == lines


def test_any_chunking_gives_the_same_lines():
    text = f"start\r\nx\r 10%\r 20%\r100%\n{RED}ok{RESET}\r\nend"
    whole = collapse(text)
    for size in (1, 2, 3, 7):
        collapser = LineCollapser()
        got = []
        for i in range(0, len(text), size):
            got += collapser.feed(text[i:i + size])
        assert got + collapser.flush() == whole == ["start", "100%", f"{RED}ok{RESET}", "end"]


def test_partial_is_the_bar_as_it_stands():
    collapser = LineCollapser()
    assert collapser.feed("loading\n\r 10%\r 40%") == ["loading"]
    assert collapser.partial == " 40%"
    assert collapser.feed("\r 90%\n") == [" 90%"]
    assert collapser.partial == ""


@pytest.mark.parametrize("ranks, folded", [
    ({0: ["a", "b"]}, ["a", "b"]),
    ({0: ["x"], 1: ["x"], 2: ["x"]}, ["ranks 0–2: x"]),
    ({0: ["loss 1.0"], 1: ["ready"], 2: ["ready"], 3: ["ready"]}, ["rank 0: loss 1.0", "ranks 1–3: ready"]),
    ({0: ["a"], 2: ["a"], 5: ["a"]}, ["ranks 0, 2, 5: a"]),
    ({0: ["a", "b"], 1: ["a"]}, ["ranks 0–1: a", "rank 0: b"]),
    ({0: ["a", "x0", "y0", "b"], 1: ["a", "x1", "y1", "b"], 2: ["a", "x2", "y2", "b"]},
     ["ranks 0–2: a", "rank 0: x0", "rank 1: x1", "rank 2: x2", "rank 0: y0", "rank 1: y1", "rank 2: y2",
      "ranks 0–2: b"]),
    # torchrun's banner in rank 0's file: the ranks' own lines still line up
    ({0: ["*****", "hello", "I am 0", "done"], 1: ["hello", "I am 1", "done"]},
     ["rank 0: *****", "ranks 0–1: hello", "rank 0: I am 0", "rank 1: I am 1", "ranks 0–1: done"]),
])
def test_fold_ranks(ranks, folded):
    assert fold_ranks(ranks) == folded


def test_strip_escapes():
    assert strip_escapes([f"{RED}red{RESET}!"]) == ["red!"]


def test_rotation_keeps_the_newest_within_the_cap(tmp_path):
    out = RotatingOutput(tmp_path, file_bytes=100, keep=2)
    for i in range(40):  # 40 lines of 9 bytes through files of 100: 11 lines a file
        out.write(f"line {i:03d}\n".encode())
    out.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["output.log", "output.log.1", "output.log.2"]
    assert all(p.stat().st_size <= 100 for p in tmp_path.iterdir())
    assert [p.name for p in pieces(tmp_path)] == ["output.log.2", "output.log.1", "output.log"]
    data, skipped = read_output(tmp_path)
    lines = data.decode().splitlines()
    assert lines == [f"line {i:03d}" for i in range(40 - len(lines), 40)]  # the newest, in order
    assert len(lines) == 11 + 11 + 7 and skipped == 0  # 40 = 11 + 11 + 11 + 7: the oldest 11 removed
    tail, skipped = read_output(tmp_path, tail_bytes=18)
    assert (tail, skipped) == (b"line 038\nline 039\n", 29 * 9 - 18)


def test_follower_reads_across_a_rotation(tmp_path):
    out = RotatingOutput(tmp_path, file_bytes=30, keep=3)
    out.write(b"first line\n")
    follower = OutputFollower(tmp_path)
    assert follower.start() == (b"first line\n", 0)
    assert follower.poll() == b""
    out.write(b"second line\n")
    out.write(b"third line rotates\n")  # 23 + 19 > 30: output.log becomes output.log.1 first
    assert follower.poll() == b"second line\nthird line rotates\n"
    out.write(b"fourth\n")
    assert follower.poll() == b"fourth\n"
    follower.close()
    out.close()


def test_output_ranks(tmp_path):
    assert output_ranks(tmp_path) == [0]
    for name in ("output.log", "output.rank1.log", "output.rank10.log", "output.rank2.log.1", "output.rankx.log"):
        (tmp_path / name).write_text("")
    assert output_ranks(tmp_path) == [0, 1, 10]
