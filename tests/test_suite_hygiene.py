"""The suite itself: tests write under `tmp_path` (or a fresh `mkdtemp`), never a fixed folder that exists
only on the machine that wrote them (issue 21 item 1: `/tmp/shots` turned CI red on a fresh machine)."""

from __future__ import annotations

import ast
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


# ---- the fast tier (`pytest -m "not slow"`, issue 22 item 7) ------------------------------------------
#
# A test that starts a process — subprocess/Popen, the `trainmon` command, tmux, a browser (selenium),
# torchrun or torch.distributed, multiprocessing — is marked `slow`, by `@pytest.mark.slow` or by its
# module's or class's `pytestmark`. The scan below reads the source of tests/*.py: a test starts processes
# when it names one of PROCESS_NAMES, or names (as a fixture argument, a call, a class) a function, fixture,
# class or module-level value of its own module — or one imported from a sibling module such as engines.py
# or tmux.py — that does, however deep. Processes started inside the trainmon package (a CliRunner run of
# `--detach`) and tests that are merely long are beyond it: `--durations` finds those.

PROCESS_NAMES = {"subprocess", "Popen", "create_subprocess_exec", "create_subprocess_shell", "multiprocessing",
                 "tmux", "Tmux", "selenium", "webdriver", "torchrun"}
PROCESS_MODULES = ("subprocess", "multiprocessing", "selenium", "torch.distributed", "torch.multiprocessing")
SLOW = "pytest.mark.slow"


def _dotted(node: ast.AST) -> str:
    """`a.b.c` for an Attribute chain on a Name, else ''."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return ".".join([node.id, *reversed(parts)])
    return ""


def _names(tree: ast.AST) -> set[str]:
    """Every identifier `tree` uses: names, attributes, arguments (fixtures), dotted chains, imported modules."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            found.add(node.id)
        elif isinstance(node, ast.Attribute):
            found.update((node.attr, _dotted(node)))
        elif isinstance(node, ast.arg):
            found.add(node.arg)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def _starts_processes_itself(names: set[str]) -> bool:
    return bool(names & PROCESS_NAMES) or any(n == m or n.startswith(m + ".") for n in names for m in PROCESS_MODULES)


def _is_slow(node: ast.AST) -> bool:
    return any(_dotted(n) == SLOW for n in ast.walk(node))


def _module_marked_slow(body: list[ast.stmt]) -> bool:
    return any(isinstance(s, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in s.targets)
               and _is_slow(s.value) for s in body)


def unmarked_process_tests(sources: dict[str, str]) -> list[str]:
    """`module::test` for each test in `sources` ({module name: source}) that starts a process, is not
    marked slow, and so would run in the fast tier."""
    trees = {name: ast.parse(text) for name, text in sources.items()}
    defs: dict[str, dict[str, set[str]]] = {}  # module -> top-level name -> the names it uses
    imported: dict[str, dict[str, tuple[str, str]]] = {}  # module -> local name -> (sibling module, name there)
    for module, tree in trees.items():
        defs[module], imported[module] = {}, {}
        for stmt in tree.body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                defs[module][stmt.name] = _names(stmt)
            elif isinstance(stmt, (ast.Assign, ast.AnnAssign)) and stmt.value is not None:
                targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                defs[module].update((t.id, _names(stmt.value)) for t in targets if isinstance(t, ast.Name))
            elif isinstance(stmt, ast.ImportFrom) and stmt.module in trees:
                imported[module].update((a.asname or a.name, (stmt.module, a.name)) for a in stmt.names)

    starts = {(m, n) for m, names in defs.items() for n, used in names.items() if _starts_processes_itself(used)}

    def reaches(module: str, used: set[str]) -> bool:
        """Whether `used` (in `module`) names something known to start processes: a top-level name of
        `module`, one imported from a sibling (`from engines import row`, `engines.row`), a conftest fixture."""
        return any((module, u) in starts or imported[module].get(u) in starts or ("conftest", u) in starts
                   or tuple(u.split(".", 1)) in starts for u in used)

    while True:  # what uses something that starts processes starts processes too
        more = {(m, n) for m, names in defs.items() for n, used in names.items()
                if (m, n) not in starts and reaches(m, used - {n})}
        if not more:
            break
        starts |= more
    found = []
    for module, tree in trees.items():
        if not module.startswith("test_") or _module_marked_slow(tree.body):
            continue
        tests = []
        for stmt in tree.body:
            if isinstance(stmt, ast.ClassDef):
                if not (any(_is_slow(d) for d in stmt.decorator_list) or _module_marked_slow(stmt.body)):
                    tests += stmt.body
            else:
                tests.append(stmt)
        for test in tests:
            if (isinstance(test, (ast.FunctionDef, ast.AsyncFunctionDef)) and test.name.startswith("test")
                    and not any(_is_slow(d) for d in test.decorator_list)):
                used = _names(test) - {test.name}
                if _starts_processes_itself(used) or reaches(module, used):
                    found.append(f"{module}::{test.name}")
    return found


def test_every_test_that_starts_a_process_is_marked_slow():
    sources = {path.stem: path.read_text() for path in sorted(TESTS.glob("*.py"))}
    assert unmarked_process_tests(sources) == []


def test_the_fast_tier_check_catches_what_it_was_written_for():
    helper = "import subprocess\ndef run(*args):\n    return subprocess.run(args)\n"
    module = (
        "import pytest, subprocess\nfrom helper import run\n"
        "def go():\n    return run('trainmon')\n"
        "@pytest.fixture\ndef engine():\n    yield go()\n"
        "def test_direct():\n    subprocess.Popen(['x'])\n"
        "def test_through_a_helper():\n    go()\n"
        "def test_through_a_fixture(engine):\n    pass\n"
        "async def test_asyncio():\n    import asyncio\n    await asyncio.create_subprocess_exec('x')\n"
        "def test_ranks():\n    import torch.distributed as dist\n"
        "def test_in_process():\n    assert 'torchrun' in 'no torchrun here'\n"
        "@pytest.mark.slow\ndef test_marked():\n    go()\n"
        "class TestGroup:\n    def test_method(self, engine):\n        pass\n"
        "def test_module_attribute():\n    import helper\n    helper.run('ls')\n"
    )
    assert unmarked_process_tests({"helper": helper, "test_mod": module}) == [
        "test_mod::test_direct", "test_mod::test_through_a_helper", "test_mod::test_through_a_fixture",
        "test_mod::test_asyncio", "test_mod::test_ranks", "test_mod::test_method", "test_mod::test_module_attribute"]
    whole = "import pytest\npytestmark = [pytest.mark.slow, pytest.mark.timeout(9)]\n" + module
    assert unmarked_process_tests({"helper": helper, "test_mod": whole}) == []


def test_every_package_folder_is_packaged():
    """A wheel holds only the packages pyproject.toml lists: each folder with an `__init__.py` must be one."""
    import tomllib

    root = TESTS.parent
    listed = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    skip = {"tests", ".venv", "benchmarks", "examples", "screenshots", "docs", "build"}
    found = {"trainmon" + "".join("." + part for part in init.parent.relative_to(root).parts)
             for init in root.rglob("__init__.py") if not set(init.relative_to(root).parts) & skip}
    assert found - listed == set()
