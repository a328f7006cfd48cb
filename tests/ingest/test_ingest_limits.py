"""Size limits of the edge (``limits`` in a source spec): one clear quarantine row, never a file lost.

A line or an HL7 message over ``max_record_bytes`` is RECORD_TOO_LARGE, a JSON document deeper than
``max_json_depth`` is JSON_TOO_DEEP, a file over ``max_file_bytes`` for a format that reads files
whole is FILE_TOO_LARGE, a report's document over ``max_document_bytes`` is RECORD_TOO_LARGE; the
records around them parse; the messages name the limit and sizes, never a value.
"""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest

from pdp.ingest import Quarantined, SourceRecord, SourceSpec, load_registry
from pdp.ingest.limits import Limits
from pdp.ingest.model import ParseOutcome
from pdp.ingest.parse import parse_file
from pdp.ingest.parsers import base
from pdp.ingest.parsers.base import FileContext, parser, parser_names

CORPUS = Path(__file__).resolve().parent.parent / "fuzz" / "corpus"


def _spec(source: str, **limits: int) -> SourceSpec:
    data = load_registry().specs[source].model_dump(mode="json")
    data["limits"] = limits
    return SourceSpec.model_validate(data)


def _parse(spec: SourceSpec, root: Path, rel: str, data: bytes) -> list[ParseOutcome]:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return list(parse_file(spec, path, root))


def _reasons(outcomes: list[ParseOutcome]) -> list[str]:
    return [str(o.reason_code) if isinstance(o, Quarantined) else "landed" for o in outcomes]


def _landed(bundle_line: bytes) -> list[str]:
    """What a clean GP bundle line yields: a record per resource but its Practitioners (read through references)."""
    entries = json.loads(bundle_line)["entry"]
    return ["landed" for e in entries if e["resource"]["resourceType"] != "Practitioner"]


def test_limits_are_validated_with_the_spec() -> None:
    data = load_registry().specs["pmsi"].model_dump(mode="json")
    with pytest.raises(ValueError, match="max_line_bytes"):
        SourceSpec.model_validate({**data, "limits": {"max_line_bytes": 10_000}})
    with pytest.raises(ValueError, match="max_json_depth"):
        SourceSpec.model_validate({**data, "limits": {"max_json_depth": 5000}})
    assert SourceSpec.model_validate(data).limits == Limits()


def test_the_default_limits_are_far_beyond_real_files(tmp_path: Path) -> None:
    """A 300 KB free-text field (csv's own limit is 128 Ki characters) lands under the defaults."""
    seed = (CORPUS / "delimited" / "seed-pmsi.csv").read_bytes()
    header, first = seed.split(b"\n")[:2]
    cells = first.split(b";")
    cells[6] = b'"' + b"x" * 300_000 + b'"'  # provenance, not mapped to anything checked
    outcomes = _parse(_spec("pmsi"), tmp_path, "pmsi/a.csv", header + b"\n" + b";".join(cells) + b"\n")
    assert _reasons(outcomes) == ["landed"]


def test_a_line_over_the_limit_is_record_too_large_in_bounded_memory(tmp_path: Path) -> None:
    seed = (CORPUS / "delimited" / "seed-pmsi.csv").read_bytes()
    header, first, second = seed.split(b"\n")[:3]
    huge = first.replace(b"HAMEL", b"HAMEL" + b"Z" * (32 << 20))
    spec = _spec("pmsi", max_record_bytes=1 << 20)
    path = tmp_path / "pmsi" / "a.csv"
    path.parent.mkdir()
    path.write_bytes(header + b"\n" + huge + b"\n" + second + b"\n")
    tracemalloc.start()
    outcomes = list(parse_file(spec, path, tmp_path))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert _reasons(outcomes) == ["RECORD_TOO_LARGE", "landed"]
    assert peak < 8 << 20, "a 32 MiB line is never held whole"
    message = outcomes[0].message
    assert "max_record_bytes" in message and "HAMEL" not in message and "ZZZ" not in message


def test_a_quoted_record_growing_over_the_limit_across_lines_is_record_too_large(tmp_path: Path) -> None:
    seed = (CORPUS / "delimited" / "seed-pmsi.csv").read_bytes()
    header, first = seed.split(b"\n")[:2]
    spill = first.replace(b";8;;", b';8;"' + (b"y" * 500 + b"\n") * 10 + b'";', 1)
    outcomes = _parse(_spec("pmsi", max_record_bytes=2048), tmp_path, "pmsi/a.csv",
                      header + b"\n" + spill + b"\n" + first + b"\n")
    assert _reasons(outcomes)[0] == "RECORD_TOO_LARGE"
    assert _reasons(outcomes)[-1] == "landed"


def test_fixed_width_and_ndjson_lines_over_the_limit(tmp_path: Path) -> None:
    deaths = (CORPUS / "fixed_width" / "seed-deces.txt").read_bytes()
    outcomes = _parse(_spec("insee_deaths", max_record_bytes=1024), tmp_path, "insee/deces.txt",
                      b"B" * 5000 + b"\n" + deaths)
    assert _reasons(outcomes) == ["RECORD_TOO_LARGE", "landed"]
    bundle = (CORPUS / "fhir_bundle_ndjson" / "seed-bundle.ndjson").read_bytes()
    outcomes = _parse(_spec("gp_fhir", max_record_bytes=len(bundle) + 10), tmp_path, "gp/a.ndjson",
                      bundle.rstrip(b"\n") + b" " * 100 + b"\n" + bundle)
    assert _reasons(outcomes) == ["RECORD_TOO_LARGE", *_landed(bundle)]
    assert outcomes[0].position == 1 and {o.position for o in outcomes[1:]} == {2}


def test_a_json_document_deeper_than_the_limit_is_json_too_deep(tmp_path: Path) -> None:
    bundle = (CORPUS / "fhir_bundle_ndjson" / "seed-bundle.ndjson").read_bytes()
    deep = b'{"resourceType":"Bundle","type":"collection","entry":' + b"[" * 40 + b"]" * 40 + b"}\n"
    outcomes = _parse(_spec("gp_fhir", max_json_depth=32), tmp_path, "gp/a.ndjson", deep + bundle)
    assert _reasons(outcomes) == ["JSON_TOO_DEEP", *_landed(bundle)]
    assert "max_json_depth (32)" in outcomes[0].message
    # the same document within the default limit is only invalid FHIR
    outcomes = _parse(_spec("gp_fhir"), tmp_path, "gp/b.ndjson", deep)
    assert _reasons(outcomes) == ["FHIR_VALIDATION"]


def test_an_hl7_message_or_segment_over_the_limit_is_record_too_large(tmp_path: Path) -> None:
    batch = (CORPUS / "hl7v2_oru" / "seed-batch.hl7").read_bytes()
    first = batch.index(b"MSH")
    second = batch.index(b"MSH", first + 3)
    obx = batch[batch.index(b"OBX", first):batch.index(b"\r", batch.index(b"OBX", first)) + 1]
    many = batch[:second] + obx * 2000 + batch[second:]  # a message of 2 000 OBX: ~200 KB
    outcomes = _parse(_spec("lab_hl7", max_record_bytes=64 << 10), tmp_path, "labs/a.hl7", many)
    assert _reasons(outcomes) == ["RECORD_TOO_LARGE", "landed"]  # the batch count still holds: 2 messages
    assert outcomes[0].position == 1 and outcomes[1].position == 2
    assert "max_record_bytes (65536)" in outcomes[0].message
    endless = batch[:second] + b"NTE|1||" + b"w" * (8 << 20)  # the file cut inside a segment that never ends
    outcomes = _parse(_spec("lab_hl7", max_record_bytes=64 << 10), tmp_path, "labs/b.hl7", endless)
    assert _reasons(outcomes) == ["RECORD_TOO_LARGE", "HL7_BATCH_COUNT"]


def test_a_report_document_over_the_limit_is_record_too_large_not_missing(tmp_path: Path) -> None:
    index = (CORPUS / "report_index" / "seed-index.csv").read_bytes()
    documents = Path(__file__).resolve().parent.parent / "fuzz" / "documents"
    for doc in documents.rglob("*.txt"):
        target = tmp_path / doc.relative_to(documents)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(doc.read_bytes())
    big = tmp_path / "reports" / "3e" / "D1-46-154.txt"
    big.write_bytes(big.read_bytes() + b" " * 5000)
    data = load_registry().specs["reports"].model_dump(mode="json")
    data["options"]["ner"] = False
    data["limits"] = {"max_document_bytes": 4096}
    outcomes = _parse(SourceSpec.model_validate(data), tmp_path, "reports/index.csv", index)
    assert _reasons(outcomes) == ["landed", "RECORD_TOO_LARGE"]
    assert "max_document_bytes (4096)" in outcomes[1].message


def _whole_json(stream: BinaryIO, ctx: FileContext) -> Iterator[ParseOutcome]:
    """A test parser that reads its file whole (as a FHIR Bundle JSON parser must)."""
    data = stream.read()
    yield SourceRecord(source=ctx.source, file=ctx.file, position=1, record_id=None, raw=data)


@pytest.fixture()
def whole_file_format(monkeypatch: pytest.MonkeyPatch) -> str:
    """``test_whole_json`` registered for this test only (the registry is the process's)."""
    parser_names()  # the built-ins first
    monkeypatch.setitem(base._PARSERS, "test_whole_json", None)  # monkeypatch removes the key after the test
    del base._PARSERS["test_whole_json"]  # ... and @parser registers it as a new format
    parser("test_whole_json", whole_file=True)(_whole_json)
    return "test_whole_json"


def test_a_file_over_the_limit_of_a_whole_file_format_is_file_too_large_without_being_read(
    tmp_path: Path, whole_file_format: str
) -> None:
    spec = SourceSpec(name="whole", version=1, description="test", format=whole_file_format, files=["w/*.json"],
                      subject="reference", limits=Limits(max_file_bytes=4096))
    assert _reasons(_parse(spec, tmp_path, "w/small.json", b"{}" * 100)) == ["landed"]
    outcomes = _parse(spec, tmp_path, "w/big.json", b"{}" * 5000)
    assert _reasons(outcomes) == ["FILE_TOO_LARGE"] and outcomes[0].position == 0
    assert "max_file_bytes (4096)" in outcomes[0].message
