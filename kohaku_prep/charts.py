"""Drawing: PNG bytes of matplotlib figures, and self-contained HTML pages that embed them.

matplotlib is imported here, inside the functions, so that nothing that only builds data pays for it.
Figures are drawn on the Agg canvas without pyplot (no global state, no display needed), with the
PNG's software stamp left out and math text off: a tag such as `$_$` is drawn as written.
"""
from __future__ import annotations

import base64
import html
import io
import warnings
from dataclasses import dataclass, field
from typing import Callable, Sequence

KEPT, DROPPED, ACCENT, MUTED = "#3b7dd8", "#d9534f", "#f0ad4e", "#9aa5b1"
DPI = 100
LABEL_INCH = 0.068  # width of one character of a 9-point label: margins are set, not measured (measuring
                    # every label, as matplotlib's layout engines do, doubles the drawing time)


@dataclass
class Table:
    """The numbers behind a chart, as the text report prints them."""

    title: str
    columns: list[str]
    rows: list[tuple]
    note: str = ""
    plain: tuple[str, ...] = ()  # columns of numbers printed without thousands separators (pixel sizes)

    def cell(self, at: int, value) -> str:
        if isinstance(value, int) and self.columns[at] not in self.plain:
            return f"{value:,}"
        return f"{value:g}" if isinstance(value, float) else str(value)

    def column(self, name: str) -> list:
        at = self.columns.index(name)
        return [row[at] for row in self.rows]


@dataclass
class Chart:
    file: str  # PNG file name
    title: str
    tables: list[Table] = field(default_factory=list)


def png(draw: Callable, size: tuple[float, float]) -> bytes:
    """`draw(figure)` on a new figure of `size` inches, as PNG bytes (the same bytes for the same data)."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with matplotlib.rc_context({"text.parse_math": False, "font.size": 9, "axes.spines.top": False,
                                "axes.spines.right": False, "svg.hashsalt": "kohaku-prep"}), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")  # glyphs missing from the bundled font (CJK tag names) are drawn as boxes
        figure = Figure(figsize=size, dpi=DPI)
        FigureCanvasAgg(figure)
        draw(figure)
        out = io.BytesIO()
        figure.savefig(out, format="png", metadata={"Software": None})
    return out.getvalue()


def margins(figure, left: float = 0.6, right: float = 0.2, top: float = 0.4, bottom: float = 0.5,
            across: float = 0.6, down: float = 0.6) -> None:
    """Margins and the gaps between subplots (`across`, `down`), in inches."""
    width, height = figure.get_size_inches()
    left = min(left, 0.6 * width)
    grid = figure.axes[0].get_subplotspec().get_gridspec() if figure.axes else None
    rows, columns = grid.get_geometry() if grid else (1, 1)
    inner_w = max(width - left - right - across * (columns - 1), 0.5)
    inner_h = max(height - top - bottom - down * (rows - 1), 0.5)
    figure.subplots_adjust(left=left / width, right=1 - right / width, top=1 - top / height,
                           bottom=bottom / height, wspace=across * columns / inner_w, hspace=down * rows / inner_h)


def label_inches(labels: Sequence[str]) -> float:
    """Room for the longest of `labels` as drawn (shortened)."""
    return 0.2 + LABEL_INCH * max((len(short(str(label))) for label in labels), default=1)


def short(text: str, width: int = 36) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def barh(ax, labels: Sequence[str], values: Sequence[float], title: str, color: str = KEPT,
         values_shown: bool = True) -> None:
    """Horizontal bars, first label on top, each bar labelled with its value unless not `values_shown`."""
    positions = list(range(len(labels)))
    ax.barh(positions, values, color=color)
    ax.set_yticks(positions, [short(str(label)) for label in labels])
    ax.invert_yaxis()
    ax.set_title(title, loc="left")
    for y, v in zip(positions, values if values_shown else [], strict=False):
        ax.annotate(f"{v:,}", (v, y), xytext=(3, 0), textcoords="offset points", va="center", fontsize=7)
    ax.set_xlim(0, (1.2 if values_shown else 1.02) * max(max(values, default=0), 1))
    ax.xaxis.set_major_formatter(_thousands())


def _thousands():
    from matplotlib.ticker import FuncFormatter
    return FuncFormatter(lambda v, _: f"{v:,.0f}")


def bucket_chart(figure, rows: Sequence[tuple], batch_size: int) -> None:
    """Every used bucket, by aspect ratio: images above, batches below. `rows`: (width, height, images, batches)."""
    labels = [f"{w}x{h}" for w, h, _, _ in rows]
    top, bottom = figure.subplots(2, 1, sharex=True)
    positions = range(len(rows))
    top.bar(positions, [r[2] for r in rows], color=KEPT)
    top.set_title(f"{len(rows)} buckets used, by aspect ratio (tallest first): images", loc="left")
    bottom.bar(positions, [r[3] for r in rows], color=ACCENT)
    bottom.set_title(f"batches of {batch_size} (a partly filled bucket's last batch counts as one)", loc="left")
    bottom.set_xticks(list(positions), labels, rotation=90, fontsize=7)
    for ax in (top, bottom):
        ax.yaxis.set_major_formatter(_thousands())
        ax.margins(x=0.005)
    margins(figure, left=0.8, bottom=0.8, down=0.4)


def bucket_chart_size(n_buckets: int) -> tuple[float, float]:
    return (max(8.0, 0.14 * n_buckets + 2), 6.0)


def data_uri(png_bytes: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes).decode("ascii")


_STYLE = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
          "img{max-width:100%;height:auto;border:1px solid #ddd}"
          "table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:90%}"
          "td,th{border:1px solid #ccc;padding:2px 8px}td.n{text-align:right}"
          "details{margin-bottom:1em}")


def _html_table(table: Table) -> list[str]:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
    lines = [f"<details><summary>{html.escape(table.title)} ({len(table.rows):,} rows)</summary>",
             f"<table><tr>{head}</tr>"]
    for row in table.rows:
        cells = "".join(f'<td class="n">{table.cell(at, v)}</td>' if isinstance(v, (int, float)) else
                        f"<td>{html.escape(str(v))}</td>" for at, v in enumerate(row))
        lines.append(f"<tr>{cells}</tr>")
    return lines + ["</table></details>"]


def html_page(title: str, intro: str, charts: Sequence[Chart], pngs: dict[str, bytes]) -> str:
    """One file that opens from disk anywhere: every chart embedded, its tables below it, nothing fetched."""
    lines = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>", f"<p>{html.escape(intro)}</p>"]
    for chart in charts:
        lines += [f"<h2>{html.escape(chart.title)}</h2>",
                  f'<img alt="{html.escape(chart.title)}" src="{data_uri(pngs[chart.file])}">']
        for table in chart.tables:
            lines += _html_table(table)
            if table.note:
                lines.append(f"<p>{html.escape(table.note)}</p>")
    return "\n".join(lines + ["</body></html>", ""])


def timeline_chart(figure, marks: Sequence, eta: str = "") -> None:
    """The run along its optimizer steps: warmup, parts, save points and the end. `marks`: plan.Mark rows."""
    ax = figure.subplots()
    end = max(m.step for m in marks)
    warmup = [m.step for m in marks if m.kind == "warmup end"]
    part_ends = [m.step for m in marks if m.kind == "part end"] + [end]
    saves = [m.step for m in marks if m.kind == "save"]
    lanes = ["saves", "parts" if len(part_ends) > 1 else "run", "warmup"]
    if warmup:
        ax.barh(2, warmup[0], color=ACCENT)
        ax.annotate(f"warmup to step {warmup[0]:,}", (warmup[0], 2), xytext=(4, 0), textcoords="offset points",
                    va="center")
    start = 0
    for k, stop in enumerate(part_ends):
        ax.barh(1, stop - start, left=start, color=KEPT if k % 2 == 0 else MUTED, edgecolor="white")
        if len(part_ends) > 1:
            ax.annotate(f"{k + 1}", ((start + stop) / 2, 1), ha="center", va="center", color="white")
        start = stop
    ax.vlines(saves, -0.35, 0.35, color=DROPPED)
    ax.annotate(f"{len(saves)} saves, every {saves[0]:,} steps" if len(saves) > 1 else f"{len(saves)} save",
                (0, 0), xytext=(0, -14), textcoords="offset points", va="top", fontsize=8)
    ax.set_yticks(range(3), lanes)
    ax.set_ylim(-0.9, 2.6)
    ax.set_xlim(0, end * 1.01)
    ax.set_xlabel("optimizer step")
    ax.xaxis.set_major_formatter(_thousands())
    ax.set_title(f"The run: {end:,} optimizer steps" + (f", {eta}" if eta else "")
                 + (f", {len(part_ends)} parts" if len(part_ends) > 1 else ""), loc="left")
    seconds = {m.step: m.seconds for m in marks if m.seconds is not None}
    if seconds and end:
        per_day = end / (seconds[end] / 86400)
        top = ax.secondary_xaxis("top", functions=(lambda s: s / per_day, lambda d: d * per_day))
        top.set_xlabel("days at the planned seconds per step")
    margins(figure, left=0.8, top=1.0 if seconds else 0.5, bottom=0.6)


def timeline_chart_size() -> tuple[float, float]:
    return (10.0, 3.2)
