"""The benchmark's rounds and arithmetic, apart from anything it times.

Every comparison runs its sides in turn, A B A B ..., for a number of rounds, so that a machine that slows
down or speeds up during the run (other load, file-system state, clock) weighs on both sides alike. A
target is a ratio of medians, ours over a floor measured in the same rounds on the same data, which the
speed of the machine divides out of. A target is the median of the per-round ratios: the two sides of a
round run back to back, so a slow spell (another process deleting files, a cache flushed) lands on one
round's pair rather than on one side's median; the ratio of the medians and each round's ratio are printed
beside it, to show the spread.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from statistics import median
from typing import TypeVar

Figure = TypeVar("Figure")


def schedule(sides: Sequence[str], rounds: int) -> list[tuple[int, str]]:
    """(round, side) in the order they run: every side once a round, in the order given."""
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, not {rounds}")
    return [(r, side) for r in range(rounds) for side in sides]


def alternate(runs: Mapping[str, Callable[[int], Figure]], rounds: int) -> dict[str, list[Figure]]:
    """Each side's figures, one a round: run(round) called in schedule order."""
    figures: dict[str, list[Figure]] = {side: [] for side in runs}
    for r, side in schedule(list(runs), rounds):
        figures[side].append(runs[side](r))
    return figures


@dataclass(frozen=True)
class Spread:
    """One side's figures over the rounds."""
    values: tuple[float, ...]

    @property
    def median(self) -> float:
        return median(self.values)

    @property
    def low(self) -> float:
        return min(self.values)

    @property
    def high(self) -> float:
        return max(self.values)

    def text(self, unit: str = "s", digits: int = 2) -> str:
        return f"median {self.median:.{digits}f} {unit} ({self.low:.{digits}f}-{self.high:.{digits}f})"

    def as_json(self) -> dict:
        return {"rounds": list(self.values), "median": self.median, "min": self.low, "max": self.high}


@dataclass(frozen=True)
class Target:
    """ours / floor, both per round in the same rounds, met when the median of the rounds' ratios is at most
    limit."""
    name: str
    ours: Spread
    floor: Spread
    limit: float
    floor_name: str = "floor"
    unit: str = "s"  # of the figures, as printed

    def __post_init__(self) -> None:
        if len(self.ours.values) != len(self.floor.values):
            raise ValueError(f"{self.name}: {len(self.ours.values)} rounds of ours against "
                             f"{len(self.floor.values)} of the {self.floor_name}")

    @property
    def ratio(self) -> float:
        return median(self.round_ratios)

    @property
    def ratio_of_medians(self) -> float:
        return self.ours.median / self.floor.median

    @property
    def round_ratios(self) -> tuple[float, ...]:
        return tuple(o / f for o, f in zip(self.ours.values, self.floor.values, strict=True))

    @property
    def met(self) -> bool:
        return self.ratio <= self.limit

    def lines(self) -> list[str]:
        per_round = self.round_ratios
        return [f"target: {self.name}: ours/{self.floor_name} = {_fig(self.ratio)} (limit {_fig(self.limit)}) "
                f"{'met' if self.met else 'NOT met'}",
                f"    per round {' '.join(_fig(r) for r in per_round)} "
                f"(min-max {_fig(min(per_round))}-{_fig(max(per_round))}; "
                f"ratio of the medians {_fig(self.ratio_of_medians)}); "
                f"ours {self.ours.text(self.unit)}, {self.floor_name} {self.floor.text(self.unit)}"]

    def as_json(self) -> dict:
        return {"target": self.name, "floor": self.floor_name, "unit": self.unit, "ratio": self.ratio,
                "ratio_of_medians": self.ratio_of_medians, "limit": self.limit,
                "met": self.met, "round_ratios": list(self.round_ratios), "ours": self.ours.as_json(),
                "floor_figures": self.floor.as_json()}


def _fig(x: float) -> str:
    """Three significant digits, whatever the size: ratios run from 0.001 (against HakuBooru) to 2."""
    return f"{x:.3g}"
