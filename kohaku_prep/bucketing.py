"""sd-scripts' bucketing, simulated from image sizes: which bucket each image trains in.

Both halves read it: the dataset report charts the buckets, the plan counts their batches and steps.
Follows sd-scripts v0.10.1 (library/model_util.py make_bucket_resolutions, train_util.py
BucketManager.select_bucket, BaseDataset.make_buckets) for enable_bucket with upscaling allowed.
"""
from __future__ import annotations

import math

import numpy as np

from kohaku_prep.preset import DatasetSection


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
        nearest[hit] = [exact[(int(w), int(h))] for w, h in zip(widths[hit], heights[hit], strict=True)]
    return nearest


def bucket_index(widths: np.ndarray, heights: np.ndarray,
                 ds: DatasetSection) -> tuple[list[tuple[int, int]], np.ndarray]:
    """The bucket resolutions, and the index of each image's bucket among them."""
    resos = bucket_resolutions(ds.resolution, ds.min_bucket_reso, ds.max_bucket_reso, ds.bucket_reso_steps)
    return resos, assign_buckets(widths, heights, resos)


def bucket_totals(resos: list[tuple[int, int]], index: np.ndarray,
                  repeats: int) -> list[tuple[tuple[int, int], int]]:
    """(bucket resolution, images x repeats) of every used bucket."""
    counts = np.bincount(index, minlength=len(resos)) * repeats
    return [(resos[i], int(c)) for i, c in enumerate(counts) if c]


def bucket_counts(widths: np.ndarray, heights: np.ndarray, ds: DatasetSection) -> list[tuple[tuple[int, int], int]]:
    return bucket_totals(*bucket_index(widths, heights, ds), ds.num_repeats)


def bucket_rows(buckets: list[tuple[tuple[int, int], int]], batch_size: int) -> list[tuple[int, int, int, int]]:
    """(width, height, images, batches) of each used bucket, by aspect ratio, tallest first: the plan's
    histogram, its chart and the dataset report's all read these rows."""
    ordered = sorted(buckets, key=lambda b: (b[0][0] / b[0][1], b[0]))
    return [(w, h, n, math.ceil(n / batch_size)) for (w, h), n in ordered]


