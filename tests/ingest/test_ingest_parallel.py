"""The parse+edge stage in worker processes, or as Spark tasks, gives exactly what one in-order pass gives.

A small synthetic territory with the faults that make order matter: a record resent in a
later file of its source (DUPLICATE_RECORD across files, decided in file order), a duplicate
within a file, an empty file (a file-level row that is the file's one record in), an HL7
batch whose trailer count is wrong (a file-level row beside records: a file issue) and a GP
bundle carrying a Claim (skipped: counted, not a record).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from datetime import date
from pathlib import Path

import pytest
from ingest_helpers import edge_run, lake_settings
from pydantic import SecretStr

from pdp.config import Settings
from pdp.ingest import Registry, parse_directory
from pdp.ingest.edge import EdgeState, _Identity
from pdp.ingest.fanout import FileTask
from pdp.ingest.registry import discover
from pdp.pseudonym.keys import KeyStore
from pdp.pseudonym.vault import VaultRecord


def _append_lines(path: Path, lines: list[bytes]) -> None:
    data = path.read_bytes()
    end = b"\r\n" if b"\r\n" in data else b"\n"
    path.write_bytes(data.rstrip(b"\r\n") + end + end.join(lines) + end)


def _ascii_row(path: Path) -> bytes:
    """A data row without accents, so appending it to a file of another encoding keeps that file valid."""
    return next(row for row in path.read_bytes().splitlines()[1:] if row.isascii())


@pytest.fixture(scope="module")
def faulty(territory: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The territory's sources with order-sensitive faults."""
    root = tmp_path_factory.mktemp("parallel") / "src"
    shutil.copytree(territory, root, ignore=shutil.ignore_patterns("ground_truth", "reports"))
    pharmacy = sorted((root / "pharmacy").glob("*.csv"))
    assert len(pharmacy) >= 2
    first, last = pharmacy[0], pharmacy[-1]
    _append_lines(last, [_ascii_row(first), _ascii_row(last)])  # resent from an earlier file; twice in one file
    (root / "pmsi" / "590000000.csv").write_bytes(b"")  # sorts first among the PMSI files
    lab = sorted((root / "labs").glob("*.hl7"))[0]
    data = lab.read_bytes()
    lab.write_bytes(re.sub(rb"BTS\|(\d+)", lambda m: b"BTS|" + str(int(m[1]) + 2).encode(), data))
    gp = sorted((root / "gp").glob("*.ndjson"))[0]
    first, *rest = gp.read_bytes().splitlines()
    bundle = json.loads(first)
    bundle["entry"].append({"resource": {"resourceType": "Claim", "id": "claim-1"}})  # skipped unvalidated
    gp.write_bytes(b"\n".join([json.dumps(bundle, ensure_ascii=False).encode(), *rest]) + b"\n")
    return root


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    var = tmp_path_factory.mktemp("parallel-var")
    master = base64.b64encode(os.urandom(32)).decode("ascii")
    s = lake_settings(var, master)
    KeyStore.from_settings(s).init()
    return s


@pytest.fixture(scope="module")
def runs(faulty: Path, registry: Registry, settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("parallel-staging")
    return {w: edge_run(faulty, registry, settings, out / f"w{w}", workers=w) for w in (0, 2)}


@pytest.fixture(scope="module")
def spark_run(faulty: Path, registry: Registry, settings: Settings, spark, tmp_path_factory: pytest.TempPathFactory,
              ) -> dict:
    """The same batch as Spark tasks, as a batch on Spark tasks runs: its identities staged and folded on
    Spark, its duplicates across files found there (:mod:`pdp.ingest.staged_duplicates`). The executors
    open the key store from a master key *file* (a path in the closure, never the key)."""
    key_file = settings.var_dir / "master.key"
    key_file.write_text(settings.master_key.get_secret_value())
    key_file.chmod(0o600)
    on_files = settings.model_copy(update={"master_key": None, "master_key_file": key_file})
    staging = tmp_path_factory.mktemp("spark-staging")
    return edge_run(faulty, registry, on_files, staging, spark=spark, fold_on=spark) | {"staging": staging}


def test_workers_give_the_same_rows_counts_and_vault_records(runs: dict) -> None:
    sequential, parallel = runs[0], runs[2]
    for part in sequential:
        assert parallel[part] == sequential[part], part
    assert sequential["bronze"] and sequential["vault"]


def test_spark_tasks_give_the_same_rows_counts_and_vault_records(runs: dict, spark_run: dict) -> None:
    for part in runs[0]:
        assert spark_run[part] == runs[0][part], part


def test_staged_fingerprints_are_keyed(spark_run: dict, faulty: Path, registry: Registry) -> None:
    """What the tasks stage for the duplicate check confirms no record to whoever hashes a guess of it:
    none of the staged fingerprints is a record's unkeyed fingerprint."""
    import pyarrow.parquet as pq

    from pdp.ingest.dedupe import fingerprint
    from pdp.ingest.model import SourceRecord

    staged = set(pq.read_table(spark_run["staging"] / "fingerprints").column("fingerprint").to_pylist())
    records = [o for o in parse_directory(faulty, registry) if isinstance(o, SourceRecord)]
    unkeyed = {fingerprint(record.record_id, record.raw) for record in records}
    assert len(staged) > 1000 and len(unkeyed) > 1000
    assert not staged & {v - (1 << 64) if v >= 1 << 63 else v for v in unkeyed}  # staged as signed 64-bit


def test_no_secret_setting_reaches_a_spark_task(settings: Settings) -> None:
    """What a task's closure pickles: the settings without the master key, the PIN or a database password."""
    from pyspark import cloudpickle

    from pdp.ingest.spark_tasks import ExecutorSecretMissing, executor_settings, shipped_settings

    loaded = settings.model_copy(update={"pkcs11_pin": SecretStr("4321-pin-secret"),
                                         "db_url": "postgresql://pdp:db-secret-pw@db.example:5432/pdp"})
    shipped, withheld = shipped_settings(loaded)
    assert set(withheld) == {"master_key", "pkcs11_pin", "db_url"}
    pickled = cloudpickle.dumps(shipped)
    for secret in (settings.master_key.get_secret_value(), "4321-pin-secret", "db-secret-pw"):
        assert secret.encode() not in pickled
    environ = {"PDP_MASTER_KEY": settings.master_key.get_secret_value(), "PDP_PKCS11_PIN": "4321-pin-secret",
               "PDP_DB_URL": loaded.db_url}
    restored = executor_settings(shipped, withheld, environ)
    assert restored.master_key == settings.master_key and restored.db_url == loaded.db_url
    assert restored.pkcs11_pin.get_secret_value() == "4321-pin-secret"
    with pytest.raises(ExecutorSecretMissing, match="no PDP_MASTER_KEY") as missing:
        executor_settings(shipped, withheld, {"PDP_PKCS11_PIN": "4321-pin-secret"})
    assert "4321" not in str(missing.value)
    assert shipped_settings(settings.model_copy(update={"db_url": "sqlite:///x.db"}))[0].db_url == "sqlite:///x.db"


def test_a_record_resent_in_a_later_file_is_the_duplicate_whatever_the_workers(runs: dict, faulty: Path) -> None:
    last = sorted((faulty / "pharmacy").glob("*.csv"))[-1].relative_to(faulty).as_posix()
    quarantined = [row for row in runs[2]["quarantine"] if "DUPLICATE_RECORD" in row and last in row]
    assert len(quarantined) == 2, "one resent from an earlier file, one repeated within the file"
    counts = runs[2]["counts"][("pharmacy", last)]
    assert counts.quarantined == 2 and counts.balanced


def test_counts_follow_the_parse_tally_rule(runs: dict, faulty: Path, registry: Registry) -> None:
    """records in, and file issues, are the parse stage's (one rule); the edge only moves records to quarantine."""
    parsed = parse_directory(faulty, registry)
    for _ in parsed:
        pass
    counts = runs[2]["counts"]
    assert set(counts) == set(parsed.counts)
    for key, c in counts.items():
        assert c.balanced, key
        assert (c.records_in, c.file_issues) == (parsed.counts[key].records_in, parsed.counts[key].file_issues), key
    assert counts[("pmsi", "pmsi/590000000.csv")].records_in == 1  # empty file: its row is its record
    lab = sorted((faulty / "labs").glob("*.hl7"))[0].relative_to(faulty).as_posix()
    assert counts[("lab_hl7", lab)].file_issues == 1  # trailer count beside records: not a record
    gp = sorted((faulty / "gp").glob("*.ndjson"))[0].relative_to(faulty).as_posix()
    assert counts[("gp_fhir", gp)].skipped_resources == parsed.counts[("gp_fhir", gp)].skipped_resources == {
        "Claim": 1}  # counted in the worker, handed back with the file's counts


def _folded(*records: VaultRecord, split: int) -> VaultRecord:
    """Fold records[:split] and records[split:] apart, then together (two files, in order)."""
    parts = []
    for chunk in (records[:split], records[split:]):
        identity = _Identity(chunk[0])
        for record in chunk[1:]:
            identity.fold(_Identity(record))
        parts.append(identity)
    parts[0].fold(parts[1])
    return parts[0].record()


def test_a_persons_vault_record_folds_per_field_whatever_the_split_into_files() -> None:
    first = VaultRecord(birth_name="A", phone="0600000001", observed_at=date(2024, 1, 1), canonical="Yw==")
    later_without_phone = VaultRecord(birth_name="A", postcode="59500", observed_at=date(2024, 3, 1))
    between = VaultRecord(birth_name="A", phone="0600000002", observed_at=date(2024, 2, 1), canonical="Zg==")
    records = (first, later_without_phone, between)
    folded = {_folded(*records, split=k) for k in (1, 2)}
    assert len(folded) == 1
    (record,) = folded
    assert record.phone == "0600000002", "the latest observation of the phone, not the latest record's"
    assert (record.postcode, record.observed_at, record.canonical) == ("59500", date(2024, 3, 1), "Yw==")
    assert "0600000002" not in repr(EdgeState(identities={"p": _Identity(record)}, postcodes={"p": "59500"}))


_KILLED_PARENT = """
import multiprocessing, sys, time
from datetime import UTC, datetime
from pathlib import Path
from pdp.config import Settings
from pdp.ingest import load_registry
from pdp.ingest.fanout import BatchContext, FileTask, run_files
from pdp.ingest.parse import Duplicates
from pdp.ingest.registry import discover

if __name__ == "__main__":
    root, var = Path(sys.argv[1]), Path(sys.argv[2])
    settings = Settings(_env_file=None, var_dir=var, key_store=var / "keys")  # master key: PDP_MASTER_KEY
    registry = load_registry()
    tasks = [FileTask(i, s.name, p, p.relative_to(root).as_posix(), p.stat().st_size)
             for i, (s, p) in enumerate(discover(root, registry).to_parse)]
    context = BatchContext(settings, registry, root, var / "staging", "b", datetime.now(UTC), None)
    results = run_files(tasks, context, workers=2, duplicates=Duplicates())
    next(results)
    print(" ".join(str(p.pid) for p in multiprocessing.active_children()), flush=True)
    time.sleep(600)  # the pool stays open: the test kills this process
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_workers_exit_when_the_ingest_is_killed(faulty: Path, settings: Settings, tmp_path: Path) -> None:
    script = tmp_path / "killed_parent.py"
    script.write_text(textwrap.dedent(_KILLED_PARENT))
    env = {**os.environ, "PDP_MASTER_KEY": settings.master_key.get_secret_value()}  # never on a command line
    parent = subprocess.Popen(
        [sys.executable, str(script), str(faulty), str(settings.var_dir)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        workers = [int(pid) for pid in parent.stdout.readline().split()]
        assert len(workers) == 2 and all(_alive(pid) for pid in workers)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    deadline = time.monotonic() + 60  # a bound for a loaded machine, not a timing claim
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in workers), "a worker outlived the killed ingest"


def test_the_edge_engine_follows_the_setting_and_the_master(faulty: Path, registry: Registry,
                                                            settings: Settings) -> None:
    from pdp.ingest.fanout import spark_engine

    found = discover(faulty, registry).to_parse
    tasks = [FileTask(i, spec.name, path, path.name, 1) for i, (spec, path) in enumerate(found)]
    engine = lambda **kw: spark_engine(settings.model_copy(update=kw), tasks, registry)  # noqa: E731
    assert not engine(edge_engine="auto", spark_master="local[2]")
    assert engine(edge_engine="auto", spark_master="spark://127.0.0.1:7177")
    assert engine(edge_engine="spark", spark_master="local[2]")
    assert not engine(edge_engine="processes", spark_master="spark://127.0.0.1:7177")
    assert not spark_engine(settings.model_copy(update={"edge_engine": "spark"}), [], registry)
