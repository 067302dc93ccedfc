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
    """Where each post's image lies; one row per post id, columns as arrays."""

    ids: np.ndarray  # int64, sorted, unique
    source: np.ndarray  # int32 per id, into `sources`
    sources: list[Path]  # tar shards, or folders holding <id>.<ext> files
    ext: np.ndarray  # int32 per id, into `extensions`
    extensions: list[str]  # as written in the member or file name, without the dot
    offset: np.ndarray  # int64 per id: data offset in its shard, -1 for a plain file
    size: np.ndarray  # int64 per id
    duplicates: int  # members found again in a later source (the later one wins)
    unreadable: list[str]  # shards that could not be read, with the reason

    def file_name(self, row: int) -> str:
        return f"{self.ids[row]}.{self.extensions[self.ext[row]]}"

    def read(self, row: int) -> bytes:
        """The image bytes of index row `row`."""
        source, offset, size = self.sources[self.source[row]], int(self.offset[row]), int(self.size[row])
        return read_image(source if offset >= 0 else source / self.file_name(row), offset, size)


def _source_order(path: Path, root: Path) -> tuple:
    """Dated update folders override original/ and recent/; later dates win."""
    rel = path.relative_to(root)
    dated = any(_DATED.match(part) for part in rel.parts[:-1])
    return (dated, str(rel))


def _members(shard: Path):
    """(post id, extension, data offset, size) of each image member of a tar shard."""
    with tarfile.open(shard, "r:") as tf:
        for member in tf:
            m = _MEMBER.match(Path(member.name).name)
            if member.isfile() and m:
                yield int(m.group(1)), m.group(2), member.offset_data, member.size


def index_images(root: Path) -> ImageIndex:
    if not root.exists():
        raise PrepError(f"{root}: image source not found")
    entries: dict[int, tuple[int, str, int, int]] = {}  # id -> (source, extension, offset, size)
    sources: list[Path] = []
    duplicates = 0
    unreadable = []
    shards = sorted(root.rglob("*.tar"), key=lambda p: _source_order(p, root))
    if shards:
        for shard in shards:
            sources.append(shard)
            try:
                for post_id, ext, offset, size in _members(shard):
                    duplicates += post_id in entries
                    entries[post_id] = (len(sources) - 1, ext, offset, size)
            except (tarfile.TarError, OSError) as exc:
                unreadable.append(f"{shard}: {exc}")
    else:
        files = sorted((p for p in root.rglob("*") if _MEMBER.match(p.name) and p.is_file()),
                       key=lambda p: _source_order(p, root))
        folder_code: dict[Path, int] = {}
        for path in files:
            code = folder_code.setdefault(path.parent, len(folder_code))
            m = _MEMBER.match(path.name)
            post_id = int(m.group(1))
            duplicates += post_id in entries
            entries[post_id] = (code, m.group(2), -1, path.stat().st_size)
        sources = list(folder_code)
    ids = np.array(sorted(entries), np.int64)
    rows = [entries[i] for i in ids.tolist()]
    extensions = sorted({r[1] for r in rows})
    ext_code = {e: i for i, e in enumerate(extensions)}
    return ImageIndex(
        ids=ids,
        source=np.array([r[0] for r in rows], np.int32),
        sources=sources,
        ext=np.array([ext_code[r[1]] for r in rows], np.int32),
        extensions=extensions,
        offset=np.array([r[2] for r in rows], np.int64),
        size=np.array([r[3] for r in rows], np.int64),
        duplicates=duplicates,
        unreadable=unreadable,
    )


def read_image(path: Path, offset: int, size: int) -> bytes:
    with open(path, "rb") as fh:
        if offset >= 0:
            fh.seek(offset)
        data = fh.read(size)
    if len(data) != size:
        raise OSError(f"{path}: truncated ({len(data)} of {size} bytes)")
    return data


def image_size(data: bytes) -> tuple[int, int]:
    """Width and height from the image header; raises ValueError when it is not an image."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.size
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(str(exc)) from None
