"""The run before it runs: batches and optimizer steps over the simulated buckets (`buckets.py`),
warmup, save points, ETA, and the LoKr network's size."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from kohaku_prep.bucketing import bucket_rows
from kohaku_prep.preset import Preset
from kohaku_prep.train.parts import PartsPlan, cadence_ends
from kohaku_prep.train.training import warmup_scheduler_steps


@dataclass
class StepPlan:
    images: int
    buckets: list[tuple[tuple[int, int], int]]  # (bucket resolution, images x repeats), used buckets only
    batches: int  # one epoch's batches over all buckets: what sd-scripts' dataloader has before DDP
    batch_size: int
    processes: int
    accumulation: int
    epochs: int
    optimizer_steps: int  # what the trainer runs: schedule.max_steps when set, else the epochs' steps
    max_steps: int  # schedule.max_steps; 0: the epochs decide
    warmup_optimizer_steps: int
    warmup_scheduler_steps: int

    @property
    def effective_batch(self) -> int:
        return self.batch_size * self.accumulation * self.processes


def step_plan(buckets: list[tuple[tuple[int, int], int]], p: Preset) -> StepPlan:
    ds, s, la = p.dataset, p.schedule, p.launch
    batches = sum(math.ceil(n / ds.batch_size) for _, n in buckets)
    # train_network.py: epochs * ceil(len(dataloader) / num_processes / gradient_accumulation_steps),
    # unless --max_train_steps is given instead of epochs
    steps = s.max_steps or s.epochs * math.ceil(batches / la.num_processes / s.gradient_accumulation_steps)
    return StepPlan(max_steps=s.max_steps,
        images=sum(n for _, n in buckets) // ds.num_repeats, buckets=buckets, batches=batches,
        batch_size=ds.batch_size, processes=la.num_processes, accumulation=s.gradient_accumulation_steps,
        epochs=s.epochs, optimizer_steps=steps, warmup_optimizer_steps=s.warmup_optimizer_steps,
        warmup_scheduler_steps=warmup_scheduler_steps(p))


@dataclass
class Mark:
    """A point on the run's timeline, in cumulative optimizer steps."""

    step: int
    kind: str  # "warmup end", "save", "part end" or "end"
    seconds: float | None  # from the start, at the planned seconds per step


MARK_ORDER = ("warmup end", "part end", "save", "end")


def timeline(plan: StepPlan, seconds_per_step: float | None, part_ends: Sequence[int] = (),
             saves: Sequence[int] = ()) -> list[Mark]:
    """The warmup's end, every save point (`saves`: where a LoKr is kept), the end of each part of a run
    trained in parts (`part_ends`: cumulative optimizer steps; the last part ends with the run) and the
    run's end, in step order."""
    total = plan.optimizer_steps
    marks = [("warmup end", min(plan.warmup_optimizer_steps, total))] if plan.warmup_optimizer_steps else []
    marks += [("part end", step) for step in sorted(set(part_ends)) if 0 < step < total]
    marks += [("save", step) for step in saves]
    marks.append(("end", total))
    marks.sort(key=lambda m: (m[1], MARK_ORDER.index(m[0])))
    return [Mark(step, kind, step * seconds_per_step if seconds_per_step else None) for kind, step in marks]


def duration(seconds: float) -> str:
    days, rest = divmod(int(round(seconds)), 86400)
    hours, rest = divmod(rest, 3600)
    return (f"{days} d " if days else "") + f"{hours} h {rest // 60:02d} min"


def histogram_lines(rows: list[tuple[int, int, int, int]], width: int = 24) -> list[str]:
    """One line per bucket: its size, images, batches and a bar of its images against the largest."""
    largest = max((r[2] for r in rows), default=1)
    lines = [f"  {'bucket':>11} {'images':>11} {'batches':>10}"]
    for w, h, n, batches in rows:
        bar = "#" * round(width * n / largest) or "."
        lines.append(f"  {w:>4} x {h:<4} {n:>11,} {batches:>10,}  {bar}")
    return lines


def plan_lines(plan: StepPlan, seconds_per_step: float | None, lokr_params: int, lokr_bytes: int) -> list[str]:
    lines = [f"images            {plan.images:,}",
             f"buckets           {len(plan.buckets)} used, by aspect ratio (tallest first):",
             *histogram_lines(bucket_rows(plan.buckets, plan.batch_size))]
    lines += [
        f"batches           {plan.batches:,} per epoch (partly filled buckets round up)",
        f"effective batch   {plan.effective_batch} = {plan.batch_size} per GPU x {plan.accumulation} accumulation"
        f" x {plan.processes} process(es)",
        f"optimizer steps   {plan.optimizer_steps:,} = " + (
            f"schedule.max_steps ({math.ceil(plan.batches / plan.processes / plan.accumulation):,} per epoch: "
            f"schedule.epochs does not apply)" if plan.max_steps else
            f"{plan.epochs} epoch(s) x ceil({plan.batches:,} / {plan.processes} / {plan.accumulation})"),
        f"warmup            {plan.warmup_optimizer_steps:,} optimizer steps = --lr_warmup_steps "
        f"{plan.warmup_scheduler_steps:,} ({plan.processes} scheduler steps per optimizer step)",
        *([f"                  (warmup outlasts the run's {plan.optimizer_steps:,} steps)"]
          if plan.warmup_optimizer_steps > plan.optimizer_steps else []),
        f"LoKr              {lokr_params:,} parameters, {lokr_bytes / 1e6:,.1f} MB file "
        "(before sd-scripts' metadata)",
    ]
    if seconds_per_step:
        lines.append(f"ETA               {duration(plan.optimizer_steps * seconds_per_step)} at "
                     f"{seconds_per_step:g} s per optimizer step")
    else:
        lines.append("ETA               give --seconds-per-step S (measured seconds per optimizer step) for one")
    return lines


# Start-up of one launch (SDXL load, network, optimizer state, dataset scan): measured by `make smoke` on a
# 2-core CPU at 128 px; on GPUs an estimate until a GPU run measures it.
STARTUP_CPU_SMOKE_SECONDS = 120
STARTUP_GPU_ESTIMATE_SECONDS = (120, 300)


def parts_lines(parts: PartsPlan, p: Preset, seconds_per_step: float | None) -> list[str]:
    """The run's launches: one per part, each resuming the last one's end state."""
    steps = sorted({part.steps for part in parts.parts})
    span = f"{steps[0]:,}" if len(steps) == 1 else f"{steps[0]:,}-{steps[-1]:,}"
    diff = parts.steps - parts.single_launch_steps
    share = 100 * diff / parts.single_launch_steps if parts.single_launch_steps else 0.0
    low, high = STARTUP_GPU_ESTIMATE_SECONDS
    count = len(parts.parts)
    lines = [
        f"parts             {count} launch(es) of {span} optimizer steps (schedule.steps_per_part = "
        f"{p.schedule.steps_per_part}), "
        + ("each a random part of the data resuming the last part's end state" if count > 1
           else "the whole dataset"),
        f"  steps in all    {parts.steps:,}; one launch over the whole dataset: {parts.single_launch_steps:,} "
        f"({diff:+,}, {share:+.2f}%)",
        f"  start-up        per launch ~{STARTUP_CPU_SMOKE_SECONDS // 60} min measured on the CPU smoke; "
        f"{low // 60}-{high // 60} min estimated on GPUs: {duration(count * low)} to {duration(count * high)} in all",
    ]
    if seconds_per_step:
        longest = steps[-1] * seconds_per_step
        lines += [f"  per part        up to {duration(longest)} at {seconds_per_step:g} s per step",
                  f"  a crash loses   at most one part: {duration(longest + high)} with its start-up (estimated)"]
    else:
        lines.append("  per part        (give --seconds-per-step for hours per part and the most a crash loses)")
    every = p.saving.every_n_steps
    kept = cadence_ends(parts.parts, every)
    ends = ", ".join(f"{s:,}" for s in kept) or "(none)"
    lines.append(f"  LoKr kept       at part ends {ends} (saving.every_n_steps = {every}), the newest part end's, "
                 "and the final one")
    lines.append(f"  {'part':>5} {'epoch':>5} {'images':>11} {'batches':>9} {'steps':>7}  cumulative steps")
    for part in parts.parts:
        lines.append(f"  {part.index + 1:>5} {part.epoch + 1:>5} {len(part.rows):>11,} {part.batches:>9,} "
                     f"{part.steps:>7,}  {part.start_step:,} -> {part.end_step:,}")
    return lines
