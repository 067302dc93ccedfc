"""Tests of the reference caption rule itself, against the recipe's section 3."""

import random

import pytest
from reference.reference_caption import EPSILON_QUALITY, percentile_thresholds, reference_caption

QUALITY = [
    "worst quality",
    "low quality",
    "normal quality",
    "good quality",
    "great quality",
    "best quality",
    "masterpiece",
]


def make_post(**overrides):
    post = {
        "id": 1,
        "created_at": "2023-06-01T12:00:00.000-04:00",
        "rating": "g",
        "fav_count": 0,
        "tag_string_general": "",
        "tag_string_character": "",
        "tag_string_copyright": "",
        "tag_string_artist": "",
        "tag_string_meta": "",
    }
    post.update(overrides)
    return post


# --- the recipe's three examples, verbatim


def test_example_1_questionable_2023():
    post = make_post(
        id=6_500_000,
        created_at="2023-03-14T09:26:53.000-04:00",
        rating="q",
        fav_count=50,
        tag_string_general="1girl smile",
        tag_string_character="rice_shower_(umamusume)",
        tag_string_copyright="umamusume",
        tag_string_artist="migolu torino_aqua",
        tag_string_meta="commentary_request highres translated",
    )
    assert reference_caption(post) == (
        "1girl, rice shower (umamusume), umamusume, migolu, torino aqua, "
        "|||smile, highres, newest, nsfw, great quality"
    )


def test_example_2_no_head_tags():
    post = make_post(
        id=1000,
        created_at="2005-05-24T19:16:10.000-04:00",
        rating="g",
        fav_count=0,
        tag_string_general="smile solo",
        tag_string_artist="banned_artist",
        tag_string_meta="lowres",
    )
    assert reference_caption(post) == ", |||smile, solo, lowres, old, safe, worst quality"


def test_example_3_local_year_and_specials():
    post = make_post(
        id=3_000_000,
        created_at="2017-12-31T23:30-05:00",  # 2018 in UTC: the written year wins
        rating="s",
        fav_count=8,
        tag_string_general="1other 6+girls hat male_focus",
        tag_string_character="gawr_gura",
        tag_string_copyright="hololive",
        tag_string_artist="ciloranko",
    )
    assert reference_caption(post) == (
        "1other, 6+girls, male focus, gawr gura, hololive, ciloranko, "
        "|||hat, mid, sensitive, low quality"
    )


# --- tag formatting


@pytest.mark.parametrize("field", ["general", "character", "copyright", "artist", "meta"])
def test_short_tags_keep_underscores_in_every_category(field):
    post = make_post(**{f"tag_string_{field}": "^_^ x_x >_< u_u a_bc ask_(askzy)"})
    caption = reference_caption(post)
    assert "^_^, x_x, >_<, u_u, a bc, ask (askzy)" in caption
    assert "\\(" not in caption  # no parenthesis escaping


def test_length_counts_characters_not_bytes():
    # 'ハ_ト' is 3 characters (but 7 UTF-8 bytes): underscore kept.
    post = make_post(tag_string_general="ハ_ト ハー_ト café_au_lait")
    assert reference_caption(post) == ", |||ハ_ト, ハー ト, café au lait, newest, safe, worst quality"


def test_blank_tags_from_repeated_spaces_are_dropped():
    post = make_post(
        tag_string_general="  1girl   smile  ",
        tag_string_character=" ",
        tag_string_copyright="",
        tag_string_artist=None,
        tag_string_meta="  highres ",
    )
    assert reference_caption(post) == "1girl, |||smile, highres, newest, safe, worst quality"


def test_stored_order_is_preserved_not_sorted():
    post = make_post(
        tag_string_general="male_focus zebra 1girl apple",
        tag_string_character="zz_char aa_char",
    )
    assert reference_caption(post) == (
        "male focus, 1girl, zz char, aa char, |||zebra, apple, newest, safe, worst quality"
    )


def test_all_special_tags_go_to_head():
    specials = (
        "1girl 2girls 3girls 4girls 5girls 6+girls multiple_girls 1boy 2boys 3boys 4boys "
        "5boys 6+boys multiple_boys male_focus 1other 2others 3others 4others 5others "
        "6+others multiple_others"
    ).split()
    post = make_post(tag_string_general=" ".join(specials + ["solo"]))
    head, tail = reference_caption(post).split("|||")
    assert head == ", ".join(t.replace("_", " ") for t in specials) + ", "
    assert tail == "solo, newest, safe, worst quality"


# --- meta blacklist and banned artists


def test_meta_blacklist():
    dropped = [
        "photoshop_(medium)",
        "commentary",
        "english_commentary",
        "commentary_request",
        "bad_id",
        "bad_pixiv_id",
        "translated",
        "translation_request",
        "check_translation",
        "md5_mismatch",
        "third-party_revision",
        "has_audio",
        "video",
        "sound_video",
    ]
    kept = ["absurdres", "highres", "lowres", "official_art", "animated", "tagme"]
    post = make_post(tag_string_meta=" ".join(sorted(dropped + kept)))
    assert reference_caption(post) == (
        ", |||absurdres, animated, highres, lowres, official art, tagme, newest, safe, worst quality"
    )


def test_blacklist_applies_to_meta_only():
    post = make_post(
        tag_string_general="bad_end video_game",
        tag_string_copyright="translated_works",
        tag_string_character="request_girl",
    )
    assert reference_caption(post) == (
        "request girl, translated works, |||bad end, video game, newest, safe, worst quality"
    )


def test_banned_artists_dropped_but_banned_elsewhere_kept():
    post = make_post(
        tag_string_artist="abc banned_artist migolu unbanned_guy xbannedx",
        tag_string_character="banned_hero",
        tag_string_copyright="banned_story",
        tag_string_general="banned",
    )
    assert reference_caption(post) == (
        "banned hero, banned story, abc, migolu, |||banned, newest, safe, worst quality"
    )


# --- rating tags


@pytest.mark.parametrize(
    "rating,tags", [("g", "safe"), ("s", "sensitive"), ("q", "nsfw"), ("e", "explicit, nsfw")]
)
def test_rating_tags(rating, tags):
    post = make_post(rating=rating, fav_count=0)
    assert reference_caption(post) == f", |||newest, {tags}, worst quality"


# --- quality thresholds


def test_threshold_table_matches_recipe():
    assert EPSILON_QUALITY == {
        "g": (1, 4, 7, 10, 16, 27),
        "s": (2, 8, 13, 19, 30, 56),
        "q": (8, 21, 33, 49, 75, 132),
        "e": (9, 27, 45, 69, 106, 190),
    }


QUALITY_CASES = [
    (rating, k, threshold)
    for rating, row in EPSILON_QUALITY.items()
    for k, threshold in enumerate(row)
]


@pytest.mark.parametrize("rating,k,threshold", QUALITY_CASES)
def test_quality_boundaries(rating, k, threshold):
    def quality(fav):
        return reference_caption(make_post(rating=rating, fav_count=fav)).rsplit(", ", 1)[1]

    # '>' is strict: equal to the threshold stays in the lower tier.
    assert quality(threshold) == QUALITY[k]
    assert quality(threshold + 1) == QUALITY[k + 1]


def test_quality_extremes():
    assert reference_caption(make_post(rating="e", fav_count=0)).endswith("worst quality")
    assert reference_caption(make_post(rating="e", fav_count=10_000)).endswith("masterpiece")


def test_id_cutoff():
    def caption(post_id, **kw):
        return reference_caption(make_post(id=post_id, rating="q", fav_count=50), **kw)

    assert caption(7_100_000) == ", |||newest, nsfw, great quality"
    assert caption(7_100_001) == ", |||newest, nsfw"
    assert caption(7_349_999, quality_max_id=None) == ", |||newest, nsfw, great quality"
    assert caption(7_100_001, quality_max_id=7_500_000) == ", |||newest, nsfw, great quality"
    assert caption(7_500_001, quality_max_id=7_500_000) == ", |||newest, nsfw"


def test_custom_thresholds_and_missing_rating():
    table = {"g": (0.5, 1.5, 2.5, 3.5, 4.5, 5.5)}
    assert reference_caption(make_post(fav_count=1), thresholds=table).endswith("low quality")
    # A rating without thresholds (no data for it) gets no quality tag.
    assert reference_caption(make_post(rating="e"), thresholds=table) == ", |||newest, explicit, nsfw"


# --- year bands


YEAR_CASES = [
    # created_at, tag with year_quirks=True, tag with year_quirks=False
    ("1999-01-01T00:00:00.000-05:00", "early", "old"),
    ("2004-12-31T23:59:59.000-05:00", "early", "old"),
    ("2005-01-01T00:00:00.000-05:00", "old", "old"),
    ("2010-12-31T23:59:59.000-05:00", "old", "old"),
    ("2011-01-01T00:00:00.000-05:00", "early", "early"),
    ("2014-12-31T23:59:59.000-05:00", "early", "early"),
    ("2015-01-01T00:00:00.000-05:00", "mid", "mid"),
    ("2017-12-31T23:59:59.000-05:00", "mid", "mid"),
    ("2018-01-01T00:00:00.000-05:00", "recent", "recent"),
    ("2020-12-31T23:59:59.000-05:00", "recent", "recent"),
    ("2021-01-01T00:00:00.000-05:00", "newest", "newest"),
    ("2024-12-31T23:59:59.000-05:00", "newest", "newest"),
    ("2025-01-01T00:00:00.000-05:00", None, "newest"),
    ("2026-07-01T00:00:00.000+09:00", None, "newest"),
    # Local year, never UTC: these are 2018 / 2017 in UTC.
    ("2017-12-31T23:30-05:00", "mid", "mid"),
    ("2018-01-01T05:00:00+09:00", "recent", "recent"),
    ("2020-06-01", "recent", "recent"),
    ("2020-06-01 10:00:00", "recent", "recent"),
    # Read leniently, as HakuBooru's dateutil did.
    ("2020", "recent", "recent"),
    ("20200601", "recent", "recent"),
    (" 2020-06-01", "recent", "recent"),
    ("06/01/2020", "recent", "recent"),
    ("２０２０-06-01", "recent", "recent"),
    ("2010/05/03 12:00:00", "old", "old"),
    ("20100503T120000", "old", "old"),
    (" 2008-01-01T00:00:00", "old", "old"),
    # Unparseable: no date, an impossible one, or no year in it.
    ("not a date", "early", None),
    ("", "early", None),
    (None, "early", None),
    ("2010-13-45T00:00:00", "early", None),
    ("2010-02-29", "early", None),
    ("12:30", "early", None),
]


@pytest.mark.parametrize("created_at,quirky,clean", YEAR_CASES)
def test_year_bands(created_at, quirky, clean):
    for quirks, expected in ((True, quirky), (False, clean)):
        caption = reference_caption(make_post(created_at=created_at), year_quirks=quirks)
        year = f"{expected}, " if expected else ""
        assert caption == f", |||{year}safe, worst quality", (quirks, caption)


# --- percentile_thresholds against numpy


PERCENTILE_LISTS = [
    [0],
    [7, 7, 7],
    [0, 1],
    [3, 1, 2],
    list(range(10)),
    list(range(11)),
    list(range(31)),
    [0, 0, 0, 1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610],
] + [
    [random.Random(seed).randint(0, 1000) for _ in range(random.Random(seed).randint(1, 60))]
    for seed in range(40)
]


@pytest.mark.parametrize("favs", PERCENTILE_LISTS)
def test_percentile_thresholds_match_numpy(favs):
    import numpy as np

    got = percentile_thresholds({"g": favs})
    expected = tuple(float(np.percentile(favs, q)) for q in (10, 30, 45, 60, 75, 90))
    assert got["g"] == expected  # exact: fav is compared with '>' against these


def test_percentile_thresholds_per_rating_and_empty():
    import numpy as np

    data = {"g": [1, 2, 3, 4], "s": [10, 0, 5], "q": [], "e": [100]}
    got = percentile_thresholds(data)
    assert set(got) == {"g", "s", "e"}  # no data, no thresholds
    for rating in got:
        assert got[rating] == tuple(
            float(np.percentile(data[rating], q)) for q in (10, 30, 45, 60, 75, 90)
        )
    assert data["s"] == [10, 0, 5]  # input left untouched


# --- the nasty_posts generator, as used for cross-checks


def test_nasty_posts_deterministic_and_well_formed():
    from nasty_posts import nasty_posts

    posts = nasty_posts(2000, seed=7)
    assert posts == nasty_posts(2000, seed=7)
    assert posts != nasty_posts(2000, seed=8)
    ids = [p["id"] for p in posts]
    assert len(set(ids)) == len(ids) and all(1 <= i <= 7_350_000 for i in ids)
    assert {7_100_000, 7_100_001} <= set(ids)
    assert {p["rating"] for p in posts} == {"g", "s", "q", "e"}
    for post in posts:
        caption = reference_caption(post)
        assert caption.count("|||") == 1
        assert ", , " not in caption and "\n" not in caption
