"""The definitions as typed, validated objects: criteria, populations, pyramids, pathways, alerts.

Why pydantic with `extra="forbid"` and a cross-check pass: a misspelt key or an unknown
criterion in a population file would silently change who is counted. `load_definitions()`
stops at the first fault with one line naming the file and the field.

>>> defs = load_definitions()
>>> defs.populations["t2d"].version
1
>>> [s.stratum for s in defs.pyramids["t2d"].strata]
['4', '3', '2', '1', 'at_risk']
"""

from __future__ import annotations

import hashlib
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pdp.algorithms.expr import Expr, ExprError, parse_expr
from pdp.semantic import concept_sets, load_questionnaires

Domain = Literal["condition", "procedure", "drug", "measurement", "observation", "text"]
Op = Literal[">", ">=", "<", "<=", "="]
Professional = Literal["gp", "nurse", "pharmacist", "lab", "ophthalmologist", "cardiologist", "podiatrist"]
_NAME = r"^[a-z][a-z0-9_]*$"


class DefinitionError(ValueError):
    """A definition file that cannot be used; the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ValueTest(_Strict):
    op: Op
    threshold: float


class Change(_Strict):
    """Two facts of the person at most `within_days` apart, the later one within `recent_days`."""

    direction: Literal["rise", "fall"]
    within_days: int = Field(ge=1)
    recent_days: int = Field(ge=1)
    absolute: float | None = Field(None, gt=0, description="rise/fall by more than this many units")
    relative: float | None = Field(None, gt=0, lt=1, description="rise/fall by more than this share")

    @model_validator(mode="after")
    def _one_amount(self) -> Change:
        if (self.absolute is None) == (self.relative is None):
            raise ValueError("give exactly one of absolute or relative")
        return self


class PersonTest(_Strict):
    sex: Literal["M", "F"] | None = None
    min_age: int | None = Field(None, ge=0)
    max_age: int | None = Field(None, ge=0)


class Criterion(_Strict):
    """A fact about a person, from silver events (through concept sets) or from silver.person."""

    description: str = Field(min_length=1)
    domains: list[Domain] = Field(default_factory=list)
    concepts: list[str] = Field(default_factory=list)
    exclude_concepts: list[str] = Field(default_factory=list)
    sources: list[str] | None = None
    statuses: list[str] | None = None
    value: ValueTest | None = None
    latest: ValueTest | None = None
    change: Change | None = None
    look_back_days: int | None = Field(None, ge=1)
    min_dates: int = Field(1, ge=1)
    min_nights: int | None = Field(None, ge=1, description="facts of a stay lasting at least this many nights")
    person: PersonTest | None = None

    @model_validator(mode="after")
    def _shape(self) -> Criterion:
        if self.person is not None:
            if self.domains or self.concepts or self.value or self.latest or self.change:
                raise ValueError("a person criterion takes no domains, concepts or value tests")
            return self
        if not self.domains or not self.concepts:
            raise ValueError("an event criterion needs domains and concepts")
        if sum(x is not None for x in (self.value, self.latest, self.change)) > 1:
            raise ValueError("value, latest and change are exclusive")
        if (self.latest or self.change) and self.min_dates != 1:
            raise ValueError("min_dates does not combine with latest or change")
        if "look_back_days" not in self.model_fields_set:
            raise ValueError("look_back_days is required (null: the whole history)")
        return self

    @property
    def kind(self) -> Literal["person", "events", "latest", "change"]:
        if self.person is not None:
            return "person"
        return "latest" if self.latest else "change" if self.change else "events"

    @property
    def cite(self) -> int:
        """How many facts (distinct dates, most recent first) an explanation cites."""
        return 2 if self.change else self.min_dates


class CriteriaFile(_Strict):
    version: int = Field(ge=1)
    criteria: dict[str, Criterion]

    @field_validator("criteria")
    @classmethod
    def _names(cls, value: dict[str, Criterion]) -> dict[str, Criterion]:
        import re

        for name in value:
            if not re.match(_NAME, name):
                raise ValueError(f"criterion name {name!r} must be lower-case letters, digits and _")
        return value


class _Versioned(_Strict):
    name: str = Field(pattern=_NAME)
    version: int = Field(ge=1)
    label: str = Field(min_length=1)
    description: str = Field(min_length=1)


def _rule(raw: Any, where: str) -> Expr:
    try:
        return parse_expr(raw, where)
    except ExprError as exc:
        raise ValueError(str(exc)) from None


class Population(_Versioned):
    look_back_days: int = Field(ge=1)
    include: Any
    exclude: Any = None
    evidence_hierarchy: list[str] = Field(min_length=1)

    @cached_property
    def include_rule(self) -> Expr:
        return _rule(self.include, "include")

    @cached_property
    def exclude_rule(self) -> Expr | None:
        return None if self.exclude is None else _rule(self.exclude, "exclude")

    @model_validator(mode="after")
    def _parse(self) -> Population:
        self.include_rule  # noqa: B018 - parse now, fail at load time
        self.exclude_rule  # noqa: B018
        return self

    @property
    def rule_id(self) -> str:
        return f"population.{self.name}@{self.version}"


class Stratum(_Strict):
    stratum: str = Field(pattern=r"^([1-9]|at_risk)$")
    label: str = Field(min_length=1)
    population: str = Field(pattern=_NAME)
    when: Any
    reference_share: float | None = Field(None, ge=0, le=1, description="the stratum's share in the reference")

    @cached_property
    def rule(self) -> Expr:
        return _rule(self.when, f"strata[{self.stratum}].when")


class Pyramid(_Versioned):
    strata: list[Stratum] = Field(min_length=1)
    reference_label: str | None = None

    @model_validator(mode="after")
    def _parse(self) -> Pyramid:
        seen = [s.stratum for s in self.strata]
        if len(set(seen)) != len(seen):
            raise ValueError(f"a stratum is listed twice: {seen}")
        for s in self.strata:
            s.rule  # noqa: B018
        return self

    def rule_id(self, stratum: str) -> str:
        return f"pyramid.{self.name}.{stratum}@{self.version}"


class Interval(_Strict):
    when: Any
    days: int = Field(ge=1)
    because: str = Field(min_length=1)

    @cached_property
    def rule(self) -> Expr:
        return _rule(self.when, "intervals.when")


class Action(_Strict):
    action: str = Field(pattern=_NAME)
    label: str = Field(min_length=1)
    professional: Professional
    done_by: str = Field(pattern=_NAME)
    intervals: list[Interval] = Field(min_length=1)

    @model_validator(mode="after")
    def _parse(self) -> Action:
        for i in self.intervals:
            i.rule  # noqa: B018
        if self.intervals[-1].rule.op != "true":
            raise ValueError(f"action {self.action}: the last interval must be `when: true` (a default)")
        return self


class Pathway(_Versioned):
    pyramid: str = Field(pattern=_NAME)
    strata: list[str] = Field(min_length=1)
    due_soon_days: int = Field(ge=0)
    actions: list[Action] = Field(min_length=1)

    def interval_rule_id(self, action: str, index: int) -> str:
        return f"pathway.{self.name}.{action}.{index + 1}@{self.version}"


class OverdueTest(_Strict):
    strata: list[str] = Field(min_length=1)


class Alert(_Versioned):
    severity: Literal["low", "medium", "high"]
    professional: Professional
    when: Any = None
    overdue: OverdueTest | None = None

    @cached_property
    def rule(self) -> Expr | None:
        return None if self.when is None else _rule(self.when, "when")

    @model_validator(mode="after")
    def _parse(self) -> Alert:
        if (self.when is None) == (self.overdue is None):
            raise ValueError("an alert needs exactly one of `when` or `overdue`")
        self.rule  # noqa: B018
        return self

    @property
    def rule_id(self) -> str:
        return f"alert.{self.name}@{self.version}"


class IndicatorAction(_Strict):
    action: str = Field(pattern=_NAME)
    label: str = Field(min_length=1)
    goal: float = Field(gt=0, le=1)


class IndicatorSet(_Versioned):
    """Shares of a pathway's people up to date per action, against a reference and a goal."""

    pathway: str = Field(pattern=_NAME)
    reference: Literal["best_gp"]
    min_eligible_for_reference: int = Field(ge=11)
    actions: list[IndicatorAction] = Field(min_length=1)


class SurveyQuestionnaire(_Strict):
    questionnaire: str = Field(pattern=_NAME)  # a file of pdp/semantic/questionnaires/
    label: str = Field(min_length=1)


class SurveyIndicator(_Versioned):
    """Patient feedback (PREM / PROM) per stratum: respondents and mean scale score, under disclosure control.

    A file of ``indicators/`` with ``kind: survey``. Each person counts once per questionnaire:
    their latest response authored in the ``window_days`` up to the as-of date, in the stratum gold
    gives them in each pyramid listed.
    """

    kind: Literal["survey"]
    pyramids: list[str] = Field(min_length=1)
    window_days: int = Field(ge=30, le=3 * 366)
    questionnaires: list[SurveyQuestionnaire] = Field(min_length=1)


class OverdueActions(_Strict):
    pathway: str = Field(pattern=_NAME)
    actions: list[str] = Field(min_length=1)


class Registry(_Versioned):
    """A named, versioned set of persons a partner may query by private set intersection.

    Who: the persons of ``pyramid`` in one of ``strata`` for whom ``when`` holds (a rule over the
    criteria, optional) and, if ``overdue`` is given, at least one of its actions of ``pathway``
    is overdue. Built by ``pdp run`` into ``gold.psi_registry``; opposed persons are taken out
    when the serving side builds the intersection set, from the opposition registry of that
    moment (so an opposition counts at once, not at the next run).
    """

    pyramid: str = Field(pattern=_NAME)
    strata: list[str] = Field(min_length=1)
    when: Any = None
    overdue: OverdueActions | None = None

    @cached_property
    def rule(self) -> Expr | None:
        return None if self.when is None else _rule(self.when, "when")

    @model_validator(mode="after")
    def _parse(self) -> Registry:
        self.rule  # noqa: B018
        return self

    @property
    def rule_id(self) -> str:
        return f"registry.{self.name}@{self.version}"


class Definitions(_Strict):
    """Every definition, cross-checked: names resolve, populations form no cycle."""

    criteria_version: int
    criteria: dict[str, Criterion]
    populations: dict[str, Population]
    pyramids: dict[str, Pyramid]
    pathways: dict[str, Pathway]
    alerts: dict[str, Alert]
    indicators: dict[str, IndicatorSet]
    digest: str
    survey_indicators: dict[str, SurveyIndicator] = Field(default_factory=dict)
    registries: dict[str, Registry] = Field(default_factory=dict)

    @property
    def version(self) -> str:
        """One short identity of the whole set of definitions (goes into every gold commit)."""
        return f"defs-{self.digest[:12]}"

    def versions(self) -> dict[str, str]:
        """`kind.name` -> version, for commit metadata and gold rows."""
        out = {"criteria": str(self.criteria_version)}
        for kind, group in (("population", self.populations), ("pyramid", self.pyramids),
                            ("pathway", self.pathways), ("alert", self.alerts), ("indicators", self.indicators),
                            ("survey_indicators", self.survey_indicators), ("registry", self.registries)):
            for name, item in group.items():
                out[f"{kind}.{name}"] = str(item.version)
        return out

    def population_order(self) -> list[list[str]]:
        """Populations in dependency levels (a population reading another comes after it)."""
        deps = {
            n: p.include_rule.populations() | (p.exclude_rule.populations() if p.exclude_rule else set())
            for n, p in self.populations.items()
        }
        levels: list[list[str]] = []
        done: set[str] = set()
        while len(done) < len(deps):
            level = sorted(n for n, d in deps.items() if n not in done and d <= done)
            if not level:
                raise DefinitionError(f"populations depend on each other in a cycle: {sorted(set(deps) - done)}")
            levels.append(level)
            done |= set(level)
        return levels


_KINDS = {
    "populations": Population, "pyramids": Pyramid, "pathways": Pathway, "alerts": Alert, "indicators": IndicatorSet,
    "registries": Registry,
}


def _default_root() -> Path:
    return Path(str(resources.files("pdp.algorithms").joinpath("definitions")))


def _read(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise DefinitionError(f"{path}: not readable YAML ({type(exc).__name__})") from None


def _validate(model: type[BaseModel], data: Any, path: Path) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])  # a typo explains the rest
        field = ".".join(str(p) for p in err["loc"])
        message = str(err["msg"]).removeprefix("Value error, ")
        raise DefinitionError(f"{path}: {field}: {message}" if field else f"{path}: {message}") from None


def load_definitions(root: Path | None = None) -> Definitions:
    """Read and cross-check every definition file under `root` (default: the package's own)."""
    if root is None:
        from pdp.config import get_settings

        root = get_settings().definitions_dir or _default_root()
    root = Path(root)
    if not root.is_dir():
        raise DefinitionError(f"{root}: the definitions directory does not exist")
    digest = hashlib.sha256()
    criteria_path = root / "criteria.yml"
    if not criteria_path.is_file():
        raise DefinitionError(f"{criteria_path}: missing")
    digest.update(criteria_path.read_bytes())
    criteria_file: CriteriaFile = _validate(CriteriaFile, _read(criteria_path), criteria_path)
    groups: dict[str, dict[str, Any]] = {}
    paths: dict[tuple[str, str], Path] = {}
    for kind, model in _KINDS.items():
        groups[kind] = {}
        for path in sorted((root / kind).glob("*.yml")):
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
            data = _read(path)
            group = kind
            if kind == "indicators" and isinstance(data, dict) and data.get("kind") == "survey":
                group = "survey_indicators"  # patient feedback: same folder, its own shape
            item = _validate(model if group == kind else SurveyIndicator, data, path)
            if item.name != path.stem:
                raise DefinitionError(f"{path}: name: {item.name!r} differs from the file name {path.stem!r}")
            groups.setdefault(group, {})[item.name] = item
            paths[(group, item.name)] = path
    defs = Definitions(
        criteria_version=criteria_file.version,
        criteria=criteria_file.criteria,
        digest=digest.hexdigest(),
        **groups,
    )
    _cross_check(defs, paths, criteria_path)
    return defs


def _cross_check(defs: Definitions, paths: dict[tuple[str, str], Path], criteria_path: Path) -> None:
    known_concepts = set(concept_sets())
    for name, c in defs.criteria.items():
        for concept in [*c.concepts, *c.exclude_concepts]:
            if concept not in known_concepts:
                raise DefinitionError(f"{criteria_path}: criteria.{name}.concepts: unknown concept set {concept!r}")

    def check(rule: Expr, path: Path, field: str, *, stratum_ok: bool = False) -> None:
        for crit in rule.criteria():
            if crit not in defs.criteria:
                raise DefinitionError(f"{path}: {field}: unknown criterion {crit!r}")
        for pop in rule.populations():
            if pop not in defs.populations:
                raise DefinitionError(f"{path}: {field}: unknown population {pop!r}")
        if rule.strata() and not stratum_ok:
            raise DefinitionError(f"{path}: {field}: a {{stratum: ...}} rule is only allowed in a pathway")

    for name, pop in defs.populations.items():
        path = paths[("populations", name)]
        check(pop.include_rule, path, "include")
        if pop.exclude_rule is not None:
            check(pop.exclude_rule, path, "exclude")
        for crit in pop.evidence_hierarchy:
            if crit not in defs.criteria:
                raise DefinitionError(f"{path}: evidence_hierarchy: unknown criterion {crit!r}")
    defs.population_order()
    for name, pyr in defs.pyramids.items():
        path = paths[("pyramids", name)]
        for s in pyr.strata:
            if s.population not in defs.populations:
                raise DefinitionError(f"{path}: strata[{s.stratum}].population: unknown population {s.population!r}")
            check(s.rule, path, f"strata[{s.stratum}].when")
    for name, pw in defs.pathways.items():
        path = paths[("pathways", name)]
        if pw.pyramid not in defs.pyramids:
            raise DefinitionError(f"{path}: pyramid: unknown pyramid {pw.pyramid!r}")
        strata = {s.stratum for s in defs.pyramids[pw.pyramid].strata}
        for s in pw.strata:
            if s not in strata:
                raise DefinitionError(f"{path}: strata: {s!r} is not a stratum of pyramid {pw.pyramid!r}")
        for a in pw.actions:
            if a.done_by not in defs.criteria or defs.criteria[a.done_by].kind != "events":
                raise DefinitionError(f"{path}: actions.{a.action}.done_by: {a.done_by!r} is not an event criterion")
            for i, interval in enumerate(a.intervals):
                check(interval.rule, path, f"actions.{a.action}.intervals[{i}].when", stratum_ok=True)
                for s in interval.rule.strata():
                    if s not in strata:
                        raise DefinitionError(f"{path}: actions.{a.action}.intervals[{i}]: unknown stratum {s!r}")
    for name, alert in defs.alerts.items():
        if alert.rule is not None:
            check(alert.rule, paths[("alerts", name)], "when")
    for name, reg in defs.registries.items():
        path = paths[("registries", name)]
        if reg.pyramid not in defs.pyramids:
            raise DefinitionError(f"{path}: pyramid: unknown pyramid {reg.pyramid!r}")
        strata = {s.stratum for s in defs.pyramids[reg.pyramid].strata}
        for s in reg.strata:
            if s not in strata:
                raise DefinitionError(f"{path}: strata: {s!r} is not a stratum of pyramid {reg.pyramid!r}")
        if reg.rule is not None:
            check(reg.rule, path, "when")
        if reg.overdue is not None:
            pw = defs.pathways.get(reg.overdue.pathway)
            if pw is None or pw.pyramid != reg.pyramid:
                raise DefinitionError(f"{path}: overdue.pathway: {reg.overdue.pathway!r} is not a pathway of "
                                      f"pyramid {reg.pyramid!r}")
            known = {a.action for a in pw.actions}
            for a in reg.overdue.actions:
                if a not in known:
                    raise DefinitionError(f"{path}: overdue.actions: {a!r} is not an action of pathway {pw.name!r}")
    questionnaires = load_questionnaires()
    for name, survey in defs.survey_indicators.items():
        path = paths[("survey_indicators", name)]
        for pyramid in survey.pyramids:
            if pyramid not in defs.pyramids:
                raise DefinitionError(f"{path}: pyramids: unknown pyramid {pyramid!r}")
        for q in survey.questionnaires:
            if q.questionnaire not in questionnaires:
                raise DefinitionError(f"{path}: questionnaires.{q.questionnaire}: not in pdp/semantic/questionnaires")
    for name, ind in defs.indicators.items():
        path = paths[("indicators", name)]
        if ind.pathway not in defs.pathways:
            raise DefinitionError(f"{path}: pathway: unknown pathway {ind.pathway!r}")
        known = {a.action for a in defs.pathways[ind.pathway].actions}
        for a in ind.actions:
            if a.action not in known:
                raise DefinitionError(f"{path}: actions.{a.action}: not an action of pathway {ind.pathway!r}")
