"""Where a run stands, read from its run folder alone: one run for the user, in cumulative steps.

Works while the run goes on and after it ended: the part table (parts.json), each finished part's
done.json, the running part's attempt.json, and the trainer's TensorBoard logs of every part.
"""
from __future__ import annotations

import datetime
import json
import os
import tomllib
from pathlib import Path

from kohaku_prep.errors import PrepError
from kohaku_prep.fsutil import write_atomic
from kohaku_prep.train import run_logs
from kohaku_prep.train.plan import STARTUP_GPU_ESTIMATE_SECONDS, duration
from kohaku_prep.train.training import RunPaths


def _read_json(path: Path) -> dict | list | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def effective_batch(paths: RunPaths) -> int | None:
    """Images a step, from the run's resolved preset."""
    try:
        p = tomllib.loads((paths.root / "preset.toml").read_text())
        return p["dataset"]["batch_size"] * p["schedule"]["gradient_accumulation_steps"] * p["launch"]["num_processes"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def read_logs(paths: RunPaths, table: list[dict]) -> run_logs.RunLogs:
    """Every part's TensorBoard logs in cumulative steps: each launch logs its own steps from 0."""
    return run_logs.read_run_logs([(paths.part(i).logging_dir, row["start_step"]) for i, row in enumerate(table)],
                                  effective_batch(paths))


def write_dashboard(run_dir: Path) -> list[Path]:
    """dashboard.png and dashboard.html in the run folder, redrawn from its logs."""
    paths = RunPaths(run_dir.resolve())
    logs = read_logs(paths, _parts_table(paths))
    png = run_logs.dashboard_png(logs)
    targets = [paths.root / "dashboard.png", paths.root / "dashboard.html"]
    write_atomic(targets[0], png)
    write_atomic(targets[1], run_logs.dashboard_html(logs, f"Run {paths.root.name}", png))
    return targets


def _parts_table(paths: RunPaths) -> list[dict]:
    table = _read_json(paths.parts_table)
    if not isinstance(table, list) or not table:
        raise PrepError(f"{paths.root}: not a run folder of kohaku-prep (no readable {paths.parts_table.name})")
    return table


def status_lines(run_dir: Path, last_losses: int = 5, now: datetime.datetime | None = None) -> list[str]:
    paths = RunPaths(run_dir.resolve())
    table = _parts_table(paths)
    now = now or datetime.datetime.now(datetime.timezone.utc)
    total, count = table[-1]["end_step"], len(table)
    done = [_read_json(paths.part(i).done) for i in range(count)]
    finished = [d for d in done if isinstance(d, dict)]
    step = max((d["end_step"] for d in finished), default=0)
    wall = sum(d["wall_seconds"] for d in finished)
    current = next((i for i, d in enumerate(done) if d is None), None)
    lines = [f"run        {paths.root}"]
    running_for = 0.0
    if current is None:
        lines.append(f"part       all {count} done")
    else:
        attempt = _read_json(paths.part(current).attempt)
        if isinstance(attempt, dict) and _alive(int(attempt.get("pid", 0))):
            started = datetime.datetime.fromisoformat(attempt["started"])
            running_for = max(0.0, (now - started).total_seconds())
            state = f"running (attempt {attempt['attempt']}, {duration(running_for)} so far)"
        else:
            state = "not running: the same train command continues it"
        lines.append(f"part       {current + 1} of {count}, {state}")
    lines.append(f"step       {step:,} of {total:,} optimizer steps ({100 * step / total:.1f}%) at the last part end")
    lines.append(f"elapsed    {duration(wall + running_for)} ({duration(wall)} in {len(finished)} finished part(s))")
    if finished and step:
        per_step = wall / step
        left_launches = count - len(finished)
        lines.append(f"speed      {per_step:.1f} s per optimizer step over finished parts, start-up included")
        lines.append(f"ETA        {duration(max(0.0, (total - step) * per_step - running_for))} for "
                     f"{total - step:,} steps in {left_launches} launch(es)")
    else:
        low, high = STARTUP_GPU_ESTIMATE_SECONDS
        lines.append(f"speed      not measured until a part finishes (start-up ~{low // 60}-{high // 60} min a launch)")
    logs = read_logs(paths, table)
    if len(logs.loss):
        shown = ", ".join(f"{int(s):,}: {v:.4f}" for s, v in zip(logs.loss.steps[-last_losses:],
                                                                logs.loss.values[-last_losses:], strict=True))
        lines.append(f"losses     (cumulative step: loss, the mean of its micro-batches) {shown}")
    lokr = sorted(paths.output_dir.glob("*.safetensors")) if paths.output_dir.is_dir() else []
    if lokr:
        lines.append(f"LoKr       {', '.join(f.name for f in lokr)} in {paths.output_dir}")
    return lines
