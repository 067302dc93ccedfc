"""The dataset build: metadata -> selection -> captions -> images -> dataset files.

`plan_dataset` only reads; `write_dataset` writes everything into `<out>.partial/` and renames it to
`<out>` when complete, so a dataset folder is never half-built. An interrupted build resumes from
`<out>.partial/` (same preset and inputs), keeping the images it already wrote.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from kohaku_prep import __version__, captions, dataset_files, images, metadata, selection
from kohaku_prep.errors import PrepError
from kohaku_prep.fsutil import FolderLock, fingerprint, write_atomic
from kohaku_prep.preset import Preset, Resolved, to_dict

Log = Callable[[str], None]


@dataclass
class Plan:
    sel: selection.Selection
    posts: pa.Table  # the selected posts' rows, in id order
    caps: captions.Captions
    index: images.ImageIndex
    inputs: list[dict]


def _quality_rule(p: Preset, posts: pa.Table) -> captions.CaptionRule:
    mode = p.caption.quality
    if mode == "epsilon":
        thresholds = captions.EPSILON_THRESHOLDS
    elif mode == "percentiles":  # measured on every post read, as Epsilon's table was on the whole database
        thresholds = captions.percentile_thresholds(posts["rating"].to_numpy(), posts["fav_count"].to_numpy())
    else:
        thresholds = None
    return captions.CaptionRule(thresholds, p.caption.quality_max_id, p.caption.year_quirks)


def plan_dataset(p: Preset, log: Log) -> Plan:
    if not p.input.metadata or not p.input.images:
        raise PrepError("set input.metadata and input.images (--metadata PATH --images PATH)")
    meta = metadata.locate(Path(p.input.metadata), p.input.shape)
    log(f"metadata: {meta.shape}, {len(meta.files)} file(s) under {p.input.metadata}")
    posts = metadata.read_posts(meta, p.input.rating_scheme)
    sel = selection.select(posts, p.selection, p.filters)
    index = images.index_images(Path(p.input.images))
    for problem in index.unreadable:
        log(f"warning: unreadable shard skipped: {problem}")
    log(f"images: {len(index.ids):,} in {p.input.images}"
        + (f" ({index.duplicates:,} duplicate member(s): the later source wins)" if index.duplicates else ""))
    sel = selection.require_images(sel, index.ids)
    if len(sel.ids) == 0:
        table = "\n".join(dataset_files.stage_lines(sel.stages))
        raise PrepError(f"the selection is empty; nothing to build:\n{table}")
    rows = np.searchsorted(posts["id"].to_numpy(), sel.ids)
    chosen = posts.take(pa.array(rows))
    caps = captions.caption_posts(metadata.iter_tags(meta, sel.ids), sel.ids, chosen["created_at"],
                                  chosen["rating"].to_numpy(), chosen["fav_count"].to_numpy(), _quality_rule(p, posts))
    inputs = [{"path": str(f), "bytes": f.stat().st_size, "fingerprint": fingerprint(f)} for f in meta.files]
    return Plan(sel, chosen, caps, index, inputs)


def _build_key(resolved: Resolved, plan: Plan) -> str:
    recipe = to_dict(resolved.preset)
    recipe["output"].pop("workers")  # does not change what is built
    text = json.dumps({"preset": recipe, "inputs": plan.inputs}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def check_output(out: Path, force: bool) -> None:
    """Fail before any work if the output folder cannot take a new dataset."""
    if out.exists() and any(out.iterdir()) and not force:
        raise PrepError(f"{out}: already holds files; pass --force to replace it")
    parent = out.resolve().parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise PrepError(f"{parent}: not a writable folder")


def _prepare_staging(staging: Path, key: str, force: bool, log: Log) -> None:
    key_file = staging / ".build-key"
    if staging.exists():
        if key_file.exists() and key_file.read_text() == key:
            log(f"resuming the interrupted build in {staging}")
            return
        if not force:
            raise PrepError(f"{staging}: an unfinished build of another preset or input; "
                            "pass --force to discard it")
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    write_atomic(key_file, key)


@dataclass
class Extracted:
    """Outcome per selected post, in selection order."""

    width: np.ndarray  # int32, 0 where failed
    height: np.ndarray
    failure: list[str]  # "" where the image and its caption were written


def _extract(plan: Plan, staging: Path, ids_per_folder: int, rows: np.ndarray, out: Extracted) -> None:
    """Copy the images of selection rows `rows` (one shard or folder, in file order), write captions."""
    index, ids = plan.index, plan.sel.ids
    index_rows = np.searchsorted(index.ids, ids[rows])
    texts = plan.caps.text.take(pa.array(rows)).to_pylist()
    for row, index_row, caption in zip(rows.tolist(), index_rows.tolist(), texts):
        dest = staging / dataset_files.folder_of(int(ids[row]), ids_per_folder) / index.file_name(index_row)
        try:
            if dest.exists() and dest.stat().st_size == index.size[index_row]:  # from an interrupted run
                size = images.image_size(dest.read_bytes())
            else:
                data = index.read(index_row)
                size = images.image_size(data)
                write_atomic(dest, data)
            write_atomic(dest.with_suffix(dataset_files.CAPTION_EXTENSION), caption)
            out.width[row], out.height[row] = size
        except ValueError:
            out.failure[row] = "not a decodable image"
        except OSError as exc:
            out.failure[row] = f"unreadable ({exc.strerror or exc})"


def _write_images(plan: Plan, staging: Path, p: Preset, log: Log) -> Extracted:
    index, ids = plan.index, plan.sel.ids
    index_rows = np.searchsorted(index.ids, ids)
    source = index.source[index_rows]
    # one job per tar shard (read front to back) or per folder of plain files
    order = np.lexsort((index.offset[index_rows], source))
    jobs = np.split(order, np.flatnonzero(np.diff(source[order])) + 1)
    for folder in np.unique(ids // p.output.ids_per_folder).tolist():
        (staging / dataset_files.folder_of(folder * p.output.ids_per_folder, p.output.ids_per_folder)).mkdir(
            parents=True, exist_ok=True)
    out = Extracted(np.zeros(len(ids), np.int32), np.zeros(len(ids), np.int32), [""] * len(ids))
    done, last = 0, time.monotonic()
    with ThreadPoolExecutor(max_workers=p.output.workers) as pool:
        futures = {pool.submit(_extract, plan, staging, p.output.ids_per_folder, rows, out): len(rows)
                   for rows in jobs}
        for n, future in enumerate(as_completed(futures), 1):
            future.result()
            done += futures[future]
            if time.monotonic() - last > 2 or n == len(futures):
                last = time.monotonic()
                log(f"images: {n:,}/{len(futures):,} shards or folders, {done:,}/{len(ids):,} posts")
    return out


def write_dataset(plan: Plan, resolved: Resolved, force: bool, log: Log) -> dict:
    p = resolved.preset
    out = Path(p.output.dir)
    check_output(out, force)
    staging = out.with_name(out.name + ".partial")
    _prepare_staging(staging, _build_key(resolved, plan), force, log)
    with FolderLock(staging):
        extracted = _write_images(plan, staging, p, log)
        ok = np.array([not f for f in extracted.failure])
        failures = Counter(f for f in extracted.failure if f)
        stages = list(plan.sel.stages)
        if failures:
            stages.append(selection.Stage("image unreadable", int(ok.sum()), sum(failures.values())))
        if not ok.any():
            shutil.rmtree(staging)
            raise PrepError("no selected image could be read; nothing was built")
        rows = np.flatnonzero(ok)
        written = plan.sel.ids[rows]
        index_rows = np.searchsorted(plan.index.ids, written).tolist()
        folders = [dataset_files.folder_of(i, p.output.ids_per_folder) for i in written.tolist()]
        manifest = pa.table({
            "id": written,
            "image": [f"{f}/{plan.index.file_name(r)}" for f, r in zip(folders, index_rows)],
            "width": extracted.width[rows],
            "height": extracted.height[rows],
            "caption": plan.caps.text.take(pa.array(rows)),
        }, schema=dataset_files.MANIFEST_SCHEMA)
        rows = pa.array(rows)
        tmp = staging / ".manifest.parquet.tmp"
        pq.write_table(manifest, tmp)
        os.replace(tmp, staging / "manifest.parquet")

        final = out.resolve()
        header = f"sd-scripts --dataset_config, written by kohaku-prep {__version__}"
        image_dirs = [final / f for f in sorted(set(folders))]
        write_atomic(staging / "dataset.toml", dataset_files.dataset_toml(p.dataset, image_dirs, header))
        summary = _summary(resolved, plan, stages, failures, len(image_dirs))
        write_atomic(staging / "summary.json", json.dumps(summary, indent=2, sort_keys=True) + "\n")
        write_atomic(staging / "preset.toml", resolved.to_toml())
        report = dataset_files.report_markdown(
            stages, dataset_files.value_counts(plan.posts["rating"].take(rows)),
            dataset_files.value_counts(plan.caps.year.take(rows)),
            dataset_files.value_counts(plan.caps.quality.take(rows)),
            captions.top_tags(plan.caps.tag_counts, 50), dict(failures))
        write_atomic(staging / "report.md", report)
    (staging / ".lock").unlink()
    (staging / ".build-key").unlink()
    if out.exists():
        old = out.with_name(out.name + ".replaced")
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
        staging.rename(out)
        shutil.rmtree(old)
    else:
        staging.rename(out)
    return summary


def versions() -> dict[str, str]:
    from importlib.metadata import version
    return {"kohaku-prep": __version__, "python": platform.python_version(),
            **{name: version(name) for name in ("numpy", "pyarrow", "pillow")}}


def _summary(resolved: Resolved, plan: Plan, stages: list, failures: Counter, n_folders: int) -> dict:
    return {
        "preset": {"layers": resolved.layers, "overrides": resolved.overrides},
        "seed": resolved.preset.selection.seed,
        "stages": [asdict(s) for s in stages],
        "images": {"written": stages[-1].kept, "failed": dict(failures), "subset_folders": n_folders,
                   "duplicate_members": plan.index.duplicates, "unreadable_shards": plan.index.unreadable},
        "inputs": plan.inputs,
        "versions": versions(),
    }
