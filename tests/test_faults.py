"""Fault injection on the dataset build: killed processes, a full disk, files cut off mid-write.
Each must end in a clear message and a build that, run again, finishes byte-identical to a clean one."""
import errno
import io
import re
import signal
import subprocess
import sys
import tarfile

import pytest
from helpers import SAMPLE_OVERRIDES, TESTS, assert_same_tree, build_sample
from PIL import Image

from kohaku_prep.dataset import build, images
from kohaku_prep.errors import PrepError


def assert_same_dataset(out, reference):
    assert_same_tree(out / "images", reference / "images")
    for name in ("manifest.parquet", "report.md", "dataset.toml"):
        assert (out / name).read_bytes() == (reference / name).read_bytes().replace(
            str(reference).encode(), str(out).encode())


def dataset_command(sample_root, out) -> list[str]:
    return ["dataset", "--metadata", str(sample_root / "metadata" / "flat"), "--images", str(sample_root / "images"),
            "--out", str(out), "--force", *SAMPLE_OVERRIDES]


def killed_at(point: str, n: int, args: list[str], marker) -> str:
    """Run the build to its n-th `point` (see killed_build.py), where it SIGKILLs itself; the file it was
    writing then."""
    killed = subprocess.run([sys.executable, str(TESTS / "killed_build.py"), point, str(n), str(marker), "--",
                             *args], capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, (point, n, killed.stderr)  # not finished, nor failed
    *_, last = marker.read_text().splitlines()
    reached_point, reached_n, name = last.split(" ", 2)
    assert (reached_point, reached_n) == (point, str(n))
    return name


def assert_resumes_to_the_same_dataset(args, out, sample_dataset):
    subprocess.run([sys.executable, "-m", "kohaku_prep", *args], check=True, capture_output=True)
    assert not out.with_name(out.name + ".partial").exists()
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in sample_dataset.iterdir())
    assert_same_dataset(out, sample_dataset)


# Where each run is killed (counted within that run), in order, each run resuming the last: images cut off
# mid-write, the last images and the first caption, captions cut off mid-write, and everything written but
# the staging folder not yet published. Each point is reached whatever the machine's speed.
KILL_POINTS = [("image", 1), ("image", 300), ("image", 900), ("caption", 1), ("caption", 900),
               ("caption", 300), ("publish", 1)]


def test_killed_builds_resume_to_the_same_dataset(sample_root, sample_dataset, tmp_path):
    out, marker = tmp_path / "dataset", tmp_path / "kills.txt"
    args = dataset_command(sample_root, out)
    names = [killed_at(point, n, args, marker) for point, n in KILL_POINTS]
    assert not out.exists() and (tmp_path / "dataset.partial").is_dir()
    assert [names[i].rsplit(".", 1)[-1] != "txt" for i in range(6)] == [True] * 3 + [False] * 3
    assert_resumes_to_the_same_dataset(args, out, sample_dataset)


# a write killed under its temporary name leaves that file in the staging folder: the rerun must neither
# publish it nor take it for someone else's file
@pytest.mark.parametrize("point, n", [pytest.param("manifest", 1, id="manifest"),
                                      pytest.param("file", 1, id="dataset.toml"),
                                      pytest.param("chart", 1, id="a report chart")])
def test_a_build_killed_writing_a_file_under_a_temporary_name_resumes_to_the_same_dataset(
        sample_root, sample_dataset, tmp_path, point, n):
    out = tmp_path / "dataset"
    args = dataset_command(sample_root, out)
    name = killed_at(point, n, args, tmp_path / "kills.txt")
    assert re.fullmatch({"manifest": "manifest.parquet", "file": "dataset.toml", "chart": r"report-.*\.png"}[point],
                        name)
    assert_resumes_to_the_same_dataset(args, out, sample_dataset)


def full_disk_after(calls: int, monkeypatch):
    write_new = build.write_new
    count = [0]

    def fail_later(path, data, dir_fd=None):
        count[0] += 1
        if count[0] > calls:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        write_new(path, data, dir_fd=dir_fd)
    monkeypatch.setattr(build, "write_new", fail_later)


@pytest.mark.parametrize("calls", [300, 1800], ids=["while copying images", "while writing captions"])
def test_full_disk_stops_the_build_and_it_resumes(sample_root, sample_dataset, tmp_path, monkeypatch, calls):
    out = tmp_path / "dataset"
    full_disk_after(calls, monkeypatch)
    with pytest.raises(PrepError, match=r"cannot write \(No space left on device\); fix this and run the same"):
        build_sample(sample_root, out)
    assert not out.exists() and (tmp_path / "dataset.partial").is_dir()
    monkeypatch.undo()
    build_sample(sample_root, out)
    assert_same_dataset(out, sample_dataset)


def test_files_cut_off_mid_write_are_rewritten_on_resume(sample_root, sample_dataset, tmp_path, monkeypatch):
    out = tmp_path / "dataset"
    full_disk_after(2000, monkeypatch)
    with pytest.raises(PrepError):
        build_sample(sample_root, out)
    monkeypatch.undo()
    staging = tmp_path / "dataset.partial"
    image = next(p for p in staging.rglob("*") if p.suffix in (".png", ".jpg", ".webp"))
    caption = next(staging.rglob("*.txt"))
    image.write_bytes(image.read_bytes()[:100])  # as a write cut off by SIGKILL or power loss leaves them
    caption.write_bytes(caption.read_bytes()[:7])
    build_sample(sample_root, out)
    assert_same_dataset(out, sample_dataset)


def encoded(fmt: str, size: tuple[int, int], **options) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA" if fmt in ("PNG", "WEBP") else "RGB", size, (9, 99, 199)).save(buffer, fmt, **options)
    return buffer.getvalue()


def pil_size(data: bytes):
    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.size
    except Exception:
        return None


@pytest.mark.parametrize("fmt, options", [
    ("JPEG", {}), ("JPEG", {"progressive": True}), ("JPEG", {"exif": b"Exif\x00\x00" + b"x" * 5000}),
    ("PNG", {}), ("GIF", {}), ("WEBP", {"lossless": True}), ("WEBP", {"quality": 70}),
    ("WEBP", {"exif": b"Exif\x00\x00abc"}), ("BMP", {})])
def test_image_header_reads_what_pil_reads_and_no_more(fmt, options):
    """The header fast path gives PIL's size on whole files and accepts no cut-off file PIL refuses."""
    for size in [(1, 1), (37, 5), (640, 480)] + ([(16383, 2)] if fmt in ("PNG", "WEBP") else []):
        data = encoded(fmt, size, **options)
        assert images.image_size(data) == size
        if fmt in ("JPEG", "PNG", "WEBP"):
            assert images._header_size(data) == size  # not left to PIL
        for cut in [*range(0, min(len(data), 400)), len(data) - 1]:
            fast = images._header_size(data[:cut])
            assert fast is None or fast == pil_size(data[:cut]), (size, cut)


def test_a_rebuild_with_another_seed_leaves_nothing_of_the_old_dataset(sample_root, sample_dataset, tmp_path):
    out = tmp_path / "dataset"
    build_sample(sample_root, out, extra=["selection.seed=7"])
    with pytest.raises(PrepError, match="already holds a dataset .*another preset or seed.*--force"):
        build_sample(sample_root, out)
    build_sample(sample_root, out, force=True)
    assert_same_dataset(out, sample_dataset)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset"]


def test_a_truncated_shard_loses_only_its_cut_members(copy_sample, sample_dataset, tmp_path):
    shard = max((copy_sample / "images").rglob("*.tar"), key=lambda p: p.stat().st_size)
    members = images.index_images(copy_sample / "images")
    in_shard = sorted((r for r in range(len(members.ids)) if members.sources[members.source[r]] == shard),
                      key=lambda r: members.offset[r])  # in file order
    cut = int(members.offset[in_shard[len(in_shard) // 2]]) + 10  # inside the middle member's data
    shard.write_bytes(shard.read_bytes()[:cut])
    summary = build_sample(copy_sample, tmp_path / "out")
    assert summary.images.unreadable_shards and str(shard) in summary.images.unreadable_shards[0]
    lost = 1451 - summary.images.written
    assert 0 < lost <= len(in_shard) - len(in_shard) // 2
    written = {p.name for p in (tmp_path / "out").rglob("*") if p.is_file()}
    for row in in_shard[:len(in_shard) // 2]:  # members before the cut are kept, when selected
        name = members.file_name(row)
        assert name in written or not any((sample_dataset / "images").rglob(name))


def test_a_zero_byte_member_is_counted_not_fatal(copy_sample, sample_dataset, tmp_path):
    selected = {p.name for p in (sample_dataset / "images").rglob("*.*")}
    index = images.index_images(copy_sample / "images")
    row = next(r for r in range(len(index.ids)) if index.file_name(r) in selected)
    shard, victim = index.sources[index.source[row]], index.file_name(row)
    with tarfile.open(shard) as tf:
        members = []
        for m in tf.getmembers():
            member_file = tf.extractfile(m)
            assert member_file is not None  # a shard holds regular files only
            members.append((m, member_file.read()))
    with tarfile.open(shard, "w", format=tarfile.USTAR_FORMAT) as tf:
        for member, data in members:
            data = b"" if member.name == victim else data
            member.size = len(data)
            tf.addfile(member, io.BytesIO(data))
    summary = build_sample(copy_sample, tmp_path / "out")
    assert summary.images.failed == {"not a decodable image": 2}  # the sample's own undecodable one, and this
    assert not any((tmp_path / "out").rglob(victim))


def test_a_full_disk_while_writing_the_manifest_stops_resumably(sample_root, sample_dataset, tmp_path, monkeypatch):
    out = tmp_path / "dataset"

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(build.pq, "ParquetWriter", full)
    with pytest.raises(PrepError, match=r"dataset.partial: cannot write \(No space left on device\); fix this"):
        build_sample(sample_root, out)
    monkeypatch.undo()
    build_sample(sample_root, out)
    assert_same_dataset(out, sample_dataset)
