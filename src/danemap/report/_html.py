"""Minimal, dependency-free HTML rendering with inline SVG forest plots."""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from danemap._utils.text import DISCLAIMER
from danemap._version import __version__
from danemap.report._figures import PALETTE, fmt_tick, nice_limit

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DISCLAIMER", "Section", "forest_plot_svg", "paired_forest_svg", "render_html",
           "write_report"]


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}
h2{font-size:1.25em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
.disclaimer{background:#fff4e5;border-left:4px solid #f0a020;padding:.6em 1em}
.meta{color:#666;font-size:.9em}table{border-collapse:collapse;font-size:.85em;margin:.6em 0}
th,td{border:1px solid #ddd;padding:.25em .5em;text-align:right}th{background:#f5f5f5}
td.txt,th.txt{text-align:left}.note{color:#555;font-size:.9em}.scroll{overflow-x:auto}
figure{margin:.8em 0}figure img{max-width:100%;height:auto}
.status{display:inline-block;padding:0 .5em;border-radius:3px;color:#fff;font-size:.8em;
vertical-align:middle;margin-left:.5em}
.status-pass{background:%(pass)s}.status-flag{background:%(flag)s}
.status-failed{background:%(fail)s}.status-missing{background:%(missing)s}
.missing{border-left:4px solid %(missing)s;padding:.3em .8em;background:#f4f4f4}
.failed{border-left:4px solid %(fail)s;padding:.3em .8em;background:#fdecee}
"""
for _key in ("pass", "flag", "fail", "missing"):
    _CSS = _CSS.replace(f"%({_key})s", PALETTE[_key])

#: Section status -> badge text (a section without a status shows none).
STATUSES = {"pass": "pass", "flag": "flag", "failed": "FAILED", "missing": "missing"}


@dataclass
class Section:
    """One report section.

    Attributes
    ----------
    title : str
        Heading.
    text : str
        Plain-text paragraph(s); escaped, blank lines separate paragraphs.
    table : pandas.DataFrame or None
        Table shown below the text (numbers rounded for display only).
    svg : str
        Inline SVG figure produced by danemap (e.g. :func:`forest_plot_svg`); trusted markup.
    notes : list of str
        Footnotes (escaped).
    figures : list of str
        More figures (trusted markup from :mod:`danemap.report._figures`: ``<img>`` tags
        with base64 PNG data, inline SVG), each in its own ``<figure>``.
    status : str or None
        ``"pass"``, ``"flag"``, ``"failed"`` or ``"missing"``: a badge beside the heading;
        ``"failed"`` and ``"missing"`` also frame the text, so an absent result never
        looks like an empty-but-fine one.
    anchor : str
        The section's ``id`` (letters, digits and ``-``; derived from the title when empty).
    """

    title: str
    text: str = ""
    table: pd.DataFrame | None = None
    svg: str = ""
    notes: list[str] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)
    status: str | None = None
    anchor: str = ""

    def __post_init__(self) -> None:
        if self.status is not None and self.status not in STATUSES:
            raise ValueError(f"Section {self.title!r}: status must be one of "
                             f"{sorted(STATUSES)}, found {self.status!r}")


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _cell(value: object, digits: int) -> tuple[str, bool]:
    if isinstance(value, float | int) and not isinstance(value, bool):
        if isinstance(value, float) and math.isnan(value):
            return "n/a", False
        if isinstance(value, float):
            return f"{value:.{digits}g}" if abs(value) < 1e-3 and value != 0 else \
                f"{value:.{digits}f}".rstrip("0").rstrip("."), False
        return str(value), False
    try:
        import numpy as np

        if isinstance(value, np.floating | np.integer):
            return _cell(value.item(), digits)
    except ImportError:  # pragma: no cover
        pass
    return _esc(value), True


def _table_html(df: pd.DataFrame, digits: int = 3, max_rows: int = 200) -> str:
    head = "".join(f'<th class="txt">{_esc(c)}</th>' for c in df.columns)
    rows = []
    for values in df.head(max_rows).itertuples(index=False):
        cells = []
        for v in values:
            text, is_txt = _cell(v, digits)
            cells.append(f'<td class="txt">{text}</td>' if is_txt else f"<td>{text}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    more = (f'<p class="note">{len(df) - max_rows} more rows in the TSV.</p>'
            if len(df) > max_rows else "")
    return (f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>'
            + "".join(rows) + "</tbody></table></div>" + more)


def forest_plot_svg(labels: Sequence[str], estimates: Sequence[float],
                    lows: Sequence[float], highs: Sequence[float],
                    reference: Sequence[float] | None = None,
                    xlabel: str = "Cohen's d (95% CI)") -> str:
    """Return an inline SVG forest plot of estimates with confidence intervals.

    Parameters
    ----------
    labels : sequence of str
        Row labels (escaped).
    estimates, lows, highs : sequence of float
        Point estimates and CI bounds (NaN rows are drawn as labels only).
    reference : sequence of float or None
        Optional reference values (e.g. ENIGMA-ADHD d), drawn as open diamonds.
    xlabel : str
        Axis label.

    Returns
    -------
    str
        SVG markup.
    """
    n = len(labels)
    finite = [v for v in [*lows, *highs, *(reference or [])] if v == v and math.isfinite(v)]
    # a round limit, ticks at round values (0.25, 0.5, 1, 2 ... never 1.09)
    lim, ticks = nice_limit(max([0.5, *(abs(v) for v in finite)]))
    row_h, left, width, top = 22, 200, 420, 10
    height = top + row_h * n + 40

    blue, red = PALETTE["primary"], PALETTE["reference"]

    def x(v: float) -> float:
        return left + (v + lim) / (2 * lim) * width

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 20}" '
             f'height="{height}" font-size="12" role="img">',
             f'<line x1="{x(0):.1f}" y1="{top}" x2="{x(0):.1f}" y2="{top + row_h * n}" '
             'stroke="#999" stroke-dasharray="3,3"/>']
    for i, label in enumerate(labels):
        y = top + row_h * i + row_h / 2
        parts.append(f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">{_esc(label)}</text>')
        est, lo, hi = estimates[i], lows[i], highs[i]
        if all(math.isfinite(v) for v in (est, lo, hi)):
            parts.append(f'<line x1="{x(lo):.1f}" y1="{y:.1f}" x2="{x(hi):.1f}" y2="{y:.1f}" '
                         f'stroke="{blue}" stroke-width="2"/>')
            parts.append(f'<circle cx="{x(est):.1f}" cy="{y:.1f}" r="4" '
                         f'fill="{blue}"/>')
        if reference is not None and math.isfinite(reference[i]):
            r = x(reference[i])
            parts.append(f'<path d="M{r:.1f},{y - 5:.1f} l5,5 l-5,5 l-5,-5 z" fill="none" '
                         f'stroke="{red}" stroke-width="1.5"/>')
    axis_y = top + row_h * n + 5
    for tick in ticks:
        parts.append(f'<line x1="{x(tick):.1f}" y1="{axis_y - 5}" x2="{x(tick):.1f}" '
                     f'y2="{axis_y - 1}" stroke="#444"/>')
        parts.append(f'<text x="{x(tick):.1f}" y="{axis_y + 12}" text-anchor="middle">'
                     f"{fmt_tick(tick)}</text>")
    parts.append(f'<text x="{left + width / 2}" y="{axis_y + 30}" text-anchor="middle">'
                 f"{_esc(xlabel)}</text></svg>")
    return "".join(parts)


def paired_forest_svg(labels: Sequence[str],
                      series: Sequence[tuple[str, Sequence[float], Sequence[float],
                                             Sequence[float]]],
                      flags: Sequence[str] | None = None,
                      xlabel: str = "Cohen's d (95% CI)", cap: float = 3.0) -> str:
    """Return an inline SVG forest plot of two (or more) estimates per row, side by side.

    Each row shows every series' estimate and CI, offset vertically, in the series' colour
    (danemap's first, the reference's or the second analysis' next); an interval that runs
    past the axis is cut at it and ends in an arrowhead, so one wide interval (a 2-site
    meta-analysis) does not squash the others.

    Parameters
    ----------
    labels : sequence of str
        Row labels (escaped).
    series : sequence of (name, estimates, lows, highs)
        The series (at most four), each with one value per row (NaN: not drawn).
    flags : sequence of str or None
        A short text per row drawn right of the axis (escaped), e.g. the agreement flag.
    xlabel : str
        Axis label.
    cap : float
        The intervals and the later series widen the axis up to ``±cap`` at most (the
        first series' estimates, up to ±10, always fit on it); an estimate beyond the
        axis is drawn open at its end.

    Returns
    -------
    str
        SVG markup.
    """
    colours = (PALETTE["primary"], PALETTE["reference"], PALETTE["secondary"], PALETTE["pass"])
    n, k = len(labels), len(series)
    def largest(values: Sequence[float]) -> float:
        return max([0.0, *(abs(v) for v in values if v == v and math.isfinite(v))])

    # danemap's (the first series') estimates in view (up to 10); the intervals and the
    # other series up to the cap, cut beyond it (an open marker at the axis end)
    ests = largest(list(series[0][1])) if series else 0.0
    ci = largest([v for _, _, lo, hi in series for v in [*lo, *hi]])
    lim, ticks = nice_limit(max(0.5, min(ci, cap), min(ests, 10.0)))
    row_h = 12 + 8 * k
    longest = max([10, *(len(str(label)) for label in labels)])
    left, width, top, right = min(340, 7 * longest + 16), 400, 10, 90 if flags else 20
    height = top + row_h * n + 58

    def x(v: float) -> float:
        return left + (max(-lim, min(lim, v)) + lim) / (2 * lim) * width

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + right}" '
             f'height="{height}" font-size="12" role="img">',
             f'<line x1="{x(0):.1f}" y1="{top}" x2="{x(0):.1f}" y2="{top + row_h * n}" '
             'stroke="#999" stroke-dasharray="3,3"/>']
    for i, label in enumerate(labels):
        yc = top + row_h * i + row_h / 2
        if i % 2:
            parts.append(f'<rect x="0" y="{top + row_h * i}" width="{left + width + right}" '
                         f'height="{row_h}" fill="#f6f6f6"/>')
        parts.append(f'<text x="{left - 8}" y="{yc + 4:.1f}" text-anchor="end">'
                     f"{_esc(label)}</text>")
        for j, (_, est, lo, hi) in enumerate(series):
            y = yc + (j - (k - 1) / 2) * 8
            e, a, b = est[i], lo[i], hi[i]
            c = colours[j % len(colours)]
            if all(math.isfinite(v) for v in (a, b)):
                parts.append(f'<line x1="{x(a):.1f}" y1="{y:.1f}" x2="{x(b):.1f}" '
                             f'y2="{y:.1f}" stroke="{c}" stroke-width="2"/>')
                for v, sign in ((a, -1), (b, 1)):
                    if abs(v) > lim:
                        tip = x(v)
                        parts.append(f'<path d="M{tip:.1f},{y:.1f} l{-6 * sign},-4 l0,8 z" '
                                     f'fill="{c}"/>')
            if math.isfinite(e):
                fill = "white" if abs(e) > lim else c  # off the axis: open, at its end
                shape = (f'<circle cx="{x(e):.1f}" cy="{y:.1f}" r="3.5" fill="{fill}" '
                         f'stroke="{c}"/>' if j == 0 else
                         f'<rect x="{x(e) - 3.5:.1f}" y="{y - 3.5:.1f}" width="7" height="7" '
                         f'fill="{fill}" stroke="{c}"/>')
                parts.append(shape)
        if flags:
            parts.append(f'<text x="{left + width + 8}" y="{yc + 4:.1f}">{_esc(flags[i])}'
                         "</text>")
    axis_y = top + row_h * n + 5
    for tick in ticks:
        parts.append(f'<line x1="{x(tick):.1f}" y1="{axis_y - 5}" x2="{x(tick):.1f}" '
                     f'y2="{axis_y - 1}" stroke="#444"/>')
        parts.append(f'<text x="{x(tick):.1f}" y="{axis_y + 12}" text-anchor="middle">'
                     f"{fmt_tick(tick)}</text>")
    parts.append(f'<text x="{left + width / 2}" y="{axis_y + 28}" text-anchor="middle">'
                 f"{_esc(xlabel)}</text>")
    lx = left
    for j, (name, *_) in enumerate(series):
        c = colours[j % len(colours)]
        parts.append(f'<rect x="{lx}" y="{axis_y + 38}" width="10" height="10" fill="{c}"/>'
                     f'<text x="{lx + 14}" y="{axis_y + 47}">{_esc(name)}</text>')
        lx += 24 + 7 * len(name)
    parts.append("</svg>")
    return "".join(parts)


def _anchor(sec: Section, used: set[str]) -> str:
    base = sec.anchor or re.sub(r"[^a-z0-9]+", "-", sec.title.lower()).strip("-") or "section"
    base = re.sub(r"[^A-Za-z0-9-]", "-", base)
    name, k = base, 2
    while name in used:
        name, k = f"{base}-{k}", k + 1
    used.add(name)
    return name


def render_html(title: str, sections: Sequence[Section], subtitle: str = "",
                meta: Sequence[str] = ()) -> str:
    """Render a self-contained HTML page (no scripts, no external resources).

    Parameters
    ----------
    title : str
        Page title (escaped).
    sections : sequence of Section
        Content, in order.
    subtitle : str
        A line under the title (escaped).
    meta : sequence of str
        More lines under the subtitle (escaped): the run date, the configuration hash.

    Returns
    -------
    str
        The HTML document.
    """
    body = [f"<h1>{_esc(title)}</h1>",
            f'<p class="meta">{_esc(subtitle)} · danemap {_esc(__version__)}</p>',
            *(f'<p class="meta">{_esc(line)}</p>' for line in meta),
            f'<p class="disclaimer">{_esc(DISCLAIMER)}</p>']
    used: set[str] = set()
    for sec in sections:
        badge = (f' <span class="status status-{sec.status}">{STATUSES[sec.status]}</span>'
                 if sec.status else "")
        body.append(f'<h2 id="{_anchor(sec, used)}">{_esc(sec.title)}{badge}</h2>')
        frame = sec.status if sec.status in ("failed", "missing") else None
        for para in [p for p in sec.text.split("\n\n") if p.strip()]:
            cls = f' class="{frame}"' if frame else ""
            body.append(f"<p{cls}>{_esc(para.strip())}</p>")
        if sec.svg:
            body.append(f"<figure>{sec.svg}</figure>")
        for fig in sec.figures:
            body.append(f"<figure>{fig}</figure>")
        if sec.table is not None:
            body.append(_table_html(sec.table))
        for note in sec.notes:
            body.append(f'<p class="note">{_esc(note)}</p>')
    return ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>"
            + "\n".join(body) + "</body></html>\n")


def write_report(path: str | Path, title: str, sections: Sequence[Section],
                 subtitle: str = "", meta: Sequence[str] = ()) -> Path:
    """Render and atomically write an HTML report; return its path.

    Parameters
    ----------
    path : path-like
        The ``.html`` file.
    title, sections, subtitle, meta
        As for :func:`render_html`.

    Returns
    -------
    pathlib.Path
        The report.
    """
    from danemap.io import atomic_write_text

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, render_html(title, sections, subtitle, meta))
    return path
