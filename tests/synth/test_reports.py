"""Free-text clinical reports: every identifier and every fact is written with its exact span.

The tests read as statements a clinician or a data engineer can check against a letter:
the patient is named as the sender knows them, a negated fact sits next to its negation,
the ground truth points at the very characters it labels, and bad input stops the render.
Persons are built here (not with the shared fixture builder) so the file stands alone.
"""

from __future__ import annotations

import csv
import io
import json
import random
import re
from collections import Counter
from dataclasses import replace
from datetime import date

import pytest

from pdp.synth.catalog import load_catalog
from pdp.synth.formats.reports import (
    INDEX_COLUMNS,
    REPORT_INDEX,
    REPORT_SPANS,
    SPAN_LABELS,
    _compile,
    render_reports,
    report_path,
    supported_concepts,
)
from pdp.synth.model import (
    Address,
    ClinicalEvent,
    ClinicalTruth,
    Facility,
    Identity,
    Person,
    Professional,
    Report,
    ReportFact,
    SourceIdentity,
    Stay,
)
from pdp.synth.output import RECORD_LINKS, Rendered
from pdp.synth.world import Commune, World

# --------------------------------------------------------------------------------------
# A small territory and its residents
# --------------------------------------------------------------------------------------

HOSPITAL = Facility("590000015", "Centre hospitalier de Douai", "hospital", "59178")
CLINIC = Facility("590000023", "Polyclinique de la Clarence", "hospital", "59350")
GP_MARTEL = Professional("10000000011", "MARTEL", "Hélène", "59178")
GP_WAUQUIER = Professional("10000000029", "WAUQUIER", "Benoît", "59350")
DR_ROUX = Professional("10000000037", "ROUX", "Jean-Michel", "59178")
DR_NGUYEN = Professional("10000000045", "NGUYEN", "Thi Lan", "59350")

MEASUREMENTS = {"hba1c": 8.2, "lvef": 35.0, "ntprobnp": 1250.0, "weight": 82.5}
NEGATION_CUE = re.compile(
    r"\bpas\b|\babsence\b|\bsans\b|\baucune?\b|\bnon\b|\bni\b|\bn'|\bne\b|\bjamais\b|négati|éliminé|exclu",
    re.IGNORECASE,
)
UNCERTAINTY_CUE = re.compile(
    r"suspicion|suspect|probable|possible|évo[qc]|à confirmer|discu|envisag|éventuel|pourrait|\?|exclure"
    r"|à évaluer|contrôler|à surveiller|à vérifier|estimé|craindre|douteux|autour de",
    re.IGNORECASE,
)
RELATIVE_WORDS = {"mère": ("mère",), "père": ("père",), "frère": ("frère",), "soeur": ("sœur", "soeur")}


def make_world(seed: int = 2021) -> World:
    return World(
        territory="douaisis",
        territory_name="Douaisis",
        seed=seed,
        reference_date=date(2024, 6, 30),
        history_start=date(2015, 1, 1),
        communes=(
            Commune("59178", "Douai", "59500", 39700),
            Commune("59350", "Saint-Amand-les-Eaux", "59230", 16000),
            Commune("59569", "Sin-le-Noble", "59450", 15700),
        ),
        hospitals=(HOSPITAL, CLINIC),
        labs=(),
        pharmacies=(),
        gps=(GP_MARTEL, GP_WAUQUIER),
        specialists=(DR_ROUX, DR_NGUYEN),
        associations=("Association diabète Douaisis",),
        catalog=load_catalog(),
    )


def make_person(
    person_id: int,
    *,
    birth_name: str,
    used_name: str | None,
    first_names: tuple[str, ...],
    sex: str,
    reports: list[Report],
    gp: Professional | None = GP_MARTEL,
    stays: list[Stay] | None = None,
    events: list[ClinicalEvent] | None = None,
) -> Person:
    return Person(
        person_id=person_id,
        territory="douaisis",
        identity=Identity(
            birth_name=birth_name,
            used_name=used_name,
            first_names=first_names,
            sex=sex,  # type: ignore[arg-type]
            birth_date=date(1950, 3, 12),
            birth_place="59178",
            nir=("2" if sex == "F" else "1") + "5003591830452" + "7",
        ),
        address=Address("12 rue des Tilleuls", "59500", "59178", "Douai"),
        phone="0612345678",
        email="c.martin@example.org",
        gp=gp,
        truth=ClinicalTruth(t2d=True, bmi=33.4, diagnosis_date=date(2015, 4, 2), hf_diagnosis_date=date(2021, 1, 5)),
        events=events or [],
        stays=stays or [],
        reports=reports,
    )


def identity_without_nir(person: Person, source: str) -> SourceIdentity:
    """The report senders' view: first names joined with commas, no NIR."""
    assert source == "reports"
    ident = person.identity
    return SourceIdentity(
        birth_name=ident.birth_name,
        used_name=ident.used_name,
        first_names=", ".join(ident.first_names),
        sex=ident.sex,
        birth_date=ident.birth_date,
        birth_place=ident.birth_place,
        nir=None,
    )


def identity_with_nir(person: Person, source: str) -> SourceIdentity:
    return replace(identity_without_nir(person, source), nir=person.identity.nir)


ALL_FACTS: list[ReportFact] = [
    ReportFact(concept, assertion, value=MEASUREMENTS.get(concept) if assertion != "negated" else None)
    for concept in sorted(supported_concepts())
    for assertion in ("affirmed", "negated", "hypothesis", "family")
    if not (concept in MEASUREMENTS and assertion == "family")
]


def facts_for(doc_number: int) -> tuple[ReportFact, ...]:
    """A varied, reproducible set of facts: over many documents every concept × assertion occurs."""
    rng = random.Random(doc_number)
    facts = rng.sample(ALL_FACTS, rng.randint(1, 9))
    relatives = ("mère", "père", "frère", "soeur", None)
    return tuple(
        replace(f, relative=relatives[rng.randrange(len(relatives))]) if f.assertion == "family" else f for f in facts
    )


def make_reports(person_number: int, count: int, gp: Professional | None) -> tuple[list[Report], list[Stay]]:
    reports: list[Report] = []
    stays: list[Stay] = []
    for k in range(count):
        n = person_number * 10 + k
        day = date(2023, 1 + n % 12, 1 + n % 27)
        kind = n % 4
        if kind == 0:
            stay = Stay(f"S{n:06d}", HOSPITAL.finess, date(2022, 12, 20), date(2022, 12, 27), "J18.9", (), (), True)
            stays.append(stay)
            reports.append(
                Report(f"DOC{n:06d}", "discharge_letter", day, DR_ROUX, HOSPITAL.finess, facts_for(n), stay.stay_id)
            )
        elif kind == 1:
            reports.append(Report(f"DOC{n:06d}", "consultation_note", day, DR_NGUYEN, CLINIC.finess, facts_for(n)))
        elif kind == 2 and gp is not None:
            reports.append(Report(f"DOC{n:06d}", "consultation_note", day, gp, gp.rpps, facts_for(n)))
        else:
            reports.append(Report(f"DOC{n:06d}", "consultation_note", day, DR_ROUX, DR_ROUX.rpps, facts_for(n)))
    return reports, stays


NAMES = [
    ("LEFÈVRE-DUPONT", "N'DIAYE", ("Marie-Hélène", "Françoise"), "F"),
    ("DE LA FONTAINE", None, ("Jean-Baptiste", "Noël"), "M"),
    ("ÉLOI", None, ("Zoé",), "F"),
    ("BOËL", "SAINT-MARTIN", ("Anne-Sophie", "Chloé", "Inès"), "F"),
    ("D'ALMEIDA", None, ("José", "Luís"), "M"),
    ("MÜLLER", "GUÉRIN", ("Maëlle",), "F"),
]


def make_population(size: int, reports_each: int = 3) -> list[Person]:
    persons = []
    for i in range(size):
        birth, used, firsts, sex = NAMES[i % len(NAMES)]
        gp = (GP_MARTEL, GP_WAUQUIER, None)[i % 3]
        reports, stays = make_reports(i, reports_each, gp)
        events = [
            ClinicalEvent(
                f"E{i}", "diagnosis", date(2019, 5, 3), "CIM-10", "E11.3", "Rétinopathie", "hospital", HOSPITAL.finess
            ),
            ClinicalEvent(
                f"F{i}", "diagnosis", date(2020, 2, 1), "CIM-10", "I63.9", "AVC", "hospital", HOSPITAL.finess
            ),
        ]
        persons.append(
            make_person(
                i,
                birth_name=birth,
                used_name=used,
                first_names=firsts,
                sex=sex,
                reports=reports,
                gp=gp,
                stays=stays,
                events=events,
            )
        )
    return persons


def documents(rendered: list[Rendered]) -> dict[str, str]:
    return {r.spec.path: r.text for r in rendered if r.spec.path.endswith(".txt")}


def ground_truth(rendered: list[Rendered]) -> list[dict]:
    (spans,) = [r for r in rendered if r.spec == REPORT_SPANS]
    return [json.loads(line) for line in spans.text.splitlines()]


def sentence_around(text: str, start: int, end: int) -> str:
    """The sentence holding a span: cut at line breaks and at periods ending a sentence ("M." is not one)."""
    bounds = [m.start() for m in re.finditer(r"\n|(?<!\bM)\.(?=\s|$)", text)]
    left = max((b + 1 for b in bounds if b < start), default=0)
    right = min((b for b in bounds if b >= end), default=len(text))
    return text[left:right]


@pytest.fixture(scope="module")
def population() -> list[Person]:
    return make_population(60)


@pytest.fixture(scope="module")
def rendered(population: list[Person]) -> list[Rendered]:
    return render_reports(population, make_world(), identity_without_nir)


@pytest.fixture(scope="module")
def truth_by_doc(rendered: list[Rendered]) -> dict[str, dict]:
    return {record["doc_id"]: record for record in ground_truth(rendered)}


@pytest.fixture(scope="module")
def reports_by_doc(population: list[Person]) -> dict[str, tuple[Person, Report]]:
    return {report.doc_id: (person, report) for person in population for report in person.reports}


# --------------------------------------------------------------------------------------
# Spans are exact
# --------------------------------------------------------------------------------------


def test_every_span_labels_exactly_the_characters_it_claims(rendered: list[Rendered], truth_by_doc: dict) -> None:
    docs = documents(rendered)
    assert len(docs) == len(truth_by_doc) == 180
    for record in truth_by_doc.values():
        text = docs[record["file"]]
        previous_end = 0
        for span in record["spans"]:
            assert text[span["start"] : span["end"]] == span["text"], span
            assert span["label"] in SPAN_LABELS
            assert span["text"] == span["text"].strip() and span["text"]
            assert span["start"] >= previous_end, "spans never overlap and come in text order"
            previous_end = span["end"]


def test_every_fact_of_the_report_is_written_once_with_its_assertion(truth_by_doc: dict, reports_by_doc: dict) -> None:
    for doc_id, (_, report) in reports_by_doc.items():
        written = Counter(
            (s["concept"], s["assertion"], s.get("value"))
            for s in truth_by_doc[doc_id]["spans"]
            if s["label"] == "FACT"
        )
        expected = Counter((f.concept, f.assertion, f.value) for f in report.facts)
        assert written == expected, doc_id


def test_every_concept_and_assertion_is_exercised(truth_by_doc: dict) -> None:
    seen = {(s["concept"], s["assertion"]) for r in truth_by_doc.values() for s in r["spans"] if s["label"] == "FACT"}
    assert seen == {(f.concept, f.assertion) for f in ALL_FACTS}


def test_a_negated_fact_shares_its_sentence_with_a_negation_cue(rendered: list[Rendered], truth_by_doc: dict) -> None:
    docs = documents(rendered)
    checked = 0
    for record in truth_by_doc.values():
        text = docs[record["file"]]
        for span in record["spans"]:
            if span["label"] == "FACT" and span["assertion"] == "negated":
                sentence = sentence_around(text, span["start"], span["end"])
                assert NEGATION_CUE.search(sentence), sentence
                checked += 1
    assert checked > 50


def test_a_hypothesis_shares_its_sentence_with_an_uncertainty_cue(rendered: list[Rendered], truth_by_doc: dict) -> None:
    docs = documents(rendered)
    for record in truth_by_doc.values():
        text = docs[record["file"]]
        for span in record["spans"]:
            if span["label"] == "FACT" and span["assertion"] == "hypothesis":
                sentence = sentence_around(text, span["start"], span["end"])
                assert UNCERTAINTY_CUE.search(sentence), sentence


def test_a_family_history_names_the_relative_next_to_the_fact(rendered: list[Rendered], truth_by_doc: dict) -> None:
    docs = documents(rendered)
    for record in truth_by_doc.values():
        text = docs[record["file"]]
        for span in record["spans"]:
            if span["label"] == "FACT" and span["assertion"] == "family":
                sentence = sentence_around(text, span["start"], span["end"]).lower()
                assert any(word in sentence for word in RELATIVE_WORDS[span["relative"]]), sentence


def test_an_affirmed_fact_is_not_written_next_to_a_negation_of_itself(
    rendered: list[Rendered], truth_by_doc: dict
) -> None:
    """Negative case: "pas de" must never sit right before an affirmed fact's span."""
    docs = documents(rendered)
    for record in truth_by_doc.values():
        text = docs[record["file"]]
        for span in record["spans"]:
            if span["label"] == "FACT" and span["assertion"] == "affirmed":
                before = text[max(0, span["start"] - 12) : span["start"]].lower()
                assert not re.search(r"\b(pas|absence|sans|aucune?|ni) (de |d')?$", before), before + span["text"]


def test_measurements_are_quoted_with_a_french_decimal_comma(truth_by_doc: dict) -> None:
    quoted = {
        s["concept"]: s["text"]
        for r in truth_by_doc.values()
        for s in r["spans"]
        if s["label"] == "FACT" and s["assertion"] == "affirmed" and s["concept"] in MEASUREMENTS
    }
    assert "8,2" in quoted["hba1c"] and "8.2" not in quoted["hba1c"]
    assert "35" in quoted["lvef"] and "35,0" not in quoted["lvef"]
    assert re.search(r"1\s?\u202f?250", quoted["ntprobnp"])
    assert "82,5" in quoted["weight"]


# --------------------------------------------------------------------------------------
# Personal identifiers
# --------------------------------------------------------------------------------------


def test_the_patient_is_named_as_the_sender_wrote_the_name(
    rendered: list[Rendered], truth_by_doc: dict, reports_by_doc: dict
) -> None:
    docs = documents(rendered)
    for doc_id, (person, _) in reports_by_doc.items():
        record = truth_by_doc[doc_id]
        text = docs[record["file"]]
        ident = person.identity
        assert (ident.used_name or ident.birth_name) in text, "the header keeps the source spelling"
        names = {s["text"].upper() for s in record["spans"] if s["label"] == "PATIENT_NAME"}
        assert names <= {ident.birth_name.upper(), (ident.used_name or "").upper()}
        assert ident.birth_name.upper() in names
        firsts = {s["text"] for s in record["spans"] if s["label"] == "PATIENT_FIRST_NAME"}
        assert ident.first_names[0] in firsts, "compound first names stay whole: Marie-Hélène, not Marie"
        assert firsts <= set(ident.first_names)
        assert any(s["label"] == "BIRTH_DATE" for s in record["spans"])


def test_a_woman_with_a_used_name_is_written_with_both_names(
    rendered: list[Rendered], truth_by_doc: dict, reports_by_doc: dict
) -> None:
    for doc_id, (person, _) in reports_by_doc.items():
        if person.identity.used_name is None:
            continue
        names = {s["text"].upper() for s in truth_by_doc[doc_id]["spans"] if s["label"] == "PATIENT_NAME"}
        assert names == {person.identity.birth_name.upper(), person.identity.used_name.upper()}


def test_without_a_known_nir_no_nir_is_written(
    rendered: list[Rendered], truth_by_doc: dict, reports_by_doc: dict
) -> None:
    docs = documents(rendered)
    for doc_id, (person, _) in reports_by_doc.items():
        record = truth_by_doc[doc_id]
        assert not [s for s in record["spans"] if s["label"] == "NIR"]
        assert person.identity.nir not in docs[record["file"]].replace(" ", "")


def test_a_known_nir_is_written_sometimes_and_always_labelled() -> None:
    persons = make_population(20)
    rendered = render_reports(persons, make_world(), identity_with_nir)
    docs = documents(rendered)
    nir_spans = 0
    for record in ground_truth(rendered):
        person = persons[record["person_id"]]
        text = docs[record["file"]]
        spans = [s for s in record["spans"] if s["label"] == "NIR"]
        for s in spans:
            assert s["text"].replace(" ", "") == person.identity.nir
        assert text.replace(" ", "").count(person.identity.nir) == len(spans), "no unlabelled NIR"
        nir_spans += len(spans)
    assert 0 < nir_spans < 60


def test_other_people_are_labelled_and_never_borrow_the_patient_s_names(
    truth_by_doc: dict, reports_by_doc: dict
) -> None:
    gp_named = 0
    for doc_id, (person, report) in reports_by_doc.items():
        others = {s["text"].upper() for s in truth_by_doc[doc_id]["spans"] if s["label"] == "OTHER_PERSON_NAME"}
        assert report.author.family_name.upper() in others, "the author signs the letter"
        assert person.identity.birth_name.upper() not in others
        assert (person.identity.used_name or "").upper() not in others
        if person.gp is not None and report.author != person.gp and person.gp.family_name.upper() in others:
            gp_named += 1
    assert gp_named > 30, "letters are addressed to the patient's GP by name"


def test_a_letter_to_the_gp_opens_with_cher_confrere(rendered: list[Rendered]) -> None:
    openings = [t for t in documents(rendered).values() if re.search(r"^(Cher|Chère|Mon cher)", t, re.MULTILINE)]
    assert len(openings) == len(documents(rendered))


# --------------------------------------------------------------------------------------
# Files, index, ground truth, determinism
# --------------------------------------------------------------------------------------


def test_documents_are_sharded_by_a_hash_of_their_id(rendered: list[Rendered]) -> None:
    paths = list(documents(rendered))
    assert all(re.fullmatch(r"reports/[0-9a-f]{2}/DOC\d{6}\.txt", p) for p in paths)
    assert len({p.split("/")[1] for p in paths}) > 50
    assert report_path("DOC000001") == report_path("DOC000001")
    assert all(r.spec.encoding == "utf-8" for r in rendered if r.spec.path.endswith(".txt"))


def test_the_index_parses_with_the_csv_module_one_row_per_document(
    rendered: list[Rendered], reports_by_doc: dict
) -> None:
    (index,) = [r for r in rendered if r.spec == REPORT_INDEX]
    rows = list(csv.DictReader(io.StringIO(REPORT_INDEX.header + index.text)))
    assert tuple(rows[0]) == INDEX_COLUMNS
    assert len(rows) == index.records == len(reports_by_doc)
    assert {row["file"] for row in rows} == set(documents(rendered))
    for row in rows:
        person, report = reports_by_doc[row["doc_id"]]
        assert row["first_names"] == ", ".join(person.identity.first_names), "commas inside a field are quoted"
        assert row["nir"] == ""
        assert row["author_rpps"] == report.author.rpps
        assert row["sender_finess_or_rpps"] == report.facility
        assert row["date"] == report.day.isoformat()
        assert row["birth_date"] == "1950-03-12"


def test_each_document_has_one_ground_truth_line_and_one_record_link(
    rendered: list[Rendered], reports_by_doc: dict
) -> None:
    records = ground_truth(rendered)
    assert [r["doc_id"] for r in records] == list(reports_by_doc)
    (links,) = [r for r in rendered if r.spec == RECORD_LINKS]
    rows = list(csv.reader(io.StringIO(links.text)))
    assert len(rows) == links.records == len(records)
    for row, record in zip(rows, records, strict=True):
        assert row == ["report", record["file"], record["doc_id"], str(record["person_id"])]


def test_the_same_seed_gives_the_same_bytes_and_another_seed_other_letters(population: list[Person]) -> None:
    first = render_reports(population, make_world(7), identity_without_nir)
    second = render_reports(population, make_world(7), identity_without_nir)
    other = render_reports(population, make_world(8), identity_without_nir)
    assert [(r.spec, r.text, r.records) for r in first] == [(r.spec, r.text, r.records) for r in second]
    assert documents(first) != documents(other)


def test_a_document_does_not_depend_on_the_chunk_it_was_rendered_in(
    population: list[Person], rendered: list[Rendered]
) -> None:
    world = make_world()
    one_by_one: dict[str, str] = {}
    for person in population[:10]:
        one_by_one.update(documents(render_reports([person], world, identity_without_nir)))
    together = documents(rendered)
    assert all(together[path] == text for path, text in one_by_one.items())


def test_layouts_and_phrasings_vary_between_documents(rendered: list[Rendered]) -> None:
    texts = list(documents(rendered).values())
    first_lines_after_salutation = {t.split("\n\n")[3][:25] for t in texts if t.count("\n\n") > 3}
    assert len(first_lines_after_salutation) > 20
    assert any("\n- " in t or "\n• " in t for t in texts), "some letters use bullets"
    assert any("DT2" in t for t in texts) and any("diabète de type 2" in t.lower() for t in texts)


def test_persons_without_reports_give_an_empty_index_and_no_document() -> None:
    person = make_person(1, birth_name="MARTIN", used_name=None, first_names=("Paul",), sex="M", reports=[])
    rendered = render_reports([person], make_world(), identity_without_nir)
    assert documents(rendered) == {}
    assert [(r.spec, r.text, r.records) for r in rendered] == [(REPORT_INDEX, "", 0), (REPORT_SPANS, "", 0)]


# --------------------------------------------------------------------------------------
# Bad input stops the render, naming what is wrong
# --------------------------------------------------------------------------------------


def _render_one(*facts: ReportFact, facility: str = HOSPITAL.finess, doc_id: str = "DOC999999") -> list[Rendered]:
    report = Report(doc_id, "consultation_note", date(2024, 2, 1), DR_ROUX, facility, facts)
    person = make_person(1, birth_name="MARTIN", used_name=None, first_names=("Paul",), sex="M", reports=[report])
    return render_reports([person], make_world(), identity_without_nir)


def test_an_unknown_concept_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="unknown concept 'gout'"):
        _render_one(ReportFact("t2d", "affirmed"), ReportFact("gout", "affirmed"))


@pytest.mark.parametrize(
    ("fact", "message"),
    [
        (ReportFact("hba1c", "affirmed"), "needs a finite value"),
        (ReportFact("hba1c", "affirmed", value=float("nan")), "needs a finite value"),
        (ReportFact("hba1c", "family", value=7.0), "no family history"),
        (ReportFact("lvef", "negated", value=40.0), "cannot carry a value"),
        (ReportFact("t2d", "affirmed", value=7.0), "takes no value"),
        (ReportFact("t2d", "family", relative="cousin"), "unknown relative 'cousin'"),
        (ReportFact("t2d", "affirmed", relative="mère"), "non-family fact"),
        (ReportFact("t2d", "maybe"), "unknown assertion 'maybe'"),  # type: ignore[arg-type]
    ],
)
def test_a_fact_the_text_cannot_state_truthfully_is_refused(fact: ReportFact, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _render_one(fact)


def test_an_unknown_sender_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown sender '999999999'"):
        _render_one(ReportFact("t2d", "affirmed"), facility="999999999")


@pytest.mark.parametrize("doc_id", ["../etc/passwd", "a/b", "", "DOC 1"])
def test_a_doc_id_unusable_as_a_file_name_is_refused(doc_id: str) -> None:
    with pytest.raises(ValueError, match="not usable as a file name"):
        _render_one(ReportFact("t2d", "affirmed"), doc_id=doc_id)


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("pas de rétinopathie", "expected 1 fact span"),
        ("[[HTA]] et [[AVC]]", "expected 1 fact span"),
        ("[[HTA {depuis}]]", "cannot sit inside a fact span"),
        ("[[HTA]]{inconnu}", "not allowed here"),
        ("[[HTA ]]", "ends with a space"),
        ("[[HTA]].", "no final period"),
        ("[[HTA", "not closed"),
    ],
)
def test_the_phrase_file_refuses_a_malformed_template(template: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _compile(template, frozenset({"depuis"}), spans=1, where="test")
