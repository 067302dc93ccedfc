"""The benchmark's rounds and arithmetic (scripts/bench_stats.py): run order, medians, spread, ratios.
Nothing here is timed."""
import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_stats.py"
spec = importlib.util.spec_from_file_location("bench_stats", SCRIPT)
assert spec is not None and spec.loader is not None
bench_stats = importlib.util.module_from_spec(spec)
sys.modules["bench_stats"] = bench_stats  # dataclasses look their module up by name
spec.loader.exec_module(bench_stats)
Spread, Target = bench_stats.Spread, bench_stats.Target


def test_schedule_runs_every_side_once_a_round_in_turn():
    assert bench_stats.schedule(["A", "B"], 3) == [(0, "A"), (0, "B"), (1, "A"), (1, "B"), (2, "A"), (2, "B")]
    assert [side for _, side in bench_stats.schedule(["ours", "floor", "other"], 2)] == \
        ["ours", "floor", "other", "ours", "floor", "other"]
    with pytest.raises(ValueError, match="at least 1"):
        bench_stats.schedule(["A", "B"], 0)


def test_alternate_calls_the_sides_in_turn_and_keeps_each_sides_rounds():
    calls = []

    def side(name, seconds):
        def run(r):
            calls.append((name, r))
            return seconds[r]
        return run
    got = bench_stats.alternate({"ours": side("ours", [3.0, 1.0, 2.0]), "floor": side("floor", [6.0, 5.0, 4.0])}, 3)
    assert calls == [("ours", 0), ("floor", 0), ("ours", 1), ("floor", 1), ("ours", 2), ("floor", 2)]
    assert got == {"ours": [3.0, 1.0, 2.0], "floor": [6.0, 5.0, 4.0]}


def test_spread_is_median_min_and_max():
    odd, even = Spread((5.0, 1.0, 9.0, 3.0, 4.0)), Spread((4.0, 1.0, 3.0, 10.0))
    assert (odd.median, odd.low, odd.high) == (4.0, 1.0, 9.0)
    assert (even.median, even.low, even.high) == (3.5, 1.0, 10.0)
    assert odd.text() == "median 4.00 s (1.00-9.00)"
    assert even.as_json() == {"rounds": [4.0, 1.0, 3.0, 10.0], "median": 3.5, "min": 1.0, "max": 10.0}


def test_target_is_the_median_of_the_rounds_ratios_with_the_ratio_of_medians_beside_it():
    # the ratio of the medians (3 / 4) is not the median of the ratios (1.0): the target is the latter
    t = Target("extraction", Spread((2.0, 3.0, 8.0)), Spread((2.0, 4.0, 5.0)), limit=1.1, floor_name="tar -x")
    assert t.ratio == 1.0
    assert t.ratio_of_medians == 0.75
    assert t.round_ratios == (1.0, 0.75, 1.6)
    assert t.met
    assert t.lines() == ["target: extraction: ours/tar -x = 1 (limit 1.1) met",
                         "    per round 1 0.75 1.6 (min-max 0.75-1.6; ratio of the medians 0.75); "
                         "ours median 3.00 s (2.00-8.00), tar -x median 4.00 s (2.00-5.00)"]
    assert t.as_json()["round_ratios"] == [1.0, 0.75, 1.6]
    per_caption = Target("captions", Spread((2.0,)), Spread((400.0,)), limit=0.02, floor_name="HakuBooru",
                         unit="us/caption")
    assert per_caption.lines()[0] == "target: captions: ours/HakuBooru = 0.005 (limit 0.02) met"
    assert per_caption.lines()[1].endswith("ours median 2.00 us/caption (2.00-2.00), "
                                           "HakuBooru median 400.00 us/caption (400.00-400.00)")


def test_a_slow_spell_on_one_round_moves_the_ratio_of_medians_but_not_the_target():
    # round 2 ran while the disk was busy: both of its sides are 4x slower
    t = Target("x", Spread((1.0, 4.0, 1.1, 1.0)), Spread((2.0, 8.0, 2.0, 2.1)), limit=1.0)
    assert t.ratio == 0.5
    assert t.ratio_of_medians > 0.5


def test_target_over_its_limit_is_not_met_and_at_it_is():
    assert not Target("x", Spread((3.0,)), Spread((2.0,)), limit=1.4).met
    assert Target("x", Spread((3.0,)), Spread((2.0,)), limit=1.5).met
    assert "1.5 (limit 1.4) NOT met" in Target("x", Spread((3.0,)), Spread((2.0,)), limit=1.4).lines()[0]


def test_target_needs_the_same_rounds_on_both_sides():
    with pytest.raises(ValueError, match="2 rounds of ours against 3 of the floor"):
        Target("x", Spread((1.0, 2.0)), Spread((1.0, 2.0, 3.0)), limit=1.0)
