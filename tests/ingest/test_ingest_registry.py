"""The source registry: built-in specs load; a bad spec stops with one line naming its file and field."""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

import pdp.ingest
from pdp.ingest import (
    Registry,
    SpecError,
    discover,
    load_registry,
    parser,
    sources_list,
    sources_validate,
    validate_spec,
)
from pdp.ingest.model import IDENTITY_FIELDS
from pdp.ingest.parsers import parser_names
from pdp.ingest.parsers.base import BUILTIN_PARSERS, get_parser
from pdp.ingest.registry import SOURCES_DIR
from pdp.ingest.spec import IdentityField

BUILT_IN = ["gp_fhir", "insee_communes", "insee_deaths", "lab_hl7", "pharmacy", "pmsi", "questionnaires", "reports",
            "social"]


def test_the_built_in_registry_has_one_spec_per_source(registry: Registry) -> None:
    assert registry.names == BUILT_IN
    assert not any(spec.hold_back for spec in registry)
    assert registry["reports"].companions == ["reports/*/*.txt"]
    # every parser is used by a built-in spec, but the generic FHIR formats a data engineer's spec names
    built_in = {n for n in parser_names() if get_parser(n).func.__module__ in BUILTIN_PARSERS}  # not tests' own
    assert {registry[n].format for n in BUILT_IN} == built_in - {"fhir_bundle_json", "fhir_bulk_ndjson"}


def test_sources_list_describes_each_source(registry: Registry) -> None:
    rows = {row["name"]: row for row in sources_list(registry)}
    assert list(rows) == BUILT_IN
    assert rows["pmsi"]["produces"] == ["condition", "procedure", "visit"]
    assert rows["lab_hl7"]["produces"] == ["measurement"]
    assert rows["questionnaires"]["produces"] == ["survey"]
    assert rows["reports"]["hold_back"] is False and rows["reports"]["format"] == "report_index"
    assert rows["reports"]["produces"] == ["text"]
    assert rows["insee_communes"]["subject"] == "reference"
    assert all("\n" not in row["description"] for row in rows.values())


@pytest.mark.parametrize("name", BUILT_IN)
def test_every_built_in_spec_validates(name: str) -> None:
    assert sources_validate(SOURCES_DIR / f"{name}.yml").name == name


def _pmsi() -> dict[str, Any]:
    return yaml.safe_load((SOURCES_DIR / "pmsi.yml").read_text(encoding="utf-8"))


def _set(path: str, value: Any) -> Any:
    def edit(spec: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = spec
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if value is _DELETE:
            del node[last]
        elif isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return edit


_DELETE = object()

BAD_SPECS = [
    ("unknown top-level key", _set("colour", "red"), "pmsi.yml: colour: Extra inputs are not permitted"),
    ("unknown format", _set("format", "xlsx"), "pmsi.yml: format: unknown parser 'xlsx' (known: delimited,"),
    ("unknown parser option", _set("options.delimitor", ","), "pmsi.yml: options.delimitor: Extra inputs"),
    ("two-character delimiter", _set("options.delimiter", ";;"), "pmsi.yml: options.delimiter: String should have"),
    ("undeclared code system", _set("events.1.code_system", "ICD10"), "pmsi.yml: events.1.code_system: 'ICD10'"),
    ("unknown event domain", _set("events.0.domain", "stay"), "pmsi.yml: events.0.domain: Input should be"),
    ("column not in the layout", _set("identity.birth_name", "nom"), "pmsi.yml: identity.birth_name: column 'nom'"),
    ("unknown identity field", _set("identity.ssn", "nir"), "pmsi.yml: identity.ssn.[key]: Input should be"),
    ("required trait not mapped", _set("identity.birth_name", _DELETE), "pmsi.yml: identity.birth_name: required"),
    ("identity column as attribute", _set("attributes.name", "nom_naissance"), "pmsi.yml: attributes.name: column"),
    ("codes not checked", _set("validation.check_codes", False),
     "pmsi.yml: events.0.code: 'PMSI-UNIT' is not checked (check_codes: false): map the column's values"),
    ("free-text attribute", _set("attributes.admission_mode", "mode_entree"),
     "pmsi.yml: attributes.admission_mode: text would land as sent: declare its values (map), its shape"),
    ("column and const", _set("events.0.code", {"column": "champ", "const": "MCO"}), "pmsi.yml: events.0.code: "),
    (
        "split outside code",
        _set("events.0.start", {"column": "date_entree", "split": "|"}),
        "pmsi.yml: events.0: start: ",
    ),
    (
        "pattern that does not compile",
        _set("identity.nir", {"column": "nir", "pattern": "("}),
        "pmsi.yml: identity.nir: pattern",
    ),
    ("date format without a day", _set("date_format", "%m/%Y"), "pmsi.yml: date_format: date format '%m/%Y'"),
    ("unknown encoding", _set("encoding", "klingon"), "pmsi.yml: encoding: unknown encoding 'klingon'"),
    ("absolute glob", _set("files", ["/data/pmsi/*.csv"]), "pmsi.yml: files: "),
    ("lower-case code system", _set("code_systems", ["cim-10"]), "pmsi.yml: code_systems: 'cim-10'"),
    ("uncheckable coded column", _set("validation.codes", {"dp": "ICD-O"}), "pmsi.yml: validation.codes.dp:"),
    (
        "map keys alike",
        _set("identity.sex", {"column": "sexe", "map": {"m": "M", "M ": "F"}}),
        "pmsi.yml: identity.sex: map",
    ),
    (
        "free-text column as an event code",
        lambda s: (s["code_systems"].append("PMSI-FREE"), s["events"][0].update(code_system="PMSI-FREE")),
        "pmsi.yml: events.0.code: 'PMSI-FREE' has no syntax check: map the column's values",
    ),
    ("version zero", _set("version", 0), "pmsi.yml: version: Input should be greater than or equal to 1"),
    ("name of another file", _set("name", "hospital"), "pmsi.yml: name: 'hospital' must match the file name"),
    ("no format, not held back", _set("format", None), "pmsi.yml: format: required unless the source is held back"),
]


@pytest.mark.parametrize(("label", "edit", "message"), BAD_SPECS, ids=[b[0] for b in BAD_SPECS])
def test_a_bad_spec_stops_with_one_line_naming_file_and_field(label: str, edit, message: str, tmp_path: Path) -> None:
    spec = copy.deepcopy(_pmsi())
    edit(spec)
    path = tmp_path / "pmsi.yml"
    path.write_text(yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")
    with pytest.raises(SpecError) as caught:
        validate_spec(path)
    text = str(caught.value)
    assert "\n" not in text
    assert text.startswith(message), text


def test_structured_formats_refuse_a_column_mapping(tmp_path: Path) -> None:
    spec = yaml.safe_load((SOURCES_DIR / "lab_hl7.yml").read_text(encoding="utf-8"))
    spec["identity"] = {"birth_name": "PID-5"}
    (tmp_path / "lab_hl7.yml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    with pytest.raises(SpecError, match=r"^lab_hl7\.yml: .*identity: the hl7v2_oru parser reads it from the format"):
        validate_spec(tmp_path / "lab_hl7.yml")


def test_invalid_yaml_and_missing_files_are_one_line_errors(tmp_path: Path) -> None:
    (tmp_path / "broken.yml").write_text("name: broken\nfiles: [a\n", encoding="utf-8")
    with pytest.raises(SpecError, match=r"^broken\.yml: not valid YAML at line \d+$"):
        validate_spec(tmp_path / "broken.yml")
    with pytest.raises(SpecError, match="no such spec file"):
        sources_validate(tmp_path / "absent.yml")
    with pytest.raises(SpecError, match="not a directory of source specs"):
        load_registry(tmp_path / "absent-dir")
    (tmp_path / "specs").mkdir()
    with pytest.raises(SpecError, match="no source spec"):
        load_registry(tmp_path / "specs")


def test_one_bad_spec_stops_the_whole_registry(tmp_path: Path) -> None:
    for path in SOURCES_DIR.glob("*.yml"):
        shutil.copy(path, tmp_path / path.name)
    assert len(load_registry(tmp_path)) == len(BUILT_IN)
    spec = (tmp_path / "social.yml").read_text(encoding="utf-8")
    (tmp_path / "social.yml").write_text(spec.replace("column: motif", "column: motive"), encoding="utf-8")
    with pytest.raises(SpecError, match=r"^social\.yml: events\.0\.code: column 'motive' is not declared"):
        load_registry(tmp_path)


def test_a_file_two_specs_claim_stops_discovery(tmp_path: Path, registry: Registry) -> None:
    specs = dict(registry.specs)
    specs["pharmacy_copy"] = registry["pharmacy"].model_copy(update={"name": "pharmacy_copy"})
    (tmp_path / "pharmacy").mkdir()
    (tmp_path / "pharmacy" / "590000001.csv").write_text("num_facture\n", encoding="utf-8")
    with pytest.raises(SpecError, match=r"pharmacy/590000001\.csv: matched by two sources"):
        discover(tmp_path, Registry(specs=specs))


def test_a_format_name_cannot_be_taken_twice() -> None:
    with pytest.raises(ValueError, match="already registered"):

        @parser("delimited")
        def another_delimited(stream, ctx):  # type: ignore[no-untyped-def]
            yield from ()


def test_identity_field_names_are_the_models() -> None:
    assert IdentityField.__args__ == IDENTITY_FIELDS  # type: ignore[attr-defined]


def test_the_package_surface_resolves() -> None:
    for name in pdp.ingest.__all__:
        assert getattr(pdp.ingest, name) is not None


def test_every_reason_code_is_described() -> None:
    from pdp.ingest.reasons import REASONS, ReasonCode

    assert set(REASONS) == set(ReasonCode)
    assert all(text and "\n" not in text for text in REASONS.values())


def _vaccination_spec(name: str = "vaccination_extra") -> dict[str, Any]:
    spec = yaml.safe_load((SOURCES_DIR / "pharmacy.yml").read_text(encoding="utf-8"))
    spec["name"] = name
    spec["files"] = [f"{name}/*.csv"]
    return spec


def test_specs_of_the_configured_directories_join_the_built_in_ones(tmp_path: Path) -> None:
    from pdp.config import Settings

    first, second = tmp_path / "first", tmp_path / "second"
    for folder, name in ((first, "sender_one"), (second, "sender_two")):
        folder.mkdir()
        (folder / f"{name}.yml").write_text(yaml.safe_dump(_vaccination_spec(name)), encoding="utf-8")
    (second / "_registry.yml").write_text("ignore: ['sender_two/README*']\n", encoding="utf-8")
    settings = Settings(sources_dir=f"{first}{os.pathsep}{second}")
    registry = load_registry(settings=settings)
    assert registry.names == sorted([*BUILT_IN, "sender_one", "sender_two"])
    assert "sender_two/README*" in registry.ignore
    assert load_registry(settings=Settings()).names == BUILT_IN  # the built-in specs are the default


def test_a_configured_directory_cannot_replace_a_built_in_spec_nor_be_missing(tmp_path: Path) -> None:
    from pdp.config import Settings

    (tmp_path / "pmsi.yml").write_text((SOURCES_DIR / "pmsi.yml").read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(SpecError, match=r"^pmsi\.yml: source 'pmsi' is defined in both"):
        load_registry(settings=Settings(sources_dir=str(tmp_path)))
    with pytest.raises(SpecError, match="not a directory of source specs"):
        load_registry(settings=Settings(sources_dir=str(tmp_path / "typo")))


def test_sources_dir_is_read_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pdp.config import Settings

    (tmp_path / "sender_env.yml").write_text(yaml.safe_dump(_vaccination_spec("sender_env")), encoding="utf-8")
    monkeypatch.setenv("PDP_SOURCES_DIR", str(tmp_path))
    assert "sender_env" in load_registry(settings=Settings()).names
