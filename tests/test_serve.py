"""`trainmon serve` in a real headless browser: a tab is one more viewer of a detached run.

The page draws the terminal with xterm.js on a canvas, so its text is not in the DOM. A script
injected before the page loads keeps the page's xterm `Terminal` (the page assigns it to
`.terminal` on its own object; a setter on `Object.prototype` sees that assignment) and the test
reads the screen from the terminal's buffer: exactly the cells the canvas shows.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner
from engines import row, start_detached, trainmon, wait_until

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[test]')")
needs_browser = pytest.mark.skipif(
    not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)),
    reason=f"a headless browser test needs {CHROMIUM} and {CHROMEDRIVER} (Debian: apt install chromium chromium-driver)")

# the page's xterm Terminal, kept as window.__xterm (see the module docstring)
KEEP_TERMINAL = """
Object.defineProperty(Object.prototype, 'terminal', {configurable: true, get() { return undefined; },
  set(v) { Object.defineProperty(this, 'terminal', {value: v, writable: true, configurable: true, enumerable: true});
           if (v && v.buffer && v.buffer.active) { window.__xterm = v; } }});
"""
SCREEN_TEXT = """
const t = window.__xterm; if (!t) { return null; }
const b = t.buffer.active, out = [];
for (let i = 0; i < t.rows; i++) { const line = b.getLine(b.viewportY + i); out.push(line ? line.translateToString(true) : ''); }
return out.join('\\n');
"""
SERVE = [sys.executable, "-c", "from trainmon.cli.serve import serve; serve()"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """`trainmon serve ARGS` as a process group of its own (the server and each tab's attach)."""

    def __init__(self, *args: str) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen([*SERVE, *args, "--port", str(self.port)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, start_new_session=True)
        self.stderr: list[str] = []
        self._url = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if not self._url.wait(30):
            self.kill()
            raise AssertionError(f"no URL from trainmon serve within 30 s: {self.stderr}")
        wait_until(self._listening, timeout=30, what="trainmon serve to listen")

    def _listening(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.stderr.append(line.rstrip("\n"))
            if "http://" in line:
                self._url.set()

    @property
    def url(self) -> str:
        """The printed URL, pointed at 127.0.0.1 (a 0.0.0.0 server prints the host's name)."""
        line = next(text for text in self.stderr if "http://" in text)
        token = re.search(r"\?token=(\S+)", line).group(1)
        return f"http://127.0.0.1:{self.port}/?token={token}"

    def attach_pids(self) -> list[int]:
        import psutil

        try:
            children = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        # each tab: `/bin/sh -c "python … attach RUN"` and that python; count the pythons
        return [c.pid for c in children if _cmdline(c)[:1] == [sys.executable] and "attach" in _cmdline(c)]

    def kill(self) -> None:
        """SIGTERM the group (the server stops its tabs), SIGKILL whatever is left after 10 s."""
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the tabs' attach processes, if any outlived it
        except ProcessLookupError:
            pass


def _cmdline(proc) -> list[str]:
    try:
        return proc.cmdline()
    except Exception:  # noqa: BLE001 - gone meanwhile
        return []


@pytest.fixture
def served():
    started: list[Served] = []

    def start(*args: str) -> Served:
        started.append(Served(*args))
        return started[-1]

    yield start
    for s in started:
        s.kill()


@pytest.fixture
def browser():
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1280,860"):
        options.add_argument(arg)
    profile = tempfile.mkdtemp(prefix="trainmon-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    service = Service(CHROMEDRIVER)
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(10)
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": KEEP_TERMINAL})
    try:
        yield driver
    finally:
        try:
            driver.quit()
        finally:
            if service.process is not None and service.process.poll() is None:
                service.process.kill()
                service.process.wait(5)
            shutil.rmtree(profile, ignore_errors=True)


def screen(driver) -> str:
    return driver.execute_script(SCREEN_TEXT) or ""


def global_iteration(text: str) -> int | None:
    found = re.search(r"global iteration\s+(\d+)/", text)
    return int(found.group(1)) if found else None


def press(driver, keys: str) -> None:
    """Type `keys` as a user would: click the terminal (xterm focuses its input), then the keys."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    ActionChains(driver).click(driver.find_element(By.CSS_SELECTOR, ".xterm-screen")).send_keys(keys).perform()


def events_of(run_dir: Path, kind: str) -> list[dict]:
    lines = (run_dir / "events.jsonl").read_text().splitlines()
    return [e["event"] for e in map(json.loads, lines) if e["event"]["type"] == kind]


def open_and_watch(driver, url: str, run_id: str) -> str:
    """Open the page and wait for its progress pane to show a rising global iteration; the screen."""
    driver.get(url)
    first = wait_until(lambda: (t := screen(driver)) and run_id in t and global_iteration(t) and t,
                       timeout=60, what="the progress pane in the browser")
    wait_until(lambda: (global_iteration(screen(driver)) or 0) > global_iteration(first), timeout=30,
               what="the global iteration to rise in the browser")
    return screen(driver)


@pytest.mark.slow
@needs_browser
@pytest.mark.timeout(240)
def test_a_browser_tab_watches_and_steers_the_run_and_closing_it_leaves_the_run_going(served, browser):
    run_id, run_dir = start_detached("--epochs", "2000")
    try:
        server = served(run_id)
        assert server.stderr[0].startswith(f"serving run {run_id} on http://127.0.0.1:{server.port}/?token=")
        assert not any("warning" in line for line in server.stderr)

        # without the token the page is refused
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}/", timeout=10)
        assert refused.value.code == 403

        text = open_and_watch(browser, server.url, run_id)
        assert "RUNNING" in text and "Progress" in text and "Loss" in text and "read-only" not in text
        assert len(server.attach_pids()) == 1

        press(browser, " ")
        wait_until(lambda: "PAUSED" in screen(browser), timeout=30, what="PAUSED in the browser")
        paused = wait_until(lambda: (r := row(run_id))["status"] == "paused" and r, timeout=30, what="ls: paused")
        [event] = events_of(run_dir, "Paused")
        assert event["global_iteration"] == paused["global_iteration"]

        press(browser, " ")
        wait_until(lambda: row(run_id)["status"] == "running", timeout=30, what="ls: running again")

        browser.get("about:blank")  # the tab goes away: its viewer ends, the run goes on
        wait_until(lambda: not server.attach_pids(), timeout=30, what="the tab's attach process to end")
        before = row(run_id)
        assert before["status"] == "running"
        wait_until(lambda: row(run_id)["global_iteration"] > before["global_iteration"], timeout=30,
                   what="the run to go on after the tab closed")
        assert server.proc.poll() is None  # and the server waits for the next tab
    finally:
        stopped = trainmon("stop", run_id, timeout=90)
    assert stopped.returncode == 0, stopped.stderr
    assert row(run_id)["status"] == "stopped"


@pytest.mark.slow
@needs_browser
@pytest.mark.timeout(240)
def test_a_non_loopback_serve_warns_and_its_tabs_cannot_steer_the_run(served, browser):
    run_id, run_dir = start_detached("--epochs", "2000")
    try:
        server = served(run_id, "--host", "0.0.0.0")
        [warning] = [line for line in server.stderr if "warning" in line]
        assert warning.startswith(f"trainmon: warning: serving run {run_id} on 0.0.0.0, reachable from other machines")
        assert "read-only" in warning
        assert "(read-only)" in server.stderr[-1]

        text = open_and_watch(browser, server.url, run_id)
        assert "read-only: watching" in text and "RUNNING" in text

        press(browser, " ")
        press(browser, "q")  # read-only: q only closes this view
        wait_until(lambda: not server.attach_pids(), timeout=30, what="q to end the read-only tab's viewer")
        time.sleep(1.0)  # a pause, had one gone through, lands at the next safe point (milliseconds)
        assert events_of(run_dir, "Paused") == []
        assert not [e for e in events_of(run_dir, "CommandAccepted")]
        after = row(run_id)
        assert after["status"] == "running"
        wait_until(lambda: row(run_id)["global_iteration"] > after["global_iteration"], timeout=30,
                   what="the run to go on")
    finally:
        stopped = trainmon("stop", run_id, timeout=90)
    assert stopped.returncode == 0, stopped.stderr


@pytest.mark.slow
@needs_browser
@pytest.mark.timeout(240)
def test_a_browser_tab_shows_the_runs_alerts(served, browser):
    """Issue 23 item 5: a tab opened after the loss turned NaN shows the badge (from the replayed events) and
    `a` lists the alert."""
    run_id, run_dir = start_detached("--epochs", "2000", "--lr", "1e12", "--no-checkpoints")
    try:
        wait_until(lambda: events_of(run_dir, "Alert"), timeout=60, what="the nan alert")
        server = served(run_id)
        browser.get(server.url)
        wait_until(lambda: "⚠ 1 alert · nan" in screen(browser), timeout=60, what="the badge in the browser")
        press(browser, "a")
        text = wait_until(lambda: (t := screen(browser)) and "Alerts — 1, newest first" in t and t, timeout=30,
                          what="the list of alerts in the browser")
        assert "the loss is nan at global" in text
    finally:
        stopped = trainmon("stop", run_id, timeout=90)
    assert stopped.returncode == 0, stopped.stderr


# ---- errors: one line, exit 2 (in-process) -----------------------------------------------------


def invoke(*args: str):
    from trainmon.cli.serve import serve

    return CliRunner().invoke(serve, list(args))


def one_line_error(result) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_serve_without_a_live_run_is_refused():
    assert one_line_error(invoke("--port", str(free_port()))).startswith("trainmon: error: no live run")


def test_serve_of_an_unknown_run_is_refused():
    line = one_line_error(invoke("19990101-000000-nothing", "--port", str(free_port())))
    assert line.startswith("trainmon: error: ") and "19990101-000000-nothing" in line


@pytest.mark.parametrize("port", ["0", "70000", "-1"])
def test_serve_on_a_bad_port_is_refused(port):
    assert one_line_error(invoke("--port", port)) == f"trainmon: error: port must be between 1 and 65535, got {port}"


def test_serve_on_a_port_in_use_is_refused():
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        line = one_line_error(invoke("--port", str(port)))
    assert line.startswith(f"trainmon: error: port {port} on 127.0.0.1 is in use")


def test_serve_on_a_host_that_does_not_resolve_is_refused():
    line = one_line_error(invoke("--host", "no-such-host.invalid", "--port", str(free_port())))
    assert line.startswith("trainmon: error: cannot serve on host 'no-such-host.invalid'")


def test_loopback_addresses_are_told_from_others():
    from trainmon.cli.serve import attach_command, is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3") and not is_loopback("::")
    assert attach_command("RUN", read_only=True).endswith("attach RUN --read-only")
    assert attach_command("RUN", read_only=False).endswith("attach RUN")
