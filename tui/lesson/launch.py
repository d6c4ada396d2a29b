"""Open the lesson app on a run handle, then make sure the run is stopped."""

from __future__ import annotations

from typing import Any

from trainmon.engine.core.lesson import LessonSettings, Stop


def run_lesson(handle: Any, stops: list[Stop], title: str, settings: LessonSettings) -> int:
    """Run the lesson app over `handle` (a subscribed `RunClient`) and return its exit code: 0 after q,
    128 + N when signal N (TERM, HUP, INT, QUIT: a closed terminal or browser tab) ended it. The run is
    asked to stop on the way out, whatever ended the app."""
    from ..launch import ViewerSignals
    from .app import LessonApp

    app = LessonApp(handle, stops, title, settings)
    signals = ViewerSignals().install(app)
    try:
        app.run()
    finally:
        signals.uninstall()
        app.stop_run()  # the lesson's run ends with the lesson
        handle.close()
    if signals.received is not None:
        return signals.exit_code or 1
    return app.return_code or 0
