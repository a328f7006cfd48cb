"""A trained linkage model is a validated, versioned file with no nominative value; a bad one
stops the process in one line that quotes no value."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pdp.config import Settings
from pdp.pseudonym.linkage_model import DEFAULT_PARAMETERS
from pdp.pseudonym.linkage_trained import LinkageModelError, ModelStore, TrainedModel, current_options


def _saved(tmp_path: Path) -> tuple[ModelStore, TrainedModel]:
    store = ModelStore(tmp_path / "linkage")
    return store, store.save(DEFAULT_PARAMETERS, trained_on="batch", variants=36_952)


def test_no_model_trained_means_no_options(tmp_path: Path) -> None:
    assert ModelStore(tmp_path / "linkage").current() is None
    assert current_options(Settings(_env_file=None, var_dir=tmp_path)) is None


def test_a_saved_model_is_current_versioned_and_gives_back_its_parameters(tmp_path: Path) -> None:
    store, model = _saved(tmp_path)
    assert model.version.startswith("lm-") and (store.directory / f"{model.version}.json").exists()
    assert store.current() == model
    assert model.parameters() == DEFAULT_PARAMETERS
    options = current_options(Settings(_env_file=None, var_dir=tmp_path))
    assert options.parameters == DEFAULT_PARAMETERS and options.model_version == model.version


def test_a_store_named_by_uri_reads_what_it_wrote(tmp_path: Path) -> None:
    """`PDP_LINKAGE_MODEL_DIR=s3://...` goes through pyarrow.fs like `file://` here: no local-path assumption."""
    store = ModelStore(f"file://{tmp_path}/shared/linkage")
    assert store.directory is None and store.current() is None
    model = store.save(DEFAULT_PARAMETERS, trained_on="batch", variants=36_952)
    assert ModelStore(f"file://{tmp_path}/shared/linkage").current() == model
    assert ModelStore(tmp_path / "shared" / "linkage").current() == model  # the same files, as a directory
    assert sorted(p.name for p in (tmp_path / "shared" / "linkage").iterdir()) == ["current", f"{model.version}.json"]
    (tmp_path / "shared" / "linkage" / f"{model.version}.json").unlink()
    with pytest.raises(LinkageModelError, match=f"file missing in file://{tmp_path}/shared/linkage"):
        store.current()


def test_the_file_holds_probabilities_and_fixed_labels_only(tmp_path: Path) -> None:
    store, model = _saved(tmp_path)
    data = json.loads((store.directory / f"{model.version}.json").read_text(encoding="utf-8"))
    assert set(data) == {"format", "version", "trained_at", "trained_on", "variants", "m_from",
                         "probability_two_random_records_match", "levels"}  # fmt: skip
    assert data["m_from"] is None  # trained whole; else "builtin" or a model version (a pattern: no free text)
    for levels in data["levels"].values():
        for level in levels:
            assert set(level) == {"level", "m", "u"}


@pytest.mark.parametrize(
    ("edit", "where"),
    [
        (lambda d: d.update(term_frequencies={"DUPONT": 0.01}), "<key>: unknown key (not permitted)"),
        (lambda d: d["levels"].update(DUPONT=[{"level": "x", "m": 5, "u": 1}]), "levels.<key>.0.m"),
        (lambda d: d["levels"]["birth_name"][0].update(level="DUPONT Jean 1958-04-12"), "differ from the comparison"),
        (lambda d: d["levels"]["sex"][0].update(m=1.5), "levels.sex.0.m"),
        (lambda d: d.pop("version"), "version: Field required"),
        (lambda d: d.update(m_from="DUPONT Jean"), "m_from: String should match pattern"),
    ],
)
def test_a_bad_model_file_is_one_line_naming_the_field_never_the_value(tmp_path: Path, edit, where: str) -> None:
    store, model = _saved(tmp_path)
    path = store.directory / f"{model.version}.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    edit(data)
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(LinkageModelError) as caught:
        store.current()
    message = str(caught.value)
    assert where in message and "\n" not in message
    assert "DUPONT" not in message and "1958" not in message


def test_a_model_file_that_is_not_json_or_a_bad_pointer_stops_too(tmp_path: Path) -> None:
    store, model = _saved(tmp_path)
    (store.directory / f"{model.version}.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(LinkageModelError, match="not JSON"):
        store.current()
    (store.directory / "current").write_text("../../etc/passwd\n", encoding="utf-8")
    with pytest.raises(LinkageModelError, match="not a model version"):
        store.current()


def test_pdp_linkage_status_reports_a_bad_model_in_one_line(tmp_path: Path, pdp_cli, monkeypatch) -> None:
    from pdp.config import get_settings

    store, model = _saved(tmp_path)
    (store.directory / f"{model.version}.json").write_text('{"format": "x"}', encoding="utf-8")
    monkeypatch.setenv("PDP_LINKAGE_MODEL_DIR", str(store.directory))
    get_settings.cache_clear()
    try:
        code, _out, err = pdp_cli("linkage", "status")
    finally:
        monkeypatch.delenv("PDP_LINKAGE_MODEL_DIR")
        get_settings.cache_clear()
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: linkage model")
