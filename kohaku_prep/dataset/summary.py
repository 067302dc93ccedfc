"""summary.json: what a build records of itself beside the dataset's files.

`BuildSummary` is its one shape: the build writes it, `kohaku-prep dataset` prints its stages, and the report
draws from it (with the manifest's image sizes). Its fields are the file's keys; to_json and from_json are the
file's format (keys sorted, no timestamps: the same build writes the same bytes). Reading is strict: a key
missing (an older kohaku-prep's summary), unknown or of another type is a one-line error.
"""
from __future__ import annotations

import json
import types
from dataclasses import asdict, dataclass, fields, is_dataclass
from typing import Any, Union, get_args, get_origin, get_type_hints

from kohaku_prep.dataset.bad_metadata import PROBLEM_ORDER
from kohaku_prep.dataset.captions import RATING_TAGS
from kohaku_prep.dataset.metadata import RATING_NAMES
from kohaku_prep.dataset.selection import Stage
from kohaku_prep.errors import PrepError
from kohaku_prep.preset import DatasetSection

RATING_ORDER = [f"{name} ({tag})" for name, tag in zip(RATING_NAMES, RATING_TAGS, strict=True)]
NO_TAG = "(none)"  # the count of captions without a quality or year tag
_REBUILD = "build it again to draw its report"


@dataclass(frozen=True)
class PresetRecord:
    layers: list[str]  # where each layer of the resolved preset came from, lowest first
    overrides: list[str]  # one line per override


@dataclass(frozen=True)
class BadMetadataRecord:
    mode: str  # input.bad_metadata
    left_out: dict[str, int]  # posts left out per kind of bad metadata (its stage's name)

    @classmethod
    def of(cls, mode: str, stages: list[Stage]) -> BadMetadataRecord:
        return cls(mode, {s.name: s.dropped for s in stages if s.name in PROBLEM_ORDER})


@dataclass(frozen=True)
class ImagesRecord:
    written: int
    failed: dict[str, int]  # why an image was not written -> how many
    subset_folders: int
    duplicate_members: int  # images of the source found again in a later source, which wins
    unreadable_shards: list[str]


@dataclass(frozen=True)
class InputFile:
    path: str
    bytes: int
    fingerprint: str  # fsutil.fingerprint


@dataclass(frozen=True)
class CaptionRecord:
    """The caption tags' counts over the images written, by tag (RATING_ORDER for ratings; NO_TAG for a
    caption without a quality or year tag), and the most frequent tags over every post captioned."""

    ratings: dict[str, int]
    quality: dict[str, int]
    years: dict[str, int]
    top_tags: list[tuple[str, int]]
    top_tags_by_category: dict[str, list[tuple[str, int]]]

    @classmethod
    def from_counts(cls, ratings: dict, qualities: dict, years: dict, top: list,
                    by_category: dict[str, list]) -> CaptionRecord:
        """From counts by rating code (0..3) and by quality and year tag (None: no tag)."""
        def named(counts: dict) -> dict[str, int]:
            return {(NO_TAG if k is None else k): int(n) for k, n in counts.items()}
        return cls({RATING_ORDER[r]: int(n) for r, n in ratings.items()}, named(qualities), named(years),
                   [(t, int(n)) for t, n in top],
                   {c: [(t, int(n)) for t, n in tags] for c, tags in by_category.items()})


@dataclass(frozen=True)
class PoolRecord:
    stage: str  # the pool's stage name (selection.pool_name)
    start: int
    end: int | None


@dataclass(frozen=True)
class BuildSummary:
    preset: PresetRecord
    seed: int
    stages: list[Stage]  # every stage of the selection and the build, in order
    bad_metadata: BadMetadataRecord
    images: ImagesRecord
    inputs: list[InputFile]
    versions: dict[str, str]
    # what the report draws from, beside the manifest: the caption tags' counts, the pools' id ranges, and
    # the bucket settings that bucketing.py simulates sd-scripts with
    captions: CaptionRecord
    pools: list[PoolRecord]
    dataset: DatasetSection

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> BuildSummary:
        """The summary of summary.json's text: ValueError where it is not JSON, PrepError where it is not of
        this shape."""
        return _typed(json.loads(text), cls, "")


def _typed(value: Any, tp: Any, where: str) -> Any:
    """`value`, read from JSON, as type `tp` (a dataclass, list, dict, tuple, union or scalar)."""
    origin, args = get_origin(tp), get_args(tp)
    if is_dataclass(tp):
        return _record(value, tp, where)
    if origin in (Union, types.UnionType):
        for option in args:
            try:
                return _typed(value, option, where)
            except PrepError:
                continue
    elif origin is list and isinstance(value, list):
        return [_typed(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
    elif origin is dict and isinstance(value, dict):
        return {k: _typed(v, args[1], f"{where}.{k}") for k, v in value.items()}
    elif origin is tuple and isinstance(value, list) and len(value) == len(args):
        return tuple(_typed(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
    elif tp is float and type(value) in (int, float):
        return float(value)
    elif (tp is type(None) and value is None) or (tp in (int, str, bool) and type(value) is tp):
        return value
    shown = getattr(tp, "__name__", str(tp))
    raise PrepError(f"summary.json: '{where}' is {json.dumps(value)[:40]}, not {shown}; {_REBUILD}")


def _record(value: Any, cls: Any, where: str) -> Any:
    """A dataclass from its JSON object: each field present, none other."""
    if not isinstance(value, dict):
        what = f"summary.json: '{where}' is" if where else "summary.json is"
        raise PrepError(f"{what} not an object; {_REBUILD}")
    hints, names = get_type_hints(cls), [f.name for f in fields(cls)]

    def path(name: str) -> str:
        return f"{where}.{name}" if where else name
    for name in names:
        if name not in value:
            raise PrepError(f"summary.json has no '{path(name)}': the dataset was built by an older kohaku-prep; "
                            f"{_REBUILD}")
    unknown = [path(name) for name in value if name not in names]
    if unknown:
        raise PrepError(f"summary.json has '{unknown[0]}', which this kohaku-prep does not know: the dataset was "
                        f"built by another version; {_REBUILD}")
    return cls(**{name: _typed(value[name], hints[name], path(name)) for name in names})
