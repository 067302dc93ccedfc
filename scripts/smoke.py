#!/usr/bin/env python
"""make smoke: a real run of the unmodified sd-scripts trainer on the sample dataset, on this machine.

The Epsilon preset, scaled down by overrides (128 px buckets, batch 1, gradient accumulation 2, two
optimizer steps), trains the full Delta LoKr through LyCORIS with Lion8bit on a randomly initialised
SDXL checkpoint (built once with sd-scripts' own model code and cached), with the offline tokenizer
cache. It checks from the trainer's own output that both optimizer steps ran with finite losses and
that the LoKr file and a complete state were saved; then that `train --resume latest` is refused
with the reason (accumulation 2: the pinned trainer cannot continue at the right step).

The resume leg then does what the pinned trainer can continue: accumulation 1, a run planned for four
optimizer steps, killed (SIGKILL) once its state at step 2 is complete, then `train --resume latest
--force-resume` (one process: the rest of the epoch's order is drawn anew, which the tool says). From
the trainer's output it checks that the resumed run loaded step 2, skipped the two batches done, trained
steps 3 and 4 with finite losses and saved a complete state at step 4. It prints the losses, seconds per
optimizer step and peak memory, and removes the runs unless --keep.

Needs the trainer's environment (make setup-train) and the sample dataset (make dataset). On a CPU it
runs only with glibc's MALLOC_MMAP_THRESHOLD_=65536 (else the first backward pass grows past 20 GB).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CPU_OVERRIDES = [
    "launch.device=cpu", "launch.num_processes=1", "launch.ddp_timeout_minutes=0",
    "launch.ddp_gradient_as_bucket_view=false", "training.mixed_precision=no", "training.full_fp16=false",
    "training.attention=sdpa", "training.max_data_loader_n_workers=0",
]
SMALL_OVERRIDES = [
    "dataset.resolution=128", "dataset.min_bucket_reso=64", "dataset.max_bucket_reso=256", "dataset.batch_size=1",
    "schedule.gradient_accumulation_steps=2", "schedule.max_steps=2", "schedule.warmup_optimizer_steps=1",
    "saving.every_n_steps=2", 'samples.prompts=""',
]


def run_logged(argv: list[str], log: Path, env: dict) -> tuple[int, float, str]:
    """Run a command, its output shown and saved; returns exit code, wall seconds, output."""
    start = time.monotonic()
    with open(log, "w", encoding="utf-8") as fh:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True,
                                errors="replace")
        for line in proc.stdout:
            sys.stdout.write(line)
            fh.write(line)
        code = proc.wait()
    return code, time.monotonic() - start, log.read_text(encoding="utf-8")


def run_until(argv: list[str], log: Path, env: dict, done: Path) -> tuple[int | None, float]:
    """Run a command until the file `done` appears, then SIGKILL its whole process group (a crash).
    Returns its exit code if it ended by itself first (None if killed) and the wall seconds."""
    start = time.monotonic()
    with open(log, "w", encoding="utf-8") as fh:
        proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        while proc.poll() is None and not done.is_file():
            time.sleep(1)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return None, time.monotonic() - start
    return proc.returncode, time.monotonic() - start


def resume_leg(command: list[str], overrides: list[str], run_dir: Path, env: dict) -> tuple[list[str], dict]:
    """Accumulation 1, four steps planned, killed after the state at step 2, resumed to step 4."""
    overrides = [*(o for o in overrides if not o.startswith("run.dir=")), f"run.dir={run_dir}",
                 "schedule.gradient_accumulation_steps=1", "schedule.max_steps=4", "saving.every_n_steps=2"]
    output_dir = run_dir / "output"
    state2 = output_dir / "kohaku-xl-epsilon-step00000002-state"
    state4 = output_dir / "kohaku-xl-epsilon-step00000004-state"
    run_dir.mkdir(parents=True)
    code, first_wall = run_until([*command, *overrides], run_dir / "train-1.log", env, state2 / "random_states_0.pkl")
    problems = [] if code is None else [f"the first run ended by itself (exit {code}) before its state at step 2"]
    print(f"resume leg: first run killed {first_wall:.0f} s in, once its state at step 2 was complete", flush=True)
    code, wall, output = run_logged([*command, "--resume", "latest", "--force-resume", *overrides],
                                    run_dir / "train-2.log", env)
    losses = [float(x) for x in re.findall(r"avr_loss=([0-9.eE+-]+|nan|inf)", output)]
    step = json.loads((state4 / "train_state.json").read_text())["current_step"] if state4.is_dir() else None
    expected = {
        "exit code 0": code == 0,
        "the tool warned of the redrawn order": "epoch's order drawn anew" in output,
        "the trainer loaded the state of step 2": re.search(r"load train state from.*?'current_step': 2", output, re.S),
        "the trainer skipped the 2 batches done": "skipping 2 steps" in output,
        "it trained steps 3 and 4 (its bar 2/2)": re.search(r"steps: 100%\|[^|]*\| 2/2 ", output),
        "finite losses": losses and all(math.isfinite(x) for x in losses),
        "a complete state at step 4": step == 4 and (state4 / "random_states_0.pkl").is_file(),
    }
    problems += [f"resume leg: not {what}" for what, ok in expected.items() if not ok]
    return problems, {"first_wall": first_wall, "wall": wall, "losses": losses, "step": step}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sd-scripts", default=str(ROOT / "third_party" / "sd-scripts"))
    ap.add_argument("--dataset", default=str(ROOT / "build" / "sample-dataset"))
    ap.add_argument("--cache", default=str(ROOT / "build" / "smoke-cache"), help="the random checkpoint, tokenizers")
    ap.add_argument("--run", default=str(ROOT / "build" / "smoke-run"))
    ap.add_argument("--keep", action="store_true", help="keep the run folder (saved states are ~2 GB each)")
    args = ap.parse_args(argv)
    cache, run_dir = Path(args.cache), Path(args.run)
    if not (Path(args.dataset) / "manifest.parquet").is_file():
        sys.exit(f"{args.dataset}: no sample dataset (make dataset)")
    cache.mkdir(parents=True, exist_ok=True)
    checkpoint = cache / "random_sdxl.safetensors"
    if not checkpoint.is_file():
        print("building the random SDXL checkpoint (once)", flush=True)
        subprocess.run([sys.executable, str(ROOT / "scripts" / "make_random_sdxl.py"), "--sd-scripts",
                        args.sd_scripts, "--out", str(checkpoint)], check=True)
    tokenizers = cache / "tokenizers"
    subprocess.run([sys.executable, "-m", "kohaku_prep", "tokenizers", str(tokenizers)], check=True)

    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1",
           "KOHAKU_SD_SCRIPTS": args.sd_scripts, "COLUMNS": "400"}  # the trainer's log lines unwrapped
    overrides = [*CPU_OVERRIDES, *SMALL_OVERRIDES, f"run.dataset={args.dataset}", f"run.dir={run_dir}",
                 f"model.pretrained={checkpoint}", f"model.tokenizer_cache_dir={tokenizers}"]
    command = [sys.executable, "-m", "kohaku_prep", "train", "--preset", "epsilon"]
    code, wall, output = run_logged([*command, *overrides], run_dir / "train.log", env)
    if code:
        sys.exit(f"the trainer exited with {code}; see {run_dir / 'train.log'}")

    losses = [float(x) for x in re.findall(r"avr_loss=([0-9.eE+-]+|nan|inf)", output)]
    per_step = re.findall(r"steps: 100%\|[^|]*\| 2/2 \[([0-9:]+)<", output)
    output_dir = run_dir / "output"
    lokr = output_dir / "kohaku-xl-epsilon.safetensors"
    state = output_dir / "kohaku-xl-epsilon-step00000002-state"
    problems = []
    if not losses or not all(math.isfinite(x) for x in losses):
        problems.append(f"losses not finite or not found: {losses}")
    if not lokr.is_file():
        problems.append(f"no LoKr file at {lokr}")
    step = json.loads((state / "train_state.json").read_text())["current_step"] if state.is_dir() else None
    if step != 2 or not (state / "random_states_0.pkl").is_file():
        problems.append(f"no complete state at step 2 in {state} (train_state.json says {step})")

    resume = subprocess.run([*command, "--dry-run", "--resume", "latest", *overrides], env=env,
                            capture_output=True, text=True)
    if resume.returncode != 1 or "cannot resume with gradient accumulation 2" not in resume.stderr:
        problems.append(f"resume was not refused as expected: {resume.stderr.strip()[-500:]}")

    leg_problems, leg = resume_leg(command, overrides, run_dir / "resume", env)
    problems += leg_problems
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e6

    print("\nsmoke summary")
    print(f"  losses             {', '.join(f'{x:.4f}' for x in losses)}")
    print(f"  trainer wall       {wall:.0f} s for 2 optimizer steps of 2 micro-batches, loading included")
    print(f"  training loop      {per_step[-1] if per_step else '?'} for 2 steps (the trainer's progress bar)")
    print(f"  peak memory        {peak_gb:.1f} GB (largest child process, RSS)")
    print(f"  LoKr file          {lokr.stat().st_size:,} bytes" if lokr.is_file() else "  LoKr file          missing")
    print(f"  resume, accum. 2   refused: {resume.stderr.strip().splitlines()[-1] if resume.stderr else '?'}")
    print(f"  resume, accum. 1   killed after step 2 ({leg['first_wall']:.0f} s), resumed to step {leg['step']} in "
          f"{leg['wall']:.0f} s, losses {', '.join(f'{x:.4f}' for x in leg['losses'])}")
    if not args.keep:
        shutil.rmtree(run_dir)
    for problem in problems:
        print(f"FAIL {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
