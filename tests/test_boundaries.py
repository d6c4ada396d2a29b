"""The house rules as checks: the arithmetic never imports torch; the engine never imports textual."""

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # each test runs a fresh interpreter

ROOT = Path(__file__).resolve().parents[1]


def run_python(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.strip()


def test_arithmetic_does_not_import_torch():
    out = run_python(
        "import sys; import trainmon.engine.arithmetic, trainmon.engine.history, trainmon.engine.messages, "
        "trainmon.engine.report, trainmon.engine.numbers;"
        "print('torch' in sys.modules)"
    )
    assert out == "False"


def test_engine_does_not_import_textual():
    modules = sorted(p.stem for p in (ROOT / "engine").glob("*.py") if p.stem != "__init__")
    imports = ";".join(f"import trainmon.engine.{m}" for m in modules)
    out = run_python(f"import sys; {imports}; import trainmon.engine.jobs.builtin; "
                     "print(sorted(m for m in sys.modules if m.split('.')[0] == 'textual'))")
    assert out == "[]"
    assert len(modules) >= 6


def test_import_linter_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "engine never imports textual KEPT" in result.stdout
