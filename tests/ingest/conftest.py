"""Fixtures of the ingest tests: one small synthetic territory for the session, the built-in registry."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from ingest_helpers import NominativeScanner

from pdp.ingest import Registry, load_registry

if TYPE_CHECKING:
    from pdp.pseudonym.keys import KeyStore


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


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> KeyStore:
    """An initialised key store of its own (fresh master key) for tests that drive the edge directly."""
    import base64
    import os

    from pdp.config import Settings
    from pdp.pseudonym.keys import KeyStore

    var = tmp_path_factory.mktemp("edge-keys")
    keys = KeyStore.from_settings(Settings(_env_file=None, var_dir=var, key_store=var / "keys",
                                           master_key=base64.b64encode(os.urandom(32)).decode("ascii")))
    keys.init()
    return keys
