"""Load a user's job from `file.py[:function]` or `package.module[:attribute]`, with one-line errors.

Every way a job file can be wrong ends in `JobError`, whose message is one line that says what to
fix: the CLI prints it and exits 2. Nothing here imports textual.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import keyword
import os
import re
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any, Optional

from trainmon.engine.core.arithmetic import PlanError

DEFAULT_NAMES = ("job", "make_job", "get_job")
TRAINMON_ROOT = Path(__file__).resolve().parents[1]  # the engine folder
_PACKAGE_DIRS = tuple(str(p) for p in {TRAINMON_ROOT, TRAINMON_ROOT.parent / "cli", TRAINMON_ROOT.parent / "tui"})


class JobError(PlanError):
    """A job could not be loaded or does not fit; the message is one line."""


def is_user_frame(filename: str) -> bool:
    """True for frames outside trainmon, the standard library and site-packages (torch included)."""
    path = os.path.abspath(filename)
    if path.startswith(_PACKAGE_DIRS) or "site-packages" in path or "dist-packages" in path:
        return False
    stdlib = os.path.dirname(os.__file__)
    return not path.startswith(stdlib) and not filename.startswith("<frozen")


def user_frames(exc: BaseException) -> list[traceback.FrameSummary]:
    """The frames of `exc`'s traceback that belong to the user's code."""
    return [f for f in traceback.extract_tb(exc.__traceback__) if is_user_frame(f.filename)]


def where(exc: BaseException) -> str:
    """`job.py:12 in forward` for the innermost user frame of `exc`, or '' when there is none."""
    frames = user_frames(exc)
    if not frames:
        return ""
    f = frames[-1]
    return f"{os.path.basename(f.filename)}:{f.lineno} in {f.name}"


def format_user_traceback(exc: BaseException) -> str:
    """A traceback of the user's frames only, then the exception line (trainmon's and torch's frames left out)."""
    frames = user_frames(exc)
    lines = ["Traceback (your code; trainmon and library frames hidden):\n"]
    lines += traceback.format_list(frames) if frames else ["  (no frame in your code)\n"]
    lines += traceback.format_exception_only(type(exc), exc)
    return "".join(lines)


def one_line(exc: BaseException) -> str:
    """`Type: first line of the message`; for an error re-raised from a DataLoader worker, the
    original exception's line (torch puts it at the end of its "Original Traceback")."""
    text = str(exc).strip().splitlines()
    if "Original Traceback" in str(exc) and text:
        return f"{text[-1].strip()} (in a DataLoader worker)"
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Warning)|[A-Z]\w*)(: .*)?$")


def worker_error(exc: BaseException, log: Optional[str], start: int = 0) -> Optional[str]:
    """For a DataLoader worker that died without sending its error ("exited unexpectedly": it failed
    before torch could catch anything, e.g. while unpickling the dataset in a spawned worker), the
    worker's own error read back from `log`, the file its stderr went to, after byte `start`:
    `DataLoader worker exited unexpectedly: ModuleNotFoundError: No module named 'x'`. `None` for any
    other exception, or when `log` holds no Python traceback."""
    text = str(exc)
    if "DataLoader worker" not in text or "exited unexpectedly" not in text:
        return None
    found = None
    if log is not None:
        try:
            with open(log, "rb") as f:
                f.seek(max(start, os.path.getsize(log) - 65536))
                lines = f.read().decode(errors="replace").splitlines()
        except OSError:
            lines = []
        for i, line in enumerate(lines):  # the last traceback's closing line
            if line.startswith("Traceback (most recent call last):"):
                for after in lines[i + 1:]:
                    if not after.startswith((" ", "\t")) and _EXCEPTION_LINE.match(after.strip()):
                        found = after.strip()
                        break
    if found is None:
        return None
    return f"DataLoader worker exited unexpectedly: {found}"


def split_target(target: str) -> tuple[str, Optional[str]]:
    """`"a/b.py:fn"` → `("a/b.py", "fn")`; `"pkg.mod:attr"` → `("pkg.mod", "attr")`; no colon → `(target, None)`."""
    if ":" in target:
        head, _, name = target.rpartition(":")
        if head and name and not name.startswith(("\\", "/")):  # leave Windows drive letters alone
            return head, name
    return target, None


def looks_like_file(source: str) -> bool:
    return source.endswith(".py") or os.sep in source or Path(source).is_file()


def absolute_target(target: str) -> str:
    """The same target with a file path made absolute (the engine's process may start elsewhere)."""
    source, name = split_target(target)
    if not looks_like_file(source) or not Path(source).expanduser().exists():
        return target
    path = str(Path(source).expanduser().resolve())
    return f"{path}:{name}" if name else path


_LOADED: dict[str, Path] = {}  # module name -> job file, for the job files loaded here


def importable_name(path: Path) -> Optional[str]:
    """The name a job file at `path` is loaded under so that any process can import it again: its
    stem (`job` for job.py), found through its folder on `sys.path`. DataLoader workers started by
    spawn or forkserver unpickle the job's classes (a Dataset defined in the file) by module name,
    so a private name would fail there. `None` when the stem is taken by another module (a job file
    named random.py) or is no identifier: the file then gets a private name, fine for fork."""
    stem = path.stem
    if not stem.isidentifier() or keyword.iskeyword(stem) or stem in sys.builtin_module_names:
        return None
    if getattr(sys, "stdlib_module_names", ()) and stem in sys.stdlib_module_names:
        return None
    existing = sys.modules.get(stem)
    if existing is not None and _LOADED.get(stem) is None:
        return None  # a module of the same name is already in use
    elsewhere = [p for p in sys.path if isinstance(p, str) and Path(p or ".").resolve() != path.parent]
    if importlib.machinery.PathFinder.find_spec(stem, elsewhere) is not None:
        return None  # taking the name would hide an installed module from everything imported later
    found = importlib.machinery.PathFinder.find_spec(stem, sys.path)
    if found is None or found.origin is None or Path(found.origin).resolve() != path:
        return None  # a package or another file of that name comes first on sys.path
    return stem


def _load_file(path_text: str) -> ModuleType:
    path = Path(path_text).expanduser()
    if not path.exists():
        raise JobError(f"job file not found: {path_text}")
    if path.is_dir():
        raise JobError(f"{path_text} is a folder; give a .py file")
    path = path.resolve()
    folder = str(path.parent)
    if folder in sys.path:
        sys.path.remove(folder)
    sys.path.insert(0, folder)  # so the job file can import its neighbours, and workers can import it
    name = importable_name(path) or f"trainmon_user_job_{abs(hash(str(path)))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise JobError(f"cannot load {path_text} as Python (is it a .py file?)")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    _LOADED[name] = path
    try:
        spec.loader.exec_module(module)
    except SystemExit as exc:
        raise JobError(f"{path.name} called sys.exit({exc.code!r}) while being imported"
                       + training_script_hint(path)) from None
    except SyntaxError as exc:
        raise JobError(f"{path.name}:{exc.lineno}: syntax error: {exc.msg}") from None
    except Exception as exc:  # noqa: BLE001 - anything the user's module raises at import
        at = where(exc) or path.name
        raise JobError(f"{at}: importing the job file raised {one_line(exc)}") from None
    return module


TRAINING_SCRIPT_SIGNS = ("trainmon.track(", "TrainmonCallback", ".fit(", ".train(", "if __name__ ==")


def training_script_hint(path: Path) -> str:
    """`: ...` telling that `path` looks like a training script (it trains when run: `python FILE`), not a
    job file; `""` when it does not (or cannot be read)."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        return ""
    if not any(sign in text for sign in TRAINING_SCRIPT_SIGNS) or "def job(" in text:
        return ""
    return ": " + script_message(path)


def script_message(path: Path) -> str:
    """What to do with a training script given where a job file was expected."""
    return (f"{path.name} looks like a training script, not a job file — run it with `python {path}`, or "
            f"`trainmon exec -- python {path}` to watch it (a job file defines job() returning a trainmon Job)")


def trains_at_import(path: Path) -> bool:
    """`path`'s own top-level code (outside functions, classes and an `if __name__ ...` block) calls something
    named `track` (`trainmon.track(...)`, `track(...)`) and the file binds no job factory (`job`, `make_job`,
    `get_job`: defined, assigned or imported): importing it would run a whole training, recorded as a run of
    its own, before the job-file loader could refuse it. False when unreadable."""
    import ast

    try:
        tree = ast.parse(path.read_text(), filename=str(path))
    except (OSError, UnicodeDecodeError, SyntaxError, ValueError):
        return False
    bound = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            bound.update(t.id for t in targets if isinstance(t, ast.Name))
    if bound & set(DEFAULT_NAMES):
        return False
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) or (
                isinstance(node, ast.If) and "__name__" in ast.unparse(node.test)):
            continue
        for call in ast.walk(node):
            if isinstance(call, ast.Call):
                func = call.func
                if (func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)) == "track":
                    return True
    return False


def _load_module(name: str) -> ModuleType:
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m`: packages in the current folder are found
    try:
        return importlib.import_module(name)
    except SystemExit as exc:
        raise JobError(f"{name} called sys.exit({exc.code!r}) while being imported") from None
    except SyntaxError as exc:
        raise JobError(f"{os.path.basename(exc.filename or name)}:{exc.lineno}: syntax error: {exc.msg}") from None
    except ModuleNotFoundError as exc:
        if exc.name and name.startswith(exc.name):
            if "." not in name:
                from trainmon.engine.jobs.builtin import BUILTIN_JOBS

                raise JobError(f"unknown job {name!r}: built-in jobs are {', '.join(BUILTIN_JOBS)}; "
                               "or give FILE.py or package.module") from None
            raise JobError(f"no job file or module named {name!r} (give a path to a .py file or package.module)") from None
        raise JobError(f"{where(exc) or name}: importing {name} raised {one_line(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - the user's job may raise anything: one line, no traceback
        raise JobError(f"{where(exc) or name}: importing {name} raised {one_line(exc)}") from None


def load_job(target: str, **kwargs: Any):
    """Build the `Job` named by `target`: `file.py`, `file.py:function`, `pkg.module` or `pkg.module:attr`.

    Without a name, the module's `job`, `make_job` or `get_job` is used. A function is called
    with `kwargs` it accepts; a `Job` instance is used as is. Raises `JobError` (one line) when the
    file is missing, has a syntax error, has no job, the function raises, or it returns no `Job`.
    """
    from trainmon.engine.jobs.job import Job

    source, name = split_target(target)
    if Path(source).is_dir():
        raise JobError(f"{source} is a folder; give a .py file (or package.module for a package)")
    is_file = looks_like_file(source)
    script = Path(source).expanduser()
    if is_file and name is None and script.is_file() and trains_at_import(script):
        raise JobError(script_message(script.resolve()))  # refused before it runs: importing it would train
    module = _load_file(source) if is_file else _load_module(source)
    label = Path(source).name if is_file else source
    if name is None:
        name = next((n for n in DEFAULT_NAMES if hasattr(module, n)), None)
        if name is None:
            hint = training_script_hint(Path(getattr(module, "__file__", "") or label))
            raise JobError(hint[2:] if hint else
                           f"{label} defines no job: add `def job() -> Job` (or give {label}:FUNCTION)")
    if not hasattr(module, name):
        raise JobError(f"{label} has no attribute {name!r}")
    obj = getattr(module, name)
    if isinstance(obj, Job):
        job = obj
    elif callable(obj):
        try:
            job = obj(**_accepted(obj, kwargs))
        except SystemExit as exc:
            raise JobError(f"{label}:{name}() called sys.exit({exc.code!r})") from None
        except TypeError as exc:
            if "required positional argument" in str(exc) and not user_frames(exc)[1:]:
                raise JobError(f"{label}:{name}() must take no arguments: {one_line(exc)}") from None
            raise JobError(f"{where(exc) or label}: {name}() raised {one_line(exc)}") from None
        except Exception as exc:  # noqa: BLE001 - the user's function failed
            raise JobError(f"{where(exc) or label}: {name}() raised {one_line(exc)}") from None
    else:
        raise JobError(f"{label}:{name} is a {type(obj).__name__}, not a function returning a Job")
    if not isinstance(job, Job):
        raise JobError(f"{label}:{name}() returned {type(job).__name__}, not a trainmon Job "
                       "(from trainmon.engine import Job)")
    return job


def _accepted(fn: Any, kwargs: dict) -> dict:
    import inspect

    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return {}
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return dict(kwargs)
    return {k: v for k, v in kwargs.items() if k in params}
