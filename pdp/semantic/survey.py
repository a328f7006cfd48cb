"""Patient-reported questionnaires (PREM / PROM): definitions and scoring, one YAML file each.

Why declarative and here: the same definition scores a FHIR ``QuestionnaireResponse`` at the
edge (:mod:`pdp.ingest.parsers.fhir_questionnaire`), validates it at the API's door
(``POST /dmp/questionnaire-responses`` runs that parser) and names the codes the indicators
read in silver (``<name>@<version>/<linkId>`` and ``<name>@<version>/score``, code system
``PDP-SURVEY``). A scoring change is a new ``version``: silver codes carry it, so a mean is
never taken across two scorings.

A file (``questionnaires/<name>.yml``, unknown keys are errors, a bad file stops the caller)::

    name: prem_coordination           # = the file name
    version: 1
    kind: PREM                        # PREM (experience) or PROM (outcome)
    url: https://pdp.invalid/fhir/Questionnaire/prem_coordination   # QuestionnaireResponse.questionnaire
    min_answered: 4                   # fewer answered scored items: no scale score
    items:
      - {linkId: next_step, text: ..., type: choice, options: {"1": 0, "5": 100}}
      - {linkId: health_today, text: ..., type: integer, min: 0, max: 100, in_score: false}
      - {linkId: comment, text: ..., type: string}     # free text: read, never kept (not de-identified)

Every item score is on 0-100 (100 = best experience or health); the scale score is the mean of
the answered items with ``in_score``.

>>> q = load_questionnaires()["prem_coordination"]
>>> q.code("next_step"), q.score_code
('prem_coordination@1/next_step', 'prem_coordination@1/score')
>>> scored = q.score([{"linkId": l, "answer": [{"valueCoding": {"code": "4"}}]}
...                   for l in ("shared_information", "appointments", "listened_to", "next_step")])
>>> scored.score, len(scored.items)
(75.0, 4)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = [
    "SURVEY_CODE_SYSTEM",
    "AnswerError",
    "Questionnaire",
    "QuestionnaireItem",
    "ScoredResponse",
    "SurveyDefinitionError",
    "load_questionnaires",
    "questionnaire_for",
    "questionnaires_version",
]

SURVEY_CODE_SYSTEM = "PDP-SURVEY"
"""The code system of questionnaire answers and scale scores in bronze and silver."""

_NAME = r"^[a-z][a-z0-9_]*$"


class SurveyDefinitionError(ValueError):
    """A questionnaire file that cannot be used (the message names the file and the field)."""


class AnswerError(ValueError):
    """An answer the questionnaire does not allow; the message names the item, never the value."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class QuestionnaireItem(_Strict):
    """One question: its answer type and how an answer becomes an item score on 0-100."""

    link_id: str = Field(alias="linkId", pattern=_NAME)
    text: str = Field(min_length=1)
    type: Literal["choice", "integer", "boolean", "string"]
    options: dict[str, float] | None = None  # choice: answer code -> item score; boolean: "true"/"false"
    min: int | None = None
    max: int | None = None
    in_score: bool | None = None  # default: every typed item but free text

    @model_validator(mode="after")
    def _coherent(self) -> QuestionnaireItem:
        if self.type in ("choice", "boolean"):
            if not self.options:
                raise ValueError(f"{self.link_id}: a {self.type} item needs options (answer -> score)")
            if self.type == "boolean" and set(self.options) != {"true", "false"}:
                raise ValueError(f"{self.link_id}: boolean options are exactly 'true' and 'false'")
            if any(not 0 <= v <= 100 for v in self.options.values()):
                raise ValueError(f"{self.link_id}: option scores are on 0-100")
        elif self.options is not None:
            raise ValueError(f"{self.link_id}: options only apply to choice and boolean items")
        if self.type == "integer":
            if self.min is None or self.max is None or self.min >= self.max:
                raise ValueError(f"{self.link_id}: an integer item needs min < max")
        elif self.min is not None or self.max is not None:
            raise ValueError(f"{self.link_id}: min and max only apply to integer items")
        if self.type == "string" and self.in_score:
            raise ValueError(f"{self.link_id}: free text cannot be scored")
        return self

    @property
    def scored(self) -> bool:
        """Whether the item counts in the scale score."""
        return self.type != "string" and self.in_score is not False

    def item_score(self, answer: dict[str, Any]) -> tuple[float, str] | None:
        """(score on 0-100, the answer as sent) of one FHIR answer; None for free text (never kept)."""
        if self.type == "string":
            return None
        if self.type == "choice":
            coding = answer.get("valueCoding")
            code = coding.get("code") if isinstance(coding, dict) else None
            if not isinstance(code, str):
                raise AnswerError(f"item {self.link_id}: valueCoding.code expected")
            if code not in (self.options or {}):
                raise AnswerError(f"item {self.link_id}: answer code not among the options")
            return float((self.options or {})[code]), code
        if self.type == "boolean":
            value = answer.get("valueBoolean")
            if not isinstance(value, bool):
                raise AnswerError(f"item {self.link_id}: valueBoolean expected")
            text = "true" if value else "false"
            return float((self.options or {})[text]), text
        value = answer.get("valueInteger")
        if not isinstance(value, int) or isinstance(value, bool):
            raise AnswerError(f"item {self.link_id}: valueInteger expected")
        assert self.min is not None and self.max is not None
        if not self.min <= value <= self.max:
            raise AnswerError(f"item {self.link_id}: valueInteger outside [{self.min}, {self.max}]")
        return round(100.0 * (value - self.min) / (self.max - self.min), 4), str(value)


@dataclass(frozen=True, slots=True)
class ScoredResponse:
    """A response's kept answers as (linkId, item score, answer as sent), and its scale score (None: too few)."""

    items: tuple[tuple[str, float, str], ...]
    score: float | None


class Questionnaire(_Strict):
    """One PREM or PROM questionnaire: its items and its scale score."""

    name: str = Field(pattern=_NAME)
    version: int = Field(ge=1)
    kind: Literal["PREM", "PROM"]
    title: str = Field(min_length=1)
    description: str = Field(min_length=1)
    url: str = Field(pattern=r"^https?://\S+$")
    min_answered: int = Field(ge=1)
    items: list[QuestionnaireItem] = Field(min_length=1)

    @model_validator(mode="after")
    def _coherent(self) -> Questionnaire:
        ids = [i.link_id for i in self.items]
        if len(set(ids)) != len(ids):
            raise ValueError("items: duplicate linkId")
        if "score" in ids:
            raise ValueError("items: 'score' is reserved for the scale score")
        scored = sum(i.scored for i in self.items)
        if self.min_answered > scored:
            raise ValueError(f"min_answered: {self.min_answered} > the {scored} scored items")
        return self

    @property
    def canonical(self) -> str:
        """The versioned canonical a response may name: ``url|version``."""
        return f"{self.url}|{self.version}"

    def code(self, link_id: str) -> str:
        """The PDP-SURVEY code of an item's answers in bronze and silver."""
        return f"{self.name}@{self.version}/{link_id}"

    @property
    def score_code(self) -> str:
        """The PDP-SURVEY code of the scale score."""
        return self.code("score")

    def item(self, link_id: str) -> QuestionnaireItem | None:
        return next((i for i in self.items if i.link_id == link_id), None)

    def score(self, response_items: list[Any]) -> ScoredResponse:
        """Score a response's ``item`` list (groups flattened); AnswerError on an answer it does not allow."""
        kept: list[tuple[str, float, str]] = []
        seen: set[str] = set()
        total, answered = 0.0, 0
        for position, node in enumerate(_flatten(response_items), start=1):
            link_id = node.get("linkId")
            item = self.item(link_id) if isinstance(link_id, str) else None
            if item is None:  # named by its place: a linkId the sender chose could name a person
                raise AnswerError(f"item #{position}: not an item of {self.name}@{self.version}")
            if item.link_id in seen:
                raise AnswerError(f"item {item.link_id}: answered twice")
            seen.add(item.link_id)
            answers = node.get("answer") or []
            if not isinstance(answers, list) or len(answers) > 1:
                raise AnswerError(f"item {item.link_id}: one answer expected")
            if not answers:
                continue
            if not isinstance(answers[0], dict):
                raise AnswerError(f"item {item.link_id}: answer is not an object")
            result = item.item_score(answers[0])
            if result is None:
                continue
            kept.append((item.link_id, *result))
            if item.scored:
                total += result[0]
                answered += 1
        score = round(total / answered, 4) if answered and answered >= self.min_answered else None
        return ScoredResponse(tuple(kept), score)


def _flatten(items: list[Any]) -> Iterator[dict[str, Any]]:
    """Answered items depth-first; a group (an item with sub-items and no answer) is walked through."""
    for node in items or []:
        if not isinstance(node, dict):
            raise AnswerError("item: not an object")
        children = node.get("item")
        if children and not node.get("answer"):
            yield from _flatten(children)
        else:
            yield node


def _default_root() -> Path:
    return Path(str(resources.files("pdp.semantic").joinpath("questionnaires")))


def _read(path: Path) -> Questionnaire:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise SurveyDefinitionError(f"{path}: not readable YAML ({type(exc).__name__})") from None
    try:
        q = Questionnaire.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise SurveyDefinitionError(f"{path}: {where}: {str(err['msg']).removeprefix('Value error, ')}") from None
    if q.name != path.stem:
        raise SurveyDefinitionError(f"{path}: name: {q.name!r} differs from the file name {path.stem!r}")
    return q


@lru_cache(maxsize=4)
def _load(root: str) -> dict[str, Questionnaire]:
    path = Path(root)
    if not path.is_dir():
        raise SurveyDefinitionError(f"{path}: the questionnaires directory does not exist")
    out = {q.name: q for q in (_read(p) for p in sorted(path.glob("*.yml")))}
    urls = [q.url for q in out.values()]
    if len(set(urls)) != len(urls):
        raise SurveyDefinitionError(f"{path}: two questionnaires share a url")
    return out


def load_questionnaires(root: Path | None = None) -> dict[str, Questionnaire]:
    """Every questionnaire under `root` (default: the package's own), by name; validated once per root."""
    return dict(_load(str(root or _default_root())))


def questionnaire_for(canonical: str, root: Path | None = None) -> Questionnaire | None:
    """The questionnaire a response names (``url`` or ``url|version``; a version not in force: None)."""
    url, _, version = canonical.partition("|")
    for q in _load(str(root or _default_root())).values():
        if q.url == url and (not version or version == str(q.version)):
            return q
    return None


def questionnaires_version(root: Path | None = None) -> str:
    """``name@version`` of every questionnaire (goes into commit metadata with the source's version)."""
    return ",".join(f"{q.name}@{q.version}" for q in _load(str(root or _default_root())).values())
