"""`pdp bench rotate`: pseudonym-key rotation of a whole territory, paged against one page.

What production does (`pdp keys rotate`), on a fresh SQLite governance store, key store and
lake in a temporary directory: a vault of ``persons`` identity records (each with the canonical
bytes its pseudonym was made from) and a silver-like Delta table of three events per person;
:func:`pdp.pseudonym.rotation.rotate_pseudonym_key` re-keys the table and the vault, purges the
old pseudonyms' files and retires the old key, the mapping going page by page (``PAGE`` rows)
through the lake's work area.

Reference, in the same run, on the same data: the next rotation with one page as large as the
population — the whole old → new mapping held in the driver at once, as rotation did before it
was paged. The figure that matters is ``driver_peak_ratio`` (Python heap peak of the driver,
``tracemalloc``, one page over paged): it grows with the population, the paged one does not.
Times are printed for both (``tracemalloc`` slows both alike).
"""

from __future__ import annotations

import base64
import os
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import yaml

PERSONS = 100_000
_EVENTS = {
    "name": "events",
    "zone": "silver",
    "description": "Bench events keyed by person pseudonym.",
    "columns": [
        {"name": "event_id", "type": "BIGINT", "nullable": False, "description": "Event."},
        {"name": "person", "type": "STRING", "nullable": False, "description": "Pseudonym.", "pseudonym": True},
    ],
}


def _timed_rotation(**kwargs: Any) -> tuple[Any, float, int]:
    from pdp.pseudonym.rotation import rotate_pseudonym_key

    tracemalloc.start()
    started = time.perf_counter()
    report = rotate_pseudonym_key(**kwargs)
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return report, seconds, peak


def bench_rotation(persons: int = PERSONS) -> dict[str, Any]:
    from pdp.bench.vault import throwaway_vault
    from pdp.lake import LakeTable, RunInfo, get_spark, load_catalog
    from pdp.pseudonym.normalise import CANONICAL_FORMAT
    from pdp.pseudonym.pseudonymise import Pseudonymiser
    from pdp.pseudonym.rotation import PAGE
    from pdp.pseudonym.vault import VaultRecord

    spark = get_spark(app_name="pdp-bench-rotate")
    with tempfile.TemporaryDirectory(prefix="pdp-bench-rotate-") as tmp, throwaway_vault(Path(tmp)) as opened:
        root = Path(tmp)
        store, _engine, vault = opened  # the vault opened as `pdp keys rotate` opens it
        pseudonymiser = Pseudonymiser(store)
        prefix = CANONICAL_FORMAT.encode("ascii") + b"\x1f"
        canonicals = [prefix + os.urandom(48).hex().encode() for _ in range(persons)]
        pseudonyms = [pseudonymiser.pseudonym_of_bytes(c) for c in canonicals]
        for start in range(0, persons, PAGE):
            vault.upsert_many([
                (p, VaultRecord(birth_name="BENCH", sex="F", canonical=base64.b64encode(c).decode()))
                for p, c in zip(pseudonyms[start:start + PAGE], canonicals[start:start + PAGE], strict=True)])
        (root / "tables" / "silver").mkdir(parents=True)
        (root / "tables" / "silver" / "events.yml").write_text(yaml.safe_dump(_EVENTS), encoding="utf-8")
        catalog = load_catalog(root / "tables")
        lake_root = str(root / "lake")
        table = LakeTable(spark, catalog.table("silver.events"), lake_root=lake_root).create()
        frame = spark.createDataFrame([(i, pseudonyms[i % persons]) for i in range(3 * persons)],
                                      "event_id long, person string")
        table.append(frame, run=RunInfo(run_id="bench", job="bench.rotate", definitions_version="bench"))

        common = {"store": store, "vault": vault, "spark": spark, "catalog": catalog, "lake_root": lake_root}
        paged, paged_s, paged_peak = _timed_rotation(**common, page=PAGE)
        whole, whole_s, whole_peak = _timed_rotation(**common, page=persons)
        assert paged.vault_rows == whole.vault_rows == persons
        assert paged.tables == whole.tables == {"silver.events": 3 * persons}
    return {
        "persons": persons,
        "page": PAGE,
        "paged_s": round(paged_s, 1),
        "paged_persons_per_s": round(persons / paged_s),
        "paged_driver_peak_mib": round(paged_peak / 2**20, 1),
        "paged_stage_s": paged.seconds,
        "one_page_s": round(whole_s, 1),
        "one_page_stage_s": whole.seconds,
        "one_page_driver_peak_mib": round(whole_peak / 2**20, 1),
        "driver_peak_ratio": round(whole_peak / paged_peak, 1),
        "load_average": round(os.getloadavg()[0], 1),
    }
