"""Open the lesson app on a run handle, then make sure the run is stopped."""

from __future__ import annotations

from typing import Any

from trainmon.engine.core.lesson import LessonSettings, Stop


def run_lesson(handle: Any, stops: list[Stop], title: str, settings: LessonSettings) -> int:
    """Run the lesson app over `handle` (a subscribed `RunClient`) and return its exit code (0 after q).
    The run is asked to stop on the way out, whatever ended the app."""
    from .app import LessonApp

    app = LessonApp(handle, stops, title, settings)
    try:
        app.run()
    finally:
        app.stop_run()  # whatever ended the app (q, Ctrl+C, a signal): the lesson's run ends with it
        handle.close()
    return app.return_code or 0
