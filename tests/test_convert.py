"""`kohaku-prep convert`: danbooru's JSON Lines post dump and HakuBooru's SQLite database become the tables
the dataset stage reads, with the same captions as the independent implementation; bad input is one line."""
import json
import sqlite3

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from helpers import run_captions, write_normalized
from nasty_posts import nasty_posts
from reference.reference_caption import reference_caption

from kohaku_prep.cli import main
from kohaku_prep.dataset import convert, metadata
from kohaku_prep.errors import PrepError

NOTHING = lambda n: None  # noqa: E731


@pytest.fixture(scope="module")
def posts():
    return nasty_posts(500, seed=41)


def danbooru_line(post: dict) -> bytes:
    """A post as danbooru's dump writes it: its own field names, more fields, nested objects."""
    full = {**post, "tag_string": " ".join(filter(None, (post[f"tag_string_{c}"] or "" for c in
                                                         ("general", "character", "copyright", "artist", "meta")))),
            "score": 3, "parent_id": None, "media_asset": {"id": post["id"] * 3, "variants": [
                {"type": "180x180", "url": "https://cdn.donmai.us/x.jpg", "width": 180}], "is_public": True}}
    return json.dumps(full, ensure_ascii=False).encode() + b"\n"


def write_jsonl(path, lines: list[bytes]):
    path.write_bytes(b"".join(lines))
    return path


def assert_captions_match(got: dict, posts: list[dict]):
    assert len(got) == len(posts)
    assert [(p["id"], got[p["id"]], reference_caption(p)) for p in posts if got[p["id"]] != reference_caption(p)][
        :3] == []


def test_json_lines_to_flat_parquet(tmp_path, posts):
    src = write_jsonl(tmp_path / "posts.json", [danbooru_line(p) for p in posts])
    seen: list[int] = []
    n, bad = convert.convert_json_lines(src, tmp_path / "posts.parquet", False, seen.append, block_bytes=4096)
    assert (n, bad.count) == (len(posts), 0) and sum(seen) == src.stat().st_size and len(seen) > 10
    assert metadata.locate(tmp_path / "posts.parquet").layout == \
        "danbooru JSON Lines post dump, converted from posts.json"
    assert_captions_match(run_captions(tmp_path / "posts.parquet"), posts)
    assert not list(tmp_path.glob(".*partial"))


BAD_LINES = {
    b'{"id": 7, "rating": "g"\n': "not JSON",
    b'[1, 2]\n': "a JSON list, not an object",
    b'{"id": "12", "rating": "g"}\n': "field 'id' holds \"12\", not an integer",
    b'{"id": 13, "is_deleted": 1}\n': "field 'is_deleted' holds 1, not true or false",
    b'{"id": 14, "tag_string_general": "\xff"}\n': "not UTF-8",
}


@pytest.mark.parametrize("line", list(BAD_LINES))
def test_bad_line_fails_naming_it_or_is_counted(tmp_path, posts, line):
    lines = [danbooru_line(p) for p in posts[:40]]
    lines[25:25] = [line, b"\n"]  # a blank line is no post, and no problem either
    src = write_jsonl(tmp_path / "posts.json", lines)
    with pytest.raises(PrepError, match=rf"posts.json: line 26 is not a post \({BAD_LINES[line][:12]}.*\); "
                                        "--bad-lines skip leaves such lines out"):
        convert.convert_json_lines(src, tmp_path / "posts.parquet", False, NOTHING, block_bytes=1000)
    assert not (tmp_path / "posts.parquet").exists() and not list(tmp_path.glob(".*partial"))
    n, bad = convert.convert_json_lines(src, tmp_path / "posts.parquet", True, NOTHING, block_bytes=1000)
    assert (n, bad.count) == (40, 1) and bad.first.startswith(f"line 26: {BAD_LINES[line][:12]}")
    assert_captions_match(run_captions(tmp_path / "posts.parquet"), posts[:40])


def test_cli_convert_then_dataset_hint(tmp_path, posts):
    src = write_jsonl(tmp_path / "posts.json", [danbooru_line(p) for p in posts[:20]] + [b"oops\n"])
    runner = CliRunner()
    result = runner.invoke(main, ["convert", str(src), str(tmp_path / "m.parquet"), "--bad-lines", "skip"])
    assert result.exit_code == 0, result.output
    assert "bad lines: 1 left out, first line 21: not JSON" in result.output
    assert "convert: 20 posts in" in result.output
    again = runner.invoke(main, ["convert", str(src), str(tmp_path / "m.parquet")])
    assert again.exit_code == 1 and again.output.count("\n") == 1 and "already exists" in again.output
    hint = runner.invoke(main, ["dataset", "--metadata", str(src), "--images", str(tmp_path), "--out",
                                str(tmp_path / "ds")])
    assert hint.exit_code == 1 and hint.output.splitlines()[-1].startswith("error: ")
    assert f"a JSON post dump, not Parquet; run `kohaku-prep convert {src} posts.parquet`" in hint.output


def test_json_without_category_tag_strings_or_as_an_array(tmp_path):
    src = write_jsonl(tmp_path / "posts.json", [b'{"id": 1, "tag_string": "a b", "rating": "g"}\n'])
    with pytest.raises(PrepError, match="no tag_string_general .* needs danbooru's tag table"):
        convert.convert_json_lines(src, tmp_path / "p.parquet", False, NOTHING)
    src.write_text('[{"id": 1}]')
    with pytest.raises(PrepError, match="a JSON array, not JSON Lines"):
        convert.convert_json_lines(src, tmp_path / "p.parquet", False, NOTHING)
    src.write_bytes(b"\x1f\x8b\x08\x00 a tar.gz")
    with pytest.raises(PrepError, match="compressed; extract posts.json from it first"):
        convert.convert_json_lines(src, tmp_path / "p.parquet", False, NOTHING)
    pq.write_table(pa.table({"id": [1]}), src)
    with pytest.raises(PrepError, match="already Parquet; pass it to `kohaku-prep dataset --metadata` as it is"):
        convert.convert_json_lines(src, tmp_path / "p.parquet", False, NOTHING)


# ---------------------------------------------------------------- HakuBooru's SQLite database

HAKUBOORU_DDL = """
CREATE TABLE "tag" ("id" INTEGER NOT NULL PRIMARY KEY, "name" VARCHAR(255) NOT NULL, "type" INTEGER NOT NULL,
  "popularity" INTEGER NOT NULL);
CREATE TABLE "post" ("id" INTEGER NOT NULL PRIMARY KEY, "created_at" VARCHAR(255) NOT NULL,
  "uploader_id" INTEGER NOT NULL, "source" VARCHAR(255) NOT NULL, "md5" VARCHAR(255), "parent_id" INTEGER,
  "has_children" INTEGER NOT NULL, "is_deleted" INTEGER NOT NULL, "is_banned" INTEGER NOT NULL,
  "pixiv_id" INTEGER, "has_active_children" INTEGER NOT NULL, "bit_flags" INTEGER NOT NULL,
  "has_large" INTEGER NOT NULL, "has_visible_children" INTEGER NOT NULL, "image_width" INTEGER NOT NULL,
  "image_height" INTEGER NOT NULL, "file_size" INTEGER NOT NULL, "file_ext" VARCHAR(255) NOT NULL,
  "rating" INTEGER NOT NULL, "score" INTEGER NOT NULL, "up_score" INTEGER NOT NULL,
  "down_score" INTEGER NOT NULL, "fav_count" INTEGER NOT NULL, "file_url" VARCHAR(255),
  "large_file_url" VARCHAR(255), "preview_file_url" VARCHAR(255));
CREATE TABLE "posttagrelation" ("id" INTEGER NOT NULL PRIMARY KEY, "post_id" INTEGER NOT NULL,
  "tag_id" INTEGER NOT NULL, FOREIGN KEY ("post_id") REFERENCES "post" ("id"),
  FOREIGN KEY ("tag_id") REFERENCES "tag" ("id"));
CREATE INDEX "posttagrelation_post_id" ON "posttagrelation" ("post_id");
CREATE INDEX "posttagrelation_tag_id" ON "posttagrelation" ("tag_id");
CREATE TABLE "localpost" ("id" INTEGER NOT NULL PRIMARY KEY, "filepath" VARCHAR(255), "latentpath" VARCHAR(255),
  "post_id" INTEGER NOT NULL);
"""


def write_hakubooru_db(posts, tmp_path, with_index=True):
    """HakuBooru's peewee schema, filled from the normalized tables of `posts` (less its unique index on
    tag.name: the nasty posts use one name in several categories)."""
    folder = write_normalized(posts, tmp_path / "normalized")
    path = tmp_path / "danbooru2023.db"
    db = sqlite3.connect(path)
    db.executescript(HAKUBOORU_DDL if with_index else HAKUBOORU_DDL.replace(
        'CREATE INDEX "posttagrelation_post_id" ON "posttagrelation" ("post_id");', ""))
    post = pq.read_table(folder / "post.parquet").to_pylist()
    db.executemany('INSERT INTO post (id, created_at, uploader_id, source, md5, has_children, is_deleted, '
                   'is_banned, has_active_children, bit_flags, has_large, has_visible_children, image_width, '
                   'image_height, file_size, file_ext, rating, score, up_score, down_score, fav_count) VALUES '
                   '(?, ?, 1, "", ?, 0, ?, ?, 0, 0, 0, 0, 10, 10, 100, ?, ?, 0, 0, 0, ?)',
                   [(p["id"], p["created_at"], p["md5"], p["is_deleted"], p["is_banned"], p["file_ext"],
                     p["rating"], p["fav_count"]) for p in post])
    tags = pq.read_table(folder / "tag.parquet").to_pylist()
    db.executemany("INSERT INTO tag VALUES (?, ?, ?, 0)", [(t["id"], t["name"], t["type"]) for t in tags])
    relation = pq.read_table(folder / "posttagrelation.parquet").to_pylist()
    db.executemany("INSERT INTO posttagrelation VALUES (?, ?, ?)", [(r["id"], r["post_id"], r["tag_id"])
                                                                     for r in relation])
    db.commit()
    db.close()
    return path


@pytest.mark.parametrize("with_index", [True, False])
def test_sqlite_to_normalized_tables(tmp_path, posts, with_index):
    db = write_hakubooru_db([p for p in posts if p["created_at"] is not None], tmp_path, with_index)
    counts = convert.convert_sqlite(db, tmp_path / "meta", NOTHING)
    assert counts["post"] == sum(p["created_at"] is not None for p in posts)
    meta = metadata.locate(tmp_path / "meta")
    assert meta.shape == "normalized"
    post_ids = pq.read_table(tmp_path / "meta" / "posttagrelation.parquet")["post_id"].to_pylist()
    assert (post_ids == sorted(post_ids)) == with_index  # in post order where the index allows: streamed
    assert_captions_match(run_captions(tmp_path / "meta"), [p for p in posts if p["created_at"] is not None])


def test_old_tag_list_database_is_one_line(tmp_path):
    path = tmp_path / "danbooru2023.db"
    db = sqlite3.connect(path)
    db.executescript('CREATE TABLE post (id INTEGER PRIMARY KEY, created_at VARCHAR, tag_list TEXT, '
                     'tag_count_general INTEGER); '
                     'CREATE TABLE tag (id INTEGER PRIMARY KEY, name VARCHAR, type INTEGER);')
    db.close()
    result = CliRunner().invoke(main, ["convert", str(path), str(tmp_path / "meta")])
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert "a HakuBooru database from before 2024-03-20 (tags in post.tag_list" in result.output
    assert not (tmp_path / "meta").exists() and not list(tmp_path.glob(".*partial"))
    hint = CliRunner().invoke(main, ["dataset", "--metadata", str(path), "--images", str(tmp_path), "--out",
                                     str(tmp_path / "ds")])
    assert hint.exit_code == 1 and "a SQLite database (HakuBooru's danbooru2023.db), not Parquet; run " \
                                   f"`kohaku-prep convert {path} METADATA_DIR`" in hint.output


def test_not_a_hakubooru_database(tmp_path):
    path = tmp_path / "other.db"
    sqlite3.connect(path).executescript("CREATE TABLE things (id INTEGER);")
    with pytest.raises(PrepError, match=r"not HakuBooru's danbooru2023.db \(no table post, tag, posttagrelation"):
        convert.convert_sqlite(path, tmp_path / "meta", NOTHING)
