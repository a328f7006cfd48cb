"""Linkage of a big batch on Spark: the in-memory decision, with the driver out of the data path.

Why: :func:`pdp.pseudonym.linkage.link` holds every variant, candidate pair and union-find of a
batch and of the known persons it could join in one Python process (6.6 GB at 1 M persons).
Here the same steps run as Spark jobs over DataFrames, so the driver holds the plan, the
model's few hundred numbers and the counts; the identities live in the executors' memory.

The same decision, one definition per rule (nothing re-written for Spark):

=========================  =========================================================================
step                       on Spark
=========================  =========================================================================
variants                   ``groupBy`` of the decrypted identities; indices by the in-memory sort
                           (canonical bytes, then the other fields): range-partitioned sort,
                           per-partition offsets
deterministic rules 1-3    :func:`~pdp.pseudonym.linkage_rules.apply_rules` itself, per traits key
                           (``mapInArrow`` over key-sorted partitions); a rule-1 NIR group spread
                           over several traits keys is joined back by its canonical bytes (a local
                           group holds at most one, so no iteration is needed)
candidate pairs            the model's blocking rules rendered in Spark SQL
                           (:func:`~pdp.pseudonym.linkage_model.prediction_rules` ``("spark")``):
                           equi-joins, so pairs are bounded by the blocks, never a cross product
match weights              Splink's own prediction SQL for its ``spark`` dialect, rendered from the
                           one set of comparisons and the trained model's m/u
                           (:func:`~pdp.pseudonym.linkage_model.scoring_sql`); term frequencies of
                           the birth name computed over the variants as Splink does
clustering                 connected components of the group graph (pairs ≥ threshold) by
                           min-label propagation (bounded iterations, local checkpoints), then
                           :func:`~pdp.pseudonym.linkage._cluster` — strongest first, no two own
                           NIRs, ambiguous groups kept apart — on each component
pseudonym per person       :func:`~pdp.pseudonym.linkage._preferred` per person on the executors;
                           persons claiming the same pseudonym (rare: twins sharing a traits key)
                           are settled by :func:`~pdp.pseudonym.linkage._assign` on the driver
=========================  =========================================================================

Why Splink's SQL and not its Spark backend: ``splink.SparkAPI`` (Splink 5.0.0) starts on
pyspark 4.2, but its Jaro-Winkler and Damerau-Levenshtein come from a Scala jar that must be on
``spark.jars`` when the SparkContext is created (here ``jaro_winkler`` did not resolve), and its
pipeline breaks lineage by writing Parquet tables by default — identities in clear on disk. Its
SQL, rendered for its Spark dialect, is taken instead; the steps Splink does not do (our rules,
the constrained clustering, the pseudonym choice) are ours anyway.

Functions Spark lacks: Jaro-Winkler similarity and Damerau-Levenshtein distance are registered in
the linkage session under Splink's Spark names as Arrow UDFs that evaluate DuckDB's own
functions over each Arrow batch — the functions the in-memory path uses, so a level cannot
differ by implementation. Cost: a Python worker round trip per batch of the pairs that reach the
UDF (Spark evaluates them after the equi-join keys), measured below.

Model: Spark does not train (EM on a batch is what ``pdp linkage train`` replaced); it scores
with the trained model (``LinkageOptions.parameters``) or, without one, the built-in
:data:`~pdp.pseudonym.linkage_model.DEFAULT_PARAMETERS` — never EM per batch.

Nominative data in Spark:

- in the driver, each identity is sealed (AES-256-GCM, a random key per run, associated data =
  its record key) before it becomes a DataFrame; the executors open it (``mapInArrow``), so
  Spark's input RDD, the plan and any serialised task hold ciphertext; the plan shows a
  ``LogicalRDD``, never a literal (tested);
- the run key (a random AES key sealing this run's identities) travels as a broadcast variable
  (its id only in plans and closures) and is destroyed at the end of the run; the pseudonym key
  never travels: each executor opens the key store itself (:mod:`pdp.pseudonym.executor_keys`,
  as the edge's Spark tasks do);
- shuffles, spills, cached and checkpointed blocks are encrypted by Spark
  (``spark.io.encryption.enabled``, a SparkContext setting, hence set for every session in
  :func:`pdp.lake.session.spark_conf`); the engine refuses to run without it. Only local
  checkpoints are used (block manager, encrypted), never a reliable checkpoint or a table;
- logs carry counts only; results hold record keys, pseudonyms and counts, plus — for the
  caller that keeps the vault — the canonical identity behind each pseudonym made here.

What the driver holds: with :class:`BoxedInputs` (what an ingest batch whose identities were
staged and folded on Spark passes, :mod:`pdp.ingest.identity_stage`) the batch and the known
persons are Parquet files of sealed boxes that only the executors open, and
:meth:`SparkLinkage.write_changes` writes what linkage changes beside them (the re-keyed records,
their persons' canonical identities sealed by the caller's sealer on the executors) and collects
only the superseded known persons and the counts per rule. Given as
Python objects (:class:`LinkInput`, the benches and the tests), the identities are sealed into a
list on the driver first, and :meth:`SparkLinkage.result` collects one entry per record and per
person, as :func:`~pdp.pseudonym.linkage.link` returns. Either way the linkage's own working set —
variants, blocks, candidate pairs, comparison vectors, the union-find of every group, term
frequencies — is Spark's, which is what grew with the population (the 6.6 GB at 1 M persons).

Measured (``PDP_SPARK_MASTER=local[2] PDP_SPARK_DRIVER_MEMORY=3g PDP_SPARK_SHUFFLE_PARTITIONS=4
pdp bench linkage-spark --persons 20000 --json``, :func:`pdp.pseudonym.linkage_bench.bench_linkage_engines`;
2-core machine shared with two other Spark users, load average 7.8 → 9.3 during the run): douaisis,
seed 8191, 223 716 records, 36 952 variants, 357 pairs scored, the built-in model, **the same
pseudonym for every record** (checked by the bench).

=====================================  ==============  =====================================
                                       in memory       Spark (local[2])
=====================================  ==============  =====================================
wall time                              11.5 s          141 s (12.3 ×): seal 28 s (tracemalloc
                                                       on), variants 27 s, rules 33 s, model
                                                       25 s, clustering 6.5 s, pseudonyms 21 s
Python heap peak (tracemalloc)         87 MiB          105 MiB (the sealed input list)
driver process RSS peak                1 445 MiB       1 410 MiB (from 1 199 MiB with the
                                       (+247 MiB)      batch loaded: DuckDB and pairs gone)
driver JVM RSS peak                    —               2 417 MiB (from 415; in local mode the
                                                       executors' memory, ≤ spark.driver.memory)
=====================================  ==============  =====================================

On this machine Spark costs 12 × the time: ~20 Spark jobs and ~15 shuffles with fixed costs,
each stage waiting for a core on a loaded 2-core box, against one DuckDB process. What it buys
is the shape of the memory: the in-memory path's working set grows with the batch and the known
persons in one process (6.6 GB at 1 M persons), the Spark path's lives in executors and spills
(encrypted), so it grows with the cluster. ``auto`` keeps batches under
``PDP_LINKAGE_SPARK_MIN_IDENTITIES`` (200 000 identities) in memory for that reason.

The two UDFs (``python -m`` script over 400 000 string pairs, same session, load ~8): Spark's
built-in ``levenshtein(a, b) <= 1`` 1.20 s; ``jaro_winkler(a, b) >= 0.9`` 1.45 s;
``damerau_levenshtein(a, b) <= 1`` 2.56 s — 1-3.5 µs a pair over the built-in, paid only by the
pairs an equi-join block already produced.

Example::

    with SparkLinker(spark, pseudonymiser, options=options) as linker:
        outcome = linker.link(inputs, known=known)
        outcome.assignments            # DataFrame: record_key, pseudonym, rule
        result = outcome.result()      # a LinkResult, as link() returns
    with SparkLinker(spark, pseudonymiser, options=options) as linker:  # nothing nominative on the driver
        run = linker.link(BoxedInputs(path, opener), known=BoxedInputs(known_path, opener))
        changes = run.write_changes(changes_path, seal)  # mapping/ and owners/ under it; counts here
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from pdp.pseudonym.executor_keys import executor_pseudonymiser, key_check, shipped_settings
from pdp.pseudonym.linkage import (
    MODEL_BUILTIN,
    MODEL_GIVEN,
    MODEL_NOT_RUN,
    RULES,
    KnownPerson,
    LinkageOptions,
    LinkInput,
    LinkResult,
    _assign,
    _cluster,
    _preferred,
    _record_rule,
    options_description,
)
from pdp.pseudonym.linkage_model import DEFAULT_PARAMETERS, FEATURES, ScoredPair, features, scoring_sql
from pdp.pseudonym.linkage_rules import UnionFind, Variant, apply_rules
from pdp.pseudonym.normalise import CanonicalIdentity
from pdp.pseudonym.pseudonymise import Pseudonymiser

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark import Broadcast
    from pyspark.sql import DataFrame, SparkSession

    from pdp.config import Settings

__all__ = ["BoxedInputs", "LinkChanges", "OwnerSealer", "SparkLinkage", "SparkLinker", "encryption_enabled",
           "engine_for"]

logger = logging.getLogger(__name__)


_MAX_ITERATIONS = 64  # min-label propagation: a component's diameter in deterministic groups
_CANONICAL = (
    "scheme", "nir", "insured_nir", "birth_name", "birth_name_compact", "used_name", "first_names", "first_name",
    "first_name_first_token", "sex", "birth_date", "birth_place",
)  # fmt: skip
_C = [f"c_{name}" for name in _CANONICAL]  # the canonical identity's columns (features keep their own names)
_TRAITS_KEY = ["c_birth_name_compact", "c_first_name_first_token", "c_birth_date", "c_sex"]
_FEATURE_COLS = [name for name in FEATURES if name != "postcode"]


def engine_for(identities: int, settings: Settings | None = None) -> Literal["memory", "spark"]:
    """The linkage engine for a batch of ``identities`` (its own plus the known persons it could
    join): ``Settings.linkage_engine``, ``auto`` choosing Spark from
    ``Settings.linkage_spark_min_identities`` — small batches keep the in-memory path."""
    from pdp.config import get_settings

    settings = settings or get_settings()
    if settings.linkage_engine != "auto":
        return settings.linkage_engine
    return "spark" if identities >= settings.linkage_spark_min_identities else "memory"


def encryption_enabled(spark: SparkSession) -> bool:
    """Whether the session's SparkContext encrypts shuffles, spills and disk blocks."""
    return spark.sparkContext.getConf().get("spark.io.encryption.enabled", "false").lower() == "true"


# --- sealing identities for the executors ------------------------------------------------------


def _pack(canonical: CanonicalIdentity, postcode: str | None) -> bytes:
    fields = {name: getattr(canonical, name) for name in _CANONICAL}
    fields["birth_date"] = canonical.birth_date.isoformat()
    fields["first_names"] = list(canonical.first_names)
    return json.dumps([fields, postcode], separators=(",", ":")).encode("utf-8")


def _unpack(data: bytes) -> tuple[CanonicalIdentity, str | None]:
    fields, postcode = json.loads(data)
    fields["birth_date"] = date.fromisoformat(fields["birth_date"])
    fields["first_names"] = tuple(fields["first_names"])
    return CanonicalIdentity(**fields), postcode


def _canonical(row: dict[str, Any]) -> CanonicalIdentity:
    """The canonical identity of a row of the variants table."""
    fields = {name: row[f"c_{name}"] for name in _CANONICAL}
    fields["first_names"] = tuple(fields["first_names"])
    return CanonicalIdentity(**fields)


def _sort_rest(canonical: CanonicalIdentity, postcode: str | None) -> str:
    from pdp.pseudonym.linkage_rules import _sort_key

    return _sort_key((canonical, postcode))[1]


def _open_batches(
    batches: Iterator[pa.RecordBatch], run_key: Broadcast, schema: pa.Schema
) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: sealed identities → the variants table's columns (in executor memory only)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    aead = AESGCM(run_key.value)
    for batch in batches:
        rows = []
        for key, known, sealed in zip(
            batch.column("record_key").to_pylist(), batch.column("known").to_pylist(),
            batch.column("sealed").to_pylist(), strict=True,
        ):  # fmt: skip
            associated = (key if key is not None else known).encode("utf-8")  # binds the box to its row
            rows.append((key, known, *_unpack(aead.decrypt(sealed[:12], sealed[12:], associated))))
        yield _opened(rows, schema)


def _open_boxed(
    batches: Iterator[pa.RecordBatch], opener: Callable[[str, bytes], tuple[CanonicalIdentity | None, str | None]],
    schema: pa.Schema, *, known: bool,
) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: a caller's boxed batch or known persons (:class:`BoxedInputs`) → the variants
    table's columns; a box without a canonical identity is no input (as :meth:`pdp.ingest.edge.Edge.link`
    skips it); a known person takes no postcode (as the sealed path's)."""
    for batch in batches:
        rows = []
        for key, box in zip(batch.column("record_key").to_pylist(), batch.column("box").to_pylist(), strict=True):
            canonical, postcode = opener(key, box)
            if canonical is not None:
                rows.append((None, key, canonical, None) if known else (key, None, canonical, postcode))
        yield _opened(rows, schema)


def _opened(rows: list[tuple[str | None, str | None, CanonicalIdentity, str | None]], schema: pa.Schema
            ) -> pa.RecordBatch:
    """(record key, known pseudonym, canonical identity, postcode) rows → the variants table's columns."""
    import pyarrow as pa

    names = ["record_key", "known", *_C, "postcode", "canonical_bytes", "sort_rest", *_FEATURE_COLS]
    columns: dict[str, list[Any]] = {name: [] for name in names}
    for key, known, canonical, postcode in rows:
        columns["record_key"].append(key)
        columns["known"].append(known)
        for name in _CANONICAL:
            value = getattr(canonical, name)
            columns[f"c_{name}"].append(list(value) if name == "first_names" else value)
        columns["postcode"].append(postcode)
        columns["canonical_bytes"].append(canonical.canonical_bytes)
        columns["sort_rest"].append(_sort_rest(canonical, postcode))
        for name, value in features(Variant(index=0, canonical=canonical, postcode=postcode)).items():
            if name != "postcode":  # the variant's own column
                columns[name].append(value)
    return pa.RecordBatch.from_pydict(columns, schema=schema)


# --- grouped Python steps over key-sorted partitions --------------------------------------------


def _groups(batches: Iterator[pa.RecordBatch], key: list[str]) -> Iterator[list[dict[str, Any]]]:
    """Rows of a partition sorted by ``key``, one list per key value (one Python call per
    partition instead of one per group: ``applyInArrow`` costs ~1 ms a group)."""
    current: list[dict[str, Any]] = []
    current_key: tuple[Any, ...] | None = None
    for batch in batches:
        for row in batch.to_pylist():
            k = tuple(row[name] for name in key)
            if current and k != current_key:
                yield current
                current = []
            current_key = k
            current.append(row)
    if current:
        yield current


def _variant(row: dict[str, Any], index: int | None = None) -> Variant:
    v = Variant(
        index=row["index"] if index is None else index,
        canonical=_canonical(row),
        postcode=row["postcode"],
        records=list(row.get("records") or []),
        known=set(row.get("known_set") or []),
    )
    if row.get("rule") is not None:
        v.rule = row["rule"]
    return v


_RULES_SCHEMA = "index long, local_root long, rule string, nir_bytes binary"
_CLUSTER_SCHEMA = "group long, person long, merged long, refused long, ambiguous long"
_PERSONS_SCHEMA = (
    "index long, preferred string, chosen long, made boolean, holds boolean, person_records long, record_rule string"
)


def _arrow(schema: Any) -> pa.Schema:
    """The Arrow schema of a Spark schema (a DDL string or a StructType): every batch a Python
    step yields is built with it, so an all-null column keeps its type."""
    from pyspark.sql.pandas.types import to_arrow_schema
    from pyspark.sql.types import StructType, _parse_datatype_string

    return to_arrow_schema(schema if isinstance(schema, StructType) else _parse_datatype_string(schema))


def _rules_batches(batches: Iterator[pa.RecordBatch], schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: :func:`apply_rules` on the variants of one traits key at a time.

    Equal to the global run restricted to the key: rule 1 groups equal NIR canonicals (of one
    traits key here; other keys' parts are joined afterwards by the canonical bytes), rules 2-3
    only ever look at variants of one traits key."""
    import pyarrow as pa

    for rows in _groups(batches, _TRAITS_KEY):
        rows.sort(key=lambda row: row["index"])
        local = [_variant(row, i) for i, row in enumerate(rows)]
        uf = UnionFind(local)
        apply_rules(local, uf)
        yield pa.RecordBatch.from_pydict({
            "index": [row["index"] for row in rows],
            "local_root": [rows[uf.find(i)]["index"] for i in range(len(rows))],
            "rule": [v.rule for v in local],
            "nir_bytes": [v.canonical.canonical_bytes if v.canonical.scheme == "nir" else None for v in local],
        }, schema=schema)  # fmt: skip


def _cluster_batches(
    batches: Iterator[pa.RecordBatch], options: LinkageOptions, schema: pa.Schema
) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: the in-memory constrained clustering on one connected component at a time."""
    import pyarrow as pa

    for rows in _groups(batches, ["component"]):
        nodes = sorted({row["a"] for row in rows} | {row["b"] for row in rows})
        position = {node: i for i, node in enumerate(nodes)}
        nir: dict[int, str | None] = {}
        for row in rows:
            nir[row["a"]], nir[row["b"]] = row["nir_a"], row["nir_b"]
        uf = UnionFind.of_nirs([nir[node] for node in nodes])
        pairs = [ScoredPair(position[r["a"]], position[r["b"]], r["probability"], r["weight"]) for r in rows]
        merged, refused, ambiguous = _cluster(pairs, list(range(len(nodes))), uf, options)
        first = [1] + [0] * (len(nodes) - 1)
        yield pa.RecordBatch.from_pydict({
            "group": nodes,
            "person": [nodes[uf.find(i)] for i in range(len(nodes))],
            "merged": [merged * f for f in first],
            "refused": [refused * f for f in first],
            "ambiguous": [ambiguous * f for f in first],
        }, schema=schema)  # fmt: skip


def _persons_batches(
    batches: Iterator[pa.RecordBatch], pseudonymiser: Pseudonymiser, schema: pa.Schema
) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: each person's preferred pseudonym (:func:`_preferred`) and its records' rule."""
    import pyarrow as pa

    for rows in _groups(batches, ["person"]):
        members = [_variant(row) for row in rows]
        det_root = {row["index"]: row["det_root"] for row in rows}
        pseudonym, chosen, canonical = _preferred(members, pseudonymiser)
        records = sum(len(v.records) for v in members)
        holds = any(pseudonym in v.known for v in members)
        anchor = det_root[chosen.index]
        yield pa.RecordBatch.from_pydict({
            "index": [v.index for v in members],
            "preferred": [pseudonym] * len(members),
            "chosen": [chosen.index] * len(members),
            "made": [canonical is not None] * len(members),
            "holds": [holds] * len(members),
            "person_records": [records] * len(members),
            "record_rule": [_record_rule(v, records, same_group=det_root[v.index] == anchor) for v in members],
        }, schema=schema)  # fmt: skip


def _duckdb_pairwise(function: str, a: pa.Array, b: pa.Array) -> pa.Array:
    """DuckDB's ``function(a, b)`` over one Arrow batch: the in-memory path's own implementation."""
    import duckdb
    import pyarrow as pa

    con = duckdb.connect(":memory:", config={"temp_directory": ""})
    try:
        pairs = pa.table({"a": a, "b": b})  # noqa: F841 - read by DuckDB's replacement scan
        return con.sql(f"SELECT {function}(a, b) AS v FROM pairs").to_arrow_table().column("v").combine_chunks()
    finally:
        con.close()


# --- the engine ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BoxedInputs:
    """A batch whose identities never come to the driver: a Parquet dataset at ``path`` of
    (``key_column``: the record key, ``box``: the sealed identity), each box opened on the executors
    by ``opener(record_key, box)`` into (canonical identity or None, postcode). ``opener`` must
    pickle without a secret (it opens its own key store on the executor), as
    :class:`pdp.ingest.identity_stage.FoldedIdentities`' does."""

    path: str
    opener: Callable[[str, bytes], tuple[CanonicalIdentity | None, str | None]]
    key_column: str = "record_key"


@dataclass(frozen=True, slots=True)
class LinkChanges:
    """What a batch's linkage changes, written beside the batch rather than collected
    (:meth:`SparkLinkage.write_changes`): ``path`` holds ``mapping/`` (``record_key``, ``pseudonym``:
    the records whose pseudonym is another) and ``owners/`` (``target``, ``box``: the canonical
    identity behind each pseudonym of the mapping, sealed by the caller's sealer, None sealed for a
    known person's: it is in the vault). ``relinked`` counts the mapping's rows; ``superseded`` as
    :class:`LinkResult`'s (known persons found to be one: few), ``rule_counts`` records per rule."""

    path: str
    relinked: int
    superseded: dict[str, str]
    rule_counts: dict[str, int]
    parameters: dict[str, Any]


OwnerSealer = Callable[[str, "CanonicalIdentity | None"], bytes]
"""Seals a re-keyed person's canonical identity (None: a known person's) under the caller's key,
bound to its pseudonym: picklable, it runs on the executors (the caller's key reaches them through
its own key store, never the closure)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SparkLinkage:
    """One Spark linkage run. ``assignments``: one row per record (``record_key``, ``pseudonym``,
    ``rule``); ``superseded``: (``old``, ``new``) known pseudonyms merged into another person;
    ``made``: (``pseudonym``, ``chosen``) the variant whose canonical identity makes each pseudonym
    made here; ``variants``: one row per variant, **identities included** (executor memory and
    encrypted blocks only: never write it, never show it); ``overrides``: the canonical identities
    of the few disambiguated pseudonyms, settled on the driver. ``parameters``/``timings`` as
    :class:`LinkResult`'s (counts only). Use it before its :class:`SparkLinker` is closed."""

    assignments: DataFrame
    superseded: DataFrame
    made: DataFrame
    variants: DataFrame
    overrides: dict[str, CanonicalIdentity]
    parameters: dict[str, Any]
    timings: dict[str, float]

    def __repr__(self) -> str:
        return f"SparkLinkage(counts={self.parameters.get('counts')})"

    def result(self) -> LinkResult:
        """The run as :func:`~pdp.pseudonym.linkage.link` returns it, collected to the driver (what
        the edge needs to re-key its vault records: one entry per record and per person)."""
        from pyspark.sql import functions as F

        pseudonyms = {row["record_key"]: row["pseudonym"] for row in self.assignments.toLocalIterator()}
        sizes: dict[str, int] = defaultdict(int)
        rule_counts = {rule: 0 for rule in RULES}
        for row in self.assignments.groupBy("pseudonym", "rule").count().toLocalIterator():
            sizes[row["pseudonym"]] += row["count"]
            rule_counts[row["rule"]] += row["count"]
        superseded = {row["old"]: row["new"] for row in self.superseded.toLocalIterator()}
        canonicals = dict(self.overrides)
        chosen = self.variants.select("index", *_C)
        made = self.made.join(chosen, F.col("chosen") == F.col("index")).select("pseudonym", *_C)
        for row in made.toLocalIterator():
            if row["pseudonym"] in sizes and row["pseudonym"] not in canonicals:
                canonicals[row["pseudonym"]] = _canonical(row.asDict())
        return LinkResult(
            pseudonyms=pseudonyms,
            cluster_sizes=dict(sizes),
            rule_counts=rule_counts,
            superseded=superseded,
            parameters=self.parameters,
            timings=self.timings,
            canonicals={p: c for p, c in canonicals.items() if p in sizes},
        )


    def write_changes(self, path: str, seal: OwnerSealer) -> LinkChanges:
        """The run's changes written under `path` (:class:`LinkChanges`), for a batch that stays on the
        executors (:class:`BoxedInputs`): the re-keyed records and their persons' canonical identities,
        sealed by `seal` where they are computed. Nothing per person comes to the driver: a national
        first load re-keys millions of records, more than a driver holds."""
        import pyarrow as pa
        from pyspark.sql import functions as F

        spark = self.assignments.sparkSession
        schema = pa.schema([("target", pa.string()), ("box", pa.binary())])
        moved = self.assignments.where(F.col("record_key") != F.col("pseudonym")).select("record_key", "pseudonym")
        moved.write.mode("overwrite").parquet(f"{path}/mapping")
        mapping = spark.read.schema("record_key string, pseudonym string").parquet(f"{path}/mapping")
        rule_counts = {rule: 0 for rule in RULES}
        for row in self.assignments.groupBy("rule").count().collect():
            rule_counts[row["rule"]] += row["count"]
        superseded = {row["old"]: row["new"] for row in self.superseded.toLocalIterator()}
        targets = mapping.select(F.col("pseudonym").alias("target")).distinct()
        overridden = sorted(self.overrides)
        if overridden:
            targets = targets.where(~F.col("target").isin(overridden))
        chosen = self.variants.select("index", "records", *_C)
        made = self.made.join(targets, F.col("pseudonym") == F.col("target")).join(
            chosen, F.col("chosen") == F.col("index")).select("target", *_C)
        # a batch record others joined keeps its own identity, unless made here
        own = chosen.select(F.explode("records").alias("target"), *_C).join(targets, "target").join(
            made.select("target"), "target", "left_anti")
        found = made.unionByName(own).withColumn("found", F.lit(True))
        owners = targets.join(found, "target", "left")

        def sealed(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            for batch in batches:
                rows = batch.to_pylist()
                yield pa.RecordBatch.from_pydict(
                    {"target": [r["target"] for r in rows],
                     "box": [seal(r["target"], _canonical(r) if r["found"] else None) for r in rows]},
                    schema=schema)

        owners.mapInArrow(sealed, "target string, box binary").write.mode("overwrite").parquet(f"{path}/owners")
        if overridden:  # the few disambiguated on the driver: sealed here
            wanted = {row["pseudonym"] for row in mapping.where(F.col("pseudonym").isin(overridden))
                      .select("pseudonym").distinct().collect()}
            rows = [(t, seal(t, self.overrides[t])) for t in sorted(wanted)]
            if rows:
                spark.createDataFrame(rows, "target string, box binary").write.mode("append").parquet(f"{path}/owners")
        return LinkChanges(path=path, relinked=mapping.count(), superseded=superseded, rule_counts=rule_counts,
                           parameters=self.parameters)


class SparkLinker:
    """Links batches on Spark in a session of its own (its UDFs and views stay out of the caller's).

    `settings` are those of the key store `pseudonymiser` reads (default: the process's): they
    travel to the executors with every secret withheld, and each executor opens the key store
    itself (:mod:`pdp.pseudonym.executor_keys`) — the pseudonym key never crosses Spark."""

    def __init__(
        self,
        spark: SparkSession,
        pseudonymiser: Pseudonymiser,
        *,
        options: LinkageOptions | None = None,
        settings: Settings | None = None,
    ) -> None:
        from pdp.config import get_settings

        if not encryption_enabled(spark):
            raise RuntimeError(
                "Spark linkage needs spark.io.encryption.enabled=true (identities in shuffles and spills): "
                "create the session with pdp.lake.session.get_spark"
            )
        self._spark = spark.newSession()
        self._options = options or LinkageOptions()
        self._pseudonymiser = pseudonymiser
        self._shipped, self._withheld = shipped_settings(settings or get_settings())
        self._check = key_check(pseudonymiser)  # the executors must open this very key
        self._broadcasts: list[Broadcast] = []
        self._register_functions()

    def _register_functions(self) -> None:
        from pyspark.sql import functions as F
        from pyspark.sql.functions import ArrowUDFType

        def similarity(function: str) -> Any:
            def compute(a: pa.Array, b: pa.Array) -> pa.Array:
                return _duckdb_pairwise(function, a, b)

            return compute

        scalar = ArrowUDFType.SCALAR  # explicit: the hints are strings under postponed annotations
        warnings.filterwarnings("ignore", message="It is preferred to specify type hints for arrow UDF")
        for name, duckdb_name, kind in (
            ("jaro_winkler", "jaro_winkler_similarity", "double"),
            ("damerau_levenshtein", "damerau_levenshtein", "bigint"),
        ):
            self._spark.udf.register(name, F.arrow_udf(similarity(duckdb_name), kind, scalar))

    def close(self) -> None:
        """Destroy the broadcast keys on the driver and every executor, and drop the run's views so
        that Spark's cleaner frees their checkpointed blocks."""
        for broadcast in self._broadcasts:
            broadcast.destroy()
        self._broadcasts = []
        for view in self._spark.catalog.listTables():
            if view.isTemporary:
                self._spark.catalog.dropTempView(view.name)

    def __enter__(self) -> SparkLinker:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- input ------------------------------------------------------------------------------------

    def _sealed_frame(self, inputs: Iterable[LinkInput], known: Iterable[KnownPerson]) -> tuple[DataFrame, Broadcast]:
        """The batch and the known persons as sealed rows (record key or known pseudonym, ciphertext)."""
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        run_key = AESGCM.generate_key(bit_length=256)
        aead = AESGCM(run_key)
        rows: list[tuple[str | None, str | None, bytes]] = []
        seen: set[str] = set()
        for item in inputs:
            if item.record_key in seen:
                raise ValueError("record keys must be unique within a linkage batch")
            seen.add(item.record_key)
            nonce = os.urandom(12)
            sealed = aead.encrypt(nonce, _pack(item.canonical, item.postcode), item.record_key.encode("utf-8"))
            rows.append((item.record_key, None, nonce + sealed))
        for pseudonym, canonical in known:
            nonce = os.urandom(12)
            rows.append((None, pseudonym, nonce + aead.encrypt(nonce, _pack(canonical, None), pseudonym.encode())))
        del seen
        frame = self._spark.createDataFrame(rows, "record_key string, known string, sealed binary")
        broadcast = self._spark.sparkContext.broadcast(run_key)
        self._broadcasts.append(broadcast)
        del run_key, aead
        return frame, broadcast

    def _open_part(self, part: BoxedInputs, of_known: bool, schema: Any, arrow: pa.Schema) -> DataFrame:
        """A boxed part opened on the executors into the variants table's columns."""
        from pyspark.sql import functions as F

        opener = part.opener

        def open_boxed(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            return _open_boxed(batches, opener, arrow, known=of_known)

        frame = self._spark.read.parquet(part.path).select(F.col(part.key_column).alias("record_key"), "box")
        return frame.mapInArrow(open_boxed, schema)

    # -- the run ------------------------------------------------------------------------------------

    def link(self, inputs: Iterable[LinkInput] | BoxedInputs, *,
             known: Iterable[KnownPerson] | BoxedInputs = ()) -> SparkLinkage:
        """Link ``inputs`` (and ``known`` persons) as :func:`~pdp.pseudonym.linkage.link` would;
        each in the driver's memory, or boxed on disk and opened by the executors only."""
        from pyspark.sql import Window
        from pyspark.sql import functions as F
        from pyspark.sql.types import (
            ArrayType,
            BinaryType,
            DateType,
            DoubleType,
            LongType,
            StringType,
            StructField,
            StructType,
        )  # fmt: skip

        options = self._options
        spark = self._spark
        timings: dict[str, float] = {}
        start = time.perf_counter()
        boxed = [(part, of_known) for part, of_known in ((inputs, False), (known, True))
                 if isinstance(part, BoxedInputs)]
        sealed, run_key = self._sealed_frame(() if isinstance(inputs, BoxedInputs) else inputs,
                                             () if isinstance(known, BoxedInputs) else known)
        timings["seal_s"] = time.perf_counter() - start

        string, integer = StringType(), LongType()  # Arrow int64, as Python ints give
        opened_schema = StructType([
            StructField("record_key", string), StructField("known", string),
            *[StructField(f"c_{name}", ArrayType(string) if name == "first_names" else DateType()
                          if name == "birth_date" else string) for name in _CANONICAL],
            StructField("postcode", string), StructField("canonical_bytes", BinaryType()),
            StructField("sort_rest", string),
            StructField("nir", string), StructField("insured_nir", string), StructField("birth_name", string),
            StructField("used_name", string), StructField("first_names", string),
            StructField("first_compact", string), StructField("first_token", string), StructField("sex", string),
            StructField("birth_date", DateType()), StructField("birth_year", integer),
            StructField("birth_month", integer), StructField("birth_day", integer),
            StructField("birth_place", string), StructField("name_sdx", string),
        ])  # fmt: skip

        opened_arrow = _arrow(opened_schema)

        def open_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            return _open_batches(batches, run_key, opened_arrow)

        opened = sealed.mapInArrow(open_batches, opened_schema)
        for part, of_known in boxed:
            opened = opened.unionByName(self._open_part(part, of_known, opened_schema, opened_arrow))
        feature_cols = _FEATURE_COLS
        grouped = opened.groupBy(*_C, "postcode").agg(
            F.collect_list("record_key").alias("records"),
            F.array_sort(F.collect_set("known")).alias("known_set"),
            F.first("canonical_bytes").alias("canonical_bytes"),
            F.first("sort_rest").alias("sort_rest"),
            *[F.first(name).alias(name) for name in feature_cols],
        )
        # Indices in the in-memory order: a range-partitioned sort, then per-partition offsets.
        ordered = grouped.orderBy("canonical_bytes", "sort_rest").withColumn("pid", F.spark_partition_id())
        ordered = ordered.withColumn(
            "rank", F.row_number().over(Window.partitionBy("pid").orderBy("canonical_bytes", "sort_rest"))
        ).localCheckpoint()
        sizes = sorted((row["pid"], row["n"]) for row in ordered.groupBy("pid").agg(F.count("*").alias("n")).collect())
        offsets, total = [], 0
        for pid, n in sizes:
            offsets.append((pid, total))
            total += n
        offset_frame = spark.createDataFrame(offsets or [(0, 0)], "pid int, offset long")
        variants = (
            ordered.join(F.broadcast(offset_frame), "pid")
            .select(((F.col("offset") + F.col("rank") - 1).cast(LongType())).alias("index"), "*")
            .drop("pid", "rank", "offset")
            .localCheckpoint()
        )
        n_variants = total
        timings["variants_s"] = time.perf_counter() - start - timings["seal_s"]

        # Deterministic rules per traits key, then NIR groups spread over keys joined by canonical bytes.
        rules_arrow = _arrow(_RULES_SCHEMA)

        def rules_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            return _rules_batches(batches, rules_arrow)

        rules = variants.repartition(*_TRAITS_KEY).sortWithinPartitions(*_TRAITS_KEY, "index").mapInArrow(
            rules_batches, _RULES_SCHEMA
        )
        local = rules.join(
            rules.groupBy("local_root").agg(F.max("nir_bytes").alias("group_bytes")), "local_root"
        )
        by_bytes = local.where(F.col("group_bytes").isNotNull()).groupBy("group_bytes").agg(
            F.min("index").alias("bytes_root")
        )
        det = (
            local.join(by_bytes, "group_bytes", "left")
            .select("index", "rule", F.coalesce("bytes_root", "local_root").alias("det_root"))
        )
        variants = variants.join(det, "index")
        variants = variants.join(
            variants.groupBy("det_root").agg(F.max("nir").alias("cluster_nir")), "det_root"
        ).localCheckpoint()
        n_groups = variants.select("det_root").distinct().count()
        timings["deterministic_s"] = time.perf_counter() - start

        parameters_used: dict[str, Any] | None = None
        model_version = MODEL_NOT_RUN
        pairs_scored = merged = refused = ambiguous = 0
        persons_of_groups = None
        if options.probabilistic and n_variants > 1:
            t = time.perf_counter()
            parameters_used = options.parameters or DEFAULT_PARAMETERS
            if options.parameters is not None:
                model_version = options.model_version or MODEL_GIVEN
            else:
                model_version = MODEL_BUILTIN
                logger.warning("linkage on Spark: no trained model given; built-in parameters used (no EM on Spark)")
            sql = scoring_sql(parameters_used, options.model)
            table = variants.select(
                F.col("index").alias("unique_id"), F.col("det_root").alias("cluster_id"), "cluster_nir", *FEATURES
            )
            for column in sql.tf_columns:
                counts = table.where(F.col(column).isNotNull()).groupBy(column).count()
                all_count = table.where(F.col(column).isNotNull()).count()
                table = table.join(
                    counts.select(column, (F.col("count").cast(DoubleType()) / F.lit(all_count)).alias(f"tf_{column}")),
                    column, "left",
                )
            table = table.localCheckpoint()
            table.createOrReplaceTempView("pdp_link_variants")
            blocked_ids = None
            for rule in sql.blocking_rules:
                pairs = spark.sql(
                    "SELECT l.unique_id AS unique_id_l, r.unique_id AS unique_id_r "
                    f"FROM pdp_link_variants AS l JOIN pdp_link_variants AS r ON ({rule}) AND l.unique_id < r.unique_id"
                )
                blocked_ids = pairs if blocked_ids is None else blocked_ids.unionAll(pairs)
            assert blocked_ids is not None
            blocked_ids.distinct().localCheckpoint().createOrReplaceTempView("pdp_link_pairs")
            spark.sql(
                f"SELECT {', '.join(sql.blocked_columns)}, 0 AS match_key FROM pdp_link_pairs AS p "
                "JOIN pdp_link_variants AS l ON p.unique_id_l = l.unique_id "
                "JOIN pdp_link_variants AS r ON p.unique_id_r = r.unique_id"
            ).createOrReplaceTempView("__splink__df_blocked")
            spark.sql(sql.vectors).createOrReplaceTempView("__splink__df_comparison_vectors")
            for name, step in sql.predict:
                spark.sql(step).createOrReplaceTempView(name)
            scored = spark.table(sql.predict[-1][0]).select(
                "unique_id_l", "unique_id_r", "match_weight", "match_probability"
            ).localCheckpoint()
            pairs_scored = scored.count()
            timings["model_s"] = time.perf_counter() - t

            t = time.perf_counter()
            roots = variants.select("index", "det_root", "cluster_nir")
            left, right = roots.alias("gl"), roots.alias("gr")
            edges = (
                scored.where(F.col("match_probability") >= F.lit(options.threshold))
                .join(left, F.col("unique_id_l") == F.col("gl.index"))
                .join(right, F.col("unique_id_r") == F.col("gr.index"))
                .select(
                    F.least("gl.det_root", "gr.det_root").alias("a"),
                    F.greatest("gl.det_root", "gr.det_root").alias("b"),
                    F.when(F.col("gl.det_root") < F.col("gr.det_root"), F.col("gl.cluster_nir"))
                    .otherwise(F.col("gr.cluster_nir")).alias("nir_a"),
                    F.when(F.col("gl.det_root") < F.col("gr.det_root"), F.col("gr.cluster_nir"))
                    .otherwise(F.col("gl.cluster_nir")).alias("nir_b"),
                    F.col("match_probability").alias("probability"), F.col("match_weight").alias("weight"),
                )
                .where(F.col("a") != F.col("b"))
                .localCheckpoint()
            )
            components = _connected_components(edges)
            clustered = (
                edges.join(components, edges.a == components.node).drop("node")
                .repartition("component").sortWithinPartitions("component", "a", "b")
            )

            cluster_arrow = _arrow(_CLUSTER_SCHEMA)

            def cluster_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
                return _cluster_batches(batches, options, cluster_arrow)

            persons_of_groups = clustered.mapInArrow(cluster_batches, _CLUSTER_SCHEMA).localCheckpoint()
            totals = persons_of_groups.agg(
                F.sum("merged").alias("m"), F.sum("refused").alias("r"), F.sum("ambiguous").alias("a")
            ).first()
            merged, refused, ambiguous = (int(totals["m"] or 0), int(totals["r"] or 0), int(totals["a"] or 0))
            timings["clustering_s"] = time.perf_counter() - t

        t = time.perf_counter()
        if persons_of_groups is not None:
            variants = variants.join(
                persons_of_groups.select(F.col("group").alias("det_root"), "person"), "det_root", "left"
            ).withColumn("person", F.coalesce("person", "det_root"))
        else:
            variants = variants.withColumn("person", F.col("det_root"))
        variants = variants.localCheckpoint()
        shipped, withheld, version, check = self._shipped, self._withheld, self._pseudonymiser.version, self._check
        persons_arrow = _arrow(_PERSONS_SCHEMA)

        def persons_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            return _persons_batches(batches, executor_pseudonymiser(shipped, withheld, version, check), persons_arrow)

        per_variant = (
            variants.repartition("person").sortWithinPartitions("person", "index")
            .mapInArrow(persons_batches, _PERSONS_SCHEMA)
        )
        variants = variants.join(per_variant, "index").localCheckpoint()
        persons = variants.select("person", "preferred", "chosen", "made", "holds", "person_records").distinct()
        conflicted = persons.groupBy("preferred").count().where(F.col("count") > 1).select("preferred")
        contested = variants.join(conflicted, "preferred").collect()  # twins sharing a traits key: a handful
        overrides: dict[str, CanonicalIdentity] = {}
        disambiguated = 0
        assigned_rows: list[tuple[int, str, int, bool]] = []
        if contested:
            members: dict[int, list[Variant]] = defaultdict(list)
            for row in sorted(contested, key=lambda r: r["index"]):
                members[row["person"]].append(_variant(row.asDict()))
            assigned, made_here, _ = _assign(dict(members), self._pseudonymiser)
            fresh = set()
            for root, (pseudonym, chosen) in assigned.items():
                assigned_rows.append((root, pseudonym, chosen.index, pseudonym in made_here))
                if pseudonym != next(r["preferred"] for r in contested if r["person"] == root):
                    fresh.add(pseudonym)
                    disambiguated += 1
            if fresh and persons.where(F.col("preferred").isin(sorted(fresh))).count():
                raise RuntimeError("linkage on Spark: a disambiguated pseudonym is another person's (not expected)")
            overrides = dict(made_here)
        override_frame = spark.createDataFrame(
            assigned_rows or [(-1, "", -1, False)],
            "person long, assigned string, assigned_chosen long, assigned_made boolean",
        )
        persons = (
            persons.join(F.broadcast(override_frame), "person", "left")
            .select(
                "person", F.coalesce("assigned", "preferred").alias("pseudonym"),
                F.coalesce("assigned_chosen", "chosen").alias("chosen"),
                F.coalesce("assigned_made", "made").alias("made"), "person_records",
            )
            .localCheckpoint()
        )
        assignments = (
            variants.select("person", F.explode("records").alias("record_key"), F.col("record_rule").alias("rule"))
            .join(persons.select("person", "pseudonym"), "person")
            .select("record_key", "pseudonym", "rule")
            .localCheckpoint()
        )
        in_use = persons.select(F.col("pseudonym").alias("old"))
        superseded = (
            variants.select("person", F.explode("known_set").alias("old"))
            .join(in_use, "old", "left_anti")
            .join(persons.select("person", F.col("pseudonym").alias("new")), "person")
            .select("old", "new")
            .distinct()
            .localCheckpoint()
        )
        made = persons.where(F.col("made") & (F.col("person_records") > 0)).select("pseudonym", "chosen")
        n_records = assignments.count()
        n_persons = persons.where(F.col("person_records") > 0).count()
        timings["resolution_s"] = time.perf_counter() - t
        timings["total_s"] = time.perf_counter() - start
        # the run key is no longer needed once the variants are checkpointed
        run_key.destroy()
        self._broadcasts.remove(run_key)

        from pdp.pseudonym.linkage_model import prediction_rules

        parameters_out: dict[str, Any] = {
            "engine": "spark",
            "options": options_description(options),
            "trained": False,
            "model_version": model_version,
            "model": parameters_used,
            "blocking_rules": prediction_rules() if options.probabilistic else [],
            "counts": {
                "records": n_records,
                "variants": n_variants,
                "deterministic_groups": n_groups,
                "pairs_scored": pairs_scored,
                "merges": merged,
                "merges_refused_own_nir": refused,
                "ambiguous_groups": ambiguous,
                "disambiguated_pseudonyms": disambiguated,
                "persons": n_persons,
            },
        }
        logger.info(
            "linkage on Spark: %d records, %d variants, %d deterministic groups, %d merges (%d refused), %d pseudonyms",
            n_records, n_variants, n_groups, merged, refused, n_persons,
        )  # fmt: skip
        return SparkLinkage(
            assignments=assignments,
            superseded=superseded,
            made=made,
            variants=variants,
            overrides=overrides,
            parameters=parameters_out,
            timings=timings,
        )


def _connected_components(edges: DataFrame) -> DataFrame:
    """(``node``, ``component``): each node of the graph ``edges(a, b)`` labelled with the smallest
    node of its component, by min-label propagation (one join per iteration, local checkpoints so
    the plan does not grow; at most :data:`_MAX_ITERATIONS`, i.e. the component's diameter)."""
    from pyspark.sql import functions as F

    both = edges.select("a", "b").unionAll(edges.select(F.col("b").alias("a"), F.col("a").alias("b"))).localCheckpoint()
    labels = both.select(F.col("a").alias("node")).distinct().withColumn("component", F.col("node")).localCheckpoint()
    for _ in range(_MAX_ITERATIONS):
        offered = both.join(labels, both.a == labels.node).select(F.col("b").alias("node"), "component")
        updated = (
            labels.unionAll(offered).groupBy("node").agg(F.min("component").alias("component")).localCheckpoint()
        )
        changed = updated.join(
            labels.withColumnRenamed("component", "before"), "node"
        ).where(F.col("component") != F.col("before")).count()
        labels = updated
        if changed == 0:
            return labels
    raise RuntimeError(f"linkage on Spark: connected components did not converge in {_MAX_ITERATIONS} iterations")
