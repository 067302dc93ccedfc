"""Resuming a run from a state sd-scripts saved, only where the pinned trainer gets it right.

sd-scripts v0.10.1 (train_network.py) resumes with `--resume DIR --skip_until_initial_step`. It skips
S x G micro-batches for a state saved at optimizer step S with gradient accumulation G, which is the
right data position, but then counts epochs to skip as S x G / (optimizer steps per epoch) and sets
its step counter to the micro-batch count, both wrong whenever G > 1 (sd-scripts issue #2407): it ends
at once, trains an extra epoch, or runs on with shifted step numbers. No combination of its flags gives
both the right data position and the right step for G > 1, so such a resume is refused.

The data position is reproduced only under DDP: there accelerate seeds the sampler from a generator
re-created identically at start; a single process draws its order from the restored global RNG,
which differs from the order of the interrupted run.

A state continues only the run that saved it: a resume under another preset, dataset, trainer commit or
bitsandbytes version is refused unless forced.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from kohaku_prep import SD_SCRIPTS_TAG
from kohaku_prep.errors import PrepError

# accelerate writes random_states_0.pkl last (after train_state.json, the model, optimizer, scheduler)
COMPLETE_MARKER = "random_states_0.pkl"
RUN_RECORD = "run.json"  # in the run folder: what the run was started from (see run.run_record)


@dataclass
class SavedState:
    path: Path
    step: int  # optimizer steps done, from the trainer's train_state.json


def saved_states(output_dir: Path, output_name: str) -> list[SavedState]:
    """Complete saved states, oldest first; a state cut off mid-save lacks its last file and is skipped."""
    pattern = re.compile(rf"^{re.escape(output_name)}-(step\d{{8}}-|\d{{6}}-)?state$")
    states = []
    for folder in sorted(output_dir.glob(f"{output_name}-*state")) if output_dir.is_dir() else []:
        if not pattern.match(folder.name) or not (folder / COMPLETE_MARKER).is_file():
            continue
        try:
            step = int(json.loads((folder / "train_state.json").read_text())["current_step"])
        except (OSError, ValueError, KeyError):
            continue
        states.append(SavedState(folder, step))
    return sorted(states, key=lambda s: (s.step, s.path.name))


def find_state(which: str, output_dir: Path, output_name: str) -> SavedState:
    if which != "latest":
        path = Path(which)
        matches = [s for s in saved_states(path.parent, output_name) if s.path == path]
        if not matches:
            raise PrepError(f"{path}: not a complete saved state of '{output_name}'")
        return matches[0]
    states = saved_states(output_dir, output_name)
    if not states:
        raise PrepError(f"{output_dir}: no complete saved state to resume from")
    return states[-1]


def resume_args(state: SavedState, accumulation: int, processes: int, steps_per_epoch: int,
                force: bool = False) -> tuple[list[str], list[str]]:
    """The trainer flags that continue at the right data position and step, and warnings; or a refusal
    with the reason. `force` lets only a single-process resume through: its step, schedule and count
    of batches done are right, only the order of the epoch's remaining batches is drawn anew.

    steps_per_epoch: optimizer steps in one epoch (the plan's optimizer steps / epochs).
    """
    if accumulation > 1:
        raise PrepError(
            f"cannot resume with gradient accumulation {accumulation}: sd-scripts {SD_SCRIPTS_TAG} would "
            f"skip to the right data but count {state.step} x {accumulation} as its step (issue #2407), "
            "ending at once or training past the plan")
    if state.step >= steps_per_epoch:
        raise PrepError(f"cannot resume past the first epoch (state at step {state.step:,}, "
                        f"{steps_per_epoch:,} per epoch): sd-scripts {SD_SCRIPTS_TAG} then restarts its step count")
    warnings = []
    if processes < 2:
        redraw = (f"a single-process run resumes at step {state.step:,} with the epoch's order drawn anew: "
                  f"the {steps_per_epoch - state.step:,} optimizer steps left train batches of a new order, "
                  "so some images of this epoch repeat and others are not seen")
        if not force:
            raise PrepError(f"cannot resume exactly: {redraw} (--force-resume resumes anyway)")
        warnings.append(redraw)
    return ["--resume", str(state.path), "--skip_until_initial_step"], warnings


def epoch_steps(optimizer_steps: int, epochs: int) -> int:
    return math.ceil(optimizer_steps / epochs)


def check_continuation(recorded: dict[str, str] | None, current: dict[str, str], force: bool) -> list[str]:
    """A resume continues the run that saved the state: refused when what the run was started from
    (its run.json) differs from now, or was never recorded, naming each difference; forced, the
    differences come back as warnings."""
    if recorded is None:
        problems = [f"no readable {RUN_RECORD} in the run folder records what the run was started from"]
    else:
        problems = [f"{key} changed: {recorded.get(key, 'unrecorded')} -> {value}"
                    for key, value in sorted(current.items()) if recorded.get(key) != value]
    if problems and not force:
        raise PrepError(f"cannot resume: {'; '.join(problems)} (--force-resume resumes anyway)")
    return problems
