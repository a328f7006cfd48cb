"""The guide docs/adding-a-source.md, followed literally: a new source added by a spec only.

The spec and the sample file are read from the guide's own code blocks, so the guide cannot
drift from what works: a new delimited source (a vaccination centre) is validated, listed,
discovered and parsed through the registry with no code change.
"""

from __future__ import annotations

import re
import shutil
from datetime import date
from pathlib import Path

import pytest

from pdp.ingest import (
    Counts,
    Quarantined,
    ReasonCode,
    SourceRecord,
    SpecError,
    load_registry,
    parse_directory,
    sources_list,
    sources_validate,
)
from pdp.ingest.parsers import parser_names
from pdp.ingest.registry import SOURCES_DIR

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "adding-a-source.md"


def _block(language: str, index: int = 0) -> str:
    blocks = re.findall(rf"```{language}\n(.*?)```", GUIDE.read_text(encoding="utf-8"), flags=re.S)
    return blocks[index]


@pytest.fixture()
def registry_dir(tmp_path: Path) -> Path:
    """A copy of pdp/ingest/sources/ with the guide's new spec added (step 2)."""
    folder = tmp_path / "sources"
    shutil.copytree(SOURCES_DIR, folder)
    (folder / "vaccination.yml").write_text(_block("yaml"), encoding="utf-8")
    return folder


@pytest.fixture()
def ingest_root(tmp_path: Path) -> Path:
    """The sender's export dropped where the spec's files glob says (step 4)."""
    root = tmp_path / "incoming"
    (root / "vaccination").mkdir(parents=True)
    (root / "vaccination" / "2025-10.csv").write_text(_block("csv"), encoding="utf-8")
    return root


def test_step_3_the_new_spec_validates_and_is_listed(registry_dir: Path) -> None:
    spec = sources_validate(registry_dir / "vaccination.yml")
    assert spec.format in parser_names()  # a known format: no parser written
    rows = {row["name"]: row for row in sources_list(load_registry(registry_dir))}
    assert rows["vaccination"]["produces"] == ["drug"]
    assert rows["vaccination"]["files"] == ["vaccination/*.csv"]


def test_step_3_a_mistake_in_the_spec_gives_the_guides_one_line_error(registry_dir: Path) -> None:
    example = re.search(r"`(vaccination\.yml: events\.0\.code_system: [^`]*)`", GUIDE.read_text(encoding="utf-8"))
    assert example is not None
    path = registry_dir / "vaccination.yml"
    path.write_text(path.read_text(encoding="utf-8").replace("code_system: ATC\n", "code_system: ATC5\n"), "utf-8")
    with pytest.raises(SpecError) as caught:
        sources_validate(path)
    assert str(caught.value) == example.group(1)


def test_step_4_the_export_is_parsed_through_the_registry(registry_dir: Path, ingest_root: Path) -> None:
    run = parse_directory(ingest_root, load_registry(registry_dir), today=date(2026, 1, 1))
    outcomes = list(run)
    records = [o for o in outcomes if isinstance(o, SourceRecord)]
    quarantined = [o for o in outcomes if isinstance(o, Quarantined)]

    assert run.counts == {("vaccination", "vaccination/2025-10.csv"): Counts(4, 2, 2)}
    assert repr(Counts(4, 2, 2)) in GUIDE.read_text(encoding="utf-8"), "the guide shows what the code prints"
    assert [(q.position, q.reason_code) for q in quarantined] == [
        (3, ReasonCode.NIR_INVALID),
        (4, ReasonCode.IDENTITY_MISSING),
    ]
    assert run.unmatched == ()

    first, second = records
    assert (first.record_id, first.position) == ("VAC-0001", 1)
    assert first.identity.birth_name == "MARTIN" and first.identity.birth_date == date(1957, 3, 12)
    (event,) = first.events
    assert (event.domain, event.code_system, event.code, event.start_date) == (
        "drug",
        "ATC",
        "J07BB02",
        date(2025, 10, 14),
    )
    assert event.provider == "590000123" and event.visit_key == "VAC-0001"
    assert dict(second.attributes) == {"cip13": "3400930004562", "vaccine_batch": "L2025B"}
    assert second.identity.first_names == "Paul Henri" and second.identity.sex == "M"


def test_step_4_a_latin1_export_of_the_same_file_parses_the_same(registry_dir: Path, ingest_root: Path) -> None:
    utf8 = list(parse_directory(ingest_root, load_registry(registry_dir), today=date(2026, 1, 1)))
    export = ingest_root / "vaccination" / "2025-10.csv"
    export.write_bytes(export.read_text(encoding="utf-8").replace("\n", "\r\n").encode("latin-1"))
    latin1 = list(parse_directory(ingest_root, load_registry(registry_dir), today=date(2026, 1, 1)))
    assert [(o.position, type(o).__name__) for o in latin1] == [(o.position, type(o).__name__) for o in utf8]
    names = [o.identity.first_names for o in latin1 if isinstance(o, SourceRecord)]
    assert names == [o.identity.first_names for o in utf8 if isinstance(o, SourceRecord)] == ["Élise", "Paul Henri"]


def test_the_fhir_sender_is_added_by_a_spec_in_its_own_directory(tmp_path: Path) -> None:
    """The guide's FHIR section: the spec in a directory of PDP_SOURCES_DIR, its bundle parsed entry by entry."""
    from pdp.config import Settings

    specs = tmp_path / "etc-pdp-sources"
    specs.mkdir()
    (specs / "gp_group.yml").write_text(_block("yaml", 1), encoding="utf-8")
    assert sources_validate(specs / "gp_group.yml").format == "fhir_bundle_json"
    registry = load_registry(settings=Settings(_env_file=None, sources_dir=str(specs)))
    assert "gp_group" in registry.names and "pmsi" in registry.names  # the built-in specs stay
    root = tmp_path / "incoming"
    (root / "gp_group").mkdir(parents=True)
    (root / "gp_group" / "patient-0001.json").write_text(_block("json"), encoding="utf-8")

    run = parse_directory(root, registry, today=date(2026, 1, 1))
    outcomes = list(run)
    assert run.counts == {("gp_group", "gp_group/patient-0001.json"): Counts(5, 4, 1)}
    assert repr(Counts(5, 4, 1)) in GUIDE.read_text(encoding="utf-8"), "the guide shows what the code prints"
    assert [(q.position, q.reason_code) for q in outcomes if isinstance(q, Quarantined)] == [
        (5, ReasonCode.CODE_UNKNOWN)]
    records = {o.record_id: o for o in outcomes if isinstance(o, SourceRecord)}
    assert records["Patient/p1"].events == () and records["Patient/p1"].identity.birth_name == "MARTIN"
    (visit,) = records["Encounter/e1"].events
    assert (visit.domain, visit.start_date, visit.end_date) == ("visit", date(2025, 10, 14), date(2025, 10, 14))
    (neuropathy,) = records["Condition/c1"].events
    assert (neuropathy.code_system, neuropathy.code) == ("SNOMED", "368581000119106")
    (hba1c,) = records["Observation/o1"].events
    assert (hba1c.code, hba1c.value, hba1c.unit, hba1c.visit_key) == ("4548-4", 7.4, "%", "Encounter/e1")
