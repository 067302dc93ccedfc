"""Find and extract post images: danbooru2023 tar shards or a plain folder of `<id>.<ext>` files.

The index holds one entry per post id: where its bytes lie (a shard and offset, or a file). Tars are
read by seeking from member to member, never unpacked whole; only selected members are copied.
"""
from __future__ import annotations

import io
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from kohaku_prep.errors import PrepError

_MEMBER = re.compile(r"^(\d+)\.([A-Za-z0-9]+)$")
_DATED = re.compile(r"^\d{4}-?\d{2}-?\d{2}")


@dataclass
class ImageIndex:
    ids: np.ndarray  # int64, sorted, unique
    ext: list[str]  # per id, lower case, no dot
    container: list[Path]  # per id: the shard holding it, or the file itself
    offset: np.ndarray  # int64 per id: data offset in the shard (-1 for plain files)
    size: np.ndarray  # int64 per id
    duplicates: int  # members found again in a later source (the later one wins)
    unreadable: list[str]  # shards that could not be read, with the reason

    def position(self, post_id: int) -> int:
        return int(np.searchsorted(self.ids, post_id))


def _source_order(path: Path, root: Path) -> tuple:
    """Dated update folders override original/ and recent/; later dates win."""
    rel = path.relative_to(root)
    dated = any(_DATED.match(part) for part in rel.parts[:-1])
    return (dated, str(rel))


def index_images(root: Path) -> ImageIndex:
    if not root.exists():
        raise PrepError(f"{root}: image source not found")
    entries: dict[int, tuple[str, Path, int, int]] = {}
    duplicates = 0
    unreadable = []
    shards = sorted(root.rglob("*.tar"), key=lambda p: _source_order(p, root))
    if shards:
        for shard in shards:
            try:
                with tarfile.open(shard, "r:") as tf:
                    for member in tf:
                        m = _MEMBER.match(Path(member.name).name)
                        if not member.isfile() or not m:
                            continue
                        post_id = int(m.group(1))
                        duplicates += post_id in entries
                        entries[post_id] = (m.group(2).lower(), shard, member.offset_data, member.size)
            except (tarfile.TarError, OSError) as exc:
                unreadable.append(f"{shard}: {exc}")
    else:
        files = sorted((p for p in root.rglob("*") if p.is_file() and _MEMBER.match(p.name)),
                       key=lambda p: _source_order(p, root))
        for path in files:
            post_id = int(_MEMBER.match(path.name).group(1))
            duplicates += post_id in entries
            entries[post_id] = (path.suffix[1:].lower(), path, -1, path.stat().st_size)
    ids = np.array(sorted(entries), np.int64)
    rows = [entries[i] for i in ids.tolist()]
    return ImageIndex(
        ids=ids,
        ext=[r[0] for r in rows],
        container=[r[1] for r in rows],
        offset=np.array([r[2] for r in rows], np.int64),
        size=np.array([r[3] for r in rows], np.int64),
        duplicates=duplicates,
        unreadable=unreadable,
    )


def read_image(container: Path, offset: int, size: int) -> bytes:
    with open(container, "rb") as fh:
        if offset >= 0:
            fh.seek(offset)
        data = fh.read(size)
    if len(data) != size:
        raise OSError(f"{container}: truncated ({len(data)} of {size} bytes)")
    return data


def image_size(data: bytes) -> tuple[int, int]:
    """Width and height from the image header; raises ValueError when it is not an image."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.size
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(str(exc)) from None
