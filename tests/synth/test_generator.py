"""The synthetic territory end to end: determinism, calibration, real formats, ground truth."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from builders import TERRITORY_PERSONS as PERSONS
from builders import TERRITORY_SEED as SEED

from pdp.synth import generate, load_territory
from pdp.synth.clinical import t2d_stratum
from pdp.synth.formats.delimited import PHARMACY_COLUMNS, PMSI_COLUMNS, SOCIAL_COLUMNS
from pdp.synth.formats.insee import DEATH_LAYOUT
from pdp.synth.model import ClinicalTruth
from pdp.synth.nir import nir_is_valid


@pytest.mark.slow
def test_same_seed_gives_the_same_bytes_whatever_the_worker_count(territory_dir: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    generate(again, persons=PERSONS, seed=SEED, territory="douaisis", workers=1)
    first = json.loads((territory_dir / "manifest.json").read_text())["files"]
    second = json.loads((again / "manifest.json").read_text())["files"]
    assert first == second
    assert len(first) > 20


def test_a_different_seed_gives_different_people(tmp_path: Path) -> None:
    a = generate(tmp_path / "a", persons=400, seed=1, territory="douaisis", workers=1)
    b = generate(tmp_path / "b", persons=400, seed=2, territory="douaisis", workers=1)
    ids_a = (tmp_path / "a" / "ground_truth" / "identities.csv").read_text()
    ids_b = (tmp_path / "b" / "ground_truth" / "identities.csv").read_text()
    assert ids_a != ids_b
    assert a["persons"] == b["persons"] == 400


@pytest.mark.slow
def test_prevalences_and_strata_are_within_15_percent_of_the_targets(summary: dict) -> None:
    for name, row in {**summary["prevalence"], **summary["t2d_strata"]}.items():
        assert abs(row["share"] / row["target"] - 1) <= 0.15, (name, row)


@pytest.mark.slow
def test_ground_truth_strata_follow_the_pyramid_rules(territory_dir: Path, summary: dict) -> None:
    with open(territory_dir / "ground_truth" / "persons.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == PERSONS
    alive = [r for r in rows if r["alive"] == "1"]
    assert len(alive) == summary["alive_at_reference"]
    for r in rows:
        if r["t2d"] != "1":
            assert r["t2d_stratum"] == ""
            continue
        truth = ClinicalTruth(
            insulin=r["insulin"] == "1", severe_hypoglycaemia_episodes=int(r["severe_hypoglycaemia_episodes"]),
            complications=tuple(c for c in r["complications"].split("|") if c), stroke_or_mi=r["stroke_or_mi"] == "1",
            amputation=r["amputation"] == "1", dialysis=r["dialysis"] == "1",
        )
        assert int(r["t2d_stratum"]) == t2d_stratum(truth), r["person_id"]
        assert r["t2d_at_risk"] == "0", "a diabetic is not 'at risk' of diabetes"
    for r in alive:
        if r["hf"] == "1":
            assert r["hf_stage"] in {"3", "4"} and r["hf_at_risk"] == "0"
        elif r["hf_at_risk"] == "1":
            assert r["hf_stage"] in {"1", "2"}


@pytest.mark.slow
def test_actions_due_are_consistent_with_the_reference_date(territory_dir: Path, summary: dict) -> None:
    ref = date.fromisoformat(summary["reference_date"])
    statuses = set()
    with open(territory_dir / "ground_truth" / "actions_due.csv", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            due = date.fromisoformat(row["due_date"])
            statuses.add(row["status"])
            if row["status"] == "overdue":
                assert due < ref
            else:
                assert due >= ref
            if row["last_done"]:
                assert (due - date.fromisoformat(row["last_done"])).days == int(row["interval_days"])
    assert statuses == {"overdue", "due", "up_to_date"}, "some people must be overdue, some up to date"


def _read_delimited(path: Path, encoding: str) -> list[list[str]]:
    with open(path, encoding=encoding, newline="") as handle:
        return list(csv.reader(handle, delimiter=";"))


@pytest.mark.slow
def test_delimited_sources_parse_with_their_encodings(territory_dir: Path) -> None:
    manifest = json.loads((territory_dir / "manifest.json").read_text())["files"]
    seen_encodings = set()
    for folder, columns in (("pmsi", PMSI_COLUMNS), ("pharmacy", PHARMACY_COLUMNS), ("social", SOCIAL_COLUMNS)):
        files = sorted((territory_dir / folder).glob("*.csv"))
        assert files, folder
        for path in files:
            raw = path.read_bytes()
            if raw.startswith(b"\xef\xbb\xbf"):
                encoding = "utf-8-sig"
            else:
                try:
                    raw.decode("utf-8")
                    encoding = "utf-8"
                except UnicodeDecodeError:
                    encoding = "latin-1"
            seen_encodings.add(encoding)
            rows = _read_delimited(path, encoding)
            assert tuple(rows[0]) == columns
            assert all(len(r) == len(columns) for r in rows[1:]), path
            assert len(rows) - 1 == manifest[f"{folder}/{path.name}"]["records"]
            nir_col = columns.index("nir_assure" if folder == "pharmacy" else "nir")
            assert all(nir_is_valid(r[nir_col]) for r in rows[1:] if r[nir_col]), path
    assert seen_encodings == {"utf-8", "utf-8-sig", "latin-1"}


@pytest.mark.slow
def test_deaths_file_is_fixed_width(territory_dir: Path, summary: dict) -> None:
    width = sum(w for _, w in DEATH_LAYOUT)
    lines = (territory_dir / "insee" / "deces.txt").read_text(encoding="ascii").splitlines()
    assert len(lines) == summary["deceased_in_window"] > 0
    assert all(len(line) == width for line in lines)
    assert all("*" in line[:80] and "/" in line[:80] for line in lines)


@pytest.mark.slow
def test_every_source_record_is_linked_to_its_true_person(territory_dir: Path) -> None:
    manifest = json.loads((territory_dir / "manifest.json").read_text())["files"]
    linked: dict[str, int] = {}
    with open(territory_dir / "ground_truth" / "record_links.csv", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            linked[row["file"]] = linked.get(row["file"], 0) + 1
    for rel, meta in manifest.items():
        if rel.split("/")[0] in {"pmsi", "pharmacy", "social", "labs", "gp"}:
            assert linked.get(rel) == meta["records"], rel


def test_communes_file_carries_the_territory_populations(tmp_path: Path) -> None:
    generate(tmp_path / "t", persons=150, seed=3, territory="haute-saone", workers=1)
    with open(tmp_path / "t" / "insee" / "communes.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter=";"))
    territory = load_territory("haute-saone")
    assert [r["CODGEO"] for r in rows] == [c.code for c in territory.communes]
    assert sum(int(r["PMUN"]) for r in rows) == sum(c.population for c in territory.communes)


def _pdp(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from pdp.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--persons", "-5"], "--persons"),
        (["--persons", "many"], "--persons"),
        (["--territory", "atlantis"], "unknown territory 'atlantis'"),
        (["--seed", "-1"], "--seed"),
    ],
)
def test_bad_arguments_give_one_line_and_a_non_zero_exit(tmp_path: Path, args: list[str], message: str) -> None:
    done = _pdp("synth", "--out", str(tmp_path / "o"), *args)
    assert done.returncode == 2
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr


def test_unwritable_or_occupied_output_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    done = _pdp("synth", "--out", str(blocker / "sub"), "--persons", "10")
    assert done.returncode == 2 and "cannot write" in done.stderr and "Traceback" not in done.stderr
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "mine.txt").write_text("precious")
    done = _pdp("synth", "--out", str(occupied), "--persons", "10", "--force")
    assert done.returncode == 2 and "refusing" in done.stderr
    assert (occupied / "mine.txt").read_text() == "precious"


def test_cli_synth_prints_the_pyramid(tmp_path: Path) -> None:
    done = _pdp("synth", "--out", str(tmp_path / "o"), "--persons", "300", "--seed", "5", "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["persons"] == 300 and set(summary["prevalence"]) == {"t2d", "t2d_at_risk", "hf", "hf_at_risk"}
    again = _pdp("synth", "--out", str(tmp_path / "o"), "--persons", "300")
    assert again.returncode == 2 and "not empty" in again.stderr


@pytest.mark.slow
def test_every_fhir_bundle_parses_with_fhir_resources(territory_dir: Path) -> None:
    from fhir.resources.R4B.bundle import Bundle

    count = 0
    for path in sorted((territory_dir / "gp").glob("*.ndjson")):
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                bundle = Bundle.model_validate_json(line)
                kinds = [entry.resource.__resource_type__ for entry in bundle.entry]
                assert {"Patient", "Practitioner"} <= set(kinds)
                count += sum(1 for kind in kinds if kind != "Practitioner")  # a record per resource
    manifest = json.loads((territory_dir / "manifest.json").read_text())["files"]
    assert count == sum(m["records"] for rel, m in manifest.items() if rel.startswith("gp/")) > 1000


@pytest.mark.slow
def test_every_hl7_message_parses_with_python_hl7(territory_dir: Path) -> None:
    import hl7

    count = 0
    loincs = set()
    for path in sorted((territory_dir / "labs").glob("*.hl7")):
        raw = path.read_bytes()
        encoding = "latin-1" if b"8859/1" in raw.split(b"\r", 3)[2] else "utf-8"
        for batch in hl7.parse_file(raw.decode(encoding)):
            for message in batch:
                assert str(message.segment("MSH")[9]) == "ORU^R01^ORU_R01"
                assert str(message.segment("PID")[5][0][0])  # family name
                for obx in message.segments("OBX"):
                    loincs.add(str(obx[3][0][0]))
                    float(str(obx[5]))
                count += 1
    manifest = json.loads((territory_dir / "manifest.json").read_text())["files"]
    assert count == sum(m["records"] for rel, m in manifest.items() if rel.startswith("labs/")) > 1000
    assert {"4548-4", "2160-0", "33762-6"} <= loincs
