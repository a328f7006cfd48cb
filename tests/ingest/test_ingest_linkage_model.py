"""Every batch links with the trained model when there is one, and says which it used: the
decisions are those of a run given the same parameters, no EM runs, and a bad model file
stops the ingest in one line."""

from __future__ import annotations

import base64
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from ingest_helpers import lake_settings

from pdp.config import Settings
from pdp.ingest import Registry
from pdp.ingest.edge import Edge
from pdp.ingest.fanout import BatchContext, FileTask, run_files
from pdp.ingest.parse import Duplicates
from pdp.ingest.pipeline import ingest_directory
from pdp.ingest.registry import discover
from pdp.pseudonym.keys import KeyStore
from pdp.pseudonym.linkage import MODEL_EM_BATCH, LinkageOptions
from pdp.pseudonym.linkage_bench import load_inputs
from pdp.pseudonym.linkage_trained import LinkageModelError, ModelStore, TrainedModel, current_options, train


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    var = tmp_path_factory.mktemp("model-var")
    s = lake_settings(var, base64.b64encode(os.urandom(32)).decode("ascii"))
    KeyStore.from_settings(s).init()
    return s


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory, settings: Settings) -> TrainedModel:
    """A model trained on a 1 500-person batch (as `pdp linkage train --from` does; ~2 s to
    generate, ~6 s to train; 300 persons are too few: EM underflows)."""
    from pdp.cli import main
    from pdp.config import get_settings
    from pdp.synth import generate

    root = tmp_path_factory.mktemp("training") / "douaisis"
    generate(root, persons=1500, seed=1, territory="douaisis", workers=1)
    directory = ModelStore.from_settings(settings).directory
    previous = os.environ.get("PDP_LINKAGE_MODEL_DIR")
    os.environ["PDP_LINKAGE_MODEL_DIR"] = str(directory)
    get_settings.cache_clear()
    try:
        main(["linkage", "train", "--from", str(root)])
    finally:
        os.environ.pop("PDP_LINKAGE_MODEL_DIR")
        if previous is not None:
            os.environ["PDP_LINKAGE_MODEL_DIR"] = previous
        get_settings.cache_clear()
    model = ModelStore(directory).current()
    assert model is not None and model.trained_on == "batch"
    from pdp.governance.audit import AuditLog

    (entry,) = [e for e in AuditLog.from_settings(with_keys=False).query(action="linkage_training")
                if e.details["model"] == model.version]  # training is a governance event
    assert entry.details["trained_on"] == "batch" and entry.details["variants"] == model.variants
    return model


def test_training_twice_on_the_same_batch_gives_the_same_parameters(tmp_path: Path, model: TrainedModel) -> None:
    from pdp.synth import generate

    root = tmp_path / "douaisis"
    generate(root, persons=1500, seed=1, territory="douaisis", workers=1)
    inputs, _ = load_inputs(root)
    parameters, variants = train((i.canonical, i.postcode) for i in inputs)
    assert (parameters, variants) == (model.parameters(), model.variants)


def _edge(territory: Path, registry: Registry, settings: Settings, name: str) -> Edge:
    tasks = [
        FileTask(i, spec.name, path, path.relative_to(territory).as_posix(), path.stat().st_size)
        for i, (spec, path) in enumerate(discover(territory, registry).to_parse)
    ]
    context = BatchContext(settings, registry, territory, settings.var_dir / name, name,
                           datetime(2026, 1, 2, tzinfo=UTC), None)  # fmt: skip
    edge = Edge(KeyStore.from_settings(settings))
    for _task, result in run_files(tasks, context, workers=0, duplicates=Duplicates()):
        edge.absorb(result.state)
    return edge


def test_the_current_model_decides_as_the_same_parameters_given_directly(
    territory: Path, registry: Registry, settings: Settings, model: TrainedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pdp.pseudonym.linkage_model as linkage_model

    def no_em(*_args, **_kwargs):
        raise AssertionError("EM ran although a trained model is current")

    monkeypatch.setattr(linkage_model, "_train", no_em)
    with_model = _edge(territory, registry, settings, "m1").link([], current_options(settings))
    given = _edge(territory, registry, settings, "m2").link([], LinkageOptions(parameters=model.parameters()))
    assert with_model.model_version == model.version
    assert (with_model.mapping, with_model.rule_counts) == (given.mapping, given.rule_counts)
    assert with_model.mapping, "the territory has records that linkage re-keys"


@pytest.mark.spark
@pytest.mark.slow
def test_the_ingest_report_names_the_model_and_a_bad_file_stops_the_ingest(
    spark, tmp_path: Path, territory: Path, settings: Settings, model: TrainedModel
) -> None:
    batch = tmp_path / "batch"
    shutil.copytree(territory / "pmsi", batch / "pmsi")
    shutil.copytree(territory / "social", batch / "social")
    report = ingest_directory(batch, spark=spark, settings=settings, workers=0)
    assert report.link_model == model.version
    from pdp.lake import LakeTable

    commits = [c for c in LakeTable(spark, "bronze.records", lake_root=settings.lake_uri).history()
               if c.run is not None and c.run.run_id == report.batch_id]
    assert commits and {c.run.lineage["linkage_model"] for c in commits} == {model.version}  # traced to its model
    shutil.rmtree(batch / "social")  # a new file for the failing run: the logged ones are skipped
    shutil.copytree(territory / "pharmacy", batch / "pharmacy")

    other = lake_settings(tmp_path / "var2", settings.master_key.get_secret_value())
    KeyStore.from_settings(other).init()
    untrained = ingest_directory(batch, spark=spark, settings=other, workers=0)
    assert untrained.link_model in {MODEL_EM_BATCH, "builtin-default"}

    path = ModelStore.from_settings(settings).directory / f"{model.version}.json"
    good = path.read_text(encoding="utf-8")
    path.write_text(good.replace('"format"', '"formt"', 1), encoding="utf-8")
    try:
        with pytest.raises(LinkageModelError) as caught:
            ingest_directory(batch, spark=spark, settings=settings, workers=0)
        assert "\n" not in str(caught.value) and str(caught.value).startswith(f"linkage model {path.name}: format")
    finally:
        path.write_text(good, encoding="utf-8")


def test_training_on_a_vault_sample_reads_the_linkage_view(
    territory: Path, registry: Registry, settings: Settings
) -> None:
    from pdp.cli import _training_identities
    from pdp.governance import create_all, make_engine
    from pdp.pseudonym.vault import IdentityVault

    engine = make_engine(settings.db_url)
    create_all(engine)
    edge = _edge(territory, registry, settings, "v1")
    edge.link([])
    IdentityVault(engine, KeyStore.from_settings(settings)).upsert_many(edge.vault_records)
    items, trained_on = _training_identities(None, 1000, 7, settings)
    assert trained_on == "vault_sample"
    assert len(items) >= len(edge.vault_records) > 200  # the earlier ingest test of this module may add some
    with pytest.raises(LinkageModelError, match="too few distinct identities"):
        train(items)  # ~300 persons: EM needs more (and never sees a value of them in the message)
    from pdp.pseudonym.linkage_trained import sample_pseudonyms

    vault = IdentityVault(engine, KeyStore.from_settings(settings))
    everyone = vault.pseudonyms()
    drawn = sample_pseudonyms(vault, 100, seed=7, page=37)  # several pages, a sample smaller than the vault
    assert len(drawn) == len(set(drawn)) == 100 and set(drawn) <= set(everyone) and drawn == sorted(drawn)
    assert drawn == sample_pseudonyms(vault, 100, seed=7, page=50)  # the draw depends on the seed, not the page
    assert drawn != sample_pseudonyms(vault, 100, seed=8, page=37)
    assert sample_pseudonyms(vault, 10 * len(everyone), seed=7) == everyone
