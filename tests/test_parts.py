"""A run in parts: disjoint random parts that together train exactly what one launch would."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kohaku_prep.preset import find_preset, resolve
from kohaku_prep.train import parts, plan


def single_launch_steps(buckets, batch_size, repeats, processes, accumulation, epochs):
    """train_network.py: epochs x ceil(len(dataloader) / processes / accumulation)."""
    batches = sum(math.ceil(n * repeats / batch_size) for n in np.bincount(buckets) if n)
    return epochs * math.ceil(batches / processes / accumulation)


def plan_of(ids, buckets, **kw):
    settings_ = dict(batch_size=4, repeats=1, processes=4, accumulation=16, epochs=1, max_steps=0,
                     steps_per_part=400, seed=1337) | kw
    return parts.plan_parts(np.asarray(ids), np.asarray(buckets), **settings_), settings_


def rebucketed_batches(buckets, rows, batch_size):
    """The batches sd-scripts makes of a part's images: per bucket, ceil(images / batch size)."""
    return sum(math.ceil(n / batch_size) for n in np.bincount(buckets[rows]) if n)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 3000), st.integers(1, 12), st.integers(1, 5), st.integers(1, 3), st.integers(1, 4),
       st.integers(1, 3), st.integers(0, 40), st.integers(0, 2**32))
def test_parts_hold_every_image_once_per_repeat_and_train_the_single_launch_steps(
        n, bucket_count, batch_size, processes, accumulation, repeats, steps_per_part, seed):
    rng = np.random.default_rng(seed)
    ids = rng.choice(10 * n, n, replace=False)
    buckets = rng.integers(0, bucket_count, n)
    pp, s = plan_of(ids, buckets, batch_size=batch_size, processes=processes, accumulation=accumulation,
                    repeats=repeats, steps_per_part=steps_per_part, seed=seed)
    single = single_launch_steps(buckets, batch_size, repeats, processes, accumulation, 1)
    assert pp.steps == pp.single_launch_steps == single
    entries = np.concatenate([p.rows * repeats + p.repeats for p in pp.parts])
    assert sorted(entries.tolist()) == list(range(n * repeats))  # every image once per repeat, no overlap
    per_step = processes * accumulation
    for p in pp.parts:
        assert rebucketed_batches(buckets, p.rows, batch_size) == p.batches  # a repeat is an image of its own
        assert p.steps == math.ceil(p.batches / per_step)
        if p is not pp.parts[-1]:
            assert p.batches % per_step == 0 and p.steps <= (steps_per_part or p.steps)
    assert [p.start_step for p in pp.parts] == [0, *(p.end_step for p in pp.parts[:-1])]
    assert [p.seed for p in pp.parts] == [seed + i for i in range(len(pp.parts))]


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 2000), st.integers(1, 9), st.integers(1, 6), st.integers(1, 30), st.integers(0, 999))
def test_each_part_rebuckets_into_exactly_its_batches(n, bucket_count, batch_size, steps_per_part, seed):
    rng = np.random.default_rng(seed)
    buckets = rng.integers(0, bucket_count, n)
    pp, _ = plan_of(np.arange(n), buckets, batch_size=batch_size, processes=2, accumulation=3,
                    steps_per_part=steps_per_part, seed=seed)
    for p in pp.parts:
        assert rebucketed_batches(buckets, p.rows, batch_size) == p.batches


def test_parts_are_random_samples_not_id_ranges():
    ids = np.arange(100_000)
    pp, _ = plan_of(ids, np.zeros(len(ids), np.int64), steps_per_part=50)
    first = ids[pp.parts[0].rows]
    assert len(pp.parts) > 4
    assert first.min() < 5_000 and first.max() > 95_000  # spread over the whole id range


def test_parts_depend_on_the_ids_and_seed_not_on_row_order():
    rng = np.random.default_rng(0)
    ids, buckets = rng.choice(10**7, 5000, replace=False), rng.integers(0, 7, 5000)
    pp, _ = plan_of(ids, buckets, steps_per_part=3, processes=2, accumulation=2)
    order = rng.permutation(len(ids))
    shuffled, _ = plan_of(ids[order], buckets[order], steps_per_part=3, processes=2, accumulation=2)
    assert [ids[p.rows].tolist() for p in pp.parts] == [ids[order][p.rows].tolist() for p in shuffled.parts]
    other, _ = plan_of(ids, buckets, steps_per_part=3, processes=2, accumulation=2, seed=7)
    assert ids[other.parts[0].rows].tolist() != ids[pp.parts[0].rows].tolist()


def test_epochs_are_cut_apart_and_each_holds_every_image():
    buckets = np.arange(1000) % 5
    pp, _ = plan_of(np.arange(1000), buckets, epochs=3, steps_per_part=2, processes=1, accumulation=4)
    assert pp.steps == single_launch_steps(buckets, 4, 1, 1, 4, 3)
    for epoch in range(3):
        rows = np.concatenate([p.rows for p in pp.parts if p.epoch == epoch])
        assert sorted(rows.tolist()) == list(range(1000))


def test_max_steps_ends_the_run_early():
    buckets = np.arange(1000) % 5
    pp, _ = plan_of(np.arange(1000), buckets, max_steps=7, steps_per_part=3, processes=1, accumulation=4)
    assert [p.steps for p in pp.parts] == [3, 3, 1] and pp.steps == pp.single_launch_steps == 7


def test_the_cards_run_in_parts():
    """5,210,319 images, 4 GPUs x 4 x 16, at most 400 steps a part: 51 parts, the card's 20,354 steps."""
    p = resolve(find_preset("epsilon")).preset
    from test_plan import card_buckets
    counts = card_buckets()
    buckets = np.repeat(np.arange(len(counts)), [n for _, n in counts])
    pp, _ = plan_of(np.arange(len(buckets)), buckets, steps_per_part=p.schedule.steps_per_part)
    assert len(pp.parts) == 51 and pp.steps == pp.single_launch_steps == 20_354
    assert sorted({q.steps for q in pp.parts}) == [399, 400]
    lines = plan.parts_lines(pp, p, 49.5)
    assert lines[:7] == [
        "parts             51 launch(es) of 399-400 optimizer steps (schedule.steps_per_part = 400), each a random "
        "part of the data resuming the last part's end state",
        "  steps in all    20,354; one launch over the whole dataset: 20,354 (+0, +0.00%)",
        "  start-up        per launch ~2 min measured on the CPU smoke; 2-5 min estimated on GPUs: 1 h 42 min to "
        "4 h 15 min in all",
        "  per part        up to 5 h 30 min at 49.5 s per step",
        "  a crash loses   at most one part: 5 h 35 min with its start-up (estimated)",
        "  LoKr kept       at part ends 2,000, 4,394, 6,389, 8,384, 10,379, 12,374, 14,369, 16,364, 18,359, 20,354 "
        "(saving.every_n_steps = 2000), the newest part end's, and the final one",
        "   part epoch      images   batches   steps  cumulative steps"]
    assert len(lines) == 7 + 51  # a row per part
    assert (lines[7], lines[-1]) == ("      1     1     102,394    25,600     400  0 -> 400",
                                     "     51     1     102,010    25,504     399  19,955 -> 20,354")


@pytest.mark.parametrize("every, expected", [(0, []), (2, [2, 4, 6]), (3, [4, 6]), (5, [6])])
def test_cadence_ends_are_the_first_part_ends_at_or_past_each_multiple(every, expected):
    made = [parts.Part(i, 0, np.zeros(0, np.int64), np.zeros(0, np.int64), 1, 2 * i, 2, 0) for i in range(3)]
    assert parts.cadence_ends(made, every) == expected
