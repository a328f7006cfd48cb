"""The engine: placeholders and offsets, overlaps, over-redaction of clinical words, and safety
(no text in logs or errors). The model is loaded once for the session (``deid`` fixture)."""

from __future__ import annotations

import logging
from datetime import date
from pathlib import Path

import pytest

from pdp.semantic.deid import AllowListError, DeidError, PersonTraits, deidentify
from pdp.semantic.deid.allowlist import load_clinical_terms
from pdp.semantic.deid.engine import _Candidate, merge

LETTER = (
    "Centre hospitalier de Douai\nService de cardiologie\n\nDr Caroline RODRIGUES\n\n"
    "Patient : MARTIN née DUPONT\nPrénom(s) : Jeanne\nDDN : 14/03/1950\nNIR : 2 50 03 75 123 456 06\n"
    "Adresse : 12 rue des Lilas, 59500 DOUAI\nTél. : 06 12 34 56 78\nIPP : 000123456\n\n"
    "Chère consœur,\nJ'ai vu Mme Jeanne MARTIN, 74 ans, accompagnée de sa fille (Claire BERNARD). "
    "Diabète de type 2 sous Metformine et Lantus, HbA1c 8,1 %. Pied de Charcot. Kardegic 75 mg.\n\n"
    "Bien confraternellement,\nCaroline RODRIGUES\n"
)
TRAITS = PersonTraits(birth_name="DUPONT", used_name="MARTIN", first_names="Jeanne", birth_date=date(1950, 3, 14))


def test_placeholders_and_offsets_are_consistent(deid) -> None:
    result = deidentify(LETTER, TRAITS)
    for span in result.spans:
        assert result.text[span.out_start:span.out_end] == f"<{span.type}>"
    # rebuilding the output from the original and the spans gives the output
    rebuilt, pos = [], 0
    for span in result.spans:
        rebuilt += [LETTER[pos:span.start], f"<{span.type}>"]
        pos = span.end
    assert "".join([*rebuilt, LETTER[pos:]]) == result.text
    for word in ("RODRIGUES", "Caroline", "MARTIN", "DUPONT", "Jeanne", "14/03/1950", "123 456", "Lilas", "DOUAI",
                 "06 12", "000123456", "Claire", "BERNARD"):
        assert word not in result.text, word
    for word in ("Metformine", "Lantus", "HbA1c 8,1 %", "Charcot", "Kardegic", "74 ans", "Diabète de type 2"):
        assert word in result.text, word
    assert "Mme <PRENOM> <NOM>" in result.text and "Dr <PERSONNE>" in result.text


def test_same_input_same_output(deid) -> None:
    assert deidentify(LETTER, TRAITS) == deidentify(LETTER, TRAITS)


def test_overlaps_merge_by_priority_then_length() -> None:
    text = "Dr Jean MARTIN, 12 rue Martin"
    cands = [
        _Candidate("PERSONNE", 3, 14, 0.85, "ctx"),
        _Candidate("NOM", 8, 14, 1.0, "identity"),
        _Candidate("NOM", 27, 33, 1.0, "identity"),
        _Candidate("ADRESSE", 16, 29, 0.85, "street"),
    ]
    for order in (cands, cands[::-1]):
        spans = merge(order, len(text), text)
        assert [(s.type, text[s.start:s.end]) for s in spans] == [
            ("PERSONNE", "Jean"), ("NOM", "MARTIN"), ("ADRESSE", "12 rue Martin")
        ]


CLINICAL = [
    "Traitement : Metformine 1000 mg x2, Lantus 20 UI le soir, Kardegic 75 mg.",
    "HbA1c à 7,8 %, créatinine 95 µmol/l, DFG 62 ml/min.",
    "Ostéoarthropathie de Charcot du pied droit. Maladie de Parkinson débutante.",
    "ANTÉCÉDENTS PERSONNELS :\n- Cholécystectomie.\n- Arthrose des genoux.\n\nEXAMEN CLINIQUE :\nAbdomen souple.",
    "Ionogramme sanguin normal. Echographie cardiaque : FEVG 45 %. NYHA II.",
    "Glucophage, Januvia, Ozempic 0,5 mg par semaine, Tahor 20 mg.",
    "Au total : insuffisance cardiaque à FEVG altérée, Entresto à introduire.",
]


@pytest.mark.parametrize("sentence", CLINICAL, ids=[s[:30] for s in CLINICAL])
def test_clinical_words_are_not_redacted(deid, sentence: str) -> None:
    assert deid(sentence) == []


def test_the_patients_name_is_redacted_even_if_it_is_a_listed_term(deid) -> None:
    charcot = PersonTraits(birth_name="CHARCOT", first_names="Paul")
    assert deid("M. Paul CHARCOT", charcot) == [("PRENOM", "Paul"), ("NOM", "CHARCOT")]


def test_clinical_terms_file_is_validated(tmp_path: Path) -> None:
    cases = {
        "dup": "version: 1\ncategories:\n  a: [lantus]\n  b: [lantus]\n",
        "accent": "version: 1\ncategories:\n  a: [Métformine]\n",
        "unknown": "version: 1\ncategories:\n  a: [x]\nextra: 1\n",
        "empty": "version: 1\ncategories:\n  a: []\n",
        "version": "version: 0\ncategories:\n  a: [x]\n",
    }
    for name, body in cases.items():
        path = tmp_path / f"{name}.yml"
        path.write_text(body, encoding="utf-8")
        with pytest.raises(AllowListError):
            load_clinical_terms(path)
    with pytest.raises(AllowListError, match="cannot be read"):
        load_clinical_terms(tmp_path / "missing.yml")


def test_no_text_in_logs(deid, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        deidentify(LETTER, TRAITS)
    for word in ("RODRIGUES", "MARTIN", "DUPONT", "Jeanne", "Lilas", "06 12"):
        assert word not in caplog.text


def test_errors_carry_no_text(deid, monkeypatch: pytest.MonkeyPatch) -> None:
    from pdp.semantic.deid.recognizers.phone import FrPhoneRecognizer

    def boom(self, text, entities, nlp_artifacts=None):  # a failure whose message holds the text
        raise ValueError(f"cannot parse {text!r}")

    monkeypatch.setattr(FrPhoneRecognizer, "analyze", boom)
    with pytest.raises(DeidError) as err:
        deidentify("Mme Jeanne MARTIN", TRAITS)
    assert "MARTIN" not in str(err.value) and err.value.__cause__ is None and err.value.__suppress_context__
    assert "ValueError" in str(err.value)


NO_CONTEXT = [
    ("Vue ce jour avec Sophie Lambert qui l'accompagne.", "Vue ce jour avec <PERSONNE> qui l'accompagne."),
    ("Le dossier a été discuté avec Jean-Pierre Morel en RCP.", "Le dossier a été discuté avec <PERSONNE> en RCP."),
]


@pytest.mark.parametrize(("text", "expected"), NO_CONTEXT, ids=[t[:30] for t, _ in NO_CONTEXT])
def test_the_model_finds_names_without_context(deid, text: str, expected: str) -> None:
    assert deidentify(text).text == expected
    assert deidentify(text, ner=False).text == text  # no rule would have found them


def test_the_model_reads_only_lines_that_can_hold_a_name() -> None:
    from pdp.semantic.deid.recognizers.ner import model_view

    text = "ANTÉCÉDENTS :\n- Arthrose.\nSous Metformine et Lantus.\nVue avec Sophie Lambert.\n"
    view = model_view(text)
    assert len(view) == len(text)
    assert view.splitlines() == [" " * 13, " " * 11, " " * 26, "Vue avec Sophie Lambert."]
