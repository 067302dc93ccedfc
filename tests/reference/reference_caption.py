"""Deliberately simple reference for the Kohaku XL Epsilon caption rule.

Written from the recipe (shared/recipes/kohaku-xl-epsilon.md, section 3) only,
without looking at the real implementation, so tests can cross-check the two.
Pure Python, standard library only, one post at a time: clarity over speed.
"""

import datetime
import math

import dateutil.parser

# Recipe section 3: fav_count thresholds (p10, p30, p45, p60, p75, p90) per rating.
EPSILON_QUALITY = {
    "g": (1, 4, 7, 10, 16, 27),
    "s": (2, 8, 13, 19, 30, 56),
    "q": (8, 21, 33, 49, 75, 132),
    "e": (9, 27, 45, 69, 106, 190),
}

PERCENTILES = (10, 30, 45, 60, 75, 90)

# Lowest tier first: a post gets QUALITY_NAMES[k] where k counts thresholds it beats.
QUALITY_NAMES = (
    "worst quality",
    "low quality",
    "normal quality",
    "good quality",
    "great quality",
    "best quality",
    "masterpiece",
)

SPECIAL = frozenset(
    "1girl 2girls 3girls 4girls 5girls 6+girls multiple_girls "
    "1boy 2boys 3boys 4boys 5boys 6+boys multiple_boys male_focus "
    "1other 2others 3others 4others 5others 6+others multiple_others".split()
)

META_BLACKLIST = (
    "(medium)",
    "commentary",
    "bad",
    "translat",
    "request",
    "mismatch",
    "revision",
    "audio",
    "video",
)

RATING_TAGS = {
    "g": ["safe"],
    "s": ["sensitive"],
    "q": ["nsfw"],
    "e": ["explicit", "nsfw"],
}

def split_tags(tag_string):
    """Raw tags in stored order; None/empty give none, repeated spaces give no tag."""
    if not tag_string:
        return []
    return [t for t in tag_string.split(" ") if t != ""]


def format_tag(tag):
    # Short tags keep underscores so emoticons like ^_^ survive.
    return tag.replace("_", " ") if len(tag) > 3 else tag


def _formatted(tags):
    out = []
    for tag in tags:
        text = format_tag(tag)
        if text.strip():  # blank tags are dropped
            out.append(text)
    return out


def parse_year(created_at):
    """The year HakuBooru read, dateutil.parser.parse(created_at).year (as written, never UTC); None where
    dateutil fails, or where the string holds no year (dateutil takes it from its default date: a string
    whose year changes with the default has none)."""
    if not isinstance(created_at, str):
        return None
    years = set()
    for default in (datetime.datetime(2001, 6, 15), datetime.datetime(2003, 6, 15)):
        try:
            years.add(dateutil.parser.parse(created_at, default=default).year)
        except (ValueError, OverflowError):
            return None
    return years.pop() if len(years) == 1 else None


def year_tag(created_at, year_quirks=True):
    year = parse_year(created_at)
    if year is None:
        return "early" if year_quirks else None
    if year < 2005:
        return "early" if year_quirks else "old"
    if year <= 2010:
        return "old"
    if year <= 2014:
        return "early"
    if year <= 2017:
        return "mid"
    if year <= 2020:
        return "recent"
    if year <= 2024:
        return "newest"
    return None if year_quirks else "newest"


def quality_tag(fav_count, thresholds_for_rating):
    beaten = sum(1 for t in thresholds_for_rating if fav_count > t)
    return QUALITY_NAMES[beaten]


def reference_caption(post, *, thresholds=EPSILON_QUALITY, quality_max_id=7_100_000, year_quirks=True):
    general = split_tags(post.get("tag_string_general"))
    character = split_tags(post.get("tag_string_character"))
    copyright_ = split_tags(post.get("tag_string_copyright"))
    artist = split_tags(post.get("tag_string_artist"))
    meta = split_tags(post.get("tag_string_meta"))

    head = (
        _formatted([t for t in general if t in SPECIAL])
        + _formatted(character)
        + _formatted(copyright_)
        + _formatted([t for t in artist if "banned" not in t])
    )

    tail = _formatted([t for t in general if t not in SPECIAL])
    tail += _formatted([t for t in meta if not any(bad in t for bad in META_BLACKLIST)])

    year = year_tag(post.get("created_at"), year_quirks)
    if year is not None:
        tail.append(year)

    rating = post["rating"]
    tail += RATING_TAGS[rating]

    # A rating absent from the table (no data to compute it from) gets no quality tag.
    table = thresholds.get(rating)
    if table is not None and (quality_max_id is None or post["id"] <= quality_max_id):
        tail.append(quality_tag(post["fav_count"], table))

    return ", ".join(head) + ", " + "|||" + ", ".join(tail)


def _percentile_linear(sorted_values, q):
    """numpy.percentile(values, q) with method='linear', float for float.

    Mirrors numpy's arithmetic (virtual index (n-1)*q/100, and its two-sided
    lerp) so results match bit for bit, which matters for integer fav_counts
    compared with '>' against a threshold that lands on an integer.
    """
    n = len(sorted_values)
    index = (n - 1) * (q / 100)
    if index >= n - 1:
        return float(sorted_values[-1])
    lo = math.floor(index)
    a, b = sorted_values[lo], sorted_values[lo + 1]
    t = index - lo
    diff = b - a
    if t >= 0.5:
        return float(b - diff * (1 - t))
    return float(a + diff * t)


def percentile_thresholds(fav_by_rating):
    """Per rating, the six thresholds as numpy-'linear' percentiles of the data.

    Ratings with no posts are left out (numpy cannot take a percentile of nothing).
    """
    result = {}
    for rating, favs in fav_by_rating.items():
        values = sorted(favs)
        if values:
            result[rating] = tuple(_percentile_linear(values, q) for q in PERCENTILES)
    return result
