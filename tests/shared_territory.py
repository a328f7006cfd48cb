"""The territory several suites share (built once per session by the ``built_territory`` fixture of
``tests/conftest.py``), and how a test takes its own copy of it."""

from __future__ import annotations

import os
import shutil
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pdp.config import Settings

BUILT_AS_OF = date(2026, 6, 30)
BUILT_TERRITORY = "Douaisis"  # the label its indicators are published under

BUILT_CACHE = os.environ.get("PDP_TEST_API_CACHE")
"""Development only: a directory where the built territory is kept after a first run and copied
from on the next ones, to iterate on the API without minutes of Spark. Unset in CI."""


def lake_settings(var: Path, master_key: str | None = None, **extra: Any) -> Settings:
    """Settings of an in-process run on its own var/ (lake, SQLite store, key store), with a fresh
    master key unless one is given: what `pdp_env` (tests/ingest/ingest_helpers.py) is to a `pdp`
    subprocess. `extra`: further settings (the API's OIDC ones)."""
    from pdp.bench.scratch import throwaway_keys

    # the key inline and no other: an operator's PDP_MASTER_KEY_FILE or PDP_KMS is not this var/'s
    return throwaway_keys(master_key, var_dir=var, lake_uri=str(var / "lake"), db_url=f"sqlite:///{var / 'pdp.db'}",
                          key_store=var / "keys", **extra)


def var_settings(var: Path, **extra: Any) -> Settings:
    """The settings of a var/ laid out as ``built_territory``'s: its master key in ``master.key``."""
    return lake_settings(var, (var / "master.key").read_text(), **extra)


def copy_var(built: Path, into: Path) -> Path:
    """A private copy of a built var/ (its lake's paths are relative: the copy is a lake of its own)."""
    shutil.copytree(built, into, dirs_exist_ok=True)
    return into
