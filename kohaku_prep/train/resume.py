"""Continuing a run: which state is complete, and whether a run folder may be continued as it is.

A run is a chain of launches, one per part (kohaku_prep.train.parts); a part's end state is what the next
part resumes. One launch of sd-scripts v0.10.1 is never resumed in the middle: with gradient
accumulation above 1 its `--skip_until_initial_step` counts skipped micro-batches as optimizer steps
(its issue #2407), and without that flag it replays the epoch from its first batch. A crashed part is
launched again from the previous part's end state.

A run continues only as it was started: under another preset, dataset, trainer commit or bitsandbytes
version it is refused unless forced.
"""
from __future__ import annotations

import json
from pathlib import Path

from kohaku_prep.errors import PrepError

# accelerate writes random_states_0.pkl last (after train_state.json, the model, optimizer, scheduler)
COMPLETE_MARKER = "random_states_0.pkl"
RUN_RECORD = "run.json"  # in the run folder: what the run was started from (see run.run_record)


def state_step(folder: Path) -> int | None:
    """The optimizer steps a saved state records, or None when it is missing or was cut off mid-save."""
    if not (folder / COMPLETE_MARKER).is_file():
        return None
    try:
        return int(json.loads((folder / "train_state.json").read_text())["current_step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def check_continuation(recorded: dict[str, str] | None, current: dict[str, str], force: bool) -> list[str]:
    """A run folder continues the run that wrote it: refused when what the run was started from (its
    run.json) differs from now, or was never recorded, naming each difference; forced, the differences
    come back as warnings."""
    if recorded is None:
        problems = [f"no readable {RUN_RECORD} in the run folder records what the run was started from"]
    else:
        problems = [f"{key} changed: {recorded.get(key, 'unrecorded')} -> {value}"
                    for key, value in sorted(current.items()) if recorded.get(key) != value]
    if problems and not force:
        raise PrepError(f"cannot continue the run: {'; '.join(problems)} (--force-resume continues anyway)")
    return problems
