"""A run's progress from the trainer's TensorBoard logs, across all its launches, in cumulative optimizer
steps, and the dashboard drawn from it.

sd-scripts v0.10.1 (train_network.py generate_step_logs) logs, with the TensorBoard step set to its
global_step (optimizer steps), after every micro-batch: "loss/current" (that micro-batch's loss),
"loss/average" (its moving average over the epoch) and the learning rates, "lr/unet" or "lr/textencoder"
and "lr/unet", or "lr/group<i>" with more parameter groups. With gradient accumulation a step therefore
holds several events: a step's loss here is the mean of its micro-batches' losses, its learning rate and
time the last ones logged. Each launch logs into a folder of its own (logging_dir/<timestamp>/...).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from kohaku_prep import charts
from kohaku_prep.charts import Table
from kohaku_prep.errors import PrepError

LOSS_TAG = "loss/current"
LOSS_AVERAGE_TAG = "loss/average"
LR_PREFIX = "lr/"
SMOOTHING = 0.95  # TensorBoard's exponential smoothing, debiased; 0.95 averages over about 20 steps
EVENT_FILE_MARK = "tfevents"


@dataclass
class Series:
    steps: np.ndarray  # cumulative optimizer steps, increasing
    values: np.ndarray

    def __len__(self) -> int:
        return len(self.steps)


def _empty() -> Series:
    return Series(np.zeros(0, np.int64), np.zeros(0))


@dataclass
class RunLogs:
    loss: Series  # mean of a step's micro-batch losses
    loss_smoothed: Series
    loss_average: Series  # the trainer's own moving average, as it last logged it in each step
    lr: dict[str, Series]  # by the trainer's tag less "lr/"
    seconds_per_step: Series  # between consecutive logged steps of one launch
    images_per_second: Series | None  # with images_per_step given
    launch_starts: list[int] = field(default_factory=list)  # the first cumulative step of each launch read

    @property
    def last_step(self) -> int | None:
        return int(self.loss.steps[-1]) if len(self.loss) else None


def event_folders(log_dir: Path) -> list[Path]:
    """`log_dir` if it holds event files, else every folder below it that does, in name order."""
    found = []
    for root, dirs, files in os.walk(log_dir):
        dirs.sort()
        if any(EVENT_FILE_MARK in name for name in files):
            found.append(Path(root))
    return found


def _read_scalars(folder: Path) -> dict[str, list]:
    """Every scalar event of a folder's event files, by tag, through TensorBoard's own reader."""
    try:
        from tensorboard.backend.event_processing import event_accumulator
    except ImportError:
        raise PrepError("reading the run's logs needs tensorboard (pip install tensorboard; "
                        "the train extra has it)") from None
    # every event kept (no sampling), none dropped: steps repeat once per micro-batch by design
    accumulator = event_accumulator.EventAccumulator(str(folder), size_guidance={event_accumulator.SCALARS: 0},
                                                     purge_orphaned_data=False)
    accumulator.Reload()
    return {tag: accumulator.Scalars(tag) for tag in accumulator.Tags()["scalars"]}


@dataclass
class _Launch:
    steps: np.ndarray  # the distinct cumulative steps logged, increasing
    loss: np.ndarray
    loss_average: np.ndarray
    lr: dict[str, np.ndarray]
    wall: np.ndarray  # wall time of each step's last event


def _per_step(events: list, steps: np.ndarray, offset: int, how: str) -> np.ndarray:
    """The events' values on `steps`: the mean or the last of each step's events; NaN where none."""
    out = np.full(len(steps), np.nan)
    if not events:
        return out
    at = np.searchsorted(steps, np.array([e.step for e in events], np.int64) + offset)
    values = np.array([e.value for e in events], np.float64)
    if how == "mean":
        sums, counts = np.bincount(at, values, len(steps)), np.bincount(at, minlength=len(steps))
        np.divide(sums, counts, out=out, where=counts > 0)
    else:  # events come in file order: the last write of a step wins
        out[at] = values
    return out


def _read_launch(folder: Path, offset: int) -> _Launch | None:
    scalars = _read_scalars(folder)
    loss_events = scalars.get(LOSS_TAG, [])
    if not loss_events:
        return None
    steps = np.unique(np.array([e.step for e in loss_events], np.int64)) + offset
    wall = np.full(len(steps), -np.inf)  # every step has a loss event: none stays -inf
    at = np.searchsorted(steps, np.array([e.step for e in loss_events], np.int64) + offset)
    np.maximum.at(wall, at, np.array([e.wall_time for e in loss_events]))
    return _Launch(steps, _per_step(loss_events, steps, offset, "mean"),
                   _per_step(scalars.get(LOSS_AVERAGE_TAG, []), steps, offset, "last"),
                   {tag[len(LR_PREFIX):]: _per_step(events, steps, offset, "last")
                    for tag, events in sorted(scalars.items()) if tag.startswith(LR_PREFIX)}, wall)


def smoothed(values: np.ndarray, weight: float = SMOOTHING) -> np.ndarray:
    """TensorBoard's smoothing: an exponential moving average, debiased for its start."""
    out, last, k = np.empty(len(values)), 0.0, 0
    for i, v in enumerate(values.tolist()):
        k += 1
        last = last * weight + (1 - weight) * v
        out[i] = last / (1 - weight ** k)
    return out


def read_run_logs(launches: Sequence[tuple[Path, int]], images_per_step: int | None = None,
                  smoothing: float = SMOOTHING) -> RunLogs:
    """The series of a run from its launches in order: (log folder, optimizer steps to add to the steps it
    logged: 0 where the trainer logged cumulative steps itself, as it does when it resumes a saved state
    with --skip_until_initial_step). A later launch replaces what earlier ones
    logged from its first step on (a part restarted from an earlier state). `images_per_step`: the
    effective batch (batch size x accumulation x processes), for images per second."""
    kept: list[_Launch] = []
    # a folder above several launches' event folders (logging_dir itself) stands for them all, in name
    # order, which is the trainer's timestamp order
    for folder, offset in [(f, offset) for log_dir, offset in launches for f in event_folders(Path(log_dir))]:
        launch = _read_launch(folder, offset)
        if launch is None:
            continue
        first = launch.steps[0]
        for earlier in kept:
            before = earlier.steps < first
            earlier.steps, earlier.loss, earlier.loss_average, earlier.wall = (
                earlier.steps[before], earlier.loss[before], earlier.loss_average[before], earlier.wall[before])
            earlier.lr = {k: v[before] for k, v in earlier.lr.items()}
        kept = [k for k in kept if len(k.steps)] + [launch]
    if not kept:
        return RunLogs(_empty(), _empty(), _empty(), {}, _empty(), _empty() if images_per_step else None)
    steps = np.concatenate([k.steps for k in kept])
    loss = np.concatenate([k.loss for k in kept])
    average = np.concatenate([k.loss_average for k in kept])
    lr_names = sorted({name for k in kept for name in k.lr})
    lr = {name: np.concatenate([k.lr.get(name, np.full(len(k.steps), np.nan)) for k in kept]) for name in lr_names}
    timed_steps, seconds = [], []
    for k in kept:  # within a launch only: the time between launches is no step's
        elapsed, advanced = np.diff(k.wall), np.diff(k.steps)
        timed_steps.append(k.steps[1:])
        seconds.append(elapsed / advanced)
    per_step = Series(np.concatenate(timed_steps), np.concatenate(seconds))
    images = (Series(per_step.steps, images_per_step / per_step.values) if images_per_step else None)
    return RunLogs(Series(steps, loss), Series(steps, smoothed(loss, smoothing)), Series(steps, average),
                   {name: Series(steps, values) for name, values in lr.items()}, per_step, images,
                   [int(k.steps[0]) for k in kept])


def latest_table(logs: RunLogs, window: int = 50) -> Table:
    """The latest values, as the dashboard prints them beside its chart: the last step's, and for speed the
    median over the last `window` timed steps."""
    def last(series: Series | None) -> float | None:
        return float(series.values[-1]) if series is not None and len(series) else None

    def recent(series: Series | None) -> float | None:
        return float(np.median(series.values[-window:])) if series is not None and len(series) else None

    rows = [("last step", logs.last_step), ("loss", last(logs.loss)), ("loss, smoothed", last(logs.loss_smoothed)),
            ("loss, trainer's average", last(logs.loss_average)),
            *[(f"learning rate {name}", last(series)) for name, series in logs.lr.items()],
            (f"seconds per step (median of the last {window})", recent(logs.seconds_per_step)),
            (f"images per second (median of the last {window})", recent(logs.images_per_second)),
            ("launches read", len(logs.launch_starts))]
    return Table("Latest", ["", "value"], [(name, value) for name, value in rows if value is not None])


def _draw(figure, logs: RunLogs) -> None:
    panels = figure.subplots(4 if logs.images_per_second is not None else 3, 1, sharex=True)
    loss, lr, speed = panels[:3]
    loss.plot(logs.loss.steps, logs.loss.values, color=charts.MUTED, linewidth=0.6, label="loss")
    loss.plot(logs.loss_smoothed.steps, logs.loss_smoothed.values, color=charts.KEPT, linewidth=1.4,
              label=f"smoothed ({SMOOTHING})")
    loss.legend(loc="upper right")
    loss.set_title("loss (mean of each optimizer step's micro-batches)", loc="left")
    for name, series in logs.lr.items():
        lr.plot(series.steps, series.values, linewidth=1.2, label=name)
    if logs.lr:
        lr.legend(loc="upper right")
    lr.set_title("learning rate", loc="left")
    lr.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    speed.plot(logs.seconds_per_step.steps, logs.seconds_per_step.values, ".", color=charts.ACCENT, markersize=2)
    speed.set_title("seconds per optimizer step", loc="left")
    if logs.images_per_second is not None:
        panels[3].plot(logs.images_per_second.steps, logs.images_per_second.values, ".", color=charts.KEPT,
                       markersize=2)
        panels[3].set_title("images per second", loc="left")
    for ax in panels:
        for start in logs.launch_starts[1:]:
            ax.axvline(start, color=charts.DROPPED, linewidth=0.8, linestyle="--")
    panels[-1].set_xlabel("optimizer step (cumulative; dashed: a launch began)")
    panels[-1].xaxis.set_major_formatter(charts._thousands())
    charts.margins(figure, left=0.9, bottom=0.7, down=0.5)


def dashboard_png(logs: RunLogs) -> bytes:
    return charts.png(lambda figure: _draw(figure, logs), (11, 9 if logs.images_per_second is not None else 7))


def dashboard_html(logs: RunLogs, title: str, png: bytes | None = None) -> str:
    """A self-contained page: the dashboard and its latest values."""
    chart = charts.Chart("dashboard.png", "Progress", [latest_table(logs)])
    intro = (f"At optimizer step {logs.last_step:,}." if logs.last_step is not None
             else "No step logged yet.")
    return charts.html_page(title, intro, [chart], {"dashboard.png": png or dashboard_png(logs)})
