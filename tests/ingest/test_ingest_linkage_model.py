"""Every batch links with the trained model when there is one, and says which it used: the
decisions are those of a run given the same parameters, no EM runs, and a bad model file
stops the ingest in one line."""

from __future__ import annotations

import base64
import json
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
from pdp.pseudonym.linkage_model import DEFAULT_PARAMETERS, UnusableModel, check_usable
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


def test_pdp_bench_linkage_scores_the_current_model_on_a_territory_it_was_not_trained_on(
    tmp_path: Path, settings: Settings, model: TrainedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pdp.config import get_settings
    from pdp.pseudonym.linkage import link
    from pdp.pseudonym.linkage_bench import bench_linkage
    from pdp.pseudonym.linkage_eval import evaluate
    from pdp.pseudonym.linkage_sources import read_truth
    from pdp.pseudonym.pseudonymise import Pseudonymiser
    from pdp.synth import generate

    # the platform's own master key, as an operator's environment names it: the bench's throw-away
    # key store must neither open it nor trip over it (it died on "both ... are set" before)
    key_file = tmp_path / "platform.key"
    key_file.write_text(base64.b64encode(os.urandom(32)).decode("ascii"))
    key_file.chmod(0o600)
    monkeypatch.setenv("PDP_MASTER_KEY_FILE", str(key_file))
    monkeypatch.setenv("PDP_LINKAGE_MODEL_DIR", str(tmp_path / "no model"))
    get_settings.cache_clear()
    assert bench_linkage(persons=300, seed=3)["current_model"] == "none trained"

    monkeypatch.setenv("PDP_LINKAGE_MODEL_DIR", str(ModelStore.from_settings(settings).directory))
    get_settings.cache_clear()
    try:
        figures = bench_linkage(persons=300, seed=3)
    finally:
        get_settings.cache_clear()
    root = tmp_path / "douaisis"
    generate(root, persons=300, seed=3, territory="douaisis", workers=1)
    inputs, _ = load_inputs(root)
    store = KeyStore.from_settings(lake_settings(tmp_path / "var", base64.b64encode(os.urandom(32)).decode("ascii")))
    store.init()
    expected = evaluate(link(inputs, Pseudonymiser(store), options=LinkageOptions(parameters=model.parameters())),
                        read_truth(root))
    assert figures["current_model"] == model.version
    assert (figures["current_recall"], figures["current_splits"], figures["current_collisions"]) == (
        round(expected.recall, 6), expected.splits, expected.collisions)


def _ignoring_names() -> dict:
    """The built-in model with the fault EM made on a vault sample: 96 % of its matches disagree
    entirely on the birth name (measured on the 1 M-person vault's sample; the built-in: 1 %)."""
    parameters = json.loads(json.dumps(DEFAULT_PARAMETERS))
    parameters["levels"]["birth_name"][-1]["m"] = 0.963
    return parameters


def test_a_model_that_ignores_names_is_refused_when_trained_and_when_read(tmp_path: Path) -> None:
    check_usable(DEFAULT_PARAMETERS)
    with pytest.raises(UnusableModel, match="96% of the pairs it calls matches disagree entirely on birth_name"):
        check_usable(_ignoring_names())
    store = ModelStore(tmp_path / "models")
    with pytest.raises(LinkageModelError, match=r"does not validate: .*EM found no match class"):
        store.save(_ignoring_names(), trained_on="batch", variants=10_000)
    assert store.current() is None  # nothing written
    # a file written before the check: refused when read, so the ingest stops in one line
    good = store.save(DEFAULT_PARAMETERS, trained_on="batch", variants=10_000)
    path = tmp_path / "models" / f"{good.version}.json"
    written = json.loads(path.read_text())
    written["levels"] = _ignoring_names()["levels"]
    path.write_text(json.dumps(written))
    with pytest.raises(LinkageModelError, match="EM found no match class"):
        store.current()


def test_pdp_linkage_train_on_the_vault_trains_u_only_and_keeps_the_prior_and_m(
    tmp_path: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch, pdp_cli
) -> None:
    """The vault holds each person once: EM there finds no matches (it made the model above), so
    only u is learnt from it, beside the current model's prior and m (here the built-in's)."""
    from pdp.config import get_settings
    from pdp.governance import create_all, make_engine
    from pdp.pseudonym.vault import IdentityVault
    from pdp.synth import generate

    root = tmp_path / "douaisis"
    generate(root, persons=1500, seed=2, territory="douaisis", workers=1)
    master = base64.b64encode(os.urandom(32)).decode("ascii")
    vault_settings = lake_settings(tmp_path / "var", master)
    KeyStore.from_settings(vault_settings).init()
    engine = make_engine(vault_settings.db_url)
    create_all(engine)
    edge = _edge(root, registry, vault_settings, "v")
    edge.link([])
    IdentityVault(engine, KeyStore.from_settings(vault_settings)).upsert_many(edge.vault_records)
    for name, value in {"PDP_VAR_DIR": tmp_path / "var", "PDP_DB_URL": vault_settings.db_url,
                        "PDP_KEY_STORE": vault_settings.key_store, "PDP_MASTER_KEY": master,
                        "PDP_LINKAGE_MODEL_DIR": tmp_path / "models"}.items():
        monkeypatch.setenv(name, str(value))
    monkeypatch.delenv("PDP_MASTER_KEY_FILE", raising=False)
    get_settings.cache_clear()
    # the platform still has the model EM once made on its vault: refused, so its m is not kept
    refused = ModelStore(tmp_path / "models").save(DEFAULT_PARAMETERS, trained_on="vault_sample", variants=10_000)
    path = tmp_path / "models" / f"{refused.version}.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "levels": _ignoring_names()["levels"]}))
    try:
        code, out, err = pdp_cli("linkage", "train", "--sample", "1000", "--json")
        (warning,) = err.splitlines()  # one line, and the training goes on
        assert code == 0 and "EM found no match class" in warning and "retrain it" in warning, err
        model = ModelStore(tmp_path / "models").current()
        code, again, err = pdp_cli("linkage", "train", "--sample", "1000", "--seed", "8", "--json")
        assert (code, err) == (0, ""), err
    finally:
        get_settings.cache_clear()
    assert json.loads(out.splitlines()[-1])["m_from"] == "builtin" == model.m_from
    # trained again on the vault: the prior and m still come from where they were learnt
    assert json.loads(again.splitlines()[-1])["m_from"] == "builtin"
    trained, builtin = model.parameters(), DEFAULT_PARAMETERS
    assert trained["probability_two_random_records_match"] == builtin["probability_two_random_records_match"]
    for name, levels in trained["levels"].items():
        assert [level["m"] for level in levels] == [level["m"] for level in builtin["levels"][name]], name
    # u is this population's: strangers agree on a surname as often as its names repeat here
    assert [lv["u"] for lv in trained["levels"]["birth_name"]] != [lv["u"] for lv in builtin["levels"]["birth_name"]]
    # the vault keeps no postcode: its comparison keeps the built-in's u (an unseen u would be overwhelming)
    assert trained["levels"]["postcode"] == builtin["levels"]["postcode"]
