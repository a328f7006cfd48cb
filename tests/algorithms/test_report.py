"""The territory report, opened in a real headless Chromium: plotly must draw every chart offline.

Why a real browser: the report is only useful if plotly.js, embedded in the page, actually draws the
charts on a machine without network. A string check of the HTML cannot prove that; the DOM that Chromium
dumps after running the page's scripts can (plotly writes `svg.main-svg` and one `path` per bar).

Chromium comes from `bash infra/setup/chromium.sh` (run by `make test`); the test fails, not skips, without it.
Set PDP_UPDATE_REPORT_EXAMPLE=1 to refresh docs/report-example.png from this test's screenshot.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest
from pydantic import ValidationError

from pdp.algorithms.report import MASKED, chart_id, indicator_names, render_report, trends_figure
from pdp.algorithms.report_model import (
    Indicator,
    Priority,
    PyramidCounts,
    ReportModel,
    StratumCount,
    TrendPoint,
)

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[2]
EXAMPLE_PNG = REPO / "docs" / "report-example.png"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--virtual-time-budget=10000",
]
BLANK_BAR = "M0,0Z"  # what plotly draws for a bar without a value

# --- a realistic model: a small territory (~25,000 inhabitants), one masked HF stratum, one masked indicator --

# (pathway, action, label, eligible, up_to_date, reference, reference_label, goal)
INDICATORS = [
    ("dt2", "hba1c", "HbA1c deux fois par an", 1830, 1281, 0.74, "national 2021", 0.85),
    ("dt2", "fond_oeil", "Fond d'œil tous les deux ans", 1830, 988, 0.62, "national 2021", 0.75),
    ("dt2", "examen_pieds", "Examen des pieds & gradation", 1830, 1235, 0.70, "meilleure pratique MG", 0.75),
    ("dt2", "albuminurie", "Albuminurie annuelle", 1830, 640, 0.41, "national 2021", 0.70),
    ("dt2", "sevrage_tabac", "Sevrage tabagique <proposé>", 412, 92, 0.35, "meilleure pratique MG", 0.60),
    ("ic", "bnp", "NT-proBNP de suivi", 626, 407, 0.58, "national 2021", 0.75),
    ("ic", "education", "Éducation thérapeutique", 626, 150, 0.22, "meilleure pratique MG", 0.50),
    ("ic", "readaptation", "Réadaptation cardiaque après séjour", None, None, 0.31, "national 2021", 0.40),
]


def _pyramids() -> list[PyramidCounts]:
    t2d = [("at_risk", "À risque", 3910, 0.62), ("1", "Strate 1 — simple", 1240, 0.25),
           ("2", "Strate 2 — complexe", 480, 0.10), ("3", "Strate 3 — très complexe", 96, 0.025),
           ("4", "Strate 4 — fin de vie", 14, 0.005)]
    hf = [("1", "Strate 1 — stable", 420, 0.55), ("2", "Strate 2 — à surveiller", 160, 0.30),
          ("3", "Strate 3 — décompensations", 46, 0.11), ("4", "Strate 4 — palliative", None, 0.04)]
    return [
        PyramidCounts(pyramid="t2d", label="Diabète de type 2",
                      strata=[StratumCount(stratum=s, label=lab, count=n, reference_share=r) for s, lab, n, r in t2d]),
        PyramidCounts(pyramid="hf", label="Insuffisance cardiaque",
                      strata=[StratumCount(stratum=s, label=lab, count=n, reference_share=r) for s, lab, n, r in hf]),
    ]


def _indicators() -> list[Indicator]:
    return [
        Indicator(pathway=p, action=a, label=lab, eligible=e, up_to_date=u,
                  share=None if e is None or u is None else u / e, reference=r, reference_label=rl, goal=g)
        for p, a, lab, e, u, r, rl, g in INDICATORS
    ]


def _priorities(indicators: list[Indicator]) -> list[Priority]:
    """Furthest from goal first, as the gold table ranks them."""
    known = sorted((i for i in indicators if i.share_of_goal is not None), key=lambda i: i.share_of_goal or 0)
    return [
        Priority(rank=n, pathway=i.pathway, action=i.action, label=i.label, share_of_goal=i.share_of_goal or 0,
                 text=f"{i.label} : {i.share_of_goal or 0:.0%} de l'objectif, à prioriser.")
        for n, i in enumerate(known[:4], start=1)
    ]


def _month_ends(as_of: date, n: int) -> list[date]:
    """The last day of each of the n months ending with as_of's month, oldest first."""
    out, year, month = [], as_of.year, as_of.month
    for _ in range(n):
        nxt = date(year + month // 12, month % 12 + 1, 1)
        out.append(date.fromordinal(nxt.toordinal() - 1))
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return out[::-1]


def _trends(indicators: list[Indicator], as_of: date) -> list[TrendPoint]:
    """12 monthly points per action, climbing slowly to today's share; masked actions stay masked."""
    months = _month_ends(as_of, 12)
    return [
        TrendPoint(as_of=d, pathway=i.pathway, action=i.action,
                   share=None if i.share is None else max(0.0, i.share - 0.006 * (11 - k)))
        for i in indicators for k, d in enumerate(months)
    ]


def build_model() -> ReportModel:
    as_of = date(2025, 6, 30)
    indicators = _indicators()
    return ReportModel(
        territory="CPTS du Val de Brenne", as_of=as_of, generated_at=datetime(2025, 7, 2, 6, 30),
        definitions_version="v1 (2025-05)", pyramids=_pyramids(), indicators=indicators,
        priorities=_priorities(indicators), trends=_trends(indicators, as_of),
        notes=["Population : assurés résidant sur le territoire au 30/06/2025.", "<script>alert('x')</script>"],
    )


# --- a small DOM for the dumped page (stdlib only) --------------------------------------------------------

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def walk(self) -> Iterator[Node]:
        yield self
        for child in self.children:
            yield from child.walk()

    def find(self, tag: str, cls: str | None = None) -> list[Node]:
        return [n for n in self.walk() if n.tag == tag and (cls is None or cls in n.classes)]

    def text(self) -> str:
        return "".join(self.texts) + "".join(c.text() for c in self.children)


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].texts.append(data)


def parse(markup: str) -> Node:
    builder = _TreeBuilder()
    builder.feed(markup)
    builder.close()
    return builder.root


def by_id(root: Node, element_id: str) -> Node:
    found = [n for n in root.walk() if n.attrs.get("id") == element_id]
    assert len(found) == 1, f"expected one element #{element_id}, found {len(found)}"
    return found[0]


# --- the browser -----------------------------------------------------------------------------------------


def chromium(tmp_path: Path, name: str, *args: str) -> subprocess.Popen[str]:
    """Start headless Chromium with its own profile; the caller waits for it."""
    assert CHROMIUM.exists(), (
        f"{CHROMIUM} is missing: the report test needs a real browser. Run `bash infra/setup/chromium.sh` "
        "(make test does it)."
    )
    profile = tmp_path / f"profile-{name}"
    return subprocess.Popen(
        [str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )


def finish(proc: subprocess.Popen[str], what: str) -> str:
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"chromium {what} timed out")
    assert proc.returncode == 0, f"chromium {what} failed ({proc.returncode}): {err[-2000:]}"
    return out


@dataclass
class Rendered:
    model: ReportModel
    page: Path  # the report as written
    dom: Node  # the DOM Chromium dumped after running the page's scripts
    png: Path  # Chromium's screenshot


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    """Render once, then dump the DOM and take the screenshot in parallel (two browsers, ~5 s)."""
    tmp_path = tmp_path_factory.mktemp("report")
    model = build_model()
    page = render_report(model, tmp_path / "out" / "report.html")
    png = tmp_path / "report.png"
    dump = chromium(tmp_path, "dom", "--dump-dom", page.as_uri())
    shot = chromium(tmp_path, "shot", f"--screenshot={png}", "--window-size=1280,2400", page.as_uri())
    dom = parse(finish(dump, "--dump-dom"))
    finish(shot, "--screenshot")
    if os.environ.get("PDP_UPDATE_REPORT_EXAMPLE"):
        shutil.copyfile(png, EXAMPLE_PNG)
    return Rendered(model, page, dom, png)


# --- tests -----------------------------------------------------------------------------------------------


def test_chromium_is_installed() -> None:
    """Fails (not skips) on a machine without the browser, naming the script that installs it."""
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: run `bash infra/setup/chromium.sh` (make test does it)"


def _chart(dom: Node, element_id: str) -> Node:
    """The chart's div, once plotly has drawn into it (plot, then annotations and legend in a second svg)."""
    div = by_id(dom, element_id)
    assert div.find("svg", "main-svg"), f"#{element_id}: plotly drew no svg.main-svg (did plotly.js run offline?)"
    return div


def _bar_paths(chart: Node, trace: int = 0) -> list[str]:
    """The `d` of each bar of the chart's n-th bar trace (plotly: g.trace.bars > g.point > path)."""
    traces = chart.find("g", "bars")
    assert len(traces) > trace, "no bar trace drawn"
    return [p.attrs.get("d", "") for pt in traces[trace].find("g", "point") for p in pt.find("path")]


def _drawn(paths: list[str]) -> list[str]:
    """Bars with a visible width: a horizontal bar is `M x0,y0 V y1 H x1 V y0 Z`; no value draws x1 == x0."""
    widths = [re.match(r"M([-\d.]+),[-\d.]+V[-\d.]+H([-\d.]+)", d) for d in paths]
    return [d for d, m in zip(paths, widths, strict=True) if m and abs(float(m[2]) - float(m[1])) > 0.5]


@pytest.mark.parametrize("pyramid", ["t2d", "hf"])
def test_pyramids_are_drawn_one_bar_per_stratum(rendered: Rendered, pyramid: str) -> None:
    model, dom = rendered.model, rendered.dom
    counts = next(p for p in model.pyramids if p.pyramid == pyramid)
    bars = _bar_paths(_chart(dom, chart_id(f"pyramid-{pyramid}")))
    assert len(bars) == len(counts.strata)
    assert len(_drawn(bars)) == len(counts.strata), "a masked stratum is still drawn (hatched, at its bound)"


def test_pyramid_has_stratum_4_on_top_and_at_risk_at_the_base(rendered: Rendered) -> None:
    dom = rendered.dom
    ticks = _chart(dom, chart_id("pyramid-t2d")).find("g", "ytick")
    labels = [t.text() for t in sorted(ticks, key=lambda t: _translate_y(t))]  # top of the page first
    assert labels[0].startswith("Strate 4") and labels[-1] == "À risque", labels


def _translate_y(tick: Node) -> float:
    """Vertical position of an axis tick: plotly puts `transform="translate(x,y)"` on its text."""
    match = re.search(r"translate\([^,]+,\s*([-\d.]+)\)", tick.find("text")[0].attrs.get("transform", ""))
    assert match, "tick without position"
    return float(match.group(1))


def test_indicators_chart_draws_every_known_share(rendered: Rendered) -> None:
    model, dom = rendered.model, rendered.dom
    chart = _chart(dom, chart_id("indicators"))
    bars = _bar_paths(chart)
    known = [i for i in model.indicators if i.share is not None]
    assert len(bars) == len(model.indicators) == 8
    assert len(_drawn(bars)) == len(known)
    assert len(chart.find("g", "scatter")) >= 2, "reference and goal markers missing"
    assert "masqué" in chart.text()


def test_trends_chart_draws_one_line_per_action(rendered: Rendered) -> None:
    model, dom = rendered.model, rendered.dom
    chart = _chart(dom, chart_id("trends"))
    actions = {(t.pathway, t.action) for t in model.trends}
    with_data = {(t.pathway, t.action) for t in model.trends if t.share is not None}
    traces = chart.find("g", "scatter")
    assert len(traces) == len(actions) == 8
    lines = [p for t in traces for p in t.find("path", "js-line") if p.attrs.get("d")]
    assert len(lines) == len(with_data)
    assert len(chart.find("g", "xtick")) == 12
    assert all(len(t.find("path", "point")) in (0, 12) for t in traces)


def test_suppressed_counts_read_masked_never_as_a_number(rendered: Rendered) -> None:
    dom = rendered.dom
    rows = [r for r in dom.find("tr") if r.find("td") and r.find("td")[0].text() == "Strate 4 — palliative"]
    assert len(rows) == 1
    assert rows[0].find("td")[1].text() == MASKED
    assert not re.search(r"\d", rows[0].find("td")[1].text().replace("11", ""))
    chart_text = _chart(dom, chart_id("pyramid-hf")).text()
    assert MASKED in chart_text
    readaptation = [r for r in dom.find("tr") if "Réadaptation cardiaque après séjour" in r.text()]
    assert [c.text() for c in readaptation[0].find("td")[2:5]] == [MASKED, MASKED, "masqué"]
    notes = by_id_class(dom, "ul", "notes").text()
    assert "1 à 10 personnes sont masqués" in notes


def by_id_class(root: Node, tag: str, cls: str) -> Node:
    found = root.find(tag, cls)
    assert len(found) == 1
    return found[0]


def test_page_text_is_escaped_and_titled(rendered: Rendered) -> None:
    model, page, dom = rendered.model, rendered.page, rendered.dom
    source = page.read_text(encoding="utf-8")
    assert "<script>alert" not in source and "&lt;script&gt;alert" in source
    assert "<proposé>" not in source.split("<script>")[0]
    title = dom.find("h1")[0].text()
    assert model.territory in title
    meta = dom.find("p", "meta")[0].text()
    assert "30/06/2025" in meta and "v1 (2025-05)" in meta
    ticks = [t.text() for t in _chart(dom, chart_id("indicators")).find("g", "ytick")]
    assert "Sevrage tabagique <proposé>" in ticks, "text escaped for plotly must still read right in the chart"


def test_page_is_self_contained(rendered: Rendered) -> None:
    page = rendered.page
    source = page.read_text(encoding="utf-8")
    doc = parse(source)
    external: list[str] = []
    for node in doc.walk():
        for attr in ("src", "href"):
            value = node.attrs.get(attr, "")
            if node.tag in {"script", "link", "img", "iframe"} and value:
                external.append(f"<{node.tag} {attr}={value}>")
    assert not external, f"the report must not load anything: {external}"
    csp = [m.attrs["content"] for m in doc.find("meta") if m.attrs.get("http-equiv") == "Content-Security-Policy"]
    assert csp and "default-src 'none'" in csp[0], "the browser must refuse any fetch"
    styles = " ".join(s.text() for s in doc.find("style"))
    assert not re.search(r"url\(|@import", styles)
    assert source.count("<script>") == 2, "plotly.js inline once, then the charts"
    html_without_plotly = len(source.encode()) - len(max((s.text() for s in doc.find("script")), key=len).encode())
    assert html_without_plotly < 60_000, f"page without plotly.js is {html_without_plotly} bytes"


def test_screenshot_is_a_real_picture(rendered: Rendered) -> None:
    png = rendered.png
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 50_000


def test_model_refuses_unsuppressed_small_counts_and_round_trips() -> None:
    with pytest.raises(ValidationError, match="must be suppressed"):
        StratumCount(stratum="4", label="Strate 4", count=7, reference_share=None)
    with pytest.raises(ValidationError, match="extra"):
        StratumCount(stratum="4", label="Strate 4", count=None, reference_share=None, colour="red")
    with pytest.raises(ValidationError, match="do not belong"):
        PyramidCounts(pyramid="hf", label="IC", strata=[StratumCount(stratum="at_risk", label="x", count=0)])
    model = build_model()
    assert ReportModel.model_validate_json(model.model_dump_json()) == model


def test_trends_keep_the_last_12_months_and_name_lines_like_the_table() -> None:
    model = build_model()
    older = [TrendPoint(as_of=date(2024, m, 28), pathway="dt2", action="hba1c", share=0.5) for m in (4, 5)]
    figure = trends_figure([*older, *model.trends], indicator_names(model.indicators))
    assert [len(t.x) for t in figure.data] == [12] * 8
    assert figure.data[0].x[0] == "juil. 2024" and figure.data[0].name == "HbA1c deux fois par an"


def test_render_without_browser_for_empty_model(tmp_path: Path) -> None:
    model = ReportModel(territory="Vide", as_of=date(2025, 1, 31), generated_at=datetime(2025, 2, 1),
                        definitions_version="v1", pyramids=[], indicators=[], priorities=[], trends=[], notes=[])
    out = render_report(model, tmp_path / "r.html")
    assert out.exists() and 'id="chart-trends"' in out.read_text(encoding="utf-8")


