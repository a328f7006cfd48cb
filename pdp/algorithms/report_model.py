"""The territory report's input: what `pdp run` hands to the renderer, JSON-serialisable.

Why a model of its own: the gold tables are computed by Spark, the report is drawn by plain Python
(`pdp.algorithms.report.render_report`). A small, strict, JSON-round-trippable contract between the two
lets the renderer be tested without Spark and lets a report be re-rendered from its saved JSON.

Disclosure control happens upstream: a count of 1 to 10 persons is suppressed (``None``). The model
refuses such counts outright, so a renderer bug can never print one.

Example (runnable)::

    >>> from datetime import date, datetime
    >>> m = ReportModel(
    ...     territory="Pays de Test", as_of=date(2025, 6, 30), generated_at=datetime(2025, 7, 1, 8, 0),
    ...     definitions_version="v1",
    ...     pyramids=[PyramidCounts(pyramid="hf", label="Insuffisance cardiaque", strata=[
    ...         StratumCount(stratum="1", label="Strate 1", count=1200, reference_share=0.6),
    ...         StratumCount(stratum="4", label="Strate 4", count=None, reference_share=0.05)])],
    ...     indicators=[], priorities=[], trends=[], notes=[])
    >>> ReportModel.model_validate_json(m.model_dump_json()) == m
    True
    >>> StratumCount(stratum="4", label="Strate 4", count=7, reference_share=None)
    Traceback (most recent call last):
    ...
    pydantic_core._pydantic_core.ValidationError: 1 validation error for StratumCount
    ...
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

# Counts from 1 to SUPPRESSION_THRESHOLD - 1 are suppressed upstream (the cell is None); 0 may be shown.
SUPPRESSION_THRESHOLD = 11

PyramidId = Literal["t2d", "hf"]
StratumId = Literal["at_risk", "1", "2", "3", "4"]

# Bottom to top: the order in which a pyramid is drawn (at-risk at the base, stratum 4 at the top).
STRATUM_ORDER: tuple[str, ...] = ("at_risk", "1", "2", "3", "4")
PYRAMID_STRATA: dict[str, tuple[str, ...]] = {"t2d": STRATUM_ORDER, "hf": ("1", "2", "3", "4")}


def _disclosable(count: int | None) -> int | None:
    """Refuse a count that disclosure control should have suppressed (1..10): it must arrive as None."""
    if count is not None and 0 < count < SUPPRESSION_THRESHOLD:
        raise ValueError(f"count {count} must be suppressed (None): counts 1..{SUPPRESSION_THRESHOLD - 1} are masked")
    return count


DisclosedCount = Annotated[int | None, Field(ge=0), AfterValidator(_disclosable)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


class _Strict(BaseModel):
    """Base: unknown fields are errors (a typo upstream must not silently drop a figure)."""

    model_config = ConfigDict(extra="forbid")


class StratumCount(_Strict):
    """Persons of a territory in one stratum of a pyramid; ``count=None`` means suppressed (1..10)."""

    stratum: StratumId
    label: str
    count: DisclosedCount
    reference_share: Fraction | None = None  # national/seed share of the pyramid in this stratum


class PyramidCounts(_Strict):
    """One pyramid (T2D: at_risk, 1..4; HF: 1..4), strata in any order, each at most once."""

    pyramid: PyramidId
    label: str
    strata: list[StratumCount]

    @model_validator(mode="after")
    def _strata_belong(self) -> PyramidCounts:
        ids = [s.stratum for s in self.strata]
        if len(set(ids)) != len(ids):
            raise ValueError(f"pyramid {self.pyramid}: duplicate strata {ids}")
        unknown = set(ids) - set(PYRAMID_STRATA[self.pyramid])
        if unknown:
            raise ValueError(f"pyramid {self.pyramid}: strata {sorted(unknown)} do not belong to it")
        labels = [s.label for s in self.strata]
        if len(set(labels)) != len(labels):  # the chart's axis is keyed by label
            raise ValueError(f"pyramid {self.pyramid}: duplicate stratum labels {labels}")
        return self

    def ordered(self) -> list[StratumCount]:
        """Strata bottom to top (at-risk first, stratum 4 last)."""
        return sorted(self.strata, key=lambda s: STRATUM_ORDER.index(s.stratum))


class Indicator(_Strict):
    """Share of eligible persons up to date for one action of a pathway, against a reference and a goal."""

    pathway: str
    action: str
    label: str
    eligible: DisclosedCount
    up_to_date: DisclosedCount
    share: Fraction | None  # None when a count it derives from is suppressed
    reference: Fraction | None
    reference_label: str  # e.g. "national 2021" or "meilleure pratique MG"
    goal: Fraction

    @property
    def share_of_goal(self) -> float | None:
        """share / goal (1.0 = goal reached), None if unknown."""
        return None if self.share is None or self.goal == 0 else self.share / self.goal


class Priority(_Strict):
    """One ranked recommendation, e.g. smoking cessation at 37 % of its goal before foot exams at 90 %."""

    rank: int = Field(ge=1)
    pathway: str
    action: str
    label: str
    share_of_goal: float = Field(ge=0.0)
    text: str


class TrendPoint(_Strict):
    """Monthly share up to date for one action (the report shows the last 12 months)."""

    as_of: date
    pathway: str
    action: str
    share: Fraction | None


class FeedbackScore(_Strict):
    """Patient feedback (PREM / PROM) of one stratum: respondents and their mean scale score on 0-100.

    ``respondents=None``: suppressed (1..10 or a complement), and then the mean is unknown too.
    """

    questionnaire: str  # name@version
    label: str
    pyramid: str
    stratum: str  # a stratum of the pyramid, or "Total"
    stratum_label: str
    respondents: DisclosedCount
    mean_score: Annotated[float, Field(ge=0.0, le=100.0)] | None

    @model_validator(mode="after")
    def _mean_needs_count(self) -> FeedbackScore:
        if self.mean_score is not None and not self.respondents:
            raise ValueError("a mean score is only shown beside a published, non-zero count")
        return self


class ReportModel(_Strict):
    """Everything one territory's report shows; `render_report` turns it into one offline HTML file."""

    territory: str
    as_of: date
    generated_at: datetime
    definitions_version: str
    pyramids: list[PyramidCounts]
    indicators: list[Indicator]
    priorities: list[Priority]
    trends: list[TrendPoint]
    notes: list[str]
    feedback: list[FeedbackScore] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_keys(self) -> ReportModel:
        pyramids = [p.pyramid for p in self.pyramids]
        if len(set(pyramids)) != len(pyramids):  # one chart (and one DOM id) per pyramid
            raise ValueError(f"duplicate pyramids {pyramids}")
        actions = [(i.pathway, i.action) for i in self.indicators]
        if len(set(actions)) != len(actions):
            raise ValueError("two indicators for the same pathway and action")
        months = [(t.pathway, t.action, t.as_of.year, t.as_of.month) for t in self.trends]
        if len(set(months)) != len(months):
            raise ValueError("two trend points for the same action and month")
        return self
