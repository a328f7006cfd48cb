"""The territory report: one self-contained HTML file per territory, readable offline.

Why one file and no CDN: the report goes to territory clinical meetings, by e-mail or on a USB key, and is
opened on hospital workstations that often have no internet access. So plotly.js is embedded once, inline,
and a Content-Security-Policy forbids the page from fetching anything. All model text is escaped (jinja2
autoescape for the page, ``html.escape`` for text handed to plotly, which reads a subset of HTML).

Counts suppressed by disclosure control (1 to 10 persons, ``None`` in the model) read "< 11 (masqué)":
the page never prints them as a number, and a pyramid draws them as a hatched grey bar of at most 10.

Example (runnable; writes ~4.9 MB, of which plotly.js is ~4.8 MB)::

    >>> import tempfile
    >>> from datetime import date, datetime
    >>> from pathlib import Path
    >>> from pdp.algorithms.report_model import ReportModel
    >>> m = ReportModel(territory="Pays de Test", as_of=date(2025, 6, 30), generated_at=datetime(2025, 7, 1),
    ...                 definitions_version="v1", pyramids=[], indicators=[], priorities=[], trends=[], notes=[])
    >>> out = render_report(m, Path(tempfile.mkdtemp()) / "report.html")
    >>> "Pays de Test" in out.read_text(encoding="utf-8")
    True
"""

from __future__ import annotations

import html
import os
from collections import Counter, defaultdict
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
import plotly.graph_objects as go
from markupsafe import Markup
from plotly.io.json import to_json_plotly
from plotly.offline import get_plotlyjs

from pdp.algorithms.report_model import (
    SUPPRESSION_THRESHOLD,
    Indicator,
    PyramidCounts,
    ReportModel,
    StratumCount,
    TrendPoint,
)

MASKED = f"< {SUPPRESSION_THRESHOLD} (masqué)"
MASKING_NOTE = (
    f"Les effectifs de 1 à {SUPPRESSION_THRESHOLD - 1} personnes sont masqués (« {MASKED} ») par contrôle "
    "de divulgation, ainsi que les parts calculées à partir d'eux ; dans les pyramides, une strate masquée "
    f"est dessinée hachurée, à sa borne haute ({SUPPRESSION_THRESHOLD - 1})."
)
TREND_MONTHS = 12

STRATUM_COLOURS = {"at_risk": "#c6dbef", "1": "#9ecae1", "2": "#6baed6", "3": "#3182bd", "4": "#08519c"}
MASKED_COLOUR = "#bdbdbd"
REFERENCE_COLOUR = "#252525"
GOAL_COLOUR = "#d62728"
MONTHS_FR = ("janv.", "févr.", "mars", "avr.", "mai", "juin", "juil.", "août", "sept.", "oct.", "nov.", "déc.")

# Browser-side plotly options: no logo, no "edit in Chart Studio" link, charts follow the window width.
PLOTLY_CONFIG = {"displaylogo": False, "responsive": True, "showLink": False, "showSendToCloud": False}


def chart_id(name: str) -> str:
    """The stable DOM id of a chart, e.g. ``chart_id("pyramid-t2d") == "chart-pyramid-t2d"``."""
    return f"chart-{name}"


# --- formatting ---------------------------------------------------------------------------------------


def fmt_count(count: int | None) -> str:
    """French thousands (narrow no-break space); a suppressed count reads as masked.

    >>> fmt_count(12345), fmt_count(None)
    ('12\u202f345', '< 11 (masqué)')
    """
    return MASKED if count is None else f"{count:,}".replace(",", "\u202f")


def fmt_pct(share: float | None, *, masked: str = "masqué") -> str:
    """A fraction as a French percentage; one decimal under 10 % so a small stratum does not read 0 %.

    >>> fmt_pct(0.372), fmt_pct(0.0024), fmt_pct(None)
    ('37\xa0%', '0,2\xa0%', 'masqué')
    """
    if share is None:
        return masked
    digits = 1 if 0 < share < 0.1 else 0
    return f"{share * 100:.{digits}f}".replace(".", ",") + "\u00a0%"


def fmt_month(day: date) -> str:
    """A month in French, e.g. ``fmt_month(date(2025, 2, 28)) == 'févr. 2025'``."""
    return f"{MONTHS_FR[day.month - 1]} {day.year}"


def _plain(text: str) -> str:
    """Text for plotly, which renders a subset of HTML (<b>, <a href>...): show it literally instead."""
    return html.escape(text, quote=False)


# --- charts -------------------------------------------------------------------------------------------


def _base_layout(height: int, **extra: Any) -> dict[str, Any]:
    """Shared layout: no plotly template (keeps the page small), French separators, tight margins."""
    layout: dict[str, Any] = {
        "template": "none",
        "height": height,
        "separators": ", ",
        "font": {"family": "system-ui, -apple-system, 'Segoe UI', sans-serif", "size": 13, "color": "#222"},
        "margin": {"l": 10, "r": 10, "t": 10, "b": 40},
        "paper_bgcolor": "white",
        "plot_bgcolor": "white",
        "legend": {"orientation": "h", "x": 0, "y": -0.08, "yanchor": "top"},
    }
    layout.update(extra)
    return layout


def _stratum_text(s: StratumCount, total: int) -> str:
    """The label beside a pyramid bar: count, share of the pyramid, reference share."""
    if s.count is None:
        return MASKED
    text = fmt_count(s.count) + (f" · {fmt_pct(s.count / total)}" if total else "")
    return text + (f" (réf. {fmt_pct(s.reference_share)})" if s.reference_share is not None else "")


def pyramid_figure(pyramid: PyramidCounts) -> go.Figure:
    """Centred horizontal bars, at-risk at the base and stratum 4 at the top; ticks mark the reference.

    A bar's width is the stratum's count (a masked stratum: hatched, at its upper bound); the black ticks
    are where the bar's edges would be if the territory had the reference distribution.
    """
    strata = pyramid.ordered()
    labels = [_plain(s.label) for s in strata]
    widths = [s.count if s.count is not None else SUPPRESSION_THRESHOLD - 1 for s in strata]
    total = sum(s.count or 0 for s in strata)
    texts = [_plain(_stratum_text(s, total)) for s in strata]
    bars = go.Bar(
        y=labels, x=widths, base=[-w / 2 for w in widths], orientation="h", name="Territoire",
        marker={
            "color": [MASKED_COLOUR if s.count is None else STRATUM_COLOURS[s.stratum] for s in strata],
            "pattern": {"shape": ["/" if s.count is None else "" for s in strata]},
            "line": {"color": "#555", "width": 0.5},
        },
        customdata=texts, hovertemplate="%{y} : %{customdata}<extra></extra>",
    )
    ref = [(label, s.reference_share * total / 2) for label, s in zip(labels, strata, strict=True)
           if s.reference_share is not None and total]
    ticks = go.Scatter(
        y=[label for label, _ in ref for _side in (0, 1)], x=[x for _, half in ref for x in (-half, half)],
        mode="markers", name="Répartition de référence", hoverinfo="skip",
        marker={"symbol": "line-ns-open", "size": 18, "color": REFERENCE_COLOUR, "line": {"width": 3}},
    )
    widest = max([*widths, *(2 * half for _, half in ref), 1])
    notes = [{"x": widest * 0.55, "y": label, "text": text, "showarrow": False, "xanchor": "left"}
             for label, text in zip(labels, texts, strict=True)]
    return go.Figure(
        [bars, ticks],
        _base_layout(
            70 * len(strata) + 90, bargap=0.06, showlegend=bool(ref), annotations=notes,
            xaxis={"visible": False, "range": [-widest * 0.52, widest * 1.25], "fixedrange": True},
            yaxis={"type": "category", "categoryorder": "array", "categoryarray": labels, "fixedrange": True,
                   "automargin": True},
        ),
    )


def indicator_names(indicators: list[Indicator]) -> dict[tuple[str, str], str]:
    """(pathway, action) -> its display name: the label, plus the pathway when two pathways share a label.

    Both pathways may well have an "Éducation thérapeutique"; a chart axis keyed by label would merge them.

    >>> from pdp.algorithms.report_model import Indicator
    >>> mk = lambda p: Indicator(pathway=p, action="etp", label="ETP", eligible=0, up_to_date=0, share=None,
    ...                          reference=None, reference_label="", goal=0.5)
    >>> list(indicator_names([mk("dt2"), mk("ic")]).values())
    ['ETP (dt2)', 'ETP (ic)']
    """
    seen = Counter(i.label for i in indicators)
    return {(i.pathway, i.action): i.label if seen[i.label] == 1 else f"{i.label} ({i.pathway})" for i in indicators}


def indicators_figure(indicators: list[Indicator]) -> go.Figure:
    """Share up to date per indicator (bars), its reference (diamonds) and its goal (red ticks)."""
    names = indicator_names(indicators)
    labels = [_plain(names[(i.pathway, i.action)]) for i in indicators]
    bars = go.Bar(
        y=labels, x=[i.share for i in indicators], orientation="h", name="Territoire", marker_color="#3182bd",
        text=[fmt_pct(i.share) for i in indicators], textposition="inside", insidetextanchor="start",
        hovertemplate="%{y} : %{x:.0%}<extra></extra>",
    )
    with_ref = [(label, i) for label, i in zip(labels, indicators, strict=True) if i.reference is not None]
    reference = go.Scatter(
        y=[label for label, _ in with_ref], x=[i.reference for _, i in with_ref], mode="markers",
        name="Référence", customdata=[_plain(i.reference_label) for _, i in with_ref],
        hovertemplate="%{customdata} : %{x:.0%}<extra></extra>",
        marker={"symbol": "diamond", "size": 11, "color": REFERENCE_COLOUR},
    )
    goal = go.Scatter(
        y=labels, x=[i.goal for i in indicators], mode="markers", name="Objectif",
        hovertemplate="Objectif : %{x:.0%}<extra></extra>",
        marker={"symbol": "line-ns-open", "size": 22, "color": GOAL_COLOUR, "line": {"width": 3}},
    )
    masked = [{"x": 0.01, "y": label, "text": "masqué", "showarrow": False, "xanchor": "left",
               "font": {"color": "#777"}} for label, i in zip(labels, indicators, strict=True) if i.share is None]
    return go.Figure(
        [bars, reference, goal],
        _base_layout(
            34 * len(indicators) + 110, bargap=0.35, annotations=masked,
            xaxis={"range": [0, 1.02], "tickformat": ".0%", "gridcolor": "#e5e5e5", "fixedrange": True},
            yaxis={"type": "category", "autorange": "reversed", "automargin": True, "fixedrange": True},
        ),
    )


def trends_figure(trends: list[TrendPoint], names: dict[tuple[str, str], str]) -> go.Figure:
    """One line per action over the last 12 months present; a masked month is a gap, not a zero."""
    months = sorted({(p.as_of.year, p.as_of.month) for p in trends})[-TREND_MONTHS:]
    axis = [fmt_month(date(y, m, 1)) for y, m in months]
    series: dict[tuple[str, str], dict[tuple[int, int], float | None]] = defaultdict(dict)
    for p in trends:
        series[(p.pathway, p.action)][(p.as_of.year, p.as_of.month)] = p.share
    lines = [
        go.Scatter(
            x=axis, y=[points.get(m) for m in months], mode="lines+markers", connectgaps=False,
            name=_plain(names.get(key, f"{key[0]} · {key[1]}")), hovertemplate="%{x} : %{y:.0%}",
        )
        for key, points in series.items()
    ]
    return go.Figure(
        lines,
        _base_layout(
            460, legend={"orientation": "h", "x": 0, "y": -0.12, "yanchor": "top"},
            margin={"l": 10, "r": 10, "t": 10, "b": 10},
            xaxis={"type": "category", "categoryorder": "array", "categoryarray": axis, "fixedrange": True},
            yaxis={"range": [0, 1], "tickformat": ".0%", "gridcolor": "#e5e5e5", "automargin": True,
                   "fixedrange": True},
        ),
    )


def report_figures(model: ReportModel) -> dict[str, go.Figure]:
    """Every chart of the page by DOM id, in page order."""
    figures = {chart_id(f"pyramid-{p.pyramid}"): pyramid_figure(p) for p in model.pyramids}
    figures[chart_id("indicators")] = indicators_figure(model.indicators)
    figures[chart_id("trends")] = trends_figure(model.trends, indicator_names(model.indicators))
    return figures


# --- page ---------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _plotly_js() -> str:
    """The plotly.js bundle shipped with the plotly package (read once: ~4.8 MB)."""
    return get_plotlyjs()


@lru_cache(maxsize=1)
def _template() -> jinja2.Template:
    """The page template (autoescaped), next to this module."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
    )
    env.filters.update(count=fmt_count, pct=fmt_pct)
    return env.get_template("report.html.j2")


def _indicator_rows(indicators: list[Indicator]) -> list[dict[str, Any]]:
    """Table rows with their formatted cells (escaped by the template)."""
    return [
        {"i": i, "goal_pct": fmt_pct(i.share_of_goal) if i.share_of_goal is not None else "masqué"}
        for i in indicators
    ]


def render_html(model: ReportModel) -> str:
    """The page as a string; `render_report` writes it."""
    figures = report_figures(model)
    charts = [{"id": cid, **fig.to_plotly_json()} for cid, fig in figures.items()]
    return _template().render(
        m=model,
        pyramids=[(chart_id(f"pyramid-{p.pyramid}"), p) for p in model.pyramids],
        rows=_indicator_rows(model.indicators),
        priorities=sorted(model.priorities, key=lambda p: p.rank),
        notes=[*model.notes, MASKING_NOTE],
        masked=MASKED,
        # to_json_plotly escapes <, > and / so the JSON cannot close the <script> element.
        charts_json=Markup(to_json_plotly(charts)),
        config_json=Markup(to_json_plotly(PLOTLY_CONFIG)),
        plotly_js=Markup(_plotly_js()),
    )


def render_report(model: ReportModel, out: Path) -> Path:
    """Write the territory's report to `out` (one self-contained HTML file) and return `out`.

    Written to a temporary file then renamed, so a reader never sees half a report.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_text(render_html(model), encoding="utf-8")
    tmp.replace(out)
    return out
