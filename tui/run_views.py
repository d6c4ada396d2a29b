"""The monitor's views of the run beside its charts: `o` the job's own output, `c` the run's config. Both read
the run directory (the viewer runs on the run's host, `trainmon serve` too); a run handle says where it is."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from trainmon.engine.core.messages import FINAL_STATES

from .screens.config_screen import ConfigScreen
from .screens.output_screen import OutputScreen


def run_directory(handle: Any, run_id: str = "") -> Optional[Path]:
    """The run directory of a run handle: a live run's (`RunClient.run_dir`, from the engine's Welcome), a
    recorded run's (`RecordedRun.run.path`), else the one `run_id` names in the runs folder, or `None` (a
    run in this process without one)."""
    folder = getattr(handle, "run_dir", None) or getattr(getattr(handle, "run", None), "path", None)
    if not folder and run_id:
        from trainmon.engine.record.rundir import RunNotFound, resolve_run

        try:
            folder = resolve_run(run_id).path
        except (RunNotFound, OSError):
            folder = None
    return Path(folder) if folder else None


class RunViews:
    """Mixed into `TrainmonApp`: the `o` and `c` actions."""

    def action_show_output(self) -> None:
        if not isinstance(self.screen, OutputScreen):
            live = not self.read_only and self.status not in FINAL_STATES
            self.push_screen(OutputScreen(run_directory(self.run_handle, self.run_id), live=live))

    def action_show_config(self) -> None:
        if not isinstance(self.screen, ConfigScreen):
            self.push_screen(ConfigScreen(run_directory(self.run_handle, self.run_id), self.snapshot))
