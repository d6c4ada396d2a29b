"""`trainmon serve --lesson`: the lesson in a real headless browser tab, on a run of its own."""

from __future__ import annotations

import pytest
import test_serve
from engines import ls_json, wait_until
from test_serve import free_port, invoke, needs_browser, one_line_error, press, screen

served, browser = test_serve.served, test_serve.browser  # the fixtures: a server process group, a headless Chromium


@pytest.mark.slow
@needs_browser
@pytest.mark.timeout(240)
def test_a_browser_tab_gives_the_lesson_and_closing_the_server_stops_its_run(served, browser, tmp_path):
    lesson = tmp_path / "class.toml"
    lesson.write_text("batch_size = 100\naccum = 3\nquestions = false\n")
    s = served("--lesson", str(lesson))
    assert any("serving trainmon lesson" in line for line in s.stderr)
    browser.get(s.url)
    text = wait_until(lambda: (t := screen(browser)) and "[paused]" in t and t, timeout=90,
                      what="the lesson's paused run in the browser")
    assert "The plan of an epoch" in text and "iteration 0/10" in text
    press(browser, "n")
    text = wait_until(lambda: (t := screen(browser)) and "iteration 1/10" in t and t, timeout=30,
                      what="one iteration after n")
    assert "Iteration 1: the first micro-batch" in text
    [run] = wait_until(lambda: [r for r in ls_json() if r["global_iteration"] == 1], timeout=30,
                       what="ls to count the one iteration")
    assert (run["job"], run["status"]) == ("seed-example", "paused")
    s.kill()  # the server ends its tabs: each lesson stops its run
    wait_until(lambda: ls_json()[0]["status"] == "stopped", timeout=30, what="the lesson's run to stop")


def test_serve_lesson_refuses_a_bad_file_and_a_read_only_serve(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("accum = 0\n")
    assert one_line_error(invoke("--lesson", str(bad), "--port", str(free_port()))) == (
        f"trainmon: error: {bad}: accum: expected int >= 1, got 0")
    assert one_line_error(invoke("--lesson", "--read-only", "--port", str(free_port()))) == (
        "trainmon: error: a lesson is steered from its tab: serve it on loopback, or add --allow-control")
