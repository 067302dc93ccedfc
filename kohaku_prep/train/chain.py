"""Runs a run's parts one after another, each a plain `accelerate launch` of the unmodified trainer.

A part is done only when its launch exits 0 and its end state is complete; then its LoKr is moved to the
run's output under its cumulative step, the keep policy is applied, and `done.json` records it. A failed
launch is tried again `run.retries` times, then the run stops naming the part: the same command continues
at the first unfinished part, from the previous part's end state.
"""
from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from kohaku_prep.errors import PrepError, Stopped
from kohaku_prep.fsutil import new_temp_path, write_atomic
from kohaku_prep.preset import Preset
from kohaku_prep.train import parts as parts_module
from kohaku_prep.train import resume, run
from kohaku_prep.train.training import RunPaths

Launcher = Callable[[list[str], Path], int]


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def launch(argv: list[str], log: Path) -> int:
    """Run one launch, its output shown and appended to the part's log; Ctrl-C reaches the trainer too
    (same process group), and the launch is waited for before the run stops."""
    with open(log, "ab") as fh:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert proc.stdout is not None  # stdout=PIPE
        try:
            for line in proc.stdout:
                sys.stdout.buffer.write(line)
                sys.stdout.flush()
                fh.write(line)
            return proc.wait()
        except KeyboardInterrupt:
            proc.wait()
            raise


def read_done(paths: RunPaths, index: int) -> dict | None:
    try:
        return json.loads(paths.part(index).done.read_text())
    except (OSError, ValueError):
        return None


def first_unfinished(paths: RunPaths, count: int) -> int:
    return next((i for i in range(count) if read_done(paths, i) is None), count)


def _finished_ok(p: Preset, paths: RunPaths, index: int, code: int) -> str | None:
    """Why a launch did not finish its part, or None when it did."""
    part = paths.part(index)
    if code:
        return f"the launch exited with {code}"
    if p.launch.machine_rank == 0 and resume.state_step(part.end_state(p.saving.output_name)) is None:
        return f"no complete end state in {part.end_state(p.saving.output_name)}"
    if p.launch.machine_rank == 0 and not part.lokr(p.saving.output_name).is_file():
        return f"no LoKr file at {part.lokr(p.saving.output_name)}"
    return None


def _publish(p: Preset, rp: run.RunPlan, paths: RunPaths, index: int) -> None:
    """After `done.json`: the part's LoKr and sample images under its cumulative step, the final LoKr
    after the last part, then the keep policy. Each step can be repeated, so a crash between them is
    mended by the next run."""
    name, part = p.saving.output_name, rp.parts.parts[index]
    lokr, at_step = paths.part(index).lokr(name), paths.lokr_at(name, part.end_step)
    paths.output_dir.mkdir(exist_ok=True)
    if lokr.is_file():
        os.replace(lokr, at_step)
    samples = paths.part(index).output_dir / "sample"  # sd-scripts' folder, its names in the part's own steps
    for image in sorted(samples.glob("*.png")) if samples.is_dir() else []:
        paths.samples_dir.mkdir(exist_ok=True)
        os.replace(image, paths.samples_dir / f"step{part.end_step:08d}_{image.name}")
    if index == len(rp.parts.parts) - 1 and at_step.is_file():
        final = paths.final_lokr(name)
        tmp = new_temp_path(final)
        shutil.copyfile(at_step, tmp)
        os.replace(tmp, final)
    _keep(p, rp, paths, index)


def _keep(p: Preset, rp: run.RunPlan, paths: RunPaths, done: int) -> None:
    """Delete what the tool no longer needs, among its own files only: superseded LoKr files off the
    cadence, states older than the newest `saving.keep_states`, and finished parts' links."""
    name = p.saving.output_name
    kept = set(parts_module.cadence_ends(rp.parts.parts[:done + 1], p.saving.every_n_steps))
    for part in rp.parts.parts[:done]:  # the newest part end stays until the next one replaces it
        if part.end_step not in kept:
            paths.lokr_at(name, part.end_step).unlink(missing_ok=True)
    for index in range(done + 1):
        folder = paths.part(index)
        if folder.images.is_dir():
            shutil.rmtree(folder.images)
        if index <= done - p.saving.keep_states and folder.end_state(name).is_dir():
            shutil.rmtree(folder.end_state(name))


def run_parts(p: Preset, rp: run.RunPlan, paths: RunPaths, sd_scripts: Path, preset_name: str,
              echo: Callable[[str], None], launcher: Launcher | None = None) -> None:
    launcher = launcher or launch
    count = len(rp.parts.parts)
    for index in range(count):
        record = read_done(paths, index)
        if record is not None:
            _publish(p, rp, paths, index)  # idempotent: mends a crash right after done.json
            continue
        part = rp.parts.parts[index]
        argv = run.write_part_folder(p, rp, paths, index, sd_scripts, preset_name)
        folder = paths.part(index)
        echo(f"part {index + 1} of {count}: optimizer steps {part.start_step:,} -> {part.end_step:,} of "
             f"{rp.parts.steps:,}, {len(part.rows):,} images; command {folder.command}")
        for attempt in range(1, p.run.retries + 2):
            started = time.monotonic()
            write_atomic(folder.attempt, json.dumps({"attempt": attempt, "pid": os.getpid(), "started": _now()}) + "\n")
            try:
                code = launcher(argv, folder.log)
            except KeyboardInterrupt:
                folder.attempt.unlink(missing_ok=True)
                raise Stopped(f"stopped during part {index + 1} of {count}; the same command continues from "
                              f"part {index + 1} (the previous part's end state)") from None
            problem = _finished_ok(p, paths, index, code)
            if problem is None:
                break
            left = p.run.retries + 1 - attempt
            echo(f"part {index + 1} of {count}: {problem} (log {folder.log})"
                 + (f"; launching it again ({left} retr{'y' if left == 1 else 'ies'} left)" if left else ""))
        else:
            folder.attempt.unlink(missing_ok=True)
            raise PrepError(f"part {index + 1} of {count} failed: {problem}; see {folder.log}. Fix the cause and "
                            f"run the same command: it continues from part {index + 1}")
        write_atomic(folder.done, json.dumps({
            "part": index + 1, "attempts": attempt, "start_step": part.start_step, "end_step": part.end_step,
            "steps": part.steps, "wall_seconds": round(time.monotonic() - started, 1), "finished": _now()},
            indent=1) + "\n")
        folder.attempt.unlink(missing_ok=True)
        _publish(p, rp, paths, index)
        echo(f"part {index + 1} of {count} done: optimizer step {part.end_step:,} of {rp.parts.steps:,}")
    echo(f"run complete: {paths.final_lokr(p.saving.output_name)}")
