"""How each source degrades a true identity: the reason linkage is a real problem.

Rates per source live in calibration.yml (`identity_quality`). A source keeps one identity
per patient (its own patient file), so the variant is drawn once per (person, source).
"""

from __future__ import annotations

import random
import unicodedata
from collections.abc import Callable

from pdp.synth.model import Person, SourceIdentity
from pdp.synth.population import stable_seed
from pdp.synth.territory import load_calibration

IdentityOf = Callable[[Person, str], SourceIdentity]


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


def source_identity(person: Person, source: str, seed: int) -> SourceIdentity:
    """The identity that `source` holds for `person` (deterministic for a seed)."""
    q = load_calibration()["identity_quality"][source]
    rng = random.Random(stable_seed(seed, person.person_id, source, "identity"))
    ident = person.identity
    birth_name, used_name = ident.birth_name, ident.used_name
    firsts = list(ident.first_names)
    if used_name and rng.random() < q["used_name_only"]:
        birth_name, used_name = used_name, None  # the married name written as the only name
    if rng.random() < q["first_name_only"]:
        firsts = firsts[:1]
    first_text = (" " if rng.random() < 0.5 else ", ").join(firsts)
    if rng.random() < q["no_accents"]:
        birth_name = strip_accents(birth_name)
        used_name = strip_accents(used_name) if used_name else None
        first_text = strip_accents(first_text).upper() if rng.random() < 0.7 else strip_accents(first_text)
    if rng.random() < q["hyphen_variant"]:
        birth_name = _hyphen_variant(birth_name, rng)
        first_text = _hyphen_variant(first_text, rng)
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
    nir: str | None = ident.nir
    if source == "pharmacy":
        nir = person.insured_nir or ident.nir  # the card's NIR: a parent's for minors
    if rng.random() < q["no_nir"]:
        nir = None
    return SourceIdentity(
        birth_name=birth_name,
        used_name=used_name,
        first_names=first_text,
        sex=ident.sex,
        birth_date=birth_date,
        birth_place=ident.birth_place if source in {"pmsi", "gp_fhir"} else None,
        nir=nir,
    )


def identity_resolver(seed: int) -> IdentityOf:
    """`identity_of(person, source)` bound to a run's seed, as the source writers expect."""

    def identity_of(person: Person, source: str) -> SourceIdentity:
        return source_identity(person, source, seed)

    return identity_of
