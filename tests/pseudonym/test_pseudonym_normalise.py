"""Identity normalisation, read as sentences: which spellings are one person, which are two,
and which records the edge refuses (with a reason code, and never the value in the message).

Defaults of every record below: birth name LEFEVRE, first name Jean, male, born 12 May 1980,
no NIR; each row changes only what it names.
"""

from __future__ import annotations

import doctest
from datetime import date, datetime
from typing import Any

import pytest

import pdp.pseudonym.normalise as normalise_module
from pdp.pseudonym.nir import nir_key
from pdp.pseudonym.normalise import CanonicalIdentity, RawIdentity, ReasonCode, Rejection, normalise
from pdp.synth.territory import load_identity_data

TODAY = date(2025, 6, 1)
DEFAULTS: dict[str, Any] = {"birth_name": "LEFEVRE", "first_names": "Jean", "sex": "M", "birth_date": "1980-05-12"}


def nir(body13: str) -> str:
    return body13 + nir_key(body13)


OWN_NIR = nir("1800575056123")  # male, born 05/1980: agrees with the defaults
PARENT_NIR = nir("2520569123045")  # a mother born in 05/1952: the insured parent on a child's card


def canon(**fields: Any) -> CanonicalIdentity:
    result = normalise(RawIdentity(**{**DEFAULTS, **fields}), today=TODAY)
    assert isinstance(result, CanonicalIdentity), f"unexpected rejection: {result}"
    return result


def reject(**fields: Any) -> Rejection:
    result = normalise(RawIdentity(**{**DEFAULTS, **fields}), today=TODAY)
    assert isinstance(result, Rejection), "the record should have been refused"
    return result


# --- one person, many spellings ----------------------------------------------------------

SAME_PERSON = [
    ("Lefèvre, LEFEVRE, Le Fèvre, LE-FEVRE and lefevre are one birth name",
     [{"birth_name": v} for v in ("Lefèvre", "LEFEVRE", "Le Fèvre", "LE-FEVRE", "lefevre", " Le  Fèvre ")]),
    ("d'Arcy, D'ARCY, D ARCY, DARCY and D’Arcy (typographic apostrophe) are one birth name",
     [{"birth_name": v} for v in ("d'Arcy", "D'ARCY", "D ARCY", "DARCY", "D’Arcy", "D`ARCY")]),
    ("Saint-André, St André, ST-ANDRE, St-André and SAINT ANDRE are one birth name",
     [{"birth_name": v} for v in ("Saint-André", "St André", "ST-ANDRE", "St-André", "SAINT ANDRE", "st. andré")]),
    ("Sainte-Marie and Ste Marie are one birth name",
     [{"birth_name": v} for v in ("Sainte-Marie", "Ste Marie", "STE-MARIE")]),
    ("Lecœur, LECOEUR and Lecoeur are one birth name (Œ is OE)",
     [{"birth_name": v} for v in ("Lecœur", "LECOEUR", "LECŒUR")]),
    ("De La Fontaine, DE LA FONTAINE and Delafontaine are one birth name",
     [{"birth_name": v} for v in ("De La Fontaine", "DE LA FONTAINE", "Delafontaine", "DE-LA-FONTAINE")]),
    ("Jean-Marie, Jean Marie, JEAN MARIE, 'Jean, Marie', Jean-Marie Paul and just Jean are one first name",
     [{"first_names": v} for v in ("Jean-Marie", "Jean Marie", "JEAN MARIE", "Jean, Marie", "Jean-Marie Paul",
                                   "Jean", ["Jean-Marie", "Paul"], ["JEAN", "MARIE"], "jean-marie; paul")]),
    ("Hélène, HELENE and Hélène written with a combining accent are one first name",
     [{"first_names": v} for v in ("Hélène", "HELENE", "He\u0301le\u0300ne")]),
    ("the sex written M, m, H, 1, male, masculin or Homme is one sex",
     [{"sex": v} for v in ("M", "m", "H", "1", "male", "Masculin", "Homme", " M ")]),
    ("the birth date written 1980-05-12, 12/05/1980, 12-05-1980, 12.05.1980, 19800512 (HL7) or as a date is one date",
     [{"birth_date": v} for v in ("1980-05-12", "12/05/1980", "12-05-1980", "12.05.1980", "19800512",
                                  "198005120000", date(1980, 5, 12), datetime(1980, 5, 12, 8, 30),
                                  "1980-05-12T00:00:00", "1980/05/12", "12/5/1980")]),
    ("a used (married) name given or not does not change the birth-name key",
     [{"birth_name": "LEFEVRE"}, {"birth_name": "LEFEVRE", "used_name": "MARTIN"},
      {"birth_name": "Lefèvre épouse Martin"}, {"birth_name": "MARTIN née LEFEVRE"},
      {"birth_name": "LEFEVRE EP. MARTIN"}]),
    ("a birthplace given or not does not change the key (most sources lack it)",
     [{}, {"birth_place": "75056"}, {"birth_place": "2a004"}, {"birth_place": "99350"}]),
    ("with the person's own NIR, names do not matter: the married name written as birth name still links",
     [{"nir": OWN_NIR, "birth_name": "LEFEVRE"}, {"nir": OWN_NIR, "birth_name": "MARTIN"},
      {"nir": OWN_NIR, "first_names": "Jean-Marie"}, {"nir": " ".join(OWN_NIR[i:i + 3] for i in range(0, 15, 3))}]),
]  # fmt: skip


@pytest.mark.parametrize(("sentence", "variants"), SAME_PERSON, ids=[row[0][:60] for row in SAME_PERSON])
def test_spellings_of_one_person_converge(sentence: str, variants: list[dict[str, Any]]) -> None:
    keys = {canon(**variant).canonical_bytes for variant in variants}
    assert len(keys) == 1, sentence


DIFFERENT_PEOPLE = [
    ("Jean born on the 12th is not Jean born on the 13th", {}, {"birth_date": "1980-05-13"}),
    ("Jean is not Jeanne", {}, {"first_names": "Jeanne"}),
    ("a man is not a woman with the same name and birth date", {}, {"sex": "F"}),
    ("LEFEVRE is not LEFEBVRE (a different name, not a spelling)", {}, {"birth_name": "LEFEBVRE"}),
    ("Jean-Marie is not Marie-Jean", {"first_names": "Jean-Marie"}, {"first_names": "Marie-Jean"}),
    ("a married name written as the birth name cannot be fixed without a NIR: linkage's job",
     {"birth_name": "LEFEVRE"}, {"birth_name": "MARTIN"}),
    ("twins with their own NIRs are two people", {"nir": OWN_NIR}, {"nir": nir("1800575056124")}),
    ("the same NIR with two birth dates (a spouse of the same sex, same month) is two people",
     {"nir": OWN_NIR, "birth_date": "1980-05-12"}, {"nir": OWN_NIR, "birth_date": "1980-05-30"}),
    ("twins sharing their mother's NIR on the card are two people (Lucas and Emma)",
     {"nir": PARENT_NIR, "first_names": "Lucas", "birth_date": "2014-03-02"},
     {"nir": PARENT_NIR, "first_names": "Emma", "sex": "F", "birth_date": "2014-03-02"}),
    ("same-sex twins sharing their mother's NIR are two people (Louis and Paul)",
     {"nir": PARENT_NIR, "first_names": "Louis", "birth_date": "2014-03-02"},
     {"nir": PARENT_NIR, "first_names": "Paul", "birth_date": "2014-03-02"}),
    ("the same identity with and without its own NIR gets one key per scheme (linked later)",
     {"nir": OWN_NIR}, {}),
]  # fmt: skip


@pytest.mark.parametrize(("sentence", "a", "b"), DIFFERENT_PEOPLE, ids=[row[0][:60] for row in DIFFERENT_PEOPLE])
def test_different_people_stay_apart(sentence: str, a: dict[str, Any], b: dict[str, Any]) -> None:
    assert canon(**a).canonical_bytes != canon(**b).canonical_bytes, sentence


def test_known_limit_same_sex_twins_whose_compound_first_names_share_their_first_part_collide() -> None:
    """Documented limit of the traits key (first token of the first first name): Marie-Claire and
    Marie-France, twins on their mother's card, get one traits key. Their own NIRs separate them."""
    twins = {"nir": PARENT_NIR, "sex": "F", "birth_date": "2014-03-02"}
    assert (
        canon(**twins, first_names="Marie-Claire").canonical_bytes
        == canon(**twins, first_names="Marie-France").canonical_bytes
    )
    own_a, own_b = nir("2140375056010"), nir("2140375056011")
    assert (
        canon(**twins | {"nir": own_a}, first_names="Marie-Claire").canonical_bytes
        != canon(**twins | {"nir": own_b}, first_names="Marie-France").canonical_bytes
    )


# --- what the canonical identity holds ----------------------------------------------------

CANONICAL_FIELDS = [
    ("Le Fèvre keeps its particle, and a compact form for the key",
     {"birth_name": "Le Fèvre"}, {"birth_name": "LE FEVRE", "birth_name_compact": "LEFEVRE"}),
    ("ST before a word is SAINT, wherever it is",
     {"birth_name": "de St-Exupéry"}, {"birth_name": "DE SAINT EXUPERY", "birth_name_compact": "DESAINTEXUPERY"}),
    ("a comma list keeps each (compound) first name whole",
     {"first_names": "Jean-Marie, Paul"},
     {"first_names": ("JEAN MARIE", "PAUL"), "first_name": "JEAN MARIE", "first_name_first_token": "JEAN"}),
    ("a space list without commas is split on spaces, hyphenated compounds kept",
     {"first_names": "Jean-Marie Paul Louis"},
     {"first_names": ("JEAN MARIE", "PAUL", "LOUIS"), "first_name": "JEAN MARIE"}),
    ("Jean Marie without hyphen or comma reads as two first names",
     {"first_names": "Jean Marie"}, {"first_names": ("JEAN", "MARIE"), "first_name": "JEAN"}),
    ("a list gives one first name per item",
     {"first_names": ["Anne-Sophie", "Marie Claire"]}, {"first_names": ("ANNE SOPHIE", "MARIE CLAIRE")}),
    ("épouse splits the birth name from the used name",
     {"birth_name": "Lefèvre épouse Martin"}, {"birth_name": "LEFEVRE", "used_name": "MARTIN"}),
    ("née splits the used name from the birth name",
     {"birth_name": "Martin née Lefèvre"}, {"birth_name": "LEFEVRE", "used_name": "MARTIN"}),
    ("a used name equal to the birth name is no used name",
     {"used_name": "Lefèvre"}, {"used_name": None}),
    ("a birthplace is an upper-case INSEE code",
     {"birth_place": " 2b033 "}, {"birth_place": "2B033"}),
    ("the person's own NIR gives the NIR scheme",
     {"nir": OWN_NIR}, {"scheme": "nir", "nir": OWN_NIR, "insured_nir": None}),
    ("a NIR whose month is coded unknown (50+) still agrees if sex and year do",
     {"nir": nir("1805075056123")}, {"scheme": "nir"}),
    ("a parent's NIR (other birth year) is kept apart as the insured NIR, and the traits decide",
     {"nir": PARENT_NIR, "birth_date": "2014-03-02"}, {"scheme": "traits", "nir": None, "insured_nir": PARENT_NIR}),
    ("a NIR of the other sex is not the person's own",
     {"nir": nir("2800575056123")}, {"scheme": "traits", "insured_nir": nir("2800575056123")}),
    ("a NIR of the right year but another month is not the person's own",
     {"nir": nir("1800675056123")}, {"scheme": "traits"}),
    ("an empty NIR field is no NIR", {"nir": "   "}, {"scheme": "traits", "nir": None, "insured_nir": None}),
]  # fmt: skip


@pytest.mark.parametrize(("sentence", "raw", "expected"), CANONICAL_FIELDS, ids=[r[0][:60] for r in CANONICAL_FIELDS])
def test_the_canonical_identity_holds(sentence: str, raw: dict[str, Any], expected: dict[str, Any]) -> None:
    identity = canon(**raw)
    assert {name: getattr(identity, name) for name in expected} == expected, sentence


def test_the_canonical_bytes_are_the_documented_forms() -> None:
    assert canon(nir=OWN_NIR).canonical_bytes == b"pdp-pseudonym/1\x1fnir\x1f1800575056123\x1f1980-05-12"
    assert canon(birth_name="Le Fèvre", first_names="Jean-Marie").canonical_bytes == (
        b"pdp-pseudonym/1\x1ftraits\x1fLEFEVRE\x1fJEAN\x1f1980-05-12\x1fM"
    )


def test_synthetic_name_variants_converge() -> None:
    """Every particle and compound of the generator's name list survives its degradations:
    lower case, accents stripped, hyphens as spaces, spaces removed or hyphenated, SAINT- as ST."""
    data = load_identity_data()
    names = data["surnames_extra"] + data["first_names_compound_male"] + data["first_names_compound_female"]
    for name in names:
        variants = {
            name,
            name.lower(),
            normalise_module.normalise_name(name),
            name.replace("-", " "),
            name.replace(" ", ""),
            name.replace(" ", "-"),
            name.replace("'", ""),
            name.replace("'", " "),
            name.replace("SAINT-", "ST ").replace("Saint-", "St "),
        }
        keys = {canon(birth_name=variant).birth_name_compact for variant in variants}
        assert len(keys) == 1, f"variants of a generator name diverge: {sorted(keys)}"


# --- refused records ----------------------------------------------------------------------

REFUSED = [
    ("a NIR whose key is wrong is an input error, not a new person",
     {"nir": OWN_NIR[:13] + "00"}, ReasonCode.NIR_KEY, "nir", None),
    ("a NIR with a digit missing", {"nir": OWN_NIR[:14]}, ReasonCode.NIR_FORMAT, "nir", "NIR_LENGTH"),
    ("a NIR with month 13", {"nir": nir("1801375056123")}, ReasonCode.NIR_FORMAT, "nir", "NIR_MONTH"),
    ("a NIR with sex digit 5", {"nir": nir("5800575056123")}, ReasonCode.NIR_FORMAT, "nir", "NIR_SEX"),
    ("a NIR with a letter", {"nir": "18005750561Z342"}, ReasonCode.NIR_FORMAT, "nir", "NIR_CHARSET"),
    ("the 31st of February", {"birth_date": "31/02/1980"}, ReasonCode.BIRTH_DATE_INVALID, "birth_date", "impossible"),
    ("an American month/day date", {"birth_date": "05/13/1980"}, ReasonCode.BIRTH_DATE_INVALID, "birth_date",
     "impossible"),
    ("a birth in the future", {"birth_date": "2031-01-01"}, ReasonCode.BIRTH_DATE_INVALID, "birth_date", "future"),
    ("a birth before 1880", {"birth_date": "31/12/1879"}, ReasonCode.BIRTH_DATE_INVALID, "birth_date", "before_1880"),
    ("a date with an unknown day", {"birth_date": "00/05/1980"}, ReasonCode.BIRTH_DATE_INVALID, "birth_date",
     "partial"),
    ("a date in words", {"birth_date": "douze mai 1980"}, ReasonCode.BIRTH_DATE_INVALID, "birth_date", "unparseable"),
    ("no birth date", {"birth_date": None}, ReasonCode.BIRTH_DATE_INVALID, "birth_date", "missing"),
    ("a blank birth date", {"birth_date": "  "}, ReasonCode.BIRTH_DATE_INVALID, "birth_date", "missing"),
    ("a birth date as a number", {"birth_date": 19800512}, ReasonCode.FIELD_TYPE, "birth_date", None),
    ("an empty birth name", {"birth_name": ""}, ReasonCode.NAME_EMPTY, "birth_name", None),
    ("a birth name of punctuation only", {"birth_name": " - ' "}, ReasonCode.NAME_EMPTY, "birth_name", None),
    ("no birth name but a used name", {"birth_name": None, "used_name": "MARTIN"}, ReasonCode.NAME_EMPTY,
     "birth_name", None),
    ("a placeholder birth name X", {"birth_name": "X"}, ReasonCode.NAME_EMPTY, "birth_name", "placeholder"),
    ("a placeholder birth name Inconnu", {"birth_name": "Inconnu"}, ReasonCode.NAME_EMPTY, "birth_name",
     "placeholder"),
    ("no first name", {"first_names": None}, ReasonCode.NAME_EMPTY, "first_names", None),
    ("an empty list of first names", {"first_names": []}, ReasonCode.NAME_EMPTY, "first_names", None),
    ("first names of commas only", {"first_names": " , , "}, ReasonCode.NAME_EMPTY, "first_names", None),
    ("a digit in the birth name", {"birth_name": "DUP0NT"}, ReasonCode.NAME_CHARSET, "birth_name", None),
    ("a birth name in Cyrillic", {"birth_name": "Иванов"}, ReasonCode.NAME_CHARSET, "birth_name", None),
    ("a digit in a first name", {"first_names": "Jean2"}, ReasonCode.NAME_CHARSET, "first_names", None),
    ("an unknown sex", {"sex": "U"}, ReasonCode.SEX_INVALID, "sex", None),
    ("a sex code 3", {"sex": "3"}, ReasonCode.SEX_INVALID, "sex", None),
    ("no sex", {"sex": None}, ReasonCode.SEX_INVALID, "sex", "missing"),
    ("a birthplace that is no INSEE code", {"birth_place": "Paris"}, ReasonCode.BIRTH_PLACE_INVALID, "birth_place",
     None),
    ("a four-digit birthplace", {"birth_place": "7505"}, ReasonCode.BIRTH_PLACE_INVALID, "birth_place", None),
]  # fmt: skip


@pytest.mark.parametrize(("sentence", "raw", "code", "field", "detail"), REFUSED, ids=[r[0][:60] for r in REFUSED])
def test_bad_records_are_refused_with_a_reason_and_without_their_values(
    sentence: str, raw: dict[str, Any], code: ReasonCode, field: str, detail: str | None
) -> None:
    rejection = reject(**raw)
    assert (rejection.reason_code, rejection.field, rejection.detail) == (code, field, detail), sentence
    shown = f"{rejection.message} {rejection} {rejection!r}"
    values = [str(value) for value in {**DEFAULTS, **raw}.values() if value is not None]
    for value in values:
        for form in {value, value.upper(), value.strip()}:
            if len(form.strip()) >= 4:  # shorter strings ("M", "X") occur in ordinary words
                assert form.strip() not in shown, f"{sentence}: the message shows an input value"
    assert code in rejection.message and field in rejection.message


def test_a_rejection_is_never_pseudonymised_by_mistake() -> None:
    rejection = reject(nir=OWN_NIR[:13] + "00")
    assert not isinstance(rejection, CanonicalIdentity)
    assert not hasattr(rejection, "canonical_bytes")


def test_identities_hide_their_values_in_repr() -> None:
    raw = RawIdentity(**{**DEFAULTS, "birth_name": "Lefèvre", "nir": OWN_NIR})
    identity = canon(birth_name="Lefèvre", nir=OWN_NIR)
    for text in (repr(raw), str(raw), repr(identity), str(identity), f"{identity}"):
        for value in ("LEFEVRE", "Lefèvre", "JEAN", "Jean", "1980", OWN_NIR):
            assert value not in text


def test_the_raw_identity_takes_keywords_only() -> None:
    with pytest.raises(TypeError):
        RawIdentity("LEFEVRE", None, "Jean")  # type: ignore[misc]


def test_the_module_examples_run() -> None:
    assert doctest.testmod(normalise_module).failed == 0
