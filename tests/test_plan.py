import math

import numpy as np
import pyarrow.parquet as pq
import pytest

from kohaku_prep import plan, run
from kohaku_prep.preset import find_preset, resolve

# (w, h) -> bucket, as sd-scripts v0.10.1's own BucketManager assigns them at 1024, 256..4096, steps 64
SD_SCRIPTS_BUCKETS = [
    ((300, 4000), (256, 3392)), ((4000, 300), (3392, 256)), ((64, 64), (1024, 1024)), ((1000, 1000), (1024, 1024)),
    ((832, 1216), (832, 1216)), ((1216, 832), (1216, 832)), ((1920, 1080), (1344, 768)),
    ((1080, 1920), (768, 1344)), ((2048, 1536), (1152, 896)), ((1000, 1500), (832, 1216)),
    ((500, 700), (832, 1216)), ((100, 10000), (256, 4096)), ((10000, 100), (4096, 256)),
    ((1280, 720), (1344, 768)),
]


def epsilon(*overrides):
    return resolve(find_preset("epsilon"), None, list(overrides)).preset


def test_bucket_resolutions():
    resos = plan.bucket_resolutions(1024, 256, 4096, 64)
    assert len(resos) == 97 and resos == sorted(resos)
    assert resos[0] == (256, 3328) and (1024, 1024) in resos and resos[-1] == (4096, 256)
    assert all(w * h <= 1024 * 1024 and w % 64 == 0 and h % 64 == 0 for w, h in resos)


def test_bucket_assignment_matches_sd_scripts():
    resos = plan.bucket_resolutions(1024, 256, 4096, 64)
    w = np.array([s[0] for s, _ in SD_SCRIPTS_BUCKETS])
    h = np.array([s[1] for s, _ in SD_SCRIPTS_BUCKETS])
    assert [resos[i] for i in plan.assign_buckets(w, h, resos)] == [b for _, b in SD_SCRIPTS_BUCKETS]


def card_buckets(total=5_210_319, used=60):
    """A bucket histogram of the card's image count where (like real data) most buckets end part-filled."""
    counts = [4 * (total // (4 * used)) + 1] * (used - 1)
    counts.append(total - sum(counts))
    resos = plan.bucket_resolutions(1024, 256, 4096, 64)
    return [(resos[i], n) for i, n in enumerate(counts)]


def test_card_step_count():
    steps = plan.step_plan(card_buckets(), epsilon())
    assert steps.images == 5_210_319 and steps.effective_batch == 256
    assert steps.optimizer_steps == 20_354  # the card's "Total Steps"
    whole = plan.step_plan([((1024, 1024), 5_210_319)], epsilon())
    assert whole.optimizer_steps == 20_353  # without bucket remainders one step fewer: they matter
    assert steps.warmup_scheduler_steps == 4000 and steps.warmup_optimizer_steps == 1000


def test_step_math_follows_the_trainer_formula():
    buckets = [((1024, 1024), 10), ((832, 1216), 7), ((1216, 832), 1)]
    p = epsilon("dataset.batch_size=3", "schedule.gradient_accumulation_steps=2", "launch.num_processes=2",
                "schedule.epochs=3", "dataset.num_repeats=2")
    steps = plan.step_plan([(r, n * 2) for r, n in buckets], p)
    batches = math.ceil(20 / 3) + math.ceil(14 / 3) + math.ceil(2 / 3)
    assert steps.batches == batches and steps.optimizer_steps == 3 * math.ceil(batches / 2 / 2)
    assert steps.images == 18


def test_plan_of_the_sample(sample_dataset):
    rp = run.make_plan(epsilon(f'run.dataset="{sample_dataset}"'))
    manifest = pq.read_table(sample_dataset / "manifest.parquet")
    assert rp.steps.images == manifest.num_rows
    assert rp.network.params == 384_645_360
    text = run.plan_text(rp, epsilon(), seconds_per_step=49.5)
    assert "effective batch   256 = 4 per GPU x 16 accumulation x 4 process(es)" in text
    assert "--lr_warmup_steps 4,000" in text and "warmup outlasts the run" in text and "ETA" in text


@pytest.mark.parametrize("seconds, text", [(49.5, "11 d 15 h 52 min"), (1.0, "5 h 39 min")])
def test_eta(seconds, text):
    steps = plan.step_plan(card_buckets(), epsilon())
    assert any(text in line for line in plan.plan_lines(steps, seconds, 1, 1))


def test_max_steps_ends_the_run_early():
    p = epsilon("schedule.max_steps=2")
    assert plan.step_plan(card_buckets(), p).optimizer_steps == 2
