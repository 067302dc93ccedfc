import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import flat_post, write_flat

from kohaku_prep.dataset import metadata
from kohaku_prep.dataset.bad_metadata import BadRows
from kohaku_prep.errors import PrepError


def read(path, scheme="danbooru"):
    return metadata.read_posts(metadata.locate(path), scheme, BadRows("fail"))


def test_both_shapes_of_the_sample_read_the_same(sample_root):
    flat = metadata.locate(sample_root / "metadata" / "flat")
    normalized = metadata.locate(sample_root / "metadata" / "normalized")
    assert (flat.shape, normalized.shape) == ("flat", "normalized")
    a, b = (metadata.read_posts(meta, "danbooru", BadRows("fail")) for meta in (flat, normalized))
    assert a.equals(b)
    ids = a["id"].to_numpy()[::7]
    assert by_post_and_category(flat, ids) == by_post_and_category(normalized, ids)


def by_post_and_category(meta: metadata.Metadata, ids) -> dict:
    """The contract of iter_tags: each post once; within a post and category, tags in stored order."""
    out: dict[tuple[int, int], list[str]] = {}
    for chunk_ids, tags in metadata.iter_tags(meta, ids):
        names = tags.names.cast(pa.string()).to_pylist()
        for post, category, name in zip(chunk_ids[tags.post_index], tags.category, names, strict=True):
            out.setdefault((int(post), int(category)), []).append(name)
    return out


def test_posts_are_sorted_and_normalized(tmp_path):
    posts = [flat_post(i, "2020-01-01", r, 1) for i, r in [(5, "E"), (2, "g"), (9, "q")]]
    posts[0]["md5"] = None
    posts[1]["is_banned"] = True
    t = read(write_flat(posts, tmp_path))
    assert t["id"].to_pylist() == [2, 5, 9]
    assert t["rating"].to_pylist() == [0, 3, 2]
    assert t["is_hidden"].to_pylist() == [True, True, False]


def test_pre2022_rating_scheme(tmp_path):
    path = write_flat([flat_post(1, "2019-01-01", "s", 1), flat_post(2, "2019-01-01", "q", 1)], tmp_path)
    assert read(path, "danbooru-pre2022")["rating"].to_pylist() == [0, 2]
    assert read(path, "danbooru")["rating"].to_pylist() == [1, 2]
    g = write_flat([flat_post(1, "2023-01-01", "g", 1)], tmp_path / "g")
    with pytest.raises(PrepError, match="unknown value.*first 'g'.*danbooru-pre2022"):
        read(g, "danbooru-pre2022")


def test_missing_column_names_file_and_column(tmp_path):
    table = pa.Table.from_pylist([flat_post(1, "2020-01-01", "g", 1)]).drop_columns(["fav_count"])
    pq.write_table(table, tmp_path / "p.parquet")
    with pytest.raises(PrepError, match=r"p.parquet: missing column 'fav_count' \(integer\)"):
        read(tmp_path / "p.parquet")


def test_mistyped_column(tmp_path):
    table = pa.Table.from_pylist([flat_post(1, "2020-01-01", "g", 1)])
    table = table.set_column(table.schema.get_field_index("id"), "id", pa.array(["1"]))
    pq.write_table(table, tmp_path / "p.parquet")
    with pytest.raises(PrepError, match="column 'id' has type string, expected integer"):
        read(tmp_path / "p.parquet")


def test_corrupt_parquet(tmp_path):
    (tmp_path / "p.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(PrepError, match="not a readable Parquet file"):
        read(tmp_path / "p.parquet")


def test_duplicate_ids_across_files(tmp_path):
    write_flat([flat_post(1, "2020-01-01", "g", 1)], tmp_path / "a")
    (tmp_path / "a" / "posts.parquet").rename(tmp_path / "a" / "x.parquet")
    write_flat([flat_post(1, "2020-01-01", "g", 1)], tmp_path / "a")
    with pytest.raises(PrepError, match="post id 1 appears more than once"):
        read(tmp_path / "a")


def test_missing_inputs(tmp_path):
    with pytest.raises(PrepError, match="metadata not found"):
        metadata.locate(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PrepError, match="no .parquet files"):
        metadata.locate(tmp_path / "empty")
    with pytest.raises(PrepError, match="normalized metadata needs"):
        metadata.locate(tmp_path / "empty", "normalized")


def test_unknown_tag_id_in_relation(sample_root, tmp_path):
    folder = tmp_path / "n"
    folder.mkdir()
    src = sample_root / "metadata" / "normalized"
    for name in ("post", "tag"):
        (folder / f"{name}.parquet").write_bytes((src / f"{name}.parquet").read_bytes())
    pq.write_table(pa.table({"id": [1], "post_id": [pq.read_table(src / "post.parquet")["id"][0].as_py()],
                             "tag_id": [10**9]}), folder / "posttagrelation.parquet")
    meta = metadata.locate(folder)
    ids = np.sort(metadata.read_posts(meta, "danbooru", BadRows("fail"))["id"].to_numpy())
    with pytest.raises(PrepError, match="tag id 1000000000 is not in tag.parquet"):
        list(metadata.iter_tags(meta, ids))


@pytest.mark.parametrize("layout", ["post order, small row groups", "shuffled", "no statistics"])
def test_normalized_tags_do_not_depend_on_relation_layout(sample_root, tmp_path, monkeypatch, layout):
    """Row groups in post order stream a chunk at a time (a post may span two groups); any other layout
    is gathered and sorted. Both give each post its tags in relation-id order."""
    src = sample_root / "metadata" / "normalized"
    folder = tmp_path / "n"
    folder.mkdir()
    for name in ("post", "tag"):
        (folder / f"{name}.parquet").write_bytes((src / f"{name}.parquet").read_bytes())
    relation = pq.read_table(src / "posttagrelation.parquet")
    relation = relation.take(np.lexsort((relation["id"].to_numpy(), relation["post_id"].to_numpy())))
    if layout == "shuffled":
        relation = relation.take(np.random.default_rng(0).permutation(relation.num_rows))
    pq.write_table(relation, folder / "posttagrelation.parquet", row_group_size=37,
                   write_statistics=layout != "no statistics")
    monkeypatch.setattr(metadata, "_CHUNK_POSTS", 53)
    meta = metadata.locate(folder)
    groups = metadata._relation_groups(meta)
    in_post_order = metadata._post_order_starts(groups) is not None
    assert len(groups) > 10 and in_post_order == (layout == "post order, small row groups")
    ids = metadata.read_posts(meta, "danbooru", BadRows("fail"))["id"].to_numpy()[1::3]
    flat = metadata.locate(sample_root / "metadata" / "flat")
    assert by_post_and_category(meta, ids) == by_post_and_category(flat, ids)
    chunks = [chunk_ids for chunk_ids, _ in metadata.iter_tags(meta, ids)]
    assert np.array_equal(np.concatenate(chunks), ids) and max(map(len, chunks)) <= 53


def test_positions_dense_and_sparse():
    ids = np.array([3, 7, 10**12])
    sparse, dense = metadata.Positions(ids), metadata.Positions(ids[:2])
    assert sparse.table is None and dense.table is not None
    values = np.array([7, 3, 4, -1, 10**12, 8])
    assert sparse(values).tolist() == [1, 0, -1, -1, 2, -1]
    assert dense(values).tolist() == [1, 0, -1, -1, -1, -1]
    assert metadata.Positions(np.zeros(0, np.int64))(values).tolist() == [-1] * 6
