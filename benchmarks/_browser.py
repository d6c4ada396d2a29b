"""`trainmon serve` and one headless-chromium tab on it, for benchmarks/viewers.py.

The same browser as tests/test_serve.py (Debian's chromium + chromedriver through selenium, the
same flags, a fresh profile). The page draws the terminal with xterm.js on a canvas; a script
injected before the page loads keeps its xterm `Terminal` as window.__xterm so that we can tell
when the tab shows the run (and then stop looking, so as not to add work of our own).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from typing import Optional

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1280,860")

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


def available() -> Optional[str]:
    """None when a served-view benchmark can run here, else why not."""
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        return f"needs {CHROMIUM} and {CHROMEDRIVER} (Debian: apt install chromium chromium-driver)"
    if importlib.util.find_spec("selenium") is None:
        return "needs selenium (pip install -e '.[test]')"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def descendants(pid: int) -> list[int]:
    """`pid` and all its live descendants."""
    import psutil

    try:
        root = psutil.Process(pid)
        return [pid, *(c.pid for c in root.children(recursive=True))]
    except psutil.NoSuchProcess:
        return []


class Served:
    """`trainmon serve RUN --port <free>` as a process group of its own (the server, each tab's attach)."""

    def __init__(self, trainmon: str, run_id: str, env: dict, timeout: float = 60.0) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen([trainmon, "serve", run_id, "--port", str(self.port)], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                     start_new_session=True)
        self.stderr: list[str] = []
        self._url = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        self.timeout = timeout

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.stderr.append(line.rstrip("\n"))
            if "http://" in line:
                self._url.set()

    def url(self) -> str:
        """The printed URL (waits for it and for the port to listen)."""
        if not self._url.wait(self.timeout):
            raise RuntimeError(f"no URL from trainmon serve within {self.timeout:g} s: {self.stderr}")
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("trainmon serve never listened") from None
                time.sleep(0.1)
        line = next(text for text in self.stderr if "http://" in text)
        token = re.search(r"[?]token=(\S+)", line).group(1)
        return f"http://127.0.0.1:{self.port}/?token={token}"

    def pids(self) -> list[int]:
        return descendants(self.proc.pid)

    def kill(self) -> None:
        """SIGTERM the group (the server stops its tabs), SIGKILL whatever is left."""
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
            os.killpg(self.proc.pid, signal.SIGKILL)  # a tab's attach that outlived the server
        except ProcessLookupError:
            pass


class Browser:
    """One headless chromium (through chromedriver) with a fresh profile; close() leaves nothing behind."""

    def __init__(self) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for arg in FLAGS:
            options.add_argument(arg)
        self.profile = tempfile.mkdtemp(prefix="tm-bench-chromium-")
        options.add_argument(f"--user-data-dir={self.profile}")
        self.service = Service(CHROMEDRIVER)
        self.driver = webdriver.Chrome(service=self.service, options=options)
        self.driver.set_page_load_timeout(60)
        self.driver.set_script_timeout(10)
        self.driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": KEEP_TERMINAL})

    def pids(self) -> list[int]:
        """chromedriver, chromium and chromium's helpers (renderer, GPU, network, zygotes)."""
        proc = self.service.process
        return descendants(proc.pid) if proc is not None else []

    def screen(self) -> str:
        return self.driver.execute_script(SCREEN_TEXT) or ""

    def open_and_wait(self, url: str, text: str, timeout: float = 90.0) -> float:
        """Open `url` and wait until the tab's terminal shows `text` and a global iteration; the time then."""
        self.driver.get(url)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            shown = self.screen()
            if text in shown and re.search(r"global iteration\s+\d+/", shown):
                return time.time()
            time.sleep(0.25)
        raise RuntimeError(f"the tab never showed {text!r}; last screen: {self.screen()!r}")

    def close(self) -> None:
        import psutil

        left = []
        for pid in self.pids():
            try:
                left.append(psutil.Process(pid))
            except psutil.NoSuchProcess:
                pass
        try:
            self.driver.quit()
        except Exception:  # noqa: BLE001 - whatever state it is in, the kills below end it
            pass
        proc = self.service.process
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(5)
        for p in left:  # chromium's helpers, should any have outlived quit() (psutil checks it is the same process)
            try:
                p.kill()
            except psutil.Error:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)
