"""Charts rendered on the server as inline SVG with pygal (no JavaScript, nothing fetched:
pygal's tooltip script is a CDN URL by default, so `js=[]`; its CSS is inlined)."""

from __future__ import annotations

import re
from datetime import date

import pygal
from pygal.style import Style

from ledger.domain import asset_scale

_SCRIPT = re.compile(r"<script\b[^>]*>.*?</script>", re.DOTALL)
_STYLE = Style(
    background="transparent",
    plot_background="transparent",
    foreground="#1f2933",
    foreground_strong="#1f2933",
    foreground_subtle="#9aa5b1",
    colors=("#2f6fde",),
    font_family="system-ui, sans-serif",
)


def spend_chart_svg(*, days: list[tuple[date, int]], asset: str) -> str:
    """A bar chart of spend per day (major units of `asset`), as an `<svg>` element."""
    scale = 10 ** asset_scale(asset)
    chart = pygal.Bar(
        js=[],
        style=_STYLE,
        height=260,
        width=900,
        show_legend=False,
        x_label_rotation=0,
        show_minor_x_labels=False,
        title=f"Spend per day ({asset.split('/')[0]})",
        explicit_size=False,
    )
    chart.x_labels = [d.strftime("%m-%d") for d, _ in days]
    chart.x_labels_major = [d.strftime("%m-%d") for i, (d, _) in enumerate(days) if i % 7 == 0]
    chart.add("spend", [amount / scale for _, amount in days])
    svg = str(chart.render(is_unicode=True, disable_xml_declaration=True))
    # pygal still inlines the config of its (unloaded) tooltip script: drop it, the page
    # runs no chart JavaScript at all.
    return _SCRIPT.sub("", svg)
