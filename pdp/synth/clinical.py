"""True clinical state of each resident and the care events it leaves in the sources.

Population memberships are drawn with age/sex relative risks scaled to the territory's
targets; T2D strata are assigned per chunk by quota (older people more often in higher
strata), so that strata shares stay close to the published pyramid even on small runs.
Facts are then drawn *consistent with the stratum rules* (DOMAIN.md), and the ground-truth
stratum is recomputed from the facts, so truth and rules cannot drift apart.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from dataclasses import dataclass
from functools import cache

from pdp.synth.model import COMPLICATIONS, ClinicalTruth, Person
from pdp.synth.territory import TerritoryDef, load_calibration, load_territory


def _step(table: dict[int, float], age: int) -> float:
    keys = sorted(table)
    i = bisect_right(keys, age) - 1
    return table[keys[i]] if i >= 0 else 0.0


@dataclass(frozen=True, slots=True)
class Rates:
    """Scale factors turning relative risks into probabilities for one territory."""

    t2d: float
    hf: float
    hf_at_risk: float
    t2d_at_risk_extra: float  # probability for adults not covered by the "man over 45" rule


def _band_ages() -> list[tuple[float, int, float]]:
    """(weight, age, female share) per single year of age, from the 5-year pyramid."""
    out = []
    for lo, hi, share, fem in load_calibration()["age_bands"]:
        for a in range(lo, hi + 1):
            out.append((share / (hi - lo + 1), a, fem))
    total = sum(w for w, _, _ in out)
    return [(w / total, a, f) for w, a, f in out]


def territory_rates(territory: TerritoryDef) -> Rates:
    """Scale the relative risks so the expected prevalences equal the territory's targets."""
    return _rates_for(territory.key)


@cache
def _rates_for(key: str) -> Rates:
    """Expected prevalences under `draw_memberships`, solved for the scale factors.

    Old people are more often diabetic or in heart failure, which takes them out of the
    at-risk populations, so the expectations run over age and sex with those exclusions.
    """
    territory = load_territory(key)
    cal = load_calibration()
    cells = [(w * f, a, False) for w, a, f in _band_ages()] + [(w * (1 - f), a, True) for w, a, f in _band_ages()]

    def rr(table: str, a: int, male: bool, factor: str | None = None) -> float:
        return _step(cal[table], a) * (cal[factor] if male and factor else 1.0)

    t2d = territory.rate("t2d") / sum(w * rr("t2d_relative_risk", a, m, "t2d_male_factor") for w, a, m in cells)
    hf = territory.rate("hf") / sum(w * rr("hf_relative_risk", a, m, "hf_male_factor") for w, a, m in cells)

    def p_t2d(a: int, m: bool) -> float:
        return min(1.0, t2d * rr("t2d_relative_risk", a, m, "t2d_male_factor"))

    def p_hf(a: int, m: bool) -> float:
        return min(1.0, hf * rr("hf_relative_risk", a, m, "hf_male_factor"))

    # HF at risk = diabetics without HF + a share of the others (solved for that share's scale)
    from_t2d = sum(w * p_t2d(a, m) * (1 - p_hf(a, m)) for w, a, m in cells)
    base = sum(w * (1 - p_t2d(a, m)) * (1 - p_hf(a, m)) * rr("hf_at_risk_relative_risk", a, m) for w, a, m in cells)
    hfar = max(0.0, territory.rate("hf_at_risk") - from_t2d) / base

    # T2D at risk = non-diabetic men over 45 + women 35-45 planning a pregnancy + hypertensive
    # overweight adults (from the HF paths) + a share of the remaining adults (solved for).
    precon = cal["t2d_preconception_share_women_35_45"]
    fixed = extra_base = 0.0
    for w, a, m in cells:
        if a < 18:
            continue
        q = 1 - p_t2d(a, m)
        if m and a > 45:
            fixed += w * q
            continue
        pc = precon if (not m and 35 < a <= 45) else 0.0
        p_hfar = min(1.0, hfar * rr("hf_at_risk_relative_risk", a, m))
        hyper_overweight = p_hf(a, m) * 0.7 * 0.5 + (1 - p_hf(a, m)) * p_hfar * 0.7 * 0.675
        fixed += w * q * (pc + (1 - pc) * hyper_overweight)
        extra_base += w * q * (1 - pc) * (1 - hyper_overweight)
    extra = (territory.rate("t2d_at_risk") - fixed) / extra_base
    return Rates(t2d=t2d, hf=hf, hf_at_risk=hfar, t2d_at_risk_extra=min(1.0, max(0.0, extra)))


def t2d_stratum(truth: ClinicalTruth) -> int:
    """The GPRP stratum of a diabetic from the facts: the highest rule that applies wins."""
    if truth.amputation or truth.dialysis:
        return 4
    if len(truth.complications) >= 2 or truth.stroke_or_mi:
        return 3
    if truth.insulin or truth.severe_hypoglycaemia_episodes >= 2:
        return 2
    return 1


def _facts_for_stratum(truth: ClinicalTruth, stratum: int, rng: random.Random) -> None:
    comps = list(COMPLICATIONS)
    if stratum == 1:
        truth.complications = tuple(rng.sample(comps, 1)) if rng.random() < 0.25 else ()
        truth.severe_hypoglycaemia_episodes = 1 if rng.random() < 0.05 else 0
    elif stratum == 2:
        truth.insulin = rng.random() < 0.85
        truth.severe_hypoglycaemia_episodes = rng.randint(2, 4) if not truth.insulin else int(rng.random() < 0.2) * 2
        truth.complications = tuple(rng.sample(comps, 1)) if rng.random() < 0.3 else ()
    elif stratum == 3:
        truth.insulin = rng.random() < 0.5
        if rng.random() < 0.7:
            truth.complications = tuple(sorted(rng.sample(comps, rng.choice((2, 2, 3)))))
        else:
            truth.stroke_or_mi = True
            truth.complications = tuple(rng.sample(comps, rng.choice((0, 1))))
    else:
        truth.insulin = rng.random() < 0.7
        u = rng.random()
        truth.amputation = u < 0.6
        truth.dialysis = u >= 0.5
        base = {"nephropathy"} if truth.dialysis else set()
        if truth.amputation:
            base |= {"foot_ulcer", "angiopathy"} if rng.random() < 0.7 else {"angiopathy"}
        base |= set(rng.sample(comps, rng.choice((0, 1))))
        truth.complications = tuple(sorted(base))
        truth.stroke_or_mi = rng.random() < 0.3


def assign_t2d_strata(diabetics: list[tuple[Person, int]], shares: dict[int, float], rng: random.Random) -> None:
    """Quota assignment within a chunk: exact shares (largest remainder), older → higher strata."""
    n = len(diabetics)
    if n == 0:
        return
    raw = {s: shares[s] * n for s in (1, 2, 3, 4)}
    counts = {s: math.floor(v) for s, v in raw.items()}
    for s in sorted(raw, key=lambda s: (counts[s] - raw[s], rng.random()))[: n - sum(counts.values())]:
        counts[s] += 1
    quota = [s for s in (1, 2, 3, 4) for _ in range(counts[s])]
    ordered = sorted(diabetics, key=lambda pa: pa[1] + rng.gauss(0, 18))
    for (person, _), stratum in zip(ordered, quota, strict=True):
        _facts_for_stratum(person.truth, stratum, rng)
        person.truth.t2d_stratum = t2d_stratum(person.truth)


def draw_memberships(person: Person, age: int, territory: TerritoryDef, rng: random.Random) -> None:
    """Draw T2D, HF, their at-risk states and the risk factors consistent with the rules."""
    cal = load_calibration()
    rates = territory_rates(territory)
    t = person.truth
    male = person.identity.sex == "M"
    p_t2d = rates.t2d * _step(cal["t2d_relative_risk"], age) * (cal["t2d_male_factor"] if male else 1.0)
    t.t2d = rng.random() < p_t2d
    p_hf = rates.hf * _step(cal["hf_relative_risk"], age) * (cal["hf_male_factor"] if male else 1.0)
    t.hf = rng.random() < p_hf
    if age >= 18:
        t.bmi = round(min(48.0, max(16.5, rng.gauss(30.5 if t.t2d else 25.0, 4.5))), 1)
    if t.hf:
        t.hf_stage = 4 if rng.random() < cal["hf_stage_shares"][4] else 3
        t.hypertension = rng.random() < 0.7
    elif t.t2d or rng.random() < rates.hf_at_risk * _step(cal["hf_at_risk_relative_risk"], age):
        t.hf_at_risk = True
        t.hf_stage = 2 if rng.random() < cal["hf_at_risk_structural_share"] else 1
        if not t.t2d:
            t.hypertension = rng.random() < 0.7
            if t.bmi is not None and (not t.hypertension or rng.random() < 0.35):
                t.bmi = max(t.bmi, round(rng.uniform(30.0, 40.0), 1))
            if t.hf_stage == 2 and rng.random() < 0.5:
                t.stroke_or_mi = True  # prior MI: structural disease
        else:
            t.hypertension = rng.random() < 0.6
    elif t.bmi is not None:
        t.hypertension = False
    t.obesity = t.bmi is not None and t.bmi >= 30
    if t.t2d or age < 18:
        return
    # T2D at risk (DOMAIN.md): men over 45; women over 35 planning a pregnancy;
    # overweight (BMI > 25) with a risk factor.
    risk_factor = t.hypertension
    if (
        (male and age > 45)
        or (not male and 35 < age <= 45 and rng.random() < cal["t2d_preconception_share_women_35_45"])
        or ((t.bmi or 0) > 25 and risk_factor)
    ):
        t.t2d_at_risk = True
    elif rng.random() < rates.t2d_at_risk_extra:
        t.t2d_at_risk = True
        t.bmi = max(t.bmi or 0, round(rng.uniform(25.5, 34.0), 1))
        t.obesity = t.bmi >= 30
        t.risk_factors = (rng.choice(("dyslipidaemia", "family_diabetes", "family_diabetes")),)
    elif (t.bmi or 0) > 25:
        t.bmi = round(rng.uniform(19.0, 25.0), 1)  # keep the rule false: no risk factor, so BMI ≤ 25
        t.obesity = False
