"""`pdp bench vault` measures the store production runs on: a throwaway SQLite file, or a
throwaway schema on the configured PostgreSQL server, gone afterwards."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from pdp.bench.vault import _records, throwaway_vault
from pdp.config import Settings
from pdp.governance import make_engine
from pdp.pseudonym.vault import IdentityVault


def _bench_schemas(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return set(conn.scalars(text(
                "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE 'pdp_bench_%'")))
    finally:
        engine.dispose()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_throwaway_vault_is_of_the_configured_kind_and_is_removed(kind: str, tmp_path: Path,
                                                                  request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("pg_url") if kind == "postgresql" else f"sqlite:///{tmp_path / 'unused.db'}"
    before = _bench_schemas(request.getfixturevalue("pg_url")) if kind == "postgresql" else set()
    records = _records(30)
    with throwaway_vault(tmp_path, Settings(_env_file=None, db_url=url)) as (store, engine, edge):
        assert engine.dialect.name == kind
        edge.upsert_many(records)
        opened = IdentityVault(engine, store).get_many([p for p, _r in records])
        assert {p: r.birth_name for p, r in opened.items()} == {p: r.birth_name for p, r in records}
        if kind == "postgresql":
            assert len(_bench_schemas(url) - before) == 1
    if kind == "postgresql":
        assert _bench_schemas(url) == before
    else:
        assert (tmp_path / "pdp.db").exists() and not (tmp_path / "unused.db").exists()
