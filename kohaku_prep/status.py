"""Where a run stands, read from its run folder alone: one run for the user, in cumulative steps.

Works while the run goes on and after it ended: the part table (parts.json), each finished part's
done.json, the running part's attempt.json, and the trainer's TensorBoard logs of every part.
"""
from __future__ import annotations

import datetime
import json
import os
from pathlib import Path

from kohaku_prep.errors import PrepError
from kohaku_prep.plan import STARTUP_GPU_ESTIMATE_SECONDS, duration
from kohaku_prep.training import RunPaths

LOSS_TAG = "loss/current"  # sd-scripts' train_network.py logs the step's loss under this tag


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


def part_losses(logs: Path) -> list[tuple[int, float]]:
    """(launch step, loss) from the newest TensorBoard log folder of one part (a retried launch leaves
    an older folder behind), read with TensorBoard's own event reader."""
    runs = sorted(d for d in logs.iterdir() if d.is_dir()) if logs.is_dir() else []
    if not runs:
        return []
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(runs[-1]), size_guidance={"scalars": 0})
    events.Reload()
    if LOSS_TAG not in events.Tags().get("scalars", []):
        return []
    return [(e.step, e.value) for e in events.Scalars(LOSS_TAG)]


def status_lines(run_dir: Path, last_losses: int = 5, now: datetime.datetime | None = None) -> list[str]:
    paths = RunPaths(run_dir.resolve())
    table = _read_json(paths.parts_table)
    if not isinstance(table, list) or not table:
        raise PrepError(f"{run_dir}: not a run folder of kohaku-prep (no readable {paths.parts_table.name})")
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
    losses = []
    for i, row in enumerate(table):
        losses += [(row["start_step"] + s, v) for s, v in part_losses(paths.part(i).logging_dir)]
    if losses:
        shown = ", ".join(f"{s:,}: {v:.4f}" for s, v in losses[-last_losses:])
        lines.append(f"losses     (cumulative step: loss) {shown}")
    lokr = sorted(paths.output_dir.glob("*.safetensors")) if paths.output_dir.is_dir() else []
    if lokr:
        lines.append(f"LoKr       {', '.join(f.name for f in lokr)} in {paths.output_dir}")
    return lines
