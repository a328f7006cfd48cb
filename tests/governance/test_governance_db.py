"""The governance store: SQLite set-up (WAL, foreign keys, immediate transactions), PostgreSQL binding."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Engine,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    event,
    inspect,
    select,
    text,
)

from pdp.config import Settings
from pdp.governance import GovernanceDbError, bulk_insert, create_all, make_engine

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


def _bulk_table() -> Table:
    return Table(
        "bulk_probe", MetaData(),
        Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
        Column("name", String(64), nullable=True),
        Column("data", LargeBinary, nullable=False),
        Column("at", DateTime(timezone=True), nullable=False),
        Column("n", Integer, nullable=True),
    )


def test_bulk_insert_keeps_every_value_and_the_order_given(governance_engine: Engine) -> None:
    """COPY on PostgreSQL (SQLAlchemy never sees an INSERT), one executemany elsewhere; same rows back."""
    table = _bulk_table()
    table.create(governance_engine)
    at = datetime(2026, 12, 6, 8, 30, 15, 123456, tzinfo=UTC)
    rows = [
        {"name": "tab\there, new\nline, back\\slash, Éloïse", "data": b"\x00\\x\x01\xff", "at": at, "n": None},
        {"name": None, "data": b"", "at": at, "n": -7},
        *({"name": f"r{i}", "data": bytes([i % 256]) * 40, "at": at, "n": i} for i in range(500)),
    ]
    statements: list[str] = []
    event.listen(governance_engine, "before_cursor_execute",
                 lambda _c, _cur, sql, *_rest: statements.append(sql.split()[0].upper()))
    with governance_engine.begin() as conn:
        bulk_insert(conn, table, rows)
        bulk_insert(conn, table, [])
    expected_inserts = 0 if governance_engine.dialect.name == "postgresql" else 1
    assert statements.count("INSERT") == expected_inserts
    with governance_engine.connect() as conn:
        back = [dict(r._mapping) for r in conn.execute(select(table).order_by(table.c.id))]
    def naive_utc(row: dict) -> dict:  # SQLite gives the instant back without its zone
        when = row["at"]
        return {**row, "at": when.astimezone(UTC).replace(tzinfo=None) if when.tzinfo else when}

    assert [naive_utc({k: v for k, v in r.items() if k != "id"}) for r in back] == [naive_utc(r) for r in rows]
    assert [r["id"] for r in back] == sorted(r["id"] for r in back)


def test_bulk_insert_refuses_rows_of_different_shapes(governance_engine: Engine) -> None:
    table = _bulk_table()
    table.create(governance_engine)
    at = datetime(2026, 12, 6, tzinfo=UTC)
    with governance_engine.begin() as conn, pytest.raises(ValueError, match="same columns"):
        bulk_insert(conn, table, [{"data": b"a", "at": at}, {"data": b"b", "at": at, "n": 1}])
    with governance_engine.begin() as conn, pytest.raises(ValueError, match="no column colour"):
        bulk_insert(conn, table, [{"data": b"a", "at": at, "colour": "red"}])


def test_bulk_insert_refuses_a_column_needing_type_processing_on_postgresql(pg_url: str) -> None:
    table = Table("bulk_probe_json", MetaData(), Column("doc", JSON))
    engine = make_engine(pg_url)
    try:
        with engine.begin() as conn, pytest.raises(ValueError, match="column doc needs SQLAlchemy"):
            bulk_insert(conn, table, [{"doc": {"a": 1}}])
    finally:
        engine.dispose()
