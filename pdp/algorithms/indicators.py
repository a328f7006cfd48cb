"""Territory, commune and GP indicators from gold, under disclosure control, and the territory's HTML report.

Why aggregates are computed from gold (not from silver): they must count exactly the persons,
strata and statuses the worklists publish. Why disclosure control here: this is where person
rows become published numbers; every count goes through `protect_linked` (1 to 10 suppressed, plus
complements so that no suppressed cell can be recomputed) before it is written to gold.indicator or
drawn in the report. The tables published at one as-of date, per pyramid: commune × stratum and
GP × stratum (both have the territory's pyramid as column totals); per pathway: action × status
(margins: the eligible counts) and GP × action up to date (its column totals are the action ×
status table's up-to-date column). Tables sharing cells are protected together: a shared cell is
suppressed in every table or in none (see `disclosure.protect_linked` for why that suffices, and
tests/algorithms/test_disclosure.py for the attack on the whole published set).

Patient feedback (PREM / PROM, ``kind: survey`` indicator files): per pyramid and questionnaire,
the persons of each stratum who answered in the window (their latest response) and their mean
scale score. The respondent counts are a one-dimensional table per (pyramid, questionnaire),
protected like a pyramid (`protect`: 1 to 10 suppressed, then a complement); they share no cell
with the other tables (respondents are not a margin of anything published). A mean is published
only beside a published, non-zero count and rounded to a whole point on 0-100, so a suppressed
stratum's mean is only ever known pooled with its complement's.

GPs are professionals, not patients: the GP unit is the declared GP's RPPS as gold holds it (the
SIOP gives each GP their own figures), 'none' for persons without a declared GP. The best-GP
reference is the best share of a practice with at least `min_eligible_for_reference` eligible
patients, among practices whose figures are published (so the reference discloses nothing more).

>>> publish_indicators(spark, as_of=date(2026, 6, 30), territory="Douaisis")   # doctest: +SKIP
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from pdp.algorithms.disclosure import LinkedCell, ProtectedTable, determined, protect, protect_linked, withheld
from pdp.algorithms.model import Definitions, load_definitions
from pdp.lake import LakeTable, RunInfo

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from pdp.algorithms.report_model import FeedbackScore, ReportModel

TOTAL = "Total"
JOB = "gold.indicators"


@dataclass
class IndicatorReport:
    rows: int
    written: bool
    report: Path | None = None
    trend_rows: int = 0
    trend_written: bool = False
    seconds: dict[str, float] = field(default_factory=dict)


def _day(as_of: date) -> str:
    return f"as_of = DATE '{as_of.isoformat()}'"


def _long(protected: pd.DataFrame, *, level: str, unit_col: str, topic: str, measure: str, category_col: str,
          status: str | None, territory: str) -> list[dict[str, Any]]:
    out = []
    for r in protected.to_dict("records"):
        value = r["value"]
        out.append({
            "territory": territory, "level": level,
            "unit": territory if level == "territory" else str(r[unit_col]),
            "topic": topic, "measure": measure, "category": str(r[category_col]),
            "status": status or str(r["status"]), "value": None if pd.isna(value) else int(value),
            "suppressed": bool(r["suppressed"]),
        })
    return out


@dataclass
class Counts:
    """Person counts an as-of date's indicators are made of (one row per cell), from any engine.

    `strata`: unit (commune or 'unknown'), gp (declared GP's RPPS or 'none'), pyramid, stratum, count;
    `actions`: gp, pathway, action, status (up_to_date: not overdue, or overdue), count;
    `surveys` (None: no questionnaire answered yet): indicator, pyramid, questionnaire (``name@version``),
    stratum, count (respondents), total (sum of their scale scores).
    """

    strata: pd.DataFrame
    actions: pd.DataFrame
    surveys: pd.DataFrame | None = None


NO_GP = "none"  # persons with no declared GP known to any source
STRATA_COUNTS_SQL = (f"SELECT coalesce(location_id, 'unknown') AS unit, coalesce(gp_rpps, '{NO_GP}') AS gp, pyramid, "
                     "stratum, count(*) AS count FROM {stratum} GROUP BY 1, 2, 3, 4")
ACTION_COUNTS_SQL = (f"SELECT coalesce(gp_rpps, '{NO_GP}') AS gp, pathway, action, "
                     "CASE WHEN status = 'overdue' THEN 'overdue' ELSE 'up_to_date' END AS status, count(*) AS count "
                     "FROM {care_action} GROUP BY 1, 2, 3, 4")


SURVEY_COUNTS_SQL = (
    "WITH latest AS (SELECT person_id, regexp_extract(source_code, '^(.*)/score$', 1) AS questionnaire, "
    "max_by(value, struct(start_date, value)) AS score FROM {survey} WHERE source_code IN ({codes}) "
    "AND start_date > DATE '{start}' AND start_date <= DATE '{end}' GROUP BY 1, 2) "
    "SELECT s.pyramid, l.questionnaire, s.stratum, count(*) AS count, sum(l.score) AS total "
    "FROM {stratum} s JOIN latest l ON s.person_id = l.person_id WHERE s.pyramid IN ({pyramids}) GROUP BY 1, 2, 3"
)
"""Respondents and the sum of their latest scale score, per pyramid, questionnaire and stratum."""


def _quoted(values: list[str]) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


def survey_counts(spark: SparkSession, *, as_of: date, defs: Definitions, stratum_view: str,
                  lake_root: str | None = None) -> pd.DataFrame | None:
    """Respondents per stratum for every survey indicator (None: no indicator, or no answer in the lake yet)."""
    from pdp.semantic import load_questionnaires

    survey = LakeTable(spark, "silver.survey_answer", lake_root=lake_root)
    if not defs.survey_indicators or not survey.exists():
        return None
    survey.read().createOrReplaceTempView("_ind_survey")
    questionnaires = load_questionnaires()
    frames = []
    for name, ind in defs.survey_indicators.items():
        codes = [questionnaires[q.questionnaire].score_code for q in ind.questionnaires]
        sql = SURVEY_COUNTS_SQL.format(
            survey="_ind_survey", stratum=stratum_view, codes=_quoted(codes), pyramids=_quoted(ind.pyramids),
            start=(as_of - timedelta(days=ind.window_days)).isoformat(), end=as_of.isoformat())
        frames.append(spark.sql(sql).toPandas().assign(indicator=name))
    return pd.concat(frames, ignore_index=True)


def gold_counts(spark: SparkSession, *, as_of: date, lake_root: str | None = None,
                defs: Definitions | None = None) -> Counts:
    """The counts of gold's stored rows at `as_of` (Spark); with `defs`, the survey counts too."""
    day = _day(as_of)
    for name in ("stratum", "care_action"):
        LakeTable(spark, f"gold.{name}", lake_root=lake_root).read().where(day).createOrReplaceTempView(
            f"_ind_{name}")
    return Counts(
        strata=spark.sql(STRATA_COUNTS_SQL.format(stratum="_ind_stratum")).toPandas(),
        actions=spark.sql(ACTION_COUNTS_SQL.format(care_action="_ind_care_action")).toPandas(),
        surveys=None if defs is None else survey_counts(spark, as_of=as_of, defs=defs, stratum_view="_ind_stratum",
                                                       lake_root=lake_root),
    )


def survey_rows(surveys: pd.DataFrame | None, *, territory: str, defs: Definitions) -> list[dict[str, Any]]:
    """Respondents and mean scale score per stratum, disclosure-controlled, as gold.indicator rows.

    Rows: topic = the pyramid, category = the stratum or 'Total', status = the questionnaire
    (``name@version``); measure ``survey_respondents`` (persons) and ``survey_mean_score`` (0-100,
    rounded; only where the count is published and not 0). A (pyramid, questionnaire) nobody
    answered publishes nothing.
    """
    from pdp.semantic import load_questionnaires

    if surveys is None or surveys.empty:
        return []
    questionnaires = load_questionnaires()
    rows: list[dict[str, Any]] = []
    for name, ind in defs.survey_indicators.items():
        for item in ind.questionnaires:
            code = questionnaires[item.questionnaire].score_code.removesuffix("/score")
            for pyramid in ind.pyramids:
                part = surveys[(surveys["indicator"] == name) & (surveys["questionnaire"] == code)
                               & (surveys["pyramid"] == pyramid)]
                if part.empty or int(part["count"].sum()) == 0:
                    continue
                strata = [s.stratum for s in defs.pyramids[pyramid].strata]
                counts = part.groupby("stratum")["count"].sum().reindex(strata).fillna(0).astype("int64")
                totals = part.groupby("stratum")["total"].sum().reindex(strata).fillna(0.0)
                table = protect(counts.rename("respondents"), total_label=TOTAL).table["respondents"]
                for label in [*strata, TOTAL]:
                    n = table.loc[label]
                    hidden = bool(pd.isna(n))
                    base = {"territory": territory, "level": "territory", "unit": territory, "topic": pyramid,
                            "category": label, "status": code}
                    rows.append({**base, "measure": "survey_respondents", "value": None if hidden else int(n),
                                 "suppressed": hidden})
                    if not hidden and int(n) > 0:
                        total = float(totals.sum() if label == TOTAL else totals.loc[label])
                        rows.append({**base, "measure": "survey_mean_score", "value": round(total / int(n)),
                                     "suppressed": False})
    return rows


def _wide(frame: pd.DataFrame, index: str, columns: str, *, rows: list[str] | None = None,
          cols: list[str]) -> pd.DataFrame:
    """A count table (0 where no person), rows sorted unless given."""
    summed = frame.groupby([index, columns], as_index=False)["count"].sum()
    wide = summed.pivot(index=index, columns=columns, values="count")
    wide = wide.reindex(index=rows if rows is not None else sorted(wide.index), columns=cols).fillna(0)
    wide = wide.astype("int64")
    wide.index.name, wide.columns.name = index, columns
    return wide


def published_tables(counts: Counts, defs: Definitions) -> tuple[dict[tuple[str, str], pd.DataFrame],
                                                                 list[tuple[LinkedCell, ...]]]:
    """Every count table published at one as-of date, and the cells they share.

    Per pyramid: commune × stratum and GP × stratum (their column totals are both the territory's
    pyramid). Per pathway: action × status (up to date / overdue; margins: eligible per action) and
    GP × action (persons up to date; its column totals are the action × status table's up-to-date
    column).
    """
    tables: dict[tuple[str, str], pd.DataFrame] = {}
    links: list[tuple[LinkedCell, ...]] = []
    for name, pyramid in defs.pyramids.items():
        strata = [s.stratum for s in pyramid.strata]
        part = counts.strata[counts.strata["pyramid"] == name]
        if part.empty:
            part = pd.DataFrame({"unit": ["unknown"], "gp": [NO_GP], "stratum": [strata[0]], "count": [0]})
        tables[("commune", name)] = _wide(part, "unit", "stratum", cols=strata)
        tables[("gp", name)] = _wide(part, "gp", "stratum", cols=strata)
        links += [((("commune", name), TOTAL, s), (("gp", name), TOTAL, s)) for s in [*strata, TOTAL]]
    for name, pathway in defs.pathways.items():
        actions = [a.action for a in pathway.actions]
        part = counts.actions[counts.actions["pathway"] == name]
        if part.empty:
            part = pd.DataFrame({"gp": [NO_GP], "action": [actions[0]], "status": ["overdue"], "count": [0]})
        tables[("action", name)] = _wide(part, "action", "status", rows=actions, cols=["up_to_date", "overdue"])
        up = part[part["status"] == "up_to_date"]
        gps = sorted(set(part["gp"]))
        tables[("gp_action", name)] = (_wide(up, "gp", "action", rows=gps, cols=actions) if not up.empty else
                                       pd.DataFrame(0, index=pd.Index(gps, name="gp"),
                                                    columns=pd.Index(actions, name="action")))
        links += [((("action", name), a, "up_to_date"), (("gp_action", name), TOTAL, a)) for a in actions]
        links.append(((("action", name), TOTAL, "up_to_date"), (("gp_action", name), TOTAL, TOTAL)))
    return tables, links


def protect_published(tables: dict[tuple[str, str], pd.DataFrame], links: list[tuple[LinkedCell, ...]],
                      defs: Definitions) -> dict[tuple[str, str], ProtectedTable]:
    """Disclosure control of the whole published set (`published_tables`).

    Shared cells: `protect_linked`. Sums: the action tables publish the pathway's eligible persons
    (each action's total), the sum of the pathway's strata in the territory's pyramid; they are
    published only when that sum already follows from the published pyramid (always, unless one of
    the territory's strata holds 1 to 10 persons: then the pathway's action tables are withheld).
    """
    protected = protect_linked(tables, links, total_label=TOTAL)
    for name, pathway in defs.pathways.items():
        eligible = {(TOTAL, s): 1.0 for s in pathway.strata}
        if not any(determined(protected[(kind, pathway.pyramid)], eligible) for kind in ("commune", "gp")):
            for kind in ("action", "gp_action"):
                protected[(kind, name)] = withheld(protected[(kind, name)])
    return protected


def indicator_rows(counts: Counts, *, territory: str, defs: Definitions) -> list[dict[str, Any]]:
    """Every published aggregate of one as-of date, disclosure-controlled, as gold.indicator rows (without as_of).

    The tables are protected together (`protect_linked`): a cell two tables share is suppressed in both
    or in neither. A shared margin is stored once (the territory's pyramid and up-to-date counts).
    """
    tables, links = published_tables(counts, defs)
    protected = protect_published(tables, links, defs)
    rows: list[dict[str, Any]] = []
    for (kind, name), table in protected.items():
        if kind == "commune":
            long = table.to_long(row="unit", column="stratum", value="value")
            for r in _long(long, level="commune", unit_col="unit", topic=name, measure="stratum_count",
                           category_col="stratum", status="all", territory=territory):
                if r["unit"] == TOTAL:  # the margins are the territory's own pyramid
                    r["level"], r["unit"] = "territory", territory
                rows.append(r)
        elif kind == "gp":
            long = table.to_long(row="gp", column="stratum", value="value")
            long = long[long["gp"] != TOTAL]  # the territory's pyramid, already stored
            rows += _long(long, level="gp", unit_col="gp", topic=name, measure="stratum_count",
                          category_col="stratum", status="all", territory=territory)
        elif kind == "action":
            long = table.to_long(row="action", column="status", value="value")
            rows += _long(long, level="territory", unit_col="action", topic=name, measure="action_status",
                          category_col="action", status=None, territory=territory)
        else:
            long = table.to_long(row="gp", column="action", value="value")
            long = long[long["gp"] != TOTAL]  # the territory's up-to-date counts, already stored
            rows += _long(long, level="gp", unit_col="gp", topic=name, measure="action_up_to_date",
                          category_col="action", status="up_to_date", territory=territory)
    return rows + survey_rows(counts.surveys, territory=territory, defs=defs)


def compute_indicators(
    spark: SparkSession, *, as_of: date, territory: str, defs: Definitions, lake_root: str | None = None
) -> list[dict[str, Any]]:
    """Every published aggregate at `as_of`, disclosure-controlled, as gold.indicator rows (without as_of)."""
    counts = gold_counts(spark, as_of=as_of, lake_root=lake_root, defs=defs)
    return indicator_rows(counts, territory=territory, defs=defs)


def _best_gp(rows: list[dict[str, Any]], defs: Definitions) -> dict[tuple[str, str], float]:
    """(pathway, action) -> the best share up to date among GP practices with enough eligible patients.

    Computed from published figures only, so that the reference adds nothing an attacker could use:
    a practice is a candidate for an action when its up-to-date count is published and its eligible
    patients follow from its published GP × stratum row (every stratum of the pathway, or the row
    total and every other stratum).
    """
    published = {(r["topic"], r["unit"], r["measure"], r["category"]): r["value"] for r in rows
                 if r["level"] == "gp" and r["unit"] != NO_GP}
    out: dict[tuple[str, str], float] = {}
    for ind in defs.indicators.values():
        pathway = defs.pathways[ind.pathway]
        gps = {unit for topic, unit, measure, _ in published if topic == ind.pathway and measure == "action_up_to_date"}
        others = [s.stratum for s in defs.pyramids[pathway.pyramid].strata if s.stratum not in pathway.strata]
        for gp in sorted(gps):
            strata = [published.get((pathway.pyramid, gp, "stratum_count", s)) for s in pathway.strata]
            rest = [published.get((pathway.pyramid, gp, "stratum_count", s)) for s in [TOTAL, *others]]
            if all(v is not None for v in strata):
                eligible = sum(v for v in strata if v is not None)
            elif all(v is not None for v in rest):  # the practice's total less its other strata
                eligible = (rest[0] or 0) - sum(v for v in rest[1:] if v is not None)
            else:
                continue
            if eligible < ind.min_eligible_for_reference:
                continue
            for a in ind.actions:
                up = published.get((ind.pathway, gp, "action_up_to_date", a.action))
                if up is not None:
                    key = (ind.pathway, a.action)
                    out[key] = max(out.get(key, 0.0), up / eligible)
    return out


def publish_indicators(
    spark: SparkSession,
    *,
    as_of: date,
    territory: str,
    definitions: Definitions | None = None,
    lake_root: str | None = None,
    report_dir: Path | None = None,
    trend_months: int = 1,
) -> IndicatorReport:
    """Write gold.indicator at `as_of` (only when it changed) and the territory's HTML report.

    `trend_months` > 1 also computes and stores the `trend_months - 1` previous month ends
    (`pdp.algorithms.trend`), before the report draws the trend.
    """
    started = time.perf_counter()
    defs = definitions or load_definitions()
    rows = compute_indicators(spark, as_of=as_of, territory=territory, defs=defs, lake_root=lake_root)
    table = LakeTable(spark, "gold.indicator", lake_root=lake_root).create()
    frame = spark.createDataFrame(
        [{"as_of": as_of, "definitions": defs.version, **r} for r in rows], table.definition.spark_schema()
    )
    current = sorted(tuple(str(v) for v in r) for r in table.read().where(_day(as_of)).collect())
    fresh = sorted(tuple(str(v) for v in r) for r in frame.select(*table.definition.column_names).collect())
    written = current != fresh
    if written:
        run = RunInfo.new(JOB, definitions_version=defs.version, lineage={"as_of": as_of.isoformat()})
        table.overwrite(frame, replace_where=_day(as_of), run=run)
    result = IndicatorReport(rows=len(rows), written=written)
    if trend_months > 1:
        from pdp.algorithms.trend import compute_trend

        trend = compute_trend(spark, as_of=as_of, months=trend_months, territory=territory, definitions=defs,
                              lake_root=lake_root)
        result.trend_rows, result.trend_written = trend.rows, trend.written
        result.seconds["trend"] = trend.seconds.get("total", 0.0)
    if report_dir is not None:
        model = report_model(spark, as_of=as_of, territory=territory, defs=defs, lake_root=lake_root, rows=rows)
        from pdp.algorithms.report import render_report

        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in territory)
        result.report = render_report(model, Path(report_dir) / f"{safe}-{as_of.isoformat()}.html")
    result.seconds["total"] = time.perf_counter() - started
    return result


def report_model(
    spark: SparkSession, *, as_of: date, territory: str, defs: Definitions, lake_root: str | None,
    rows: list[dict[str, Any]],
) -> ReportModel:
    """The report's content: pyramids and indicators from the protected rows, trends from earlier runs."""
    from pdp.algorithms.report_model import (
        Indicator,
        Priority,
        PyramidCounts,
        ReportModel,
        StratumCount,
        TrendPoint,
    )

    def cell(topic: str, measure: str, category: str, status: str) -> int | None:
        for r in rows:
            if (r["level"], r["topic"], r["measure"], r["category"], r["status"]) == (
                    "territory", topic, measure, category, status):
                return r["value"]
        return None

    pyramids = [
        PyramidCounts(pyramid=name, label=p.label, strata=[
            StratumCount(stratum=s.stratum, label=s.label, count=cell(name, "stratum_count", s.stratum, "all"),
                         reference_share=s.reference_share) for s in p.strata])
        for name, p in defs.pyramids.items() if name in ("t2d", "hf")
    ]
    best = _best_gp(rows, defs)
    indicators, trends = [], []
    for ind in defs.indicators.values():
        for a in ind.actions:
            eligible = cell(ind.pathway, "action_status", a.action, TOTAL)
            up = cell(ind.pathway, "action_status", a.action, "up_to_date")
            share = up / eligible if eligible and up is not None else None
            indicators.append(Indicator(
                pathway=ind.pathway, action=a.action, label=a.label, eligible=eligible, up_to_date=up, share=share,
                reference=best.get((ind.pathway, a.action)), reference_label="meilleure pratique MG du territoire",
                goal=a.goal))
    history = (LakeTable(spark, "gold.indicator", lake_root=lake_root).read()
               .where(f"level = 'territory' AND measure = 'action_status' AND as_of <= DATE '{as_of.isoformat()}' "
                      f"AND as_of > DATE '{as_of.replace(year=as_of.year - 1).isoformat()}'").collect())
    points: dict[tuple[date, str, str], dict[str, int | None]] = {}
    for r in history:
        points.setdefault((r["as_of"], r["topic"], r["category"]), {})[r["status"]] = r["value"]
    by_month: dict[tuple[int, int, str, str], tuple[date, float | None]] = {}
    for (day, pathway, action), cells in sorted(points.items()):
        if action == TOTAL:
            continue
        eligible, up = cells.get(TOTAL), cells.get("up_to_date")
        share = up / eligible if eligible and up is not None else None
        by_month[(day.year, day.month, pathway, action)] = (day, share)  # the month's latest run wins
    trends = [TrendPoint(as_of=day, pathway=p, action=a, share=share)
              for (_, _, p, a), (day, share) in sorted(by_month.items())]
    ranked = sorted((i for i in indicators if i.share_of_goal is not None), key=lambda i: i.share_of_goal or 0.0)
    priorities = [
        Priority(rank=n, pathway=i.pathway, action=i.action, label=i.label, share_of_goal=i.share_of_goal or 0.0,
                 text=f"{i.label} : {i.share:.0%} à jour pour un objectif de {i.goal:.0%} "
                      f"({(i.share_of_goal or 0):.0%} de l'objectif)")
        for n, i in enumerate(ranked, start=1)
    ]
    return ReportModel(
        feedback=_feedback(rows, defs),
        territory=territory, as_of=as_of, generated_at=datetime.now(UTC).replace(tzinfo=None),
        definitions_version=defs.version, pyramids=pyramids, indicators=indicators, priorities=priorities,
        trends=trends,
        notes=[f"Populations, strates et actions calculées depuis le lac (gold) au {as_of.isoformat()}, "
               f"définitions {defs.version}.",
               "Tendance : une valeur par fin de mois des 12 derniers mois (`pdp run --trend-months`), les "
               "règles appliquées à chaque date aux faits datés de ce jour ou avant, tels que le lac les connaît."],
    )


def _feedback(rows: list[dict[str, Any]], defs: Definitions) -> list[FeedbackScore]:
    """The report's patient-feedback table from the published survey rows (same order as the definitions)."""
    from pdp.algorithms.report_model import FeedbackScore
    from pdp.semantic import load_questionnaires

    cells = {(r["topic"], r["status"], r["category"], r["measure"]): r["value"] for r in rows
             if r["level"] == "territory" and r["measure"] in ("survey_respondents", "survey_mean_score")}
    questionnaires = load_questionnaires()
    out: list[FeedbackScore] = []
    for ind in defs.survey_indicators.values():
        for item in ind.questionnaires:
            code = questionnaires[item.questionnaire].score_code.removesuffix("/score")
            for pyramid in ind.pyramids:
                strata = [(s.stratum, s.label) for s in defs.pyramids[pyramid].strata]
                for stratum, label in [*strata, (TOTAL, "Ensemble")]:
                    key = (pyramid, code, stratum)
                    if (*key, "survey_respondents") not in cells:
                        continue  # nobody answered this questionnaire in this pyramid: nothing published
                    mean = cells.get((*key, "survey_mean_score"))
                    out.append(FeedbackScore(
                        questionnaire=code, label=item.label, pyramid=defs.pyramids[pyramid].label, stratum=stratum,
                        stratum_label=label, respondents=cells[(*key, "survey_respondents")],
                        mean_score=None if mean is None else float(mean)))
    return out
