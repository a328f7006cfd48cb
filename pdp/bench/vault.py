"""`pdp bench vault`: the identity vault's write and read paths since the seal split.

What production does, on a fresh key store in a temporary directory and a fresh governance
store of the configured kind (a SQLite file, or with ``PDP_DB_URL=postgresql...`` a schema of
its own on that server, dropped afterwards; PostgreSQL writes go through ``COPY``): the edge
writes ``persons`` full identity records with ``upsert_many`` through
:class:`~pdp.pseudonym.vault.EdgeKeys` (a sealed box per record + the linkage view + the blocking
and name-token indexes, batches of 20 000 as the ingest pipeline sends them), writes a second
observation for each person (the merge path), then re-identification's read ``get_many`` opens
and merges every box and writes the folds back (cold), reads a 1 500-person worklist from
the merged cache (warm, median of 5), and renames every pseudonym as a key rotation does
(``repseudonymise`` in pages of 20 000: linkage view re-encrypted, boxes re-bound, indexes
rewritten), without the ``tracemalloc`` that ``pdp bench rotate`` runs under.

Then the path of a staged batch: ``persons`` other new persons' writes made ready
(:func:`~pdp.pseudonym.vault.prepare_writes`, what each executor core does, timed here on one
core) and copied in by the one writer (:meth:`~pdp.pseudonym.vault.IdentityVault.write_prepared`);
``prepared_write_vs_insert`` is the writer's rate against ``upsert_many``'s inserts above.

Reference, in the same run: the cost of the split itself — sealing every plaintext to an X25519
public key (``sealing.seal``) against encrypting it under the symmetric vault key with AES-GCM
(what the edge did before the split), same plaintexts, same process (one core, like the edge's
one writer). ``seal_vs_aesgcm`` is the ratio of their throughputs.

Measured: see the README ("Ways into the vault") for the figures of the last run and the
machine load they were taken at.
"""

from __future__ import annotations

import base64
import os
import random
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from pdp.bench.scratch import scratch_store_url, throwaway_keys
from pdp.config import Settings, get_settings

PERSONS = 20_000
_BATCH = 20_000


def _records(n: int, seed: int = 7) -> list[tuple[str, Any]]:
    from pdp.pseudonym.vault import VaultRecord

    rng = random.Random(seed)
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    out = []
    for i in range(n):
        pseudonym = "v1:" + base64.urlsafe_b64encode(rng.randbytes(32)).decode()[:43]
        name = "".join(rng.choice(letters) for _ in range(rng.randint(4, 10)))
        out.append((pseudonym, VaultRecord(
            birth_name=name, first_names=("".join(rng.choice(letters) for _ in range(6)),),
            sex=rng.choice("MF"), birth_date=date(1930 + i % 70, 1 + i % 12, 1 + i % 28),
            birth_place=f"{rng.randint(1, 95):02d}{rng.randint(1, 999):03d}",
            address_line=f"{rng.randint(1, 200)} RUE {name}", postcode="75011", commune_code="75111",
            phone=f"06{rng.randint(0, 99_999_999):08d}", gp_rpps=f"{rng.randint(10**10, 10**11 - 1)}",
            observed_at=date(2024, 1 + i % 12, 1))))
    return out


@contextmanager
def throwaway_vault(root: Path, settings: Settings | None = None) -> Iterator[tuple[Any, Any, Any]]:
    """(key store, engine, vault opened as the edge opens it) on a fresh random master key, in a
    governance store of the configured kind (`PDP_DB_URL`) that is deleted afterwards: a SQLite
    file under `root`, or on PostgreSQL a schema of its own on the configured server (dropped on
    exit), so the figure is that of the store production runs on."""
    from pdp.governance.db import create_all, make_engine
    from pdp.pseudonym.keys import KeyStore
    from pdp.pseudonym.vault import EdgeKeys, IdentityVault

    keyed = throwaway_keys(key_store=root / "keys")
    store = KeyStore.from_settings(keyed)
    store.init()
    configured = (settings or get_settings()).db_url
    server = configured if make_url(configured).get_backend_name() == "postgresql" else None
    with scratch_store_url(root / "pdp.db", server) as url:
        engine = make_engine(url)
        try:
            create_all(engine)
            yield store, engine, IdentityVault(engine, EdgeKeys(store))
        finally:
            engine.dispose()


def bench_vault(persons: int = PERSONS) -> dict[str, Any]:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from pdp.pseudonym.sealing import seal
    from pdp.pseudonym.vault import EdgeKeys, IdentityVault, VaultRecord, prepare_writes

    records = _records(persons)
    with tempfile.TemporaryDirectory(prefix="pdp-bench-vault-") as tmp, throwaway_vault(Path(tmp)) as opened_vault:
        store, engine, edge = opened_vault

        started = time.perf_counter()
        for start in range(0, persons, _BATCH):
            edge.upsert_many(records[start:start + _BATCH])
        insert_s = time.perf_counter() - started

        second = [(p, VaultRecord(phone=f"07{i:08d}", observed_at=date(2025, 1, 1)))
                  for i, (p, _r) in enumerate(records)]
        started = time.perf_counter()
        for start in range(0, persons, _BATCH):
            edge.upsert_many(second[start:start + _BATCH])
        merge_s = time.perf_counter() - started

        reader = IdentityVault(engine, store)
        wanted = [p for p, _r in records]
        started = time.perf_counter()
        opened = reader.get_many(wanted)  # cold: every box opened, the folds written back
        cold_s = time.perf_counter() - started
        assert len(opened) == persons and all(r.phone and r.phone.startswith("07") for r in opened.values())
        worklist = wanted[:1_500]  # warm: a GP's worklist, from the merged cache
        timings = []
        for _ in range(5):
            started = time.perf_counter()
            assert len(reader.get_many(worklist)) == len(worklist)
            timings.append(time.perf_counter() - started)

        renamed = {p: "v2:" + p[3:] for p, _r in records}  # a key rotation's rename, untraced (`pdp bench rotate`
        started = time.perf_counter()                       # times its stages under tracemalloc)
        items = list(renamed.items())
        for start in range(0, persons, _BATCH):  # the rotation's pages
            assert edge.repseudonymise(dict(items[start:start + _BATCH])) == len(items[start:start + _BATCH])
        rename_s = time.perf_counter() - started

        # a staged batch's path: the writes made ready where the identities are (one core here, each
        # executor core there), then only copied in by the one writer; other persons, new to the vault
        fresh = _records(persons, seed=8)
        started = time.perf_counter()
        ready = list(prepare_writes(EdgeKeys(store), fresh))
        prepare_s = time.perf_counter() - started
        by_pseudonym = dict(fresh)
        started = time.perf_counter()
        for start in range(0, persons, _BATCH):
            edge.write_prepared(ready[start:start + _BATCH], lambda ps: {p: by_pseudonym[p] for p in ps})
        prepared_write_s = time.perf_counter() - started

        plaintexts = [r.model_dump_json(exclude_none=True).encode() for _p, r in records]
        public = store.public("seal").raw
        started = time.perf_counter()
        for i, text in enumerate(plaintexts):
            seal(public, text, aad=i.to_bytes(8, "big"))
        seal_s = time.perf_counter() - started
        cipher = AESGCM(store.current("vault").material)
        started = time.perf_counter()
        for i, text in enumerate(plaintexts):
            cipher.encrypt(os.urandom(12), text, i.to_bytes(8, "big"))
        aes_s = time.perf_counter() - started
        store_kind = engine.dialect.name
    return {
        "persons": persons,
        "store": store_kind,
        "insert_per_s": round(persons / insert_s),
        "merge_per_s": round(persons / merge_s),
        "reidentify_cold_per_s": round(persons / cold_s),
        "worklist_1500_warm_ms": round(1000 * sorted(timings)[len(timings) // 2], 1),
        "rename_per_s": round(persons / rename_s),
        "prepare_per_s_per_core": round(persons / prepare_s),
        "prepared_write_per_s": round(persons / prepared_write_s),
        "prepared_write_vs_insert": round(insert_s / prepared_write_s, 2),
        "seal_per_s": round(persons / seal_s),
        "aesgcm_per_s": round(persons / aes_s),
        "seal_vs_aesgcm": round(seal_s / aes_s, 1),
        "load_average": round(os.getloadavg()[0], 1),
    }
