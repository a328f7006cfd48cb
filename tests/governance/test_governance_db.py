"""The governance store: SQLite set-up (WAL, foreign keys, immediate transactions), PostgreSQL binding."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import Engine, inspect, text

from pdp.config import Settings
from pdp.governance import GovernanceDbError, create_all, make_engine

GOVERNANCE_TABLES = {"identity_vault", "reidentification_log"}


def test_sqlite_file_store_is_created_with_wal_foreign_keys_and_secure_delete(tmp_path: Path) -> None:
    db = tmp_path / "deep" / "var" / "pdp.db"
    engine = make_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA secure_delete").scalar() == 1
    assert db.exists()
    engine.dispose()


def test_sqlite_transactions_take_the_write_lock_up_front(tmp_path: Path) -> None:
    """A read-then-write transaction holds the lock from BEGIN: no other writer slips in between."""
    db = tmp_path / "pdp.db"
    engine = make_engine(f"sqlite:///{db}")
    create_all(engine)
    with engine.begin() as conn:
        conn.execute(text("SELECT count(*) FROM identity_vault")).scalar()
        other = sqlite3.connect(db, timeout=0, isolation_level=None)
        try:
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
        finally:
            other.close()
    engine.dispose()


def test_create_all_makes_every_governance_table_and_is_idempotent(governance_engine: Engine) -> None:
    create_all(governance_engine)
    create_all(governance_engine)
    assert set(inspect(governance_engine).get_table_names()) >= GOVERNANCE_TABLES


def test_postgresql_urls_are_bound_to_psycopg3() -> None:
    engine = make_engine("postgresql://someone:secret@127.0.0.1:1/nothing")
    assert engine.dialect.name == "postgresql"
    assert engine.dialect.driver == "psycopg"


def test_the_test_postgresql_server_answers(pg_url: str) -> None:
    engine = make_engine(pg_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar() == 1
        assert engine.dialect.server_version_info >= (13,)
    engine.dispose()


def test_settings_db_url_is_the_default(tmp_path: Path) -> None:
    db = tmp_path / "from-settings.db"
    engine = make_engine(settings=Settings(_env_file=None, db_url=f"sqlite:///{db}"))
    create_all(engine)
    assert db.exists()
    engine.dispose()


@pytest.mark.parametrize(
    "url",
    ["mysql://root:hunter2-secret@127.0.0.1/pdp", "not a url hunter2-secret"],
    ids=["unsupported-backend", "garbage"],
)
def test_unusable_urls_fail_with_one_line_and_no_credentials(url: str) -> None:
    with pytest.raises(GovernanceDbError) as caught:
        make_engine(url)
    message = str(caught.value)
    assert "\n" not in message
    assert "hunter2" not in message
