"""A run in parts: the dataset cut into disjoint random parts, one `accelerate launch` each.

sd-scripts v0.10.1 cannot resume one launch correctly with gradient accumulation above 1 (its issue
#2407), but it continues exactly from a saved state into a new launch over other data (weights,
optimizer and LR schedule; see resume-facts). So a run is a chain of launches, each training one part
for one epoch of its own, resuming the previous part's end state: a crash loses at most one part.

Parts are cut so that together they train exactly what one launch would, batch for batch in count:
each bucket's images are shuffled by a seeded hash and cut into whole per-GPU batches (the bucket's
last, partly filled batch included), the batches of all buckets are shuffled together, and the parts
take consecutive runs of them, each part a whole number of optimizer steps (processes x accumulation
batches) but the last of an epoch. sd-scripts re-buckets a part's images into exactly those batches
(an image's bucket depends only on its own size), so the steps of all parts add up to the single
launch's: epochs x ceil(batches / processes / accumulation).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from kohaku_prep.seeded import derive_seed, rank_keys

_IMAGE_ORDER, _BATCH_ORDER = 1, 2  # labels of the two shuffles of an epoch


@dataclass(frozen=True)
class Part:
    index: int  # 0-based; shown as 1-based
    epoch: int  # 0-based epoch of the run this part belongs to
    rows: np.ndarray  # manifest rows of its images, in batch order (a row appears once per repeat)
    repeats: np.ndarray  # which repeat of its row each entry is (0 unless num_repeats > 1)
    batches: int
    start_step: int  # optimizer steps done before this part
    steps: int
    seed: int  # the launch's --seed, the preset's + index: no rank replays another launch's noise

    @property
    def end_step(self) -> int:
        return self.start_step + self.steps


@dataclass(frozen=True)
class PartsPlan:
    parts: list[Part]
    single_launch_steps: int  # what one launch over the whole dataset would train
    batches_per_epoch: int

    @property
    def steps(self) -> int:
        return sum(p.steps for p in self.parts)


def _epoch_batches(ids: np.ndarray, buckets: np.ndarray, batch_size: int, repeats: int,
                   seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One epoch's batches in random order: (rows, repeat numbers, batch bounds), batch b being
    entries bounds[b]:bounds[b + 1]."""
    rows = np.repeat(np.arange(len(ids), dtype=np.int64), repeats)
    reps = np.tile(np.arange(repeats, dtype=np.int64), len(ids))
    keys = rank_keys(ids[rows] * repeats + reps, derive_seed(seed, _IMAGE_ORDER))
    order = np.lexsort((keys, buckets[rows]))  # by bucket, shuffled within it
    rows, reps, bucket_of = rows[order], reps[order], buckets[rows[order]]
    first = np.flatnonzero(np.r_[True, bucket_of[1:] != bucket_of[:-1]]) if len(rows) else np.zeros(0, np.int64)
    last = np.r_[first[1:], len(rows)]
    per_bucket = -(-(last - first) // batch_size)
    batch_bucket_first = np.repeat(first, per_bucket)
    place = np.arange(per_bucket.sum()) - np.repeat(np.cumsum(per_bucket) - per_bucket, per_bucket)
    starts = batch_bucket_first + place * batch_size
    lengths = np.minimum(starts + batch_size, np.repeat(last, per_bucket)) - starts
    # a batch is named by its bucket and its place in it, so its rank does not depend on other buckets
    names = bucket_of[starts].astype(np.int64) << np.int64(40) | place
    batch_order = np.argsort(rank_keys(names, derive_seed(seed, _BATCH_ORDER)), kind="stable")
    lengths = lengths[batch_order]
    bounds = np.r_[0, np.cumsum(lengths)]
    entries = np.repeat(starts[batch_order] - bounds[:-1], lengths) + np.arange(bounds[-1])
    return rows[entries], reps[entries], bounds


def _split_steps(steps: int, parts: int) -> list[int]:
    """`steps` into `parts` near-equal whole numbers, the larger first."""
    q, r = divmod(steps, parts)
    return [q + 1] * r + [q] * (parts - r)


def plan_parts(ids: np.ndarray, buckets: np.ndarray, *, batch_size: int, repeats: int, processes: int,
               accumulation: int, epochs: int, max_steps: int, steps_per_part: int, seed: int) -> PartsPlan:
    """The parts of a run over images `ids` (manifest order) in sd-scripts buckets `buckets`.

    steps_per_part: the most optimizer steps of a part (0: one part per epoch); each epoch is cut into
    ceil(its steps / steps_per_part) parts of near-equal steps. max_steps (0: none) ends the run early,
    as --max_train_steps would: the last part takes only the batches of the steps left.
    """
    per_step = processes * accumulation
    batches_per_epoch = sum(math.ceil(n * repeats / batch_size) for n in np.bincount(buckets) if n)
    epoch_steps = math.ceil(batches_per_epoch / per_step)
    single = min(max_steps, epochs * epoch_steps) if max_steps else epochs * epoch_steps
    parts: list[Part] = []
    done = 0
    for epoch in range(epochs):
        if done >= single:
            break
        rows, reps, bounds = _epoch_batches(ids, buckets, batch_size, repeats, derive_seed(seed, epoch))
        count = math.ceil(epoch_steps / steps_per_part) if steps_per_part else 1
        taken = 0
        for steps in _split_steps(epoch_steps, count):
            steps = min(steps, single - done)
            if steps <= 0:
                break
            end = min(taken + steps * per_step, len(bounds) - 1)
            span = slice(bounds[taken], bounds[end])
            parts.append(Part(index=len(parts), epoch=epoch, rows=rows[span], repeats=reps[span],
                              batches=end - taken, start_step=done, steps=math.ceil((end - taken) / per_step),
                              seed=seed + len(parts)))
            taken, done = end, parts[-1].end_step
    return PartsPlan(parts, single, batches_per_epoch)


def cadence_ends(parts: list[Part], every: int) -> list[int]:
    """Cumulative steps that end the first part at or past each multiple of `every`: where the LoKr is
    kept and samples are drawn."""
    return [part.end_step for part in parts if every and part.end_step // every > part.start_step // every]
