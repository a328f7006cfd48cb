"""Fixtures of the ingest tests: one small synthetic territory for the session, the built-in registry."""

from __future__ import annotations

from pathlib import Path

import pytest
from ingest_helpers import NominativeScanner

from pdp.ingest import Registry, load_registry


@pytest.fixture(scope="session")
def territory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 300-person synthetic territory (~1 s to generate); tests copy files out of it, never write in it."""
    from pdp.synth import generate

    root = tmp_path_factory.mktemp("territory") / "douaisis"
    generate(root, persons=300, seed=1, territory="douaisis", workers=1)
    return root


@pytest.fixture(scope="session")
def registry() -> Registry:
    return load_registry()


@pytest.fixture(scope="session")
def scanner(territory: Path) -> NominativeScanner:
    return NominativeScanner.from_ground_truth(territory / "ground_truth" / "identities.csv")
