"""The evaluation on a small synthetic territory (seed 31, not the benchmark's 90411): the
scoring itself, and a floor on the figures so a regression in a recognizer shows here."""

from __future__ import annotations

from pathlib import Path

import pytest

from pdp.bench.nlp import evaluate_deid, evaluate_facts, load_corpus, score_deid, score_facts


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pdp.synth import generate

    root = tmp_path_factory.mktemp("deid-corpus") / "synth"
    generate(root, persons=400, seed=31, territory="douaisis", force=True, workers=1)
    return root


def test_scoring_counts_partial_redaction_as_a_miss() -> None:
    doc = {"text": "Dr Jean MARTIN, HbA1c 7 %", "traits": None, "spans": [
        {"start": 3, "end": 7, "label": "OTHER_PERSON_NAME"}, {"start": 8, "end": 14, "label": "OTHER_PERSON_NAME"},
        {"start": 16, "end": 25, "label": "FACT"}]}
    scores = score_deid([doc], [[("PERSONNE", 3, 7), ("PERSONNE", 9, 14), ("PERSONNE", 16, 21)]])
    assert scores["recall"]["OTHER_PERSON_NAME"] == 0.5  # "M" of MARTIN left: a miss
    assert scores["precision"] == round(2 / 3, 4)  # "HbA1c" redacted: wrong
    assert scores["clinical_facts_touched"] == 1.0


def test_figures_on_a_small_territory(deid, corpus: Path) -> None:
    docs = load_corpus(corpus)
    assert len(docs) >= 15
    result = evaluate_deid(corpus, reference=False)
    ours = result["pdp"]
    assert ours["recall_patient"] >= 0.99
    assert ours["recall_other_names"] >= 0.95
    assert ours["precision"] >= 0.90
    assert ours["clinical_facts_touched"] <= 0.01


def test_fact_scoring_counts_a_wrong_assertion_twice() -> None:
    from pdp.semantic.facts import extract_facts

    text = "Pas de rétinopathie. HbA1c à 7,5 %."
    doc = {"text": text, "spans": [
        {"start": 7, "end": 19, "label": "FACT", "concept": "retinopathy", "assertion": "affirmed"},
        {"start": 21, "end": 34, "label": "FACT", "concept": "hba1c", "assertion": "affirmed", "value": 7.5}]}
    scores = score_facts([doc], [extract_facts(text)])
    assert scores["per_concept"]["retinopathy"] == {"precision": 0.0, "recall": 0.0, "f1": None, "truth": 1}
    assert scores["per_concept"]["hba1c"]["f1"] == 1.0
    assert scores["assertion_confusion"] == {"affirmed->affirmed": 1, "affirmed->negated": 1}


def test_fact_figures_on_a_small_territory(corpus: Path) -> None:
    """A floor (the generator's own phrasing: not a proof of accuracy on real letters)."""
    result = evaluate_facts(load_corpus(corpus, mode="index"))
    assert result["overall"]["truth"] >= 50
    assert result["overall"]["f1"] >= 0.95
    assert all(v["f1"] is not None and v["f1"] >= 0.9 for v in result["per_concept"].values() if v["truth"] >= 5)
