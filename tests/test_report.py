"""The dataset report: the numbers behind every chart against summary.json, the manifest and the plan; the
charts drawn for the sample and for a generated 100k-image manifest; report.html self-contained."""
import dataclasses
import json
import math
import re
import shutil
from collections import Counter

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from kohaku_prep import bucketing
from kohaku_prep.cli import main
from kohaku_prep.dataset import report
from kohaku_prep.dataset.selection import Stage
from kohaku_prep.dataset.summary import BuildSummary
from kohaku_prep.errors import PrepError
from kohaku_prep.preset import find_preset, resolve
from kohaku_prep.train import run

PNG = b"\x89PNG\r\n\x1a\n"
CHART_FILES = {"report-selection.png", "report-buckets.png", "report-sizes.png", "report-captions.png",
               "report-tags.png", "report-not-written.png"}


def load(dataset):
    summary = BuildSummary.from_json((dataset / "summary.json").read_text())
    manifest = pq.read_table(dataset / "manifest.parquet")
    return summary, manifest


def tables_of(dataset):
    summary, manifest = load(dataset)
    return report.report_tables(summary, *(manifest[c].to_numpy() for c in ("id", "width", "height")))


def test_selection_tables_match_summary_and_manifest(sample_dataset):
    summary, manifest = load(sample_dataset)
    tables = tables_of(sample_dataset)
    assert tables["stages"].rows == [(s.name, s.kept, s.dropped, s.note) for s in summary.stages]
    stages = {s.name: s for s in summary.stages}
    ids = manifest["id"].to_pylist()
    for (name, in_pool, sampled, written), pool in zip(tables["pools"].rows, summary.pools, strict=True):
        assert name == pool.stage and sampled == stages[name].kept
        assert in_pool == stages[name].kept + stages[name].dropped
        assert written == sum(1 for i in ids if i >= pool.start and (pool.end is None or i < pool.end))
    assert sum(tables["pools"].column("written")) == manifest.num_rows == summary.images.written
    assert tables["not_written"].rows == [("image not in the archive", stages["image not in the archive"].dropped),
                                          ("not a decodable image", 1)]


def test_bucket_table_is_the_plans(sample_dataset):
    tables = tables_of(sample_dataset)
    preset = resolve(find_preset("epsilon"), None, [f'run.dataset="{sample_dataset}"']).preset
    steps = run.make_plan(preset).steps
    assert tables["buckets"].rows == bucketing.bucket_rows(steps.buckets, steps.batch_size)
    assert sum(tables["buckets"].column("batches")) == steps.batches
    assert sum(tables["buckets"].column("images")) == steps.images == 1451
    # and `plan` prints every one of them
    text = run.plan_text(run.make_plan(preset), preset)
    for w, h, n, batches in tables["buckets"].rows:
        assert re.search(rf"^ +{w} x {h} +{n:,} +{batches:,}  #+$", text, re.M)


def test_size_tables_count_every_image(sample_dataset):
    _, manifest = load(sample_dataset)
    tables = tables_of(sample_dataset)
    sizes = list(zip(manifest["width"].to_pylist(), manifest["height"].to_pylist(), strict=True))
    for (about, low, high, n) in tables["aspect"].rows:
        low, high = float(low), float(high)
        assert n == sum(1 for w, h in sizes if low <= w / h < high), about
    for (low, high, n) in tables["megapixels"].rows:
        assert n == sum(1 for w, h in sizes if float(low) <= w * h / 1e6 < float(high))
    assert sum(tables["aspect"].column("images")) == sum(tables["megapixels"].column("images")) == len(sizes)


def test_caption_tables_match_the_metadata_and_the_captions(sample_root, sample_dataset):
    summary, manifest = load(sample_dataset)
    tables = tables_of(sample_dataset)
    posts = pq.read_table(sample_root / "metadata" / "flat", columns=["id", "rating"]).to_pylist()
    letter = {p["id"]: p["rating"] for p in posts}
    by_letter = Counter(letter[i] for i in manifest["id"].to_pylist())
    assert dict(zip(tables["ratings"].column(""), tables["ratings"].column("images"), strict=True)) == {
        name: by_letter[r] for name, r in zip(report.RATING_ORDER, "gsqe", strict=True) if by_letter[r]}
    captions = manifest["caption"].to_pylist()
    for name, n, share in tables["quality"].rows:
        if name != "(none)":
            assert n == sum(1 for c in captions if c.endswith(", " + name)), name
        assert share == round(100 * n / len(captions), 1)
    for table in ("ratings", "quality", "years"):
        assert sum(tables[table].column("images")) == len(captions)
        shown = dict(zip(tables[table].column(""), tables[table].column("images"), strict=True))
        assert shown == getattr(summary.captions, table)


def test_tag_tables_count_the_captions(sample_dataset):
    summary, manifest = load(sample_dataset)
    tables = tables_of(sample_dataset)
    failed = sum(summary.images.failed.values())  # captioned, then left out with an unreadable image
    in_captions = Counter(t for c in manifest["caption"].to_pylist() for t in c.replace("|||", "").split(", "))
    categories = tables["tags_by_category"].column("category")
    assert list(dict.fromkeys(categories)) == ["general", "character", "copyright", "artist", "meta"]
    for category, tag, n in tables["tags_by_category"].rows:
        assert n - failed <= in_captions[tag] <= n, (category, tag)
    overall = dict(tables["top_tags"].rows)
    for tag, n in list(overall.items())[:10]:
        assert n - failed <= in_captions[tag] <= n
    counts = tables["top_tags"].column("in captions")
    assert counts == sorted(counts, reverse=True) and len(counts) == report.TOP_TAGS


def test_report_md_prints_the_charts_numbers_and_shows_them(sample_dataset):
    text = (sample_dataset / "report.md").read_text()
    for name in CHART_FILES:
        assert f"]({name})" in text and (sample_dataset / name).read_bytes().startswith(PNG)
    tables = tables_of(sample_dataset)
    for w, h, n, batches in tables["buckets"].rows:
        assert f"| {w} | {h} | {n:,} | {batches:,} |" in text
    for name, n, share in tables["ratings"].rows:
        assert f"| {name} | {n:,} | {share:g} |" in text
    for category, tag, n in tables["tags_by_category"].rows:
        assert f"| {category} | {tag.replace('|', chr(92) + '|')} | {n:,} |" in text
    assert "| not a decodable image | 1 |" in text


def assert_self_contained(page: str):
    assert page.startswith("<!DOCTYPE html>")
    sources = re.findall(r'src="([^"]*)"', page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    rest = re.sub(r'data:image/png;base64,[A-Za-z0-9+/=]+', "", page)
    for banned in ("http:", "https:", "//", "<link", "<script", "url(", "@import"):
        assert banned not in rest, banned
    assert "src=" not in re.sub(r'src="data:image/png;base64,[A-Za-z0-9+/=]+"', "", page)


def test_html_report_is_self_contained(sample_dataset):
    page = (sample_dataset / "report.html").read_text()
    assert_self_contained(page)
    assert page.count("<img ") == len(CHART_FILES)
    assert "<td>not a decodable image</td>" in page


def test_report_command_redraws_from_manifest_and_summary_alone(sample_dataset, tmp_path):
    alone = tmp_path / "alone"
    alone.mkdir()
    for name in ("manifest.parquet", "summary.json"):
        shutil.copy(sample_dataset / name, alone / name)
    result = CliRunner().invoke(main, ["report", str(alone)])
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in alone.iterdir())
    assert written == sorted({"manifest.parquet", "summary.json", "report.md", "report.html", *CHART_FILES})
    for name in ("report.md", "report.html", *CHART_FILES):
        assert (alone / name).read_bytes() == (sample_dataset / name).read_bytes(), name


def test_report_command_errors_are_one_line(sample_dataset, tmp_path):
    result = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output.strip() == (f"error: {tmp_path}: not a built dataset "
                                     "(it needs manifest.parquet and summary.json)")
    old = tmp_path / "old"
    old.mkdir()
    shutil.copy(sample_dataset / "manifest.parquet", old)
    summary = json.loads((sample_dataset / "summary.json").read_text())
    del summary["captions"]
    (old / "summary.json").write_text(json.dumps(summary))
    result = CliRunner().invoke(main, ["report", str(old)])
    assert result.exit_code == 1 and result.output == ("error: summary.json has no 'captions': the dataset was built "
                                                       "by an older kohaku-prep; build it again to draw its report\n")
    assert sorted(p.name for p in old.iterdir()) == ["manifest.parquet", "summary.json"]


def generated(summary: BuildSummary, n: int, seed: int = 5):
    """A summary and manifest columns of `n` images, sizes spread as danbooru's are (a lot of portrait
    and landscape, a few extreme strips), no images failed."""
    rng = np.random.default_rng(seed)
    ids = np.sort(rng.choice(8_000_000, n, replace=False)).astype(np.int64)
    aspect = np.exp(rng.normal(0, 0.45, n)).clip(0.05, 20)
    pixels = rng.lognormal(np.log(2e6), 0.8, n)
    widths = np.maximum(np.sqrt(pixels * aspect), 1).astype(np.int32)
    heights = np.maximum(np.sqrt(pixels / aspect), 1).astype(np.int32)
    stages = [s for s in summary.stages if s.name not in ("image unreadable", "image not in the archive")]
    stages[-1] = dataclasses.replace(stages[-1], kept=n)
    ratings = {name: n // 4 + (k < n % 4) for k, name in enumerate(report.RATING_ORDER)}
    # a category without tags
    by_category = {c: tags for c, tags in summary.captions.top_tags_by_category.items() if c != "meta"}
    big = dataclasses.replace(summary, stages=stages, images=dataclasses.replace(summary.images, written=n, failed={}),
                              captions=dataclasses.replace(summary.captions, ratings=ratings,
                                                           top_tags_by_category=by_category))
    return big, ids, widths, heights


def test_every_chart_of_a_100k_image_manifest(sample_dataset):
    summary, _ = load(sample_dataset)
    big, ids, widths, heights = generated(summary, 100_000)
    files = report.report_files(big, ids, widths, heights)
    assert {name for name in files if name.endswith(".png")} == CHART_FILES
    pngs = [files[name] for name in CHART_FILES]
    assert all(isinstance(png, bytes) and png.startswith(PNG) and len(png) > 2000 for png in pngs)
    tables = report.report_tables(big, ids, widths, heights)
    assert tables["not_written"].rows == []
    assert sum(tables["aspect"].column("images")) == sum(tables["megapixels"].column("images")) == 100_000
    assert sum(tables["pools"].column("written")) == 100_000
    buckets = tables["buckets"].rows
    assert sum(r[2] for r in buckets) == 100_000 and len(buckets) > 40
    assert all(r[3] == math.ceil(r[2] / big.dataset.batch_size) for r in buckets)
    assert "meta" not in tables["tags_by_category"].column("category")
    page = files["report.html"]
    assert isinstance(page, str)
    assert_self_contained(page)
    assert "## Images not written" not in files["report.md"]


def test_report_is_deterministic(sample_dataset):
    summary, manifest = load(sample_dataset)
    columns = [manifest[c].to_numpy() for c in ("id", "width", "height")]
    assert report.report_files(summary, *columns) == report.report_files(summary, *columns)


def test_tag_names_are_drawn_as_written():
    table = report.Table("t", ["category", "tag", "in captions"],
                         [("general", "$_$", 3), ("general", "^_^", 2), ("artist", "a" * 80, 1)])
    from kohaku_prep import charts
    assert charts.png(lambda f: report._draw_tags(f, table), (8, 3)).startswith(PNG)


def test_summary_names_the_report_inputs(sample_dataset):
    summary, _ = load(sample_dataset)
    assert summary.dataset.batch_size == 4 and summary.dataset.resolution == 1024
    pool_stages = [s.name for s in summary.stages if s.name.startswith("pool")]
    assert [p.stage for p in summary.pools] == pool_stages
    record = json.loads((sample_dataset / "summary.json").read_text())
    with pytest.raises(PrepError, match="summary.json has no 'pools'"):
        BuildSummary.from_json(json.dumps({k: v for k, v in record.items() if k != "pools"}))


def test_summary_json_reads_back_to_the_same_bytes(sample_dataset):
    text = (sample_dataset / "summary.json").read_text()
    summary = BuildSummary.from_json(text)
    assert summary.to_json() == text
    assert summary.stages[0] == Stage("metadata", 2400, 0) and summary.captions.top_tags[0][1] > 0


@pytest.mark.parametrize("change, message", [
    (lambda r: r["images"].pop("written"), "summary.json has no 'images.written': the dataset was built by an older "
                                           "kohaku-prep; build it again to draw its report"),
    (lambda r: r["stages"][2].pop("note"), "summary.json has no 'stages[2].note': "),
    (lambda r: r["dataset"].update(colour="red"), "summary.json has 'dataset.colour', which this kohaku-prep does not "
                                                  "know: the dataset was built by another version; build it again"),
    (lambda r: r.update(seed="1337"), "summary.json: 'seed' is \"1337\", not int; build it again"),
    (lambda r: r["pools"][0].update(end="x"), "summary.json: 'pools[0].end' is \"x\", not "),
    (lambda r: r.update(images=[]), "summary.json: 'images' is not an object; build it again"),
    (lambda r: r.clear() or r.update(stages=[]), "summary.json has no 'preset': "),
])
def test_a_summary_of_another_shape_is_a_one_line_error(sample_dataset, change, message):
    record = json.loads((sample_dataset / "summary.json").read_text())
    change(record)
    with pytest.raises(PrepError) as err:
        BuildSummary.from_json(json.dumps(record))
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_long_reasons_and_stage_names_fit():
    reasons = report.Table("Images not written", ["reason", "images"],
                           [("unreadable (" + "x" * 200 + ")", 3), ("not a decodable image", 1)])
    from kohaku_prep import charts
    assert charts.png(lambda f: report._draw_not_written(f, reasons), (7, 2)).startswith(PNG)


def test_matplotlib_is_imported_only_to_draw():
    import subprocess
    import sys
    code = ("import sys; from kohaku_prep import cli; from kohaku_prep.dataset import build, report; "
            "from kohaku_prep.train import run, run_logs; "
            "print(sorted(m for m in ('matplotlib', 'tensorboard') if m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "[]"
