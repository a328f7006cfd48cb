"""How each source degrades a true identity: the reason linkage is a real problem.

Rates per source live in calibration.yml (`identity_quality`). A source keeps one identity
per patient (its own patient file), so the variant is drawn once per (person, source).

Two families of error kinds (:data:`ERROR_KINDS`):

* the *first* ones (no NIR, accents, hyphens, the married name as the only name, one first
  name, one typo or a day/month swap) mirror the linkage model's comparison levels one to one
  (:mod:`pdp.pseudonym.linkage_model`): measured on them alone, linkage flatters itself;
* the *other* ones are what identity-vigilance reports find in real registries and what the
  model was not designed around (issue 14): first and last names swapped; a compound first
  name written as one word (``JEANPIERRE``); a particle dropped from the birth name
  (``LE GALL`` → ``GALL``); a short form of the first name (``Fred`` for ``Frédéric``, table
  ``first_name_short_forms`` of identity_data.yml); a former address (the postcode before a
  move); the 01/01 default of an unknown birth day and month; one digit of the birth year
  mistyped. They are drawn from their own random stream (``identity-errors``), so adding or
  re-rating them never changes the first family's draws. Spouses sharing an address and a
  phone are drawn per chunk by :func:`pair_households` (persons, not records).

Every record's source identity says which kinds it carries (``SourceIdentity.errors``) and
the generator writes them to ``ground_truth/identity_errors.csv``: the linkage benchmark
reports its recall per kind.
"""

from __future__ import annotations

import random
import unicodedata
from collections.abc import Callable
from datetime import date

from pdp.synth.model import Address, Person, SourceIdentity
from pdp.synth.population import stable_seed
from pdp.synth.territory import load_calibration, load_identity_data
from pdp.synth.world import Commune

IdentityOf = Callable[[Person, str], SourceIdentity]

ERROR_KINDS = (
    # the model's own levels
    "no_nir", "no_accents", "hyphen_variant", "used_name_only", "first_name_only", "typo", "day_month_swap",
    # kinds the model was not designed around (issue 14)
    "names_swapped", "compound_first_name_merged", "particle_dropped", "short_first_name", "moved",
    "default_birth_date", "year_digit", "household",
)  # fmt: skip
"""Every error kind the generator can draw, as written in ``ground_truth/identity_errors.csv``."""

NEW_KINDS = ERROR_KINDS[7:]

_PARTICLES = ("LE ", "LA ", "DE LA ", "DE ", "DU ", "DES ", "D'", "DOS ", "EL ", "BEN ")


def strip_accents(text: str) -> str:
    text = text.replace("Œ", "OE").replace("œ", "oe").replace("Æ", "AE").replace("æ", "ae")
    return "".join(ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch))


def _hyphen_variant(text: str, rng: random.Random) -> str:
    if text.startswith("SAINT-"):
        return "ST " + text[6:]
    if "'" in text:
        return text.replace("'", rng.choice(("", " ")))
    if "-" in text:
        return text.replace("-", " ")
    if " " in text:
        return text.replace(" ", rng.choice(("-", "")))
    return text


def _typo(text: str, rng: random.Random) -> str:
    if len(text) < 4:
        return text
    i = rng.randrange(1, len(text) - 1)
    kind = rng.randrange(3)
    if kind == 0:  # transposition
        return text[:i] + text[i + 1] + text[i] + text[i + 2 :]
    if kind == 1:  # deletion
        return text[:i] + text[i + 1 :]
    letters = "AEIOUNRSTL" if text.isupper() else "aeiounrstl"
    return text[:i] + rng.choice(letters) + text[i + 1 :]  # substitution


def _drop_particle(name: str) -> str | None:
    """``LE GALL`` → ``GALL``, ``D'ARCY`` → ``ARCY``; None when the name has no particle."""
    upper = name.upper()
    for particle in _PARTICLES:
        if upper.startswith(particle) and len(name) > len(particle) + 1:
            return name[len(particle) :]
    return None


def _short_form(first: str, rng: random.Random) -> str | None:
    forms = load_identity_data().get("first_name_short_forms", {}).get(first)
    return rng.choice(forms) if forms else None


def _mistyped_year(birth: date, rng: random.Random) -> date | None:
    """The birth date with one of the year's last two digits replaced (1958 → 1953, 1985)."""
    text = f"{birth.year:04d}"
    position = rng.choice((2, 3))
    digit = rng.choice([d for d in "0123456789" if d != text[position]])
    year = int(text[:position] + digit + text[position + 1 :])
    try:
        day = birth.replace(year=year)
    except ValueError:  # 29 February
        return None
    return day if day <= load_calibration()["reference_date"] else None


def _new_kinds(
    q: dict[str, float],
    rng: random.Random,
    fields: dict[str, object],
    person: Person,
    communes: tuple[Commune, ...],
) -> list[str]:
    """Apply the error kinds the model was not designed around to ``fields``; the kinds drawn.

    One draw per kind, in a fixed order, whether or not it applies (so that one kind's rate
    never shifts another kind's draws).
    """
    kinds: list[str] = []
    draws = {kind: rng.random() for kind in NEW_KINDS if kind != "household"}
    first_text = str(fields["first_names"])
    first = person.identity.first_names[0]
    if draws["short_first_name"] < q.get("short_first_name", 0.0):
        short = _short_form(first, rng)
        if short is not None:
            rest = first_text[len(first) :] if first_text.startswith(first) else ""
            fields["first_names"] = first_text = short + rest
            kinds.append("short_first_name")
    if draws["compound_first_name_merged"] < q.get("compound_first_name_merged", 0.0) and "-" in first:
        merged = first.replace("-", "")
        fields["first_names"] = first_text = first_text.replace(first, merged, 1)
        kinds.append("compound_first_name_merged")
    if draws["particle_dropped"] < q.get("particle_dropped", 0.0):
        dropped = _drop_particle(str(fields["birth_name"]))
        if dropped is not None:
            fields["birth_name"] = dropped
            kinds.append("particle_dropped")
    if draws["names_swapped"] < q.get("names_swapped", 0.0):
        first_token = first_text.replace(",", " ").split()[0] if first_text.strip() else ""
        if first_token:
            fields["birth_name"], fields["first_names"] = first_token.upper(), str(fields["birth_name"]).title()
            fields["used_name"] = None
            kinds.append("names_swapped")
    birth = person.identity.birth_date
    if draws["default_birth_date"] < q.get("default_birth_date", 0.0) and (birth.day, birth.month) != (1, 1):
        fields["birth_date"] = birth.replace(day=1, month=1)
        kinds.append("default_birth_date")
    elif draws["year_digit"] < q.get("year_digit", 0.0):
        mistyped = _mistyped_year(birth, rng)
        if mistyped is not None:
            fields["birth_date"] = mistyped
            kinds.append("year_digit")
    if draws["moved"] < q.get("moved", 0.0):
        others = [c for c in communes if c.postcode != person.address.postcode]
        if others:
            commune = rng.choices(others, weights=[c.population for c in others])[0]
            line = f"{rng.randrange(1, 180)} {person.address.line.split(' ', 1)[-1]}"
            fields["address"] = Address(line, commune.postcode, commune.code, commune.name)
            kinds.append("moved")
    return kinds


def source_identity(
    person: Person, source: str, seed: int, communes: tuple[Commune, ...] = ()
) -> SourceIdentity:
    """The identity that `source` holds for `person` (deterministic for a seed).

    ``communes``: the territory's, where a moved person's former address is drawn (no move
    without them).
    """
    q = load_calibration()["identity_quality"][source]
    rng = random.Random(stable_seed(seed, person.person_id, source, "identity"))
    ident = person.identity
    kinds: list[str] = []
    birth_name, used_name = ident.birth_name, ident.used_name
    firsts = list(ident.first_names)
    if used_name and rng.random() < q["used_name_only"]:
        birth_name, used_name = used_name, None  # the married name written as the only name
        kinds.append("used_name_only")
    if rng.random() < q["first_name_only"]:
        if len(firsts) > 1:
            kinds.append("first_name_only")
        firsts = firsts[:1]
    first_text = (" " if rng.random() < 0.5 else ", ").join(firsts)
    if rng.random() < q["no_accents"]:
        birth_name = strip_accents(birth_name)
        used_name = strip_accents(used_name) if used_name else None
        first_text = strip_accents(first_text).upper() if rng.random() < 0.7 else strip_accents(first_text)
        kinds.append("no_accents")
    if rng.random() < q["hyphen_variant"]:
        before = (birth_name, first_text)
        birth_name = _hyphen_variant(birth_name, rng)
        first_text = _hyphen_variant(first_text, rng)
        if (birth_name, first_text) != before:
            kinds.append("hyphen_variant")
    birth_date = ident.birth_date
    if rng.random() < q["typo"]:
        target = rng.randrange(3)
        if target == 0:
            birth_name = _typo(birth_name, rng)
        elif target == 1:
            first_text = _typo(first_text, rng)
        elif birth_date.day <= 12 and birth_date.day != birth_date.month:
            birth_date = birth_date.replace(day=birth_date.month, month=birth_date.day)  # day/month swap
        else:
            birth_name = _typo(birth_name, rng)
        kinds.append("day_month_swap" if birth_date != ident.birth_date else "typo")
    nir: str | None = ident.nir
    if source == "pharmacy":
        nir = person.insured_nir or ident.nir  # the card's NIR: a parent's for minors
    if rng.random() < q["no_nir"]:
        nir = None
        kinds.append("no_nir")
    fields: dict[str, object] = {
        "birth_name": birth_name,
        "used_name": used_name,
        "first_names": first_text,
        "birth_date": birth_date,
        "address": None,
    }
    errors = random.Random(stable_seed(seed, person.person_id, source, "identity-errors"))
    kinds += _new_kinds(q, errors, fields, person, communes)
    if person.household is not None:
        kinds.append("household")
    return SourceIdentity(
        birth_name=str(fields["birth_name"]),
        used_name=fields["used_name"],  # type: ignore[arg-type]
        first_names=str(fields["first_names"]),
        sex=ident.sex,
        birth_date=fields["birth_date"],  # type: ignore[arg-type]
        birth_place=ident.birth_place if source in {"pmsi", "gp_fhir"} else None,
        nir=nir,
        address=fields["address"],  # type: ignore[arg-type]
        errors=tuple(kinds),
    )


def identity_resolver(seed: int, communes: tuple[Commune, ...] = ()) -> IdentityOf:
    """`identity_of(person, source)` bound to a run's seed (and territory), as the source writers expect."""

    def identity_of(person: Person, source: str) -> SourceIdentity:
        return source_identity(person, source, seed, communes)

    return identity_of


def pair_households(persons: list[Person], rng: random.Random, share: float) -> int:
    """Spouses: a share of adult women (25+) move into an adult man's home of the same chunk.

    She takes his address, and his phone when he has one (a landline, a shared mobile); her
    used name, if she has one, becomes his birth name. Two people, one address: linkage must
    not merge them (their first names, birth dates and NIRs differ). Men are matched within
    ±10 years of age, each at most once, in person order (deterministic for a chunk). Returns
    the number of couples.
    """
    from dataclasses import replace

    men = [p for p in persons if p.identity.sex == "M" and p.identity.birth_date.year <= 2000]
    taken: set[int] = set()
    couples = 0
    for woman in persons:
        ident = woman.identity
        if ident.sex != "F" or ident.birth_date.year > 2000 or rng.random() >= share:
            continue
        for man in men:
            if man.person_id in taken or abs(man.identity.birth_date.year - ident.birth_date.year) > 10:
                continue
            taken.add(man.person_id)
            woman.address = man.address
            if man.phone:
                woman.phone = man.phone
            if ident.used_name:
                woman.identity = replace(ident, used_name=man.identity.birth_name)
            woman.household = man.person_id
            man.household = woman.person_id
            couples += 1
            break
    return couples
