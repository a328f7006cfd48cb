"""The generator's in-memory model of a synthetic person: true identity, true clinical state,
and the care events that the raw-source writers turn into files.

Why a model apart from the writers: one truth, many renderings. Each writer (PMSI, HL7,
FHIR, pharmacy, social, reports) renders the same events in its own format and with its
own identity habits, and the ground truth is written from the same objects, so the two can
never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Literal

Sex = Literal["M", "F"]
Channel = Literal["hospital", "lab", "gp", "pharmacy"]
EventKind = Literal["diagnosis", "measurement", "procedure", "drug", "encounter"]


@dataclass(frozen=True, slots=True)
class Identity:
    """True civil identity (INS traits + NIR), with accents as in the civil register."""

    birth_name: str  # nom de naissance, e.g. "LEFÈVRE"
    used_name: str | None  # nom d'usage (married name), None when same as birth name
    first_names: tuple[str, ...]  # liste des prénoms in civil-register order, e.g. ("Jean-Marie", "Paul")
    sex: Sex
    birth_date: date
    birth_place: str  # INSEE code of the birth commune (99xxx = born abroad)
    nir: str  # 13 characters (2A/2B possible) + 2-digit key = 15 characters


@dataclass(frozen=True, slots=True)
class SourceIdentity:
    """The identity as one source writes it: possibly degraded (accents, typos, no NIR)."""

    birth_name: str
    used_name: str | None
    first_names: str  # as the source writes them (one string, separators vary)
    sex: Sex
    birth_date: date
    birth_place: str | None
    nir: str | None
    address: Address | None = None  # the address this source holds when not the current one (a move)
    errors: tuple[str, ...] = ()  # the error kinds drawn (identity_variants.ERROR_KINDS): ground truth only


@dataclass(frozen=True, slots=True)
class Address:
    line: str  # e.g. "12 rue des Tilleuls"
    postcode: str
    commune_code: str  # INSEE code
    commune_name: str


@dataclass(frozen=True, slots=True)
class Professional:
    """A GP (médecin traitant) or another professional; RPPS is an 11-digit identifier."""

    rpps: str
    family_name: str
    first_name: str
    commune_code: str


@dataclass(frozen=True, slots=True)
class Facility:
    """A hospital, lab or pharmacy of the territory; `finess` is a 9-character identifier."""

    finess: str
    name: str
    kind: Literal["hospital", "lab", "pharmacy"]
    commune_code: str
    encoding: str = "utf-8"  # encoding of the files this facility sends ("utf-8", "utf-8-sig", "latin-1")
    newline: str = "\n"  # "\n" or "\r\n"
    si_units: bool = False  # a lab reporting HbA1c, glucose and creatinine in SI units (catalog.yml si_units)


@dataclass(frozen=True, slots=True)
class ClinicalEvent:
    """One dated clinical fact as a care actor records it."""

    event_id: str  # unique, deterministic for a seed
    kind: EventKind
    day: date
    code_system: Literal["CIM-10", "CCAM", "LOINC", "ATC", "SNOMED"]
    code: str
    label: str  # French label
    channel: Channel
    facility: str  # FINESS of the facility, or RPPS of the GP for channel "gp"
    value: float | None = None  # measurement value
    unit: str | None = None  # UCUM unit
    cip13: str | None = None  # drugs: the delivered pack
    stay_id: str | None = None  # hospital events: the stay they belong to


@dataclass(frozen=True, slots=True)
class Stay:
    """A hospital stay (PMSI-like discharge abstract)."""

    stay_id: str
    hospital: str  # FINESS
    admission: date
    discharge: date
    principal_dx: str  # CIM-10 code of the principal diagnosis (DP)
    associated_dx: tuple[str, ...]  # CIM-10 associated diagnoses (DAS)
    acts: tuple[str, ...]  # CCAM codes
    emergency: bool  # admitted through the emergency department
    unit: Literal["MCO", "SSR", "HAD"] = "MCO"


@dataclass(frozen=True, slots=True)
class Report:
    """A free-text document to render (discharge letter or consultation note).

    `facts` are the clinical statements the text must contain, each with its assertion:
    the report writer turns them into French sentences and records their spans.
    """

    doc_id: str
    kind: Literal["discharge_letter", "consultation_note"]
    day: date
    author: Professional
    facility: str  # FINESS (hospital) or RPPS (GP)
    facts: tuple[ReportFact, ...]
    stay_id: str | None = None


@dataclass(frozen=True, slots=True)
class ReportFact:
    concept: str  # key of a concept, e.g. "t2d", "retinopathy", "heart_failure", "insulin", "hba1c"
    assertion: Literal["affirmed", "negated", "hypothesis", "family"]
    value: float | None = None  # e.g. an HbA1c value quoted in the text
    relative: str | None = None  # for family history: "mère", "père", "frère", "soeur"


@dataclass(slots=True)
class ClinicalTruth:
    """What is really true of the person at the reference date (the ground truth)."""

    t2d: bool = False
    t2d_at_risk: bool = False
    t2d_stratum: int | None = None  # 1..4 when t2d
    hf: bool = False
    hf_at_risk: bool = False
    hf_stage: int | None = None  # 1..4 (Intermountain) when hf or hf_at_risk
    insulin: bool = False
    severe_hypoglycaemia_episodes: int = 0
    complications: tuple[str, ...] = ()  # among COMPLICATIONS
    stroke_or_mi: bool = False
    amputation: bool = False
    dialysis: bool = False
    hypertension: bool = False
    obesity: bool = False
    bmi: float | None = None
    risk_factors: tuple[str, ...] = ()  # T2D risk factors besides hypertension: dyslipidaemia, family_diabetes
    diagnosis_date: date | None = None
    hf_diagnosis_date: date | None = None
    death_date: date | None = None
    actions_due: list[ActionDue] = field(default_factory=list)


COMPLICATIONS = ("nephropathy", "retinopathy", "neuropathy", "foot_ulcer", "angiopathy")


@dataclass(frozen=True, slots=True)
class ActionDue:
    """A care action of the person's pathway and its status at the reference date."""

    action: str  # e.g. "hba1c", "ecg", "fundus", "monofilament", "blood_panel"
    interval_days: int
    last_done: date | None
    due_date: date
    status: Literal["up_to_date", "due", "overdue"]


@dataclass(frozen=True, slots=True)
class PopulationView:
    """Populations and strata a set of sources supports at the reference date.

    Why beside the truth: the platform can only find what the sources say. Scoring it against
    the true state alone would blame it for facts no source carries, so the ground truth also
    states what the coded sources (and the coded sources plus free text) support.
    """

    t2d: bool = False
    t2d_at_risk: bool = False
    t2d_stratum: str | None = None  # "at_risk", "1".."4", or None outside both populations
    hf: bool = False
    hf_at_risk: bool = False
    hf_stratum: int | None = None  # 1..4 (Intermountain) for hf and hf_at_risk members


@dataclass(frozen=True, slots=True)
class ObservableTruth:
    """What the emitted sources support about a person (see pdp/synth/observable.py)."""

    observed: bool  # at least one coded record reaches a source file
    coded: PopulationView
    all_sources: PopulationView  # coded records plus affirmed facts of the free-text reports
    coded_actions: tuple[tuple[str, ActionDue], ...] = ()  # (pathway, action) from the coded view


@dataclass(slots=True)
class Person:
    """A synthetic resident: true identity, contact, GP, truth and care history."""

    person_id: int  # ground-truth id; never written into a raw source
    territory: str
    identity: Identity
    address: Address
    phone: str | None
    email: str | None
    gp: Professional | None
    truth: ClinicalTruth
    events: list[ClinicalEvent] = field(default_factory=list)
    stays: list[Stay] = field(default_factory=list)
    reports: list[Report] = field(default_factory=list)
    social_referral: str | None = None  # referring association, when referred
    insured_nir: str | None = None  # NIR on the insurance card (a parent's for minors)
    household: int | None = None  # the spouse's person id when the two share an address (pair_households)
    observable: ObservableTruth | None = None  # filled by the ground-truth writer


def age(birth: date, day: date) -> int:
    """Age in whole years at `day`."""
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))
