"""The public danbooru dumps, recognised by their columns, and the names their columns go by.

Code downstream speaks danbooru's own column names (`tag_string_general`, ...). A dump that names a
column otherwise is mapped: by its known layout, then by the preset's `input.columns`.
"""
from __future__ import annotations

from dataclasses import dataclass

SQLITE_MAGIC = b"SQLite format 3\x00"  # the first bytes of a SQLite database file (HakuBooru's .db)
# Set on the Parquet files `kohaku-prep convert` writes, so that they are recognised as such.
CONVERTED_KEY = b"kohaku-prep.converted-from"

TAG_CATEGORIES = ("general", "character", "copyright", "artist", "meta")


@dataclass
class Layout:
    name: str  # how the report names it
    columns: dict[str, str]  # danbooru's name -> the name in this dump, where they differ


def recognise_flat(names: list[str], schema_metadata: dict | None) -> Layout:
    present = set(names)
    if schema_metadata and CONVERTED_KEY in schema_metadata:
        return Layout(f"danbooru JSON Lines post dump, converted from {schema_metadata[CONVERTED_KEY].decode()}", {})
    if "tag_string_general" in present and any(n.startswith("media_asset.") for n in present):
        return Layout("deepghs danbooru2024 layout", {})
    if "tag_string_general" not in present and present.issuperset(TAG_CATEGORIES):
        return Layout("isek-ai danbooru-tags layout", {f"tag_string_{c}": c for c in TAG_CATEGORIES})
    return Layout("danbooru post table", {})


OLD_HAKUBOORU = ("a HakuBooru database from before 2024-03-20 (tags in post.tag_list as '$<base36>#' "
                 "tokens, no posttagrelation table), which this tool does not read; get the current "
                 "danbooru2023.db (HakuBooru since 2024-03-20) or its Parquet export, "
                 "KBlueLeaf/danbooru2023-metadata-database")


def column_names(known: dict[str, str], overrides: dict[str, str]) -> dict[str, str]:
    """danbooru's name -> the name to read: the preset's input.columns over the known layout's."""
    return {**known, **{name: given for name, given in overrides.items() if given}}
