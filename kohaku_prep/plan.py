"""The run before it runs: sd-scripts' bucketing simulated from the manifest, batches, optimizer steps,
warmup, save points, ETA, and the LoKr network's size.

Bucketing follows sd-scripts v0.10.1 (library/model_util.py make_bucket_resolutions, train_util.py
BucketManager.select_bucket, BaseDataset.make_buckets) for enable_bucket with upscaling allowed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from kohaku_prep.preset import DatasetSection, Preset
from kohaku_prep.training import warmup_scheduler_steps


def bucket_resolutions(resolution: int, min_size: int, max_size: int, steps: int) -> list[tuple[int, int]]:
    """The predefined buckets: every (w, h) of at most resolution² area on the `steps` grid, sorted."""
    area = resolution * resolution
    side = int(math.sqrt(area) // steps) * steps
    resos = {(side, side)}
    width = min_size
    while width <= max_size:
        height = min(max_size, int((area // width) // steps) * steps)
        if height >= min_size:
            resos.add((width, height))
            resos.add((height, width))
        width += steps
    return sorted(resos)


def assign_buckets(widths: np.ndarray, heights: np.ndarray, resos: list[tuple[int, int]]) -> np.ndarray:
    """Index into `resos` of each image's bucket: its own size if that is a bucket, else the nearest
    aspect ratio (plain w/h difference; the first bucket on a tie)."""
    reso = np.array(resos, dtype=np.int64)
    ratios = reso[:, 0] / reso[:, 1]
    aspect = widths / heights
    nearest = np.empty(len(widths), np.int64)
    for start in range(0, len(widths), 1 << 16):  # bounded memory: chunk x buckets
        part = aspect[start:start + (1 << 16)]
        nearest[start:start + len(part)] = np.abs(ratios[None, :] - part[:, None]).argmin(axis=1)
    exact = {r: i for i, r in enumerate(resos)}
    keys = widths.astype(np.int64) * (1 << 32) + heights.astype(np.int64)
    exact_keys = np.array([w * (1 << 32) + h for w, h in resos], np.int64)
    hit = np.isin(keys, exact_keys)
    if hit.any():
        nearest[hit] = [exact[(int(w), int(h))] for w, h in zip(widths[hit], heights[hit])]
    return nearest


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
    save_every: int

    @property
    def effective_batch(self) -> int:
        return self.batch_size * self.accumulation * self.processes

    @property
    def save_points(self) -> list[int]:
        every = range(self.save_every, self.optimizer_steps, self.save_every) if self.save_every else []
        return [*every, self.optimizer_steps]


def bucket_counts(widths: np.ndarray, heights: np.ndarray, ds: DatasetSection) -> list[tuple[tuple[int, int], int]]:
    resos = bucket_resolutions(ds.resolution, ds.min_bucket_reso, ds.max_bucket_reso, ds.bucket_reso_steps)
    counts = np.bincount(assign_buckets(widths, heights, resos), minlength=len(resos)) * ds.num_repeats
    return [(resos[i], int(c)) for i, c in enumerate(counts) if c]


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
        warmup_scheduler_steps=warmup_scheduler_steps(p), save_every=p.saving.every_n_steps)


def _duration(seconds: float) -> str:
    days, rest = divmod(int(round(seconds)), 86400)
    hours, rest = divmod(rest, 3600)
    return (f"{days} d " if days else "") + f"{hours} h {rest // 60:02d} min"


def plan_lines(plan: StepPlan, seconds_per_step: float | None, lokr_params: int, lokr_bytes: int,
               top_buckets: int = 12) -> list[str]:
    lines = [f"images            {plan.images:,}",
             f"buckets           {len(plan.buckets)} used; the largest:"]
    for reso, n in sorted(plan.buckets, key=lambda b: (-b[1], b[0]))[:top_buckets]:
        lines.append(f"  {reso[0]:>4} x {reso[1]:<4} {n:>11,} images  {math.ceil(n / plan.batch_size):>10,} batches")
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
        f"saves             at steps {', '.join(f'{s:,}' for s in plan.save_points)}",
        f"LoKr              {lokr_params:,} parameters, {lokr_bytes / 1e6:,.1f} MB file "
        "(before sd-scripts' metadata)",
    ]
    if seconds_per_step:
        lines.append(f"ETA               {_duration(plan.optimizer_steps * seconds_per_step)} at "
                     f"{seconds_per_step:g} s per optimizer step")
    else:
        lines.append("ETA               give --seconds-per-step S (measured seconds per optimizer step) for one")
    return lines
