"""The suite itself: tests write under `tmp_path` (or a fresh `mkdtemp`), never a fixed folder that exists
only on the machine that wrote them (issue 21 item 1: `/tmp/shots` turned CI red on a fresh machine)."""

from __future__ import annotations

import re
from pathlib import Path

TESTS = Path(__file__).parent

# a string literal naming a folder under /tmp, /var or the home directory, e.g. "/tmp/shots" or "~/out"
FIXED_PATH = re.compile(r"""["'](?:/tmp/|/var/tmp/|~/)[^"']*["']""")


def test_no_test_names_a_fixed_folder():
    found = []
    for source in sorted(TESTS.glob("*.py")):
        if source.name == Path(__file__).name:
            continue
        for number, line in enumerate(source.read_text().splitlines(), 1):
            if FIXED_PATH.search(line):
                found.append(f"{source.name}:{number}: {line.strip()}")
    assert found == []


def test_the_check_catches_the_fault_it_was_written_for():
    assert FIXED_PATH.search('app.save_screenshot("accum_final.svg", "/tmp/shots")')
    assert not FIXED_PATH.search('tempfile.mkdtemp(prefix="tm-", dir="/tmp")')  # fresh, unique, removed after
