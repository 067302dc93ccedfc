"""The software versions a build (summary.json) and a run folder (versions.json) record."""
from __future__ import annotations

import importlib.metadata
import platform
from collections.abc import Iterable

from kohaku_prep import __version__

NOT_INSTALLED = "not installed"


def installed_version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return NOT_INSTALLED


def versions(dists: Iterable[str]) -> dict[str, str]:
    """kohaku-prep's and Python's versions, then those of the distributions `dists`."""
    return {"kohaku-prep": __version__, "python": platform.python_version(),
            **{dist: installed_version(dist) for dist in dists}}
