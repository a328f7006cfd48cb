"""PREM / PROM answers as the DMP ("Mon espace santé") would send them: FHIR R4
QuestionnaireResponse NDJSON, one response a line, in ``questionnaires/dmp.ndjson``.

Why this shape: the citizen answers in the DMP, which knows them by their INS (qualified
identity) and sends the response with its subject as a contained FR Core Patient. Only part
of the people followed for a chronic condition answer (``RESPONSE_SHARE``), a few others too;
each respondent answers the coordination PREM and the quality-of-life PROM, once, within the
year before the reference date. Answers depend on the true stratum (sicker people report
lower quality of life and a little less coordination) so per-stratum means differ as they
would. Clean data: every response is ``completed`` (a few ``amended``), every answer allowed.

Ground truth: one record link per response (``record_links.csv``) and
``ground_truth/questionnaire_scores.csv`` (the response id, the person, the questionnaire and
its scale score computed by the same definitions the edge uses).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from pdp.semantic.survey import Questionnaire, load_questionnaires
from pdp.synth.formats.fhir_gp import FR_IDENTIFIER_TYPES, NIR_SYSTEM, home_address, human_names, resource_uuid
from pdp.synth.model import Person, SourceIdentity
from pdp.synth.output import FileSpec, Rendered, record_link
from pdp.synth.population import stable_seed
from pdp.synth.world import World

__all__ = ["QUESTIONNAIRES_FILE", "RESPONSE_SHARE", "SCORES_FILE", "SOURCE", "build_response", "render_questionnaires"]

SOURCE = "questionnaires"
QUESTIONNAIRES_FILE = FileSpec(path="questionnaires/dmp.ndjson")
SCORES_FILE = FileSpec(
    path="ground_truth/questionnaire_scores.csv", header="record_id,person_id,questionnaire,authored,score\n"
)
RESPONSE_SHARE = {"chronic": 0.3, "other": 0.02}
"""Share of people who answer: followed for T2D or heart failure, everybody else (adults)."""

_to_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _severity(person: Person) -> int:
    """0 (no chronic condition) to 4 (the highest stratum of T2D or HF)."""
    t = person.truth
    return max(t.t2d_stratum or (1 if t.t2d else 0), t.hf_stage or 0 if t.hf else 0)


def _choice(q: Questionnaire, link_id: str, level: float, rng: random.Random) -> str:
    """An option code around `level` (0-100, the person's expected item score)."""
    item = q.item(link_id)
    assert item is not None and item.options
    target = min(100.0, max(0.0, rng.gauss(level, 22.0)))
    return min(item.options, key=lambda code: (abs(item.options[code] - target), code))  # type: ignore[index]


def _answers(q: Questionnaire, severity: int, rng: random.Random) -> list[dict[str, Any]]:
    level = (82.0 - 12.0 * severity) if q.kind == "PROM" else (68.0 - 4.0 * severity)
    out: list[dict[str, Any]] = []
    for item in q.items:
        if item.type == "string":
            continue  # free text: the DMP sends none in the synthetic world
        if item.type == "choice":
            answer: dict[str, Any] = {"valueCoding": {"code": _choice(q, item.link_id, level, rng)}}
        elif item.type == "integer":
            assert item.min is not None and item.max is not None
            value = round(min(item.max, max(item.min, rng.gauss(level - 5.0, 15.0))))
            answer = {"valueInteger": value}
        else:
            answer = {"valueBoolean": rng.random() < level / 100.0}
        out.append({"linkId": item.link_id, "text": item.text, "answer": [answer]})
    return out


def build_response(person: Person, identity: SourceIdentity, q: Questionnaire, world: World,
                   rng: random.Random) -> dict[str, Any]:
    """One completed QuestionnaireResponse of `person` to `q`, its subject a contained FR Core Patient."""
    authored = world.reference_date - timedelta(days=rng.randrange(1, 330))
    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "id": "patient",
        "name": human_names(identity),
        "gender": "male" if identity.sex == "M" else "female",
        "birthDate": identity.birth_date.isoformat(),
        "address": [home_address(person)],
    }
    if identity.nir:
        patient["identifier"] = [{"use": "official", "type": {"coding": [{"system": FR_IDENTIFIER_TYPES,
                                                                           "code": "INS-NIR"}]},
                                  "system": NIR_SYSTEM, "value": identity.nir}]
    return {
        "resourceType": "QuestionnaireResponse",
        "id": resource_uuid(f"{world.seed}|QuestionnaireResponse|{q.name}|{person.person_id}"),
        "contained": [patient],
        "questionnaire": q.canonical,
        "status": "amended" if rng.random() < 0.03 else "completed",
        "subject": {"reference": "#patient", "type": "Patient"},
        "authored": f"{authored.isoformat()}T10:00:00+01:00",
        "item": _answers(q, _severity(person), rng),
    }


def render_questionnaires(
    persons: list[Person], world: World, identity_of: Callable[[Person, str], SourceIdentity]
) -> list[Rendered]:
    """The responses of the chunk's respondents, then their record links and true scores."""
    questionnaires = list(load_questionnaires().values())
    lines: list[str] = []
    truth: list[Rendered] = []
    for person in persons:
        t = person.truth
        if t.death_date is not None or person.identity.birth_date.year > world.reference_date.year - 18:
            continue
        rng = random.Random(stable_seed(world.seed, world.territory, SOURCE, person.person_id))
        if rng.random() >= RESPONSE_SHARE["chronic" if (t.t2d or t.hf) else "other"]:
            continue
        identity = identity_of(person, SOURCE)
        for q in questionnaires:
            response = build_response(person, identity, q, world, rng)
            lines.append(_to_json(response))
            truth.append(record_link(SOURCE, QUESTIONNAIRES_FILE.path, response["id"], person.person_id))
            score = q.score(response["item"]).score
            truth.append(Rendered(SCORES_FILE, f"{response['id']},{person.person_id},{q.name},"
                                               f"{response['authored'][:10]},{'' if score is None else score}\n"))
    if not lines:
        return truth
    return [Rendered(QUESTIONNAIRES_FILE, "\n".join(lines) + "\n", len(lines)), *truth]
