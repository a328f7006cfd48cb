"""A big batch's identities staged sealed and folded on Spark give what the driver's fold gives.

The driver's in-memory fold (:meth:`pdp.ingest.edge.EdgeState.absorb`) is the reference: the
staged fold must give the same vault record per person, the same canonical identities in the
same order (linkage's input), and, once linkage re-keys and oppositions withhold, the same
records streamed to the vault as :meth:`Edge.link` and :meth:`Edge.forget` leave in memory.
"""

from __future__ import annotations

import base64
import os
import pickle
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from ingest_helpers import edge_run, lake_settings, vault_chunks
from pydantic import SecretStr
from pyspark import cloudpickle
from pyspark.sql import SparkSession
from test_ingest_linkage_known import FIRST, _edge, vault_with_first_batch

from pdp.config import Settings
from pdp.governance import create_all, make_engine
from pdp.governance.opposition import OppositionRegistry, identity_tokens, withheld_at_edge
from pdp.ingest import Registry
from pdp.ingest.edge import Edge, LinkOutcome, fold_packs, pack_record, rekey_record
from pdp.ingest.fanout import BatchContext, FileTask, run_files
from pdp.ingest.identity_stage import (
    SCHEMA,
    FoldedIdentities,
    IdentityCipher,
    PreparedChunk,
    StagedChanges,
    StagedIdentityError,
    _fold_sorted,
    _merged_per_person,
    _rows,
    fold,
    order_key,
    prepare_vault,
    prepared_chunks,
    stage_identities,
)
from pdp.ingest.linking import link_batch
from pdp.ingest.parse import Duplicates
from pdp.ingest.registry import discover
from pdp.ingest.report import IngestReport
from pdp.pseudonym.keys import KeyStore
from pdp.pseudonym.linkage import LinkageOptions
from pdp.pseudonym.linkage_model import DEFAULT_PARAMETERS
from pdp.pseudonym.vault import EdgeKeys, IdentityVault

pytestmark = [pytest.mark.spark]


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    var = tmp_path_factory.mktemp("identity-stage-var")
    key_file = var / "master.key"  # the executors that fold open the key store themselves, from this file
    key_file.write_text(base64.b64encode(os.urandom(32)).decode("ascii"))
    key_file.chmod(0o600)
    s = lake_settings(var).model_copy(update={"master_key": None, "master_key_file": key_file})
    KeyStore.from_settings(s).init()
    return s


def test_staged_identities_fold_on_spark_to_what_the_driver_folds(
    spark: SparkSession, territory: Path, registry: Registry, settings: Settings, tmp_path: Path,
) -> None:
    """Files in two worker processes, the large ones cut into parts: the persons spread over many
    parts of many files, folded per field in file order on the executors."""
    driver = edge_run(territory, registry, settings, tmp_path / "driver")
    staged = edge_run(territory, registry, settings, tmp_path / "staged", workers=2, split=40_000, fold_on=spark)
    assert max(staged["tasks"].values()) > 1, "some file ran as several parts"
    assert staged["vault"] == driver["vault"] and len(driver["vault"]) > 250
    assert list(staged["canonicals"]) == list(driver["canonicals"]), "linkage takes them in the same order"
    assert staged["canonicals"] == driver["canonicals"] and staged["postcodes"] == driver["postcodes"]
    for part in ("bronze", "quarantine", "counts"):
        assert staged[part] == driver[part], part
    for directory, role in ((tmp_path / "staged" / "identities", "staged"), (tmp_path / "staged" / "folded", "folded")):
        table = pq.read_table(directory)
        assert table.column_names == ["pseudonym", "ord", "box"]
        cipher = IdentityCipher(KeyStore.from_settings(settings), "batch-1")
        for pseudonym, box in zip(table.column("pseudonym").to_pylist(), table.column("box").to_pylist(),
                                  strict=True):
            assert b"birth_name" not in box and b"first_names" not in box, f"a pack in clear in {directory.name}"
            assert "birth_name" in cipher.open(pseudonym, box, role=role)[0]


def test_a_staged_identity_opens_under_its_own_batch_only(settings: Settings, tmp_path: Path) -> None:
    store = KeyStore.from_settings(settings)
    pack = ({"birth_name": "MARTIN"}, {"birth_name": None}, None, None, None, "59500")
    box = IdentityCipher(store, "batch-a").seal("p1", pack, role="folded")
    assert IdentityCipher(store, "batch-a").open("p1", box, role="folded") == pack
    with pytest.raises(StagedIdentityError) as other_batch:
        IdentityCipher(store, "batch-b").open("p1", box, role="folded")
    assert "MARTIN" not in str(other_batch.value)
    with pytest.raises(StagedIdentityError):
        IdentityCipher(store, "batch-a").open("p2", box, role="folded")  # moved to another person's row
    for role in ("staged", "known"):  # moved to another kind of box: a known person's, a file's part
        with pytest.raises(StagedIdentityError):
            IdentityCipher(store, "batch-a").open("p1", box, role=role)


def _staged(territory: Path, registry: Registry, settings: Settings, name: str, spark: SparkSession
            ) -> FoldedIdentities:
    """The files of the second batch (as :func:`_edge` reads them), their identities staged and folded."""
    tasks = [FileTask(i, spec.name, path, path.relative_to(territory).as_posix(), path.stat().st_size)
             for i, (spec, path) in enumerate(discover(territory, registry).to_parse) if spec.name not in FIRST]
    staging = settings.var_dir / name
    context = BatchContext(settings, registry, territory, staging, name, datetime(2026, 1, 2, tzinfo=UTC), None,
                           stage_identities=True)
    for _task, result in run_files(tasks, context, workers=0, duplicates=Duplicates()):
        assert not result.state.identities and not result.state.canonicals
    return fold(spark, staging / "identities", settings, IdentityCipher(KeyStore.from_settings(settings), name),
                staging / "folded")


@dataclass
class SecondBatch:
    """A second batch that joins known persons, linked in memory (the reference) and staged."""

    vault: IdentityVault
    known: list
    canonicals: dict
    outcome: LinkOutcome
    folded: FoldedIdentities
    options = LinkageOptions(parameters=DEFAULT_PARAMETERS, model_version="test")


@pytest.fixture(scope="module")
def second(spark: SparkSession, territory: Path, registry: Registry, settings: Settings) -> SecondBatch:
    vault = vault_with_first_batch(territory, registry, settings, "stage-1")
    in_memory = _edge(territory, registry, settings, None, "stage-2")
    known = vault.linkable(in_memory.canonicals.values())
    outcome = in_memory.link(known, SecondBatch.options)
    assert outcome.mapping and outcome.owners.keys() == set(outcome.mapping.values())
    return SecondBatch(vault, known, dict(in_memory.canonicals), outcome,
                       _staged(territory, registry, settings, "stage-3", spark))


def test_streamed_vault_records_are_those_linkage_and_oppositions_leave(
    second: SecondBatch, spark: SparkSession, territory: Path, registry: Registry, settings: Settings,
) -> None:
    """A second batch that joins known persons: re-keyed, merged in file order, its person's
    canonical identity taken, the opposed left out — record for record as in memory."""
    in_memory, outcome = _edge(territory, registry, settings, None, "stage-4"), second.outcome
    in_memory.link(second.known, SecondBatch.options)
    plain = next(p for p in in_memory.canonicals if p not in outcome.mapping and p not in outcome.owners)
    withheld = {plain, next(iter(outcome.mapping.values()))}
    in_memory.forget(withheld)
    expected = {p: r.model_dump() for p, r in in_memory.vault_records.items()}

    folded = second.folded
    canonicals, _ = folded.canonicals()
    assert list(canonicals) == list(second.canonicals)
    chunks = list(vault_chunks(folded.path, folded.cipher, outcome.mapping, outcome.owners, withheld))
    streamed = {p: r.model_dump() for chunk in chunks for p, r in chunk}
    assert sum(len(c) for c in chunks) == len(streamed), "one record per person"
    assert streamed == expected

    # the same persons with their writes made ready on the executors: each prepared for its own record,
    # the re-keyed and joined ones merged there too, from the linkage's changes as staged beside the batch
    changes = StagedChanges.write(spark, outcome.mapping, outcome.owners, folded.cipher, folded.changes_path)
    assert changes.read(spark, folded.cipher) == (outcome.mapping, outcome.owners)
    prepared = prepare_vault(spark, folded, settings.var_dir / "stage-prepared", changes, withheld)
    ready, merged = {}, {}
    for chunk in prepared_chunks(prepared, folded.cipher):
        assert [i.pseudonym for i in chunk.items] == list(chunk.boxes)
        assert all(i.seal["pseudonym"] == i.pseudonym and i.blocks and i.ciphertext for i in chunk.items)
        records = {p: r.model_dump() for p, r in chunk.records(list(chunk.boxes)).items()}
        ready.update({p: r for p, r in records.items() if p not in chunk.merged})
        merged.update({p: r for p, r in records.items() if p in chunk.merged})
    assert ready.keys().isdisjoint(merged) and {**ready, **merged} == expected
    assert merged.keys() == set(outcome.mapping.values()) - withheld

    # written both ways into two vaults holding the first batch (the joined known persons merged with
    # what the vault holds): the same vault, person by person
    store = KeyStore.from_settings(settings)
    first = second.vault.get_many(second.vault.pseudonyms())
    assert set(first) & merged.keys(), "a re-keyed person the vault already holds"
    written = []
    for name in ("records", "prepared"):
        engine = make_engine(f"sqlite:///{settings.var_dir / f'stage-{name}.db'}")
        create_all(engine)
        IdentityVault(engine, store).upsert_many(first)
        vault = IdentityVault(engine, EdgeKeys(store))
        for chunk in (chunks if name == "records" else prepared_chunks(prepared, folded.cipher)):
            if isinstance(chunk, PreparedChunk):
                vault.write_prepared(chunk.items, chunk.records)
            else:
                vault.upsert_many(chunk)
        written.append(_vault_content(engine, store, sorted(expected.keys() | first.keys())))
    assert written[0] == written[1] and len(written[0]["records"]) == len(expected.keys() | first.keys())


def _vault_content(engine, store: KeyStore, pseudonyms: list[str]) -> dict:
    """What a vault holds of `pseudonyms`, but nonces and random ids: records, linkage views, indexes, boxes."""
    from sqlalchemy import func, select

    from pdp.pseudonym.vault import (
        identity_vault,
        identity_vault_blocking,
        identity_vault_name_tokens,
        identity_vault_seal,
    )

    reader = IdentityVault(engine, store)
    content = {"records": {p: r.model_dump() for p, r in reader.get_many(pseudonyms).items()},
               "linkage": {p: r.model_dump() for p, r in reader.linkage_view(pseudonyms).items()}}
    with engine.connect() as conn:
        content["blocks"] = sorted(conn.execute(select(identity_vault_blocking)).all())
        content["tokens"] = sorted(conn.execute(select(identity_vault_name_tokens)).all())
        content["boxes"] = sorted(conn.execute(select(identity_vault_seal.c.pseudonym, func.count())
                                               .group_by(identity_vault_seal.c.pseudonym)).all())
        content["rows"] = sorted(conn.execute(select(identity_vault.c.pseudonym, identity_vault.c.key_version,
                                                     identity_vault.c.source_count)).all())
    return content


def test_a_staged_batch_links_on_spark_without_its_identities_in_the_driver(
    second: SecondBatch, spark: SparkSession, settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    """Blocking keys and opposition tokens hashed on the executors, the batch linked on Spark from
    its folded boxes: the same known persons, the same decision and the same tokens as in memory."""
    folded, store = second.folded, KeyStore.from_settings(settings)
    assert folded.persons() == len(second.canonicals)
    assert list(folded.pseudonyms()) == list(second.canonicals), "streamed in file order"
    known = second.vault.known_by_blocks(folded.blocks(spark, second.vault.blocking_versions()))
    assert known == second.known and len(known) > 10
    monkeypatch.setattr("pdp.pseudonym.vault._KNOWN_CHUNK", 7)  # several chunks, several staged parts
    staged = folded.stage_known(second.vault.known_chunks(folded.blocks(spark, second.vault.blocking_versions())))
    assert staged == len(known) and len(list(folded.known_path.glob("part-*.parquet"))) > 1
    assert folded.known() == known, "sealed beside the batch and read back in order"

    linked = Edge(store).link_boxed(folded.boxed(), folded.boxed_known(), SecondBatch.options, spark=spark,
                                    changes=tmp_path / "changes", seal=folded.opener.seal_owner, settings=settings)
    expected = second.outcome
    assert linked.mapping == {} and linked.owners == {}, "the changes are beside the batch, not in the driver"
    assert linked.staged is not None and linked.relinked == len(expected.mapping)
    assert linked.staged.read(spark, folded.cipher) == (expected.mapping, expected.owners)
    assert linked.superseded == expected.superseded and linked.rule_counts == expected.rule_counts
    assert linked.model_version == "test"
    some = dict(list(expected.mapping.items())[:3])
    assert linked.staged.lookup(spark, [*some, "absent"]) == some

    version = store.ensure("opposition").version
    tokens = sorted(folded.tokens(spark, version))
    assert tokens == sorted((p, t) for p, c in second.canonicals.items() for t in identity_tokens(c, store))
    # withheld as in memory: a batch record joining an opposed known person, an identity whose token is opposed
    registry, engine = OppositionRegistry(second.vault.engine), second.vault.engine
    joining, person = next(iter(expected.mapping.items()))
    by_token = next(p for p in second.canonicals if p not in expected.mapping and p not in expected.owners)
    registry.submit([person], tokens=[t for p, t in tokens if p == by_token])
    monkeypatch.setattr("pdp.governance.opposition.service._EDGE_CHUNK", 7)  # looked up over many rounds
    try:
        finals = [(p, expected.mapping.get(p, p)) for p in second.canonicals]
        in_memory = withheld_at_edge(engine, store, finals, second.canonicals)
        assert {joining, by_token} <= in_memory
        assert sorted(linked.staged.finals(spark, folded)) == sorted(finals)
        assert withheld_at_edge(engine, store, linked.staged.finals(spark, folded), {},
                                tokens=folded.tokens(spark, version)) == in_memory
    finally:
        registry.withdraw([person], tokens=[t for p, t in tokens if p == by_token])


def test_a_person_cut_across_arrow_batches_is_merged_once(second: SecondBatch) -> None:
    """The executors' merge (:func:`_merged_per_person`) reads a partition's batches in turn: a
    person whose rows two batches share is one merged record, taking its person's canonical identity
    where linkage gave one (its own otherwise), in file order as :func:`rekey_record` merges."""
    folded, cipher = second.folded, second.folded.cipher
    rows = [row for row, _ in zip(_rows(folded.path), range(4), strict=False)]
    record = {p: pack_record(cipher.open(p, box, role="folded")) for p, _, box in rows}
    person, other = rows[0][0], rows[3][0]
    owner = base64.b64encode(b"the person's canonical identity").decode("ascii")
    owned = cipher.seal(person, owner, role="owner")
    lines = [(person, order, p, box, owned) for p, order, box in rows[:3]]
    lines.append((other, rows[3][1], other, rows[3][2], None))
    names = ["person", "ord", "pseudonym", "box", "owner"]
    batches = [pa.RecordBatch.from_pylist([dict(zip(names, line, strict=True)) for line in cut]) for cut in
               (lines[:2], lines[2:])]
    merged = list(_merged_per_person(iter(batches), cipher))

    expected = None
    for p, _, _ in rows[:3]:
        expected = rekey_record(expected, record[p], owner)
    assert merged == [(person, rows[0][1], expected),
                      (other, rows[3][1], rekey_record(None, record[other], record[other].canonical))]
    assert merged[0][2].canonical == owner and len({r.birth_name for r in record.values()}) > 1


def test_a_staged_batch_links_alone_on_spark_and_in_memory_through_the_batch_linkage(
    second: SecondBatch, spark: SparkSession, territory: Path, registry: Registry, settings: Settings, tmp_path: Path,
) -> None:
    """No known person: the boxed linkage equals the in-memory one. And the batch linkage step
    (:func:`link_batch`) of a staged batch small enough for the in-memory engine reads the staged
    identities and known persons back and decides as it does for a batch folded in memory."""
    store = KeyStore.from_settings(settings)
    alone = _edge(territory, registry, settings, None, "stage-5").link([], SecondBatch.options)
    folded = second.folded
    boxed = Edge(store).link_boxed(folded.boxed(), [], SecondBatch.options, spark=spark,
                                   changes=tmp_path / "changes", seal=folded.opener.seal_owner, settings=settings)
    assert boxed.staged is not None and boxed.rule_counts == alone.rule_counts
    assert boxed.staged.read(spark, folded.cipher) == (alone.mapping, alone.owners)
    assert alone.mapping, "the batch's own records are re-keyed to one another"

    # an empty vault of its own: no known person to merge, so the step leaves the lake alone
    empty = IdentityVault(make_engine(f"sqlite:///{tmp_path / 'vault.db'}"), store)
    create_all(empty.engine)
    in_memory = settings.model_copy(update={"linkage_engine": "memory"})
    reference = link_batch(spark, _edge(territory, registry, settings, None, "stage-6"), empty,
                           IngestReport("stage-6"), lake_root=settings.lake_uri, settings=in_memory)
    report = IngestReport("stage-3")
    staged = link_batch(spark, Edge(store), empty, report, lake_root=settings.lake_uri, settings=in_memory,
                        staged=second.folded)
    assert report.link_engine == "memory" and report.identities_on_driver
    assert (staged.mapping, staged.owners, staged.rule_counts) == (
        reference.mapping, reference.owners, reference.rule_counts)


def test_an_opener_pickles_without_a_key(second: SecondBatch, settings: Settings) -> None:
    """What a Spark task carries: the settings without their secrets, the batch id, the key
    version; the key store and the batch's key are opened again where it runs."""
    opener = second.folded.opener
    pseudonym, box = next((p, b) for p, _, b in _rows(second.folded.path))
    assert opener(pseudonym, box)[0] is not None  # the store and the cipher opened here
    data = cloudpickle.dumps(opener)
    store = KeyStore.from_settings(settings)
    for secret in (store.get("record", second.folded.cipher.version).material, settings.master_key_file.read_bytes()):
        assert secret not in data
    restored = pickle.loads(data)
    assert restored._store is None and restored._cipher is None
    assert restored(pseudonym, box) == opener(pseudonym, box)


def test_auto_stages_a_cluster_batch_or_a_big_one(settings: Settings) -> None:
    auto = settings.model_copy(update={"edge_identities": "auto", "edge_identities_min_bytes": 1000})
    assert stage_identities(auto, 10, on_spark=True) and stage_identities(auto, 1000, on_spark=False)
    assert not stage_identities(auto, 999, on_spark=False)
    assert not stage_identities(auto.model_copy(update={"edge_identities": "driver"}), 10**12, on_spark=True)
    assert stage_identities(auto.model_copy(update={"edge_identities": "staged"}), 0, on_spark=False)
    assert Settings(_env_file=None).edge_identities == "auto"


def test_auto_keeps_a_big_batch_on_the_driver_when_spark_workers_could_not_open_the_keys(
    settings: Settings, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A master key given to this process only (a .env file, settings built in code) does not reach
    Spark's Python workers: the fold would fail after the whole parse, so `auto` does not stage."""
    monkeypatch.delenv("PDP_MASTER_KEY", raising=False)
    in_process = settings.model_copy(update={"master_key": SecretStr(base64.b64encode(os.urandom(32)).decode()),
                                             "master_key_file": None, "edge_identities_min_bytes": 1})
    assert not stage_identities(in_process, 10**9, on_spark=False)
    monkeypatch.setenv("PDP_MASTER_KEY", in_process.master_key.get_secret_value())
    assert stage_identities(in_process, 10**9, on_spark=False)


def _pack(name: str, day: int) -> tuple:
    return ({"birth_name": name}, {"birth_name": date(2026, 1, day)}, date(2026, 1, day), None, None, None)


def test_a_person_split_across_arrow_batches_folds_once(settings: Settings) -> None:
    """The fold's rows come in Arrow batches of any size: a person whose rows straddle two is one
    folded row, the packs folded in order, exactly as fold_packs folds them."""
    cipher = IdentityCipher(KeyStore.from_settings(settings), "batch-arrow")
    rows = [("p1", 1, _pack("A", 3)), ("p1", 2, _pack("B", 1)), ("p1", 3, _pack("C", 2)), ("p2", 4, _pack("D", 1))]
    batches = [pa.RecordBatch.from_arrays([pa.array([p]), pa.array([o], pa.int64()),
                                           pa.array([cipher.seal(p, k, role="staged")])], schema=SCHEMA)
               for p, o, k in rows]
    out = [row for batch in _fold_sorted(iter(batches), cipher)
           for row in zip(*(batch.column(i).to_pylist() for i in range(3)), strict=True)]
    assert [(p, o) for p, o, _ in out] == [("p1", 1), ("p2", 4)]
    assert cipher.open("p1", out[0][2], role="folded") == fold_packs([k for p, _, k in rows if p == "p1"])
    assert cipher.open("p1", out[0][2], role="folded")[0] == {"birth_name": "A"}, "the latest observation wins"


def test_a_forged_box_cannot_run_code_when_opened(settings: Settings) -> None:
    """Whoever holds the record key can seal: a box's content is unpickled into data only."""

    class Payload:
        def __reduce__(self) -> tuple:
            return (os.system, ("true",))

    cipher = IdentityCipher(KeyStore.from_settings(settings), "batch-forged")
    box = cipher.seal("p1", Payload(), role="folded")  # type: ignore[arg-type]
    with pytest.raises(StagedIdentityError):
        cipher.open("p1", box, role="folded")


def test_an_order_key_out_of_its_ranges_is_refused() -> None:
    assert order_key(3, 2, 1) == (3 << 40) | (2 << 24) | 1
    for bad in ((1 << 23, 0, 0), (0, 1 << 16, 0), (0, 0, 1 << 24), (-1, 0, 0)):
        with pytest.raises(ValueError, match="split the batch"):
            order_key(*bad)
