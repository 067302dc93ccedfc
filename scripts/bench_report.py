"""Time `kohaku-prep report` on a generated manifest of danbooru2023 scale (default 5M images).

    .venv/bin/python scripts/bench_report.py DATASET [--images 5000000]

DATASET: a built dataset (build/sample-dataset after `make dataset`) whose summary.json is reused; the
manifest is generated into a temporary folder beside a copy of it, image sizes spread as danbooru's are.
"""
from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from kohaku_prep import dataset_format
from kohaku_prep.dataset import report
from kohaku_prep.dataset.summary import BuildSummary


def generate(folder: Path, summary: BuildSummary, n: int, seed: int = 5) -> None:
    rng = np.random.default_rng(seed)
    ids = np.sort(rng.choice(8_000_000, n, replace=False)).astype(np.int64)
    aspect = np.exp(rng.normal(0, 0.45, n)).clip(0.05, 20)
    pixels = rng.lognormal(np.log(2e6), 0.8, n)
    widths = np.maximum(np.sqrt(pixels * aspect), 1).astype(np.int32)
    heights = np.maximum(np.sqrt(pixels / aspect), 1).astype(np.int32)
    table = pa.table({"id": ids, "image": pa.array([""] * n), "width": widths, "height": heights,
                      "caption": pa.array([""] * n, pa.large_string())}, schema=dataset_format.MANIFEST_SCHEMA)
    pq.write_table(table, folder / "manifest.parquet")
    (folder / "summary.json").write_text(replace(summary, images=replace(summary.images, written=n)).to_json())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--images", type=int, default=5_000_000)
    args = parser.parse_args()
    summary = BuildSummary.from_json((args.dataset / "summary.json").read_text())
    folder = Path(tempfile.mkdtemp(prefix="bench-report-", dir=args.dataset.parent))
    try:
        generate(folder, summary, args.images)
        start = time.perf_counter()
        report.redraw(folder)
        seconds = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
        sizes = pq.read_table(folder / "manifest.parquet", columns=["id", "width", "height"])
        start = time.perf_counter()
        report.report_tables(BuildSummary.from_json((folder / "summary.json").read_text()),
                             *(sizes[c].to_numpy() for c in ("id", "width", "height")))
        tables = time.perf_counter() - start
        print(f"kohaku-prep report, {args.images:,} images: {seconds:.1f} s in all, of which the tables "
              f"(bucket simulation, histograms) {tables:.1f} s; peak RSS {peak:.2f} GB (generation included)")
    finally:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
