"""Bad metadata: structural problems are errors; a bad post is an error naming it (input.bad_metadata = "fail")
or is left out and counted as a stage of the report (input.bad_metadata = "skip", the Epsilon preset's)."""
import json
import re
from dataclasses import asdict
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from helpers import flat_post, write_flat, write_normalized
from PIL import Image

from kohaku_prep.cli import main
from kohaku_prep.dataset import build, metadata, selection
from kohaku_prep.dataset.bad_metadata import BadRows
from kohaku_prep.errors import PrepError
from kohaku_prep.preset import PRESET_DIR, FiltersSection, Pool, SelectionSection, resolve

QUIET = lambda line: None  # noqa: E731
HINT = 'input.bad_metadata = "skip" leaves such posts out'


def posts(n=6, **changes):
    """n good posts (ids 1..n, one per year band and rating), post 3 changed by `changes`."""
    out = [flat_post(i, f"{2025 - 3 * i}-06-01T12:00:00.000-04:00", "gsqe"[i % 4], 10 * i, general="1girl smile",
                     character="hatsune_miku", artist="wlop", meta="highres") for i in range(1, n + 1)]
    change(out[2], **changes)
    return out


def change(post, **changes):
    """Set fields of a flat post; a tag category's name sets its tag string."""
    post.update({f"tag_string_{k}" if f"tag_string_{k}" in post else k: v for k, v in changes.items()})


def raw_strings(values: list) -> pa.Array:
    """A string array holding exactly these bytes (pyarrow checks UTF-8 when it builds one from Python)."""
    data = b"".join(v or b"" for v in values)
    offsets = np.concatenate([[0], np.cumsum([len(v or b"") for v in values])]).astype(np.int32)
    validity = np.packbits(np.array([v is not None for v in values]), bitorder="little")
    return pa.Array.from_buffers(pa.string(), len(values), [pa.py_buffer(validity.tobytes()),
                                                             pa.py_buffer(offsets.tobytes()), pa.py_buffer(data)])


def replace_column(path, name, array):
    table = pq.read_table(path)
    pq.write_table(table.set_column(table.schema.get_field_index(name), name, array), path)


def write_images(ids, folder):
    folder.mkdir(parents=True, exist_ok=True)
    for i in ids:
        Image.new("RGB", (16, 24), (i % 256, 0, 0)).save(folder / f"{i}.jpg")
    return folder


def build_dataset(tmp_path, metadata_path, mode, extra=(), name="out", images=None):
    if images is None:
        images = tmp_path / "images"
        if not images.exists():
            write_images(range(1, 30), images)
    resolved = resolve(PRESET_DIR / "epsilon.toml", None, [
        f'input.metadata="{metadata_path}"', f'input.images="{images}"', f'output.dir="{tmp_path / name}"',
        f'input.bad_metadata="{mode}"', *extra])
    return build.build_dataset(resolved, False, QUIET)


def stage(summary, name):
    (found,) = [s for s in summary.stages if s.name == name]
    return asdict(found)


def captions_of(tmp_path, name="out"):
    table = pq.read_table(tmp_path / name / "manifest.parquet", columns=["id", "caption"])
    return dict(zip(table["id"].to_pylist(), table["caption"].to_pylist(), strict=True))


def read_lenient(path, dated=False):
    lenient = BadRows("skip")
    table = metadata.read_posts(metadata.locate(path), "danbooru", lenient, dated=dated)
    return table, {s.problem: (s.count, s.first) for s in lenient.left_out}


# ---------------------------------------------------------------- the preset key

def test_bad_metadata_is_validated_like_every_key():
    assert resolve(None).preset.input.bad_metadata == "fail"
    assert resolve(PRESET_DIR / "epsilon.toml").preset.input.bad_metadata == "skip"
    with pytest.raises(PrepError, match=r"'input.bad_metadata' must be 'fail' or 'skip', got 'drop'"):
        resolve(PRESET_DIR / "epsilon.toml", None, ["input.bad_metadata=drop"])
    with pytest.raises(PrepError, match=r"unknown key 'input.bad_metdata'; did you mean 'input.bad_metadata'"):
        resolve(None, None, ["input.bad_metdata=skip"])


def test_bad_rows_fail_at_the_first_or_record_each_kind_in_problem_order():
    strict = BadRows("fail")
    with pytest.raises(PrepError, match=rf"^posts.parquet: column 'id' has 2 null value\(s\); {re.escape(HINT)}$"):
        strict.found("bad metadata: id null", 2, "first: ...", "posts.parquet: column 'id' has 2 null value(s)")
    assert strict.left_out == ()
    lenient = BadRows("skip")
    lenient.found("bad tag: holds ','", 1, "first: a", "error a")
    lenient.found("bad metadata: id null", 2, "first: b", "error b")
    lenient.found("bad tag: holds ','", 3, "first: c", "error c")  # another chunk: counted, its first kept
    assert [(s.problem, s.count, s.first) for s in lenient.left_out] == [
        ("bad metadata: id null", 2, "first: b"), ("bad tag: holds ','", 4, "first: a")]
    with pytest.raises(ValueError):
        BadRows("drop")  # type: ignore[arg-type]


# ---------------------------------------------------------------- structural problems: errors in both modes

@pytest.mark.parametrize("mode", ["fail", "skip"])
@pytest.mark.parametrize("part", ["flat/posts-000", "normalized/post", "normalized/tag", "normalized/posttagrelation"])
def test_truncated_parquet_is_an_error_in_both_modes(copy_sample, tmp_path, mode, part):
    path = copy_sample / "metadata" / f"{part}.parquet"
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])  # an interrupted download
    with pytest.raises(PrepError, match=rf"{re.escape(str(path))}: not a readable Parquet file \(Parquet magic"):
        build_dataset(tmp_path, path.parent, mode, images=copy_sample / "images")
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


@pytest.mark.parametrize("mode", ["fail", "skip"])
def test_a_damaged_tag_column_is_a_one_line_error(copy_sample, tmp_path, mode):
    """The footer is intact and the post columns read; the tag column's pages are garbage."""
    path = copy_sample / "metadata" / "flat" / "posts-000.parquet"
    chunk = pq.ParquetFile(path).metadata.row_group(0).column(5)
    assert chunk.path_in_schema == "tag_string_general"
    start = chunk.dictionary_page_offset or chunk.data_page_offset
    data = bytearray(path.read_bytes())
    data[start:start + chunk.total_compressed_size] = b"\xff" * chunk.total_compressed_size
    path.write_bytes(bytes(data))
    with pytest.raises(PrepError, match=rf"^{re.escape(str(path))}: cannot read \([^\n]*\)$"):
        build_dataset(tmp_path, path.parent, mode, images=copy_sample / "images")


@pytest.mark.parametrize("mode", ["fail", "skip"])
def test_missing_and_mistyped_columns_are_errors_in_both_modes(tmp_path, mode):
    path = write_flat(posts(), tmp_path / "m")
    pq.write_table(pq.read_table(path).drop_columns(["rating"]), path)
    with pytest.raises(PrepError, match=r"posts.parquet: missing column 'rating' \(string or integer\)"):
        metadata.read_posts(metadata.locate(path), "danbooru", BadRows(mode))
    path = write_flat(posts(), tmp_path / "t")
    replace_column(path, "fav_count", pa.array(["1"] * 6))
    with pytest.raises(PrepError, match="column 'fav_count' has type string, expected integer"):
        metadata.read_posts(metadata.locate(path), "danbooru", BadRows(mode))


def test_an_empty_selection_is_an_error_when_every_post_is_bad(tmp_path):
    path = write_flat([flat_post(i, "2020-01-01", "x", 1) for i in (1, 2)], tmp_path / "m")
    with pytest.raises(PrepError, match="the selection is empty; nothing to build") as err:
        build_dataset(tmp_path, path, "skip")
    assert re.search(r"bad metadata: unknown rating +0 +2 +first: posts.parquet, post 1, rating 'x'", str(err.value))


# ---------------------------------------------------------------- bad posts: one test per problem, both modes

POST_PROBLEMS: dict[str, tuple[dict[str, Any], str, str, str]] = {  # name: (changes to post 3, strict error,
    # lenient stage, its note)
    "null id": (dict(id=None), r"posts.parquet: column 'id' has 1 null value\(s\), first null in row 2;",
                "bad metadata: id null", "first: posts.parquet, row 2, id null"),
    "unknown rating": (dict(rating="safe"), r"column 'rating' has 1 unknown value\(s\), first 'safe' in post 3 "
                       r"\(rating scheme 'danbooru'\);", "bad metadata: unknown rating",
                       "first: posts.parquet, post 3, rating 'safe'"),
    "null rating": (dict(rating=None), r"column 'rating' has 1 unknown value\(s\), first null in post 3",
                    "bad metadata: unknown rating", "first: posts.parquet, post 3, rating null"),
    "null fav_count": (dict(fav_count=None), r"column 'fav_count' has 1 null or negative value\(s\), first null "
                       "in post 3;", "bad metadata: fav_count null or negative",
                       "first: posts.parquet, post 3, fav_count null"),
    "negative fav_count": (dict(fav_count=-4), r"column 'fav_count' has 1 null or negative value\(s\), first -4 "
                           "in post 3;", "bad metadata: fav_count null or negative",
                           "first: posts.parquet, post 3, fav_count -4"),
    "null is_deleted": (dict(is_deleted=None), r"column 'is_deleted' has 1 null value\(s\), first null in post 3;",
                        "bad metadata: is_deleted or is_banned null",
                        "first: posts.parquet, post 3, is_deleted null"),
}


@pytest.mark.parametrize("problem", POST_PROBLEMS)
def test_bad_post_strict_names_file_column_post_value_and_count(tmp_path, problem):
    changes, message, _, _ = POST_PROBLEMS[problem]
    path = write_flat(posts(**changes), tmp_path / "m")
    with pytest.raises(PrepError, match=message) as err:
        build_dataset(tmp_path, path, "fail")
    assert str(err.value).startswith(str(path)) and str(err.value).endswith(HINT) and "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("problem", POST_PROBLEMS)
def test_bad_post_lenient_is_left_out_before_sampling_and_counted(tmp_path, problem):
    changes, _, name, note = POST_PROBLEMS[problem]
    summary = build_dataset(tmp_path, write_flat(posts(**changes), tmp_path / "m"), "skip")
    assert stage(summary, "metadata") == {"name": "metadata", "kept": 6, "dropped": 0, "note": ""}
    assert stage(summary, name) == {"name": name, "kept": 5, "dropped": 1, "note": note}
    assert [s.name for s in summary.stages][:2] == ["metadata", name]  # before the pools
    assert asdict(summary.bad_metadata) == {"mode": "skip", "left_out": {name: 1}}
    assert sorted(captions_of(tmp_path)) == [1, 2, 4, 5, 6]
    report = (tmp_path / "out" / "report.md").read_text()
    assert re.search(rf"{re.escape(name)} +5 +1  {re.escape(note)}", report)


def test_a_post_counts_once_under_its_first_problem(tmp_path):
    path = write_flat(posts(rating="?", fav_count=-1), tmp_path / "m")
    table, found = read_lenient(path)
    assert found == {"bad metadata: unknown rating": (1, "first: posts.parquet, post 3, rating '?'")}
    assert table["id"].to_pylist() == [1, 2, 4, 5, 6]


def test_normalized_integer_ratings_out_of_range(tmp_path):
    folder = write_normalized(posts(), tmp_path / "n")
    replace_column(folder / "post.parquet", "rating", pa.array([0, 1, 7, 3, None, 1], pa.int64()))
    with pytest.raises(PrepError, match=r"post.parquet: column 'rating' has 2 unknown value\(s\), first 7 in post 3"):
        metadata.read_posts(metadata.locate(folder), "danbooru", BadRows("fail"))
    table, found = read_lenient(folder)
    assert found == {"bad metadata: unknown rating": (2, "first: post.parquet, post 3, rating 7")}
    assert table["id"].to_pylist() == [1, 2, 4, 6]


@pytest.mark.parametrize("column", ["rating", "file_ext", "created_at"])
def test_text_that_is_not_utf8(tmp_path, column):
    path = write_flat(posts(), tmp_path / "m")
    values = pq.read_table(path)[column].to_pylist()
    values[2] = values[2][:1].encode() + b"\xff\xfe"
    replace_column(path, column, raw_strings([v if isinstance(v, bytes) else v.encode() for v in values]))
    shown = re.escape(repr(values[2]))
    with pytest.raises(PrepError, match=rf"column '{column}' has 1 value\(s\) that are not UTF-8, first {shown} "
                                        "in post 3;"):
        metadata.read_posts(metadata.locate(path), "danbooru", BadRows("fail"))
    table, found = read_lenient(path)
    assert found == {"bad metadata: not UTF-8": (1, f"first: posts.parquet, post 3, {column} {values[2]!r}")}
    assert table["id"].to_pylist() == [1, 2, 4, 5, 6]


def test_duplicate_ids_across_files(tmp_path):
    folder = tmp_path / "m"
    write_flat(posts()[:4], folder)
    (folder / "posts.parquet").rename(folder / "a.parquet")
    again = posts()[2:]
    again[0]["fav_count"] = 99  # post 3 twice, differing: which copy is right cannot be told
    write_flat(again, folder)
    (folder / "posts.parquet").rename(folder / "b.parquet")
    with pytest.raises(PrepError, match=r"^post id 3 appears more than once in the metadata \(in a.parquet, "
                                        r"b.parquet\); 2 id\(s\) on 4 rows in all; input.bad_metadata = \"skip\" "
                                        "leaves out every copy$"):
        build_dataset(tmp_path, folder, "fail")
    summary = build_dataset(tmp_path, folder, "skip")
    assert stage(summary, "metadata")["kept"] == 8
    assert stage(summary, "bad metadata: duplicate post id") == {
        "name": "bad metadata: duplicate post id", "kept": 4, "dropped": 4,
        "note": "every copy of 2 id(s) left out; first: post 3 in a.parquet, b.parquet"}
    assert sorted(captions_of(tmp_path)) == [1, 2, 5, 6]


def test_lenient_drops_come_before_sampling_so_quotas_are_met(tmp_path):
    path = write_flat([flat_post(i, "2020-01-01", "x" if i % 3 == 0 else "g", 1) for i in range(1, 101)],
                      tmp_path / "m")
    lenient = BadRows("skip")
    table = metadata.read_posts(metadata.locate(path), "danbooru", lenient)
    sel = selection.select(table, SelectionSection(seed=3, pools=[Pool(0, None, 60)]), FiltersSection(), lenient)
    assert len(sel.ids) == 60 and not np.isin(sel.ids, np.arange(3, 101, 3)).any()
    assert [(s.name, s.kept, s.dropped) for s in sel.stages[:3]] == [
        ("metadata", 100, 0), ("bad metadata: unknown rating", 67, 33), ("pool [0, ∞)", 60, 7)]


# ---------------------------------------------------------------- created_at without a year

def test_created_at_without_a_year_without_quirks(tmp_path):
    path = write_flat(posts(created_at="2010-13-45T00:00:00"), tmp_path / "m")
    no_quirks = ["caption.year_quirks=false"]
    with pytest.raises(PrepError, match=r"column 'created_at' has 1 value\(s\) without a readable date, first "
                                        r"'2010-13-45T00:00:00' in post 3; caption.year_quirks = true tags them "
                                        "'early' as HakuBooru did; " + re.escape(HINT)):
        build_dataset(tmp_path, path, "fail", no_quirks)
    summary = build_dataset(tmp_path, path, "skip", no_quirks)
    assert stage(summary, "bad metadata: created_at without a year") == {
        "name": "bad metadata: created_at without a year", "kept": 5, "dropped": 1,
        "note": "first: posts.parquet, post 3, created_at '2010-13-45T00:00:00'"}
    assert 3 not in captions_of(tmp_path)


@pytest.mark.parametrize("mode", ["fail", "skip"])
@pytest.mark.parametrize("created_at", [None, "not a date", "", "2010-13-45T00:00:00"])
def test_created_at_without_a_year_with_quirks_is_hakubooru_early_and_reported(tmp_path, mode, created_at):
    """The recipe's quirk mode defines such a post's caption, so it is kept in both modes, and counted."""
    summary = build_dataset(tmp_path, write_flat(posts(created_at=created_at), tmp_path / "m"), mode)
    assert captions_of(tmp_path)[3] == "1girl, hatsune miku, wlop, |||smile, highres, early, explicit, nsfw, " \
                                       "normal quality"  # 2016, "mid", had its created_at been readable
    assert stage(summary, "created_at without a year") == {
        "name": "created_at without a year", "kept": 6, "dropped": 0,
        "note": "1 kept with year tag 'early' (caption.year_quirks, HakuBooru's rule)"}
    assert summary.bad_metadata.left_out == {}


# ---------------------------------------------------------------- bad tags: found after selection, both shapes

TAG_PROBLEMS = {  # name: (flat tag string of post 3's copyright, the tag shown, stage, what the error says)
    "comma": ("vocaloid a,b", "'a,b'", "bad tag: holds ','", "holds the caption separator ','"),
    "keep separator": ("|||", "'|||'", "bad tag: holds '|||'", "holds the keep separator '|||'"),
    "tab": ("a\tb", "'a\\tb'", "bad tag: control character", "holds a control character"),
    "newline": ("vocaloid\n", "'vocaloid\\n'", "bad tag: control character", "holds a control character"),
    "C1 control": ("x\x85y", "'x\\x85y'", "bad tag: control character", "holds a control character"),
}


def with_tag(shape, tmp_path, copyright):
    post_list = posts(copyright=copyright)
    if shape == "flat":
        return write_flat(post_list, tmp_path / "flat")
    return write_normalized(post_list, tmp_path / "normalized")


@pytest.mark.parametrize("shape", ["flat", "normalized"])
@pytest.mark.parametrize("problem", TAG_PROBLEMS)
def test_bad_tag_strict_names_post_category_and_tag(tmp_path, shape, problem):
    copyright, shown, _, says = TAG_PROBLEMS[problem]
    path = with_tag(shape, tmp_path, copyright)
    source = path if shape == "flat" else path / "tag.parquet"
    with pytest.raises(PrepError) as err:
        build_dataset(tmp_path, path, "fail")
    assert str(err.value) == f"{source}: post 3, copyright tag {shown} {says}; {HINT}"


@pytest.mark.parametrize("shape", ["flat", "normalized"])
@pytest.mark.parametrize("problem", TAG_PROBLEMS)
def test_bad_tag_lenient_leaves_the_post_out_and_counts_it(tmp_path, shape, problem):
    copyright, shown, name, _ = TAG_PROBLEMS[problem]
    summary = build_dataset(tmp_path, with_tag(shape, tmp_path, copyright), "skip")
    source = "posts.parquet" if shape == "flat" else "tag.parquet"
    assert stage(summary, name) == {"name": name, "kept": 5, "dropped": 1,
                                    "note": f"first: {source}, post 3, copyright tag {shown}"}
    names = [s.name for s in summary.stages]
    assert names.index(name) == names.index("image not in the archive") + 1  # after the selection
    assert sorted(captions_of(tmp_path)) == [1, 2, 4, 5, 6]
    assert all(text.count("|||") == 1 and "\t" not in text for text in captions_of(tmp_path).values())


def test_bad_tags_leave_out_the_same_posts_from_both_shapes(tmp_path):
    post_list = [flat_post(i, "2020-01-01T00:00:00.000+00:00", "g", i, general="smile " + tag, artist="wlop")
                 for i, tag in enumerate(["a", "b,c", "d|||", "e\x7f", "", "f", "g,h i\tj"], start=1)]
    a = build_dataset(tmp_path, write_flat(post_list, tmp_path / "flat"), "skip", name="a")
    b = build_dataset(tmp_path, write_normalized(post_list, tmp_path / "normalized", seed=4), "skip", name="b")
    assert pq.read_table(tmp_path / "a" / "manifest.parquet").equals(pq.read_table(tmp_path / "b" / "manifest.parquet"))
    assert sorted(captions_of(tmp_path, "a")) == [1, 5, 6]
    for summary in (a, b):  # post 7 has two problems: counted once, under the first in TAG_PROBLEMS' order
        assert summary.bad_metadata.left_out == {
            "bad tag: control character": 2, "bad tag: holds ','": 1, "bad tag: holds '|||'": 1}
    assert [s.kept for s in a.stages] == [s.kept for s in b.stages]


@pytest.mark.parametrize("shape", ["flat", "normalized"])
def test_tag_that_is_not_utf8(tmp_path, shape):
    post_list = posts(copyright="vocaloid placeholder")
    if shape == "flat":
        path = write_flat(post_list, tmp_path / "flat")
        values = [v.encode().replace(b"placeholder", b"caf\xe9") for v in pq.read_table(path)["tag_string_copyright"]
                  .to_pylist()]
        replace_column(path, "tag_string_copyright", raw_strings(values))
        source = path
    else:
        path = write_normalized(post_list, tmp_path / "normalized")
        values = [v.encode().replace(b"placeholder", b"caf\xe9") for v in pq.read_table(path / "tag.parquet")["name"]
                  .to_pylist()]
        replace_column(path / "tag.parquet", "name", raw_strings(values))
        source = path / "tag.parquet"
    with pytest.raises(PrepError) as err:
        build_dataset(tmp_path, path, "fail")
    assert str(err.value) == f"{source}: post 3, copyright tag b'caf\\xe9' is not UTF-8; {HINT}"
    summary = build_dataset(tmp_path, path, "skip")
    assert stage(summary, "bad tag: not UTF-8")["note"] == f"first: {source.name}, post 3, copyright tag b'caf\\xe9'"
    assert sorted(captions_of(tmp_path)) == [1, 2, 4, 5, 6]


@pytest.mark.parametrize("name", [None, ""])
def test_normalized_tag_without_a_name(tmp_path, name):
    folder = write_normalized(posts(copyright="placeholder"), tmp_path / "normalized")
    table = pq.read_table(folder / "tag.parquet")
    names = [name if n == "placeholder" else n for n in table["name"].to_pylist()]
    replace_column(folder / "tag.parquet", "name", pa.array(names, pa.string()))
    with pytest.raises(PrepError) as err:
        build_dataset(tmp_path, folder, "fail")
    shown = "null" if name is None else "''"
    assert str(err.value) == f"{folder / 'tag.parquet'}: post 3, copyright tag {shown} has a null or empty name; {HINT}"
    summary = build_dataset(tmp_path, folder, "skip")
    assert stage(summary, "bad tag: null or empty name")["dropped"] == 1


def test_unused_bad_tag_names_are_no_problem(tmp_path):
    """The normalized tag table may hold bad names that no selected post uses."""
    folder = write_normalized(posts(), tmp_path / "normalized")
    table = pq.read_table(folder / "tag.parquet")
    extra = pa.table({"id": pa.array([900, 901, 902], pa.int64()), "name": raw_strings([b"a,b", None, b"\xff"]),
                      "type": pa.array([0, 0, 0], pa.int64())})
    pq.write_table(pa.concat_tables([table, extra]), folder / "tag.parquet")
    summary = build_dataset(tmp_path, folder, "fail")
    assert asdict(summary.bad_metadata) == {"mode": "fail", "left_out": {}} and len(captions_of(tmp_path)) == 6


@pytest.mark.parametrize("shape", ["flat", "normalized"])
def test_null_and_empty_tag_strings_and_doubled_spaces_are_no_problem(tmp_path, shape):
    """danbooru writes "" for a category without tags and may double a space: neither is bad metadata."""
    post_list = posts()
    change(post_list[0], character=None, copyright="", artist=None, meta=None)
    change(post_list[1], general="  1girl   smile ", character="", artist="", meta="")
    path = write_flat(post_list, tmp_path / "m") if shape == "flat" else write_normalized(post_list, tmp_path / "m")
    summary = build_dataset(tmp_path, path, "fail")
    got = captions_of(tmp_path)
    assert got[1] == "1girl, |||smile, newest, sensitive, normal quality"
    assert got[2] == "1girl, |||smile, recent, nsfw, low quality" and summary.bad_metadata.left_out == {}


# ---------------------------------------------------------------- the command line, end to end

def run(*args):
    return CliRunner().invoke(main, list(args))


def test_cli_strict_is_one_line_and_exit_1(tmp_path):
    path = write_flat(posts(copyright="a,b"), tmp_path / "m")
    images = write_images(range(1, 7), tmp_path / "images")
    result = run("dataset", "--metadata", str(path), "--images", str(images), "--out", str(tmp_path / "out"),
                 "input.bad_metadata=fail")
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {path}: post 3, copyright tag 'a,b' holds the caption separator ','; {HINT}"]
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


def test_cli_epsilon_is_lenient_and_reports(tmp_path):
    post_list = posts(n=9)
    change(post_list[4], meta="highres |||")
    post_list[6]["fav_count"] = -1
    path = write_normalized(post_list, tmp_path / "n")
    replace_column(path / "post.parquet", "rating", pa.array([0, 1, 9, 3, 0, 1, 2, 3, 0], pa.int64()))
    images = write_images(range(1, 10), tmp_path / "images")
    result = run("dataset", "--metadata", str(path), "--images", str(images), "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert re.search(r"^bad metadata: unknown rating +8 +1  first: post.parquet, post 3, rating 9$", result.output,
                     re.M)
    assert re.search(r"^bad metadata: fav_count null or negative +7 +1  first: post.parquet, post 7, fav_count -1$",
                     result.output, re.M)
    assert re.search(r"^bad tag: holds '\|\|\|' +6 +1  first: tag.parquet, post 5, meta tag '\|\|\|'$",
                     result.output, re.M)
    assert lines[-2].startswith("dataset: 6 images with captions") and lines[-1].startswith("report: ")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["bad_metadata"] == {"mode": "skip", "left_out": {
        "bad metadata: unknown rating": 1, "bad metadata: fav_count null or negative": 1, "bad tag: holds '|||'": 1}}
    assert "bad tag: holds '|||'" in (tmp_path / "out" / "report.md").read_text()
