"""Small readers of the synthetic territory's identities, for the linkage benchmark and tests.

Why here and not in ``pdp.ingest``: linkage is measured against the synthetic ground truth,
which needs every source record's identity keyed exactly as ``ground_truth/record_links.csv``
keys it (``source|file|record_id``). These readers do only that (no clinical content, no
quarantine); the edge's real entry point is the ingest parsers, which hand the same traits to
:func:`pdp.pseudonym.normalise.normalise`.

Sources read: PMSI, pharmacy and social CSVs (``;``), HL7 v2.5 lab batches (PID-3/5/7/8/11),
FHIR GP bundles (the Patient resource), the reports' index, the DMP's questionnaire responses
(the contained Patient) and the INSEE deaths file (fixed width). Nothing read here is logged; identities stay in memory.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pdp.pseudonym.normalise import RawIdentity

__all__ = ["SourceIdentity", "read_error_kinds", "read_identities", "read_truth", "record_key"]

_NIR_OID = "urn:oid:1.2.250.1.213.1.4.8"
_BIRTH_PLACE_URL = "http://hl7.org/fhir/StructureDefinition/patient-birthPlace"


@dataclass(frozen=True, slots=True)
class SourceIdentity:
    """One source record's identity as sent (``raw``), its key and its postcode (or None)."""

    record_key: str
    raw: RawIdentity
    postcode: str | None = None

    def __repr__(self) -> str:
        return f"SourceIdentity(record_key={self.record_key!r}, <identity hidden>)"


def record_key(source: str, file: str, record_id: str) -> str:
    """The key of a source record, as the ground truth's ``record_links.csv`` names it."""
    return f"{source}|{file}|{record_id}"


def read_truth(root: Path) -> dict[str, int]:
    """``record_key → true person id`` from ``ground_truth/record_links.csv``."""
    with open(root / "ground_truth" / "record_links.csv", encoding="utf-8", newline="") as handle:
        return {record_key(r["source"], r["file"], r["record_id"]): int(r["person_id"]) for r in csv.DictReader(handle)}


def read_error_kinds(root: Path, truth: dict[str, int]) -> dict[str, tuple[str, ...]]:
    """``record_key → identity error kinds it carries`` from ``ground_truth/identity_errors.csv``
    (per source and person: a source keeps one identity per patient). Empty when the territory
    predates that file."""
    path = root / "ground_truth" / "identity_errors.csv"
    if not path.exists():
        return {}
    with open(path, encoding="utf-8", newline="") as handle:
        errors = {(r["source"], int(r["person_id"])): tuple(r["errors"].split("|")) for r in csv.DictReader(handle)}
    out = {}
    for key, person in truth.items():
        kinds = errors.get((key.split("|", 1)[0], person))
        if kinds:
            out[key] = kinds
    return out


def read_identities(root: Path) -> Iterator[SourceIdentity]:
    """Every identity of a territory's sources, in a stable order (source, then file, then row)."""
    root = Path(root)
    yield from _pmsi(root)
    yield from _labs(root)
    yield from _gp(root)
    yield from _pharmacy(root)
    yield from _social(root)
    yield from _reports(root)
    yield from _questionnaires(root)
    yield from _deaths(root)


def _text(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _rows(root: Path, folder: str) -> Iterator[tuple[str, dict[str, str]]]:
    for path in sorted((root / folder).glob("*.csv")):
        rel = path.relative_to(root).as_posix()
        for row in csv.DictReader(io.StringIO(_text(path), newline=""), delimiter=";"):
            yield rel, row


def _blank(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


def _pmsi(root: Path) -> Iterator[SourceIdentity]:
    for rel, r in _rows(root, "pmsi"):
        raw = RawIdentity(
            birth_name=_blank(r["nom_naissance"]),
            used_name=_blank(r["nom_usage"]),
            first_names=_blank(r["prenoms"]),
            sex=_blank(r["sexe"]),
            birth_date=_blank(r["date_naissance"]),
            birth_place=_blank(r["lieu_naissance"]),
            nir=_blank(r["nir"]),
        )
        yield SourceIdentity(record_key("pmsi", rel, r["num_sejour"]), raw, _blank(r["code_postal"]))


def _pharmacy(root: Path) -> Iterator[SourceIdentity]:
    for rel, r in _rows(root, "pharmacy"):
        raw = RawIdentity(
            birth_name=_blank(r["nom"]),
            first_names=_blank(r["prenom"]),
            sex=_blank(r["sexe"]),
            birth_date=_blank(r["date_naissance"]),
            nir=_blank(r["nir_assure"]),
        )
        yield SourceIdentity(record_key("pharmacy", rel, r["num_facture"]), raw)


def _social(root: Path) -> Iterator[SourceIdentity]:
    for rel, r in _rows(root, "social"):
        raw = RawIdentity(
            birth_name=_blank(r["nom"]),
            first_names=_blank(r["prenom"]),
            sex=_blank(r["sexe"]),
            birth_date=_blank(r["date_naissance"]),
            nir=_blank(r["nir"]),
        )
        yield SourceIdentity(record_key("social", rel, r["id_signalement"]), raw, _blank(r["code_postal"]))


def _reports(root: Path) -> Iterator[SourceIdentity]:
    index = root / "reports" / "index.csv"
    if not index.exists():
        return
    for r in csv.DictReader(io.StringIO(_text(index), newline="")):
        raw = RawIdentity(
            birth_name=_blank(r["birth_name"]),
            used_name=_blank(r["used_name"]),
            first_names=_blank(r["first_names"]),
            sex=_blank(r["sex"]),
            birth_date=_blank(r["birth_date"]),
            nir=_blank(r["nir"]),
        )
        yield SourceIdentity(record_key("report", r["file"], r["doc_id"]), raw)


def _labs(root: Path) -> Iterator[SourceIdentity]:
    import hl7

    for path in sorted((root / "labs").glob("*.hl7")):
        rel = path.relative_to(root).as_posix()
        for batch in hl7.parse_file(_text(path)):
            for message in batch:
                # the sender record the HL7 parser keys: the lab (MSH-4) and the filler order number (OBR-3)
                order = f"{message.segment('MSH')[4]}|{message.segment('OBR')[3][0][0]}"
                pid = message.segment("PID")
                yield SourceIdentity(record_key("lab_hl7", rel, order), *_pid(message, pid))


def _component(rep: object, index: int) -> str | None:
    """Component ``index`` (1-based) of an HL7 repetition, unescaped, or None."""
    try:
        value = rep[index - 1]  # type: ignore[index]
    except (IndexError, TypeError):
        return None
    return _blank(str(value))


def _pid(message: object, pid: object) -> tuple[RawIdentity, str | None]:
    def reps(field: int) -> list[object]:
        try:
            value = pid[field]  # type: ignore[index]
        except IndexError:
            return []
        return list(value) if str(value) else []

    unescape = message.unescape  # type: ignore[attr-defined]
    nir = None
    for rep in reps(3):
        if _component(rep, 5) == "INS":
            nir = _component(rep, 1)
    birth_name = used_name = first_names = None
    for rep in reps(5):
        kind = _component(rep, 7)
        family = _component(rep, 1)
        if kind == "L":
            birth_name = unescape(family) if family else None
            listed = _component(rep, 3) or _component(rep, 2)
            first_names = unescape(listed) if listed else None
        elif kind == "D" and family:
            used_name = unescape(family)
    postcode = birth_place = None
    for rep in reps(11):
        kind = _component(rep, 7)
        if kind == "H":
            postcode = _component(rep, 5)
        elif kind == "BDL":
            birth_place = _component(rep, 9)
    raw = RawIdentity(
        birth_name=birth_name,
        used_name=used_name,
        first_names=first_names,
        sex=_blank(str(pid[8])),  # type: ignore[index]
        birth_date=_blank(str(pid[7])),  # type: ignore[index]
        birth_place=birth_place,
        nir=nir,
    )
    return raw, postcode


def _gp(root: Path) -> Iterator[SourceIdentity]:
    for path in sorted((root / "gp").glob("*.ndjson")):
        rel = path.relative_to(root).as_posix()
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if not line.strip():
                    continue
                bundle = json.loads(line)
                patient = next(
                    (e["resource"] for e in bundle.get("entry", []) if e["resource"]["resourceType"] == "Patient"),
                    None,
                )
                if patient is not None:  # the Patient resource is the record carrying the identity
                    yield SourceIdentity(record_key("gp_fhir", rel, f"Patient/{patient['id']}"), *_patient(patient))


def _questionnaires(root: Path) -> Iterator[SourceIdentity]:
    """The DMP's questionnaire responses: the citizen is the response's contained Patient."""
    for path in sorted((root / "questionnaires").glob("*.ndjson")):
        rel = path.relative_to(root).as_posix()
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if not line.strip():
                    continue
                response = json.loads(line)
                patient = next((r for r in response.get("contained", []) if r.get("resourceType") == "Patient"), None)
                if patient is not None:
                    yield SourceIdentity(record_key("questionnaires", rel, response["id"]), *_patient(patient))


def _patient(patient: dict) -> tuple[RawIdentity, str | None]:
    nir = next((i.get("value") for i in patient.get("identifier", []) if i.get("system") == _NIR_OID), None)
    birth_name = used_name = None
    given: list[str] = []
    for name in patient.get("name", []):
        if name.get("use") == "official":
            birth_name = name.get("family")
            given = name.get("given", [])
        elif name.get("use") == "usual":
            used_name = name.get("family")
    birth_place = None
    for ext in patient.get("extension", []):
        if ext.get("url") == _BIRTH_PLACE_URL:
            codes = [e["valueCoding"]["code"] for e in ext.get("valueAddress", {}).get("extension", [])]
            birth_place = codes[0] if codes else None
    postcode = next((a.get("postalCode") for a in patient.get("address", []) if a.get("use") == "home"), None)
    gender = {"male": "M", "female": "F"}.get(patient.get("gender", ""))
    raw = RawIdentity(
        birth_name=birth_name,
        used_name=used_name,
        first_names=given or None,
        sex=gender,
        birth_date=patient.get("birthDate"),
        birth_place=birth_place,
        nir=nir,
    )
    return raw, postcode


def _deaths(root: Path) -> Iterator[SourceIdentity]:
    path = root / "insee" / "deces.txt"
    if not path.exists():
        return
    rel = path.relative_to(root).as_posix()
    for line in _text(path).splitlines():
        if len(line) < 176:
            continue
        names = line[:80].strip().rstrip("/")
        birth_name, _, firsts = names.partition("*")
        raw = RawIdentity(
            birth_name=_blank(birth_name),
            first_names=_blank(firsts),
            sex=_blank(line[80:81]),
            birth_date=_blank(line[81:89]),
            birth_place=_blank(line[89:94]),
        )
        yield SourceIdentity(record_key("insee_deaths", rel, line[167:176]), raw)
