"""What the emitted sources support about each person: the coded-observable ground truth.

Why: the true state (`ClinicalTruth`) holds facts that no source carries (a complication
only the specialist knows, an insulin treatment of a patient whose GP has no exporting
software). A platform scored against the truth alone would be blamed for the generator's
silences. So the ground truth also states, per person, what the rules of
`docs/clinical-rules.md` conclude from

* the **coded** channels, exactly as their writers put them in files: hospital abstracts
  (DP, DAS and CCAM acts, all dated at the stay's admission), lab results, GP software
  records (only GP-channel events with a GP RPPS are exported), pharmacy deliveries;
* **all** sources: the coded facts plus the *affirmed* facts of the free-text reports (a
  family history of diabetes counts too), dated on the report's day.

The rules are re-implemented here from the rules document, table-driven (code patterns per
criterion), independently of the platform's definitions (`pdp.algorithms`), which must never
be imported: the two implementations check each other. No random draw happens here, so the
raw sources of a seed do not change.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache
from typing import Any, Literal

from pdp.synth.formats.hl7_lab import measurement_decimals
from pdp.synth.model import ActionDue, ObservableTruth, Person, PopulationView
from pdp.synth.protocol import DoneBy, care_protocol, done_codes, done_sources, schedule
from pdp.synth.world import Commune, World

FactKind = Literal["diagnosis", "procedure", "drug", "measurement"]
Source = Literal["pmsi", "lab", "gp", "pharmacy", "report"]


@dataclass(frozen=True, slots=True)
class Fact:
    """One dated coded fact as the platform can read it from a source file."""

    day: date
    kind: FactKind
    system: str  # "CIM-10", "CCAM", "LOINC", "ATC", "SNOMED"
    code: str
    source: Source
    value: float | None = None  # measurements, rounded as the writers print them
    status: str | None = None  # PMSI diagnoses: "DP" or "DAS"
    nights: int | None = None  # PMSI: nights between admission and discharge


@dataclass(frozen=True, slots=True)
class Rule:
    """One way to satisfy a criterion: matching facts inside a look-back window.

    `codes` and `exclude` are (system, pattern) pairs; a pattern ending with `*` is a prefix
    (dots ignored, so `E11.2*` matches `E11.2` and `E112`), any other pattern an exact code.
    """

    kind: FactKind
    codes: tuple[tuple[str, str], ...]
    lookback: int  # days: facts dated in (D - lookback, D] count
    min_dates: int = 1  # distinct dates needed
    sources: frozenset[str] | None = None  # None: any source
    status: str | None = None  # PMSI diagnosis status required ("DP")
    at_least: float | None = None  # value >= at_least
    at_most: float | None = None  # value <= at_most
    above: float | None = None  # value > above
    exclude: tuple[tuple[str, str], ...] = ()
    latest: bool = False  # the value test applies to the latest value in the window only
    min_nights: int = 0  # PMSI stays of at least this many nights (a day case is not a hospitalisation)


def _cim(*patterns: str) -> tuple[tuple[str, str], ...]:
    return tuple(("CIM-10", p) for p in patterns)


def _dx(*patterns: str, lookback: int = 1826, min_dates: int = 1) -> Rule:
    return Rule("diagnosis", _cim(*patterns), lookback, min_dates)


def _loinc(*codes: str) -> tuple[tuple[str, str], ...]:
    return tuple(("LOINC", c) for c in codes)


HBA1C_LOINC = ("4548-4", "17856-6", "59261-8")
_MI = ("I21*", "I22*", "I25.2*")
_HF = ("I50*", "I11.0*", "I13.0*", "I13.2*")
_PHARMACY = frozenset({"pharmacy"})

# The "Facts (criteria)" table of docs/clinical-rules.md. A criterion holds when one of its
# rules does. `ald8` and `ald5` have no source yet: no rule, never true.
CRITERIA: dict[str, tuple[Rule, ...]] = {
    "t2d_dx": (Rule("diagnosis", (*_cim("E11*"), ("SNOMED", "44054006")), 1826),),
    "diabetes_unspecified_dx": (_dx("E13*", "E14*"),),
    "t1d_dx": (_dx("E10*"),),
    "ald8": (),
    "t2d_drugs": (Rule("drug", (("ATC", "A10*"),), 365, min_dates=3, sources=_PHARMACY, exclude=(("ATC", "A10BK*"),)),),
    "t2d_hba1c": (Rule("measurement", _loinc(*HBA1C_LOINC), 730, min_dates=2, at_least=6.5),),
    "amputation": (
        Rule("procedure", (("CCAM", "NZFA*"), ("CCAM", "NGFA*")), 1826),
        _dx("Z89.4*", "Z89.5*", "Z89.6*"),
    ),
    "dialysis": (
        Rule("procedure", (("CCAM", "JVJF004"), ("CCAM", "JVJF008"), ("CCAM", "JVRP004")), 1826),
        _dx("Z99.2*", "Z49*"),
    ),
    "t2d_nephropathy": (_dx("E11.2*", "N08.3*"),),
    "t2d_retinopathy": (_dx("E11.3*", "H36.0*"),),
    "t2d_neuropathy": (_dx("E11.4*", "G63.2*"),),
    "foot_ulcer": (_dx("L97*", "E11.6*"),),
    "t2d_angiopathy": (_dx("E11.5*", "I70.2*", "I79.2*"),),
    "stroke": (_dx("I63*", "I64*", "I69.3*", "I69.4*"),),
    "myocardial_infarction": (_dx(*_MI),),
    "insulin": (
        Rule("drug", (("ATC", "A10A*"),), 365, sources=_PHARMACY),
        _dx("Z79.4*"),
    ),
    "severe_hypoglycaemia": (_dx("E16.0*", "E16.1*", "E16.2*", "E11.0*", min_dates=2),),
    "hf_dx": (_dx(*_HF),),
    "ald5": (),
    "hf_hospitalisations": (
        Rule("diagnosis", _cim(*_HF), 365, min_dates=2, sources=frozenset({"pmsi"}), status="DP", min_nights=1),
    ),
    "lvef_reduced": (Rule("measurement", _loinc("10230-1", "8806-2"), 1826, at_most=40),),
    "ntprobnp_high": (Rule("measurement", _loinc("33762-6"), 730, min_dates=2, at_least=450),),
    "hypertension": (_dx("I10*", "I11*", "I12*", "I13*", "I15*"),),
    "dyslipidaemia": (_dx("E78*"),),
    "family_history_diabetes": (_dx("Z83.3*"),),
    "obesity_dx": (_dx("E66*"),),
    "overweight": (Rule("measurement", _loinc("39156-5"), 1095, above=25, latest=True),),
    "obese_bmi": (Rule("measurement", _loinc("39156-5"), 1095, at_least=30, latest=True),),
    # "plus myocardial_infarction" is applied in `criteria_at`
    "structural_heart_disease": (_dx("I34*", "I35*", "I42*"),),
}

T2D_COMPLICATIONS = ("t2d_nephropathy", "t2d_retinopathy", "t2d_neuropathy", "foot_ulcer", "t2d_angiopathy")

# How an affirmed report fact reads as a coded fact (the "all sources" view). Complications
# map to their non-E11 codes so that a complication alone does not make a T2D diagnosis;
# a value-carrying concept becomes a measurement with the value the text quotes.
REPORT_FACTS: dict[str, tuple[FactKind, str, str]] = {
    "t2d": ("diagnosis", "CIM-10", "E11"),
    "nephropathy": ("diagnosis", "CIM-10", "N08.3"),
    "retinopathy": ("diagnosis", "CIM-10", "H36.0"),
    "neuropathy": ("diagnosis", "CIM-10", "G63.2"),
    "foot_ulcer": ("diagnosis", "CIM-10", "L97"),
    "angiopathy": ("diagnosis", "CIM-10", "I79.2"),
    "insulin": ("diagnosis", "CIM-10", "Z79.4"),
    "amputation": ("diagnosis", "CIM-10", "Z89.4"),
    "dialysis": ("diagnosis", "CIM-10", "Z99.2"),
    "heart_failure": ("diagnosis", "CIM-10", "I50"),
    "mi": ("diagnosis", "CIM-10", "I25.2"),
    "stroke": ("diagnosis", "CIM-10", "I63"),
    "hypertension": ("diagnosis", "CIM-10", "I10"),
    "obesity": ("diagnosis", "CIM-10", "E66"),
    "severe_hypoglycaemia": ("diagnosis", "CIM-10", "E16.0"),
    "hba1c": ("measurement", "LOINC", "4548-4"),
    "lvef": ("measurement", "LOINC", "10230-1"),
    "ntprobnp": ("measurement", "LOINC", "33762-6"),
    "weight": ("measurement", "LOINC", "29463-7"),
}
FAMILY_DIABETES = ("diagnosis", "CIM-10", "Z83.3")  # a report's family history of diabetes


# --- facts ---------------------------------------------------------------------------------


def _printed(code: str, value: float | None) -> float | None:
    """The value as the lab and GP writers print it (HL7 and FHIR round alike)."""
    if value is None:
        return None
    decimals = measurement_decimals(code)
    return round(value, decimals) if decimals else float(round(value))


def coded_facts(person: Person) -> list[Fact]:
    """The person's facts that reach a coded source file, with the date each file gives them.

    PMSI abstracts carry only admission and discharge dates: their diagnoses and acts are
    dated at admission. GP events without a GP RPPS are not exported (no GP software), and
    only lab-channel measurements become HL7 results: the writers' own filters, repeated.
    """
    out: list[Fact] = []
    for stay in person.stays:
        nights = (stay.discharge - stay.admission).days
        out.append(Fact(stay.admission, "diagnosis", "CIM-10", stay.principal_dx, "pmsi", status="DP", nights=nights))
        out += [Fact(stay.admission, "diagnosis", "CIM-10", c, "pmsi", status="DAS") for c in stay.associated_dx]
        out += [Fact(stay.admission, "procedure", "CCAM", a, "pmsi") for a in stay.acts]
    for e in person.events:
        if e.channel == "lab" and e.kind == "measurement":
            source: Source = "lab"
        elif e.channel == "gp" and e.facility and e.kind != "encounter":
            source = "gp"
        elif e.channel == "pharmacy" and e.kind == "drug":
            source = "pharmacy"
        else:
            continue  # no writer puts it in a file (e.g. "hospital" events: stays carry the codes)
        value = _printed(e.code, e.value) if e.kind == "measurement" else None
        out.append(Fact(e.day, e.kind, e.code_system, e.code, source, value))  # type: ignore[arg-type]
    return out


def report_facts(person: Person) -> list[Fact]:
    """Affirmed report facts (and family histories of diabetes), read as coded facts on the report's day.

    Negated and hypothetical statements are not facts; a family statement only counts as a
    family history of diabetes. A concept without a reading (none today) is ignored.
    """
    out: list[Fact] = []
    for report in person.reports:
        for f in report.facts:
            if f.assertion == "family":
                if f.concept == "t2d":
                    kind, system, code = FAMILY_DIABETES
                    out.append(Fact(report.day, kind, system, code, "report"))  # type: ignore[arg-type]
                continue
            if f.assertion != "affirmed" or f.concept not in REPORT_FACTS:
                continue
            kind, system, code = REPORT_FACTS[f.concept]
            if kind == "measurement" and f.value is None:
                continue
            out.append(Fact(report.day, kind, system, code, "report", f.value))  # type: ignore[arg-type]
    return out


def observed(person: Person) -> bool:
    """At least one coded record of the person reaches a source file (reports do not count)."""
    return bool(
        person.stays
        or person.social_referral
        or person.truth.death_date is not None
        or any(
            (e.channel == "lab" and e.kind == "measurement")
            or (e.channel == "gp" and e.facility)
            or e.channel == "pharmacy"
            for e in person.events
        )
    )


# --- criteria ------------------------------------------------------------------------------


def _norm(code: str) -> str:
    return code.replace(".", "").upper()


def _matches(patterns: tuple[tuple[str, str], ...], system: str, code: str) -> bool:
    code = _norm(code)
    for sys_, pattern in patterns:
        if sys_ != system:
            continue
        if pattern.endswith("*"):
            if code.startswith(_norm(pattern[:-1])):
                return True
        elif code == _norm(pattern):
            return True
    return False


@lru_cache(maxsize=4096)
def _rules_for(kind: str, system: str, code: str, source: str, status: str | None) -> tuple[tuple[str, int], ...]:
    """(criterion, rule index) pairs a fact can satisfy, values and dates aside (cached: codes repeat)."""
    out = []
    for name, rules in CRITERIA.items():
        for i, rule in enumerate(rules):
            if (
                rule.kind == kind
                and (rule.sources is None or source in rule.sources)
                and (rule.status is None or rule.status == status)
                and _matches(rule.codes, system, code)
                and not _matches(rule.exclude, system, code)
            ):
                out.append((name, i))
    return tuple(out)


def _value_ok(rule: Rule, value: float | None) -> bool:
    if rule.at_least is None and rule.at_most is None and rule.above is None:
        return True
    if value is None:
        return False
    return (
        (rule.at_least is None or value >= rule.at_least)
        and (rule.at_most is None or value <= rule.at_most)
        and (rule.above is None or value > rule.above)
    )


def _rule_holds(rule: Rule, facts: list[Fact], day: date) -> bool:
    start = day - timedelta(days=rule.lookback)  # window (start, day]
    window = [f for f in facts if start < f.day <= day and (f.nights or 0) >= rule.min_nights]
    if not window:
        return False
    if rule.latest:
        last = max(f.day for f in window)
        # several values on the latest day (two sources): the highest is taken
        values = [f.value for f in window if f.day == last and f.value is not None]
        return bool(values) and _value_ok(rule, max(values))
    return len({f.day for f in window if _value_ok(rule, f.value)}) >= rule.min_dates


def criteria_at(facts: Iterable[Fact], day: date) -> dict[str, bool]:
    """Every criterion of the rules document, evaluated at `day` over `facts`."""
    hits: dict[tuple[str, int], list[Fact]] = {}
    for f in facts:
        if f.day > day:
            continue
        for key in _rules_for(f.kind, f.system, f.code, f.source, f.status):
            hits.setdefault(key, []).append(f)
    out = dict.fromkeys(CRITERIA, False)  # a criterion without matching facts is false: skip it
    for (name, i), matched in hits.items():
        out[name] = out[name] or _rule_holds(CRITERIA[name][i], matched, day)
    out["structural_heart_disease"] = out["structural_heart_disease"] or out["myocardial_infarction"]
    return out


# --- people, populations, pyramids ---------------------------------------------------------


def rules_age(birth: date, day: date) -> int:
    """Age at `day` from year and month of birth only (birthday taken as passed in the birth month)."""
    return ((day.year - birth.year) * 12 + day.month - birth.month) // 12


def _t2d_stratum(c: dict[str, bool]) -> int:
    if (c["amputation"] and (c["t2d_angiopathy"] or c["foot_ulcer"])) or (c["dialysis"] and c["t2d_nephropathy"]):
        return 4
    if sum(c[k] for k in T2D_COMPLICATIONS) >= 2 or c["stroke"] or c["myocardial_infarction"]:
        return 3
    if c["insulin"] or c["severe_hypoglycaemia"]:
        return 2
    return 1


@lru_cache(maxsize=8)
def _commune_codes(communes: tuple[Commune, ...]) -> frozenset[str]:
    return frozenset(c.code for c in communes)


def populations(person: Person, c: dict[str, bool], world: World, known: bool = True) -> PopulationView:
    """The populations and strata of the rules document, from evaluated criteria.

    `known`: the sources of the view hold at least one record of the person. A person no
    source mentions is in no population, not even "men over 45": the platform cannot list them.
    """
    ref = world.reference_date
    death = person.truth.death_date
    alive = death is None or death > ref
    resident = person.address.commune_code in _commune_codes(world.communes)
    if not (known and alive and resident):
        return PopulationView()
    years = rules_age(person.identity.birth_date, ref)
    adult = years >= 18
    type1_only = c["t1d_dx"] and not c["t2d_dx"]
    t2d = not type1_only and (
        c["t2d_dx"]
        or (c["diabetes_unspecified_dx"] and not c["t1d_dx"])
        or c["ald8"]
        or c["t2d_drugs"]
        or c["t2d_hba1c"]
    )
    risk_factor = c["hypertension"] or c["dyslipidaemia"] or c["family_history_diabetes"]
    t2d_at_risk = (
        adult and not t2d and ((person.identity.sex == "M" and years > 45) or (c["overweight"] and risk_factor))
    )
    hf = c["hf_dx"] or c["ald5"] or c["lvef_reduced"] or c["ntprobnp_high"]
    hf_at_risk = (
        adult
        and not hf
        and (
            c["hypertension"]
            or t2d
            or c["obesity_dx"]
            or c["obese_bmi"]
            or c["structural_heart_disease"]
            or c["stroke"]
            or c["t2d_angiopathy"]
        )
    )
    t2d_stratum = str(_t2d_stratum(c)) if t2d else "at_risk" if t2d_at_risk else None
    if hf:
        hf_stratum: int | None = 4 if c["hf_hospitalisations"] else 3
    elif hf_at_risk:
        hf_stratum = 2 if c["structural_heart_disease"] else 1
    else:
        hf_stratum = None
    return PopulationView(t2d, t2d_at_risk, t2d_stratum, hf, hf_at_risk, hf_stratum)


# --- pathways ------------------------------------------------------------------------------


def coded_actions(
    view: PopulationView, c: dict[str, bool], facts: list[Fact], world: World, protocol: dict[str, Any]
) -> list[tuple[str, ActionDue]]:
    """The pathway actions the coded view puts the person on, with their status at the reference date.

    Intervals come from the coded state (coded stratum, insulin, retinopathy, latest coded
    HbA1c on or before the reference date, any age), `last done` from coded facts on or before
    the reference date (any age), and a never-done action is due on the reference date
    itself, as the rules document says.
    """
    ref = world.reference_date
    past = [f for f in facts if f.day <= ref]
    hba1c = [f for f in past if f.system == "LOINC" and f.code in HBA1C_LOINC and f.value is not None]
    last_hba1c = max(hba1c, key=lambda f: (f.day, f.value or 0.0)).value if hba1c else None
    variables = {
        "stratum": int(view.t2d_stratum) if view.t2d_stratum and view.t2d_stratum.isdigit() else None,
        "insulin": c["insulin"],
        "retinopathy": c["t2d_retinopathy"],
        "last_hba1c_above_target": last_hba1c is not None and last_hba1c > protocol["hba1c_target"],
        "hf_stage": view.hf_stratum,
    }

    def done_days(done_by: DoneBy) -> list[date]:
        wanted, sources = done_codes(done_by), done_sources(done_by)
        return [f.day for f in past if (f.system, f.code) in wanted and (sources is None or f.source in sources)]

    pathways = [p for p, on in (("t2d", view.t2d), ("hf", view.hf)) if on]
    return schedule(pathways, variables, done_days, ref, ref, protocol)


def observable_truth(person: Person, world: World, protocol: dict[str, Any] | None = None) -> ObservableTruth:
    """Observed flag, coded and all-sources views, and coded pathway actions of one person."""
    protocol = protocol or care_protocol()
    seen = observed(person)
    coded = coded_facts(person)
    c_coded = criteria_at(coded, world.reference_date)
    coded_view = populations(person, c_coded, world, known=seen)
    c_all = criteria_at([*coded, *report_facts(person)], world.reference_date)
    return ObservableTruth(
        observed=seen,
        coded=coded_view,
        # the reports' index carries the patient's identity: a report alone makes the person known
        all_sources=populations(person, c_all, world, known=seen or bool(person.reports)),
        coded_actions=tuple(coded_actions(coded_view, c_coded, coded, world, protocol)),
    )
