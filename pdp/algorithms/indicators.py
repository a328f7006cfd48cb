"""Territory indicators from gold, under disclosure control, and the territory's HTML report.

Why aggregates are computed from gold (not from silver): they must count exactly the persons,
strata and statuses the worklists publish. Why disclosure control here: this is where person
rows become published numbers; every count goes through `protect` (1 to 10 suppressed, plus
complements so that no suppressed cell can be recomputed from its margins) before it is
written to gold.indicator or drawn in the report. Tables are protected one by one: the
commune × stratum table (its margins are the territory's pyramid) and, per pathway, the action
× status table (its margins are the eligible counts). The best-GP reference is a share of a
practice with at least `min_eligible_for_reference` eligible patients; its counts are not published.

>>> publish_indicators(spark, as_of=date(2026, 6, 30), territory="Douaisis")   # doctest: +SKIP
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from pdp.algorithms.disclosure import protect
from pdp.algorithms.model import Definitions, load_definitions
from pdp.lake import LakeTable, RunInfo

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from pdp.algorithms.report_model import ReportModel

TOTAL = "Total"
JOB = "gold.indicators"


@dataclass
class IndicatorReport:
    rows: int
    written: bool
    report: Path | None = None
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


def compute_indicators(
    spark: SparkSession, *, as_of: date, territory: str, defs: Definitions, lake_root: str | None = None
) -> list[dict[str, Any]]:
    """Every published aggregate at `as_of`, disclosure-controlled, as gold.indicator rows (without as_of)."""
    day = _day(as_of)
    strata = LakeTable(spark, "gold.stratum", lake_root=lake_root).read().where(day)
    counts = (strata.selectExpr("coalesce(location_id, 'unknown') AS unit", "pyramid", "stratum")
              .groupBy("unit", "pyramid", "stratum").count().toPandas())
    rows: list[dict[str, Any]] = []
    for name, pyramid in defs.pyramids.items():
        part = counts[counts["pyramid"] == name]
        wide = part.pivot(index="unit", columns="stratum", values="count").reindex(
            columns=[s.stratum for s in pyramid.strata]).fillna(0).astype("int64")
        if wide.empty:
            wide = pd.DataFrame([[0] * len(pyramid.strata)], index=["unknown"], columns=wide.columns)
        wide.index.name, wide.columns.name = "unit", "stratum"
        long = protect(wide, total_label=TOTAL).to_long(row="unit", column="stratum", value="value")
        for r in _long(long, level="commune", unit_col="unit", topic=name, measure="stratum_count",
                       category_col="stratum", status="all", territory=territory):
            if r["unit"] == TOTAL:  # the margins are the territory's own pyramid
                r["level"], r["unit"] = "territory", territory
            rows.append(r)
    actions = (LakeTable(spark, "gold.care_action", lake_root=lake_root).read().where(day)
               .selectExpr("pathway", "action", "CASE WHEN status = 'overdue' THEN 'overdue' ELSE 'up_to_date' END "
                           "AS status").groupBy("pathway", "action", "status").count().toPandas())
    for name, pathway in defs.pathways.items():
        part = actions[actions["pathway"] == name]
        wide = part.pivot(index="action", columns="status", values="count").reindex(
            index=[a.action for a in pathway.actions], columns=["up_to_date", "overdue"]).fillna(0).astype("int64")
        wide.index.name, wide.columns.name = "action", "status"
        long = protect(wide, total_label=TOTAL).to_long(row="action", column="status", value="value")
        rows += _long(long, level="territory", unit_col="action", topic=name, measure="action_status",
                      category_col="action", status=None, territory=territory)
    return rows


def _best_gp(
    spark: SparkSession, as_of: date, defs: Definitions, lake_root: str | None
) -> dict[tuple[str, str], float]:
    """(pathway, action) -> the best share up to date among GP practices with enough eligible patients."""
    out: dict[tuple[str, str], float] = {}
    frame = (LakeTable(spark, "gold.care_action", lake_root=lake_root).read().where(_day(as_of))
             .where("gp_rpps IS NOT NULL")
             .selectExpr("pathway", "action", "gp_rpps", "CASE WHEN status = 'overdue' THEN 0 ELSE 1 END AS ok")
             .groupBy("pathway", "action", "gp_rpps").agg({"ok": "avg", "*": "count"}).collect())
    minimum = {ind.pathway: ind.min_eligible_for_reference for ind in defs.indicators.values()}
    for r in frame:
        if r["count(1)"] >= minimum.get(r["pathway"], 11):
            key = (r["pathway"], r["action"])
            out[key] = max(out.get(key, 0.0), float(r["avg(ok)"]))
    return out


def publish_indicators(
    spark: SparkSession,
    *,
    as_of: date,
    territory: str,
    definitions: Definitions | None = None,
    lake_root: str | None = None,
    report_dir: Path | None = None,
) -> IndicatorReport:
    """Write gold.indicator at `as_of` (only when it changed) and the territory's HTML report."""
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
    best = _best_gp(spark, as_of, defs, lake_root)
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
        territory=territory, as_of=as_of, generated_at=datetime.now(UTC).replace(tzinfo=None),
        definitions_version=defs.version, pyramids=pyramids, indicators=indicators, priorities=priorities,
        trends=trends,
        notes=[f"Populations, strates et actions calculées depuis le lac (gold) au {as_of.isoformat()}, "
               f"définitions {defs.version}.",
               "Tendance : une valeur par mois pour chaque date de calcul `pdp run --as-of` des 12 derniers mois."],
    )
