"""Parse and edge as Spark tasks: the batch's parse+edge stage on the executors of a cluster.

Why: :mod:`pdp.ingest.fanout` runs one file per worker process, all on the driver's machine,
so the edge (the platform's most CPU-hungry Python: FHIR validation, HL7, keyed hashing) can
never use more cores than that machine has. Here each file is one Spark task of the ingest's
own session: on a cluster (``PDP_SPARK_MASTER=spark://...``) the files are parsed, validated,
normalised and pseudonymised on every executor; in local mode on the local cores. The task
runs the very :class:`~pdp.ingest.fanout.FileRunner` a worker process runs (one definition of
the per-file work) and the driver folds the results in file order through the same
reconciliation (:func:`pdp.ingest.fanout.run_files`): same rows, counts and vault records as
the processes (tested in ``tests/ingest/test_ingest_parallel.py``).

How keys reach the executors — never in the task closure, a plan or a log:

- the closure carries the batch's :class:`~pdp.ingest.fanout.BatchContext` with every secret
  setting withheld (:data:`SECRET_SETTINGS`: the master key value, the HSM PIN value, a
  database URL holding a password). The executor opens the key store itself, through the same
  key store / KMS interface as any pdp process (:meth:`KeyStore.from_settings`): from the
  master key *file* or the PKCS#11 token the settings name, or, for a withheld value, from its
  own environment (``PDP_MASTER_KEY``, ``PDP_PKCS11_PIN``, ``PDP_DB_URL``), as a deployment gives
  a secret to each node. An executor without it fails the batch with one line naming the
  variable, never with its value.
- the task's result holds the file's identities (vault records and canonical identities, for
  linkage): it travels back through Spark's result path (the JVM's block manager, which may
  spill to disk), so it is sealed first to a public key made for the batch
  (:func:`pdp.pseudonym.sealing.seal`, X25519 + AES-256-GCM); only the driver, which holds the
  private key for the duration of the stage, opens it. The closure holds the public key only.
- an exception on an executor is caught in the task: its text may quote a value of the file,
  so only the file's relative path and the exception's type come back
  (:class:`~pdp.ingest.fanout.ParseWorkerError`), and nothing is printed on the executor.

Where files are read and staged: a task reads its input file by the path the driver discovered
and writes its parts under ``context.staging`` (an absolute path), read back by the batch's
bronze and quarantine MERGEs. On one machine (local mode, the local standalone cluster of
``infra/spark``) both are the driver's disk; across machines both must be directories every
node mounts (see ``docs/deployment.md``).

Cost on one machine (``pdp bench edge --persons 2000``: the stage on local[2] against 2 worker
processes, same counts): 51.8 s against 50.6 s (ratio 1.03, load average 22) — Spark tasks cost
what the processes cost where neither can win; only they can use a cluster's executors.

A large file of a format that splits is several tasks, one per byte range
(:mod:`pdp.ingest.split`, ``PDP_EDGE_SPLIT_BYTES``): the tasks given here are those parts, and the
driver folds them back per file (:func:`pdp.ingest.fanout.run_files`).

On Spark tasks the batch stages its identities (``PDP_EDGE_IDENTITIES=auto``): each task seals
its file's identities into a part beside its rows, the executors fold them per person, and the
vault records reach the vault streamed in chunks (:mod:`pdp.ingest.identity_stage`); what comes
back to the driver is the counts. A batch linked on Spark is linked from those parts too
(:mod:`pdp.ingest.linking`); the vault is still written by the driver alone, a chunk at a time.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from dataclasses import replace
from importlib import import_module
from typing import TYPE_CHECKING

from pdp.pseudonym.executor_keys import SECRET_SETTINGS, ExecutorSecretMissing, executor_settings, shipped_settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from pdp.ingest.fanout import BatchContext, FileResult, FileTask

__all__ = ["SECRET_SETTINGS", "ExecutorSecretMissing", "executor_settings", "run_on_spark", "shipped_settings"]

_FAILED = b""  # the sealed-box slot of a task that failed: its message travels instead


def run_on_spark(spark: SparkSession, tasks: list[FileTask], context: BatchContext) -> Iterator[FileResult]:
    """Every task's :class:`FileResult`, each file one Spark task, in task order (sealed in transit)."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    from pdp.ingest.fanout import ParseWorkerError, longest_first, parser_modules
    from pdp.pseudonym.sealing import Opener

    if not tasks:
        return
    private = X25519PrivateKey.generate()
    public = private.public_key().public_bytes_raw()
    settings, withheld = shipped_settings(context.settings)
    shipped = replace(context, settings=settings)
    modules = tuple(sorted(parser_modules(tasks, context.registry)))
    ordered = longest_first(tasks, context)  # one partition each, scheduled in this order
    rdd = spark.sparkContext.parallelize(ordered, numSlices=len(ordered))
    job = rdd.mapPartitions(lambda part: _run_tasks(part, shipped, withheld, modules, public))
    boxes = dict((key, (enc, box, error)) for key, enc, box, error in job.collect())
    opener = Opener(private.private_bytes_raw())
    del private
    for task in tasks:
        enc, box, error = boxes.pop(task.key)
        if error:
            raise ParseWorkerError(error)
        yield pickle.loads(opener.open(enc, box, aad=_aad(context.batch_id, task.key)))  # our own sealed bytes


def _aad(batch_id: str, key: tuple[int, int]) -> bytes:
    """What a sealed result is bound to: the batch, the file and the part (a box cannot stand for another)."""
    index, part = key
    return f"pdp-edge-task\x1f{batch_id}\x1f{index}\x1f{part}".encode()


def _run_tasks(
    tasks: Iterator[FileTask], context: BatchContext, withheld: tuple[str, ...], modules: tuple[str, ...],
    public: bytes,
) -> Iterator[tuple[tuple[int, int], bytes, bytes, str]]:
    """On an executor: (task key, enc, sealed result, error) per task; a failure names the file and
    the exception's type only. The runner (and its keys) lives for this partition only."""
    from pdp.ingest.fanout import FileRunner
    from pdp.pseudonym.sealing import seal

    runner: FileRunner | None = None
    for task in tasks:
        try:
            if runner is None:
                for module in modules:  # custom parsers register on import
                    import_module(module)
                runner = FileRunner(replace(context, settings=executor_settings(context.settings, withheld)))
            result = runner.run(task)
            enc, box = seal(public, pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL),
                            aad=_aad(context.batch_id, task.key))
            yield task.key, enc, box, ""
        except ExecutorSecretMissing as exc:
            yield task.key, _FAILED, _FAILED, str(exc)
        except Exception as exc:  # the text may hold a value of the file: only its type leaves
            yield task.key, _FAILED, _FAILED, f"parse task failed on {task.label} ({type(exc).__name__})"
