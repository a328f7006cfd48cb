"""The governance store: one SQLAlchemy engine and one ``MetaData`` for every governance table.

Why one module: the identity vault, the re-identification log, the audit log, the opposition
registry and the API clients live in the same database (SQLite by default, PostgreSQL in
production) and must agree on its dialect quirks. The quirks are handled here, once:

- SQLite: the parent directory is created; WAL journal (readers never block the writer);
  foreign keys enforced; ``secure_delete`` so an erased row is overwritten, not just unlinked;
  a busy timeout; and every transaction opened with ``BEGIN IMMEDIATE`` so that a
  read-then-write transaction (upsert, merge) takes the write lock up front instead of failing
  half-way with "database is locked" when another writer got in between.
- PostgreSQL: ``postgresql://`` URLs are bound to psycopg 3 (the installed driver) and
  connections are pinged before use; bulk writes (:func:`bulk_insert`) go through ``COPY``.

Tables register themselves on :data:`metadata` in the module that owns them; that module's
name goes into ``TABLE_MODULES`` so :func:`create_all` always creates every table, whatever
was imported first.

Example::

    engine = make_engine("sqlite:///./var/pdp.db")
    create_all(engine)
    with engine.begin() as conn:
        ...
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, LargeBinary, MetaData, Table, create_engine, event, insert
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker

from pdp.config import Settings, get_settings

__all__ = ["TABLE_MODULES", "GovernanceDbError", "bulk_insert", "create_all", "make_engine", "metadata",
           "session_factory"]

# Constraint names are explicit so that migrations (and PostgreSQL error messages) are stable.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# Modules that define governance tables on `metadata`; imported by `create_all`.
TABLE_MODULES: tuple[str, ...] = (
    "pdp.pseudonym.vault",
    "pdp.pseudonym.reidentify",
    "pdp.governance.opposition.registry",
    "pdp.governance.authz.relationships",
    "pdp.governance.audit.tables",
    "pdp.pseudonym.psi.service",
)

_SQLITE_BUSY_TIMEOUT_MS = 10_000


class GovernanceDbError(Exception):
    """The governance store URL is unusable (one-line message, no credentials)."""


def make_engine(url: str | URL | None = None, *, settings: Settings | None = None, echo: bool = False) -> Engine:
    """An engine on the governance store: ``url`` if given, else ``settings.db_url``.

    SQLite URLs get the pragmas and locking described in the module docstring; PostgreSQL
    URLs are bound to psycopg 3. Any other backend is refused: the governance tables are
    tested on these two only.
    """
    raw = url if url is not None else (settings or get_settings()).db_url
    try:
        parsed = make_url(raw)
    except Exception as exc:  # SQLAlchemy's message would echo the URL, password included.
        raise GovernanceDbError("governance store: db_url is not a valid SQLAlchemy URL") from exc
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(parsed, echo=echo)
    if backend == "postgresql":
        if parsed.get_driver_name() in ("", "psycopg2"):
            parsed = parsed.set(drivername="postgresql+psycopg")
        return create_engine(parsed, echo=echo, pool_pre_ping=True)
    raise GovernanceDbError(f"governance store: unsupported backend {backend!r} (use sqlite or postgresql)")


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """A session factory bound to ``engine`` (objects stay readable after commit)."""
    return sessionmaker(bind=engine, expire_on_commit=False)


def create_all(engine: Engine) -> None:
    """Create every governance table that does not exist yet (idempotent)."""
    for module in TABLE_MODULES:
        importlib.import_module(module)
    metadata.create_all(engine)


def bulk_insert(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert `rows` (each with the same columns) into `table` in `conn`'s transaction.

    Why: the identity vault writes a dozen index and box rows per person, and on PostgreSQL an
    ``executemany`` pays psycopg's per-row statement work; ``COPY ... FROM STDIN`` streams the
    rows instead (``PDP_DB_URL=postgresql... pdp bench vault --persons 20000`` run in one process
    with ``executemany`` swapped back in, ad hoc, 2026-12-06: edge inserts 2 016-2 152 → 2 456-2 727
    persons/s, renames 1 568-1 695 → 1 833-2 368). So on
    PostgreSQL the rows go through ``COPY`` (columns left out take their server default: an
    identity column numbers the rows in the order given), elsewhere through one ``executemany``.
    Values must be plain Python values (str, int, bytes, timezone-aware datetime, None): COPY
    bypasses SQLAlchemy's type processing, so a column needing one (other than binary, which
    psycopg sends as it is) is refused here.
    """
    if not rows:
        return
    first = rows[0].keys()
    columns = list(first)
    if any(row.keys() != first for row in rows):
        raise ValueError(f"bulk_insert into {table.name}: rows do not all have the same columns")
    unknown = [c for c in columns if c not in table.c]
    if unknown:
        raise ValueError(f"bulk_insert into {table.name}: no column {', '.join(unknown)}")
    if conn.dialect.name != "postgresql":
        conn.execute(insert(table), list(rows))
        return
    for name in columns:
        kind = table.c[name].type
        if not isinstance(kind, LargeBinary) and kind.dialect_impl(conn.dialect).bind_processor(conn.dialect):
            raise ValueError(f"bulk_insert into {table.name}: column {name} needs SQLAlchemy's type processing")
    quote = conn.dialect.identifier_preparer
    sql = f"COPY {quote.format_table(table)} ({', '.join(quote.quote(c) for c in columns)}) FROM STDIN"
    dbapi = conn.connection.dbapi_connection
    assert dbapi is not None
    with dbapi.cursor() as cursor, cursor.copy(sql) as copy:
        for row in rows:
            copy.write_row([row[c] for c in columns])


def _sqlite_engine(url: URL, *, echo: bool) -> Engine:
    database = url.database or ""
    in_memory = database in ("", ":memory:") or url.query.get("mode") == "memory"
    if not in_memory:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, echo=echo)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # The driver must not open transactions itself: `_on_begin` does it with IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            if not in_memory:
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA secure_delete=ON")
            cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_TIMEOUT_MS}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine
