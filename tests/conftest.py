"""Shared fixtures: one Spark session for the whole run (start-up costs ~10 s), the governance store."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from shared_territory import BUILT_AS_OF, BUILT_CACHE, BUILT_TERRITORY, var_settings
from sqlalchemy import Engine

_SESSION_VAR = None

# A platform's own settings exported in the shell that runs the tests (its master key file, KMS,
# PIN, stores, linkage model, definitions...) must reach no test: a test builds its settings, and
# with, say, PDP_MASTER_KEY_FILE set a test's inline key meets "both PDP_MASTER_KEY and
# PDP_MASTER_KEY_FILE are set", or worse opens the platform's keys. Test knobs (PDP_PG_PORT,
# PDP_SPARK_*, PDP_FUZZ_*, PDP_TEST_*) stay, and PDP_VAR_DIR (where the test PostgreSQL
# server lives, see `pg_url`; `pdp_var` points the tests' own stores elsewhere).
_PLATFORM = ("PDP_MASTER_KEY", "PDP_MASTER_KEY_FILE", "PDP_KMS", "PDP_PKCS11_MODULE", "PDP_PKCS11_PIN",
             "PDP_PKCS11_PIN_FILE", "PDP_AUDIT_DB_URL", "PDP_LINKAGE_MODEL_DIR", "PDP_DEFINITIONS_DIR",
             "PDP_SOURCES_DIR", "PDP_POLICY_DIR", "PDP_LAKE_URI", "PDP_DB_URL", "PDP_KEY_STORE")
for _name in _PLATFORM:
    os.environ.pop(_name, None)


@pytest.fixture(scope="session")
def pdp_var(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private var/ directory for the run, so tests never touch the developer's lake."""
    var = tmp_path_factory.mktemp("var")
    os.environ["PDP_VAR_DIR"] = str(var)
    os.environ["PDP_LAKE_URI"] = str(var / "lake")
    os.environ["PDP_DB_URL"] = f"sqlite:///{var / 'pdp.db'}"
    os.environ["PDP_KEY_STORE"] = str(var / "keys")
    os.environ.setdefault("PDP_SPARK_MASTER", "local[2]")
    os.environ.setdefault("PDP_SPARK_DRIVER_MEMORY", "3g")
    os.environ.setdefault("PDP_SPARK_SHUFFLE_PARTITIONS", "4")
    from pdp.config import get_settings

    get_settings.cache_clear()
    return var


@pytest.fixture(scope="session")
def spark(pdp_var: Path) -> Iterator:
    """The session-scoped SparkSession with Delta, on the run's private var/."""
    from pdp.lake.session import get_spark

    session = get_spark(app_name="pdp-tests")
    yield session
    session.stop()


@pytest.fixture()
def pdp_cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """`pdp ARGS` in-process: (exit code, stdout, stderr) of one command."""
    from pdp.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture()
def lake_root(pdp_var: Path, tmp_path: Path) -> Path:
    """A fresh lake root for one test."""
    root = tmp_path / "lake"
    root.mkdir()
    return root


# --- one built territory: sources → edge → lake → gold, shared by the suites that only read it ---

@pytest.fixture(scope="session")
def built_territory(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A var/ holding a 300-person territory (douaisis, seed 5) in ``sources/``, ingested through the
    real edge, gold built at `BUILT_AS_OF` and its indicators published as `BUILT_TERRITORY` (one
    month of trend, the report in ``reports/``), with its vault, key store and ``master.key``.

    Why one: the API's and the opposition's suites read the same territory; building it is most of
    their cost (~90 s each on 2 cores). It is pristine: tests never write in it but take a copy
    (:func:`copy_var`), so what one suite does (an opposition, an audit row) is not seen by another.
    """
    var = tmp_path_factory.mktemp("built territory")  # a space in the lake's path: erasure compares URIs
    if BUILT_CACHE and (Path(BUILT_CACHE) / "ready").exists():
        shutil.copytree(BUILT_CACHE, var, dirs_exist_ok=True)
        return var
    from pdp.algorithms import build_gold
    from pdp.algorithms.indicators import publish_indicators
    from pdp.ingest.pipeline import ingest_directory
    from pdp.pseudonym.keys import KeyStore
    from pdp.synth import generate

    (var / "master.key").write_text(base64.b64encode(os.urandom(32)).decode("ascii"))
    settings = var_settings(var)
    KeyStore.from_settings(settings).init()
    generate(var / "sources", persons=300, seed=5, territory="douaisis", workers=1)
    spark = request.getfixturevalue("spark")
    ingest_directory(var / "sources", spark=spark, settings=settings)
    build_gold(spark, as_of=BUILT_AS_OF, lake_root=settings.lake_uri)
    publish_indicators(spark, as_of=BUILT_AS_OF, territory=BUILT_TERRITORY, lake_root=settings.lake_uri,
                       trend_months=1, report_dir=var / "reports")
    (var / "ready").write_text("built\n")
    if BUILT_CACHE:
        shutil.rmtree(BUILT_CACHE, ignore_errors=True)
        shutil.copytree(var, BUILT_CACHE)
    return var


# --- governance store: PostgreSQL server and per-test databases ----------------------------------

_REPO = Path(__file__).resolve().parent.parent
# Captured at import, before `pdp_var` points PDP_VAR_DIR at a private temp dir: the PostgreSQL
# cluster lives under the developer's var/ (reachable by the `postgres` OS user, unlike
# pytest's 0700 temp root) and is reused across runs.
_VAR_DIR_AT_START = os.environ.get("PDP_VAR_DIR")


@pytest.fixture(scope="session")
def pg_url() -> str:
    """URL of the test PostgreSQL server: ``PDP_TEST_PG_URL``, else what infra/setup/postgres.sh prints.

    The script installs (Debian package), starts and provisions the server. If it fails, every
    test that needs PostgreSQL fails: CI must prove the PostgreSQL path, never skip it.
    """
    preset = os.environ.get("PDP_TEST_PG_URL")
    if preset:
        return preset
    env = {k: v for k, v in os.environ.items() if k != "PDP_VAR_DIR"}
    if _VAR_DIR_AT_START:
        env["PDP_VAR_DIR"] = _VAR_DIR_AT_START
    script = _REPO / "infra" / "setup" / "postgres.sh"
    try:
        result = subprocess.run(
            ["bash", str(script)], cwd=_REPO, env=env, capture_output=True, text=True, timeout=900, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.fail(f"PostgreSQL test server: {script.name} did not run: {type(exc).__name__}", pytrace=False)
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines or not lines[-1].startswith("postgresql+psycopg://"):
        tail = "\n".join(result.stderr.strip().splitlines()[-15:])
        pytest.fail(f"PostgreSQL test server: {script.name} failed (exit {result.returncode}):\n{tail}", pytrace=False)
    return lines[-1]


@pytest.fixture(params=["sqlite", "postgresql"])
def governance_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A fresh, empty governance store with every table: a SQLite file, or a private PostgreSQL schema.

    On PostgreSQL each test gets its own schema (through ``search_path``), so tests and
    concurrent runs never see each other's rows; the schema is dropped afterwards.
    """
    from pdp.governance.db import create_all, make_engine

    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'governance' / 'pdp.db'}")
        create_all(engine)
        yield engine
        engine.dispose()
        return
    url = request.getfixturevalue("pg_url")
    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = make_engine(url)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    separator = "&" if "?" in url else "?"
    engine = make_engine(f"{url}{separator}options=-csearch_path%3D{schema}")
    try:
        create_all(engine)
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()
