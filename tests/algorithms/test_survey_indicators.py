"""Patient feedback (PREM / PROM) per stratum, as gold.indicator rows and in the report: the respondent
counts go through the same disclosure control as every published count, a mean is never shown beside a
hidden count, and the report draws the table. No Spark: the counts are built here as Spark hands them over."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pandas as pd
import pytest
from pydantic import ValidationError

from pdp.algorithms import load_definitions
from pdp.algorithms.indicators import Counts, _feedback, indicator_rows, survey_rows
from pdp.algorithms.report import render_report
from pdp.algorithms.report_model import FeedbackScore, ReportModel

PREM = "prem_coordination@1"


def surveys(cells: dict[str, tuple[int, float]], *, pyramid: str = "t2d", questionnaire: str = PREM) -> pd.DataFrame:
    """Respondents and the sum of their scale scores per stratum (what `survey_counts` returns)."""
    return pd.DataFrame([{"indicator": "patient_feedback", "pyramid": pyramid, "questionnaire": questionnaire,
                          "stratum": s, "count": n, "total": total} for s, (n, total) in cells.items()])


def _by(rows: list[dict], measure: str) -> dict[str, int | None]:
    return {r["category"]: r["value"] for r in rows if r["measure"] == measure}


def test_respondents_and_means_per_stratum_with_small_counts_hidden() -> None:
    defs = load_definitions()
    rows = survey_rows(surveys({"at_risk": (120, 120 * 71.0), "1": (40, 40 * 66.0), "2": (4, 4 * 50.0),
                                "3": (25, 25 * 58.0), "4": (0, 0.0)}), territory="T", defs=defs)
    counts, means = _by(rows, "survey_respondents"), _by(rows, "survey_mean_score")
    assert counts == {"at_risk": 120, "1": 40, "2": None, "3": None, "4": 0, "Total": 189}, \
        "4 respondents are hidden, and the smallest other count with them (else 189 - 185 gives them away)"
    assert means == {"at_risk": 71, "1": 66, "Total": round((120 * 71 + 40 * 66 + 4 * 50 + 25 * 58) / 189)}, \
        "no mean beside a hidden or empty count"
    assert {(r["topic"], r["status"], r["level"]) for r in rows} == {("t2d", PREM, "territory")}
    assert all((r["value"] is None) == r["suppressed"] for r in rows)


def test_nothing_is_published_for_a_questionnaire_nobody_answered() -> None:
    defs = load_definitions()
    assert survey_rows(None, territory="T", defs=defs) == []
    assert survey_rows(surveys({"1": (0, 0.0)}), territory="T", defs=defs) == []
    empty = Counts(strata=pd.DataFrame(columns=["unit", "gp", "pyramid", "stratum", "count"]),
                   actions=pd.DataFrame(columns=["gp", "pathway", "action", "status", "count"]))
    assert not [r for r in indicator_rows(empty, territory="T", defs=defs) if r["measure"].startswith("survey")]


def test_the_report_draws_the_feedback_table(tmp_path: Path) -> None:
    defs = load_definitions()
    rows = survey_rows(surveys({"1": (40, 40 * 66.0), "2": (4, 200.0), "3": (25, 1450.0)}), territory="T", defs=defs)
    feedback = _feedback(rows, defs)
    t2d = defs.pyramids["t2d"].label
    assert sorted((f.stratum, f.respondents, f.mean_score) for f in feedback if f.pyramid == t2d) == [
        ("1", 40, 66.0), ("2", None, None), ("3", None, None), ("4", 0, None), ("Total", 69, 62.0),
        ("at_risk", 0, None)]
    model = ReportModel(territory="Pays de Test", as_of=date(2026, 6, 30), generated_at=datetime(2026, 7, 1),
                        definitions_version="v1", pyramids=[], indicators=[], priorities=[], trends=[], notes=[],
                        feedback=feedback)
    html = render_report(model, tmp_path / "r.html").read_text(encoding="utf-8")
    assert "Retours des patients (PREM / PROM)" in html and "Expérience du parcours coordonné (PREM)" in html
    table = html[html.index('<table class="feedback">'):]
    table = table[:table.index("</table>")]
    assert "<td class=\"n\">66</td>" in table and table.count("masqué") == 4  # 2 hidden counts, 2 unknown means
    assert ReportModel.model_validate_json(model.model_dump_json()) == model


def test_the_report_model_refuses_a_small_count_or_a_mean_without_its_count() -> None:
    with pytest.raises(ValidationError):
        FeedbackScore(questionnaire=PREM, label="x", pyramid="t2d", stratum="2", stratum_label="S2",
                      respondents=4, mean_score=50.0)
    with pytest.raises(ValidationError, match="mean score"):
        FeedbackScore(questionnaire=PREM, label="x", pyramid="t2d", stratum="2", stratum_label="S2",
                      respondents=None, mean_score=50.0)
