"""The embedded sample: danbooru-like metadata in both shapes and tiny images in tar shards.

Deterministic for a seed (fixed tar headers, seeded draws), so a built sample is the same everywhere.
It covers what the recipe must handle: ids 1..7.35M, every rating, year band and quality band,
emoticon tags, banned artists, blacklisted meta tags, deleted / hidden / gif / mp4 posts, images
missing from the archive, one undecodable image and one image replaced by a dated update shard.
"""
from __future__ import annotations

import io
import random
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from kohaku_prep.errors import PrepError
from kohaku_prep.fsutil import OwnedFiles

SPECIAL = ["1girl", "2girls", "multiple_girls", "1boy", "2boys", "male_focus", "1other", "6+girls"]
GENERAL = [
    "solo", "smile", "long_hair", "short_hair", "looking_at_viewer", "blush", "open_mouth", "hat",
    "skirt", "shirt", "simple_background", "white_background", "holding", "bow", "ribbon", "jacket",
    "thighhighs", "gloves", "sitting", "standing", "closed_eyes", "outdoors", "sky", "cloud", "flower",
    "animal_ears", "tail", "wings", "sword", "school_uniform", "twintails", "ponytail", "braid",
    "heart_(symbol)", "upper_body", "full_body", "from_side", "night", "water", "tree",
    "^_^", "x_x", ">_<", "u_u", ":d", "o_o",
]
CHARACTER = ["rice_shower_(umamusume)", "gawr_gura", "hatsune_miku", "hakurei_reimu", "kirisame_marisa",
             "artoria_pendragon_(fate)", "kohaku_(dragon)"]
COPYRIGHT = ["umamusume", "hololive", "vocaloid", "touhou", "fate_(series)", "original"]
ARTIST = ["migolu", "torino_aqua", "ciloranko", "ask_(askzy)", "wanke", "fuzichoco", "mignon",
          "banned_artist", "rumoon"]
META_KEPT = ["highres", "absurdres", "lowres", "official_art", "commission"]
META_DROPPED = ["bad_id", "bad_pixiv_id", "commentary_request", "translated", "photoshop_(medium)",
                "md5_mismatch", "revision", "video", "translation_request"]
# HakuBooru's tag.type numbering
TAG_TYPE = {"general": 0, "artist": 1, "character": 2, "copyright": 3, "meta": 4}
RATINGS = "gsqe"
STILL = ["jpg"] * 6 + ["png"] * 3 + ["webp"]
MOTION = ["gif", "mp4", "webm", "zip"]
ASPECTS = [(1, 1), (3, 4), (4, 3), (2, 3), (3, 2), (9, 16), (16, 9), (1, 2), (2, 1)]
MAX_ID = 7_350_000
SHARDS = 6  # residues id % 1000 used, to keep the sample to a dozen shards


def _post(rng: random.Random, post_id: int) -> dict:
    year = 2005 + int(19.99 * post_id / MAX_ID)
    if rng.random() < 0.01:
        created = rng.choice(["not a date", "2004-12-31T23:00:00.000-05:00", ""])
    else:
        offset = rng.choice(["-04:00", "-05:00", "+09:00", "+00:00"])
        created = f"{year}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:" \
                  f"{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}.000{offset}"
    rating = rng.choices(RATINGS, weights=[40, 30, 15, 15])[0]
    fav = int(rng.expovariate(1 / {"g": 12, "s": 25, "q": 55, "e": 80}[rating]))
    general = rng.sample(GENERAL, rng.randint(4, 14))
    if rng.random() < 0.8:
        general += rng.sample(SPECIAL, rng.randint(1, 2))
    ext = rng.choice(MOTION) if rng.random() < 0.06 else rng.choice(STILL)
    hidden = rng.random() < 0.03
    aspect = rng.choice(ASPECTS)
    return {
        "id": post_id,
        "created_at": created,
        "rating": rating,
        "fav_count": fav,
        "score": fav // 2,
        "tag_string_general": " ".join(sorted(general)),
        "tag_string_character": " ".join(sorted(rng.sample(CHARACTER, rng.choice([0, 0, 1, 1, 2])))),
        "tag_string_copyright": " ".join(sorted(rng.sample(COPYRIGHT, rng.choice([0, 1, 1, 2])))),
        "tag_string_artist": " ".join(sorted(rng.sample(ARTIST, rng.choice([0, 1, 1, 2])))),
        "tag_string_meta": " ".join(sorted(rng.sample(META_KEPT, rng.randint(0, 2))
                                           + rng.sample(META_DROPPED, rng.randint(0, 2)))),
        "file_ext": ext,
        "is_deleted": rng.random() < 0.03,
        "is_banned": rng.random() < 0.01,
        "md5": None if hidden else f"{rng.getrandbits(128):032x}",
        "file_url": None if hidden else f"https://cdn.donmai.us/original/{post_id}.{ext}",
        "image_width": aspect[0] * 400,
        "image_height": aspect[1] * 400,
    }


def _image_bytes(rng: random.Random, post: dict, ext: str) -> bytes:
    w, h = post["image_width"], post["image_height"]
    scale = rng.randint(48, 160) / max(w, h)
    size = (max(8, round(w * scale)), max(8, round(h * scale)))
    im = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
    im.paste(tuple(rng.randrange(256) for _ in range(3)), (0, 0, size[0] // 2, size[1] // 2))
    buf = io.BytesIO()
    im.save(buf, format={"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}[ext])
    return buf.getvalue()


def _tar_bytes(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for name, data in sorted(members):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


MAX_POSTS = MAX_ID // 1000  # one post per block of 1000 ids


def generate(root: Path, n_posts: int = 2400, seed: int = 20240421) -> dict[str, int]:
    """Write the sample into `root`; a sample written there before is replaced, nothing else is touched."""
    if not 1 <= n_posts <= MAX_POSTS:
        raise PrepError(f"the sample holds 1 to {MAX_POSTS:,} posts, not {n_posts:,}")
    rng = random.Random(seed)
    blocks = rng.sample(range(MAX_ID // 1000), n_posts)
    posts = [_post(rng, max(1, b * 1000 + rng.randrange(SHARDS))) for b in blocks]

    shards: dict[str, list[tuple[str, bytes]]] = {}
    missing, corrupt = 0, None
    for post in sorted(posts, key=lambda p: p["id"]):
        if post["file_ext"] in MOTION or post["md5"] is None:
            continue
        if rng.random() < 0.03:  # the archive lacks some images
            missing += 1
            continue
        folder, number = ("original", post["id"] % 1000) if post["id"] < 6_000_000 else \
            ("recent", 1000 + post["id"] % 1000)
        if corrupt is None and not post["is_deleted"]:
            corrupt, data = post["id"], b"this is not an image"
        else:
            data = _image_bytes(rng, post, post["file_ext"])
        shards.setdefault(f"images/{folder}/data-{number:04d}.tar", []).append(
            (f"{post['id']}.{post['file_ext']}", data))
    # a dated update folder replaces one image of the original shards
    first_shard = min(p for p in shards if p.startswith("images/original/"))
    name = next(n for n, _ in sorted(shards[first_shard]) if n.endswith(".png"))
    replaced = next(p for p in posts if f"{p['id']}.png" == name)
    shards[f"images/2024-05-01/{first_shard.rsplit('/', 1)[1]}"] = [(name, _image_bytes(rng, replaced, "png"))]
    files = {path: _tar_bytes(members) for path, members in shards.items()}

    # flat shape: two shards, rows shuffled (the build must not depend on file or row order)
    shuffled = posts[:]
    rng.shuffle(shuffled)
    half = len(shuffled) // 2
    for k, part in enumerate((shuffled[:half], shuffled[half:])):
        files[f"metadata/flat/posts-{k:03d}.parquet"] = _parquet_bytes(pa.Table.from_pylist(part))
    files.update({f"metadata/normalized/{name}": data for name, data in _normalized_files(posts).items()})
    OwnedFiles(root, "sample folder").write_all(files, prune=True)
    return {"posts": len(posts), "shards": len(shards), "images_missing": missing}


def _normalized_files(posts: list[dict]) -> dict[str, bytes]:
    """HakuBooru's tables: integer ratings, 0/1 booleans, tags by id, relation rows in tag order."""
    names: dict[tuple[str, str], None] = {}  # (tag, category) in first-seen order
    for category in TAG_TYPE:
        for post in posts:
            for tag in post[f"tag_string_{category}"].split():
                names.setdefault((tag, category), None)
    vocab = sorted(names)
    tag_id = {key: i + 1 for i, key in enumerate(vocab)}
    tags = pa.table({"id": [tag_id[k] for k in vocab], "name": [k[0] for k in vocab],
                     "type": [TAG_TYPE[k[1]] for k in vocab], "popularity": [0] * len(vocab)})
    relation_post, relation_tag = [], []
    for post in sorted(posts, key=lambda p: p["id"]):
        keys = [(tag, c) for c in TAG_TYPE for tag in post[f"tag_string_{c}"].split()]
        for key in sorted(keys):
            relation_post.append(post["id"])
            relation_tag.append(tag_id[key])
    relation = pa.table({"id": list(range(1, len(relation_post) + 1)), "post_id": relation_post,
                         "tag_id": relation_tag})
    columns = ["id", "created_at", "fav_count", "score", "file_ext", "md5", "file_url",
               "image_width", "image_height"]
    post_table = pa.table({
        **{c: [p[c] for p in posts] for c in columns},
        "rating": pa.array([RATINGS.index(p["rating"]) for p in posts], pa.int8()),
        "is_deleted": pa.array([int(p["is_deleted"]) for p in posts], pa.int8()),
        "is_banned": pa.array([int(p["is_banned"]) for p in posts], pa.int8()),
    })
    return {"post.parquet": _parquet_bytes(post_table), "tag.parquet": _parquet_bytes(tags),
            "posttagrelation.parquet": _parquet_bytes(relation)}
