"""`pdp bench nlp`: de-identification of the synthetic reports, scored against the generator's
``ground_truth/report_spans.jsonl``, with out-of-the-box Presidio as the reference in the same run.

Scoring (:func:`score_deid`), per document then summed:

* **recall per truth label** (PATIENT_NAME, PATIENT_FIRST_NAME, BIRTH_DATE, NIR, ADDRESS, PHONE,
  EMAIL, OTHER_PERSON_NAME): a truth span counts as found only if *every* letter and digit of it
  is inside some redacted span, whatever the placeholder type — a half-redacted name leaks;
* **precision per placeholder type**: a redacted span is right if it overlaps a truth identifier
  span (FACILITY, DATE and FACT spans are not identifiers: redacting them is over-redaction);
* **F1 per identifier group**, with the precision of the placeholder types that map to it;
* **over-redaction of clinical terms**: the share of FACT spans (clinical facts the extraction
  needs) that lose a character to a redaction;
* **throughput**: documents per CPU-second (``time.process_time``: one core's worth of work),
  model load excluded (measured apart), the documents' mean size reported.

Identity: the traits of the document's index record (``reports/index.csv``: names, birth date,
NIR), plus, in the ``vault`` mode, the person's address, postcode, phone and e-mail from
``ground_truth/identities.csv`` (what the edge gets from the vault).

The generator's noise is a floor, not a proof. The standard templates are known (the recognizers
were tuned on seed 90411's letters), so the benchmark renders the reports in the generator's
"varied" style: held-out phrasing (``report_phrases_varied.yml``) that neither the tuning nor the
tests used, plus typos, names broken across lines, hard wraps, numbered lists, copied lab tables
and dictation artefacts; and its seed and territory (20261205, Haute-Saône) are ones neither the
tuning nor the tests used (the tests use seed 31, Douaisis, standard style).
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal

IDENTIFIER_LABELS = ("PATIENT_NAME", "PATIENT_FIRST_NAME", "BIRTH_DATE", "NIR", "ADDRESS", "PHONE", "EMAIL",
                     "OTHER_PERSON_NAME")
PATIENT_LABELS = ("PATIENT_NAME", "PATIENT_FIRST_NAME", "BIRTH_DATE", "NIR", "ADDRESS", "PHONE", "EMAIL")
# placeholder type -> the truth labels it stands for (for precision per group)
_GROUP_OF_TYPE = {
    "NOM": "NAME", "PRENOM": "NAME", "PERSONNE": "NAME", "DATE_NAISSANCE": "BIRTH_DATE", "NIR": "NIR",
    "ADRESSE": "ADDRESS", "CODE_POSTAL": "ADDRESS", "TEL": "PHONE", "EMAIL": "EMAIL", "ID_HOPITAL": "ID",
}
_GROUP_LABELS = {
    "NAME": ("PATIENT_NAME", "PATIENT_FIRST_NAME", "OTHER_PERSON_NAME"), "BIRTH_DATE": ("BIRTH_DATE",),
    "NIR": ("NIR",), "ADDRESS": ("ADDRESS",), "PHONE": ("PHONE",), "EMAIL": ("EMAIL",),
}
EVAL_SEED = 20261205
# Held-out phrasing and style artefacts (typos, names broken across lines, lab tables, dictation):
# the pipes' own tests render the "standard" style only.
REPORT_STYLE = "varied"
EVAL_TERRITORY = "haute-saone"
PERSONS = 6000

Redactor = Callable[[list[tuple[str, Any]]], Iterable[list[tuple[str, int, int]]]]


def load_corpus(root: Path, *, mode: Literal["index", "vault"] = "vault") -> list[dict[str, Any]]:
    """The documents of a `pdp synth` output with their truth spans and the traits the edge knows."""
    from pdp.semantic.deid import PersonTraits

    index = {row["doc_id"]: row for row in csv.DictReader((root / "reports" / "index.csv").open(encoding="utf-8"))}
    vault: dict[str, dict[str, str]] = {}
    if mode == "vault":
        with (root / "ground_truth" / "identities.csv").open(encoding="utf-8") as f:
            vault = {row["person_id"]: row for row in csv.DictReader(f)}
    docs = []
    with (root / "ground_truth" / "report_spans.jsonl").open(encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            meta = index[rec["doc_id"]]
            contact = vault.get(str(rec["person_id"]), {})
            traits = PersonTraits.from_json({
                "birth_name": meta["birth_name"], "used_name": meta["used_name"], "first_names": meta["first_names"],
                "birth_date": meta["birth_date"], "nir": meta["nir"],
                **{k: contact.get(k) or None for k in ("address", "postcode", "phone", "email")},
            })
            text = (root / rec["file"]).read_text(encoding="utf-8")
            docs.append({"doc_id": rec["doc_id"], "text": text, "spans": rec["spans"], "traits": traits})
    return docs


def _alnum_positions(text: str, start: int, end: int) -> list[int]:
    return [i for i in range(start, end) if text[i].isalnum()]


def score_deid(docs: list[dict[str, Any]], predictions: list[list[tuple[str, int, int]]]) -> dict[str, Any]:
    """Precision, recall and F1 (see the module doc) of ``predictions`` (type, start, end) per document."""
    found: Counter[str] = Counter()
    total: Counter[str] = Counter()
    pred_ok: Counter[str] = Counter()
    pred_all: Counter[str] = Counter()
    group_ok: Counter[str] = Counter()
    group_all: Counter[str] = Counter()
    facts = facts_hit = 0
    for doc, pred in zip(docs, predictions, strict=True):
        text = doc["text"]
        covered = bytearray(len(text))
        for _t, s, e in pred:
            covered[s:e] = b"\x01" * (e - s)
        truth = [sp for sp in doc["spans"] if sp["label"] in IDENTIFIER_LABELS]
        for sp in truth:
            total[sp["label"]] += 1
            if all(covered[i] for i in _alnum_positions(text, sp["start"], sp["end"])):
                found[sp["label"]] += 1
        for sp in doc["spans"]:
            if sp["label"] == "FACT":
                facts += 1
                facts_hit += any(covered[sp["start"]:sp["end"]])
        for ptype, s, e in pred:
            hits = [sp for sp in truth if sp["start"] < e and s < sp["end"]]
            pred_all[ptype] += 1
            pred_ok[ptype] += bool(hits)
            group = _GROUP_OF_TYPE.get(ptype, "OTHER")
            group_all[group] += 1
            group_ok[group] += any(sp["label"] in _GROUP_LABELS.get(group, ()) for sp in hits)

    def ratio(a: int, b: int) -> float | None:
        return round(a / b, 4) if b else None

    recall = {label: ratio(found[label], total[label]) for label in IDENTIFIER_LABELS}
    groups = {}
    for group, labels in _GROUP_LABELS.items():
        r = ratio(sum(found[x] for x in labels), sum(total[x] for x in labels))
        p = ratio(group_ok[group], group_all[group])
        f1 = round(2 * p * r / (p + r), 4) if p and r else None
        groups[group] = {"precision": p, "recall": r, "f1": f1, "truth": sum(total[x] for x in labels)}
    patient_found = sum(found[x] for x in PATIENT_LABELS)
    patient_total = sum(total[x] for x in PATIENT_LABELS)
    return {
        "documents": len(docs),
        "truth_spans": dict(total),
        "recall": recall,
        "recall_patient": ratio(patient_found, patient_total),
        "recall_other_names": recall["OTHER_PERSON_NAME"],
        "precision": ratio(sum(pred_ok.values()), sum(pred_all.values())),
        "precision_by_type": {t: ratio(pred_ok[t], pred_all[t]) for t in sorted(pred_all)},
        "predicted_by_type": dict(sorted(pred_all.items())),
        "groups": groups,
        "clinical_facts_touched": ratio(facts_hit, facts),
    }


#: The facts the generator labels (its concepts): the extraction is scored on these only.
FACT_CONCEPTS = ("t2d", "insulin", "retinopathy", "nephropathy", "neuropathy", "foot_ulcer", "angiopathy",
                 "amputation", "dialysis", "stroke", "mi", "hypertension", "obesity", "heart_failure",
                 "severe_hypoglycaemia", "hba1c", "lvef", "ntprobnp", "weight")


def score_facts(docs: list[dict[str, Any]], predictions: list[list[Any]]) -> dict[str, Any]:
    """Precision, recall and F1 per fact type of ``predictions`` (:class:`pdp.semantic.facts.Fact`).

    A truth fact is found when a predicted fact of the same concept overlaps its span *with the
    same assertion* (a negated complication reported as present is a miss and a false positive)
    and, for a measurement, the same value (±0.05). Predicted facts of concepts the generator does
    not label (oral antidiabetics, signs, other measurements) are not scored.
    """
    tp: Counter[str] = Counter()
    # the generator labels "diabète" alone as type 2 (it knows the truth); the text does not say
    # the type, so the pipe codes it as unspecified diabetes (E14): the same fact for the score
    def concept(fact: Any) -> str:
        return "t2d" if fact.concept == "diabetes_unspecified" else fact.concept

    truth_n: Counter[str] = Counter()
    pred_n: Counter[str] = Counter()
    confusion: Counter[tuple[str, str]] = Counter()
    for doc, facts in zip(docs, predictions, strict=True):
        truth = [sp for sp in doc["spans"] if sp["label"] == "FACT" and sp["concept"] in FACT_CONCEPTS]
        preds = [f for f in facts if concept(f) in FACT_CONCEPTS]
        used: set[int] = set()
        for sp in truth:
            truth_n[sp["concept"]] += 1
            for i, f in enumerate(preds):
                if i in used or concept(f) != sp["concept"] or not (f.start < sp["end"] and sp["start"] < f.end):
                    continue
                confusion[(sp["assertion"], f.assertion)] += 1
                value_ok = sp.get("value") is None or (f.value is not None and abs(f.value - sp["value"]) <= 0.05)
                if f.assertion == sp["assertion"] and value_ok:
                    tp[sp["concept"]] += 1
                    used.add(i)
                    break
        for f in preds:
            pred_n[concept(f)] += 1

    def prf(t: int, p: int, n: int) -> dict[str, float | int | None]:
        precision = round(t / p, 4) if p else None
        recall = round(t / n, 4) if n else None
        f1 = round(2 * precision * recall / (precision + recall), 4) if precision and recall else None
        return {"precision": precision, "recall": recall, "f1": f1, "truth": n}

    per = {c: prf(tp[c], pred_n[c], truth_n[c]) for c in FACT_CONCEPTS if truth_n[c] or pred_n[c]}
    overall = prf(sum(tp.values()), sum(pred_n.values()), sum(truth_n.values()))
    f1s = [v["f1"] for v in per.values() if v["truth"]]
    return {"overall": overall, "per_concept": per,
            "min_f1": min((f or 0.0) for f in f1s) if f1s else None,
            "assertion_confusion": {f"{a}->{b}": n for (a, b), n in sorted(confusion.items())}}


def evaluate_facts(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """Score :func:`pdp.semantic.facts.extract_facts` on the corpus; documents per CPU-second."""
    from pdp.semantic.facts import extract_facts

    extract_facts(docs[0]["text"] if docs else "")  # compile outside the timing
    cpu = time.process_time()
    predictions = [extract_facts(d["text"]) for d in docs]
    cpu = time.process_time() - cpu
    out = score_facts(docs, predictions)
    out["docs_per_cpu_s"] = round(len(docs) / cpu, 1) if cpu else None
    return out


def _ours(ner: bool) -> Redactor:
    def run(items: list[tuple[str, Any]]) -> Iterable[list[tuple[str, int, int]]]:
        from pdp.semantic.deid import deidentify_many

        for result in deidentify_many(items, ner=ner):
            yield [(s.type, s.start, s.end) for s in result.spans]

    return run


def presidio_default() -> Any:
    """Out-of-the-box Presidio for French: its default registry and the same spaCy model, full pipeline."""
    import logging

    import tldextract
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider
    from presidio_analyzer.predefined_recognizers.generic import email_recognizer

    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
    # Presidio's e-mail recognizer asks tldextract, which fetches the Public Suffix List over the
    # network on first use (and logs tracebacks when there is none); give it the list bundled
    # with tldextract, the one it falls back to anyway, without the network attempt.
    offline = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)
    email_recognizer.tldextract = SimpleNamespace(extract=offline)  # type: ignore[attr-defined]
    provider = NlpEngineProvider(nlp_configuration={
        "nlp_engine_name": "spacy", "models": [{"lang_code": "fr", "model_name": "fr_core_news_md"}]})
    return AnalyzerEngine(nlp_engine=provider.create_engine(), supported_languages=["fr"])


def _reference(engine: Any) -> Redactor:
    def run(items: list[tuple[str, Any]]) -> Iterable[list[tuple[str, int, int]]]:
        for text, _traits in items:
            yield [(r.entity_type, r.start, r.end) for r in engine.analyze(text, "fr")]

    return run


def _timed(redactor: Redactor, docs: list[dict[str, Any]]) -> tuple[list[list[tuple[str, int, int]]], float, float]:
    items = [(d["text"], d["traits"]) for d in docs]
    wall, cpu = time.perf_counter(), time.process_time()
    predictions = list(redactor(items))
    return predictions, time.perf_counter() - wall, time.process_time() - cpu


def evaluate_deid(root: Path, *, mode: Literal["index", "vault"] = "vault", reference: bool = True) -> dict[str, Any]:
    """Score our de-identification (and out-of-the-box Presidio) on a `pdp synth` output directory."""
    from pdp.semantic.deid import load

    docs = load_corpus(root, mode=mode)
    started = time.perf_counter()
    load()
    load_s = time.perf_counter() - started
    out: dict[str, Any] = {"mode": mode, "documents": len(docs),
                           "mean_chars": round(sum(len(d["text"]) for d in docs) / max(1, len(docs))),
                           "model_load_s": round(load_s, 2)}
    list(_ours(True)([(d["text"], d["traits"]) for d in docs[:8]]))  # warm-up
    runs: list[tuple[str, Redactor]] = [("pdp", _ours(True)), ("pdp_rules_only", _ours(False))]
    if reference:
        runs.append(("presidio_default", _reference(presidio_default())))
    for name, redactor in runs:
        predictions, wall, cpu = _timed(redactor, docs)
        scores = score_deid(docs, predictions)
        scores["docs_per_cpu_s"] = round(len(docs) / cpu, 1) if cpu else None
        scores["docs_per_s_wall"] = round(len(docs) / wall, 1) if wall else None
        out[name] = scores
    if reference:
        out["throughput_vs_presidio_default"] = round(
            out["pdp"]["docs_per_cpu_s"] / out["presidio_default"]["docs_per_cpu_s"], 2)
    return out


def bench_nlp(persons: int = PERSONS) -> dict[str, Any]:
    """Synthesise a territory on the evaluation seed, then :func:`evaluate_deid` on its reports."""
    from pdp.synth import generate

    with tempfile.TemporaryDirectory(prefix="pdp-bench-nlp-") as tmp:
        root = Path(tmp) / "synth"
        generate(root, persons=persons, seed=EVAL_SEED, territory=EVAL_TERRITORY, force=True, workers=1,
                 report_style=REPORT_STYLE)
        result = evaluate_deid(root)
        index_only = evaluate_deid(root, mode="index", reference=False)["pdp"]
        facts = evaluate_facts(load_corpus(root, mode="index"))
    ours, ref = result["pdp"], result["presidio_default"]
    pipeline = 1.0 / (1.0 / ours["docs_per_cpu_s"] + 1.0 / facts["docs_per_cpu_s"])
    return {
        "persons": persons,
        "seed": EVAL_SEED,
        "territory": EVAL_TERRITORY,
        "report_style": REPORT_STYLE,
        "documents": result["documents"],
        "mean_chars": result["mean_chars"],
        "recall_patient": ours["recall_patient"],
        "recall_other_names": ours["recall_other_names"],
        "precision": ours["precision"],
        "clinical_facts_touched": ours["clinical_facts_touched"],
        "docs_per_cpu_s": ours["docs_per_cpu_s"],
        "rules_only_docs_per_cpu_s": result["pdp_rules_only"]["docs_per_cpu_s"],
        "presidio_default_docs_per_cpu_s": ref["docs_per_cpu_s"],
        "throughput_vs_presidio_default": result["throughput_vs_presidio_default"],
        "index_only_recall_patient": index_only["recall_patient"],
        "index_only_precision": index_only["precision"],
        "presidio_default_recall_patient": ref["recall_patient"],
        "presidio_default_recall_other_names": ref["recall_other_names"],
        "presidio_default_precision": ref["precision"],
        "facts_f1": facts["overall"]["f1"],
        "facts_precision": facts["overall"]["precision"],
        "facts_recall": facts["overall"]["recall"],
        "facts_min_f1_per_type": facts["min_f1"],
        "facts_docs_per_cpu_s": facts["docs_per_cpu_s"],
        "pipeline_docs_per_cpu_s": round(pipeline, 1),
        "target_pipeline_docs_per_cpu_s": 100.0,
        "target_facts_f1_per_type": 0.90,
        "facts_per_type": {k: v["f1"] for k, v in facts["per_concept"].items()},
        "facts_assertions": facts["assertion_confusion"],
        "model_load_s": result["model_load_s"],
        "recall": ours["recall"],
        "groups": ours["groups"],
        "load_average": round(os.getloadavg()[0], 1),
    }
