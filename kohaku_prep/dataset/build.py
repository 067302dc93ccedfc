"""The dataset build: metadata -> selection -> captions -> images -> dataset files.

`build_dataset` is the whole of it: `check_output` looks at the output folder once, before anything is
read; `plan_dataset` only reads; `write_dataset` writes everything into `<out>.partial/` and renames it to
`<out>` when complete, so a dataset folder is never half-built. An interrupted build resumes from
`<out>.partial/` (same preset and inputs), keeping the images it already wrote.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from kohaku_prep import __version__, dataset_format, progress
from kohaku_prep.dataset import bad_metadata, captions, images, metadata, report, selection, years
from kohaku_prep.dataset.summary import (
    BadMetadataRecord,
    BuildSummary,
    CaptionRecord,
    ImagesRecord,
    InputFile,
    PoolRecord,
    PresetRecord,
)
from kohaku_prep.errors import PrepError
from kohaku_prep.fsutil import FolderLock, fingerprint, new_temp_path, write_atomic, write_new
from kohaku_prep.preset import Preset, Resolved, to_dict
from kohaku_prep.versions import versions

Log = Callable[[str], None]
# the libraries whose versions a build records, beside kohaku-prep's and Python's
VERSIONED = ("numpy", "pyarrow", "pillow", "matplotlib")


def _value_counts(values: pa.Array) -> Counter:
    """Counts of each value, nulls under None."""
    return Counter({row["values"]: row["counts"] for row in pc.value_counts(values).to_pylist()})


@dataclass
class Plan:
    sel: selection.Selection
    posts: pa.Table  # the selected posts' rows, in id order
    caps: captions.Captions
    index: images.ImageIndex
    inputs: list[InputFile]


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
    if not Path(p.input.images).is_dir():  # before the metadata is read: a mistake is told at once
        raise PrepError(f"{p.input.images}: image source not found (a folder of tar shards or of <id>.<ext> files)")
    meta = metadata.locate(Path(p.input.metadata), p.input.shape, to_dict(p.input.columns))
    renamed = ", ".join(f"{name} from '{stored}'" for name, stored in sorted(meta.columns.items()))
    log(f"metadata: {meta.shape} ({meta.layout}), {len(meta.files)} file(s) under {p.input.metadata}"
        + (f"; columns {renamed}" if renamed else ""))

    def require_posts(sel: selection.Selection) -> None:
        if len(sel.ids) == 0:
            table = "\n".join(selection.stage_lines(sel.stages))
            raise PrepError(f"the selection is empty; nothing to build:\n{table}")

    # bad posts (an error or left out, as input.bad_metadata says): those of the post table are stages before
    # the pools, those of the selected posts' tags stages after the selection
    bad_posts, bad_tags = bad_metadata.BadRows(p.input.bad_metadata), bad_metadata.BadRows(p.input.bad_metadata)
    # a created_at without a year is bad metadata unless HakuBooru's quirks define its caption ("early")
    started = time.monotonic()
    log(f"reading the posts of {len(meta.files)} file(s)...")
    posts = metadata.read_posts(meta, p.input.rating_scheme, bad_posts, dated=not p.caption.year_quirks)
    log(f"posts: {posts.num_rows:,} read in {time.monotonic() - started:.1f} s; selecting...")
    sel = selection.select(posts, p.selection, p.filters, bad_posts)
    log(f"selection: {len(sel.ids):,} posts; indexing the images...")
    with progress.bar("image sources", None, "source") as shown:
        index = images.index_images(Path(p.input.images), shown.update)
    for problem in index.unreadable:
        log(f"warning: unreadable shard skipped: {problem}")
    log(f"images: {len(index.ids):,} in {p.input.images}"
        + (f" ({index.duplicates:,} duplicate member(s): the later source wins)" if index.duplicates else ""))
    sel = selection.require_images(sel, index.ids)
    require_posts(sel)
    chosen = posts.take(pa.array(np.searchsorted(posts["id"].to_numpy(), sel.ids)))
    with progress.bar("tags and captions", len(sel.ids)) as shown:
        caps = captions.caption_posts(_counted(metadata.iter_tags(meta, sel.ids), shown), sel.ids,
                                      chosen["created_at"], chosen["rating"].to_numpy(),
                                      chosen["fav_count"].to_numpy(), _quality_rule(p, posts), bad_tags)
    if len(caps.ids) < len(sel.ids):
        chosen = chosen.take(pa.array(np.searchsorted(sel.ids, caps.ids)))
        sel = selection.leave_out(sel, caps.ids, bad_tags)
        require_posts(sel)
    undated = int((years.created_years(chosen["created_at"]) < 0).sum()) if p.caption.year_quirks else 0
    if undated:
        sel.stages.append(selection.Stage("created_at without a year", len(sel.ids), 0, f"{undated:,} kept with "
                                          "year tag 'early' (caption.year_quirks, HakuBooru's rule)"))
    inputs = [InputFile(str(f), f.stat().st_size, fingerprint(f)) for f in meta.files]
    return Plan(sel, chosen, caps, index, inputs)


def _counted(chunks, shown):
    """The chunks of (ids, tag rows), counting their posts on the bar as they are consumed."""
    for chunk in chunks:
        yield chunk
        shown.update(len(chunk[0]))


def _build_key(resolved: Resolved, plan: Plan) -> str:
    recipe = to_dict(resolved.preset)
    recipe["output"].pop("workers")  # does not change what is built
    text = json.dumps({"preset": recipe, "inputs": [asdict(f) for f in plan.inputs]}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


DESCRIPTION_FILES = ("manifest.parquet", "summary.json", "dataset.toml", "preset.toml", "report.md", "report.html")
BUILD_FILES = (".lock", ".build-key")  # in a staging folder only
_NUMBERED = re.compile(r"^\d+$")
_POST_FILE = re.compile(r"^\d+\.[A-Za-z0-9]+$")  # <id>.<ext> and <id>.txt
_REPORT_CHART = re.compile(r"^report-[a-z-]+\.png$")  # the report's charts (kohaku_prep.dataset.report)


_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]+\.tmp$")  # fsutil.new_temp_path's: .<name>.<random>.tmp


def _is_build_temp(name: str) -> bool:
    """A temporary name a build's top-level file had while it was written: one a crash left behind."""
    m = _TEMP_NAME.match(name)
    return m is not None and (m["name"] in DESCRIPTION_FILES + BUILD_FILES or bool(_REPORT_CHART.match(m["name"])))


def foreign_entry(folder: Path) -> Path | None:
    """The first entry of `folder` that a build does not write (a link counts as foreign), else None."""
    names = DESCRIPTION_FILES + BUILD_FILES
    with os.scandir(folder) as entries:
        for entry in entries:
            path = Path(entry.path)
            if entry.is_symlink():
                return path
            if entry.name == dataset_format.IMAGES_DIR and entry.is_dir():
                with os.scandir(path) as subsets:
                    for subset in subsets:
                        if subset.is_symlink() or not subset.is_dir() or not _NUMBERED.match(subset.name):
                            return Path(subset.path)
                        with os.scandir(subset.path) as files:
                            for f in files:
                                if f.is_symlink() or not f.is_file() or not _POST_FILE.match(f.name):
                                    return Path(f.path)
            elif not (entry.is_file() and (entry.name in names or _REPORT_CHART.match(entry.name)
                                           or _is_build_temp(entry.name))):
                return path
    return None


def not_ours(folder: Path, required: tuple[str, ...]) -> str | None:
    """Why `folder` is not a build of this tool that may be replaced (None: it is one, or it is empty).
    A build is told by the files it writes, and by holding nothing else."""
    if not any(folder.iterdir()):
        return None
    missing = [name for name in required if not (folder / name).is_file()]
    if missing:
        return f"it is not a folder kohaku-prep built (no {' or '.join(missing)})"
    foreign = foreign_entry(folder)
    if foreign is not None:
        return f"it holds {foreign}, which kohaku-prep does not write"
    return None


# A folder as it was checked: (path, device, inode, mtime, ctime) of it, its images/ folder and their subset
# folders, taken before their files are looked at. Adding, removing or renaming an entry in a folder changes
# that folder's times, so a stat per folder tells whether anything was put in the tree since, without walking
# its (millions of) files again.
FolderStats = tuple[tuple[str, int, int, int, int], ...]


def _folder_stats(folder: Path) -> FolderStats:
    images = folder / dataset_format.IMAGES_DIR
    folders = [folder]
    if images.is_dir() and not images.is_symlink():
        with os.scandir(images) as subsets:
            folders += [images, *sorted(Path(e.path) for e in subsets if e.is_dir(follow_symlinks=False))]
    stats = []
    for path in folders:
        st = os.lstat(path)
        stats.append((str(path), st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns))
    return tuple(stats)


def _checked_folder(folder: Path, required: tuple[str, ...], what: str) -> FolderStats | None:
    """`folder` as checked (None: absent); an error if it is there and not a build of this tool."""
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise PrepError(f"{folder}: is {'a link' if folder.is_symlink() else 'a file'}, not a folder; {what}")
    if not folder.is_dir():
        return None
    stats = _folder_stats(folder)  # before looking inside: whatever is added after it shows in confirm
    problem = not_ours(folder, required)
    if problem:
        raise PrepError(f"{folder}: {problem}; kohaku-prep replaces only what it built, with or without "
                        f"--force: {what}")
    return stats


def output_path(text: str) -> Path:
    """The dataset folder as an absolute path, `..` and `.` taken lexically (a link is not followed: a link
    in the way is refused, never written through)."""
    return Path(os.path.abspath(text))


@dataclass(frozen=True)
class CheckedOutput:
    """A dataset folder that check_output found able to take a new dataset, and what it found there: for
    the folder and its `.replaced` and `.partial` siblings, their folders' stats (None: absent)."""

    path: Path  # absolute (output_path)
    force: bool
    found: dict[Path, FolderStats | None]

    @property
    def staging(self) -> Path:
        return self.path.with_name(self.path.name + ".partial")

    @property
    def replaced(self) -> Path:
        return self.path.with_name(self.path.name + ".replaced")

    def confirm(self, folder: Path) -> None:
        """Refuse to go on when `folder`, about to be discarded or replaced, is no longer as it was checked:
        created since, or anything added, removed or renamed in it."""
        was = self.found[folder]
        if was is None:
            changed = os.path.lexists(folder)
        else:
            try:
                changed = folder.is_symlink() or _folder_stats(folder) != was
            except OSError:  # it, or a folder in it, removed
                changed = True
        if changed:
            raise PrepError(f"{folder}: {'appeared' if was is None else 'changed'} while the dataset was being "
                            "built (it was checked before the metadata was read); nothing in it was touched: run "
                            "the same command again")


def check_output(out: Path, force: bool) -> CheckedOutput:
    """Fail before any work if the output folder cannot take a new dataset. Only a dataset this tool
    built is ever replaced, and only with --force; anything else in the way is refused either way."""
    choose = "choose another --out"
    out = output_path(str(out))
    found = {folder: _checked_folder(folder, required, choose) for folder, required in (
        (out, ("manifest.parquet", "summary.json")),
        (out.with_name(out.name + ".replaced"), ("manifest.parquet", "summary.json")),
        (out.with_name(out.name + ".partial"), (".build-key",)))}
    if out.exists() and any(out.iterdir()) and not force:
        raise PrepError(f"{out}: already holds a dataset (its preset.toml: another build, perhaps of another "
                        "preset or seed); pass --force to replace it")
    parent = out.resolve().parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise PrepError(f"{parent}: not a writable folder")
    return CheckedOutput(out, force, found)


def _prepare_staging(checked: CheckedOutput, key: str, log: Log) -> bool:
    """Create the staging folder, or find the interrupted build of the same key there: True if resuming.
    Only a staging folder of this tool is ever discarded (check_output refused any other)."""
    staging, force = checked.staging, checked.force
    key_file = staging / ".build-key"
    checked.confirm(staging)
    if staging.exists():
        if key_file.exists() and key_file.read_text() == key:
            log(f"resuming the interrupted build in {staging}")
            # a write cut off under its temporary name: this build's own (check_output found nothing else
            # here), and never to be published with the dataset
            for entry in staging.iterdir():
                if _is_build_temp(entry.name) and entry.is_file() and not entry.is_symlink():
                    entry.unlink()
            return True
        if any(staging.iterdir()) and not force:
            raise PrepError(f"{staging}: an unfinished build of another preset or input; "
                            "pass --force to discard it")
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    # straight into the new folder, no temporary name: a staging folder is told by this file, and one cut
    # off mid-write holds another key (so it is discarded with --force, as this tool's own)
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, key.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return False


@dataclass
class Extracted:
    """Outcome per selected post, in selection order."""

    width: np.ndarray  # int32, 0 where failed
    height: np.ndarray
    failure: list[str]  # "" where the image was written


def _kept_from_last_run(path: str, size: int) -> tuple[int, int] | None:
    """The image size of a file an interrupted run wrote whole (a cut-off write is shorter), else None."""
    try:
        if os.stat(path).st_size != size:
            return None
        with open(path, "rb") as fh:
            return images.image_size(fh.read())
    except (OSError, ValueError):
        return None


def _copy_images(plan: Plan, staging: Path, per: int, rows: np.ndarray, resuming: bool, out: Extracted) -> None:
    """Copy the images of selection rows `rows` (one shard or folder, in file order) into `staging`.
    Files are written in place: the staging folder as a whole is what becomes the dataset, and a
    resumed build rewrites any file whose size is short."""
    index, ids = plan.index, plan.sel.ids
    index_rows = np.searchsorted(index.ids, ids[rows])
    dests = [f"{staging}/{path}" for path in
             dataset_format.image_paths(ids[rows], index.ext[index_rows], index.extensions, per).to_pylist()]
    # row, index row, file
    work: list[tuple[int, int, str]] = list(zip(rows.tolist(), index_rows.tolist(), dests, strict=True))
    if resuming:
        todo = []
        for row, index_row, dest in work:
            kept = _kept_from_last_run(dest, int(index.size[index_row]))
            if kept:
                out.width[row], out.height[row] = kept
            else:
                todo.append((row, index_row, dest))
        work = todo
    for (row, _, dest), data in zip(work, index.read_many([index_row for _, index_row, _ in work]), strict=True):
        if isinstance(data, OSError):
            out.failure[row] = f"unreadable ({data.strerror or data})"
            continue
        try:
            out.width[row], out.height[row] = images.image_size(data)
        except ValueError:
            out.failure[row] = "not a decodable image"
            continue
        write_new(dest, data)


def _jobs(keys: np.ndarray) -> list[np.ndarray]:
    """Positions grouped by key (keys sorted)."""
    return np.split(np.arange(len(keys)), np.flatnonzero(np.diff(keys)) + 1) if len(keys) else []


def _run_jobs(what: str, unit: str, fn, jobs: list, workers: int) -> None:
    """fn(job) for each job on `workers` threads, with a progress bar; the first error (or Ctrl-C) cancels
    the jobs not yet started."""
    with ThreadPoolExecutor(max_workers=workers) as pool, progress.bar(what, sum(map(len, jobs)), unit) as shown:
        futures = {pool.submit(fn, job): len(job) for job in jobs}
        try:
            for future in as_completed(futures):
                future.result()
                shown.update(futures[future])
        except BaseException:
            for other in futures:
                other.cancel()
            raise


def copy_images(plan: Plan, staging: Path, p: Preset, resuming: bool) -> Extracted:
    """Every selected post's image into its subset folder of `staging`; one job per tar shard (read front
    to back) or per folder of plain files."""
    index, ids, per = plan.index, plan.sel.ids, p.output.ids_per_folder
    index_rows = np.searchsorted(index.ids, ids)
    source = index.source[index_rows]
    order = np.lexsort((index.offset[index_rows], source))
    for folder in np.unique(ids // per).tolist():
        (staging / dataset_format.subset_folder(folder)).mkdir(parents=True, exist_ok=True)
    out = Extracted(np.zeros(len(ids), np.int32), np.zeros(len(ids), np.int32), [""] * len(ids))
    jobs = [order[job] for job in _jobs(source[order])]
    _run_jobs("images", "image", lambda rows: _copy_images(plan, staging, per, rows, resuming, out), jobs,
              p.output.workers)
    return out


def write_captions(staging: Path, ids: np.ndarray, texts: pa.ChunkedArray, p: Preset, resuming: bool) -> None:
    """`<id>.txt` beside each image, one job per subset folder. The UTF-8 bytes are written straight from
    the Arrow buffer; a resumed build rewrites only files of the wrong size."""
    per = p.output.ids_per_folder
    chunks = [c for c in texts.chunks if len(c)]  # read in place: no copy of gigabytes of captions
    starts = np.cumsum([0] + [len(c) for c in chunks])
    buffers = [(np.frombuffer(c.buffers()[1], np.int64, len(c) + 1, c.offset * 8),
                memoryview(c.buffers()[2] or b"")) for c in chunks]

    def write_folder(positions: np.ndarray) -> None:
        folder = staging / dataset_format.subset_folder(int(ids[positions[0]]) // per)
        dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            chunk_of = (np.searchsorted(starts, positions, "right") - 1).tolist()
            for i, c in zip(positions.tolist(), chunk_of, strict=True):
                offsets, body = buffers[c]
                start, end = offsets[i - starts[c]], offsets[i - starts[c] + 1]
                name = f"{ids[i]}{dataset_format.CAPTION_EXTENSION}"
                if resuming and _size_at(name, dir_fd) == end - start:
                    continue
                try:
                    write_new(name, body[start:end], dir_fd=dir_fd)
                except OSError as exc:
                    raise OSError(exc.errno, exc.strerror, str(folder / name)) from None
        finally:
            os.close(dir_fd)
    _run_jobs("caption files", "file", write_folder, _jobs(ids // per), p.output.workers)


def _size_at(name: str, dir_fd: int) -> int:
    try:
        return os.stat(name, dir_fd=dir_fd).st_size
    except FileNotFoundError:
        return -1


MANIFEST_ROW_GROUP = 1 << 17


def _write_manifest(manifest: pa.Table, path: Path) -> None:
    """Row groups of a fixed size, each from one contiguous slice: the file's bytes depend on the rows
    only, not on how the captions happened to be chunked (flat and normalized input give the same file),
    and no more than a slice of the captions is copied."""
    tmp = new_temp_path(path)
    with pq.ParquetWriter(tmp, manifest.schema) as writer:
        for start in range(0, max(manifest.num_rows, 1), MANIFEST_ROW_GROUP):
            writer.write_table(manifest.slice(start, MANIFEST_ROW_GROUP).combine_chunks())
    os.replace(tmp, path)


@contextmanager
def _write_errors_stop_resumably(staging: Path):
    """A write error (the disk full, say) stops the build with one line; the staging folder stays for the
    rerun, which resumes. Read errors never get here: a source that cannot be read is counted."""
    try:
        yield
    except OSError as exc:
        raise PrepError(f"{exc.filename or staging}: cannot write ({exc.strerror or exc}); fix this and run the "
                        "same command again to resume") from None


def build_dataset(resolved: Resolved, force: bool, log: Log) -> BuildSummary:
    """The whole build: the output folder checked first (a mistake in it is told before minutes of reading
    metadata), then the plan, then the dataset written."""
    checked = check_output(Path(resolved.preset.output.dir), force)
    return write_dataset(plan_dataset(resolved.preset, log), resolved, checked, log)


def write_dataset(plan: Plan, resolved: Resolved, checked: CheckedOutput, log: Log) -> BuildSummary:
    p = resolved.preset
    out, staging = checked.path, checked.staging
    if out != output_path(p.output.dir):
        raise ValueError(f"{out} was checked, but output.dir is {p.output.dir}")
    resuming = _prepare_staging(checked, _build_key(resolved, plan), log)
    with FolderLock(staging), _write_errors_stop_resumably(staging):
        extracted = copy_images(plan, staging, p, resuming)
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
        texts = plan.caps.text if len(rows) == len(ok) else plan.caps.text.take(pa.array(rows))
        write_captions(staging, written, texts, p, resuming)
        index_rows = np.searchsorted(plan.index.ids, written)
        manifest = pa.table({
            "id": written,
            "image": dataset_format.image_paths(written, plan.index.ext[index_rows], plan.index.extensions,
                                               p.output.ids_per_folder),
            "width": extracted.width[rows],
            "height": extracted.height[rows],
            "caption": texts,
        }, schema=dataset_format.MANIFEST_SCHEMA)
        rows = pa.array(rows)
        _write_manifest(manifest, staging / "manifest.parquet")

        final = out.resolve()  # as the trainer will find it
        header = f"sd-scripts --dataset_config, written by kohaku-prep {__version__}"
        per = p.output.ids_per_folder
        image_dirs = [final / dataset_format.subset_folder(f) for f in np.unique(written // per).tolist()]
        write_atomic(staging / "dataset.toml", dataset_format.dataset_toml(p.dataset, image_dirs, header))
        caption_record = CaptionRecord.from_counts(
            _value_counts(plan.posts["rating"].take(rows)),
            _value_counts(plan.caps.quality.take(rows)),
            _value_counts(plan.caps.year.take(rows)),
            captions.top_tags(plan.caps.tag_counts, report.TOP_TAGS),
            captions.top_tags_by_category(plan.caps.tag_counts, report.TOP_TAGS_PER_CATEGORY))
        summary = _summary(resolved, plan, stages, failures, len(image_dirs), caption_record)
        write_atomic(staging / "summary.json", summary.to_json())
        write_atomic(staging / "preset.toml", resolved.to_toml())
        report.write_report(staging, summary, written, manifest["width"].to_numpy(), manifest["height"].to_numpy())
    os.sync()  # every file on disk before the folder is published under its final name
    # check_output looked at every file of these before the plan; what is left to confirm is that nothing
    # was put in them since (a stat per folder), while the build can still resume
    checked.confirm(out)
    checked.confirm(checked.replaced)
    (staging / ".lock").unlink()
    (staging / ".build-key").unlink()
    if out.exists():
        old = checked.replaced  # a dataset of this tool, if any
        if old.exists():
            shutil.rmtree(old)
        out.rename(old)
        staging.rename(out)
        shutil.rmtree(old)
    else:
        staging.rename(out)
    return summary


def _summary(resolved: Resolved, plan: Plan, stages: list[selection.Stage], failures: Counter, n_folders: int,
             caption_record: CaptionRecord) -> BuildSummary:
    p = resolved.preset
    return BuildSummary(
        preset=PresetRecord(resolved.layers, resolved.overrides),
        seed=p.selection.seed,
        stages=stages,
        bad_metadata=BadMetadataRecord.of(p.input.bad_metadata, stages),
        images=ImagesRecord(stages[-1].kept, dict(failures), n_folders, plan.index.duplicates,
                            plan.index.unreadable),
        inputs=plan.inputs,
        versions=versions(VERSIONED),
        captions=caption_record,
        pools=[PoolRecord(selection.pool_name(pool.start, pool.end), pool.start, pool.end)
               for pool in sorted(p.selection.pools, key=lambda pool: pool.start)],
        dataset=p.dataset,
    )
