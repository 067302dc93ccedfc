#!/usr/bin/env python
"""make smoke / make gpu-check: real runs in parts of the unmodified sd-scripts trainer on the sample dataset.

Both train the Epsilon preset (full Delta LoKr through LyCORIS, Lion8bit) on a randomly initialised SDXL
checkpoint, built once with sd-scripts' own model code and cached, with the offline tokenizer cache, as a
chain of launches, one part of the data each, through `kohaku-prep train` itself.

- smoke (CPU, fp32, 128 px, batch 1, gradient accumulation 2, 3 parts of one optimizer step): a run killed
  with SIGKILL in the middle of its second part and continued with the same command, and an uninterrupted
  run. It checks that the two final LoKr files hold the same tensors bit for bit (and the same metadata but
  for the per-launch session id and times), that each resumed part loaded the previous part's state, and
  that the learning rate follows constant_with_warmup over cumulative steps across part boundaries.
- gpu (one GPU, fp16, 1024 px, batch 4, accumulation 2, 2 parts of 2 steps): the killed-and-continued run
  only, for figures: seconds per optimizer step, images per second, peak GPU memory, start-up per launch.

Either writes its figures as JSON (--json). Needs the trainer's environment (make setup-train) and the
sample dataset (make dataset). On a CPU it runs only with glibc's MALLOC_MMAP_THRESHOLD_=65536 (else the
first backward pass grows past 20 GB).
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
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NAME = "kohaku-xl-epsilon"
PROFILES = {
    "smoke": [
        "launch.device=cpu", "launch.num_processes=1", "launch.ddp_timeout_minutes=0",
        "launch.ddp_gradient_as_bucket_view=false", "training.mixed_precision=no", "training.full_fp16=false",
        "training.save_precision=float", "training.attention=sdpa", "training.max_data_loader_n_workers=0",
        "dataset.resolution=128", "dataset.min_bucket_reso=64", "dataset.max_bucket_reso=256",
        "dataset.batch_size=1", "schedule.gradient_accumulation_steps=2", "schedule.warmup_optimizer_steps=3",
        "schedule.steps_per_part=1", "schedule.max_steps=3",
    ],
    "gpu": [
        "launch.num_processes=1", "launch.ddp_timeout_minutes=0", "launch.ddp_gradient_as_bucket_view=false",
        "training.attention=sdpa", "training.max_data_loader_n_workers=2", "dataset.batch_size=4",
        "schedule.gradient_accumulation_steps=2", "schedule.steps_per_part=2", "schedule.max_steps=4",
    ],
}
COMMON = ["saving.every_n_steps=1", 'samples.prompts=""', "run.retries=0"]
VOLATILE_METADATA = {"ss_session_id", "ss_training_started_at", "ss_training_finished_at", "modelspec.date"}


def _says(path: Path, marker: str) -> bool:
    try:
        return marker in path.read_text(errors="replace")
    except OSError:
        return False


def run_logged(argv: list[str], log: Path, env: dict, kill_when: tuple[Path, str] | None = None,
               kill_after: float = 0.0) -> tuple[int | None, float]:
    """Run a command, its output saved; with `kill_when` (a log file and a line in it), SIGKILL its whole
    process group (a crash) `kill_after` seconds after that line appears. Returns the exit code (None if
    killed) and the wall seconds."""
    start = time.monotonic()
    seen = None
    with open(log, "w", encoding="utf-8") as fh:
        proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        while proc.poll() is None:
            if seen is None and kill_when is not None and _says(*kill_when):
                seen = time.monotonic()
            if seen is not None and time.monotonic() - seen >= kill_after:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return None, time.monotonic() - start
            time.sleep(1)
    return proc.returncode, time.monotonic() - start


class GpuMemory:
    """Peak GPU memory used, polled from nvidia-smi once a second (absent on a CPU: stays None)."""

    def __init__(self):
        self.peak_mib: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.wait(1.0):
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                                     capture_output=True, text=True, timeout=10).stdout
            except (OSError, subprocess.TimeoutExpired):
                return
            used = [int(x) for x in out.split() if x.isdigit()]
            if used:
                self.peak_mib = max(self.peak_mib or 0, max(used))

    def __enter__(self) -> "GpuMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()


def part_figures(run_dir: Path) -> list[dict]:
    """Per finished part: wall seconds of its launch, the trainer's own loop time from its progress bar
    (the rest is start-up), and whether it resumed a state."""
    figures = []
    for part in sorted((run_dir / "parts").iterdir()):
        done = json.loads((part / "done.json").read_text()) if (part / "done.json").is_file() else None
        log = (part / "train.log").read_text(errors="replace") if (part / "train.log").is_file() else ""
        loops = re.findall(r"steps: 100%\|[^|]*\| (\d+)/\1 \[(\d+):(\d+)(?::(\d+))?<", log)
        loop = None
        if loops:
            _, a, b, c = loops[-1]
            loop = int(a) * 3600 + int(b) * 60 + int(c) if c else int(a) * 60 + int(b)
        figures.append({
            "part": part.name, "done": done is not None, "wall_s": done and done["wall_seconds"],
            "steps": done and done["steps"], "loop_s": loop,
            "startup_s": done and loop is not None and round(done["wall_seconds"] - loop, 1),
            "resumed_state": "resume training from local state" in log,
            "losses": [float(x) for x in re.findall(r"avr_loss=([0-9.eE+-]+|nan|inf)", log)],
        })
    return figures


def logged_lrs(run_dir: Path) -> list[tuple[int, float]]:
    """(cumulative step, UNet learning rate) from every part's TensorBoard log, as `status` reads them."""
    from kohaku_prep.train import run_logs

    table = json.loads((run_dir / "parts.json").read_text())
    logs = run_logs.read_run_logs([(run_dir / "parts" / f"{row['part']:03d}" / "logs", row["start_step"])
                                   for row in table])
    unet = logs.lr["unet"]
    return list(zip(unet.steps.tolist(), unet.values.tolist(), strict=True))


def compare_lokr(a: Path, b: Path, root_a: Path, root_b: Path) -> dict:
    """Tensors bit for bit; metadata but for the per-launch keys, each run's folder read as the same."""
    from safetensors import safe_open

    with safe_open(str(a), "pt") as fa, safe_open(str(b), "pt") as fb:
        keys = sorted(fa.keys())
        differing, largest = [], 0.0
        if keys != sorted(fb.keys()):
            return {"same_keys": False}
        for key in keys:
            ta, tb = fa.get_tensor(key), fb.get_tensor(key)
            if not (ta.shape == tb.shape and ta.dtype == tb.dtype and ta.equal(tb)):
                differing.append(key)
                largest = max(largest, float((ta.float() - tb.float()).abs().max()))
        meta_a = {k: v.replace(str(root_a), "<run>") for k, v in (fa.metadata() or {}).items()}
        meta_b = {k: v.replace(str(root_b), "<run>") for k, v in (fb.metadata() or {}).items()}
    meta_diff = sorted(k for k in set(meta_a) | set(meta_b)
                       if k not in VOLATILE_METADATA and meta_a.get(k) != meta_b.get(k))
    return {"same_keys": True, "tensors": len(keys), "differing_tensors": len(differing),
            "largest_difference": largest, "metadata_differences": meta_diff}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", choices=sorted(PROFILES), default="smoke")
    ap.add_argument("--sd-scripts", default=str(ROOT / "third_party" / "sd-scripts"))
    ap.add_argument("--dataset", default=str(ROOT / "build" / "sample-dataset"))
    ap.add_argument("--cache", default=str(ROOT / "build" / "smoke-cache"), help="the random checkpoint, tokenizers")
    ap.add_argument("--runs", default=str(ROOT / "build" / "smoke-runs"))
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--keep", action="store_true", help="keep the run folders (states are ~2 GB each)")
    args = ap.parse_args(argv)
    cache, runs = Path(args.cache), Path(args.runs)
    if not (Path(args.dataset) / "manifest.parquet").is_file():
        sys.exit(f"{args.dataset}: no sample dataset (make dataset)")
    cache.mkdir(parents=True, exist_ok=True)
    checkpoint = cache / "random_sdxl.safetensors"
    figures: dict = {"profile": args.profile}
    if not checkpoint.is_file():
        print("building the random SDXL checkpoint (once)", flush=True)
        start = time.monotonic()
        subprocess.run([sys.executable, str(ROOT / "scripts" / "make_random_sdxl.py"), "--sd-scripts",
                        args.sd_scripts, "--out", str(checkpoint)], check=True)
        figures["checkpoint_s"] = round(time.monotonic() - start, 1)
    tokenizers = cache / "tokenizers"
    subprocess.run([sys.executable, "-m", "kohaku_prep", "tokenizers", str(tokenizers)], check=True)

    shutil.rmtree(runs, ignore_errors=True)  # the script's own folder, recreated each time
    runs.mkdir(parents=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "KOHAKU_SD_SCRIPTS": args.sd_scripts,
           "COLUMNS": "400"}  # the trainer's log lines unwrapped
    if args.profile == "smoke":
        env["MALLOC_MMAP_THRESHOLD_"] = "65536"
    base = [sys.executable, "-m", "kohaku_prep", "train", "--preset", "epsilon", *PROFILES[args.profile], *COMMON,
            f"run.dataset={args.dataset}", f"model.pretrained={checkpoint}", f"model.tokenizer_cache_dir={tokenizers}"]
    problems = []

    killed = runs / "killed"
    command = [*base, f"run.dir={killed}"]
    # the trainer prints this at its first batch: the kill comes in the middle of part 2's first step
    second_part_training = (killed / "parts" / "002" / "train.log", "epoch is incremented")
    with GpuMemory() as gpu:
        code, first_wall = run_logged(command, runs / "killed-1.log", env, kill_when=second_part_training,
                                      kill_after={"smoke": 60.0, "gpu": 2.0}[args.profile])
        if code is not None:
            problems.append(f"the first run ended by itself (exit {code}) before its second part was under way")
        print(f"killed the run {first_wall:.0f} s in, during part 2", flush=True)
        code, second_wall = run_logged(command, runs / "killed-2.log", env)
    if code:
        problems.append(f"the continued run exited with {code}; see {runs / 'killed-2.log'}")
    continued = (runs / "killed-2.log").read_text(errors="replace")
    if "continuing the run at part 2 of" not in continued:
        problems.append("the same command did not continue at part 2")
    parts = part_figures(killed)
    figures.update({"killed_run_wall_s": round(first_wall, 1), "continued_run_wall_s": round(second_wall, 1),
                    "parts": parts, "peak_gpu_memory_mib": gpu.peak_mib})
    for part in parts[1:]:
        if not part["resumed_state"]:
            problems.append(f"part {part['part']} did not load the previous part's state")
    losses = [x for part in parts for x in part["losses"]]
    if not losses or not all(math.isfinite(x) for x in losses):
        problems.append(f"losses not finite or not found: {losses}")
    finished = [p for p in parts if p["loop_s"] and p["steps"]]
    if finished:
        steps = sum(p["steps"] for p in finished)
        loop = sum(p["loop_s"] for p in finished)
        per_step_images = {"smoke": 1 * 2, "gpu": 4 * 2}[args.profile]
        figures.update({"seconds_per_step": round(loop / steps, 2),
                        "images_per_second": round(steps * per_step_images / loop, 3),
                        "startup_s_per_launch": [p["startup_s"] for p in finished]})

    lrs = logged_lrs(killed)
    figures["learning_rates"] = lrs
    if args.profile == "smoke":
        base_lr, warmup = 2e-5, 3  # Epsilon's UNet lr; schedule.warmup_optimizer_steps above
        # sd-scripts logs each micro-batch at the optimizer steps done (0 at the first); a part that began
        # its schedule anew would show 0 again at its first step
        fits = all(math.isclose(lr, base_lr * min(1.0, step / warmup), rel_tol=1e-6, abs_tol=1e-12)
                   for step, lr in lrs)
        if [step for step, _ in lrs] != [0, 1, 2, 3] or not fits:
            problems.append(f"learning rates do not follow constant_with_warmup over cumulative steps: {lrs}")

        whole = runs / "uninterrupted"
        start = time.monotonic()
        code, _ = run_logged([*base, f"run.dir={whole}"], runs / "uninterrupted.log", env)
        figures["uninterrupted_wall_s"] = round(time.monotonic() - start, 1)
        if code:
            problems.append(f"the uninterrupted run exited with {code}; see {runs / 'uninterrupted.log'}")
        else:
            comparison = compare_lokr(killed / "output" / f"{NAME}.safetensors",
                                      whole / "output" / f"{NAME}.safetensors", killed, whole)
            figures["final_lokr_comparison"] = comparison
            if comparison.get("differing_tensors") != 0 or comparison.get("metadata_differences"):
                problems.append(f"the final LoKr files differ: {comparison}")
    figures["peak_rss_gb"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e6, 1)
    figures["problems"] = problems

    text = json.dumps(figures, indent=1)
    print(f"\n{args.profile} figures\n{text}")
    if args.json:
        Path(args.json).write_text(text + "\n")
    if not args.keep:
        shutil.rmtree(runs)
    for problem in problems:
        print(f"FAIL {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
