"""Parse and edge, file by file, in worker processes: the batch's parse+edge stage on every core.

Why: parsing (FHIR validation with fhir.resources, HL7) and the edge are pure Python, one core
each; a territory's batch is hundreds of files. Each file is a task: a worker parses it, passes
every record through its own :class:`~pdp.ingest.edge.Edge` (keys loaded from the settings by
the worker itself, never sent), writes the file's staging parts, and hands back only what the
parent must fold in file order: counts, the file's duplicate fingerprints and the edge state
(identities for the vault and linkage, in memory, through the pipe — or, in a batch that stages
them, :attr:`BatchContext.stage_identities`, sealed into a part of their own beside the rows and
folded on Spark: :mod:`pdp.ingest.identity_stage`).

Exactly the sequential result, by construction:

- duplicates: a worker detects duplicates within its file; the parent admits the files'
  fingerprints in file order (:meth:`~pdp.ingest.parse.Duplicates.admit`) and re-parses
  in-process, with the batch's set, any file holding a record already seen in an earlier file
  of its source (rare: a resent record), replacing that file's parts;
- vault records, canonical identities, postcodes and stats fold associatively
  (:meth:`~pdp.ingest.edge.Edge.absorb`), in file order;
- rows are keyed by content (keyed record hash), so the parts' order does not matter;
- a large file of a format that can be cut (:mod:`pdp.ingest.split`, ``PDP_EDGE_SPLIT_BYTES``)
  runs as several tasks, one per byte range, and its parts fold back here in order into the
  file's one result (:class:`_FileFold`): the same counts, rows, duplicates and stop as the
  file read whole.

Processes are started with ``spawn``: forking a parent whose Spark (JVM gateway) and DuckDB
threads are running can deadlock the child. Start-up costs ~2 s per worker (imports), so small
batches (few files or few bytes) run in-process through the same :class:`FileRunner` — and so
does the pipeline's small-batch mode, which keeps each file's rows in memory instead of writing
parts (:class:`~pdp.ingest.staging.MemoryStage`).
"""

from __future__ import annotations

import os
import threading
import time
from array import array
from collections.abc import Generator, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from datetime import date, datetime
from importlib import import_module
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING

from pdp.ingest.dedupe import FingerprintSet
from pdp.ingest.edge import BronzeRow, Edge, EdgeState, QuarantineRow
from pdp.ingest.identity_stage import IdentityCipher, order_key, write_part
from pdp.ingest.model import ParseOutcome, Quarantined
from pdp.ingest.parse import Counts, Duplicates, Tally, parse_file, stopped_after
from pdp.ingest.parsers.base import get_parser
from pdp.ingest.reasons import ReasonCode
from pdp.ingest.split import FilePart, plan_parts
from pdp.ingest.staged_duplicates import EarlierFingerprints, scope_of, write_fingerprints
from pdp.ingest.staging import BRONZE_SCHEMA, QUARANTINE_SCHEMA, MemoryStage, Stage, bronze_dict, quarantine_dict

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from pdp.config import Settings
    from pdp.ingest.registry import Registry
    from pdp.pseudonym.keys import KeyStore

__all__ = [
    "BatchContext", "FileResult", "FileRunner", "FileTask", "ParseWorkerError", "auto_workers", "parser_modules",
    "run_files", "spark_engine", "split_tasks",
]

POOL_MIN_BYTES = 8 << 20  # below this, worker start-up costs more than it saves


class ParseWorkerError(RuntimeError):
    """A worker process failed on a file; the message names the file and the exception type only."""


@dataclass(frozen=True, slots=True)
class FileTask:
    index: int  # position in the discovery's order: what results are folded in
    source: str
    path: Path
    rel: str
    size: int  # bytes to read: the file's, or the part's range
    part: FilePart | None = None  # one part of a split file (pdp.ingest.split); None: the whole file

    @property
    def key(self) -> tuple[int, int]:
        """Unique in the batch: (file index, part number)."""
        return self.index, self.part.number if self.part is not None else 0

    @property
    def label(self) -> str:
        """How messages name the task: the file, and the part when split (never a value of the file)."""
        return self.rel if self.part is None else f"{self.rel} (part {self.part.number + 1}/{self.part.count})"


@dataclass(frozen=True, slots=True)
class BatchContext:
    """What a worker needs to process files of the batch (settings: the worker opens the key store)."""

    settings: Settings
    registry: Registry
    root: Path
    staging: Path
    batch_id: str
    started: datetime
    today: date | None
    in_memory: bool = False  # rows kept in hand (small-batch mode, in-process), no staging parts
    stage_identities: bool = False  # identities staged sealed (pdp.ingest.identity_stage), not handed back
    identity_key_version: int | None = None  # the `record` key version they are staged under, chosen once a batch


@dataclass(slots=True)
class FileResult:
    index: int
    counts: Counts  # parse.Tally's rule over the edge's rows
    state: EdgeState
    parts: tuple[Path, ...]  # staging parts written
    fingerprints: array | None = None  # parsed apart, duplicates checked across files: to admit in order (None
    # when the batch stages them: pdp.ingest.staged_duplicates)
    cpu_seconds: float = 0.0  # CPU time of the process on this file (a noisy shared machine skews wall time)
    bronze_rows: list[dict] | None = None  # in memory (BatchContext.in_memory): the rows instead of parts
    quarantine_rows: list[dict] | None = None
    tally: Tally | None = None  # the raw tally behind `counts`: a split file's parts add up through it
    tasks: int = 1  # tasks the file ran as (its parts when split)


class FileRunner:
    """Parse one file (or one part of a split file) and pass it through the edge into its staging parts
    (in a worker, a Spark task or in-process)."""

    def __init__(self, context: BatchContext, store: KeyStore | None = None) -> None:
        """`store`: the caller's key store, in-process (a worker opens its own from the settings)."""
        from pdp.ingest.known import KnownPersons, edge_vault
        from pdp.pseudonym.keys import KeyStore

        self._context = context
        store = store or KeyStore.from_settings(context.settings)
        self._edge = Edge(store, today=context.today)
        self._cipher = (IdentityCipher(store, context.batch_id, context.identity_key_version)
                        if context.stage_identities else None)
        # a batch that stages its identities stages its duplicate check too, under a key of the batch
        self.fingerprint_key = self._cipher.fingerprint_key if self._cipher is not None else None
        # the vault's linkage view for parsers that de-identify text; opened on the first report only
        self._known = KnownPersons(self._edge.pseudonym_of, lambda: edge_vault(context.settings, store))

    def run(self, task: FileTask, duplicates: Duplicates | None = None) -> FileResult:
        """`duplicates`: the batch's sets when files run in order here; None when parsed apart.

        An exception of the parser (caught by :func:`parse_file`) or of the edge on a record (caught
        here) stops this file only: the rows before it are staged, a PARSER_ERROR row at position 0
        says where, and the counts mark the file partial (:class:`~pdp.ingest.parse.Counts`). Any
        other failure (staging: a full disk) removes the file's parts and fails the batch.
        """
        ctx = self._context
        cpu = time.process_time()
        spec = ctx.registry.specs[task.source]
        part_of = task.rel if task.part is not None else None  # a split file: per_file spans its parts
        scope = scope_of(spec, task.index, part_of is not None)  # None: duplicates within the task only
        apart = duplicates is None and scope is not None
        seen: FingerprintSet | None = FingerprintSet(key=self.fingerprint_key) if apart else (
            duplicates.seen(spec, part_of) if duplicates else None)
        part = _part_name(task)
        staged_fingerprints = apart and ctx.stage_identities  # found across files on Spark, not by the driver
        bronze: Stage | MemoryStage = MemoryStage() if ctx.in_memory else Stage(ctx.staging / "bronze", BRONZE_SCHEMA,
                                                                                 part=part)
        quarantine: Stage | MemoryStage = MemoryStage() if ctx.in_memory else Stage(
            ctx.staging / "quarantine", QUARANTINE_SCHEMA, part=part)
        tally = Tally()
        tally.start(task.source, task.rel)
        outcomes = parse_file(spec, task.path, ctx.root, today=ctx.today, seen=seen, known=self._known,
                              skipped=tally.skipped(task.source, task.rel), part=task.part)
        try:
            for row in self._rows(outcomes, task):
                if isinstance(row, BronzeRow):
                    bronze.add(bronze_dict(row, ctx.batch_id, ctx.started))
                    tally.count(row.source, row.file, quarantined=False, position=row.record_position)
                else:
                    quarantine.add(quarantine_dict(row, ctx.batch_id, ctx.started))
                    tally.count(row.source, row.file, quarantined=True, position=row.record_position,
                                reason=(row.reason_code, row.message))
            state = self._edge.detach()
            identities = None
            if self._cipher is not None:  # sealed beside the rows; the result carries the counts only
                identities = write_part(state.packs(), ctx.staging / "identities" / part, self._cipher,
                                        order=order_key(task.index, task.part.number if task.part else 0))
                state = state.without_identities()
            if staged_fingerprints and seen is not None and scope is not None:
                write_fingerprints(seen.values(), ctx.staging / "fingerprints" / part, scope, task.key)
            parts = tuple(p for p in (bronze.close(), quarantine.close(), identities) if p is not None)
        except BaseException:
            bronze.discard()
            quarantine.discard()
            (ctx.staging / "identities" / part).unlink(missing_ok=True)
            (ctx.staging / "fingerprints" / part).unlink(missing_ok=True)
            raise
        return FileResult(
            index=task.index,
            counts=tally.counts()[(task.source, task.rel)],
            state=state,
            parts=parts,
            fingerprints=seen.values() if apart and not staged_fingerprints and seen is not None else None,
            cpu_seconds=time.process_time() - cpu,
            bronze_rows=bronze.rows if isinstance(bronze, MemoryStage) else None,
            quarantine_rows=quarantine.rows if isinstance(quarantine, MemoryStage) else None,
            tally=tally,
        )


    def _rows(self, outcomes: Generator[ParseOutcome], task: FileTask) -> Iterator[BronzeRow | QuarantineRow]:
        """The edge's rows of the file; if the edge raises on a record, a PARSER_ERROR stop row ends them.

        The exception's text may quote a value of the record: only its type is kept.
        """
        rows = self._edge.process(outcomes)
        last = task.part.before if task.part is not None else 0
        while True:
            try:
                row = next(rows)
            except StopIteration:
                return
            except Exception as exc:  # any bug of the edge on one record stops this file only
                outcomes.close()  # the parser's generator: closes the file
                stop = Quarantined(source=task.source, file=task.rel, position=0, reason_code=ReasonCode.PARSER_ERROR,
                                   message=f"edge raised {type(exc).__name__} {stopped_after(last)}")
                yield from self._edge.process([stop])
                return
            last = max(last, row.record_position)
            yield row


def spark_engine(settings: Settings, tasks: list[FileTask], registry: Registry) -> bool:
    """Whether the batch's files run as Spark tasks (:mod:`pdp.ingest.spark_tasks`) rather than processes.

    ``PDP_EDGE_ENGINE``: ``spark`` or ``processes``; ``auto`` picks Spark when the master is a
    cluster (not ``local[...]``). Never for a parser defined in ``__main__`` (an executor could
    not import it) nor for an empty batch.
    """
    engine = settings.edge_engine
    if engine == "auto":
        engine = "processes" if settings.spark_master.startswith("local") else "spark"
    return engine == "spark" and bool(tasks) and "__main__" not in parser_modules(tasks, registry)


def auto_workers(tasks: list[FileTask], registry: Registry, requested: int | None, split_bytes: int = 0) -> int:
    """Worker processes for the batch: `requested` if given, else one per core when it pays.

    Returns 0 (in-process) when a spec's parser lives in ``__main__`` (a worker could not
    import it), when there is a single task (a file, or one too small to split at `split_bytes`),
    or, unless requested, under :data:`POOL_MIN_BYTES`.
    """
    if requested is not None and requested <= 1:
        return 0
    units = sum(_parts_at_most(t, registry, split_bytes) for t in tasks)
    if units < 2 or any(m == "__main__" for m in parser_modules(tasks, registry)):
        return 0
    if requested is None:
        if sum(t.size for t in tasks) < POOL_MIN_BYTES:
            return 0
        requested = os.cpu_count() or 1
    workers = min(requested, units)
    return workers if workers > 1 else 0


def _parts_at_most(task: FileTask, registry: Registry, split_bytes: int) -> int:
    """An upper bound of the tasks a file runs as (without reading it): 1 unless its format splits."""
    spec = registry.specs[task.source]
    if split_bytes <= 0 or spec.format is None or get_parser(spec.format).split is None:
        return 1
    return max(1, -(-task.size // split_bytes))


def file_tasks(root: Path, registry: Registry) -> list[FileTask]:
    """One task per file of `root` that the registry's sources parse, in discovery order (the
    benchmarks' batch; `pdp ingest` builds its own beside its per-file report)."""
    from pdp.ingest.registry import discover

    return [FileTask(i, spec.name, path, path.relative_to(root).as_posix(), path.stat().st_size)
            for i, (spec, path) in enumerate(discover(root, registry).to_parse)]


def split_tasks(tasks: list[FileTask], context: BatchContext) -> list[FileTask]:
    """The tasks to run: each file, or each part of a file over ``PDP_EDGE_SPLIT_BYTES`` whose format
    splits (:func:`pdp.ingest.split.plan_parts`), in file then part order."""
    out: list[FileTask] = []
    target = context.settings.edge_split_bytes
    for task in tasks:
        parts = plan_parts(context.registry.specs[task.source], task.path, target) if task.size > target > 0 else ()
        out.extend(replace(task, size=p.end - p.start, part=p) for p in parts)
        if not parts:
            out.append(task)
    return out


def run_files(
    tasks: list[FileTask], context: BatchContext, *, workers: int, duplicates: Duplicates,
    store: KeyStore | None = None, spark: SparkSession | None = None, session: SparkSession | None = None,
) -> Iterator[tuple[FileTask, FileResult]]:
    """Every task's result, in task (file) order, duplicates reconciled across files.

    In-process (no `spark` and `workers` ≤ 1, always when rows are kept in memory) the files run
    whole through one :class:`FileRunner` on `store`, the caller's key store. `spark`: each task
    is a task of this session (:mod:`pdp.ingest.spark_tasks`, the executors of a cluster) instead
    of `workers` processes on this machine. Apart, a large file of a format that splits runs as
    one task per part (:func:`split_tasks`) and is yielded once, its parts folded in order
    (:class:`_FileFold`); a part is re-run here, in order, when one pass would have read it
    otherwise: a record already seen (a duplicate), a stop before any row of its own (where the
    stop row says it stopped). A file none of whose parts yielded a row is re-read whole here (its
    verdict, e.g. no record, is the file's).

    Which records were already seen: in a batch that stages its identities
    (``context.stage_identities``) the tasks stage their fingerprints and one job of `session`
    (default `spark`) finds those shared with earlier tasks, once every task has run
    (:mod:`pdp.ingest.staged_duplicates`); otherwise the tasks hand them back and `duplicates`
    admits them in file order (:meth:`Duplicates.admit`), in this process's memory.
    """
    local: FileRunner | None = None
    if (spark is None and workers <= 1) or context.in_memory:
        local = FileRunner(context, store)
        for task in tasks:
            yield task, local.run(task, duplicates)
        return
    units = split_tasks(tasks, context)  # a large file of a format that splits: one task per part
    files = {task.index: task for task in tasks}
    fold: _FileFold | None = None
    dropped: set[tuple[int, int]] = set()  # parts one pass never reads (their file stopped earlier)
    with _parsed_apart(units, context, workers, spark) as results, ExitStack() as stack:
        earlier: EarlierFingerprints | None = None
        if context.stage_identities:  # every task runs, its fingerprints staged, before any is folded
            results = iter(list(results))
            earlier = stack.enter_context(_earlier_fingerprints(context, session or spark))
            local = FileRunner(context, store)
        for unit, result in zip(units, results, strict=True):
            spec = context.registry.specs[unit.source]
            part_of = unit.rel if unit.part is not None else None
            if fold is not None and fold.stopped:  # the file stopped in an earlier part: never read in one pass
                _discard(result)
                dropped.add(unit.key)
            else:
                if unit.part is not None and unit.part.first:
                    fold = _FileFold(unit)
                # a later part that stopped before any row of its own: its stop row must say after which
                # record of the file it stopped (rare: re-run, told where)
                unplaced = fold is not None and unit.part is not None and fold.stops_unplaced(result)
                in_order = duplicates  # what a re-run of this unit, in order, is checked against
                if earlier is not None:
                    assert local is not None
                    met = earlier.of(unit.key, dropped)
                    in_order = Duplicates.holding(spec, met, part_of, key=local.fingerprint_key)
                    redo = bool(met) or unplaced
                else:  # a re-run meets the batch's set itself: its fingerprints are not admitted first
                    redo = unplaced or (result.fingerprints is not None
                                        and not duplicates.admit(spec, result.fingerprints, part_of))
                if redo:  # a record of this file (part) was in an earlier one, or its stop is unplaced: redo in order
                    stopped = result.counts.stopped is not None
                    _discard(result)
                    local = local or FileRunner(context, store)
                    again = unit if unit.part is None or fold is None else replace(
                        unit, part=replace(unit.part, before=fold.last))
                    result = local.run(again, in_order)
                    if earlier is not None and stopped:
                        # one pass may read on where the task stopped (the record its edge raised on was a
                        # duplicate there): the later files must meet what it read
                        seen = in_order.seen(spec, part_of)
                        scope = scope_of(spec, unit.index, unit.part is not None)
                        if seen is not None and scope is not None:
                            write_fingerprints(seen.values(), context.staging / "fingerprints" / _part_name(unit),
                                               scope, unit.key)
                            earlier.close()
                            earlier = stack.enter_context(_earlier_fingerprints(context, session or spark))
                if unit.part is None:
                    yield unit, result
                    continue
                assert fold is not None, "a file's parts run in order"
                fold.add(result)
            if unit.part is not None and unit.part.last:
                assert fold is not None
                whole = files[unit.index]
                if fold.empty:  # no part yielded anything: the file's own verdict (no record) is the whole file's
                    _discard(fold.result())
                    local = local or FileRunner(context, store)
                    fresh = duplicates if earlier is None else Duplicates(local.fingerprint_key)
                    result = local.run(whole, fresh)
                    if earlier is not None and fresh.seen(context.registry.specs[whole.source], None):
                        raise ParseWorkerError(f"{whole.label}: the whole file holds records none of its parts read")
                    yield whole, result
                else:
                    yield whole, fold.result()
                fold = None


def _earlier_fingerprints(context: BatchContext, session: SparkSession | None) -> EarlierFingerprints:
    """The batch's duplicates across tasks, found on Spark once its tasks have staged their fingerprints."""
    if session is None:
        raise ValueError("a batch that stages its identities finds its duplicates on Spark: give run_files a session")
    return EarlierFingerprints(session, context.staging / "fingerprints")


def longest_first(tasks: list[FileTask], context: BatchContext) -> list[FileTask]:
    """The tasks in the order to start them: the most work first, so that no long task starts last
    and leaves the other cores idle at the end of the stage (ties: task order).

    A task's work is the bytes it reads: its file or part, and for a source read through an index
    (``companions``: the free-text reports, de-identified and read for facts, the costliest
    records of a territory) the documents beside it. Until 2026-12-06 the index counted its own
    bytes only and started last: in `pdp bench ingest --persons 100000`'s parse-only reference,
    which ran the same order, it ran alone on one core for minutes after every other file was done.
    """
    extra: dict[str, int] = {}
    for source in {t.source for t in tasks}:
        globs = context.registry.specs[source].companions
        extra[source] = sum(p.stat().st_size for g in globs for p in context.root.glob(g) if p.is_file())
    return sorted(tasks, key=lambda t: (-(t.size + (extra[t.source] if t.part is None else 0)), t.key))


def _part_name(task: FileTask) -> str:
    """The name of a task's staged parts (one per kind of row)."""
    return f"part-{task.index:06d}.parquet" if task.part is None else \
        f"part-{task.index:06d}-{task.part.number:05d}.parquet"


def _discard(result: FileResult) -> None:
    for part in result.parts:
        part.unlink(missing_ok=True)


class _FileFold:
    """A split file's parts folded in order into the file's one :class:`FileResult`.

    Everything adds up as one pass would have made it: the tallies (:meth:`Tally.extend`), the
    edge states (:meth:`EdgeState.absorb`, in order), the staged parts and rows. A part that
    stopped (a parser or the edge raised) ends the file: the caller drops the later parts.
    """

    def __init__(self, first: FileTask) -> None:
        self._task = first
        self._tally = Tally()
        self._tally.start(first.source, first.rel)
        self._state = EdgeState()
        self._parts: list[Path] = []
        self._cpu = 0.0
        self._bronze: list[dict] | None = None
        self._quarantine: list[dict] | None = None
        self._tasks = 0

    def add(self, result: FileResult) -> None:
        assert result.tally is not None, "a part's result carries its tally"
        self._tally.extend(result.tally)
        self._state.absorb(result.state)
        self._parts.extend(result.parts)
        self._cpu += result.cpu_seconds
        self._tasks += 1
        if result.bronze_rows is not None:
            self._bronze = [*(self._bronze or []), *result.bronze_rows]
        if result.quarantine_rows is not None:
            self._quarantine = [*(self._quarantine or []), *result.quarantine_rows]

    @property
    def stopped(self) -> bool:
        return self._tally.stopped(self._task.source, self._task.rel)

    @property
    def empty(self) -> bool:
        return self._tally.empty(self._task.source, self._task.rel)

    @property
    def last(self) -> int:
        return self._tally.last(self._task.source, self._task.rel)

    def stops_unplaced(self, result: FileResult) -> bool:
        """A later part that stopped before any row of its own: its stop row said "after record 0"
        where one pass says after the earlier parts' last record (rare: re-run it, told where)."""
        tally, task = result.tally, self._task
        assert tally is not None
        return self.last > 0 and tally.stopped(task.source, task.rel) and tally.last(task.source, task.rel) == 0

    def result(self) -> FileResult:
        task = self._task
        return FileResult(index=task.index, counts=self._tally.counts()[(task.source, task.rel)], state=self._state,
                          parts=tuple(self._parts), cpu_seconds=self._cpu, bronze_rows=self._bronze,
                          quarantine_rows=self._quarantine, tally=self._tally, tasks=self._tasks)


@contextmanager
def _parsed_apart(
    tasks: list[FileTask], context: BatchContext, workers: int, spark: SparkSession | None
) -> Iterator[Iterator[FileResult]]:
    """The tasks' results in task order, each file parsed apart (Spark tasks or worker processes)."""
    if spark is not None:
        from pdp.ingest.spark_tasks import run_on_spark

        yield run_on_spark(spark, tasks, context)
        return
    modules = tuple(sorted(parser_modules(tasks, context.registry)))
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=get_context("spawn"),
        initializer=_init,
        initargs=(context, modules, os.getpid()),
    )
    try:
        futures: dict[tuple[int, int], Future[FileResult]] = {}
        for task in longest_first(tasks, context):
            futures[task.key] = pool.submit(_run, task)
        yield (futures.pop(task.key).result() for task in tasks)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def parser_modules(tasks: list[FileTask], registry: Registry) -> set[str]:
    formats = {registry.specs[t.source].format for t in tasks}
    return {get_parser(f).func.__module__ for f in formats if f is not None}


_RUNNER: FileRunner | None = None


def _init(context: BatchContext, modules: tuple[str, ...], parent: int) -> None:
    """Worker start: import the batch's parsers (custom ones register on import), open the keys."""
    global _RUNNER
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    for module in modules:
        import_module(module)
    _RUNNER = FileRunner(context)


def _exit_with_parent(parent: int) -> None:
    """A killed ingest (SIGKILL: no clean-up runs) must not leave workers parsing for nobody."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def _run(task: FileTask) -> FileResult:
    assert _RUNNER is not None, "worker not initialised"
    try:
        return _RUNNER.run(task)
    except Exception as exc:  # the exception's text may hold a value of the file: not sent back
        raise ParseWorkerError(f"parse worker failed on {task.label} ({type(exc).__name__})") from None
