"""The dataset report: report.md, its charts (report-*.png) and report.html, from the build's summary
(summary.json) and the manifest's ids and image sizes alone.

Each chart is drawn from `Table`s, and report.md prints the same tables: what is seen and what is read
are one set of numbers. Buckets come from bucketing.py's simulation of sd-scripts, as `plan` prints them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from kohaku_prep import bucketing, charts
from kohaku_prep.charts import Chart, Table
from kohaku_prep.dataset.captions import QUALITY_TAGS, YEAR_BANDS
from kohaku_prep.dataset.metadata import CATEGORY_NAMES
from kohaku_prep.dataset.selection import Stage, stage_lines
from kohaku_prep.dataset.summary import NO_TAG, RATING_ORDER, BuildSummary
from kohaku_prep.errors import PrepError
from kohaku_prep.fsutil import write_atomic

QUALITY_ORDER = [*reversed(QUALITY_TAGS), NO_TAG]
YEAR_ORDER = [band for _, band in YEAR_BANDS] + [NO_TAG]
TOP_TAGS, TOP_TAGS_PER_CATEGORY = 50, 20
# aspect ratio (width / height) bins a quarter of an octave wide, the square bin centred on 1:1
ASPECT_STEPS = np.arange(-8, 9)
MEGAPIXEL_EDGES = (0, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 4, 6, 8, 12, 16)
TAG_GRID = (2, 3)  # rows, columns: the five categories


def _counts_table(title: str, counts: dict, order: list[str]) -> Table:
    total = sum(counts.values()) or 1
    rows = [(name, counts[name], round(100 * counts[name] / total, 1)) for name in order if counts.get(name)]
    return Table(title, ["", "images", "share %"], rows)


def _pool_table(summary: BuildSummary, ids: np.ndarray) -> Table:
    stages = {s.name: s for s in summary.stages}
    rows = []
    for pool in summary.pools:
        stage = stages[pool.stage]
        end = np.iinfo(np.int64).max if pool.end is None else pool.end
        written = int(np.searchsorted(ids, end) - np.searchsorted(ids, pool.start))
        rows.append((pool.stage, stage.kept + stage.dropped, stage.kept, written))
    return Table("Per pool", ["pool", "in the pool", "sampled", "written"], rows,
                 "written: the pool's images in the dataset, after every filter")


def _aspect_table(widths: np.ndarray, heights: np.ndarray) -> Table:
    steps = np.clip(np.rint(4 * np.log2(widths / heights)), ASPECT_STEPS[0], ASPECT_STEPS[-1]).astype(np.int64)
    counts = np.bincount(steps - ASPECT_STEPS[0], minlength=len(ASPECT_STEPS))
    rows = []
    for k, n in zip(ASPECT_STEPS.tolist(), counts.tolist(), strict=True):
        low = "0" if k == ASPECT_STEPS[0] else f"{2 ** ((k - 0.5) / 4):.3f}"
        high = "inf" if k == ASPECT_STEPS[-1] else f"{2 ** ((k + 0.5) / 4):.3f}"
        rows.append((f"{2 ** (k / 4):.2f}", low, high, n))
    return Table("Aspect ratio (width / height)", ["about", "from", "below", "images"], rows)


def _megapixel_table(widths: np.ndarray, heights: np.ndarray) -> Table:
    pixels = widths.astype(np.float64) * heights / 1e6
    edges = np.array(MEGAPIXEL_EDGES, np.float64)
    counts = np.bincount(np.searchsorted(edges, pixels, "right") - 1, minlength=len(edges))
    rows = [(f"{low:g}", "inf" if i + 1 == len(edges) else f"{edges[i + 1]:g}", int(n))
            for i, (low, n) in enumerate(zip(edges.tolist(), counts.tolist(), strict=True))]
    return Table("Image size (megapixels)", ["from", "below", "images"], rows)


def report_tables(summary: BuildSummary, ids: np.ndarray, widths: np.ndarray, heights: np.ndarray
                  ) -> dict[str, Table]:
    """Every table of the report, by name. `ids` sorted, `widths` and `heights` theirs, as in the manifest."""
    caps, ds = summary.captions, summary.dataset
    buckets = bucketing.bucket_counts(widths, heights, ds)
    archive = [s.dropped for s in summary.stages if s.name == "image not in the archive"]
    not_written = [("image not in the archive", sum(archive))] if sum(archive) else []
    not_written += sorted(summary.images.failed.items())
    by_category = [(c, t, n) for c in CATEGORY_NAMES for t, n in caps.top_tags_by_category.get(c, [])]
    repeats = f" x {ds.num_repeats} repeats" if ds.num_repeats > 1 else ""
    return {
        "stages": Table("Selection", ["stage", "kept", "dropped", "note"],
                        [(s.name, s.kept, s.dropped, s.note) for s in summary.stages]),
        "pools": _pool_table(summary, ids),
        "buckets": Table("Buckets sd-scripts will use", ["width", "height", f"images{repeats}", "batches"],
                         bucketing.bucket_rows(buckets, ds.batch_size),
                         f"{ds.resolution} px, {ds.min_bucket_reso}-{ds.max_bucket_reso}, steps of "
                         f"{ds.bucket_reso_steps}, batch size {ds.batch_size}", plain=("width", "height")),
        "aspect": _aspect_table(widths, heights),
        "megapixels": _megapixel_table(widths, heights),
        "ratings": _counts_table("Rating", caps.ratings, RATING_ORDER),
        "quality": _counts_table("Quality tag", caps.quality, QUALITY_ORDER),
        "years": _counts_table("Year tag", caps.years, YEAR_ORDER),
        "top_tags": Table("Most frequent tags", ["tag", "in captions"], list(caps.top_tags)),
        "tags_by_category": Table("Most frequent tags per category", ["category", "tag", "in captions"],
                                  by_category),
        "not_written": Table("Images not written", ["reason", "images"], not_written),
    }


def report_charts(tables: dict[str, Table]) -> list[Chart]:
    t = tables
    return [Chart("report-selection.png", "Selection", [t["stages"], t["pools"]]),
            Chart("report-buckets.png", "Buckets", [t["buckets"]]),
            Chart("report-sizes.png", "Aspect ratio and size", [t["aspect"], t["megapixels"]]),
            Chart("report-captions.png", "Rating, quality and year tags", [t["ratings"], t["quality"], t["years"]]),
            Chart("report-tags.png", "Most frequent tags per category", [t["tags_by_category"]]),
            Chart("report-not-written.png", "Images not written", [t["not_written"]])]


def _draw_selection(figure, stages: Table, pools: Table) -> None:
    funnel, per_pool = figure.subplots(2, 1, height_ratios=[max(len(stages.rows), 1), max(len(pools.rows), 1) + 1])
    positions = list(range(len(stages.rows)))
    kept, dropped = stages.column("kept"), stages.column("dropped")
    funnel.barh(positions, kept, color=charts.KEPT, label="kept")
    funnel.barh(positions, dropped, left=kept, color=charts.DROPPED, label="dropped")
    funnel.set_yticks(positions, [charts.short(name) for name in stages.column("stage")])
    funnel.invert_yaxis()
    for y, k, d in zip(positions, kept, dropped, strict=True):
        funnel.annotate(f"{k:,} kept, {d:,} dropped", (k + d, y), xytext=(3, 0), textcoords="offset points",
                        va="center", fontsize=7)
    funnel.set_xlim(0, 1.35 * max((k + d for k, d in zip(kept, dropped, strict=True)), default=1))
    funnel.legend(loc="lower right")
    funnel.set_title("Every stage: kept and dropped (a pool's row counts that pool)", loc="left")
    funnel.xaxis.set_major_formatter(charts._thousands())
    columns = [("in the pool", charts.MUTED), ("sampled", charts.KEPT), ("written", charts.ACCENT)]
    height = 0.8 / len(columns)
    for k, (name, color) in enumerate(columns):
        values = pools.column(name)
        ys = [p + (k - 1) * height for p in range(len(values))]
        per_pool.barh(ys, values, height=height, color=color, label=name)
        for bar_y, v in zip(ys, values, strict=True):
            per_pool.annotate(f"{v:,}", (v, bar_y), xytext=(3, 0), textcoords="offset points", va="center", fontsize=7)
    per_pool.set_yticks(list(range(len(pools.rows))), pools.column("pool"))
    per_pool.invert_yaxis()
    per_pool.set_xlim(0, 1.15 * max((v for row in pools.rows for v in row[1:]), default=1))
    per_pool.legend(loc="lower right")
    per_pool.set_title("Per pool: posts in its id range, sampled, and written after every filter", loc="left")
    per_pool.xaxis.set_major_formatter(charts._thousands())
    charts.margins(figure, left=charts.label_inches(stages.column("stage")), down=0.5)


def _draw_sizes(figure, aspect: Table, megapixels: Table) -> None:
    left, right = figure.subplots(1, 2)
    left.bar(range(len(aspect.rows)), aspect.column("images"), color=charts.KEPT)
    left.set_xticks(range(len(aspect.rows)), aspect.column("about"), rotation=90)
    left.set_title("Aspect ratio, width / height (quarter-octave bins)", loc="left")
    labels = [f"{a}-{b}" for a, b in zip(megapixels.column("from"), megapixels.column("below"), strict=True)]
    right.bar(range(len(labels)), megapixels.column("images"), color=charts.ACCENT)
    right.set_xticks(range(len(labels)), labels, rotation=90)
    right.set_title("Size in megapixels", loc="left")
    for ax in (left, right):
        ax.yaxis.set_major_formatter(charts._thousands())
    charts.margins(figure, left=0.7, bottom=0.8, across=0.8)


def _draw_counts(figure, tables: list[Table]) -> None:
    for ax, table in zip(figure.subplots(1, len(tables)), tables, strict=True):
        charts.barh(ax, table.column(""), table.column("images"), table.title)
    labels = charts.label_inches([label for table in tables for label in table.column("")])
    charts.margins(figure, left=labels, across=labels + 0.3)


def _draw_tags(figure, table: Table) -> None:
    categories = list(dict.fromkeys(table.column("category")))
    if not categories:
        figure.text(0.5, 0.5, "no tags", ha="center")
        return
    axes = figure.subplots(TAG_GRID[0], TAG_GRID[1], squeeze=False).flatten()
    for ax, category in zip(axes, categories, strict=False):  # a fixed grid, categories up to its size
        rows = [r for r in table.rows if r[0] == category]
        charts.barh(ax, [r[1] for r in rows], [r[2] for r in rows], category)
    for ax in axes[len(categories):]:
        ax.set_axis_off()
    labels = charts.label_inches(table.column("tag"))
    charts.margins(figure, left=labels, across=labels + 0.2, down=0.5)


def _draw_not_written(figure, table: Table) -> None:
    ax = figure.subplots()
    if not table.rows:
        ax.set_axis_off()
        ax.text(0.5, 0.5, "every selected image was written", ha="center", va="center")
        return
    charts.barh(ax, table.column("reason"), table.column("images"), table.title, charts.DROPPED)
    charts.margins(figure, left=charts.label_inches(table.column("reason")))


def draw_charts(tables: dict[str, Table], batch_size: int) -> dict[str, bytes]:
    t = tables
    n_tag_rows = max((len([r for r in t["tags_by_category"].rows if r[0] == c])
                      for c in set(t["tags_by_category"].column("category"))), default=1)
    stage_rows = len(t["stages"].rows) + len(t["pools"].rows) + 2
    return {
        "report-selection.png": charts.png(lambda f: _draw_selection(f, t["stages"], t["pools"]),
                                           (10, 1.5 + 0.32 * stage_rows)),
        "report-buckets.png": charts.png(lambda f: charts.bucket_chart(f, t["buckets"].rows, batch_size),
                                         charts.bucket_chart_size(len(t["buckets"].rows))),
        "report-sizes.png": charts.png(lambda f: _draw_sizes(f, t["aspect"], t["megapixels"]), (11, 4)),
        "report-captions.png": charts.png(lambda f: _draw_counts(f, [t["ratings"], t["quality"], t["years"]]),
                                          (13, 3.2)),
        "report-tags.png": charts.png(lambda f: _draw_tags(f, t["tags_by_category"]),
                                      (15, TAG_GRID[0] * (0.7 + 0.2 * n_tag_rows))),
        "report-not-written.png": charts.png(lambda f: _draw_not_written(f, t["not_written"]),
                                             (7, 1.2 + 0.3 * max(len(t["not_written"].rows), 1))),
    }


def _md_table(table: Table) -> list[str]:
    def cell(at: int, v) -> str:
        return table.cell(at, v).replace("|", "\\|")
    numeric = [all(isinstance(r[i], (int, float)) for r in table.rows) for i in range(len(table.columns))]
    lines = ["| " + " | ".join(table.columns) + " |",
             "|" + "|".join("---:" if n else "---" for n in numeric) + "|"]
    lines += ["| " + " | ".join(cell(at, v) for at, v in enumerate(row)) + " |" for row in table.rows]
    return lines + ([""] + [table.note] if table.note else []) + [""]


def report_markdown(tables: dict[str, Table]) -> str:
    t = tables
    lines = ["# Dataset report", "", "Charts: report-*.png beside this file; all of it in one page: report.html.",
             "", "## Selection", "", "![Selection](report-selection.png)", "", "```",
             *stage_lines([Stage(*row) for row in t["stages"].rows]), "```", "",
             *_md_table(t["pools"])]
    if t["not_written"].rows:
        lines += ["## Images not written", "", "![Images not written](report-not-written.png)", "",
                  *_md_table(t["not_written"])]
    lines += ["## Buckets", "", "![Buckets](report-buckets.png)", "", *_md_table(t["buckets"]),
              "## Aspect ratio and size", "", "![Aspect ratio and size](report-sizes.png)", "",
              "### Aspect ratio (width / height)", "", *_md_table(t["aspect"]),
              "### Size (megapixels)", "", *_md_table(t["megapixels"]),
              "## Rating, quality and year tags", "", "![Rating, quality and year tags](report-captions.png)", ""]
    for name in ("ratings", "quality", "years"):
        lines += [f"### {t[name].title}", "", *_md_table(t[name])]
    lines += ["## Most frequent tags", "", *_md_table(t["top_tags"]),
              "## Most frequent tags per category", "", "![Most frequent tags per category](report-tags.png)", "",
              *_md_table(t["tags_by_category"])]
    return "\n".join(lines)


def report_files(summary: BuildSummary, ids: np.ndarray, widths: np.ndarray, heights: np.ndarray
                 ) -> dict[str, bytes | str]:
    """Every report file by name: report.md, the charts and report.html."""
    tables = report_tables(summary, ids, widths, heights)
    pngs = draw_charts(tables, summary.dataset.batch_size)
    written = summary.images.written
    intro = f"{written:,} images with captions; kept and dropped per stage, buckets, sizes, caption tags."
    page = charts.html_page("Dataset report", intro, report_charts(tables), pngs)
    return {"report.md": report_markdown(tables), **pngs, "report.html": page}


def write_report(folder: Path, summary: BuildSummary, ids: np.ndarray, widths: np.ndarray, heights: np.ndarray
                 ) -> list[str]:
    files = report_files(summary, ids, widths, heights)
    for name, data in files.items():
        write_atomic(folder / name, data)
    return list(files)


def redraw(dataset: Path) -> list[str]:
    """`kohaku-prep report DATASET`: the report again, from manifest.parquet and summary.json alone."""
    manifest, summary_path = dataset / "manifest.parquet", dataset / "summary.json"
    if not manifest.is_file() or not summary_path.is_file():
        raise PrepError(f"{dataset}: not a built dataset (it needs manifest.parquet and summary.json)")
    try:
        summary = BuildSummary.from_json(summary_path.read_text(encoding="utf-8"))
        sizes = pq.read_table(manifest, columns=["id", "width", "height"])
    except (OSError, ValueError) as exc:
        raise PrepError(f"{dataset}: cannot read its manifest or summary ({exc})") from None
    return write_report(dataset, summary, *(sizes[c].to_numpy() for c in ("id", "width", "height")))
