"""What `ls`, `logs`, `plan` and headless lines print, read as a user reads them: whole ids, one meaning of
"epochs done", totals over a schedule, headers on one row, and the clock time at the end of each line.

In-process through click's CliRunner (stdout is not a terminal there, as in a pipe); `COLUMNS` sets the
terminal width `ls` fits into. Run directories are written by hand, no engine needed.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from trainmon.cli.headless import HeadlessPrinter
from trainmon.cli.main import cli
from trainmon.engine.core import messages as msg
from trainmon.engine.core.report import epochs_done, event_line
from trainmon.engine.record.rundir import RunDirectory, encode_record

T0 = 1796605323.25  # 2026-12-07T01:02:03Z
STOPPED = "20261206-214527-seed-example-3f2a"
RUNNING = "20261206-220000-digits-0b1c"
FINISHED = "20261207-001500-digits-77aa"


def finished_event(stopped: bool, epochs: int) -> msg.Finished:
    return msg.Finished(stopped=stopped, epochs_completed=epochs, global_iteration=6 * 16 + 5, global_step=101,
                        samples_seen=6100, elapsed=12.5, train_loss=0.25, val_loss=None, val_metrics={})


def ended_epoch(epoch: int, iterations: int) -> msg.EpochEnded:
    return msg.EpochEnded(epoch=epoch, epochs=400, iterations=iterations, iterations_planned=16, steps=iterations,
                          samples_seen=1000 * epoch, train_loss=0.5, val_loss=None, val_metrics={}, batch_size=64,
                          accum=1, lr=0.05, elapsed=2.0 * epoch, global_iteration=16 * epoch, global_step=16 * epoch)


def write_run(home: Path, run_id: str, status: str, snapshot: msg.Snapshot, events=(), started: float = T0) -> Path:
    """A run directory as its engine leaves it: run.json, snapshot.json, events.jsonl with set times."""
    rundir = RunDirectory.create(home / "runs" / run_id, {"id": run_id, "job": run_id.split("-", 2)[2][:-5],
                                                          "host": "another-host", "started_unix": started})
    rundir.update(status=status)
    rundir.write_snapshot(snapshot)
    lines = [b'{"seq":%d,"time":%.3f,"event":' % (seq, T0 + seq) + encode_record(e) + b"}\n"
             for seq, e in enumerate(events, 1)]
    (rundir.path / "events.jsonl").write_bytes(b"".join(lines))
    return rundir.path


@pytest.fixture
def three_runs(trainmon_home):
    """Stopped in epoch 7 of 400 (6 done), running in epoch 4 of 400 (3 done), finished 4 of 4."""
    write_run(trainmon_home, STOPPED, "stopped",
              msg.Snapshot(status=msg.STOPPED, epoch=7, epochs=400, iteration_in_epoch=5, iterations_in_epoch=16,
                           global_iteration=101, global_step=101),
              [*(ended_epoch(e, 16) for e in range(1, 7)), ended_epoch(7, 5), finished_event(True, 6)], started=T0)
    write_run(trainmon_home, RUNNING, "running",
              msg.Snapshot(status=msg.RUNNING, epoch=4, epochs=400, iteration_in_epoch=20, iterations_in_epoch=45,
                           global_iteration=155, global_step=155), started=T0 + 60)
    write_run(trainmon_home, FINISHED, "finished",
              msg.Snapshot(status=msg.FINISHED, epoch=4, epochs=4, iteration_in_epoch=45, iterations_in_epoch=45,
                           global_iteration=180, global_step=180), started=T0 + 120)
    return trainmon_home


def ls_at(columns: int) -> list[str]:
    result = CliRunner().invoke(cli, ["ls"], env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines()


# ---- item 9: ls keeps the id whole and the progress readable ---------------------------------------------


@pytest.mark.parametrize("columns, headers", [
    (80, ["ID", "STATUS", "EPOCHS", "STEP", "LAST", "ACTIVITY"]),
    (100, ["ID", "JOB", "STATUS", "EPOCHS", "STEP", "LAST", "ACTIVITY"]),
    (160, ["ID", "JOB", "STATUS", "EPOCHS", "STEP", "STARTED", "LAST", "ACTIVITY"]),
])
def test_ls_fits_the_terminal_by_dropping_columns_never_the_id_or_the_epochs(three_runs, columns, headers):
    lines = ls_at(columns)
    assert lines[0].split() == headers
    assert all(len(line) <= columns and "…" not in line for line in lines)
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == {STOPPED, RUNNING, FINISHED}  # every id whole, as attach and logs take it
    assert re.search(r"\bstopped +6/400 done +101\b", rows[STOPPED])
    assert re.search(r"\brunning +3/400 done +155\b", rows[RUNNING])  # in epoch 4: 3 done, not "4/4…"
    assert re.search(r"\bfinished +4/4 done +180\b", rows[FINISHED])


def test_ls_into_a_pipe_shows_every_column(three_runs):
    result = CliRunner().invoke(cli, ["ls"], env={"COLUMNS": ""})
    assert result.stdout.splitlines()[0].split() == ["ID", "JOB", "STATUS", "EPOCHS", "STEP", "STARTED", "LAST",
                                                     "ACTIVITY"]


# ---- item 6: one meaning of "epochs done" -------------------------------------------------------------------


@pytest.mark.parametrize("status, epoch, done_in_epoch, planned, expected", [
    (msg.STARTING, 0, 0, None, 0),
    (msg.RUNNING, 4, 20, 45, 3),  # in epoch 4
    (msg.RUNNING, 4, 45, 45, 4),  # epoch 4's iterations all ran
    (msg.STOPPED, 7, 5, 16, 6),  # a stop cut epoch 7 short
    (msg.STOPPED, 7, 0, 16, 6),  # stopped as epoch 7 began
    (msg.FINISHED, 4, 45, 45, 4),
    (msg.FINISHED, 3, 9, None, 3),  # a stream: its last epoch ended with the loader
    (msg.RUNNING, 3, 9, None, 2),
    (msg.FAILED, 3, 9, None, 2),
])
def test_epochs_done_counts_completed_epochs(status, epoch, done_in_epoch, planned, expected):
    s = msg.Snapshot(status=status, epoch=epoch, epochs=400, iteration_in_epoch=done_in_epoch,
                     iterations_in_epoch=planned)
    assert epochs_done(s) == expected


def test_ls_logs_and_ls_json_agree_on_epochs_done(three_runs):
    [summary] = [line for line in CliRunner().invoke(cli, ["logs", STOPPED]).stdout.splitlines()
                 if line.startswith("stopped ")]
    assert summary.startswith("stopped epochs=6 ")
    rows = {row["id"]: row for row in json.loads(CliRunner().invoke(cli, ["ls", "--json"]).stdout)}
    assert (rows[STOPPED]["epochs_done"], rows[STOPPED]["epoch"]) == (6, 7)
    assert [rows[r]["epochs_done"] for r in (RUNNING, FINISHED)] == [3, 4]


# ---- item 18: headless and logs lines end in the clock time --------------------------------------------------


def test_headless_lines_end_in_the_clock_time_after_unchanged_fields():
    out = io.StringIO()
    printer = HeadlessPrinter(out=out, clock=lambda: 0.0, wall=lambda: T0)
    events = [ended_epoch(1, 16), msg.Paused(global_iteration=16), finished_event(False, 1)]
    printer.print_line("run id=X dir=/runs/X")
    for event in events:
        printer(event)
    lines = out.getvalue().splitlines()
    expected = ["run id=X dir=/runs/X", *(event_line(e) for e in events)]
    assert lines == [f"{line} time=2026-12-07T01:02:03Z" for line in expected]


def test_logs_lines_end_in_the_time_each_event_was_recorded(three_runs):
    lines = CliRunner().invoke(cli, ["logs", STOPPED]).stdout.splitlines()
    assert len(lines) == 8
    assert lines[0] == event_line(ended_epoch(1, 16)) + " time=2026-12-07T01:02:04Z"  # seq 1: T0 + 1 s
    assert lines[-1].startswith("stopped epochs=6 iterations=101 ")
    assert lines[-1].endswith(" elapsed=12.5s time=2026-12-07T01:02:11Z")


# ---- item 18: plan over a schedule ----------------------------------------------------------------------------


def test_plan_totals_give_the_effective_batch_size_range_of_a_schedule():
    args = ["plan", "--samples", "1437", "--batch-size", "32", "--epochs", "6", "--batch-growth", "2",
            "--max-batch-size", "256"]
    out = CliRunner().invoke(cli, args).stdout
    assert "effective batch size 32–256\n" in out
    assert "effective batch size 32\n" in CliRunner().invoke(cli, args[:7]).stdout
    out = CliRunner().invoke(cli, [*args, "--accum", "2", "--world-size", "3"]).stdout
    assert "effective batch size 192–1536\n" in out


@pytest.mark.parametrize("extra, tables", [([], 1), (["--world-size", "3"], 2)])
def test_piped_plan_keeps_each_header_on_one_row_and_each_line_whole(extra, tables):
    out = CliRunner().invoke(cli, ["plan", "--samples", "1437", "--batch-size", "32", "--epochs", "6",
                                   "--batch-growth", "2", "--accum", "3", *extra]).stdout.splitlines()
    header_rows = [line for line in out if line.startswith("┃")]
    assert len(header_rows) == tables  # one row of headers per table, none split over two
    assert re.search(r"┃ +eff\. batch ┃$", header_rows[-1])
    [total] = [line for line in out if line.startswith("total iterations")]
    assert total.endswith(f"effective batch size {96 * (3 if extra else 1)}–{3072 * (3 if extra else 1)}")
    assert [line for line in out if line.startswith("note: ")][0].endswith(" the last holding 29 samples." if not extra
                                                                           else " the last holding 31 samples.")


def test_plan_help_shows_examples():
    text = CliRunner().invoke(cli, ["plan", "--help"]).stdout
    assert "Examples:" in text
    assert "\n    trainmon plan --samples 1000 --batch-size 64 --accum 4 --epochs 2\n" in text
    assert "--batch-growth 2 --max-batch-size 256" in text


def test_each_line_of_a_multi_line_event_gets_its_time():
    from trainmon.engine.core.format import timed

    assert timed("events_summarized epochs=1..3\nepoch=3/9 iterations=4/4", T0) == (
        "events_summarized epochs=1..3 time=2026-12-07T01:02:03Z\nepoch=3/9 iterations=4/4 time=2026-12-07T01:02:03Z")
