"""Random flat-shape (recipe section 1, shape A) posts full of caption edge cases.

Meant for cross-checking the real caption code against tests/reference/reference_caption.py:
same seed, same posts, on any machine (only random.Random(seed) is used).
"""

import random

# Copied from the recipe's table so this module stands alone; fav_counts are
# drawn on and just above these so every '>' boundary gets exercised.
_THRESHOLDS = {
    "g": (1, 4, 7, 10, 16, 27),
    "s": (2, 8, 13, 19, 30, 56),
    "q": (8, 21, 33, 49, 75, 132),
    "e": (9, 27, 45, 69, 106, 190),
}

MAX_ID = 7_350_000
# Around the quality cutoff (7,100,000) and the ends of the id range.
EDGE_IDS = (1, 7_099_999, 7_100_000, 7_100_001, 7_349_999, 7_350_000)

SPECIAL = (
    "1girl 2girls 3girls 4girls 5girls 6+girls multiple_girls 1boy 2boys 3boys 4boys "
    "5boys 6+boys multiple_boys male_focus 1other 2others 3others 4others 5others "
    "6+others multiple_others"
).split()

GENERAL = [
    "smile", "solo", "hat", "long_hair", "looking_at_viewer", "open_mouth", "blush",
    "short_hair", "simple_background", "white_background", "thighhighs", "1koma",
    # emoticons and other short tags whose underscores must survive
    "^_^", "x_x", ">_<", "u_u", "o_o", "a_b", "t_t", ":d", ":3", ";)", "^^^", "=_=",
    # four characters: underscores do become spaces
    "a_bc", "o_o_", "^_^;",
    # unicode (len counts characters, not bytes)
    "ハート", "café_au_lait", "ハ_ト", "☆_☆", "日本_語", "ñ_ñ_ñ",
    # parentheses, never escaped
    "heart_(symbol)", "star_(symbol)", "(o)_(o)",
    # blacklist words inside general tags must NOT drop them
    "bad_end", "video_game", "translucent", "headphones", "audio_jack",
    "banned_book",
]

CHARACTER = [
    "rice_shower_(umamusume)", "gawr_gura", "hatsune_miku", "hakurei_reimu",
    "ask_(askzy)", "kirby", "c.c.", "ハ_ト", "banned_hero", "mew",
]

COPYRIGHT = [
    "umamusume", "hololive", "vocaloid", "touhou", "fate_(series)",
    "kirby_(series)", "banned_story", "ポケモン", "x_x",
]

ARTIST = [
    "migolu", "torino_aqua", "ciloranko", "wlop", "ask_(askzy)", "abc", "a_i",
    "banned_artist", "xbannedx", "unbanned_guy", "café_artist", "ハ_ト",
]

META_KEPT = [
    "highres", "absurdres", "lowres", "official_art", "incredibly_absurdres",
    "tagme", "animated", "spoilers",
]

META_DROPPED = [
    "bad_id", "bad_pixiv_id", "commentary", "commentary_request", "english_commentary",
    "translated", "translation_request", "check_translation", "photoshop_(medium)",
    "md5_mismatch", "third-party_revision", "has_audio", "video", "sound_video",
]

# Strings that are not strict ISO dates: some dateutil reads (full-width digits included: int() accepts
# them), the others have no year.
GARBAGE_DATES = [
    "not a date", "", None, "   ", "2023", "20230101", "06/01/2020",
    " 2020-06-01", "２０２０-06-01", "yesterday", "2010/05/03 12:00:00", "20100503T120000",
    "2010-13-45T00:00:00", "2011-02-29", "12:30", "2012-02-29T25:00:00",
]

# Year boundaries of every band, plus years outside the table on both sides.
EDGE_YEARS = [
    1999, 2004, 2005, 2010, 2011, 2014, 2015, 2017, 2018, 2020, 2021, 2024, 2025, 2026,
]

FILE_EXTS = ["jpg", "jpg", "jpg", "png", "png", "webp", "jpeg", "gif", "mp4", "webm", "swf", "zip", "avif"]


def _date(rng):
    roll = rng.random()
    if roll < 0.06:
        return rng.choice(GARBAGE_DATES)
    if roll < 0.30:
        year = rng.choice(EDGE_YEARS)
    else:
        year = rng.randint(2005, 2024)
    # Year-end with a negative offset / new year with a positive one: UTC year differs.
    if rng.random() < 0.2:
        month, day, hour, minute, sec, offset = 12, 31, 23, rng.randint(0, 59), rng.randint(0, 59), "-05:00"
    elif rng.random() < 0.2:
        month, day, hour, minute, sec, offset = 1, 1, rng.randint(0, 8), rng.randint(0, 59), 0, "+09:00"
    else:
        month, day = rng.randint(1, 12), rng.randint(1, 28)
        hour, minute, sec = rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59)
        offset = rng.choice(["-04:00", "-05:00", "+09:00", "+00:00"])
    d = f"{year:04d}-{month:02d}-{day:02d}"
    fmt = rng.randrange(6)
    if fmt == 0:
        return f"{d}T{hour:02d}:{minute:02d}:{sec:02d}.{rng.randint(0, 999):03d}{offset}"
    if fmt == 1:
        return f"{d}T{hour:02d}:{minute:02d}{offset}"
    if fmt == 2:
        return f"{d}T{hour:02d}:{minute:02d}:{sec:02d}Z"
    if fmt == 3:
        return f"{d} {hour:02d}:{minute:02d}:{sec:02d}"
    if fmt == 4:
        return d
    return f"{d}T{hour:02d}:{minute:02d}:{sec:02d}{offset}"


def _fav(rng, rating):
    roll = rng.random()
    if roll < 0.5:
        return rng.choice(_THRESHOLDS[rating]) + rng.choice((0, 1))
    if roll < 0.55:
        return rng.choice((0, 500))
    return rng.randint(0, 500)


def _tag_string(rng, vocab, max_tags, extra=()):
    """Space-joined tags, sorted as danbooru stores them; sometimes messy."""
    roll = rng.random()
    if roll < 0.12:
        return rng.choice(["", "", " ", None])
    pool = list(vocab) + list(extra)
    tags = rng.sample(pool, rng.randint(1, min(max_tags, len(pool))))
    if rng.random() < 0.95:
        tags.sort()
    # else: a few left unsorted to check that stored order is kept
    if rng.random() < 0.15:
        # double spaces, and leading/trailing spaces
        parts = [t + " " * rng.randint(1, 3) for t in tags]
        return " " * rng.randint(0, 2) + "".join(parts).rstrip(" ") + " " * rng.randint(0, 2)
    return " ".join(tags)


def _ids(rng, n):
    if n > MAX_ID:
        raise ValueError(f"at most {MAX_ID} unique ids")
    ids = list(EDGE_IDS[: n // 20])
    seen = set(ids)
    while len(ids) < n:
        i = rng.randint(1, MAX_ID)
        if i not in seen:
            seen.add(i)
            ids.append(i)
    rng.shuffle(ids)
    return ids


def _general(rng):
    # Mix SPECIAL tags in often: their position (head vs tail) is the point.
    specials = rng.sample(SPECIAL, rng.choice((0, 0, 1, 1, 2, 3)))
    return _tag_string(rng, GENERAL, 8, extra=specials)


def nasty_posts(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    posts = []
    for post_id in _ids(rng, n):
        rating = rng.choice("gsqe")
        hidden = rng.random() < 0.05
        md5 = None if hidden else "".join(rng.choice("0123456789abcdef") for _ in range(32))
        ext = rng.choice(FILE_EXTS)
        posts.append(
            {
                "id": post_id,
                "created_at": _date(rng),
                "rating": rating,
                "fav_count": _fav(rng, rating),
                "tag_string_general": _general(rng),
                "tag_string_character": _tag_string(rng, CHARACTER, 3),
                "tag_string_copyright": _tag_string(rng, COPYRIGHT, 2),
                "tag_string_artist": _tag_string(rng, ARTIST, 3),
                "tag_string_meta": _tag_string(rng, META_KEPT + META_DROPPED, 5),
                "file_ext": ext,
                "is_deleted": rng.random() < 0.05,
                "is_banned": rng.random() < 0.03,
                "md5": md5,
                "file_url": None if md5 is None else f"https://cdn.donmai.us/original/{md5[:2]}/{md5[2:4]}/{md5}.{ext}",
                "image_width": rng.randint(1, 8000),
                "image_height": rng.randint(1, 8000),
            }
        )
    return posts
