"""A run's config for people to read: the settings as given, as resolved, the job, versions, host, output.
From run.json (`info`) and the newest snapshot; no torch, no textual. The monitor's `c` screen shows it.
"""

from __future__ import annotations

from typing import Any, Optional

Section = tuple[str, list[tuple[str, str]]]

RESOLVED = ("epochs", "batch_size", "accum", "lr", "seed", "device", "precision", "drop_last", "batch_growth",
            "max_batch_size", "clip_grad_norm", "val_batch_size", "num_workers", "checkpoints", "checkpoint_every",
            "checkpoint_minutes", "keep_checkpoints")


def show(value: Any) -> str:
    """A setting's value as text: `—` for none, `yes`/`no`, numbers as Python writes them (`0.003`, `1e-05`)."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={show(v)}" for k, v in value.items())
    return str(value)


def run_kind(info: dict) -> str:
    """How the run was started, in the words of the README."""
    settings = info.get("settings") or {}
    if settings.get("command"):
        return "trainmon exec (a script of your own, detached)"
    if settings.get("tracked") or info.get("tracked"):
        return "trainmon.track() in your own process"
    if settings.get("launch"):
        return "torchrun ranks"
    return "the trainmon engine"


def _given(settings: dict) -> list[tuple[str, str]]:
    rows = [("job", show(settings.get("target") or settings.get("job")))]
    for key in ("seed", "image_size"):
        if settings.get(key) is not None:
            rows.append((key, show(settings[key])))
    options = {k: v for k, v in (settings.get("options") or {}).items() if v is not None}
    if options.get("device") == "auto":
        options.pop("device")
    rows += [(key.replace("_", " "), show(value)) for key, value in options.items()]
    if settings.get("launch"):
        rows.append(("torchrun", show({k: v for k, v in settings["launch"].items() if v})))
    if settings.get("command"):
        rows.append(("command", show(settings["command"])))
    if len(rows) == 1 and not options:
        rows.append(("options", "none given: the job's own defaults"))
    return rows


def resolved_config(info: dict, snapshot: Any) -> dict:
    """run.json's `config` (the engine's RunConfig), with `epochs`, `batch_size`, `accum` and `lr` from the
    snapshot where it lacks them (a tracked loop records no RunConfig: what its snapshot says)."""
    config = dict(info.get("config") or {})
    if snapshot is not None:
        for key in ("epochs", "batch_size", "accum", "lr"):
            if config.get(key) is None and getattr(snapshot, key, None):
                config[key] = getattr(snapshot, key)
    return config


def _resolved(info: dict, snapshot: Any) -> list[tuple[str, str]]:
    config = resolved_config(info, snapshot)
    s = snapshot
    world = int(info.get("world_size") or getattr(s, "world_size", 1) or 1)
    rows = []
    for key in RESOLVED:
        if key in config and (config[key] is not None or key in ("epochs", "batch_size", "lr")):
            rows.append((key.replace("_", " "), show(config[key])))
    b, k = config.get("batch_size"), config.get("accum") or 1
    if isinstance(b, int) and b:
        rows.insert(3 if len(rows) >= 3 else len(rows),
                    ("effective batch size", f"{b * k * world}  (b·k·world size = {b}·{k}·{world})"))
    if s is not None and getattr(s, "device", None) and s.device != config.get("device"):
        rows.append(("device in use", show(s.device)))
    if world > 1:
        rows.append(("world size", str(world)))
    if s is not None:
        if s.dataset_size is not None:
            rows.append(("samples (m)", f"{s.dataset_size:,}"))
        if s.iterations_in_epoch is not None:
            rows.append(("iterations / epoch", str(s.iterations_in_epoch)))
        if s.steps_per_epoch is not None:
            rows.append(("optimizer steps / epoch", str(s.steps_per_epoch)))
    return rows


def _versions(info: dict) -> list[tuple[str, str]]:
    versions = dict(info.get("versions") or {})
    versions.setdefault("python", info.get("python"))
    if not versions.get("torch"):
        versions["torch"] = info.get("torch_version")
    versions.setdefault("trainmon", info.get("trainmon_version"))
    return [(name, show(version)) for name, version in versions.items() if version]


def _host(info: dict) -> list[tuple[str, str]]:
    machine = info.get("machine") or {}
    rows = [("hostname", show(machine.get("hostname") or info.get("host")))]
    if machine.get("platform"):
        rows.append(("platform", machine["platform"]))
    if machine.get("cpu_count"):
        usable = machine.get("cpus_usable")
        rows.append(("CPUs", f"{machine['cpu_count']}" + (f" ({usable} usable)" if usable and usable != machine[
            "cpu_count"] else "")))
    if "gpus" in machine:
        names = machine["gpus"]
        rows.append(("GPUs", ", ".join(f"{i}: {n}" for i, n in enumerate(names)) if names
                     else f"none ({machine.get('gpus_reason') or 'NVML lists none'})"))
    if info.get("pid"):
        rows.append(("pid", str(info["pid"])))
    if info.get("cwd"):
        rows.append(("working folder", info["cwd"]))
    return rows


def _output(info: dict) -> list[tuple[str, str]]:
    note = info.get("output")
    if not note:
        return [("recorded", "not noted (a run from before the output was recorded)")]
    if not note.get("captured"):
        return [("recorded", f"no: {note.get('why')}")]
    return [("recorded", f"yes, in {note.get('file')} (rotated at {show(note.get('file_mib'))} MiB, "
                         f"{show(note.get('keep'))} older files kept)")]


def config_sections(info: dict, snapshot: Optional[Any] = None, run_dir: str = "") -> list[Section]:
    """`[(title, [(name, value), ...]), ...]`: Run, Settings as given, As resolved, Versions, Host, Output."""
    run = [("id", show(info.get("id"))), ("job", show(info.get("job"))), ("kind", run_kind(info)),
           ("status", show(info.get("status"))), ("started", show(info.get("started")))]
    if run_dir:
        run.append(("run directory", run_dir))
    if info.get("exit_code") is not None:
        run.append(("exit code", str(info["exit_code"])))
    return [("Run", run), ("Settings as given", _given(info.get("settings") or {})),
            ("As resolved", _resolved(info, snapshot)), ("Versions", _versions(info)), ("Host", _host(info)),
            ("The job's output", _output(info))]
