"""A throw-away var/ for a benchmark: settings on a temporary directory, a fresh random master key
in a 0600 file (so Spark executors, which never get the key in a closure, can open the key store
too: :mod:`pdp.ingest.spark_tasks`), the key store initialised, a SQLite governance store; and a
throw-away governance store of either kind for the benchmarks that measure the store itself.

    with tempfile.TemporaryDirectory() as tmp:
        settings = scratch_settings(Path(tmp))
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def throwaway_keys(master_key: str | None = None, **fields: Any) -> Any:
    """Settings whose master key is `master_key` (default: 32 fresh random bytes), held inline by the
    local KMS, and `fields`; whatever the environment says of the platform's master key
    (PDP_MASTER_KEY_FILE, PDP_KMS, its token): a benchmark's throw-away key store never opens, nor
    trips over, the platform's own. Before it, ``pdp bench linkage`` run with PDP_MASTER_KEY_FILE set
    died on "both PDP_MASTER_KEY and PDP_MASTER_KEY_FILE are set"."""
    from pdp.config import Settings

    key = master_key or base64.b64encode(os.urandom(32)).decode("ascii")
    return Settings(_env_file=None, master_key=key, master_key_file=None, kms="local", **fields)


def scratch_settings(var: Path) -> Any:
    """Settings of a benchmark's own var/ (lake, governance store, key store under `var`)."""
    from pdp.config import Settings
    from pdp.governance.db import create_all, make_engine
    from pdp.pseudonym.keys import KeyStore

    key_file = var / "master.key"
    key_file.write_text(base64.b64encode(os.urandom(32)).decode("ascii"))
    key_file.chmod(0o600)
    settings = Settings(_env_file=None, var_dir=var, lake_uri=str(var / "lake"), db_url=f"sqlite:///{var / 'pdp.db'}",
                        key_store=var / "keys", master_key=None, master_key_file=key_file, kms="local")
    KeyStore.from_settings(settings).init()
    create_all(make_engine(settings=settings))
    return settings


@contextmanager
def scratch_store_url(sqlite_file: Path, postgresql: str | None) -> Iterator[str]:
    """The URL of a throw-away governance store: a SQLite file at `sqlite_file`, or, when
    `postgresql` is a server's URL, a schema of its own on that server (through ``search_path``),
    dropped with everything in it on exit. The URL holds the server's password: never log it."""
    from sqlalchemy.engine import make_url

    from pdp.governance.db import make_engine

    if not postgresql:
        yield f"sqlite:///{sqlite_file}"
        return
    schema = f"pdp_bench_{os.urandom(8).hex()}"
    admin = make_engine(postgresql)
    try:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        try:
            yield make_url(postgresql).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
                hide_password=False)
        finally:
            with admin.begin() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
    finally:
        admin.dispose()
