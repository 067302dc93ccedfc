"""Metadata written the way the public dumps were written (pyarrow, pandas with and without its index,
polars; every string, integer and flag encoding they produce; rows in any order, row groups of any size)
reads without a traceback, and every caption equals the independent implementation's."""
import re

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from helpers import run_captions, write_normalized
from nasty_posts import nasty_posts
from reference.reference_caption import reference_caption
from test_bad_metadata import write_images

from kohaku_prep.cli import main
from kohaku_prep.dataset import metadata
from kohaku_prep.errors import PrepError

TEXT = ["created_at", "rating", "file_ext", "md5", "file_url", *(f"tag_string_{c}" for c in
                                                                  ("general", "character", "copyright", "artist",
                                                                   "meta"))]


@pytest.fixture(scope="module")
def posts():
    return nasty_posts(700, seed=12)


def assert_captions_match(got: dict, posts: list[dict]):
    expected = {p["id"]: reference_caption(p) for p in posts}
    assert len(got) == len(posts)
    assert [(i, got[i], expected[i]) for i in expected if got[i] != expected[i]][:3] == []


def shuffled(posts, seed=0):
    order = np.random.default_rng(seed).permutation(len(posts))
    return [posts[i] for i in order]


STRING_TYPES = {"large_string": pa.large_string(), "string_view": pa.string_view(), "dictionary": "dictionary"}


@pytest.mark.parametrize("strings", list(STRING_TYPES))
def test_pyarrow_encodings(tmp_path, posts, strings):
    """Each string encoding; int32 ids, uint16 fav_count, 0/1 int8 flags; shuffled rows, row groups of 37."""
    table = pa.Table.from_pylist(shuffled(posts))
    columns = {}
    for name in table.column_names:
        column = table[name]
        if name in TEXT:
            column = column.dictionary_encode() if strings == "dictionary" else column.cast(STRING_TYPES[strings])
        elif name == "id":
            column = column.cast(pa.int32())
        elif name == "fav_count":
            column = column.cast(pa.uint16())
        elif name in ("is_deleted", "is_banned"):
            column = column.cast(pa.int8())
        columns[name] = column
    pq.write_table(pa.table(columns), tmp_path / "posts.parquet", row_group_size=37)
    assert_captions_match(run_captions(tmp_path / "posts.parquet"), posts)


def deepghs_frame(posts) -> pd.DataFrame:
    """deepghs danbooru2024's columns: media_asset.* among them, parent_id float64 with NaN, `id` the index."""
    frame = pd.DataFrame(shuffled(posts, 1))
    frame["parent_id"] = [float(i) if i % 3 else np.nan for i in range(len(frame))]
    frame["media_asset.id"] = frame["id"] * 2
    frame["rating"] = frame["rating"].astype("category")  # pandas writes a category as a dictionary
    return frame.set_index("id")


def test_pandas_with_id_as_index_is_the_deepghs_layout(tmp_path, posts):
    deepghs_frame(posts).to_parquet(tmp_path / "metadata.parquet", row_group_size=100)
    assert pq.read_schema(tmp_path / "metadata.parquet").names[-1] == "id"
    meta = metadata.locate(tmp_path / "metadata.parquet")
    assert meta.layout == "deepghs danbooru2024 layout"
    assert_captions_match(run_captions(tmp_path / "metadata.parquet"), posts)


@pytest.mark.parametrize("index", [False, True], ids=["without index", "with its range index"])
def test_pandas_without_id_index(tmp_path, posts, index):
    frame = pd.DataFrame(shuffled(posts, 2))
    frame["is_banned"] = frame["is_banned"].astype("boolean")  # pandas' nullable dtypes
    frame["fav_count"] = frame["fav_count"].astype("Int32")
    frame.to_parquet(tmp_path / "posts.parquet", index=index)
    assert_captions_match(run_captions(tmp_path / "posts.parquet"), posts)


def test_polars(tmp_path, posts):
    frame = pl.from_dicts(list(reversed(posts)), infer_schema_length=None)
    frame.write_parquet(tmp_path / "posts.parquet", row_group_size=64)
    types = pq.read_schema(tmp_path / "posts.parquet")
    assert not pa.types.is_string(types.field("tag_string_general").type)  # polars writes large or view strings
    assert_captions_match(run_captions(tmp_path / "posts.parquet"), posts)


def test_hakubooru_export_by_pandas(tmp_path, posts):
    """HakuBooru's export_parquet: pd.read_sql_query then to_parquet, for each table; SQLite booleans are 0/1
    integers, and an integer column holding NULL comes out float64."""
    folder = write_normalized(posts, tmp_path / "n")
    for name in ("post", "tag", "posttagrelation"):
        frame = pq.read_table(folder / f"{name}.parquet").to_pandas()
        if name == "post":
            frame["parent_id"] = [np.nan if i % 2 else float(i) for i in range(len(frame))]
            frame["fav_count"] = frame["fav_count"].astype("float64")  # as if a NULL had been among them
        frame.to_parquet(folder / f"{name}.parquet")
    pl.read_parquet(folder / "tag.parquet").write_parquet(folder / "tag.parquet")  # large strings
    assert_captions_match(run_captions(folder), posts)


def test_float_integers_must_be_whole(tmp_path, posts):
    frame = pd.DataFrame(posts[:5])
    frame["fav_count"] = frame["fav_count"].astype("float64") + 0.5
    frame.to_parquet(tmp_path / "posts.parquet")
    with pytest.raises(PrepError, match=r"column 'fav_count' holds \d+\.5, which is not an integer"):
        run_captions(tmp_path / "posts.parquet")


def isek_ai(posts) -> list[dict]:
    return [{re.sub("^tag_string_", "", k): v for k, v in p.items()} for p in posts]


def test_isek_ai_tag_columns_are_recognised(tmp_path, posts):
    pl.from_dicts(isek_ai(posts), infer_schema_length=None).write_parquet(tmp_path / "tags.parquet")
    assert metadata.locate(tmp_path / "tags.parquet").layout == "isek-ai danbooru-tags layout"
    assert_captions_match(run_captions(tmp_path / "tags.parquet"), posts)


def test_preset_columns_map_other_names(tmp_path, posts):
    renamed = [{("favs" if k == "fav_count" else k): v for k, v in p.items()} for p in posts]
    pq.write_table(pa.Table.from_pylist(renamed), tmp_path / "posts.parquet")
    with pytest.raises(PrepError, match=r"missing column 'fav_count' \(integer\); if this file names it otherwise, "
                                        r"set input.columns.fav_count"):
        run_captions(tmp_path / "posts.parquet")
    assert_captions_match(run_captions(tmp_path / "posts.parquet", columns={"fav_count": "favs"}), posts)
    with pytest.raises(PrepError, match=r"missing column 'favourites' \(integer\) \(for 'fav_count', "
                                        r"input.columns.fav_count\)"):
        run_captions(tmp_path / "posts.parquet", columns={"fav_count": "favourites"})


def test_cli_reports_the_layout_and_builds(tmp_path, posts):
    few = [dict(p, file_ext="jpg") for p in posts if not p["is_deleted"] and not p["is_banned"] and p["md5"]][:30]
    deepghs_frame(few).to_parquet(tmp_path / "metadata.parquet")
    images = write_images([p["id"] for p in few], tmp_path / "images")
    result = CliRunner().invoke(main, ["dataset", "--metadata", str(tmp_path / "metadata.parquet"), "--images",
                                       str(images), "--out", str(tmp_path / "out"), "input.bad_metadata=\"skip\""])
    assert result.exit_code == 0, result.output
    assert "metadata: flat (deepghs danbooru2024 layout), 1 file(s)" in result.output
    manifest = pq.read_table(tmp_path / "out" / "manifest.parquet", columns=["id", "caption"])
    got = dict(zip(manifest["id"].to_pylist(), manifest["caption"].to_pylist(), strict=True))
    assert got == {p["id"]: reference_caption(p) for p in few}  # the Epsilon preset's rule is the reference's


def test_mistyped_columns_are_still_errors(tmp_path, posts):
    table = pa.Table.from_pylist(posts[:3])
    table = table.set_column(table.schema.get_field_index("is_deleted"), "is_deleted", pa.array(["no"] * 3))
    pq.write_table(table, tmp_path / "posts.parquet")
    with pytest.raises(PrepError, match="column 'is_deleted' has type string, expected boolean or 0/1 integer"):
        run_captions(tmp_path / "posts.parquet")


def test_shards_written_by_different_writers_read_together(tmp_path, posts):
    half = len(posts) // 2
    pq.write_table(pa.Table.from_pylist(posts[:half]), tmp_path / "a.parquet")
    pl.from_dicts(posts[half:], infer_schema_length=None).write_parquet(tmp_path / "b.parquet")
    assert_captions_match(run_captions(tmp_path), posts)


def test_an_old_tag_list_export_is_one_line(tmp_path):
    pq.write_table(pa.table({"id": [1], "created_at": ["2020-01-01"], "tag_list": ["$1#$a#"],
                             "tag_count_general": [2]}), tmp_path / "post.parquet")
    pq.write_table(pa.table({"id": [1], "name": ["a"], "type": [0]}), tmp_path / "tag.parquet")
    with pytest.raises(PrepError, match=r"a HakuBooru database from before 2024-03-20 \(tags in post.tag_list"):
        metadata.locate(tmp_path)
