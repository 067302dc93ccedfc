#!/usr/bin/env python3
"""Benchmark kohaku-prep's dataset stage at danbooru2023 scale (the Epsilon recipe), each figure against a floor.

Input is generated vectorized and cached in --cache (keyed by N and GEN_VERSION): N posts, ids over 1..max(7.35M, N),
Zipf-like tags from a ~300k-tag vocabulary, in both metadata shapes, and tiny danbooru-style image tar shards.
Every comparison runs its two sides in turn, A B A B ..., for --rounds rounds, in the same run and on the same
data, with the same file-system state for both (FILE_SYSTEM_STATE); each target is ours/floor, the ratio of the
medians, printed with each round's ratio, so that the verdict does not hang on the machine's speed (bench_stats.py).

- read+select+caption (read posts, select, caption as build.plan_dataset; then manifest + dataset TOML, written
  by build.write_dataset with image and caption files stubbed), each round in a fresh child process with peak RSS
  reset per stage; floor: pyarrow.parquet.read_table of the same files and one pyarrow pass joining each post's tag
  names (child_floor).
- the caption stage per caption against HakuBooru's own captioner over its SQLite database, on a sample of the
  selection (scripts/hakubooru_timing.py, run by --hakubooru-python), its captions compared with kohaku-prep's.
- caption files (build.write_captions; floor a minimal open/write/close loop) and image extraction
  (build.copy_images; floor `tar -xf SHARD -C DIR -T LIST`); tar shard indexing, timed alone.
- with --scale: read+select+caption at each size, the sizes in turn; the largest against the one before it.

    make bench BENCH_ARGS=--quick                      # 300k posts, 20k images: about 10 minutes on 2 cores
    make bench                                         # 7.35M posts, 200k images, 5 rounds
    make bench BENCH_ARGS="--quick --rounds 9"         # more rounds where the machine is busy
    make bench BENCH_ARGS=--scale=1000000,7350000,15000000
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import bench_stats
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from kohaku_prep import dataset_format
from kohaku_prep.dataset import build, captions, images, metadata, selection
from kohaku_prep.dataset.bad_metadata import BadRows
from kohaku_prep.preset import find_preset, resolve
from kohaku_prep.versions import versions

GEN_VERSION = 1
DANBOORU_MAX_ID = 7_350_000
CHUNK = 500_000  # posts generated at a time
SHAPES = ("flat", "normalized")
PIPELINE = ("read posts", "select", "caption")
FILE_SYSTEM_STATE = ("file-system state: warm for both sides (every input file read once before round 1; each run "
                     "writes into a fresh folder of its own, nothing deleted until the end)")
# ours/floor, the median of the rounds' ratios, at most (README, Benchmarks: why each is what it is)
LIMITS = {"flat: read+select+caption": 15.0, "normalized: read+select+caption": 6.5,
          "flat: against HakuBooru": 0.06, "normalized: against HakuBooru": 0.025, "caption files": 1.25,
          "image extraction": 2.5, "growth": 1.2}

SYL = [c + v for c in "bdfghjkmnprstwyz" for v in "aeiou"]
# HakuBooru tag type -> (vocabulary size, the most frequent names); the other names are made of syllables
VOCAB = {0: (100_000, ["1girl", "solo", "long_hair", "looking_at_viewer", "smile", "blush", "open_mouth", "short_hair",
                       "multiple_girls", "1boy", "2girls", "male_focus", "^_^", ":d", "x_x", ">_<", "heart_(symbol)",
                       "3girls", "6+girls", "1other"]),
         1: (150_000, ["banned_artist", "migolu", "torino_aqua", "ask_(askzy)"]),
         2: (40_000, ["hatsune_miku", "hakurei_reimu", "rice_shower_(umamusume)"]),
         3: (10_000, ["original", "touhou", "fate_(series)", "hololive"]),
         4: (400, ["highres", "absurdres", "commentary_request", "bad_id", "bad_pixiv_id", "translated", "commentary",
                   "lowres", "official_art", "translation_request", "md5_mismatch", "photoshop_(medium)", "video"])}
NAME_PATTERN = {0: "{a}_{b}", 1: "{a}", 2: "{a}_({b})", 3: "{a}_(series)", 4: "{a}_{b}"}
FLAT_COLUMN = {0: "tag_string_general", 1: "tag_string_artist", 2: "tag_string_character",
               3: "tag_string_copyright", 4: "tag_string_meta"}
EXTS, EXT_P = ["jpg", "png", "webp", "gif", "mp4", "webm", "zip"], [.57, .285, .095, .03, .01, .005, .005]


def _word(k: int) -> str:  # three syllables, one word per k < 512,000
    return SYL[k // 6400 % 80] + SYL[k // 80 % 80] + SYL[k % 80]


def _vocabulary(rng) -> tuple[list[str], np.ndarray, dict[int, np.ndarray]]:
    """Names sorted (tag id = position + 1), their types, and per type the positions by popularity."""
    names: list[str] = []
    type_of_name: list[int] = []
    for tp, (size, head) in VOCAB.items():  # a unique first word (7919 spreads 0..512k), so unique names
        names += head + [NAME_PATTERN[tp].format(a=_word((len(names) + i) * 7919 % 512_000), b=_word(i * 31 % 6400))
                         for i in range(len(head), size)]
        type_of_name += [tp] * size
    assert len(set(names)) == len(names)
    order = sorted(range(len(names)), key=names.__getitem__)
    pos = np.empty(len(names), np.int64)
    pos[order] = np.arange(len(names))
    types = np.array(type_of_name, np.int8)
    popular: dict[int, np.ndarray] = {}
    for tp, (_size, head) in VOCAB.items():
        members = np.flatnonzero(types == tp)  # creation order: head names first
        popular[tp] = pos[np.concatenate([members[:len(head)], rng.permutation(members[len(head):])])]
    return [names[i] for i in order], types[order], popular


def _draw_tags(rng, n: int, popular: dict, n_vocab: int) -> tuple[np.ndarray, np.ndarray]:
    """(post index, tag position) rows, unique, sorted by post then name; p(rank) ~ 1/rank."""
    counts = {0: rng.integers(27, 40, n), 1: rng.choice(3, n, p=[.1, .85, .05]),
              2: rng.choice(4, n, p=[.3, .5, .15, .05]), 3: rng.choice(3, n, p=[.15, .7, .15]),
              4: rng.integers(0, 5, n)}
    drawn = []
    for tp, k in counts.items():
        post, vocab = np.repeat(np.arange(n, dtype=np.int64), k), popular[tp]
        rank = (np.exp(rng.random(len(post)) * np.log(len(vocab) + 1)) - 1).astype(np.int64)
        drawn.append(post * n_vocab + vocab[np.minimum(rank, len(vocab) - 1)])
    keys = np.unique(np.concatenate(drawn))
    return keys // n_vocab, keys % n_vocab


def _post_columns(rng, ids: np.ndarray, max_id: int) -> dict:
    n = len(ids)

    def num(values, width):
        return pc.utf8_lpad(pa.array(values).cast(pa.string()), width, "0")
    year = 2005 + (19.99 * ids / max_id).astype(np.int64)  # grows with id
    created = pc.binary_join_element_wise(
        num(year, 4), "-", num(rng.integers(1, 13, n), 2), "-", num(rng.integers(1, 29, n), 2), "T",
        num(rng.integers(0, 24, n), 2), ":", num(rng.integers(0, 60, n), 2), ":", num(rng.integers(0, 60, n), 2),
        ".000", pa.array(["-04:00", "-05:00", "+09:00", "+00:00"]).take(rng.integers(0, 4, n)), "")
    created = pc.if_else(pa.array(rng.random(n) < 0.001), "not a date", created)
    rating = rng.choice(4, n, p=[.4, .3, .15, .15])
    fav = rng.exponential(np.array([12, 25, 55, 80])[rating]).astype(np.int64)
    lut = np.array([f"{i:02x}".encode() for i in range(256)], dtype="S2")
    md5 = pa.array(lut[rng.integers(0, 256, (n, 16), dtype=np.uint8)].view("S32").ravel()).cast(pa.string())
    md5 = pc.if_else(pa.array(rng.random(n) < 0.02), pa.scalar(None, pa.string()), md5)  # hidden: Gold-only
    ext = pa.array(EXTS).take(rng.choice(len(EXTS), n, p=EXT_P))
    side = rng.integers(400, 4000, (n, 2))
    return {"id": ids, "created_at": created, "rating": rating, "fav_count": fav, "score": fav // 2,
            "file_ext": ext, "is_deleted": rng.random(n) < 0.03, "is_banned": rng.random(n) < 0.005, "md5": md5,
            "file_url": pc.binary_join_element_wise("https://cdn.donmai.us/original/", md5, ".", ext, ""),
            "image_width": side[:, 0], "image_height": side[:, 1]}


def generate_metadata(n: int, cache: Path) -> Path:
    """Both shapes for n posts, written a chunk of posts at a time; returns the cached folder."""
    out, tmp = cache / f"meta-g{GEN_VERSION}-n{n}", cache / f".tmp-meta-g{GEN_VERSION}-n{n}"
    if (out / "DONE").exists():
        return out
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "flat").mkdir(parents=True)
    (tmp / "normalized").mkdir()
    rng = np.random.default_rng([GEN_VERSION, n])
    max_id = max(n, DANBOORU_MAX_ID)
    ids = np.arange(1, n + 1) if n == max_id else np.sort(rng.choice(max_id, n, replace=False)) + 1
    names, types, popular = _vocabulary(rng)
    name_array = pa.array(names)
    pq.write_table(pa.table({"id": np.arange(1, len(names) + 1), "name": name_array, "type": types,
                             "popularity": np.zeros(len(names), np.int64)}), tmp / "normalized/tag.parquet")
    writers, relation_id = {}, 1
    for first in range(0, n, CHUNK):
        crng, chunk_ids = np.random.default_rng([GEN_VERSION, n, first]), ids[first:first + CHUNK]
        cols = _post_columns(crng, chunk_ids, max_id)
        post, tag = _draw_tags(crng, len(chunk_ids), popular, len(names))
        flat = {**cols, "rating": pa.array(np.array(list("gsqe"))[cols["rating"]])}
        for tp, column in FLAT_COLUMN.items():
            m = types[tag] == tp
            offsets = np.concatenate([[0], np.cumsum(np.bincount(post[m], minlength=len(chunk_ids)))])
            lists = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), name_array.take(pa.array(tag[m])))
            flat[column] = pc.binary_join(lists, " ")
        normalized = {**cols, **{c: cols[c].astype(np.int8) for c in ("rating", "is_deleted", "is_banned")}}
        relation = {"id": np.arange(relation_id, relation_id + len(tag)), "post_id": chunk_ids[post],
                    "tag_id": tag + 1}
        relation_id += len(tag)
        for path, columns in (("flat/posts.parquet", flat), ("normalized/post.parquet", normalized),
                              ("normalized/posttagrelation.parquet", relation)):
            table = pa.table(columns)
            if path not in writers:
                writers[path] = pq.ParquetWriter(tmp / path, table.schema)
            writers[path].write_table(table)
        print(f"  generated {min(first + CHUNK, n):,}/{n:,} posts", file=sys.stderr, flush=True)
    for w in writers.values():
        w.close()
    (tmp / "DONE").write_text(f"{n} posts, {relation_id - 1} tag rows\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def _tiny_image(rng, ext: str) -> bytes:
    from PIL import Image
    w, h = (int(v) for v in rng.integers(32, 160, 2))
    im, buf = Image.new("RGB", (w, h), tuple(int(v) for v in rng.integers(0, 256, 3))), io.BytesIO()
    im.paste(tuple(int(v) for v in rng.integers(0, 256, 3)), (0, 0, w // 2, h // 2))
    im.save(buf, format={"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}[ext])
    return buf.getvalue()


def generate_images(meta: Path, n_images: int, cache: Path) -> Path:
    """Shards as danbooru2023's (original/data-0NNN.tar, from id 6M recent/data-1NNN.tar, by id % 1000), each
    with every still, visible post of its residue, lowest residues first until n_images; 120 distinct images."""
    out, tmp = cache / f"{meta.name}-img{n_images}", cache / f".tmp-{meta.name}-img{n_images}"
    if out.exists():
        return out
    t = pq.read_table(meta / "flat/posts.parquet", columns=["id", "file_ext", "md5"])
    ok = pc.and_(pc.is_in(t["file_ext"], pa.array(EXTS[:3])), pc.is_valid(t["md5"]))
    ids, exts = t["id"].filter(ok).to_numpy(), t["file_ext"].filter(ok).to_numpy(zero_copy_only=False)
    take = np.lexsort((ids, ids % 1000))[:n_images]
    rng = np.random.default_rng(GEN_VERSION)
    pool = {e: [_tiny_image(rng, e) for _ in range(40)] for e in EXTS[:3]}
    shards: dict[str, list[tuple[int, str]]] = {}
    for i, e in zip(ids[take].tolist(), exts[take].tolist(), strict=True):
        name = f"original/data-{i % 1000:04d}.tar" if i < 6_000_000 else f"recent/data-{1000 + i % 1000:04d}.tar"
        shards.setdefault(name, []).append((i, e))
    shutil.rmtree(tmp, ignore_errors=True)
    for name, members in shards.items():
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tmp / name, "w", format=tarfile.USTAR_FORMAT) as tf:
            for i, e in sorted(members):
                info = tarfile.TarInfo(f"{i}.{e}")
                info.size = len(pool[e][i % 40])
                tf.addfile(info, io.BytesIO(pool[e][i % 40]))
    tmp.rename(out)
    return out


def _status_gb(field: str, pid: int | str = "self") -> float:
    """VmRSS or VmHWM of a process in GB; 0 once it has exited."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    found = re.search(rf"{field}:\s+(\d+)", status)
    return int(found.group(1)) / 2**20 if found else 0.0


def _measure(fn, *args) -> tuple:
    """fn(*args), and its wall seconds and the process's peak RSS while it ran."""
    os.sync()  # earlier writes are not flushed on this stage's time
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM: the peak from here on is this stage's
    t0 = time.perf_counter()
    result = fn(*args)
    return result, {"seconds": time.perf_counter() - t0, "peak_rss_gb": _status_gb("VmHWM")}


def _read_through(folders: list[Path]) -> int:
    """Every file under the folders read once, so that every timed run of either side of a comparison finds
    its input in the page cache alike; the bytes read."""
    total = 0
    for path in sorted(p for folder in folders for p in folder.rglob("*") if p.is_file()):
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 24):
                total += len(chunk)
    return total


def _resolved(**settings):
    return resolve(find_preset("epsilon"), None, [f"{k}={json.dumps(str(v))}" for k, v in settings.items()])


def child_pipeline(t: dict) -> dict:
    rec, r = {}, _resolved(**{"input.metadata": t["meta"], "output.dir": Path(t["tmp"]) / "manifest-out"})
    p, meta = r.preset, metadata.locate(Path(t["meta"]))
    bad_posts = BadRows(p.input.bad_metadata)
    posts, rec["read posts"] = _measure(metadata.read_posts, meta, p.input.rating_scheme, bad_posts)
    sel, rec["select"] = _measure(selection.select, posts, p.selection, p.filters, bad_posts)

    def caption():  # build.plan_dataset's caption step, on every selected post
        chosen = posts.take(pa.array(np.searchsorted(posts["id"].to_numpy(), sel.ids)))
        return chosen, captions.caption_posts(
            metadata.iter_tags(meta, sel.ids), sel.ids, chosen["created_at"], chosen["rating"].to_numpy(),
            chosen["fav_count"].to_numpy(), build._quality_rule(p, posts), BadRows(p.input.bad_metadata))
    (chosen, caps), rec["caption"] = _measure(caption)
    rec["read posts"]["items"] = rec["select"]["items"] = posts.num_rows
    rec["caption"]["items"] = n = len(sel.ids)
    if t.get("dump"):  # the newest selected posts' captions, for the caption-file benchmark
        pq.write_table(pa.table({"id": sel.ids[-t["dump_n"]:], "caption": caps.text[-t["dump_n"]:]}), t["dump"])
    if t.get("sample"):  # a sample of the selection and its captions, for the predecessor to caption
        rows = np.sort(np.random.default_rng(0).choice(n, min(t["sample_n"], n), replace=False))
        pq.write_table(pa.table({"id": sel.ids[rows], "caption": caps.text.take(pa.array(rows))}), t["sample"])
    if t.get("manifest"):
        index = images.ImageIndex(sel.ids, np.zeros(n, np.int32), [Path("synthetic.tar")], np.zeros(n, np.int32),
                                  ["jpg"], np.zeros(n, np.int64), np.zeros(n, np.int64), 0, [])
        build.copy_images = lambda *_: build.Extracted(  # no image or caption files: the dataset files alone
            np.full(n, 1024, np.int32), np.full(n, 1024, np.int32), [""] * n)
        build.write_captions = lambda *_: None
        checked = build.check_output(Path(p.output.dir), True)
        _, rec["manifest + dataset TOML"] = _measure(build.write_dataset, build.Plan(sel, chosen, caps, index, []),
                                                     r, checked, lambda _: None)
        rec["manifest + dataset TOML"]["items"] = n
        shutil.rmtree(p.output.dir)
    return rec


def child_floor(t: dict) -> dict:
    """The floor of read+select+caption: the shape's Parquet files read whole by pyarrow.parquet.read_table, then
    one plain pass over the tags that joins each post's tag names with the caption separator (flat: the
    tag_string columns split and joined; normalized: each relation row's tag name found by id through one table
    of tag rows, the rows grouped by post and joined)."""
    folder = Path(t["meta"])

    def floor() -> int:
        if (folder / "tag.parquet").exists():
            tags, post = pq.read_table(folder / "tag.parquet"), pq.read_table(folder / "post.parquet")
            relation = pq.read_table(folder / "posttagrelation.parquet")
            tag_ids, names = tags["id"].to_numpy(), tags["name"].combine_chunks()
            tag_row = np.full(int(tag_ids.max()) + 1, -1, np.int64)
            tag_row[tag_ids] = np.arange(len(tag_ids))
            joined = []
            for batch in relation.to_batches():  # a post cut by a batch boundary counts twice: no matter here
                ids = batch["post_id"].to_numpy()
                starts = np.concatenate([[0], np.flatnonzero(np.diff(ids)) + 1, [len(ids)]]).astype(np.int32)
                post_names = names.take(pa.array(tag_row[batch["tag_id"].to_numpy()]))
                joined.append(pc.binary_join(pa.ListArray.from_arrays(pa.array(starts), post_names), ", "))
        else:
            post = pq.read_table(folder / "posts.parquet")
            joined = [pc.binary_join(pc.split_pattern(post[c], " "), ", ") for c in FLAT_COLUMN.values()]
        assert all(len(j) for j in joined)
        return post.num_rows
    rows, m = _measure(floor)
    return {"read_table + join tag names": {**m, "items": rows}}


def child_writes(t: dict) -> dict:
    """Caption files (kohaku-prep vs a minimal loop), tar indexing, extraction (kohaku-prep vs tar -x), the
    sides of each pair in turn, round after round. Each run writes into a fresh folder of its own and nothing is
    deleted until the bench ends: ext4 scans recently deleted inodes (~30 s) on every create."""
    tmp, src, table = Path(t["tmp"]), Path(t["images"]), pq.read_table(t["captions"])
    ids, texts = table["id"].to_numpy(), table["caption"].to_pylist()
    index = [_measure(images.index_images, src)[1] for _ in range(t["rounds"])]
    p = _resolved(**{"input.metadata": t["meta"], "input.images": src}).preset
    per, plan = p.output.ids_per_folder, build.plan_dataset(p, lambda _: None)  # the posts that have an image
    order = np.argsort(ids % 1000, kind="stable")  # baseline jobs: one per danbooru shard
    jobs = np.split(order, np.flatnonzero(np.diff(ids[order] % 1000)) + 1)
    text = table["caption"]

    def kohaku(root):
        build.write_captions(root, ids, text, p, False)

    def minimal(root):
        def loop(rows):
            for row in rows.tolist():
                with open(f"{root}/images/{ids[row] // per:05d}/{ids[row]}.txt", "wb") as fh:
                    fh.write(texts[row].encode())
        with ThreadPoolExecutor(p.output.workers) as pool:
            list(pool.map(loop, jobs))

    def write_captions(fn, k):  # folders first, as build.copy_images makes them
        root = tmp / f"captions-{fn.__name__}-{k}"
        for folder in np.unique(ids // per).tolist():
            (root / dataset_format.subset_folder(folder)).mkdir(parents=True, exist_ok=True)
        fn(root)

    def extract(k):
        (tmp / f"kohaku-{k}").mkdir()
        build.copy_images(plan, tmp / f"kohaku-{k}", p, False)

    rows = np.searchsorted(plan.index.ids, plan.sel.ids)
    shards: list[tuple[str, str, str]] = []  # shard, its source code, the file listing its members
    for code in np.unique(plan.index.source[rows]).tolist():
        listed = tmp / "lists" / f"{code}.txt"
        listed.parent.mkdir(parents=True, exist_ok=True)
        listed.write_text("".join(plan.index.file_name(i) + "\n" for i in rows[plan.index.source[rows] == code]))
        shards.append((str(plan.index.sources[code]), str(code), str(listed)))

    def tar_x(shard_code_listed: tuple[str, str, str], k: int):
        shard, code, listed = shard_code_listed
        (tmp / f"tar-{k}" / code).mkdir(parents=True)
        subprocess.run(["tar", "-xf", shard, "-C", str(tmp / f"tar-{k}" / code), "-T", listed], check=True)

    def tar_all(k):  # as many tar processes at a time as the build has workers
        with ThreadPoolExecutor(p.output.workers) as pool:
            list(pool.map(lambda shard: tar_x(shard, k), shards))

    def timed(fn):
        return lambda k: _measure(fn, k)[1]
    runs = bench_stats.alternate({"minimal": timed(lambda k: write_captions(minimal, k)),
                                  "kohaku": timed(lambda k: write_captions(kohaku, k)),
                                  "tar": timed(tar_all), "extract": timed(extract)}, t["rounds"])
    return {"files": len(ids), "workers": p.output.workers, "shards": len(plan.index.sources),
            "members": len(plan.index.ids), "images": len(rows), "bytes": int(plan.index.size[rows].sum()),
            "tar_command": "tar -xf {} -C {{dir}}/{} -T {}".format(*shards[0]),
            "index": [m["seconds"] for m in index], "index_rss_gb": max(m["peak_rss_gb"] for m in index),
            **{name: [m["seconds"] for m in ms] for name, ms in runs.items()},
            **{f"{name}_rss_gb": max(m["peak_rss_gb"] for m in ms) for name, ms in runs.items()}}


CHILDREN = {"pipeline": child_pipeline, "floor": child_floor, "writes": child_writes}


def run_child(task: dict, limit_gb: float) -> dict:
    """One task in a fresh process, killed if its RSS passes limit_gb; its result comes back in a file."""
    result = Path(task["tmp"]) / "result.json"
    result.unlink(missing_ok=True)
    proc = subprocess.Popen([sys.executable, __file__, "--child", json.dumps({**task, "result": str(result)})])
    while proc.poll() is None:
        if _status_gb("VmRSS", proc.pid) > limit_gb:
            proc.kill()
            proc.wait()
            return {"error": f"killed: RSS passed {limit_gb:g} GB"}
        time.sleep(0.2)
    return json.loads(result.read_text()) if proc.returncode == 0 else {"error": f"exit code {proc.returncode}"}


def run_hakubooru(python: Path, folder: Path, sample: Path, tmp: Path, k: int) -> dict:
    """HakuBooru's own captioner on the sample's posts (scripts/hakubooru_timing.py in its environment), into a
    fresh SQLite database of round k; its figures, and whether its captions equal the sample's, kohaku-prep's."""
    if not sample.exists():
        return {"error": "no sample of the selection: the pipeline did not run"}
    ours = pq.read_table(sample)
    np.save(tmp / "sample-ids.npy", ours["id"].to_numpy())
    theirs = tmp / f"hakubooru-captions-{k}.parquet"
    try:
        proc = subprocess.run([str(python), str(Path(__file__).with_name("hakubooru_timing.py")), "--metadata",
                               str(folder), "--ids", str(tmp / "sample-ids.npy"), "--captions", str(theirs),
                               "--workdir", str(tmp / f"hakubooru-{k}")], capture_output=True, text=True)
    except OSError as exc:  # no such Python
        return {"error": f"HakuBooru not run: {exc}"}
    if proc.returncode:
        return {"error": f"HakuBooru failed: {proc.stderr.strip()[-300:]}"}
    table = pq.read_table(theirs)
    same = table["id"].equals(ours["id"]) and sum(map(str.__eq__, table["caption"].to_pylist(),
                                                     ours["caption"].to_pylist()))
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "identical": int(same)}


def stage_figures(records: list[dict]) -> dict:
    """A pipeline side's rounds, stage by stage: seconds per round, their median and range, the highest peak;
    read+select+caption is each round's sum of the three."""
    if errors := [r["error"] for r in records if "error" in r]:
        return {"error": errors[0]}
    out = {}
    for name in records[0]:
        spread = bench_stats.Spread(tuple(r[name]["seconds"] for r in records))
        out[name] = {**spread.as_json(), "seconds": list(spread.values), "items": records[0][name]["items"],
                     "peak_rss_gb": max(r[name]["peak_rss_gb"] for r in records)}
    if "caption" in out:
        spread = bench_stats.Spread(tuple(sum(r[s]["seconds"] for s in PIPELINE) for r in records))
        out["read+select+caption"] = {**spread.as_json(), "seconds": list(spread.values),
                                      "items": out["select"]["items"],
                                      "peak_rss_gb": max(out[s]["peak_rss_gb"] for s in PIPELINE)}
    return out


def _spread(stage: dict) -> bench_stats.Spread:
    return bench_stats.Spread(tuple(stage["seconds"]))


def _row(stage: str, kind: str, items: int, seconds: bench_stats.Spread, rss: float | None = None) -> str:
    peak = "-" if rss is None else f"{rss:.2f}"
    span = f"{seconds.low:.2f}-{seconds.high:.2f}"
    return (f"{stage:<36} {kind:<10} {items:>10,} {seconds.median:>9.2f} {span:>13} "
            f"{items / seconds.median:>11,.0f} {peak:>8}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--posts", type=int, default=7_350_000)
    ap.add_argument("--images", type=int, default=200_000, help="posts with an image in the tar shards, "
                    "and the number of caption files written")
    ap.add_argument("--rounds", "--repeat", type=int, default=5, help="rounds of every comparison, its sides in "
                    "turn (A B A B ...); medians, ranges and the ratio of each round are printed")
    ap.add_argument("--predecessor-posts", type=int, default=20_000)
    ap.add_argument("--hakubooru-python", type=Path, help="a Python with hakubooru 0.0.3 (make bench makes one)")
    ap.add_argument("--scale", default="", help="comma-separated post counts for the scaling run")
    ap.add_argument("--cache", type=Path, default=Path("build/bench-cache"))
    ap.add_argument("--json", type=Path, default=Path("build/bench.json"))
    ap.add_argument("--rss-limit-gb", type=float, default=20.0, help="a child passing this is killed")
    ap.add_argument("--quick", action="store_true", help="300k posts, 20k images, 2,000 predecessor posts")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        task = json.loads(args.child)
        Path(task["result"]).write_text(json.dumps(CHILDREN[task.pop("kind")](task)))
        return
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    if args.quick:
        args.posts, args.images, args.predecessor_posts = 300_000, 20_000, 2_000
    tmp, lines = args.cache / f"tmp-{os.getpid()}", []
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    res: dict = {"command": [sys.executable, *sys.argv], "posts": args.posts, "images": args.images,
                 "rounds": args.rounds, "file_system": FILE_SYSTEM_STATE,
                 "machine": {"cores": os.cpu_count(), "ram_gb": round(ram, 1), "platform": platform.platform()},
                 "versions": versions(build.VERSIONED), "generator_version": GEN_VERSION, "stages": {}, "floors": {},
                 "scaling": [], "targets": [], "checks": []}
    targets: list[bench_stats.Target] = []
    checks: list[tuple[str, bool]] = []  # figures that are the same on any machine: memory, identical captions

    def say(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    def child(**task) -> dict:
        return run_child({"tmp": str(tmp), **task}, args.rss_limit_gb)
    tmp.mkdir(parents=True)
    try:
        t0 = time.perf_counter()
        meta = generate_metadata(args.posts, args.cache)
        img = generate_images(meta, args.images, args.cache)
        res.update(input_seconds=time.perf_counter() - t0, metadata=str(meta), image_shards=str(img),
                   warmed_bytes=_read_through([meta, img]))
        say(f"kohaku-prep {res['versions']['kohaku-prep']}: {args.posts:,} posts, {args.images:,} images, "
            f"{os.cpu_count()} cores, {ram:.0f} GB RAM; input ready in {res['input_seconds']:.0f} s\n"
            f"{args.rounds} rounds, the sides of each comparison in turn (A B A B ...); {FILE_SYSTEM_STATE}\n"
            f"{'stage':<36} {'shape':<10} {'items':>10} {'median s':>9} {'min-max s':>13} {'items/s':>11} "
            f"{'peak GB':>8}")
        dump, sample = tmp / "captions.parquet", tmp / "sample.parquet"
        hakubooru_error = None if args.hakubooru_python else "no --hakubooru-python (make bench sets it up)"

        def pipeline_side(shape: str) -> Callable[[int], dict]:
            def run(k: int) -> dict:
                first = k == 0 and shape == "normalized"  # the shape HakuBooru reads
                return child(kind="pipeline", meta=str(meta / shape), manifest=True,
                             **(dict(dump=str(dump), dump_n=args.images, sample=str(sample),
                                     sample_n=args.predecessor_posts) if first else {}))
            return run

        def floor_side(shape: str) -> Callable[[int], dict]:
            return lambda k: child(kind="floor", meta=str(meta / shape))

        def hakubooru(k: int) -> dict:
            nonlocal hakubooru_error
            if hakubooru_error:
                return {"error": hakubooru_error}
            got = run_hakubooru(args.hakubooru_python, meta / "normalized", sample, tmp, k)
            hakubooru_error = got.get("error")
            return got
        sides = {name: fn for shape in SHAPES
                 for name, fn in ((shape, pipeline_side(shape)), (f"{shape} floor", floor_side(shape)))}
        rounds = bench_stats.alternate({**sides, "HakuBooru": hakubooru}, args.rounds)

        for shape in SHAPES:
            st = res["stages"][shape] = stage_figures(rounds[shape])
            fl = res["floors"][shape] = stage_figures(rounds[f"{shape} floor"])
            if "error" in st or "error" in fl:
                say(f"{shape}: {st.get('error') or fl.get('error')}")
                checks.append((f"{shape}: read+select+caption against its floor: not timed", False))
                continue
            for kind, figures in ((shape, st), ("floor", fl)):
                for name, s in figures.items():
                    say(_row(name.replace("read+", "= read+"), kind, s["items"], _spread(s), s["peak_rss_gb"]))
            c = st["read+select+caption"]
            targets.append(bench_stats.Target(f"{shape}: read+select+caption", _spread(c),
                                              _spread(fl["read_table + join tag names"]),
                                              LIMITS[f"{shape}: read+select+caption"]))
            if args.posts == DANBOORU_MAX_ID:  # bytes, not seconds: the same on any machine
                checks.append((f"{shape}: peak RSS of read+select+caption {c['peak_rss_gb']:.2f} GB (limit 8 GB)",
                               c["peak_rss_gb"] <= 8))

        pre = res["predecessor"] = {"rounds": rounds["HakuBooru"]}
        if hakubooru_error:
            say(f"predecessor not timed: {hakubooru_error}")
            checks.append(("captions against HakuBooru's: predecessor not timed", False))
        else:
            first = rounds["HakuBooru"][0]
            per_post = bench_stats.Spread(tuple(r["seconds"] / r["posts"] * 1e6 for r in rounds["HakuBooru"]))
            pre.update({k: first[k] for k in ("hakubooru", "peewee", "posts")}, per_post_seconds=per_post.as_json())
            say(f"HakuBooru {first['hakubooru']} (its own captioner over SQLite, peewee {first['peewee']}): "
                f"{1e6 / per_post.median:,.0f} captions/s (median) on {first['posts']:,} "
                f"posts of the selection; {first['identical']:,} of them identical to kohaku-prep's")
            for shape, s in res["stages"].items():
                if "caption" in s:
                    ours = bench_stats.Spread(tuple(x / s["caption"]["items"] * 1e6 for x in s["caption"]["seconds"]))
                    targets.append(bench_stats.Target(f"{shape}: caption stage, time per caption", ours, per_post,
                                                      LIMITS[f"{shape}: against HakuBooru"], "HakuBooru", "us/caption"))
            checks.append((f"HakuBooru's captions identical: {first['identical']:,} of {first['posts']:,}",
                           first["identical"] == first["posts"]))

        if not dump.exists():
            say("caption and image files not timed: the pipeline did not run")
        else:
            w = res["writes"] = child(kind="writes", captions=str(dump), meta=str(meta / "flat"), images=str(img),
                                      rounds=args.rounds)
            kf, mf, ki, ke, te = (bench_stats.Spread(tuple(w[k])) for k in ("kohaku", "minimal", "index", "extract",
                                                                             "tar"))
            say(_row(f"caption files ({w['workers']} threads)", "kohaku", w["files"], kf))
            say(_row("caption files, minimal loop", "floor", w["files"], mf))
            say(_row(f"index tar shards ({w['shards']} shards)", "members", w["members"], ki, w["index_rss_gb"]))
            say(_row("extract images (copy_images)", "kohaku", w["images"], ke, w["extract_rss_gb"]))
            say(_row(f"tar -xf -T ({w['workers']} at a time)", "floor", w["images"], te))
            targets += [bench_stats.Target("caption files", kf, mf, LIMITS["caption files"], "minimal loop"),
                        bench_stats.Target("image extraction", ke, te, LIMITS["image extraction"], "tar -x")]

        sizes = [int(n) for n in args.scale.split(",") if n.strip()]
        if sizes:  # the Epsilon pools take a larger share of a larger id range: time per captioned post
            def scaled_side(folder: Path) -> Callable[[int], dict]:
                return lambda k: child(kind="pipeline", meta=str(folder))
            scaled = bench_stats.alternate({f"{shape} {n}": scaled_side(generate_metadata(n, args.cache) / shape)
                                            for n in sizes for shape in SHAPES}, args.rounds)
            say(f"{'scaling: read+select+caption':<36} {'shape':<10} {'posts':>10} {'median s':>9} "
                f"{'s/M posts':>13} {'peak GB':>11} {'captioned':>10}")
        for n in sizes:
            for shape in SHAPES:
                s = stage_figures(scaled[f"{shape} {n}"])
                c, captioned = s.get("read+select+caption", {}), s.get("caption", {}).get("items")
                res["scaling"].append({"posts": n, "shape": shape, "error": s.get("error"), "captioned": captioned,
                                       "seconds": c.get("seconds"), "median": c.get("median"),
                                       "peak_rss_gb": c.get("peak_rss_gb")})
                say(f"{'':<36} {shape:<10} {n:>10,}  {s['error']}" if "error" in s else
                    f"{'':<36} {shape:<10} {n:>10,} {c['median']:>9.1f} {c['median'] / n * 1e6:>13.2f} "
                    f"{c['peak_rss_gb']:>11.2f} {captioned:>10,}")
        for shape in SHAPES:  # the largest size against the one before it, round by round
            a, b = ([None, None] + [p for p in res["scaling"] if p["shape"] == shape])[-2:]
            if a and (a["error"] or b["error"]):
                checks.append((f"{shape}: {b['posts']:,} posts within 24 GB: {b['error'] or a['error']}", False))
            elif a:
                per_captioned = [bench_stats.Spread(tuple(x / p["captioned"] * 1e6 for x in p["seconds"]))
                                 for p in (a, b)]
                targets.append(bench_stats.Target(f"{shape}: time per captioned post at {b['posts']:,} posts",
                                                  per_captioned[1], per_captioned[0], LIMITS["growth"],
                                                  f"{a['posts']:,} posts", "s/M captioned"))
                checks.append((f"{shape}: {b['posts']:,} posts, peak RSS {b['peak_rss_gb']:.2f} GB (limit 24 GB)",
                               b["peak_rss_gb"] <= 24))
        say("targets (each the median of its rounds' ratios, ours/floor; met when at most its limit):")
        for target in targets:
            res["targets"].append(target.as_json())
            for line in target.lines():
                say(line)
        for text, met in checks:
            res["checks"].append({"check": text, "met": bool(met)})
            say(f"check: {text} {'met' if met else 'NOT met'}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        res["table"] = lines
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=2) + "\n")
        print(f"figures: {args.json}")


if __name__ == "__main__":
    main()
