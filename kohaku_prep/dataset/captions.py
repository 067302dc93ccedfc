"""Captions in Kohaku XL Epsilon's layout, built column-wise.

    <SPECIAL general>, <character>, <copyright>, <artist>, |||<general>, <meta>, <year>, <rating>, <quality>

Everything before `|||` stays fixed in training; sd-scripts shuffles and drops only what follows.
Per-tag work (formatting, blacklists) runs once per distinct tag name, not once per tag row.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kohaku_prep.dataset import bad_metadata, metadata, years
from kohaku_prep.dataset.metadata import ARTIST, GENERAL, META, TagRows
from kohaku_prep.dataset_format import KEEP_SEPARATOR
from kohaku_prep.read_ahead import read_ahead

SPECIAL_TAGS = (
    "1girl", "2girls", "3girls", "4girls", "5girls", "6+girls", "multiple_girls",
    "1boy", "2boys", "3boys", "4boys", "5boys", "6+boys", "multiple_boys", "male_focus",
    "1other", "2others", "3others", "4others", "5others", "6+others", "multiple_others",
)
META_BLACKLIST = ("(medium)", "commentary", "bad", "translat", "request", "mismatch", "revision", "audio", "video")
BANNED_ARTIST_MARK = "banned"
RATING_TAGS = ("safe", "sensitive", "nsfw", "explicit, nsfw")  # general, sensitive, questionable, explicit
QUALITY_TAGS = ("worst quality", "low quality", "normal quality", "good quality",
                "great quality", "best quality", "masterpiece")
QUALITY_PERCENTILES = (10, 30, 45, 60, 75, 90)
# fav_count thresholds per rating (rows: general, sensitive, questionable, explicit), measured by
# HakuBooru on the full danbooru database; a post must exceed a threshold to reach the next tag.
EPSILON_THRESHOLDS = np.array([
    [1, 4, 7, 10, 16, 27],
    [2, 8, 13, 19, 30, 56],
    [8, 21, 33, 49, 75, 132],
    [9, 27, 45, 69, 106, 190],
], dtype=np.float64)
EPSILON_QUALITY_MAX_ID = 7_100_000
YEAR_BANDS = ((2005, "old"), (2011, "early"), (2015, "mid"), (2018, "recent"), (2021, "newest"))
YEAR_BANDS_END = 2025  # first year past the last band


@dataclass
class CaptionRule:
    thresholds: np.ndarray | None  # 4 x 6 fav_count thresholds; None: no quality tags
    quality_max_id: int | None
    year_quirks: bool


@dataclass
class Captions:
    text: pa.ChunkedArray  # large_string, one per selected post
    year: pa.ChunkedArray  # the year tag or null
    quality: pa.ChunkedArray  # the quality tag or null
    tag_counts: pa.Table  # tag (formatted), category (metadata's code), count: times it appears in the captions
    ids: np.ndarray  # the posts captioned, sorted: caption_posts' ids less those left out for bad tags


def percentile_thresholds(rating: np.ndarray, fav: np.ndarray) -> np.ndarray:
    """The six fav_count percentiles of each rating (linear interpolation), as measured on `fav`."""
    out = np.zeros((4, len(QUALITY_PERCENTILES)))
    for r in range(4):
        favs = fav[rating == r]
        if favs.size:
            out[r] = np.percentile(favs, QUALITY_PERCENTILES)
    return out


def year_tags(created_at: pa.ChunkedArray, quirks: bool) -> pa.Array:
    """The year of `created_at` as HakuBooru read it (years.py: its own UTC offset, never converted),
    mapped to a band."""
    written = years.created_years(created_at)
    names = [band for _, band in YEAR_BANDS]
    band = np.searchsorted([start for start, _ in YEAR_BANDS], written, side="right") - 1
    parsed = written >= 0
    if quirks:  # HakuBooru's: unparseable and pre-2005 -> early; 2025 and later -> no tag
        band = np.where(~parsed | (band < 0), 1, band)
        valid = ~parsed | (written < YEAR_BANDS_END)
    else:
        band = np.clip(band, 0, len(names) - 1)
        valid = parsed
    return pa.array(np.array(names, dtype=object)[band], pa.large_string(), mask=~valid)


def quality_tags(ids: np.ndarray, rating: np.ndarray, fav: np.ndarray, rule: CaptionRule) -> pa.Array:
    if rule.thresholds is None:
        return pa.nulls(len(ids), pa.large_string())
    level = (fav[:, None] > rule.thresholds[rating]).sum(axis=1)
    mask = np.zeros(len(ids), bool) if rule.quality_max_id is None else ids > rule.quality_max_id
    return pa.array(np.array(QUALITY_TAGS, dtype=object)[level], pa.large_string(), mask=mask)


def format_tags(names: pa.Array) -> pa.Array:
    """Underscores become spaces only in tags longer than 3 characters (`^_^` and `x_x` keep theirs)."""
    spaced = pc.replace_substring(names, "_", " ")
    return pc.if_else(pc.greater(pc.utf8_length(names), 3), spaced, names)


def _large(text: str) -> pa.Scalar:
    return pa.scalar(text, pa.large_string())


def _join_lists(post_index: np.ndarray, values: pa.Array, n_posts: int) -> pa.Array:
    counts = np.bincount(post_index, minlength=n_posts)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    lists = pa.LargeListArray.from_arrays(pa.array(offsets), values)
    joined = pc.binary_join(lists, _large(", "))
    return pc.if_else(pa.array(counts > 0), joined, pa.scalar(None, pa.large_string()))


def build_captions(ids: np.ndarray, created_at: pa.Array, rating: np.ndarray, fav: np.ndarray,
                   tags: TagRows, rule: CaptionRule) -> Captions:
    """Captions for the posts `ids` (sorted); `tags` rows index into `ids`."""
    n = len(ids)
    vocab = tags.names.dictionary.cast(pa.large_string())
    formatted = format_tags(vocab)
    is_special = pc.is_in(vocab, value_set=pa.array(SPECIAL_TAGS, pa.large_string())).to_numpy(zero_copy_only=False)
    is_banned = pc.match_substring(vocab, BANNED_ARTIST_MARK).to_numpy(zero_copy_only=False)
    blacklist = "|".join(re.escape(s) for s in META_BLACKLIST)
    is_blacklisted = pc.match_substring_regex(vocab, blacklist).to_numpy(zero_copy_only=False)

    name_index = tags.names.indices.to_numpy(zero_copy_only=False)
    category = tags.category
    is_blank = pc.equal(pc.utf8_trim_whitespace(formatted), "").to_numpy(zero_copy_only=False)
    keep = ~(((category == ARTIST) & is_banned[name_index]) | ((category == META) & is_blacklisted[name_index])
             | is_blank[name_index])
    # section: 0 SPECIAL general, 1 character, 2 copyright, 3 artist | 4 other general, 5 meta
    section = np.where(category == GENERAL, np.where(is_special[name_index], 0, 4),
                       np.where(category == META, 5, category))
    post_index, name_index, section = tags.post_index[keep], name_index[keep], section[keep]
    # per (tag, category): a flat dump may file one name under two categories
    counts = np.bincount(name_index * len(metadata.CATEGORY_NAMES) + category[keep],
                         minlength=len(vocab) * len(metadata.CATEGORY_NAMES))
    order = np.argsort(post_index * 8 + section, kind="stable")
    post_index, name_index, section = post_index[order], name_index[order], section[order]

    in_head = section < 4
    head = _join_lists(post_index[in_head], formatted.take(pa.array(name_index[in_head])), n)
    tail_tags = _join_lists(post_index[~in_head], formatted.take(pa.array(name_index[~in_head])), n)
    year = year_tags(created_at, rule.year_quirks)
    quality = quality_tags(ids, rating, fav, rule)
    rating_tag = pa.array(np.array(RATING_TAGS, dtype=object)[rating], pa.large_string())
    tail = pc.binary_join_element_wise(tail_tags, year, rating_tag, quality, _large(", "), null_handling="skip")
    text = pc.binary_join_element_wise(head, tail, _large(f", {KEEP_SEPARATOR}"),
                                       null_handling="replace", null_replacement="")

    used = np.flatnonzero(counts)
    tag_counts = pa.table({"tag": formatted.take(pa.array(used // len(metadata.CATEGORY_NAMES))),
                           "category": pa.array(used % len(metadata.CATEGORY_NAMES), pa.int8()),
                           "count": counts[used]})
    return Captions(pa.chunked_array([text]), pa.chunked_array([year]), pa.chunked_array([quality]), tag_counts, ids)


def caption_posts(chunks: Iterable[tuple[np.ndarray, TagRows]], ids: np.ndarray, created_at: pa.ChunkedArray,
                  rating: np.ndarray, fav: np.ndarray, rule: CaptionRule, bad_rows: bad_metadata.BadRows
                  ) -> Captions:
    """Captions of all posts `ids`, built a chunk of posts at a time (memory stays bounded).

    A post with a tag that cannot go into a caption (bad_metadata.TAG_PROBLEMS: it would corrupt the layout)
    is reported to `bad_rows`: an error, or it is left out (missing from Captions.ids).
    """
    rows, parts, covered = [], [], 0
    for chunk_ids, tags in read_ahead(chunks):
        covered += len(chunk_ids)
        chunk_ids, tags = metadata.leave_out_bad_tags(chunk_ids, tags, bad_rows)
        at = np.searchsorted(ids, chunk_ids)
        rows.append(at)
        parts.append(build_captions(chunk_ids, created_at.take(pa.array(at)), rating[at], fav[at], tags, rule))
    if covered != len(ids):
        raise ValueError(f"tags were read for {covered} of {len(ids)} posts")
    captioned = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    in_order = bool((np.diff(captioned) > 0).all())  # chunks came in id order: join them without a copy
    order = None if in_order else pa.array(np.argsort(captioned, kind="stable"))

    def joined(field: str) -> pa.ChunkedArray:
        column = pa.chunked_array([c for p in parts for c in getattr(p, field).chunks], pa.large_string())
        return column if order is None else column.take(order)

    summed = pa.concat_tables([p.tag_counts for p in parts]).group_by(["tag", "category"]).aggregate(
        [("count", "sum")])
    counts = pa.table({"tag": summed["tag"], "category": summed["category"], "count": summed["count_sum"]})
    return Captions(joined("text"), joined("year"), joined("quality"), counts, ids[np.sort(captioned)])


def _ranked(counts: pa.Table, n: int) -> list[tuple[str, int]]:
    ranked = counts.sort_by([("count", "descending"), ("tag", "ascending")]).slice(0, n)
    return list(zip(ranked["tag"].to_pylist(), ranked["count"].to_pylist(), strict=True))


def top_tags(tag_counts: pa.Table, n: int) -> list[tuple[str, int]]:
    """The n most frequent tags whatever their category, ties by name."""
    summed = tag_counts.group_by("tag").aggregate([("count", "sum")])
    return _ranked(pa.table({"tag": summed["tag"], "count": summed["count_sum"]}), n)


def top_tags_by_category(tag_counts: pa.Table, n: int) -> dict[str, list[tuple[str, int]]]:
    """The n most frequent tags of each category that has any, by category name."""
    out = {}
    for code, name in enumerate(metadata.CATEGORY_NAMES):
        of_category = tag_counts.filter(pc.equal(tag_counts["category"], code))
        if of_category.num_rows:
            out[name] = _ranked(of_category.select(["tag", "count"]), n)
    return out
