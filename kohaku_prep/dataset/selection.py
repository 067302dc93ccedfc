"""Select posts: seeded id-range quotas without replacement, then filters, each stage counted.

Sampling ranks each post by a keyed hash of (seed, id) and keeps the lowest ranks of each pool.
That is a uniform sample without replacement that depends only on the seed and the set of ids:
not on file order, machine, or the NumPy version.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kohaku_prep.dataset.bad_metadata import BadRows, Skip
from kohaku_prep.preset import FiltersSection, SelectionSection
from kohaku_prep.seeded import rank_keys


@dataclass
class Stage:
    name: str
    kept: int
    dropped: int
    note: str = ""


@dataclass
class Selection:
    ids: np.ndarray  # int64, sorted
    stages: list[Stage]


def sample_pool(ids: np.ndarray, take: int, seed: int) -> np.ndarray:
    """The `take` ids of lowest rank (ties by id), sorted."""
    if take >= len(ids):
        return np.sort(ids)
    order = np.lexsort((ids, rank_keys(ids, seed)))
    return np.sort(ids[order[:take]])


def pool_name(start: int, end: int | None) -> str:
    return f"pool [{start:,}, {'∞' if end is None else f'{end:,}'})"


def _skip_stages(kept: int, left_out: Sequence[Skip]) -> list[Stage]:
    stages = []
    for skip in left_out:
        kept -= skip.count
        stages.append(Stage(skip.problem, kept, skip.count, skip.first))
    return stages


def select(posts: pa.Table, selection: SelectionSection, filters: FiltersSection, bad_posts: BadRows) -> Selection:
    """`posts` as read_posts returns them; `bad_posts`: what it reported, each kind of post it left out a
    stage before the pools (so a quota is drawn from good posts only)."""
    ids = posts["id"].to_numpy()
    left_out = bad_posts.left_out
    read = len(ids) + sum(s.count for s in left_out)
    stages = [Stage("metadata", read, 0), *_skip_stages(read, left_out)]
    chosen = []
    in_some_pool = np.zeros(len(ids), bool)
    for pool in sorted(selection.pools, key=lambda p: p.start):
        inside = ids >= pool.start
        if pool.end is not None:
            inside &= ids < pool.end
        in_some_pool |= inside
        pool_ids = ids[inside]
        if pool.take == "all":
            picked, note = pool_ids, f"all {len(pool_ids):,}"
        elif pool.take > len(pool_ids):
            picked = pool_ids
            note = f"quota {pool.take:,} exceeds the pool's {len(pool_ids):,}: took the whole pool"
        else:
            picked = sample_pool(pool_ids, pool.take, selection.seed)
            note = f"sampled {pool.take:,} of {len(pool_ids):,}, seed {selection.seed}"
        chosen.append(picked)
        stages.append(Stage(pool_name(pool.start, pool.end), len(picked), len(pool_ids) - len(picked), note))
    outside = int((~in_some_pool).sum())
    if outside:
        stages.append(Stage("outside every pool", 0, outside))
    keep = np.isin(ids, np.concatenate(chosen)) if chosen else np.zeros(len(ids), bool)

    def apply(name: str, drop: np.ndarray, note: str = "") -> None:
        nonlocal keep
        dropped = int((keep & drop).sum())
        keep &= ~drop
        stages.append(Stage(name, int(keep.sum()), dropped, note))

    if filters.drop_deleted:
        apply("deleted", posts["is_deleted"].to_numpy(zero_copy_only=False))
    if filters.drop_hidden:
        apply("hidden (Gold-only or banned)", posts["is_hidden"].to_numpy(zero_copy_only=False))
    allowed = pa.array([e.lower().lstrip(".") for e in filters.image_extensions])
    still = pc.is_in(posts["file_ext"], value_set=allowed).to_numpy(zero_copy_only=False)
    apply("not a still image", ~still, "kept: " + " ".join(filters.image_extensions))
    return Selection(ids[keep], stages)


def require_images(sel: Selection, present_ids: np.ndarray) -> Selection:
    """Drop selected posts whose image the image source does not hold."""
    present = np.isin(sel.ids, present_ids)
    stage = Stage("image not in the archive", int(present.sum()), int((~present).sum()))
    return Selection(sel.ids[present], [*sel.stages, stage])


def leave_out(sel: Selection, kept_ids: np.ndarray, bad_tags: BadRows) -> Selection:
    """The selection less the posts found bad after it (their tags), a stage for each kind of problem."""
    return Selection(kept_ids, [*sel.stages, *_skip_stages(len(sel.ids), bad_tags.left_out)])


def stage_lines(stages: list[Stage]) -> list[str]:
    width = max(len(s.name) for s in stages)
    lines = [f"{'stage':<{width}}  {'kept':>11}  {'dropped':>11}  note"]
    for s in stages:
        lines.append(f"{s.name:<{width}}  {s.kept:>11,}  {s.dropped:>11,}  {s.note}".rstrip())
    return lines
