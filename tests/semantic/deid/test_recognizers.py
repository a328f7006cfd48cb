"""Each French recognizer on sentences a clinician can read: what it must find, what it must leave.

One table per recognizer; a row is (sentence, expected [(type, words)]). An empty list is a
negative case: nothing may be redacted there.
"""

from __future__ import annotations

import pytest

from pdp.semantic.deid.recognizers import RECOGNIZERS
from pdp.semantic.deid.recognizers.address import FrAddressRecognizer
from pdp.semantic.deid.recognizers.dates import FrBirthDateRecognizer
from pdp.semantic.deid.recognizers.email import FrEmailRecognizer
from pdp.semantic.deid.recognizers.hospital_id import FrHospitalIdRecognizer
from pdp.semantic.deid.recognizers.nir import FrNirRecognizer
from pdp.semantic.deid.recognizers.person import FrPersonContextRecognizer
from pdp.semantic.deid.recognizers.phone import FrPhoneRecognizer

NIR = [
    ("NIR : 180017512345660", [("NIR", "180017512345660")]),  # valid key
    ("N° SS : 1 80 01 75 123 456 60", [("NIR", "1 80 01 75 123 456 60")]),  # spaced
    ("N° SS : 1 80 01 75 123\n456 60", [("NIR", "1 80 01 75 123\n456 60")]),  # hard-wrapped across a line
    ("INS 2 48 03 2A 004 123 41", [("NIR", "2 48 03 2A 004 123 41")]),  # Corse-du-Sud
    ("matricule 248032B00412368", [("NIR", "248032B00412368")]),  # Haute-Corse
    ("NIR 1 80 01 75 123 456 78 (clé fausse)", [("NIR", "1 80 01 75 123 456 78")]),  # wrong key: still redacted
    ("n° SS 1.80.01.75.123.456", [("NIR", "1.80.01.75.123.456")]),  # 13 characters, no key
    ("Tél. 06 12 34 56 78", []),
    ("RPPS 10024336462", []),
    ("FINESS : 598939909", []),
    ("HbA1c 7,2 % le 12/03/2024, créatinine 95 µmol/l", []),
]

PHONE = [
    ("Portable : 06 12 34 56 78", [("TEL", "06 12 34 56 78")]),
    ("joignable au 06.12.34.56.78", [("TEL", "06.12.34.56.78")]),
    ("joignable au 06\n12 34 56 78", [("TEL", "06\n12 34 56 78")]),  # hard-wrapped across a line
    ("Tél. : 0321456789", [("TEL", "0321456789")]),
    ("tél. +33 6 12 34 56 78", [("TEL", "+33 6 12 34 56 78")]),
    ("standard 0033 (0)3 21 45 67 89", [("TEL", "0033 (0)3 21 45 67 89")]),
    ("secrétariat 03-21-45-67-89", [("TEL", "03-21-45-67-89")]),
    ("contrôle prévu le 01.03.2024", []),
    ("RPPS 10024336462", []),
    ("NT-proBNP 1 250 pg/ml, plaquettes 250 000", []),
]

EMAIL = [
    ("Courriel : jeanne.martin@laposte.net", [("EMAIL", "jeanne.martin@laposte.net")]),
    ("Mail : j-m.dupont+sante@chu-lille.fr.", [("EMAIL", "j-m.dupont+sante@chu-lille.fr")]),
    ("pas d'adresse électronique @ connue", []),
]

ADDRESS = [
    ("Domicile : 12 rue des Lilas, 59500 DOUAI", [("ADRESSE", "12 rue des Lilas"), ("ADRESSE", "59500 DOUAI")]),
    ("demeurant 4 bd Victor Hugo", [("ADRESSE", "4 bd Victor Hugo")]),
    ("vit au 8 bis avenue Jean-Jaurès depuis 2010", [("ADRESSE", "8 bis avenue Jean-Jaurès")]),
    ("lieu-dit Les Granges, 70000 Vesoul", [("ADRESSE", "lieu-dit Les Granges"), ("ADRESSE", "70000 Vesoul")]),
    ("7 Place du Marché", [("ADRESSE", "7 Place du Marché")]),
    ("demeurant 84 place du Marché, 59500 Douai", [("ADRESSE", "84 place du Marché"), ("ADRESSE", "59500 Douai")]),
    ("Adresse : 3 cours Gambetta", [("ADRESSE", "3 cours Gambetta")]),  # a number makes the ambiguous type a street
    ("2 cours de chimiothérapie", []),
    ("3 passages aux urgences en 2023", []),
    ("1 voie veineuse périphérique", []),
    ("59286 Roost-Warendin", [("ADRESSE", "59286 Roost-Warendin")]),
    ("CP : 62000", [("CODE_POSTAL", "62000")]),
    ("mise en place d'une insulinothérapie", []),
    ("au cours de l'hospitalisation", []),
    ("traitement par voie orale", []),
    ("passage aux urgences", []),
    ("Lantus 10000 UI au total", []),
]

BIRTH_DATE = [
    ("né le 14 mars 1950", [("DATE_NAISSANCE", "14 mars 1950")]),
    ("Née le 03/02/1948", [("DATE_NAISSANCE", "03/02/1948")]),
    ("DDN : 06/12/42", [("DATE_NAISSANCE", "06/12/42")]),
    ("Date de naissance : 14.03.1950", [("DATE_NAISSANCE", "14.03.1950")]),
    ("née le 1er février 1939", [("DATE_NAISSANCE", "1er février 1939")]),
    ("Hospitalisation du 29.10.2023 au 04.11.2023", []),
    ("diabète de type 2 depuis mars 2007", []),
    ("Mme MARTIN née DUPONT", []),
]

PERSON = [
    ("Copie : Docteur MACE Michèle, cardiologue", [("PERSONNE", "MACE Michèle")]),
    ("Dr Caroline RODRIGUES\nService de cardiologie", [("PERSONNE", "Caroline RODRIGUES")]),
    ("Docteur LECŒUR Anaïs\nMédecin traitant", [("PERSONNE", "LECŒUR Anaïs")]),  # the ligature Latin-1 lacks
    ("Dr Œillet BŒUF", [("PERSONNE", "Œillet BŒUF")]),
    ("Œdème des membres inférieurs", []),
    ("Je vous adresse Mme JOSETTE LE GALL, 81 ans", [("PERSONNE", "JOSETTE LE GALL")]),
    ("vu par le Pr Jean de LA FONTAINE", [("PERSONNE", "Jean de LA FONTAINE")]),
    ("Présence de sa sœur (Chloé FRANÇOIS).", [("PERSONNE", "Chloé FRANÇOIS")]),
    ("fils de Pierre MARTIN", [("PERSONNE", "Pierre MARTIN")]),
    ("épouse BERNARD, sans profession", [("PERSONNE", "BERNARD")]),
    ("Mme MARTIN née DUPONT", [("PERSONNE", "MARTIN"), ("PERSONNE", "DUPONT")]),
    ("M. J. MARTIN", [("PERSONNE", "J. MARTIN")]),
    ("Appel de M Lambert ce matin", [("PERSONNE", "Lambert")]),  # "M" without its dot
    ("métastases M0, stade M", []),
    ("Patient(e) : PASCAL\nPrénoms : Élise, Marie", [("NOM", "PASCAL"), ("PRENOM", "Élise, Marie")]),
    ("Nom d'usage : MARTIN\nNom de naissance : DUPONT", [("NOM", "MARTIN"), ("NOM", "DUPONT")]),
    ("Bien confraternellement,\n\nCaroline RODRIGUES\n", [("PERSONNE", "Caroline RODRIGUES")]),
    ("née le 12 mars 1950", []),
    ("EXAMEN CLINIQUE\nRAS", []),
    ("Madame la patiente est sortie", []),
    ("vit avec son conjoint, MPP de l'hallux droit", []),
    ("pied de Charcot, maladie de Parkinson", []),
]

HOSPITAL_ID = [
    ("IPP : 000123456", [("ID_HOPITAL", "000123456")]),
    ("NDA 2301234567", [("ID_HOPITAL", "2301234567")]),
    ("N° de séjour : S23-004512", [("ID_HOPITAL", "S23-004512")]),
    ("Séjour n° 123456", [("ID_HOPITAL", "123456")]),
    ("Numéro de dossier : 12/345678", [("ID_HOPITAL", "12/345678")]),
    ("IPP non renseigné", []),
    ("séjour de 10 jours", []),
]

CASES = [
    (FrNirRecognizer, NIR),
    (FrPhoneRecognizer, PHONE),
    (FrEmailRecognizer, EMAIL),
    (FrAddressRecognizer, ADDRESS),
    (FrBirthDateRecognizer, BIRTH_DATE),
    (FrPersonContextRecognizer, PERSON),
    (FrHospitalIdRecognizer, HOSPITAL_ID),
]


@pytest.mark.parametrize(
    ("recognizer", "text", "expected"),
    [
        pytest.param(cls, text, expected, id=f"{cls.NAME}:{text[:40]}")
        for cls, table in CASES
        for text, expected in table
    ],
)
def test_recognizer_sentence(found, recognizer, text: str, expected: list[tuple[str, str]]) -> None:
    assert found(recognizer(), text) == expected


def test_every_registered_recognizer_has_a_table() -> None:
    tested = {cls.NAME for cls, _table in CASES} | {"fr_ner_person"}  # the NER one: test_overredaction.py
    assert set(RECOGNIZERS) == tested


def test_nir_key_raises_the_score(found) -> None:
    good, bad = FrNirRecognizer().analyze("180017512345660 / 180017512345678", [])
    assert good.score > bad.score >= 0.5


def test_a_name_word_must_end_on_a_word_boundary(found) -> None:
    assert found(FrPersonContextRecognizer(), "vit avec sa mère, DT2 depuis 2010") == []
