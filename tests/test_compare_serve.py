"""The runs screen in the browser (`trainmon serve`): `r` lists the runs, Enter opens another one in the same
tab (a real headless browser; see test_serve.py for how the page's screen is read)."""

from __future__ import annotations

import re

import pytest
from engines import start_detached, trainmon, wait_until
from test_serve import browser, needs_browser, open_and_watch, press, screen, served  # noqa: F401 - the fixtures


@pytest.mark.slow
@needs_browser
@pytest.mark.timeout(240)
def test_r_in_a_browser_tab_lists_the_runs_and_enter_opens_another(served, browser):  # noqa: F811 - the fixtures imported above
    ended = trainmon("--headless", "--epochs", "1", "--no-checkpoints")
    assert ended.returncode == 0, ended.stderr
    ended_id = re.match(r"^run id=(\S+) ", ended.stdout).group(1)
    run_id, _run_dir = start_detached("--epochs", "2000")
    try:
        server = served(run_id)
        open_and_watch(browser, server.url, run_id)  # the monitor answers keys from now on
        press(browser, "r")
        listed = wait_until(lambda: (t := screen(browser)) and "Runs: 2 of 2" in t and ended_id in t and t,
                            timeout=60, what="the runs screen in the browser")
        assert listed.index(run_id) < listed.index(ended_id)  # newest first
        press(browser, "\ue015")  # arrow down: the ended run
        press(browser, "\ue007")  # Enter: open it in this tab
        wait_until(lambda: (t := screen(browser)) and ended_id in t and "FINISHED" in t, timeout=60,
                   what="the ended run opened in the same tab")
        assert wait_until(lambda: '"status": "running"' in trainmon("ls", "--json").stdout, timeout=30)  # it goes on
    finally:
        stopped = trainmon("stop", run_id, timeout=90)
    assert stopped.returncode == 0, stopped.stderr
