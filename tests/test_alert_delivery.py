"""Alerts reach a person who is not watching: `--on-alert CMD` hears each alert and the run's end as one JSON
object on its stdin, a slow or failing command never holds the run up, `--no-alerts` raises none, the
options are checked in one line, and `ls --json` / the exports count and carry the alerts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import msgspec
import pytest
from click.testing import CliRunner
from engines import TRAINMON, pid_gone, row, trainmon, wait_until

from trainmon.engine.control.channel import Channel
from trainmon.engine.core import messages as msg
from trainmon.engine.core.alert_choices import alert_kinds, choose
from trainmon.engine.core.alerts import ENV, AlertSettings
from trainmon.engine.record.alert_hook import AlertHook, end_message
from trainmon.engine.record.event_log import read_events
from trainmon.engine.record.export import read_records
from trainmon.engine.record.export_files import write_csv
from trainmon.engine.record.rundir import read_run
from trainmon.engine.run.session import EngineSession, create_run

NOTICE_KEYS = {"run_id", "name", "run_dir", "kind", "message", "epoch", "global_iteration", "time", "rank", "host"}


# ---- the choices -------------------------------------------------------------------------------
@pytest.mark.parametrize("base, choices, expected", [
    (AlertSettings(), {}, AlertSettings()),
    (AlertSettings(), {"enabled": True}, AlertSettings()),
    (AlertSettings(), {"enabled": False}, AlertSettings(enabled=False)),
    (AlertSettings(off=("nan",)), {"off": "stall,nan, memory"}, AlertSettings(off=("nan", "stall", "memory"))),
    (AlertSettings(on_alert="a", stall_after=5.0), {"on_alert": "b", "stall_after": "7.5"},
     AlertSettings(on_alert="b", stall_after=7.5)),
    (AlertSettings(enabled=False), {"enabled": True}, AlertSettings(enabled=False)),  # True keeps the env's
])
def test_choices_lie_over_the_settings_the_process_has(base, choices, expected):
    assert choose(base, **choices) == expected


@pytest.mark.parametrize("choices, message", [
    ({"off": "nans"}, "unknown alert kind 'nans': the kinds are nan, loss_spike, stall"),
    ({"off": ["nan", ""]}, "unknown alert kind ''"),
    ({"stall_after": 0}, "stall_after must be a number of seconds > 0, not 0"),
    ({"stall_after": float("inf")}, "stall_after must be a number of seconds > 0, not inf"),
    ({"stall_after": True}, "stall_after must be a number of seconds > 0, not True"),
    ({"on_alert": "  "}, "on_alert needs a shell command (it gets each alert as JSON on its stdin), not '  '"),
    ({"stall_after": "soon"}, "stall_after must be a number of seconds > 0, not 'soon'"),
])
def test_bad_choices_are_one_line(choices, message):
    with pytest.raises(ValueError) as info:
        choose(AlertSettings(), **choices)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert alert_kinds(("hang", "hang", "nan")) == ("hang", "nan")


@pytest.mark.parametrize("field, value", [("off", ("nans",)), ("stall_after", 0.0), ("stall_after", -2.5),
                                          ("on_alert", "  "), ("hang_after", -1.0)])
def test_settings_and_choices_are_checked_once_with_one_message(field, value):
    """AlertSettings (from $TRAINMON_ALERTS, a script's keywords) and `choose` (the CLI, track()) run one check."""
    from trainmon.engine.core.alerts import AlertChoiceError

    with pytest.raises(AlertChoiceError) as made:
        AlertSettings(**{field: value})
    if field != "hang_after":  # no option chooses it
        with pytest.raises(AlertChoiceError) as chosen:
            choose(AlertSettings(), **{"off" if field == "off" else field: value})
        assert str(chosen.value) == str(made.value)
    option = {"off": "--alerts-off", "stall_after": "--stall-after", "on_alert": "--on-alert"}
    assert made.value.worded(option).startswith(option.get(field, field))


def test_a_loops_keywords_win_over_the_options_of_trainmon_exec():
    from trainmon.engine.core.alert_choices import loop_alert_settings

    env = {ENV: AlertSettings(on_alert="cat", off=("stall",), stall_after=30.0).to_env()}
    assert loop_alert_settings("trainmon.track", environ=env) == AlertSettings.from_env(env)
    assert loop_alert_settings("trainmon.track", False, "mail me", ["memory"], 5, environ=env) == AlertSettings(
        enabled=False, on_alert="mail me", off=("stall", "memory"), stall_after=5.0)
    with pytest.raises(TypeError, match=r"^trainmon.track: alerts must be True or False, not 'no'$"):
        loop_alert_settings("trainmon.track", "no")
    with pytest.raises(ValueError, match=r"^TrainmonCallback: stall_after must be a number of seconds > 0, not -1$"):
        loop_alert_settings("TrainmonCallback", stall_after=-1)


def test_track_refuses_a_bad_alert_keyword_before_recording(trainmon_home):
    from trainmon.engine.run.track import track

    with pytest.raises(ValueError, match=r"^trainmon.track: unknown alert kind 'nope'"):
        track(alerts_off=["nope"], quiet=True)
    assert not (trainmon_home / "runs").exists() or not any((trainmon_home / "runs").iterdir())


@pytest.mark.parametrize("framework", ["lightning", "transformers"])
def test_the_callbacks_take_the_same_keywords(framework):
    pytest.importorskip("lightning" if framework == "lightning" else "transformers")
    import importlib

    callback = importlib.import_module(f"trainmon.integrations.{framework}").TrainmonCallback
    made = callback(on_alert="cat >> alerts.jsonl", alerts_off=("loss_spike",), stall_after=120)
    assert made.alerts == AlertSettings(on_alert="cat >> alerts.jsonl", off=("loss_spike",), stall_after=120.0)
    with pytest.raises(ValueError, match="TrainmonCallback: unknown alert kind"):
        callback(alerts_off="nan,nope")


def test_the_end_notice_says_how_the_run_ended():
    finished = msg.Finished(stopped=False, epochs_completed=3, global_iteration=135, global_step=45,
                            samples_seen=4311, elapsed=12.4, train_loss=0.123456, val_loss=None, val_metrics={})
    assert end_message(finished) == ("finished", "finished after 3 epochs (135 iterations, 45 optimizer steps) "
                                                 "in 12 s, train_loss 0.1235")
    assert end_message(msgspec.structs.replace(finished, stopped=True, epochs_completed=1, global_iteration=1,
                                               global_step=1, train_loss=None)) == (
        "stopped", "stopped after 1 epoch (1 iteration, 1 optimizer step) in 12 s")
    failed = msg.Failed(message="CUDA error: out of memory\nTried to allocate 2.00 GiB", traceback="...")
    assert end_message(failed) == ("failed", "Tried to allocate 2.00 GiB")


# ---- the count in run.json, ls and the exports ----------------------------------------------------
def test_alerts_are_counted_in_run_json_ls_and_exports(tmp_path):
    from trainmon.cli.main import cli

    rundir = create_run("digits", {"job": "digits"})
    channel = Channel(up=False)
    session = EngineSession(rundir, channel, alerts=AlertSettings()).start()
    assert session.alert_hook is None  # no --on-alert: no worker thread at all
    channel.emit(msg.Alert("nan", "the loss is nan", 1, 6, 1796614961.5))
    channel.emit(msg.Alert("stall", "no iteration for 60 s", 2, 80, 1796615021.5))
    channel.emit(msg.Finished(stopped=False, epochs_completed=2, global_iteration=90, global_step=90,
                              samples_seen=1437, elapsed=3.0, train_loss=None, val_loss=None, val_metrics={}))
    session.close(0)
    assert json.loads((rundir.path / "run.json").read_text())["alerts"] == 2
    old = create_run("digits", {"job": "digits"})  # a run recorded before alerts were counted
    result = CliRunner().invoke(cli, ["ls", "--json"])
    counts = {r["id"]: r["alerts"] for r in json.loads(result.stdout)}
    assert counts == {rundir.info["id"]: 2, old.info["id"]: 0}
    plain = CliRunner().invoke(cli, ["ls"], env={"COLUMNS": "200"}).stdout
    assert "finished (2 alerts)" in plain
    records = read_records(read_run(rundir.path))
    assert records.run["alerts"] == 2
    alerts = [e for e in records.events if e["record"] == "alert"]
    assert [(a["kind"], a["epoch"], a["global_iteration"]) for a in alerts] == [("nan", 1, 6), ("stall", 2, 80)]
    write_csv(records, tmp_path / "csv")
    rows = (tmp_path / "csv" / "events.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:3]] == ["alert", "alert"]
    assert json.loads(rows[1].split(",", 5)[5].strip('"').replace('""', '"'))["kind"] == "nan"


# ---- the hook itself (it runs `sh -c`) --------------------------------------------------------------
def _identity():
    return {"run_id": "r1", "name": "job", "run_dir": "runs/r1"}


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_each_alert_and_the_end_reach_the_command_in_order(tmp_path):
    out = tmp_path / "notices.jsonl"
    hook = AlertHook(f"cat >> {out}", _identity)
    hook.publish(msg.Snapshot(epoch=3, global_iteration=120), None)
    hook.emit(msg.Alert("nan", "the loss is nan", 3, 118, 1796614961.5))
    hook.emit(msg.Warned("not for the hook"))
    hook.emit(msg.Failed(message="boom\nValueError: bad batch", traceback=""))
    hook.emit(msg.Failed(message="a second end is not sent", traceback=""))
    assert hook.close() is True
    notices = [json.loads(line) for line in out.read_text().splitlines()]
    assert [set(n) for n in notices] == [NOTICE_KEYS, NOTICE_KEYS]
    assert [(n["kind"], n["message"], n["epoch"], n["global_iteration"]) for n in notices] == [
        ("nan", "the loss is nan", 3, 118), ("failed", "ValueError: bad batch", 3, 120)]
    assert notices[0]["time"] == 1796614961.5 and notices[0]["rank"] is None and notices[0]["host"]
    assert notices[1]["run_id"] == "r1" and abs(notices[1]["time"] - time.time()) < 60


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_a_slow_or_failing_command_is_killed_and_logged_never_waited_on(tmp_path, capfd):
    warned = []
    pids = tmp_path / "pids"
    hook = AlertHook(f"sleep 30 & echo $! >> {pids}; wait", _identity, warn=warned.append, timeout=0.5, end_wait=2.0)
    hook.emit(msg.Alert("stall", "no iteration for 60 s", 1, 5, 1.0))  # returns at once: the loop never waits

    def published():  # the loop's publications go on; the failure comes back at one of them
        hook.publish(msg.Snapshot(epoch=1, global_iteration=7), None)
        return warned

    wait_until(published, timeout=20, interval=0.05, what="the timed-out command's warning")
    assert [(w.message, w.epoch, w.global_iteration) for w in warned] == [
        ("--on-alert command for stall timed out after 0.5 s: killed (training went on)", 1, 7)]
    assert wait_until(lambda: pid_gone(int(pids.read_text().split()[0])), timeout=30)  # the sleep too: its group
    hook.emit(msg.Finished(stopped=True, epochs_completed=0, global_iteration=7, global_step=7, samples_seen=70,
                           elapsed=1.0, train_loss=None, val_loss=None, val_metrics={}))
    hook.command = "exit 3"
    assert hook.close() is True
    err = capfd.readouterr().err
    assert "trainmon: warning: --on-alert command for stopped failed: exit status 3" in err


# ---- real runs ----------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_diverging_builtin_run_sends_one_nan_alert_and_its_end(tmp_path):
    out = tmp_path / "notices.jsonl"
    result = trainmon("run", "digits", "--headless", "--epochs", "2", "--lr", "1e30", "--on-alert",
                      f"tee -a {out}", timeout=240)
    assert result.returncode == 0, result.stderr
    # what the command prints goes to stderr: stdout keeps only the run's key=value lines
    assert '{"run_id"' not in result.stdout and result.stderr.count('{"run_id"') == 2
    run_id = result.stdout.split()[1].removeprefix("id=")
    notices = [json.loads(line) for line in out.read_text().splitlines()]
    assert [n["kind"] for n in notices] == ["nan", "finished"]
    assert all(set(n) == NOTICE_KEYS and n["run_id"] == run_id and n["name"] == "digits" for n in notices)
    nan, end = notices
    assert nan["message"].startswith("the loss is nan at global iteration ") and nan["epoch"] == 1
    assert nan["global_iteration"] >= 1 and nan["rank"] is None
    assert end["message"].startswith("finished after 2 epochs (90 iterations, 90 optimizer steps)")
    assert (end["epoch"], end["global_iteration"]) == (2, 90) and end["time"] >= nan["time"]
    assert row(run_id)["alerts"] == 1
    lines = trainmon("logs", run_id).stdout.splitlines()
    assert sum(line.startswith("alert kind=nan ") for line in lines) == 1


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("command", ["true", "exit 3"])
def test_a_command_that_never_reads_its_notice_does_not_stop_a_headless_run(tmp_path, command):
    """The notice reaches the command as a file on its stdin, not a pipe: a command that exits without reading
    it gives this process no SIGPIPE (which a headless run takes for its reader gone, and stops on)."""
    result = trainmon("run", "digits", "--headless", "--epochs", "1", "--lr", "1e30", "--on-alert", command,
                      timeout=240)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].startswith("finished epochs=1 iterations=45 ")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_no_alerts_raises_none_but_the_end_still_reaches_the_command(tmp_path):
    out = tmp_path / "notices.jsonl"
    result = trainmon("run", "digits", "--headless", "--epochs", "1", "--lr", "1e30", "--no-alerts",
                      "--on-alert", f"cat >> {out}", timeout=240)
    assert result.returncode == 0, result.stderr
    run_id = result.stdout.split()[1].removeprefix("id=")
    assert [json.loads(line)["kind"] for line in out.read_text().splitlines()] == ["finished"]
    events = [e for _seq, e in read_events(row(run_id)["path"])]
    assert any(isinstance(e, msg.NonFiniteLoss) for e in events)
    assert not any(isinstance(e, msg.Alert) for e in events) and row(run_id)["alerts"] == 0


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("args, line", [
    (["--stall-after", "-5"], "trainmon: error: --stall-after must be a number of seconds > 0, not -5"),
    (["--stall-after", "soon"], "trainmon: error: --stall-after must be a number of seconds > 0, not 'soon'"),
    (["--alerts-off", "nan,spike"], "trainmon: error: --alerts-off: unknown alert kind 'spike': the kinds are "
                                    "nan, loss_spike, stall, memory, input_bound, throughput_drop, straggler, hang"),
    (["--on-alert", " "], "trainmon: error: --on-alert needs a shell command (it gets each alert as JSON on its "
                          "stdin), not ' '"),
])
@pytest.mark.parametrize("command", [["run", "digits", "--headless"], ["exec"]])
def test_bad_alert_options_are_one_line_and_exit_2(args, line, command, trainmon_home):
    tail = ["--", sys.executable, "-c", "pass"] if command == ["exec"] else []
    result = trainmon(*command, *args, *tail, timeout=100)
    assert (result.returncode, result.stderr.strip()) == (2, line)
    runs = trainmon_home / "runs"
    assert not runs.exists() or not any(runs.iterdir())  # refused before a run directory was made

SCRIPT = """
import sys, time, torch, trainmon
from torch import nn
torch.manual_seed(0)
model = nn.Linear(4, 2)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
run = trainmon.track(optimizer, name="diverging", quiet=True, on_alert=sys.argv[1], alerts_off=["loss_spike"])
data = [(torch.randn(8, 4), torch.randint(0, 2, (8,))) for _ in range(20)]
for epoch in run.epochs(2):
    for i, (x, y) in enumerate(run.batches(data)):
        loss = nn.functional.cross_entropy(model(x), y) * (float("nan") if i >= 5 else 1.0)
        loss.backward(); optimizer.step(); optimizer.zero_grad()
        run.log(loss)
        time.sleep(float(sys.argv[2]))
print("trained", run.id, flush=True)
"""


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("command, pause, said", [
    ("sleep 30", 0.0, ["--on-alert command for nan was killed: the run ended (waited 5 s for it)",
                       "--on-alert command not run for finished: the run ended"]),
    ("echo oops >&2; exit 3", 0.05, ["--on-alert command for nan failed: exit status 3",
                                     "--on-alert command for finished failed: exit status 3"]),
])
def test_a_tracked_script_ends_with_a_slow_or_failing_command_and_says_so(tmp_path, command, pause, said):
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(SCRIPT))
    process = subprocess.Popen([sys.executable, str(script), command, str(pause)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    out, err = process.communicate(timeout=25)  # `sleep 30` would take longer: the run never waits it out
    assert process.returncode == 0, err
    run_id = out.split()[1]
    warnings = [line.removeprefix("trainmon: warning: ") for line in err.splitlines() if "--on-alert" in line]
    assert [w[:len(s)] for w, s in zip(warnings, said)] == said and len(warnings) == 2
    assert ("oops" in err) == ("oops" in command)  # the command's own output goes to stderr, not stdout
    logs = trainmon("logs", run_id).stdout
    if pause:  # the run went on after the failure: it is in the run's log too, as a warning
        assert f'warning epoch=1 message="{said[0]}"' in logs
    assert row(run_id)["alerts"] == 1 and "trained" in out


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_exec_carries_the_options_to_the_script(tmp_path):
    out = tmp_path / "notices.jsonl"
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(SCRIPT).replace("on_alert=sys.argv[1], ", ""))
    result = subprocess.run([TRAINMON, "exec", "--detach", "--on-alert", f"cat >> {out}", "--alerts-off", "stall",
                             "--", sys.executable, str(script), "unused", "0"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    run_id = result.stdout.strip()
    wait_until(lambda: out.exists() and len(out.read_text().splitlines()) == 2, timeout=120, what="two notices")
    assert [json.loads(line)["kind"] for line in out.read_text().splitlines()] == ["nan", "finished"]
    info = read_run(row(run_id)["path"]).info
    assert json.loads(info["settings"]["alerts"])["off"] == ["stall"] and info["alerts"] == 1
    assert ENV not in os.environ


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_detached_run_stopped_and_resumed_keeps_its_command(tmp_path):
    out = tmp_path / "notices.jsonl"
    result = trainmon("--detach", "--epochs", "60", "--lr", "1e30", "--on-alert", f"cat >> {out}", timeout=120)
    assert result.returncode == 0, result.stderr
    run_id = result.stdout.strip()
    wait_until(lambda: out.exists() and "nan" in out.read_text(), timeout=120, what="the nan alert")
    assert trainmon("stop", run_id, timeout=120).returncode == 0
    wait_until(lambda: len(out.read_text().splitlines()) == 2, timeout=60, what="the stop's notice")
    env = {k: v for k, v in os.environ.items() if k != ENV}  # `trainmon resume` is given no alert option
    resumed = subprocess.run([TRAINMON, "resume", run_id, "--headless"], capture_output=True, text=True,
                             timeout=240, env=env)
    assert resumed.returncode == 0, resumed.stderr
    kinds = [json.loads(line)["kind"] for line in out.read_text().splitlines()]
    assert kinds == ["nan", "stopped", "nan", "finished"]  # the resumed run diverged as it was, and ended
    assert row(run_id)["alerts"] == 2


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_under_torchrun_rank_0_alone_runs_the_command(tmp_path):
    out = tmp_path / "notices.jsonl"
    result = trainmon("run", "digits", "--headless", "--epochs", "1", "--lr", "1e30", "--nproc-per-node", "2",
                      "--on-alert", f"cat >> {out}", timeout=240)
    assert result.returncode == 0, result.stderr
    notices = [json.loads(line) for line in out.read_text().splitlines()]
    assert [n["kind"] for n in notices] == ["nan", "finished"]  # one per alert, not one per rank
    assert notices[1]["message"].startswith("finished after 1 epoch (")
