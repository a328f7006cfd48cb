"""A big batch's identities staged sealed beside its rows and folded on Spark, not on the driver.

Why: every file of a batch hands its identities (the vault's fields, the canonical identity
that made each pseudonym, a postcode for linkage) to the batch commit. Folded in the driver's
memory (:meth:`pdp.ingest.edge.EdgeState.absorb`) they cost ~3.7 KB of driver memory per person
(process RSS, 30 000 persons, ad hoc), so the driver's size grew with the batch. Here each file's
task (worker process or Spark task) writes its identities as a Parquet part under the batch's
staging folder, each one sealed; a Spark job folds the parts per person on the executors, in
the order one pass would have folded them (:func:`pdp.ingest.edge.fold_packs`). From the folded
parts (:class:`FoldedIdentities`):

- the executors hash the batch's vault blocking keys and opposition tokens, which the driver
  streams to the vault's and the registry's look-ups a chunk at a time;
- the known persons the batch could join are staged sealed beside it, a chunk at a time;
- the Spark linkage opens both on the executors (:class:`~pdp.pseudonym.linkage_spark.BoxedInputs`)
  and writes what it changes beside the batch (:class:`StagedChanges`: the re-keyed records and
  their persons' canonical identities, sealed there); a batch small enough for the in-memory
  linkage reads its canonical identities instead, and its changes are written the same way;
- the executors make each person's vault write ready (:func:`prepare_vault`: the sealed box, the
  linkage view, the blocking keys and name tokens, through the edge's keys), the opposed left out
  and the re-keyed records merged per person there, and the driver streams them to the vault in
  chunks (:func:`prepared_chunks`): copied in for a person new to the vault, merged with what it
  holds otherwise.

So no identity of the batch is held in the driver's memory beyond one chunk, and what it holds
does not grow with the batch: not with its persons, nor with what linkage re-keys in it (a first
national load re-keys millions of records: 15 842 pseudonyms for 91 231 persons written in a
100 000-person synthetic territory, measured below).

Nominative data on disk and in Spark: every staged identity is sealed (AES-256-GCM; associated
data the person's pseudonym and the box's :data:`Role`, so a box moved to another row or passed off
as another kind of box fails) under a key derived for the batch
(HKDF-SHA256 of the key store's ``record`` key, info naming the batch): each task and executor
derives it from its own key store (:mod:`pdp.pseudonym.executor_keys`), so no key is in a
closure, a plan or a log. Whoever holds the ``record`` key can derive it again: the parts are
removed with the batch's staging folder (a killed run's, by the next run), not made unreadable.
Linkage's ``mapping/`` (batch pseudonym → person pseudonym) is pseudonymous, and written in clear
like the bronze rows it relinks.
Spark's shuffles move the boxes; the fold opens them in the executor's Python worker only. A
box is unpickled only once its tag checked, and then only into plain data, dates and canonical
identities (:class:`_PackUnpickler`): a forged box cannot make a driver or an executor run code.

Chosen per batch by :func:`stage_identities` (``PDP_EDGE_IDENTITIES``): the small batches of
the tests and the lab feed keep the in-memory fold, which costs no Spark job.

Measured (``pdp bench ingest --persons 100000``, 1.89 M records, local[2], quiet machine, the
same code with ``PDP_EDGE_IDENTITIES=auto`` then ``driver``): the driver's Python peak 692 MiB
staged against 908 MiB folded in memory; the fold's own stage 17.0 s; the vault stage 50.1 s
against 46.4 s (it opens each folded record as it streams; within the run-to-run noise here).
Linked in memory, the driver also reads the canonical identities (~2.6 KB a person, ad hoc: RSS
after :func:`read_canonicals` on 30 000 persons). Linked on Spark from the folded parts, it does
not (the same bench with ``PDP_LINKAGE_ENGINE=spark``, later on 2026-12-06, load 1.5): driver
Python peak 518.6 MiB against 692; the fold 11.0 s (its output now kept for the ordered write,
no second fold for the sort's sampling); linkage 77.8 s against 14.3 in memory (Spark's linkage
on 2 cores, :mod:`pdp.pseudonym.linkage_spark`).

Measured 2026-12-07, ad hoc (``/work/mem-lab/ing_kinds2.py N``, a lab script, not a repo command:
the batch ingest of a synthetic douaisis territory, seed 1, with ``PDP_EDGE_IDENTITIES=staged
PDP_LINKAGE_ENGINE=spark``, local[2], printing the driver's RSS after each stage): the driver's RSS
after the vault stage, with linkage's changes collected and the re-keyed records merged in the
driver (before), then written beside the batch and merged on the executors (after):

==========  ==========================  ===========  ===========  ====================
persons     re-keyed / persons written  before       after        vault stage (quiet)
==========  ==========================  ===========  ===========  ====================
5 000       884 / 4 677                 269 MiB [1]  261 MiB      3.6 s after
30 000      4 805 / 27 522              306 MiB      267 MiB      15.0 → 14.6 s
100 000     15 842 / 91 231             363 MiB [2]  262 MiB      60.5 [2] → 46.6 s
==========  ==========================  ===========  ===========  ====================

[1] run beside a test suite (its time not comparable). [2] the same script on 3956ce8 earlier that
day (the same path as "before"). The driver's memory no longer grows with the batch over this
range; its peak over the whole 100 000-person ingest was 299 MiB.

Example (in a batch, the pipeline does this)::

    cipher = IdentityCipher(store, batch_id)
    write_part(state.packs(), directory / "part-000001.parquet", cipher, order=order_key(1, 0))
    folded = fold(spark, directory, settings, cipher, out)   # sealed, one row a person
    known = vault.known_by_blocks(folded.blocks(spark, vault.blocking_versions()))  # hashed on executors
"""

from __future__ import annotations

import copy
import io
import os
import pickle
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from pdp.ingest.edge import IdentityPack, fold_packs, owner_text, pack_record, rekey_record

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from pdp.config import Settings
    from pdp.pseudonym.keys import KeyStore
    from pdp.pseudonym.linkage_spark import BoxedInputs
    from pdp.pseudonym.normalise import CanonicalIdentity
    from pdp.pseudonym.vault import PreparedWrite, VaultRecord

__all__ = ["VAULT_CHUNK", "FoldedIdentities", "IdentityCipher", "PreparedChunk", "StagedChanges", "StagedIdentityError",
           "StagedOpener",
           "fold", "order_key", "prepare_vault", "prepared_chunks", "read_canonicals", "stage_identities",
           "write_part"]

SCHEMA = pa.schema([("pseudonym", pa.string()), ("ord", pa.int64()), ("box", pa.binary())])
"""A staged part, and the folded output: one row per person and part (folded: per person), `ord`
the place of the person's first record in the batch (:func:`order_key`), `box` the sealed pack."""

_NONCE = 12
VAULT_CHUNK = 20_000  # vault records written per chunk; also rows per Arrow batch written or read


Role = Literal["staged", "folded", "known", "prepared", "owner", "rekeyed"]
"""What a box is: a file's staged part, a person's folded identity, or a known person's canonical
identity staged for linkage (read from the vault's linkage view), or a prepared vault write's keyed
hashes (blocking keys and name tokens: sealed so that the staged file ties no hashed name to a
pseudonym, which the vault's own name-token index avoids), or the canonical identity linkage gives
a re-keyed person (its owner), or a re-keyed person's vault record merged on the executors. Each
kind has a key of its own (HKDF info naming it) and binds it with its pseudonym (associated data):
a box moved to another row, or passed off as another kind, does not open."""
ROLES: tuple[Role, ...] = ("staged", "folded", "known", "prepared", "owner", "rekeyed")


def _info(role: Role, batch_id: str) -> bytes:
    return b"pdp-identity-staging/v2\x1f" + role.encode("ascii") + b"\x1f" + batch_id.encode("utf-8")


def _aad(role: Role, pseudonym: str) -> bytes:
    return role.encode("ascii") + b"\x1f" + pseudonym.encode("ascii")


class StagedIdentityError(RuntimeError):
    """A staged identity failed to open (another batch's key, or tampered); no content is shown."""


class IdentityCipher:
    """AES-256-GCM under the batch's staging key, derived from the key store's ``record`` key."""

    def __init__(self, store: KeyStore, batch_id: str, version: int | None = None) -> None:
        key = store.ensure("record") if version is None else store.get("record", version)
        self.version, self.batch_id = key.version, batch_id
        self._aeads = {role: AESGCM(HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_info(role, batch_id))
                                    .derive(key.material)) for role in ROLES}
        # the batch's duplicate check staged on disk fingerprints records under this key
        # (pdp.ingest.staged_duplicates): a staged fingerprint confirms no guessed record without it
        self.fingerprint_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                                    info=b"pdp-staged-fingerprints/v1\x1f" + batch_id.encode("utf-8")
                                    ).derive(key.material)

    def __repr__(self) -> str:
        return f"IdentityCipher(record key v{self.version}, <hidden>)"

    def seal(self, pseudonym: str, pack: object, *, role: Role) -> bytes:
        """`pack` (a pack, a canonical identity's text, a record's fields: data only), sealed to
        `pseudonym` and `role`."""
        nonce = os.urandom(_NONCE)
        return nonce + self._aeads[role].encrypt(nonce, pickle.dumps(pack, protocol=pickle.HIGHEST_PROTOCOL),
                                                 _aad(role, pseudonym))

    def open(self, pseudonym: str, box: bytes, *, role: Role) -> IdentityPack:
        try:
            plain = self._aeads[role].decrypt(box[:_NONCE], box[_NONCE:], _aad(role, pseudonym))
        except InvalidTag:
            raise StagedIdentityError("a staged identity did not open under this batch's key") from None
        return _PackUnpickler(io.BytesIO(plain)).load()


class _PackUnpickler(pickle.Unpickler):
    """Unpickles a pack and nothing else: builtin containers and scalars (no lookup needed), dates
    and canonical identities; any other global is refused (a box's content is data, never code)."""

    _ALLOWED = frozenset({("datetime", "date"), ("pdp.pseudonym.normalise", "CanonicalIdentity")})

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise StagedIdentityError("a staged identity holds something other than identity data")
        return super().find_class(module, name)


def stage_identities(settings: Settings, batch_bytes: int, on_spark: bool) -> bool:
    """Whether a batch stages its identities (``PDP_EDGE_IDENTITIES``): ``staged`` / ``driver``, or
    ``auto``: staged on a cluster's Spark tasks, or from ``PDP_EDGE_IDENTITIES_MIN_BYTES`` of input."""
    mode = settings.edge_identities
    if mode == "auto":
        return on_spark or (batch_bytes >= settings.edge_identities_min_bytes and _local_workers_open_keys(settings))
    return mode == "staged"


def _local_workers_open_keys(settings: Settings) -> bool:
    """Whether Spark's Python workers on this machine can open the key store as the fold needs:
    a secret given to this process only (a ``.env`` file, or settings built in code) is withheld
    from them and not in the environment they inherit, so `auto` keeps such a batch on the driver."""
    from pdp.pseudonym.executor_keys import ExecutorSecretMissing, executor_settings, shipped_settings

    shipped, withheld = shipped_settings(settings)
    try:
        executor_settings(shipped, _key_secrets(withheld))
    except ExecutorSecretMissing:
        return False
    return True


def _key_secrets(withheld: tuple[str, ...]) -> tuple[str, ...]:
    """The withheld settings the fold needs: the key store's, not a database URL."""
    return tuple(name for name in withheld if not name.endswith("db_url"))


def order_key(file_index: int, part: int, position: int = 0) -> int:
    """A person's place in the batch: file, part of the file, then their rank in that part.

    >>> order_key(1, 2, 3) > order_key(1, 1, 9_999) > order_key(0, 9, 0)
    True
    """
    if not (0 <= file_index < 1 << 23 and 0 <= part < 1 << 16 and 0 <= position < 1 << 24):
        raise ValueError("a batch of more than 8 M files, a file of more than 65 536 parts or a part of more than "
                         "16 M persons: split the batch")
    return (file_index << 40) | (part << 24) | position


def write_part(packs: Iterable[tuple[str, IdentityPack]], path: Path, cipher: IdentityCipher, *, order: int,
               role: Role = "staged") -> Path | None:
    """The packs of one file (or part) sealed into one Parquet part; None when there is none."""
    rows: list[tuple[str, int, bytes]] = [(p, order + i, cipher.seal(p, pack, role=role))
                                          for i, (p, pack) in enumerate(packs)]
    if not rows:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_batches([_batch(rows)]), path)
    return path


def fold(spark: SparkSession, parts: Path, settings: Settings, cipher: IdentityCipher, out: Path
         ) -> FoldedIdentities:
    """Fold the staged parts per person on the executors into `out` (Parquet, :data:`SCHEMA`), one
    sealed row a person, in the order of their first record (the files' order).

    `cipher`: the batch's, as the driver opened it (what the driver reads of the fold it opens
    with it). The executors derive the batch's key from their own key store (the closure holds
    settings without secrets, the batch id and the key version); rows are shuffled sealed.
    """
    opener = StagedOpener(settings, cipher.batch_id, cipher.version)

    def fold_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        yield from _fold_sorted(batches, opener.cipher())

    from pyspark import StorageLevel

    staged = spark.read.schema(_spark_schema()).parquet(str(parts))
    # kept on the executors' disks (sealed rows, in blocks Spark encrypts: spark.io.encryption.enabled,
    # set for every session by pdp.lake.session.spark_conf): the sort's sampling
    # pass would otherwise run the whole fold a second time
    folded = (staged.repartition("pseudonym").sortWithinPartitions("pseudonym", "ord")
              .mapInArrow(fold_batches, _spark_schema()).persist(StorageLevel.DISK_ONLY))
    try:
        folded.orderBy("ord").write.mode("overwrite").parquet(str(out))
    finally:
        folded.unpersist()
    return FoldedIdentities(out, opener, cipher)


class StagedOpener:
    """Opens a batch's staged boxes where it runs (a Spark executor, or the driver): it pickles
    with settings stripped of their secrets, the batch id and the key version; the key store is
    opened on first use (:mod:`pdp.pseudonym.executor_keys`) and never pickled."""

    def __init__(self, settings: Settings, batch_id: str, version: int, role: Role = "folded") -> None:
        from pdp.pseudonym.executor_keys import shipped_settings

        shipped, withheld = shipped_settings(settings)
        self._shipped, self._withheld = shipped, _key_secrets(withheld)
        self._batch_id, self._version, self.role = batch_id, version, role
        self._store: KeyStore | None = None
        self._cipher: IdentityCipher | None = None

    def __getstate__(self) -> dict[str, Any]:
        return self.__dict__ | {"_store": None, "_cipher": None}

    def __repr__(self) -> str:
        return f"StagedOpener({self.role} boxes of batch {self._batch_id}, record key v{self._version})"

    def store(self) -> KeyStore:
        if self._store is None:
            from pdp.pseudonym.executor_keys import executor_settings
            from pdp.pseudonym.keys import KeyStore

            self._store = KeyStore.from_settings(executor_settings(self._shipped, self._withheld))
        return self._store

    def cipher(self) -> IdentityCipher:
        if self._cipher is None:
            self._cipher = IdentityCipher(self.store(), self._batch_id, self._version)
        return self._cipher

    def __call__(self, pseudonym: str, box: bytes) -> tuple[CanonicalIdentity | None, str | None]:
        """The canonical identity and postcode a box of this opener's role holds: what linkage takes of it."""
        pack = self.cipher().open(pseudonym, box, role=self.role)
        return pack[4], pack[5]

    def holding(self, cipher: IdentityCipher) -> StagedOpener:
        """This opener using `cipher`, the batch's as the driver opened it, where it is: what the driver
        seals or opens through it (a linkage's few owners settled there) needs no key store opened
        from the environment, which a driver given its secret in a file or in code does not have.
        A pickled copy (an executor's) derives its own."""
        if (cipher.batch_id, cipher.version) != (self._batch_id, self._version):
            raise ValueError("the cipher is another batch's or another key version's")
        self._cipher = cipher
        return self

    def seal_owner(self, target: str, canonical: CanonicalIdentity | None) -> bytes:
        """The canonical identity linkage gives re-keyed person `target` (None: a known person's, the
        vault keeps theirs), sealed where it was computed (:meth:`SparkLinkage.write_changes`)."""
        return self.cipher().seal(target, owner_text(canonical), role="owner")

    def with_role(self, role: Role) -> StagedOpener:
        other = copy.copy(self)
        other.role = role
        return other


class FoldedIdentities:
    """A batch's folded identities on disk (:func:`fold`), and what is computed from them where
    they are: the blocking keys and opposition tokens on the executors, the linkage's input boxed
    (:class:`~pdp.pseudonym.linkage_spark.BoxedInputs`). What the driver reads from them it streams."""

    def __init__(self, path: Path, opener: StagedOpener, cipher: IdentityCipher) -> None:
        self.path, self.opener, self.cipher = path, opener.holding(cipher), cipher  # the opener for executors

    def persons(self) -> int:
        """The batch's persons (one folded row each), from the parts' footers."""
        return sum(pq.ParquetFile(part).metadata.num_rows for part in _parts(self.path))

    def pseudonyms(self) -> Iterator[str]:
        """The batch's person pseudonyms, streamed in file order."""
        for part in _parts(self.path):
            for batch in _streamed(part, VAULT_CHUNK, columns=["pseudonym"]):
                yield from batch.column(0).to_pylist()

    def canonicals(self) -> tuple[dict[str, CanonicalIdentity], dict[str, str]]:
        """:func:`read_canonicals` of the batch: into the driver's memory (the in-memory linkage)."""
        return read_canonicals(self.path, self.cipher)

    def boxed(self) -> BoxedInputs:
        """The batch as the Spark linkage's input, opened on the executors only."""
        from pdp.pseudonym.linkage_spark import BoxedInputs

        return BoxedInputs(str(self.path), self.opener, key_column="pseudonym")

    def stage_known(self, chunks: Iterable[list[tuple[str, CanonicalIdentity]]]) -> int:
        """The known persons the batch could join (:meth:`pdp.pseudonym.vault.IdentityVault.known_chunks`),
        sealed beside the folded parts a chunk at a time (a pack holding the canonical identity
        only), for the Spark linkage to open on the executors; returns how many."""
        shutil.rmtree(self.known_path, ignore_errors=True)
        cipher, count = self.cipher, 0
        for index, chunk in enumerate(chunks):
            write_part(((p, _known_pack(c)) for p, c in chunk), self.known_path / f"part-{index:05d}-known.parquet",
                       cipher, order=count, role="known")
            count += len(chunk)
        return count

    @property
    def changes_path(self) -> Path:
        """Where linkage writes what it changes in the batch (:class:`StagedChanges`)."""
        return self.path.with_name(self.path.name + "-changes")

    @property
    def known_path(self) -> Path:
        return self.path.with_name(self.path.name + "-known")

    def known(self) -> list[tuple[str, CanonicalIdentity]]:
        """The staged known persons, into this process (the in-memory linkage of a small batch)."""
        cipher = self.cipher
        out = []
        for pseudonym, _, box in _rows(self.known_path):
            canonical = cipher.open(pseudonym, box, role="known")[4]
            if canonical is not None:
                out.append((pseudonym, canonical))
        return out

    def boxed_known(self) -> BoxedInputs | list[tuple[str, CanonicalIdentity]]:
        """The staged known persons as the Spark linkage's input (none: an empty list)."""
        from pdp.pseudonym.linkage_spark import BoxedInputs

        if not _parts(self.known_path):
            return []
        return BoxedInputs(str(self.known_path), self.opener.with_role("known"), key_column="pseudonym")

    def blocks(self, spark: SparkSession, versions: list[int]) -> Iterator[tuple[int, str]]:
        """The batch's distinct vault blocking keys under each of `versions`
        (:func:`pdp.pseudonym.vault.linkage_blocks`), hashed on the executors and streamed; none
        (and no Spark job) when the vault has no blocking key yet."""
        if not versions:
            return
        opener = self.opener

        def hashed(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            from pdp.pseudonym.vault import EdgeKeys, linkage_blocks

            keys = EdgeKeys(opener.store())
            for batch in batches:
                rows = list(linkage_blocks(keys, versions, _canonicals_of(batch, opener)))
                yield pa.RecordBatch.from_pydict({"version": [v for v, _ in rows], "block": [b for _, b in rows]},
                                                 schema=_BLOCKS)

        frame = self.frame(spark).mapInArrow(hashed, "version int, block string").distinct()
        for row in frame.toLocalIterator():
            yield row["version"], row["block"]

    def tokens(self, spark: SparkSession, version: int) -> Iterator[tuple[str, str]]:
        """(pseudonym, opposition token) of each person of the batch
        (:func:`pdp.governance.opposition.identity_tokens` under ``opposition`` key `version`),
        computed on the executors and streamed."""
        opener = self.opener

        def tokenised(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            from pdp.governance.opposition import identity_tokens

            store = opener.store()
            key = store.get("opposition", version).material
            for batch in batches:
                rows = [(p, t) for p, canonical in _named_canonicals(batch, opener)
                        for t in identity_tokens(canonical, store, key=key)]
                yield pa.RecordBatch.from_pydict({"pseudonym": [p for p, _ in rows], "token": [t for _, t in rows]},
                                                 schema=_TOKENS)

        for row in self.frame(spark).mapInArrow(tokenised, "pseudonym string, token string").toLocalIterator():
            yield row["pseudonym"], row["token"]

    def frame(self, spark: SparkSession) -> DataFrame:
        """The folded rows (``pseudonym``, ``ord``, ``box``) as a DataFrame: sealed, opened on the executors."""
        return spark.read.schema(_spark_schema()).parquet(str(self.path))


_BLOCKS = pa.schema([("version", pa.int32()), ("block", pa.string())])
_TOKENS = pa.schema([("pseudonym", pa.string()), ("token", pa.string())])


def _known_pack(canonical: CanonicalIdentity) -> IdentityPack:
    """A known person as a staged pack: their canonical identity and nothing else."""
    return {}, {}, None, None, canonical, None


def _named_canonicals(batch: pa.RecordBatch, opener: StagedOpener) -> Iterator[tuple[str, CanonicalIdentity]]:
    for pseudonym, box in zip(batch.column("pseudonym").to_pylist(), batch.column("box").to_pylist(), strict=True):
        canonical, _ = opener(pseudonym, box)
        if canonical is not None:
            yield pseudonym, canonical


def _canonicals_of(batch: pa.RecordBatch, opener: StagedOpener) -> list[CanonicalIdentity]:
    return [canonical for _, canonical in _named_canonicals(batch, opener)]


def _spark_schema() -> str:
    return "pseudonym string, ord long, box binary"


def _fold_sorted(batches: Iterator[pa.RecordBatch], cipher: IdentityCipher) -> Iterator[pa.RecordBatch]:
    """Rows sorted by (pseudonym, ord) → one folded row per pseudonym (first ord, sealed fold)."""
    out: list[tuple[str, int, bytes]] = []
    current: str | None = None
    first = 0
    packs: list[IdentityPack] = []

    def close() -> None:
        if current is not None:
            out.append((current, first, cipher.seal(current, fold_packs(packs), role="folded")))

    for batch in batches:
        for pseudonym, order, box in zip(*(batch.column(i).to_pylist() for i in range(3)), strict=True):
            if pseudonym != current:
                close()
                current, first, packs = pseudonym, order, []
            packs.append(cipher.open(pseudonym, box, role="staged"))
        if len(out) >= VAULT_CHUNK:
            yield _batch(out)
            out = []
    close()
    if out:
        yield _batch(out)


def _batch(rows: list[tuple[str, int, bytes]]) -> pa.RecordBatch:
    names, orders, boxes = zip(*rows, strict=True)
    return pa.RecordBatch.from_arrays([pa.array(names), pa.array(orders, pa.int64()), pa.array(boxes, pa.binary())],
                                      schema=SCHEMA)


def _parts(folded: Path) -> list[Path]:
    return sorted(folded.glob("part-*.parquet"), key=lambda p: int(p.name.split("-")[1]))


def _streamed(path: Path, batch_size: int, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
    """A Parquet file's rows, `batch_size` at a time, holding little more than a batch.

    Why: pyarrow's ``ParquetFile`` pre-buffers by default (26.0: ``pre_buffer=True``): streaming a
    file of 60 000 rows of ~4.5 KB (271 MB) in batches of 2 000 held 286 MiB in Arrow's pool, in
    row groups of 5 000 rows as in one; without pre-buffering, through a 1 MiB buffer and on this
    thread, 29 MiB (ad hoc, 2026-12-07). The driver streams the batch's folded and prepared parts
    (~5 KB a person): pre-buffered, what it holds grew with the part files, hence with the batch.
    A 100 000-person batch ingest (staged, linkage on Spark, local[2], ad hoc, 2026-12-07): Arrow's
    peak in the driver 50 → 23 MiB (24 at 30 000 before), its RSS after the vault stage 412 → 363 MiB.
    """
    reader = pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20)
    return reader.iter_batches(batch_size=batch_size, columns=columns, use_threads=False)


def _rows(folded: Path) -> Iterator[tuple[str, int, bytes]]:
    """The folded rows in their order (the parts of an ordered write hold consecutive ranges, in the
    order of their partition number: ``part-<n>-...``)."""
    for path in _parts(folded):
        for batch in _streamed(path, VAULT_CHUNK):
            yield from zip(*(batch.column(i).to_pylist() for i in range(3)), strict=True)


def read_canonicals(folded: Path, cipher: IdentityCipher
                    ) -> tuple[dict[str, CanonicalIdentity], dict[str, str]]:
    """(pseudonym → canonical identity, pseudonym → postcode) of the batch, in file order: what
    linkage takes (:meth:`pdp.ingest.edge.Edge.link`). The vault's fields are not kept."""
    canonicals: dict[str, CanonicalIdentity] = {}
    postcodes: dict[str, str] = {}
    for pseudonym, _, box in _rows(folded):
        pack = cipher.open(pseudonym, box, role="folded")
        if pack[4] is not None:
            canonicals[pseudonym] = pack[4]
        if pack[5] is not None:
            postcodes[pseudonym] = pack[5]
    return canonicals, postcodes


@dataclass(frozen=True)
class StagedChanges:
    """What linkage changed in a staged batch, on disk beside it (:class:`~pdp.pseudonym.linkage_spark.LinkChanges`):
    ``mapping/`` (``record_key`` → ``pseudonym``, the records re-keyed) and ``owners/`` (each re-keyed
    person's canonical identity, sealed, role ``owner``). The vault's merges and the bronze rows'
    relinking read them on the executors (:func:`prepare_vault`, :func:`pdp.ingest.linking.relink`);
    the driver looks up only the few pseudonyms it needs (:meth:`lookup`)."""

    path: Path
    relinked: int

    @classmethod
    def write(cls, spark: SparkSession, mapping: dict[str, str], owners: dict[str, str | None],
              cipher: IdentityCipher, path: Path) -> StagedChanges:
        """An in-memory linkage's changes (a small batch's), written as the Spark linkage writes its own."""
        shutil.rmtree(path, ignore_errors=True)
        spark.createDataFrame(sorted(mapping.items()), "record_key string, pseudonym string").write.parquet(
            str(path / "mapping"))
        spark.createDataFrame([(t, cipher.seal(t, o, role="owner")) for t, o in sorted(owners.items())],
                              "target string, box binary").write.parquet(str(path / "owners"))
        return cls(path, len(mapping))

    def mapping(self, spark: SparkSession) -> DataFrame:
        """(``record_key``, ``target``): each re-keyed record and its person's pseudonym."""
        return spark.read.schema("record_key string, pseudonym string").parquet(str(self.path / "mapping")) \
            .withColumnRenamed("pseudonym", "target")

    def owners(self, spark: SparkSession) -> DataFrame:
        """(``target``, ``owner``): each re-keyed person's canonical identity, sealed."""
        return spark.read.schema("target string, box binary").parquet(str(self.path / "owners")) \
            .withColumnRenamed("box", "owner")

    def lookup(self, spark: SparkSession, pseudonyms: Iterable[str]) -> dict[str, str]:
        """The persons of the few `pseudonyms` re-keyed among them (the others keep theirs)."""
        from pyspark.sql import functions as F

        wanted = sorted(set(pseudonyms))
        if not wanted or not self.relinked:
            return {}
        frame = self.mapping(spark).where(F.col("record_key").isin(wanted))
        return {row["record_key"]: row["target"] for row in frame.collect()}

    def finals(self, spark: SparkSession, folded: FoldedIdentities) -> Iterator[tuple[str, str]]:
        """(batch pseudonym, person pseudonym) of every person of `folded`, joined on the executors, streamed."""
        from pyspark.sql import functions as F

        rows = folded.frame(spark).select("pseudonym").join(
            self.mapping(spark), F.col("pseudonym") == F.col("record_key"), "left")
        for row in rows.select("pseudonym", F.coalesce("target", "pseudonym").alias("person")).toLocalIterator():
            yield row["pseudonym"], row["person"]

    def read(self, spark: SparkSession, cipher: IdentityCipher) -> tuple[dict[str, str], dict[str, str | None]]:
        """(mapping, owners) into this process, as :meth:`pdp.ingest.edge.Edge.link` returns them: a
        reference for tests and small batches, never the path of a big one."""
        mapping = {row["record_key"]: row["target"] for row in self.mapping(spark).collect()}
        owners = {row["target"]: cipher.open(row["target"], row["owner"], role="owner")  # type: ignore[misc]
                  for row in self.owners(spark).collect()}
        return mapping, owners  # type: ignore[return-value]


_PREPARED_ARROW = pa.schema([
    ("pseudonym", pa.string()), ("ord", pa.int64()), ("box", pa.binary()), ("versions", pa.list_(pa.int32())),
    ("sealing_id", pa.string()), ("bind", pa.string()), ("bind_version", pa.int32()), ("seal_version", pa.int32()),
    ("enc", pa.binary()), ("sealed", pa.binary()), ("nonce", pa.binary()), ("ciphertext", pa.binary()),
    ("index", pa.binary()), ("merged", pa.bool_()),
])
"""A folded person beside its vault write made ready (:func:`pdp.pseudonym.vault.prepare_writes`): its
sealed box's row, its linkage view (ciphertext), the key versions, and its blocking keys and name
tokens sealed under the batch's key (role ``prepared``); the folded box stays for a person the
vault must merge (``merged``: the box holds the record linkage merged for a re-keyed person, role
``rekeyed``)."""


def prepare_vault(spark: SparkSession, folded: FoldedIdentities, out: Path, changes: StagedChanges,
                  withheld: set[str]) -> Path:
    """Each person's vault write made ready on the executors (in `out`): the sealing and keyed hashing
    of :meth:`IdentityVault.upsert_many`, in parallel, through the edge's keys
    (:class:`~pdp.pseudonym.vault.EdgeKeys`: it seals, it cannot open). Call
    :meth:`IdentityVault.write_versions` first: the executors must find every key, not make one.

    What linkage changed is applied there too: a person withheld (an opposition) is left out; the
    records linkage re-keys, and those others join, are merged per person in file order, taking
    their person's canonical identity (:func:`~pdp.ingest.edge.rekey_record`; ``out/rekeyed``); the
    others are prepared as they are (``out/direct``). So neither the re-keyed identities nor the
    mapping come to the driver. (The tests' driver-side reference is ``vault_chunks`` in
    ``tests/ingest/ingest_helpers.py``.) Both outputs filter the same join, so the folded parts are
    read twice; one pass would shuffle every person's box to merge the few re-keyed (not measured)."""
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_schema

    opener = folded.opener
    schema = from_arrow_schema(_PREPARED_ARROW)

    def prepared(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from pdp.pseudonym.vault import EdgeKeys, prepare_writes

        keys = EdgeKeys(opener.store())
        cipher = opener.cipher()
        for batch in batches:
            rows = list(zip(*(batch.column(i).to_pylist() for i in range(3)), strict=True))
            pairs = ((p, pack_record(cipher.open(p, box, role="folded"))) for p, _, box in rows)
            items = prepare_writes(keys, pairs)
            yield pa.RecordBatch.from_pylist([_prepared_row(row, item, cipher)
                                              for row, item in zip(rows, items, strict=True)], schema=_PREPARED_ARROW)

    def merged(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from itertools import islice

        from pdp.pseudonym.vault import EdgeKeys, prepare_writes

        keys = EdgeKeys(opener.store())
        cipher = opener.cipher()
        persons = _merged_per_person(batches, cipher)
        while rows := list(islice(persons, _PREPARED_READ)):
            items = prepare_writes(keys, ((target, record) for target, _, record in rows))
            yield pa.RecordBatch.from_pylist([
                _prepared_row((target, order, cipher.seal(target, record.model_dump(), role="rekeyed")),
                              item, cipher, merged=True)
                for (target, order, record), item in zip(rows, items, strict=True)], schema=_PREPARED_ARROW)

    shutil.rmtree(out, ignore_errors=True)
    if not changes.relinked and not withheld:  # nothing to route: every person as they are
        folded.frame(spark).mapInArrow(prepared, schema).write.parquet(str(out / "direct"))
        return out
    mapping = changes.mapping(spark)
    joined = mapping.select(F.col("target").alias("joined")).distinct()
    rows = (folded.frame(spark).join(mapping, F.col("pseudonym") == F.col("record_key"), "left")
            .join(joined, F.col("pseudonym") == F.col("joined"), "left")
            .withColumn("person", F.coalesce("target", "pseudonym")))
    if withheld:
        rows = rows.where(~F.col("person").isin(sorted(withheld)))
    held = F.col("record_key").isNotNull() | F.col("joined").isNotNull()
    rows.where(~held).select("pseudonym", "ord", "box").mapInArrow(prepared, schema) \
        .write.parquet(str(out / "direct"))
    (rows.where(held).select("person", "ord", "pseudonym", "box").join(changes.owners(spark),
                                                                       F.col("person") == F.col("target"), "left")
     .select("person", "ord", "pseudonym", "box", "owner")
     .repartition("person").sortWithinPartitions("person", "ord")
     .mapInArrow(merged, schema).write.parquet(str(out / "rekeyed")))
    return out


def _merged_per_person(batches: Iterator[pa.RecordBatch], cipher: IdentityCipher
                       ) -> Iterator[tuple[str, int, VaultRecord]]:
    """Rows (person, ord, pseudonym, box, owner) sorted by person then ord, a partition's batches in
    turn → one merged record per person (at its first ord): each record takes its person's canonical
    identity (`owner`; none: its own) and they merge in file order, as :meth:`pdp.ingest.edge.Edge.link`
    merges them. A person's rows are in one partition (repartitioned by person)."""
    current: str | None = None
    first, record = 0, None
    for batch in batches:
        columns = (batch.column(i).to_pylist() for i in range(5))
        for person, order, pseudonym, box, owner in zip(*columns, strict=True):
            if person != current:
                if record is not None and current is not None:
                    yield current, first, record
                current, first, record = person, order, None
            own = pack_record(cipher.open(pseudonym, box, role="folded"))
            canonical = cipher.open(person, owner, role="owner") if owner is not None else own.canonical
            record = rekey_record(record, own, canonical)  # type: ignore[arg-type]
    if record is not None and current is not None:
        yield current, first, record


def _prepared_row(row: tuple[str, int, bytes], item: PreparedWrite, cipher: IdentityCipher, *,
                  merged: bool = False) -> dict[str, Any]:
    seal = item.seal
    index = cipher.seal(item.pseudonym, (item.blocks, item.tokens), role="prepared")
    return {"pseudonym": row[0], "ord": row[1], "box": row[2], "versions": list(item.versions),
            "sealing_id": seal["sealing_id"], "bind": seal["bind"], "bind_version": seal["bind_version"],
            "seal_version": seal["key_version"], "enc": seal["enc"], "sealed": seal["ciphertext"],
            "nonce": item.nonce, "ciphertext": item.ciphertext, "index": index, "merged": merged}


def _prepared_write(row: dict[str, Any], cipher: IdentityCipher) -> PreparedWrite:
    from pdp.pseudonym.vault import PreparedWrite

    pseudonym, v = row["pseudonym"], row["versions"]
    blocks, tokens = cipher.open(pseudonym, row["index"], role="prepared")  # type: ignore[misc]
    seal = {"sealing_id": row["sealing_id"], "pseudonym": pseudonym, "bind_version": row["bind_version"],
            "bind": row["bind"], "key_version": row["seal_version"], "enc": row["enc"], "ciphertext": row["sealed"]}
    return PreparedWrite(pseudonym=pseudonym, versions=(v[0], v[1], v[2], v[3]), seal=seal, nonce=row["nonce"],
                         ciphertext=row["ciphertext"], blocks=tuple(blocks),
                         tokens=tuple((h, k, t, int(n)) for h, k, t, n in tokens))


# A prepared write is ~5 KB (the folded box kept for a merge, the sealed box, the linkage view, the sealed
# index): 2 000 persons a transaction, read 2 000 rows at a time, keep the driver's share of the vault
# stage near what 20 000 records cost when the driver sealed them (ad hoc, 30 000 persons staged, the
# vault stage's RSS growth: +250 MiB in chunks of 20 000, +130 in chunks of 5 000, +94 in chunks of 2 000;
# +70 when the driver sealed 20 000 records a chunk itself)
_PREPARED_CHUNK = 2_000
_PREPARED_READ = 2_000


@dataclass
class PreparedChunk:
    """Vault writes made ready on the executors, with the boxes of their persons: a person the vault
    already holds is merged from its record (:meth:`records`, opened here, on demand): the folded
    one, or for a re-keyed person the one linkage merged (`merged`)."""

    items: list[PreparedWrite]
    boxes: dict[str, bytes]
    cipher: IdentityCipher
    merged: set[str] = field(default_factory=set)

    def records(self, pseudonyms: list[str]) -> dict[str, VaultRecord]:
        from pdp.pseudonym.vault import VaultRecord

        return {p: VaultRecord(**self.cipher.open(p, self.boxes[p], role="rekeyed")) if p in self.merged  # type: ignore[arg-type]
                else pack_record(self.cipher.open(p, self.boxes[p], role="folded")) for p in pseudonyms}


def prepared_chunks(prepared: Path, cipher: IdentityCipher) -> Iterator[PreparedChunk]:
    """The writes :func:`prepare_vault` made ready, a :class:`PreparedChunk` at a time: the persons
    linkage left alone, then those it re-keyed or joined (each merged), in no particular order
    (joins reorder them; the vault's content does not depend on it). The driver holds one chunk."""
    chunk = PreparedChunk([], {}, cipher)
    for path in [*sorted((prepared / "direct").glob("part-*.parquet")),
                 *sorted((prepared / "rekeyed").glob("part-*.parquet"))]:
        for batch in _streamed(path, _PREPARED_READ):
            for row in batch.to_pylist():
                pseudonym = row["pseudonym"]
                chunk.items.append(_prepared_write(row, cipher))
                chunk.boxes[pseudonym] = row["box"]
                if row["merged"]:
                    chunk.merged.add(pseudonym)
                if len(chunk.items) >= _PREPARED_CHUNK:
                    yield chunk
                    chunk = PreparedChunk([], {}, cipher)
    if chunk.items:
        yield chunk
