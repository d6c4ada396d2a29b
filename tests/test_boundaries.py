"""The house rules as checks: the core never imports torch; the engine never imports textual; the layers and
no import cycles (import-linter)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # each test runs a fresh interpreter

ROOT = Path(__file__).resolve().parents[1]


def run_python(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.strip()


def engine_modules(folder: str = "") -> list[str]:
    """Dotted names of every module under engine/`folder`."""
    base = ROOT / "engine"
    return sorted("trainmon.engine." + ".".join(p.relative_to(base).with_suffix("").parts)
                  for p in (base / folder).rglob("*.py") if p.stem != "__init__")


def test_the_core_does_not_import_torch():
    modules = engine_modules("core")
    assert "trainmon.engine.core.arithmetic" in modules and len(modules) >= 10
    out = run_python(f"import sys; import {', '.join(modules)}; print('torch' in sys.modules)")
    assert out == "False"


def test_engine_does_not_import_textual():
    modules = engine_modules()
    assert len(modules) >= 40
    out = run_python(f"import sys; import {', '.join(modules)}; "
                     "print(sorted(m for m in sys.modules if m.split('.')[0] == 'textual'))")
    assert out == "[]"


def test_import_linter_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("layers: cli on top", "the engine never imports textual", "the core never imports torch",
                 "the TUI never imports torch", "no import cycles among the modules of any package"):
        assert name in result.stdout
    assert "0 broken" in result.stdout


def test_ruff_is_clean():
    ruff = Path(sys.executable).with_name("ruff")
    result = subprocess.run([str(ruff), "check", "--output-format", "concise", "."], cwd=ROOT, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_noqa_and_type_ignore_says_why():
    bare = re.compile(r"#\s*(noqa(: ?[A-Z0-9, ]+)?|type: ?ignore(\[[^]]*\])?)\s*$")
    sources = [p for folder in ("engine", "tui", "cli", "integrations", "tests", "benchmarks")
               for p in (ROOT / folder).rglob("*.py")] + [ROOT / "__init__.py", ROOT / "__main__.py"]
    found = [f"{p.relative_to(ROOT)}:{n}: {line.strip()}" for p in sources
             for n, line in enumerate(p.read_text().splitlines(), 1) if bare.search(line)]
    assert found == []


def test_no_source_file_grows_past_about_400_lines():
    """A file past a few hundred lines is split before more is added (tests and benchmarks apart)."""
    sources = [p for folder in ("engine", "tui", "cli", "integrations") for p in (ROOT / folder).rglob("*.py")]
    long = {str(p.relative_to(ROOT)): n for p in sources if (n := len(p.read_text().splitlines())) > 420}
    assert long == {}
