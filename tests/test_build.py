"""The dataset build end to end on the embedded sample."""
import json
import os
import tomllib
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from helpers import GOLDEN, assert_same_tree, build_sample, resolve_sample
from PIL import Image

import kohaku_prep
from kohaku_prep import dataset_format
from kohaku_prep.dataset import build, images, metadata
from kohaku_prep.errors import PrepError
from kohaku_prep.fsutil import FolderLock

QUIET = lambda line: None  # noqa: E731


def test_every_image_has_its_caption_beside_it(sample_dataset):
    manifest = pq.read_table(sample_dataset / "manifest.parquet").to_pylist()
    assert len(manifest) == 1451
    for row in manifest:
        image = sample_dataset / row["image"]
        assert (image.parent.parent.name, image.stem) == ("images", str(row["id"]))
        assert image.with_suffix(".txt").read_bytes() == row["caption"].encode("utf-8")
        with Image.open(image) as im:
            assert im.size == (row["width"], row["height"])
    files = [p for p in (sample_dataset / "images").rglob("*") if p.is_file()]
    assert len(files) == 2 * len(manifest)  # nothing else: no temporary or stray files


def test_captions_match_golden(sample_dataset):
    manifest = pq.read_table(sample_dataset / "manifest.parquet", columns=["id", "caption"]).to_pylist()
    text = "".join(f"{row['id']}\t{row['caption']}\n" for row in manifest)
    assert text == (GOLDEN / "sample_captions.tsv").read_text(encoding="utf-8")


def test_dataset_toml_matches_golden_and_sd_scripts_types(sample_dataset):
    text = (sample_dataset / "dataset.toml").read_text()
    assert text.replace(str(sample_dataset.resolve()), "<dataset>") == (GOLDEN / "sample_dataset.toml").read_text()
    config = tomllib.loads(text)
    general, (dataset,) = config["general"], config["datasets"]
    assert general["caption_extension"] == ".txt" and general["keep_tokens_separator"] == "|||"
    assert isinstance(general["caption_tag_dropout_rate"], float)
    assert [Path(s["image_dir"]).is_dir() for s in dataset["subsets"]] == [True] * 8
    assert dataset["resolution"] == 1024 and dataset["bucket_reso_steps"] % 32 == 0


def test_dataset_toml_keys_are_allowed_at_their_level(sample_dataset):
    facts = json.loads((Path(kohaku_prep.__file__).parent / "data" / "sd_scripts_interface.json").read_text())
    keys = facts["dataset_config_keys"]
    config = tomllib.loads((sample_dataset / "dataset.toml").read_text())
    assert set(config["general"]) <= set(keys["general"])
    dataset = config["datasets"][0]
    assert set(dataset) <= set(keys["datasets (dreambooth-style subsets)"])
    for subset in dataset["subsets"]:
        assert set(subset) <= set(keys["subsets (dreambooth-style: caption files beside images)"])


def test_summary_counts_every_stage(sample_dataset):
    summary = json.loads((sample_dataset / "summary.json").read_text())
    assert [(s["name"], s["kept"], s["dropped"]) for s in summary["stages"]] == [
        ("metadata", 2400, 0), ("pool [0, 2,000,000)", 320, 357), ("pool [2,000,000, 5,000,000)", 650, 315),
        ("pool [5,000,000, \u221e)", 758, 0), ("deleted", 1680, 48), ("hidden (Gold-only or banned)", 1603, 77),
        ("not a still image", 1493, 110), ("image not in the archive", 1452, 41),
        ("created_at without a year", 1452, 0), ("image unreadable", 1451, 1)]
    assert summary["images"]["failed"] == {"not a decodable image": 1}
    assert summary["images"]["duplicate_members"] == 1
    assert summary["seed"] == 1337 and len(summary["inputs"]) == 2
    assert set(summary["versions"]) >= {"kohaku-prep", "python", "pyarrow"}
    assert "image unreadable" in (sample_dataset / "report.md").read_text()


def test_flat_and_normalized_build_the_same_dataset(sample_root, sample_dataset, tmp_path, monkeypatch):
    out = tmp_path / "normalized"
    monkeypatch.setattr(metadata, "_CHUNK_POSTS", 61)  # captions in other chunks than the flat build's
    monkeypatch.setattr(build, "MANIFEST_ROW_GROUP", 500)
    normalized = build_sample(sample_root, out, shape="normalized")
    monkeypatch.undo()
    monkeypatch.setattr(build, "MANIFEST_ROW_GROUP", 500)
    flat = build_sample(sample_root, tmp_path / "flat")
    assert normalized.captions == flat.captions  # tag categories from the tag table and from the columns
    assert (out / "manifest.parquet").read_bytes() == (tmp_path / "flat" / "manifest.parquet").read_bytes()
    assert pq.read_table(out / "manifest.parquet").equals(pq.read_table(sample_dataset / "manifest.parquet"))
    assert_same_tree(out / "images", sample_dataset / "images")


def test_rebuild_is_byte_identical(sample_root, sample_dataset, tmp_path):
    out = tmp_path / "again"
    build_sample(sample_root, out)
    assert_same_tree(out / "images", sample_dataset / "images")
    for name in ("manifest.parquet", "report.md", "report.html", "report-tags.png"):
        assert (out / name).read_bytes() == (sample_dataset / name).read_bytes()


def test_interrupted_build_resumes_without_redoing_images(sample_root, sample_dataset, tmp_path, monkeypatch):
    out = tmp_path / "resumed"

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(dataset_format, "dataset_toml", interrupt)
    with pytest.raises(KeyboardInterrupt):
        build_sample(sample_root, out)
    monkeypatch.undo()
    assert not out.exists() and (tmp_path / "resumed.partial").is_dir()

    reads: list[int] = []
    read_many = images.ImageIndex.read_many

    def counted_read_many(index, rows):
        reads.extend(rows)
        return read_many(index, rows)

    monkeypatch.setattr(images.ImageIndex, "read_many", counted_read_many)
    build_sample(sample_root, out)
    assert len(reads) == 1  # only the undecodable image is tried again; the rest came from the first run
    assert not (tmp_path / "resumed.partial").exists()
    assert_same_tree(out / "images", sample_dataset / "images")
    assert (out / "manifest.parquet").read_bytes() == (sample_dataset / "manifest.parquet").read_bytes()


def user_files(folder):
    """A folder of the user's own files, as the report of issue 11 had it; returns their bytes by path."""
    (folder / "photos").mkdir(parents=True)
    (folder / "photos" / "keep.txt").write_bytes(b"my photo list\n")
    (folder / "notes.txt").write_bytes(b"\x00\xffnotes")
    return snapshot(folder)


def snapshot(folder):
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("force", [False, True])
def test_a_folder_of_user_files_is_never_replaced(sample_root, tmp_path, force):
    out = tmp_path / "out"
    before = user_files(out)
    with pytest.raises(PrepError, match="not a folder kohaku-prep built.*with or without --force"):
        build_sample(sample_root, out, force=force)
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_existing_dataset_is_replaced_only_with_force(sample_root, tmp_path):
    out = tmp_path / "out"
    build_sample(sample_root, out, extra=["selection.seed=7"])
    with pytest.raises(PrepError, match="already holds a dataset .*; pass --force"):
        build_sample(sample_root, out)
    build_sample(sample_root, out, force=True)
    assert (out / "manifest.parquet").exists() and "seed = 1337" in (out / "preset.toml").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize("where", ["top", "subset folder", "images"])
def test_a_dataset_holding_a_user_file_is_not_replaced(sample_root, tmp_path, where):
    out = tmp_path / "out"
    build_sample(sample_root, out)
    folder = {"top": out, "subset folder": next((out / "images").iterdir()), "images": out / "images"}[where]
    (folder / "my-notes.md").write_bytes(b"mine")
    before = snapshot(out)
    with pytest.raises(PrepError, match=f"holds {folder / 'my-notes.md'}, which kohaku-prep does not write"):
        build_sample(sample_root, out, force=True)
    assert snapshot(out) == before


@pytest.mark.parametrize("sibling", ["out.partial", "out.replaced"])
def test_user_folders_beside_the_output_are_never_touched(sample_root, tmp_path, sibling):
    before = user_files(tmp_path / sibling)
    with pytest.raises(PrepError, match=f"{tmp_path / sibling}: it is not a folder kohaku-prep built"):
        build_sample(sample_root, tmp_path / "out", force=True)
    assert snapshot(tmp_path / sibling) == before and not (tmp_path / "out").exists()


def while_planning(monkeypatch, action):
    """Do `action` after the output folder was checked, while the build reads the metadata."""
    plan_dataset = build.plan_dataset

    def planned(*args):
        plan = plan_dataset(*args)
        action()
        return plan
    monkeypatch.setattr(build, "plan_dataset", planned)


@pytest.mark.parametrize("where", ["top", "subset folder"])
def test_a_user_file_put_in_the_dataset_during_the_build_is_not_replaced(sample_root, tmp_path, monkeypatch, where):
    out = tmp_path / "out"
    build_sample(sample_root, out, extra=["selection.seed=7"])
    folder = out if where == "top" else next((out / "images").iterdir())
    while_planning(monkeypatch, lambda: (folder / "mine.txt").write_bytes(b"mine"))
    before = snapshot(out)
    with pytest.raises(PrepError, match=rf"^{out}: changed while the dataset was being built .*nothing in it was"):
        build_sample(sample_root, out, force=True)
    assert snapshot(out) == {**before, folder / "mine.txt": b"mine"}
    monkeypatch.undo()
    (folder / "mine.txt").unlink()
    build_sample(sample_root, out, force=True)  # resumes from the complete staging folder
    assert "seed = 1337" in (out / "preset.toml").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_folder_made_at_out_during_the_build_is_not_replaced(sample_root, tmp_path, monkeypatch):
    out = tmp_path / "out"
    while_planning(monkeypatch, lambda: user_files(out))
    with pytest.raises(PrepError, match=rf"^{out}: appeared while the dataset was being built"):
        build_sample(sample_root, out, force=True)
    assert snapshot(out) == {out / "photos" / "keep.txt": b"my photo list\n", out / "notes.txt": b"\x00\xffnotes"}


def test_an_unfinished_build_holding_a_user_file_since_the_check_is_not_discarded(sample_root, tmp_path, monkeypatch):
    staging = tmp_path / "out.partial"
    staging.mkdir()
    (staging / ".build-key").write_text("another preset")
    while_planning(monkeypatch, lambda: (staging / "mine.txt").write_bytes(b"mine"))
    with pytest.raises(PrepError, match=rf"^{staging}: changed while"):
        build_sample(sample_root, tmp_path / "out", force=True)
    assert (staging / "mine.txt").read_bytes() == b"mine" and not (tmp_path / "out").exists()


def test_the_output_is_checked_in_full_once(sample_root, tmp_path, monkeypatch):
    out = tmp_path / "out"
    build_sample(sample_root, out)
    looked_at: list[Path] = []
    not_ours = build.not_ours

    def counted(folder, required):
        looked_at.append(folder)
        return not_ours(folder, required)
    monkeypatch.setattr(build, "not_ours", counted)
    build_sample(sample_root, out, force=True)
    assert looked_at == [out]


def test_out_naming_a_link_is_refused(sample_root, tmp_path):
    before = user_files(tmp_path / "mine")
    (tmp_path / "out").symlink_to(tmp_path / "mine")
    with pytest.raises(PrepError, match="is a link, not a folder"):
        build_sample(sample_root, tmp_path / "out", force=True)
    assert snapshot(tmp_path / "mine") == before


def test_out_naming_a_file_is_refused(sample_root, tmp_path):
    (tmp_path / "out").write_bytes(b"a file")
    with pytest.raises(PrepError, match="is a file, not a folder"):
        build_sample(sample_root, tmp_path / "out", force=True)
    assert (tmp_path / "out").read_bytes() == b"a file"


def test_unfinished_build_of_another_preset_is_not_mixed_in(sample_root, tmp_path):
    staging = tmp_path / "out.partial"
    staging.mkdir()
    (staging / ".build-key").write_text("another preset")
    with pytest.raises(PrepError, match="unfinished build of another preset"):
        build_sample(sample_root, tmp_path / "out")
    build_sample(sample_root, tmp_path / "out", force=True)
    assert not staging.exists()


def test_empty_selection_writes_nothing(sample_root, tmp_path):
    with pytest.raises(PrepError, match="the selection is empty") as err:
        build_sample(sample_root, tmp_path / "out", extra=["filters.image_extensions=['tiff']"])
    assert "not a still image" in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_output(sample_root, tmp_path):
    with pytest.raises(PrepError, match="not a writable folder"):
        build.check_output(tmp_path / "missing-parent" / "out", force=False)


def test_second_build_in_the_same_folder_is_refused(tmp_path):
    with FolderLock(tmp_path):
        with pytest.raises(PrepError, match="another build is writing here"):
            with FolderLock(tmp_path):
                pass


def test_images_from_a_plain_folder(sample_root, sample_dataset, tmp_path):
    # unpack the sample's shards into nested folders; the dated update is copied last, over the original
    folder = tmp_path / "files"
    index = images.index_images(sample_root / "images")
    for row, post_id in enumerate(index.ids.tolist()):
        dest = folder / f"{post_id % 7}" / index.file_name(row)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(index.read(row))
    out = tmp_path / "out"
    resolved = resolve_sample(sample_root, out, extra=[f'input.images="{folder}"'])
    build.build_dataset(resolved, False, QUIET)
    assert_same_tree(out / "images", sample_dataset / "images")


def test_dated_update_shard_wins(sample_root):
    index = images.index_images(sample_root / "images")
    assert index.duplicates == 1
    dated = [s for s in index.source.tolist() if index.sources[s].parent.name == "2024-05-01"]
    assert len(dated) == 1


def test_unreadable_shard_is_reported_not_fatal(copy_sample, sample_dataset, tmp_path):
    shard = sorted((copy_sample / "images" / "recent").glob("*.tar"))[0]
    index = images.index_images(copy_sample / "images")
    in_shard = {index.file_name(r) for r in range(len(index.ids)) if index.sources[index.source[r]] == shard}
    shard.write_bytes(b"\x00garbage" * 10)
    out = tmp_path / "out"
    resolved = resolve_sample(copy_sample, out)
    logged: list[str] = []
    summary = build.build_dataset(resolved, False, logged.append)
    problem = f"{shard}: truncated header"  # tarfile's own reason
    assert summary.images.unreadable_shards == [problem]
    assert logged.count(f"warning: unreadable shard skipped: {problem}") == 1
    # exactly the clean build's images less those the shard held
    clean = {p.name for p in (sample_dataset / "images").rglob("*") if p.suffix != ".txt"}
    lost = clean & in_shard
    assert len(lost) > 0 and summary.images.written == 1451 - len(lost)
    assert {p.name for p in (out / "images").rglob("*") if p.suffix != ".txt"} == clean - lost


def test_staging_leaves_no_temporary_files(sample_dataset):
    names = [p.name for p in sample_dataset.rglob("*")]
    assert not [n for n in names if n.endswith(".tmp") or n in (".lock", ".build-key")]
    assert os.listdir(sample_dataset.parent) == ["dataset"]
