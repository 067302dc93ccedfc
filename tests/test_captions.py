"""Captions: the recipe's examples verbatim, and agreement with an independent per-post implementation."""

import pyarrow as pa
import pytest
from helpers import CATEGORIES, flat_post, run_captions, write_flat, write_normalized
from hypothesis import given, settings
from hypothesis import strategies as st
from nasty_posts import ARTIST, CHARACTER, COPYRIGHT, GENERAL, META_DROPPED, META_KEPT, nasty_posts
from reference.reference_caption import (
    EPSILON_QUALITY,
    SPECIAL,
    format_tag,
    percentile_thresholds,
    reference_caption,
    split_tags,
)

from kohaku_prep.dataset import captions, metadata
from kohaku_prep.dataset.bad_metadata import BadRows
from kohaku_prep.errors import PrepError

RECIPE_EXAMPLES = [
    (flat_post(5_100_000, "2023-03-01T10:00:00.000+09:00", "q", 50, general="1girl smile",
               character="rice_shower_(umamusume)", copyright="umamusume", artist="migolu torino_aqua",
               meta="highres"),
     "1girl, rice shower (umamusume), umamusume, migolu, torino aqua, |||smile, highres, newest, nsfw, great quality"),
    (flat_post(1000, "2005-05-24T19:16:10.000-04:00", "g", 0, general="smile solo", artist="banned_artist",
               meta="lowres"),
     ", |||smile, solo, lowres, old, safe, worst quality"),
    (flat_post(3_000_000, "2017-12-31T23:30-05:00", "s", 8, general="1other 6+girls hat male_focus",
               character="gawr_gura", copyright="hololive", artist="ciloranko"),
     "1other, 6+girls, male focus, gawr gura, hololive, ciloranko, |||hat, mid, sensitive, low quality"),
]


@pytest.mark.parametrize("shape", ["flat", "normalized"])
def test_recipe_examples_verbatim(tmp_path, shape):
    posts = [p for p, _ in RECIPE_EXAMPLES]
    path = write_flat(posts, tmp_path / "flat") if shape == "flat" else write_normalized(posts, tmp_path / "n")
    got = run_captions(path)
    assert [got[p["id"]] for p in posts] == [text for _, text in RECIPE_EXAMPLES]


@pytest.fixture(scope="module")
def nasty(tmp_path_factory):
    posts = nasty_posts(4000, seed=2024)
    root = tmp_path_factory.mktemp("nasty")
    return posts, write_flat(posts, root / "flat"), write_normalized(posts, root / "normalized")


@pytest.mark.parametrize("shape", ["flat", "normalized"])
@pytest.mark.parametrize("year_quirks", [True, False])
def test_matches_independent_implementation(nasty, shape, year_quirks):
    posts, flat, normalized = nasty
    got = run_captions(flat if shape == "flat" else normalized, year_quirks=year_quirks)
    mismatches = [(p["id"], got[p["id"]], reference_caption(p, year_quirks=year_quirks)) for p in posts
                  if got[p["id"]] != reference_caption(p, year_quirks=year_quirks)]
    assert not mismatches[:5]
    assert len(got) == len(posts)


@pytest.mark.parametrize("shape", ["flat", "normalized"])
def test_chunk_boundaries_do_not_change_captions(nasty, shape, monkeypatch):
    posts, flat, normalized = nasty
    path = flat if shape == "flat" else normalized
    whole = run_captions(path)
    monkeypatch.setattr(metadata, "_BATCH_ROWS", 97)
    monkeypatch.setattr(metadata, "_CHUNK_POSTS", 61)
    assert run_captions(path) == whole


def test_tag_counts_add_up_over_chunks(nasty, monkeypatch):
    posts, flat, _ = nasty
    monkeypatch.setattr(metadata, "_BATCH_ROWS", 500)
    meta = metadata.locate(flat)
    table = metadata.read_posts(meta, "danbooru", BadRows("fail"))
    ids = table["id"].to_numpy()
    rule = captions.CaptionRule(None, None, True)
    caps = captions.caption_posts(metadata.iter_tags(meta, ids), ids, table["created_at"],
                                  table["rating"].to_numpy(), table["fav_count"].to_numpy(), rule, BadRows("fail"))
    (tag, count), = captions.top_tags(caps.tag_counts, 1)
    in_text = sum(text.replace("|||", "").split(", ").count(tag) for text in caps.text.to_pylist())
    assert count == in_text


def test_percentile_quality_matches_independent_implementation(nasty):
    posts, flat, _ = nasty
    by_rating: dict[str, list[int]] = {}
    for p in posts:
        by_rating.setdefault(p["rating"], []).append(p["fav_count"])
    thresholds = percentile_thresholds(by_rating)
    got = run_captions(flat, quality="percentiles", quality_max_id=None)
    for p in posts:
        assert got[p["id"]] == reference_caption(p, thresholds=thresholds, quality_max_id=None)


def test_no_quality_tags(nasty):
    posts, flat, _ = nasty
    got = run_captions(flat, quality="none")
    assert not any(q in text for text in got.values() for q in captions.QUALITY_TAGS)


def test_epsilon_table_is_the_recipe():
    assert captions.EPSILON_THRESHOLDS.astype(int).tolist() == [list(EPSILON_QUALITY[r]) for r in "gsqe"]


def test_format_tags_keeps_short_emoticons():
    names = pa.array(["^_^", "x_x", ">_<", "u_u", "ask_(askzy)", "a_bc", "ハ_ト", "long_hair"])
    assert captions.format_tags(names).to_pylist() == [
        "^_^", "x_x", ">_<", "u_u", "ask (askzy)", "a bc", "ハ_ト", "long hair"]


def test_year_tags_from_timestamps_use_their_own_zone():
    ts = pa.chunked_array([pa.array([0, 1_514_780_000_000], pa.timestamp("ms", "America/New_York"))])
    # 1969-12-31 19:00 New York (pre-2005 -> "early" with the quirks); 2017-12-31 23:13 New York -> "mid"
    assert captions.year_tags(ts, quirks=True).to_pylist() == ["early", "mid"]


# Tags (never a comma, nor the space that separates them) from every category's edge cases, in any
# category: a SPECIAL tag as a character, `banned` in a general tag, a meta blacklist word in an artist.
# "" makes doubled spaces, "____" a tag that formats to blank. No "|" or ",": see test_bad_tags_are_left_out.
known_tag = st.sampled_from(sorted({*SPECIAL, *GENERAL, *CHARACTER, *COPYRIGHT, *ARTIST, *META_KEPT, *META_DROPPED,
                                    "", "____", "_", "banned"}))
any_tag = st.one_of(known_tag, st.text(alphabet="ab_^x()1+ハ\u3000", max_size=8))  # U+3000: a blank to trim
tag_string = st.one_of(st.none(), st.lists(any_tag, max_size=6).map(" ".join))
post_fields = st.tuples(*[tag_string] * 5, st.sampled_from("gsqe"), st.integers(0, 300))


def expected_head(post: dict) -> list[str]:
    """The recipe's fixed head: SPECIAL general tags, character, copyright, then the artists whose name
    does not contain `banned`, each category in stored order, formatted, blanks dropped."""
    general, character, copyright_, artist = (
        split_tags(post[f"tag_string_{c}"]) for c in ("general", "character", "copyright", "artist"))
    raw = [t for t in general if t in SPECIAL] + character + copyright_ + [t for t in artist if "banned" not in t]
    return [tag for tag in map(format_tag, raw) if tag.strip()]


def written(posts: list[dict], shape: str, folder):
    return write_flat(posts, folder) if shape == "flat" else write_normalized(posts, folder)


def generated_posts(rows) -> list[dict]:
    return [flat_post(i + 1, "2020-01-01T00:00:00.000+00:00", r, f, g, c, cp, a, m)
            for i, (g, c, cp, a, m, r, f) in enumerate(rows)]


@pytest.mark.parametrize("shape", ["flat", "normalized"])
@settings(max_examples=150, deadline=None)
@given(rows=st.lists(post_fields, min_size=1, max_size=8))
def test_caption_invariants(tmp_path_factory, shape, rows):
    posts = generated_posts(rows)
    got = run_captions(written(posts, shape, tmp_path_factory.mktemp("prop")))
    for post in posts:
        text = got[post["id"]]
        assert text.count("|||") == 1
        head, tail = text.split(", |||")
        head_tags = head.split(", ") if head else []
        tags = head_tags + tail.split(", ")
        assert all(t.strip() for t in tags)
        assert not any("_" in t and len(t) > 3 for t in tags)
        assert head_tags == expected_head(post)
        assert text == reference_caption(post)


# Found by test_caption_invariants with "|" in its alphabet: the recipe's rule would write such a tag as
# is, here as ", ||||||, recent, safe, worst quality", and sd-scripts would read the second "|||" as the
# start of a fixed suffix (year, rating, quality). Such a post is refused, or left out and counted
# (input.bad_metadata = "skip").
@pytest.mark.parametrize("shape", ["flat", "normalized"])
def test_a_tag_holding_the_separator_is_refused_or_left_out(tmp_path, shape):
    posts = [flat_post(1, "2020-01-01T00:00:00.000+00:00", "g", 0, meta="|||"),
             flat_post(2, "2020-01-01T00:00:00.000+00:00", "g", 0, meta="highres")]
    path = write_flat(posts, tmp_path) if shape == "flat" else write_normalized(posts, tmp_path)
    with pytest.raises(PrepError, match=r"post 1, meta tag '\|\|\|' holds the keep separator '\|\|\|'"):
        run_captions(path)
    lenient = BadRows("skip")
    assert run_captions(path, bad_tags=lenient) == {2: ", |||highres, recent, safe, worst quality"}
    (skip,) = lenient.left_out
    assert (skip.problem, skip.count) == ("bad tag: holds '|||'", 1) and skip.first.endswith("post 1, meta tag '|||'")


# Any text in tags: a post whose tags hold ",", "|||" or a control character is left out; every other post
# gets the reference's caption, with exactly one "|||".
wild_tag = st.one_of(known_tag, st.text(alphabet="a_|,\t\n\x85\x7f", max_size=5))
wild_fields = st.tuples(*[st.one_of(st.none(), st.lists(wild_tag, max_size=4).map(" ".join))] * 5,
                        st.sampled_from("gsqe"), st.integers(0, 300))


def has_bad_tag(post: dict) -> bool:
    return any("," in t or "|||" in t or any(ord(ch) < 32 or 127 <= ord(ch) < 160 for ch in t)
               for c in CATEGORIES for t in split_tags(post[f"tag_string_{c}"]))


@pytest.mark.parametrize("shape", ["flat", "normalized"])
@settings(max_examples=100, deadline=None)
@given(rows=st.lists(wild_fields, min_size=1, max_size=8))
def test_bad_tags_are_left_out(tmp_path_factory, shape, rows):
    posts = generated_posts(rows)
    lenient = BadRows("skip")
    got = run_captions(written(posts, shape, tmp_path_factory.mktemp("wild")), bad_tags=lenient)
    assert set(got) == {p["id"] for p in posts if not has_bad_tag(p)}
    assert sum(s.count for s in lenient.left_out) == len(posts) - len(got)
    for post in posts:
        if post["id"] in got:
            assert got[post["id"]] == reference_caption(post) and got[post["id"]].count("|||") == 1
