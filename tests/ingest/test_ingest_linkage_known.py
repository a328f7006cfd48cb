"""Cross-batch linkage reads only the known persons sharing a blocking key with the batch, and
links exactly as it would against the whole vault (no Spark: the edge and the vault alone)."""

from __future__ import annotations

import base64
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from ingest_helpers import lake_settings

from pdp.config import Settings
from pdp.governance import create_all, make_engine
from pdp.ingest import Registry
from pdp.ingest.edge import Edge
from pdp.ingest.fanout import BatchContext, FileTask, run_files
from pdp.ingest.parse import Duplicates
from pdp.ingest.registry import discover
from pdp.pseudonym.keys import KeyStore
from pdp.pseudonym.vault import IdentityVault, record_canonical

FIRST = {"pmsi", "lab_hl7"}  # the second batch: GP, pharmacy, social


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    var = tmp_path_factory.mktemp("known-var")
    master = base64.b64encode(os.urandom(32)).decode("ascii")
    s = lake_settings(var, master)
    KeyStore.from_settings(s).init()
    return s


def _edge(territory: Path, registry: Registry, settings: Settings, sources: set[str] | None, name: str) -> Edge:
    """An edge fed with the territory's files of `sources` (None: the others)."""
    tasks = [
        FileTask(i, spec.name, path, path.relative_to(territory).as_posix(), path.stat().st_size)
        for i, (spec, path) in enumerate(discover(territory, registry).to_parse)
        if (spec.name in FIRST) == (sources is not None)
    ]
    staging = settings.var_dir / name
    context = BatchContext(settings, registry, territory, staging, name, datetime(2026, 1, 2, tzinfo=UTC), None)
    edge = Edge(KeyStore.from_settings(settings))
    for _task, result in run_files(tasks, context, workers=0, duplicates=Duplicates()):
        edge.absorb(result.state)
    return edge


def vault_with_first_batch(territory: Path, registry: Registry, settings: Settings, name: str) -> IdentityVault:
    """The settings' vault holding the first batch (:data:`FIRST`'s files), linked on its own."""
    engine = make_engine(settings.db_url)
    create_all(engine)
    vault = IdentityVault(engine, KeyStore.from_settings(settings))
    first = _edge(territory, registry, settings, FIRST, name)
    first.link([])
    vault.upsert_many(first.vault_records)
    return vault


def test_linkage_against_the_blocking_candidates_equals_linkage_against_the_whole_vault(
    territory: Path, registry: Registry, settings: Settings
) -> None:
    vault = vault_with_first_batch(territory, registry, settings, "b1")

    whole = []
    for pseudonym, record in vault.get_many(vault.pseudonyms()).items():
        canonical = record_canonical(record)
        if canonical is not None:
            whole.append((pseudonym, canonical))
    second = _edge(territory, registry, settings, None, "b2")
    candidates = vault.linkable(second.canonicals.values())
    assert 0 < len(candidates) < len(whole)  # not the whole vault, yet some known persons return

    against_whole = second.link(whole)
    again = _edge(territory, registry, settings, None, "b3")
    against_candidates = again.link(candidates)
    assert against_candidates.mapping == against_whole.mapping
    assert against_candidates.superseded == against_whole.superseded
    assert against_candidates.rule_counts == against_whole.rule_counts
    assert against_whole.mapping, "some second-batch identities join a person of the first batch"
