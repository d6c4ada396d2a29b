"""Where runs live: run directories under the user's state directory, sockets where paths are short.

No torch, no textual: every viewer command (`ls`, `logs`, `attach`) resolves runs through here.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
import tempfile
import time
from pathlib import Path
from typing import Optional

SOCKET_PATH_MAX = 100  # AF_UNIX paths are limited to 107 bytes on Linux (108 with the NUL); keep a margin


def trainmon_home() -> Path:
    """`$TRAINMON_HOME`, else platformdirs' `user_state_dir("trainmon")` (`~/.local/state/trainmon` on Linux)."""
    env = os.environ.get("TRAINMON_HOME")
    if env:
        return Path(env).expanduser().resolve()
    import platformdirs

    return Path(platformdirs.user_state_dir("trainmon"))


def runs_root() -> Path:
    """The folder holding one run directory per run: `<home>/runs`."""
    return trainmon_home() / "runs"


def make_private_dir(path: Path) -> Path:
    """Create `path` (and parents) with mode 0700 and make sure the last part is 0700 and ours.

    Raises `PermissionError` when the folder belongs to another user (a shared /tmp trap).
    """
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = path.stat()
    if info.st_uid != os.getuid():
        raise PermissionError(f"{path} belongs to another user (uid {info.st_uid})")
    if stat.S_IMODE(info.st_mode) != 0o700:
        os.chmod(path, 0o700)
    return path


def new_run_id(job_name: str, now: Optional[float] = None) -> str:
    """`20261129-143000-digits-3f2a`: local start time (so `ls` sorts by it), job name, 4 hex digits."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(time.time() if now is None else now))
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", os.path.basename(job_name.split(":")[0]).removesuffix(".py")).strip("-.")
    return f"{stamp}-{(slug or 'job')[:32]}-{secrets.token_hex(2)}"


def socket_dir() -> Path:
    """A private folder with a short path for control sockets: `$XDG_RUNTIME_DIR/trainmon`, else
    `/tmp/trainmon-<uid>` (created 0700, refused if another user owns it)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime) and len(runtime) < 60:
        return make_private_dir(Path(runtime) / "trainmon")
    return make_private_dir(Path(tempfile.gettempdir()) / f"trainmon-{os.getuid()}")


def socket_path_for(run_id: str, run_dir: Path) -> Path:
    """The control socket of a run: inside its run directory when that path is short enough for
    AF_UNIX, else in `socket_dir()` (the run records where, in run.json)."""
    inside = run_dir / "control.sock"
    if len(os.fsencode(str(inside))) <= SOCKET_PATH_MAX:
        return inside
    path = socket_dir() / f"{run_id[-24:]}.sock"
    if len(os.fsencode(str(path))) > SOCKET_PATH_MAX:  # a very long $TMPDIR: fall back to /tmp itself
        path = make_private_dir(Path("/tmp") / f"trainmon-{os.getuid()}") / f"{run_id[-24:]}.sock"
    return path
