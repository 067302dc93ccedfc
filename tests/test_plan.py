import math

import numpy as np
import pyarrow.parquet as pq
import pytest

from kohaku_prep import bucketing
from kohaku_prep.preset import find_preset, resolve
from kohaku_prep.train import plan, run

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
    resos = bucketing.bucket_resolutions(1024, 256, 4096, 64)
    assert len(resos) == 97 and resos == sorted(resos)
    assert resos[0] == (256, 3328) and (1024, 1024) in resos and resos[-1] == (4096, 256)
    assert all(w * h <= 1024 * 1024 and w % 64 == 0 and h % 64 == 0 for w, h in resos)


def test_bucket_assignment_matches_sd_scripts():
    resos = bucketing.bucket_resolutions(1024, 256, 4096, 64)
    w = np.array([s[0] for s, _ in SD_SCRIPTS_BUCKETS])
    h = np.array([s[1] for s, _ in SD_SCRIPTS_BUCKETS])
    assert [resos[i] for i in bucketing.assign_buckets(w, h, resos)] == [b for _, b in SD_SCRIPTS_BUCKETS]


def card_buckets(total=5_210_319, used=60):
    """A bucket histogram of the card's image count where (like real data) most buckets end part-filled."""
    counts = [4 * (total // (4 * used)) + 1] * (used - 1)
    counts.append(total - sum(counts))
    resos = bucketing.bucket_resolutions(1024, 256, 4096, 64)
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


@pytest.mark.parametrize("seconds, text", [(49.5, "11 d 15 h 52 min at 49.5 s"), (1.0, "5 h 39 min at 1 s")])
def test_eta(seconds, text):
    steps = plan.step_plan(card_buckets(), epsilon())
    lines = plan.plan_lines(steps, seconds, 1, 1)
    assert [line for line in lines if line.startswith("ETA")] == [f"ETA               {text} per optimizer step"]


def test_max_steps_ends_the_run_early():
    p = epsilon("schedule.max_steps=2")
    assert plan.step_plan(card_buckets(), p).optimizer_steps == 2


def test_histogram_lists_every_bucket_by_aspect_ratio():
    steps = plan.step_plan(card_buckets(), epsilon())
    rows = bucketing.bucket_rows(steps.buckets, steps.batch_size)
    assert [(w, h) for w, h, _, _ in rows] == sorted(((w, h) for (w, h), _ in steps.buckets), key=lambda r: r[0] / r[1])
    assert sum(r[3] for r in rows) == steps.batches and sum(r[2] for r in rows) == steps.images
    lines = plan.plan_lines(steps, None, 1, 1)
    body = [line for line in lines if " x " in line and line.endswith("#")]
    assert len(body) == len(steps.buckets) == 60
    largest = max(r[2] for r in rows)
    for line, (w, h, n, batches) in zip(body, rows, strict=True):
        assert line.split()[:5] == [str(w), "x", str(h), f"{n:,}", f"{batches:,}"]
        assert line.split()[5] == "#" * round(24 * n / largest)


def test_timeline_marks_warmup_parts_saves_and_end():
    steps = plan.step_plan(card_buckets(), epsilon())
    saves = list(range(2000, 20_001, 2000))
    marks = plan.timeline(steps, 49.5, part_ends=[5000, 10_000, 15_000, 20_354, 30_000], saves=saves)
    kinds = [(m.kind, m.step) for m in marks]
    assert kinds[0] == ("warmup end", 1000)
    assert [s for k, s in kinds if k == "part end"] == [5000, 10_000, 15_000]  # the run's own end is no part end
    assert [s for k, s in kinds if k == "save"] == saves
    assert kinds[-1] == ("end", 20_354) and [m.step for m in marks] == sorted(m.step for m in marks)
    assert marks[-1].seconds == 20_354 * 49.5
    assert all(m.seconds is None for m in plan.timeline(steps, None))
    short = plan.step_plan(card_buckets(), epsilon("schedule.max_steps=500"))
    assert [(m.kind, m.step) for m in plan.timeline(short, None, saves=[500])] == [
        ("warmup end", 500), ("save", 500), ("end", 500)]


def test_plan_draws_its_charts_into_the_run_folder(sample_dataset, tmp_path):
    from click.testing import CliRunner

    from kohaku_prep.cli import main
    result = CliRunner().invoke(main, ["plan", f"run.dataset={sample_dataset}", f"run.dir={tmp_path / 'run'}",
                                       "--seconds-per-step", "49.5"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == sorted([*run.PLAN_CHARTS, ".kohaku-prep-files.json"])
    for name in run.PLAN_CHARTS:
        assert (tmp_path / "run" / name).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    result = CliRunner().invoke(main, ["plan", f"run.dataset={sample_dataset}"])
    assert result.exit_code == 0 and "chart:" not in result.output


def test_plan_charts_of_a_run_in_parts():
    steps = plan.step_plan(card_buckets(), epsilon())
    charts = run.plan_charts(steps, 49.5, part_ends=[5000, 10_000, 15_000], saves=[2000, 4000])
    assert set(charts) == set(run.PLAN_CHARTS) and all(c.startswith(b"\x89PNG") for c in charts.values())
    assert charts == run.plan_charts(steps, 49.5, part_ends=[5000, 10_000, 15_000], saves=[2000, 4000])
