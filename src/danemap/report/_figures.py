"""Shared figure helpers of the reports: one palette, round ticks, figures embedded inline.

Every report figure is drawn from files the levels wrote (TSV, JSON, PNG); nothing here
computes a marker. Matplotlib figures are embedded as base64 PNG ``<img>`` tags (a
matplotlib SVG would carry external DTD and metadata URLs); danemap's own small charts
are inline SVG.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["PALETTE", "SITE_COLORS", "axis_ticks", "figure", "fmt_tick", "img_tag",
           "nice_limit", "nice_ticks", "png_file_tag", "sequence_finite"]

#: The one palette of every report (HTML and figures).
PALETTE = {
    "primary": "#1f5fa0",    # danemap's estimates, the participant
    "reference": "#c0392b",  # reference values (ENIGMA, published)
    "secondary": "#e69f00",  # a second series (GTM beside uncorrected)
    "band": "#d9e6f2",       # the reference band
    "pass": "#1e7b34",
    "flag": "#b35c00",
    "fail": "#b00020",
    "missing": "#666666",
    "grid": "#dddddd",
    "text": "#222222",
}

#: Categorical colours (sites, groups), colour-blind safe (Okabe-Ito order).
SITE_COLORS = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442",
               "#000000")

_STEPS = (1.0, 2.0, 2.5, 5.0, 10.0)


def _nice_step(span: float, n: int) -> float:
    raw = span / max(n, 1)
    mag = 10.0 ** math.floor(math.log10(raw))
    return next(s * mag for s in _STEPS if s * mag >= raw * (1 - 1e-9))


def nice_ticks(low: float, high: float, n: int = 5) -> list[float]:
    """Return about ``n`` ticks at round values (1, 2, 2.5 or 5 x 10^k) covering the range.

    Parameters
    ----------
    low, high : float
        The data range (finite; swapped when reversed).
    n : int
        The number of intervals wanted (the result has between about n/2 and 2n ticks).

    Returns
    -------
    list of float
        Increasing ticks; the first is <= ``low`` and the last >= ``high``.

    Raises
    ------
    ValueError
        If a bound is not finite.
    """
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"nice_ticks: expected finite bounds, found {low!r}, {high!r}")
    low, high = min(low, high), max(low, high)
    if high - low == 0:
        pad = abs(low) * 0.5 or 1.0
        low, high = low - pad, high + pad
    step = _nice_step(high - low, n)
    first = math.floor(low / step + 1e-9)
    last = math.ceil(high / step - 1e-9)
    # round away the float noise of k * step (0.30000000000000004)
    digits = max(0, -math.floor(math.log10(step)) + 2)
    return [round(k * step, digits) + 0.0 for k in range(first, last + 1)]


#: Round symmetric limits (x 10^k) and the tick step of each: 2 to 3 ticks a side.
_LIMITS = ((1.0, 0.5), (1.5, 0.5), (2.0, 1.0), (3.0, 1.0), (4.0, 2.0), (5.0, 2.5),
           (6.0, 2.0), (8.0, 4.0), (10.0, 5.0))


def nice_limit(value: float) -> tuple[float, list[float]]:
    """Return the smallest round symmetric limit >= ``|value|`` and its ticks (axes about 0).

    Parameters
    ----------
    value : float
        The largest absolute value to show (not finite or 0: 1).

    Returns
    -------
    limit : float
        The round limit (1, 1.5, 2, 3, 4, 5, 6 or 8 x 10^k), itself a tick.
    ticks : list of float
        From ``-limit`` to ``limit`` in round steps, symmetric, 0 included.
    """
    value = abs(value) if math.isfinite(value) and value else 1.0
    mag = 10.0 ** math.floor(math.log10(value))
    lead, step = next((lim, st) for lim, st in _LIMITS if lim * mag >= value * (1 - 1e-12))
    limit, step = lead * mag, step * mag
    k = round(limit / step)
    digits = max(0, -math.floor(math.log10(step)) + 2)
    ticks = [round(i * step, digits) + 0.0 for i in range(-k, k + 1)]
    return ticks[-1], ticks


@contextmanager
def figure(width: float = 6.4, height: float = 3.6) -> Iterator[Figure]:
    """Yield a matplotlib figure in the report style (Agg, no pyplot state, readable fonts).

    Parameters
    ----------
    width, height : float
        Size in inches (rendered at 100 dpi).

    Yields
    ------
    matplotlib.figure.Figure
        A new figure, closed on exit.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from cycler import cycler
    from matplotlib import rc_context
    from matplotlib.figure import Figure

    style: Any = {"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10,
             "xtick.labelsize": 9, "ytick.labelsize": 9, "legend.fontsize": 9,
             "axes.edgecolor": "#444444", "axes.spines.top": False,
             "axes.spines.right": False, "axes.prop_cycle": cycler(
                 color=[PALETTE["primary"], PALETTE["secondary"], *SITE_COLORS[2:]]),
             "font.family": "DejaVu Sans"}
    with rc_context(style):
        fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
        try:
            yield fig
        finally:
            fig.clear()


def _png_bytes(fig: Figure) -> bytes:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    return buf.getvalue()


def img_tag(fig_or_png: Figure | bytes, alt: str, width: int | None = None) -> str:
    """Return an ``<img>`` tag embedding a figure or PNG bytes as a base64 data URI.

    Parameters
    ----------
    fig_or_png : matplotlib.figure.Figure or bytes
        The figure (saved as PNG) or the bytes of a PNG file.
    alt : str
        Alternative text (escaped).
    width : int or None
        Display width in CSS pixels (None: natural size, capped by the page).

    Returns
    -------
    str
        The tag (trusted markup).
    """
    data = fig_or_png if isinstance(fig_or_png, bytes) else _png_bytes(fig_or_png)
    b64 = base64.b64encode(data).decode("ascii")
    size = f' width="{int(width)}"' if width else ""
    return (f'<img src="data:image/png;base64,{b64}" alt="{html.escape(alt, quote=True)}"'
            f'{size}>')


def png_file_tag(path: Path, alt: str, width: int | None = None) -> str | None:
    """Return an ``<img>`` tag embedding a PNG file, or None when it is not a readable PNG.

    Parameters
    ----------
    path : pathlib.Path
        The PNG (a QC figure the participant level wrote).
    alt : str
        Alternative text.
    width : int or None
        Display width in CSS pixels.

    Returns
    -------
    str or None
        The tag, or None when the file is missing or does not start with the PNG signature.
    """
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return None
    return img_tag(data, alt, width)


def axis_ticks(ax: Any, axis: str = "y", n: int = 5) -> None:
    """Put round ticks on one axis of a matplotlib Axes (its current data limits).

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        The axes.
    axis : {"x", "y"}
        Which axis.
    n : int
        Intervals wanted.
    """
    lo, hi = ax.get_xlim() if axis == "x" else ax.get_ylim()
    ticks = nice_ticks(lo, hi, n)
    if axis == "x":
        ax.set_xticks(ticks)
        ax.set_xlim(ticks[0], ticks[-1])
    else:
        ax.set_yticks(ticks)
        ax.set_ylim(ticks[0], ticks[-1])


def fmt_tick(value: float) -> str:
    """Format a round tick without float noise (``0.5``, ``-1``, ``2.5``, ``0``)."""
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def sequence_finite(values: Sequence[float]) -> list[float]:
    """Return the finite values of a sequence (NaN and infinities dropped)."""
    out = []
    for v in values:
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(f):
            out.append(f)
    return out
