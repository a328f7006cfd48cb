"""The person's own traits found in every variant a letter writes them in."""

from __future__ import annotations

from datetime import date

import pytest

from pdp.pseudonym import RawIdentity
from pdp.semantic.deid import PersonTraits, TraitsError

JEANNE = PersonTraits(
    birth_name="Dupont", used_name="Martin-Lefèvre", first_names="Jeanne-Marie, Louise", birth_date=date(1950, 3, 14),
    nir="250037512345606", address="12 rue des Lilas", postcode="59500", phone="06 12 34 56 78",
    email="jm.martin@laposte.net",
)

VARIANTS = [
    ("Mme MARTIN-LEFEVRE", [("NOM", "MARTIN-LEFEVRE")]),
    ("Mme Martin-Lefèvre", [("NOM", "Martin-Lefèvre")]),
    ("Mme MARTIN LEFÈVRE", [("NOM", "MARTIN LEFÈVRE")]),
    ("Mme MARTIN-\nLEFEVRE", [("NOM", "MARTIN-\nLEFEVRE")]),  # line break inside the compound
    ("Mme MAR-\nTIN", [("NOM", "MAR-\nTIN")]),  # hyphenated at a line break
    ("Mme Lefèvre", [("NOM", "Lefèvre")]),  # one part of the compound
    ("née DUPONT", [("NOM", "DUPONT")]),
    ("J.-M. MARTIN", [("PRENOM", "J.-M"), ("NOM", "MARTIN")]),  # initials
    ("MARTIN J.", [("NOM", "MARTIN"), ("PRENOM", "J")]),
    ("Jeanne-Marie Louise", [("PRENOM", "Jeanne-Marie"), ("PRENOM", "Louise")]),
    ("Mme Jeanne MARTIN", [("PRENOM", "Jeanne"), ("NOM", "MARTIN")]),
    ("née le 14 mars 1950", [("DATE_NAISSANCE", "14 mars 1950")]),
    ("(14/03/50)", [("DATE_NAISSANCE", "14/03/50")]),
    ("1950-03-14", [("DATE_NAISSANCE", "1950-03-14")]),
    ("NIR 2 50 03 75 123 456 06", [("NIR", "2 50 03 75 123 456 06")]),
    ("NIR 2500375123456", [("NIR", "2500375123456")]),
    ("tél. +33 6 12 34 56 78", [("TEL", "+33 6 12 34 56 78")]),
    ("JM.Martin@LaPoste.net", [("EMAIL", "JM.Martin@LaPoste.net")]),
    ("au 12 r. des Lilas", [("ADRESSE", "12 r. des Lilas")]),
    ("mme martin-lefevre jeanne-marie", [("NOM", "martin-lefevre"), ("PRENOM", "jeanne-marie")]),  # dictated
    # negatives: the same words used as plain words, or other dates
    ("une urine claire, louise", []),
    ("Hospitalisation du 14/03/2024", []),
    ("M. MARTINEZ", [("PERSONNE", "MARTINEZ")]),  # another person: not the patient's <NOM>
]


@pytest.mark.parametrize(("text", "expected"), VARIANTS, ids=[t[:30] for t, _ in VARIANTS])
def test_identity_variants(deid, text: str, expected: list[tuple[str, str]]) -> None:
    assert deid(text, JEANNE, ner=False) == expected


def test_a_common_word_name_is_not_redacted_in_lower_case(deid) -> None:
    petit = PersonTraits(birth_name="PETIT", first_names="Paul")
    assert deid("M. PETIT a un petit œdème", petit, ner=False) == [("NOM", "PETIT")]


def test_lone_m_dot_is_monsieur_not_an_initial(deid) -> None:
    michel = PersonTraits(birth_name="MARTIN", first_names="Michel")
    assert deid("M. MARTIN", michel, ner=False) == [("NOM", "MARTIN")]


def test_the_vaults_other_names_and_nirs_are_the_patients_too(deid) -> None:
    """The index row gives the birth name only; the vault knows the used name and another NIR."""
    row_only = PersonTraits(birth_name="DUPONT", first_names="Jeanne")
    known = PersonTraits(birth_name="DUPONT", first_names="Jeanne", other_names=("Martin-Lefèvre",),
                         other_nirs=("250037512345606",))
    letter = "Mme Jeanne MARTIN-LEFEVRE, NIR 2 50 03 75 123 456 06, vue ce jour."
    assert ("NOM", "MARTIN-LEFEVRE") not in deid(letter, row_only, ner=False)
    assert deid(letter, known, ner=False) == [
        ("PRENOM", "Jeanne"), ("NOM", "MARTIN-LEFEVRE"), ("NIR", "2 50 03 75 123 456 06")]
    assert PersonTraits.from_json({"other_names": "Martin", "other_nirs": ["250037512345606"]}).other_names == (
        "Martin",)


def test_traits_from_the_edge_identity() -> None:
    raw = RawIdentity(birth_name="Dupont", first_names=["Jeanne", "Louise"], birth_date="14/03/1950", nir=None)
    traits = PersonTraits.from_identity(raw, phone="0612345678")
    assert traits.first_name_list == ("Jeanne", "Louise") and traits.birth_date == date(1950, 3, 14)
    assert "Dupont" not in repr(traits)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": "X"}, "unknown field(s) name"),
        ({"birth_date": "14 mars 1950"}, "identity.birth_date: expected a date"),
        ({"phone": 612345678}, "identity.phone: expected a string"),
        ([], "expected a JSON object"),
    ],
)
def test_bad_traits_name_the_field_not_the_value(data, message: str) -> None:
    with pytest.raises(TraitsError) as err:
        PersonTraits.from_json(data)
    assert message in str(err.value)
    assert "612345678" not in str(err.value) and "mars" not in str(err.value)
