"""Textual's private parts that trainmon uses are all in `tui/compat.py`, and are still there.

The first tests fail, naming the shim of `tui/compat.py`, when the installed Textual no longer has a
private name a shim relies on, or has changed its shape: fix that shim (and the textual pin in
pyproject.toml), nothing else. The last ones scan tui/ so that no other module reaches into Textual.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from pathlib import Path

import pytest
import textual
from rich.segment import Segment
from textual.app import App, ComposeResult
from textual.color import Color
from textual.reactive import Reactive
from textual.widget import Widget
from textual.widgets import ProgressBar, Static

from trainmon.tui import compat

TUI = Path(compat.__file__).parent
VERSION = getattr(textual, "__version__", "?")


def shim_broken(shim: str, what: str) -> str:
    return (f"tui/compat.py shim [{shim}] no longer fits textual {VERSION}: {what}. "
            f"Fix that shim (it says what it relies on and why), then the textual pin in pyproject.toml.")


def params(function) -> list[str]:
    return list(inspect.signature(function).parameters)


# --------------------------------------------------------------------------- the shims' private names

def test_frame_hook_app_display_is_still_the_write_hook():
    shim = "frame hook"
    assert callable(getattr(App, "_display", None)), shim_broken(shim, "App._display is gone")
    assert params(App._display) == ["self", "screen", "renderable"], shim_broken(
        shim, f"App._display{inspect.signature(App._display)} is not (self, screen, renderable)")
    source = inspect.getsource(App._display)
    assert "CompositorUpdate" in source and "render_segments" in source, shim_broken(
        shim, "App._display no longer writes a CompositorUpdate through render_segments(console)")
    assert not hasattr(App, "filter_frame"), shim_broken(
        shim, "App now has a `filter_frame` of its own, which FrameHook.filter_frame would shadow")


async def test_frame_hook_sees_every_frame_as_a_compositor_frame():
    shim = "frame hook"
    seen: list[object] = []

    class Hooked(compat.FrameHook, App):
        def compose(self) -> ComposeResult:
            yield Static("hello")

        def filter_frame(self, renderable):
            seen.append(renderable)
            return renderable

    async with Hooked().run_test(size=(20, 4)) as pilot:
        await pilot.pause()
    assert seen, shim_broken(shim, "FrameHook.filter_frame saw no frame: App._display is no longer called")
    assert any(compat.is_frame(r) for r in seen), shim_broken(
        "compositor frame", f"no frame was a CompositorUpdate (saw {sorted({type(r).__name__ for r in seen})})")
    console = Hooked().console
    frame = next(r for r in seen if compat.is_frame(r))

    class Upper(compat.RewrittenFrame):
        def rewrite(self, sequence: str) -> str:
            return sequence.upper()

    assert Upper(frame).render_segments(console) == frame.render_segments(console).upper(), shim_broken(
        "compositor frame", "RewrittenFrame.render_segments does not rewrite what the frame writes")


def test_trainmon_app_hands_textual_its_frames_through_the_mirror(monkeypatch):
    from trainmon.tui.app import TrainmonApp
    from trainmon.tui.terminal_diff import MirroredUpdate

    written: list[object] = []
    monkeypatch.setattr(App, "_display", lambda self, screen, renderable: written.append(renderable))
    app = TrainmonApp(object())
    frame = compat.CompositorUpdate()
    app._display(None, frame)
    assert isinstance(written[-1], MirroredUpdate) and written[-1].update is frame
    other = Segment("not a frame")
    app._display(None, other)
    assert written[-1] is other


def test_compositor_frame_class_is_importable_with_render_segments():
    shim = "compositor frame"
    try:
        module = importlib.import_module("textual._compositor")
        update = module.CompositorUpdate
    except (ImportError, AttributeError) as error:
        pytest.fail(shim_broken(shim, f"textual._compositor.CompositorUpdate cannot be imported ({error})"))
    assert inspect.isclass(update) and update is compat.CompositorUpdate
    assert params(update.render_segments) == ["self", "console"], shim_broken(
        shim, f"CompositorUpdate.render_segments{inspect.signature(update.render_segments)} is not (self, console)")


def test_progress_bar_bar_is_importable_with_the_shape_used():
    shim = "progress bar's bar"
    try:
        bar = importlib.import_module("textual.widgets._progress_bar").Bar
    except (ImportError, AttributeError) as error:
        pytest.fail(shim_broken(shim, f"textual.widgets._progress_bar.Bar cannot be imported ({error})"))
    assert bar is compat.Bar and issubclass(bar, Widget)
    missing = {"id", "clock", "bar_renderable"} - set(params(bar.__init__))
    assert not missing, shim_broken(shim, f"Bar.__init__ takes no {sorted(missing)}")
    assert isinstance(vars(bar).get("percentage"), Reactive), shim_broken(shim, "Bar.percentage is no reactive")
    assert callable(vars(bar).get("watch_percentage")), shim_broken(shim, "Bar.watch_percentage is gone")
    for name in ("percentage", "gradient"):
        assert isinstance(getattr(ProgressBar, name, None), Reactive), shim_broken(
            shim, f"ProgressBar.{name} is no reactive to bind the bar to")
    progress = ProgressBar()
    assert hasattr(progress, "_clock"), shim_broken(shim, "a ProgressBar has no `_clock` to share with its bar")
    assert hasattr(progress, "BAR_RENDERABLE"), shim_broken(shim, "ProgressBar.BAR_RENDERABLE is gone")
    source = inspect.getsource(ProgressBar.compose)
    assert re.search(r"Bar\(\s*id=\"bar\"", source), shim_broken(
        shim, "ProgressBar.compose no longer yields Bar(id=\"bar\", ...), which progress_bar_bar copies")


async def test_progress_bar_bar_follows_its_progress_bar():
    shim = "progress bar's bar"

    class Paced(compat.Bar):
        pass

    class OwnBar(ProgressBar):
        def compose(self) -> ComposeResult:
            yield compat.progress_bar_bar(self, Paced)

    class One(App):
        def compose(self) -> ComposeResult:
            yield OwnBar(total=4, show_eta=False, show_percentage=False)

    app = One()
    async with app.run_test(size=(40, 3)) as pilot:
        progress = app.query_one(OwnBar)
        progress.update(progress=2)
        await pilot.pause()
        bar = app.query_one(Paced)
        assert bar.id == "bar"
        assert bar.percentage == pytest.approx(0.5, abs=0.05), shim_broken(
            shim, f"the bar is not bound to its ProgressBar's percentage (it shows {bar.percentage})")


def test_monochrome_filter_apply_is_still_patchable():
    shim = "monochrome filter"
    from textual.filter import Monochrome

    compat.patch_monochrome_filter()
    apply = Monochrome.apply
    original = getattr(apply, "__wrapped__", apply)
    assert params(original) == ["self", "segments", "background"], shim_broken(
        shim, f"Monochrome.apply{inspect.signature(original)} is not (self, segments, background)")
    compat.patch_monochrome_filter()  # idempotent: not wrapped twice
    assert Monochrome.apply is apply
    out = Monochrome().apply([Segment("x", None), Segment("y")], Color(0, 0, 0))
    assert [s.text for s in out] == ["x", "y"], shim_broken(shim, "segments without a style still break it")


def test_terminal_write_is_how_textual_writes_its_own_sequences():
    shim = "terminal write"
    for method in (App.bell, App.copy_to_clipboard):
        assert "self._driver.write(" in inspect.getsource(method), shim_broken(
            shim, f"App.{method.__name__} no longer writes through App._driver.write")


async def test_terminal_write_reaches_the_running_apps_driver(monkeypatch):
    from textual.drivers.headless_driver import HeadlessDriver

    written: list[str] = []
    monkeypatch.setattr(HeadlessDriver, "write", lambda self, data: written.append(data))
    app = App()
    assert compat.write_to_terminal(app, "\a") is False  # not running: no driver, nothing written
    async with app.run_test():
        assert compat.write_to_terminal(app, "\a\x1b]9;hello\a") is True
    assert written.count("\a\x1b]9;hello\a") == 1, shim_broken("terminal write", "App._driver.write was not reached")


# --------------------------------------------------------------------------- nothing else reaches in

async def test_composed_plot_waits_for_textual_plots_own_children():
    from textual.containers import Vertical
    from textual_plot import PlotWidget

    class Holder(Vertical):
        def compose(self) -> ComposeResult:
            yield PlotWidget()

    class One(App):
        def compose(self) -> ComposeResult:
            yield Static("x")

    async with One().run_test(size=(40, 12)) as pilot:
        holder = Holder()
        assert compat.composed_plot(holder) is None  # not mounted: nothing composed, no NoMatches either
        await pilot.app.mount(holder)
        await pilot.pause()
        plot = compat.composed_plot(holder)
        assert isinstance(plot, PlotWidget), shim_broken("plot composed", "no PlotWidget with #legend after mount")
        plot.clear()  # what the charts call: it queries #legend
        assert plot.query_one("#legend") is not None


def tui_modules() -> list[Path]:
    return sorted(p for p in TUI.rglob("*.py") if p.name != "compat.py")


def private_module(name: str) -> bool:
    parts = name.split(".")
    return parts[0] == "textual" and any(part.startswith("_") for part in parts[1:])


def violations(path: Path, root: Path = TUI.parent) -> list[str]:
    """What `path` does that only compat.py may: import a private textual module or name, reach
    `App._display`, assign into a textual module or class."""
    tree = ast.parse(path.read_text(), str(path))
    found: list[str] = []
    textual_names: set[str] = set()  # names this module binds to textual modules or objects
    for node in ast.walk(tree):
        where = f"{path.relative_to(root)}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "textual":
                    textual_names.add((alias.asname or alias.name).split(".")[0])
                if private_module(alias.name):
                    found.append(f"{where} imports {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] == "textual":
                textual_names.update(alias.asname or alias.name for alias in node.names)
                private = [a.name for a in node.names if a.name.startswith("_")]
                if private_module(node.module) or private:
                    found.append(f"{where} imports from {node.module}: {', '.join(a.name for a in node.names)}")
        elif isinstance(node, ast.Attribute) and node.attr == "_display":
            found.append(f"{where} reaches textual's private App._display (compat.FrameHook is the way)")
        elif isinstance(node, ast.FunctionDef) and node.name == "_display":
            found.append(f"{where} overrides textual's private App._display (compat.FrameHook is the way)")
    for node in ast.walk(tree):  # a textual module or class changed in place: a monkeypatch
        targets = node.targets if isinstance(node, ast.Assign) else (
            [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else [])
        for target in targets:
            base = target
            while isinstance(base, ast.Attribute):
                base = base.value
            if target is not base and isinstance(base, ast.Name) and base.id in textual_names:
                found.append(f"{path.relative_to(root)}:{node.lineno} patches {ast.unparse(target)}")
    return found


def test_no_module_but_compat_imports_or_patches_textual_private_parts():
    found = [line for path in tui_modules() for line in violations(path)]
    assert not found, ("textual's private parts are reached outside tui/compat.py; add a shim there "
                       "(with the versions it was checked on) and use it:\n" + "\n".join(found))


def test_the_scan_sees_what_it_forbids(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import textual._compositor\nfrom textual.widgets._progress_bar import Bar\n"
                      "from textual.widgets import _progress_bar\nfrom textual import filter\n"
                      "filter.Monochrome.apply = None\n"
                      "class A:\n    def _display(self, s, r):\n        super()._display(s, r)\n")
    found = violations(sample, tmp_path)
    assert len(found) == 6, found


def textual_private_names(klass: type) -> set[str]:
    """`_names` a textual class (and its textual bases) defines or sets on `self`."""
    names: set[str] = set()
    for base in klass.__mro__:
        if not base.__module__.startswith("textual"):
            continue
        names.update(n for n in vars(base) if n.startswith("_") and not n.startswith("__"))
        try:
            names.update(re.findall(r"self\.(_[a-z]\w*)\s*[:=]", inspect.getsource(base)))
        except (OSError, TypeError):
            pass
    return names


def test_no_tui_class_reads_or_shadows_a_private_attribute_of_its_textual_base():
    """`self._clock` in a ProgressBar subclass reads textual's private state; a `self._x` of our own
    that textual's base also has would overwrite it. Both belong in compat (or need another name)."""
    found = []
    for path in tui_modules():
        module = importlib.import_module("trainmon." + ".".join(path.relative_to(TUI.parent).with_suffix("").parts))
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.ClassDef):
                continue
            klass = getattr(module, node.name, None)
            if not inspect.isclass(klass):
                continue
            private = textual_private_names(klass)
            used = {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
                    and n.value.id in ("self", "cls") and n.attr in private}
            used |= {n.name for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                     and n.name in private and n.name.startswith("_") and not n.name.startswith("__")}
            used |= {t.id for n in node.body if isinstance(n, (ast.Assign, ast.AnnAssign))
                     for t in (n.targets if isinstance(n, ast.Assign) else [n.target])
                     if isinstance(t, ast.Name) and t.id in private}
            found += [f"{path.relative_to(TUI.parent)}: {node.name} uses textual's private {name}"
                      for name in sorted(used)]
    assert not found, "\n".join(found)
