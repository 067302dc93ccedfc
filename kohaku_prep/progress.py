"""Progress bars for the long stages, on stderr: count, rate and ETA on a terminal, silent otherwise."""
from __future__ import annotations

import sys

from tqdm import tqdm


def bar(what: str, total: int | None = None, unit: str = "post") -> tqdm:
    """A bar to `update(n)`; off (disable=None) when stderr is not a terminal, so logs stay clean."""
    return tqdm(total=total, desc=what, unit=unit, unit_scale=True, disable=None, file=sys.stderr,
                smoothing=0.1)
