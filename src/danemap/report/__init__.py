"""Self-contained HTML reports (figures inline as SVG, no network, escaped text).

The report layer renders numbers computed elsewhere; it never computes statistics.
"""

from __future__ import annotations

from danemap.report._html import DISCLAIMER, Section, forest_plot_svg, render_html, write_report

__all__ = ["DISCLAIMER", "Section", "forest_plot_svg", "render_html", "write_report"]
