"""Keyed pseudonymisation inside Spark: vectorised over Arrow batches, key kept out of plans.

Why a Spark path: national-scale extracts (millions of canonical identities) are pseudonymised
where they are processed, in parallel on every executor, instead of funnelling through one
Python process.

Why a broadcast variable for the key: a Python UDF's closure is pickled into the query plan
(the ``PythonUDF`` command bytes); a key captured in a closure would sit in every plan, every
plan dump and every event log. A broadcast variable pickles to its id only: the plan, the
logs, the Spark properties shown by the UI and the exceptions carry no key bytes (tested in
``tests/pseudonym/test_pseudonym_spark.py``). The broadcast is destroyed when the
:class:`SparkPseudonymiser` context exits, so the key does not outlive the job in executor
memory.

The HMAC input is the canonical identity's bytes (:attr:`CanonicalIdentity.canonical_bytes`),
computed by the edge: the same input gives the same pseudonym as
:class:`pdp.pseudonym.pseudonymise.Pseudonymiser` (tested).

Example::

    with SparkPseudonymiser(spark, KeyStore.from_settings()) as p:
        p.apply(df, canonical_col="canonical").write.format("delta").save(path)
"""

from __future__ import annotations

import binascii
from collections.abc import Iterator
from types import TracebackType
from typing import TYPE_CHECKING

from pdp.pseudonym.keys import KeyStore, KeyStoreError
from pdp.pseudonym.pseudonymise import PSEUDONYM_LENGTH

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark import Broadcast
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["SparkPseudonymiser"]

_URLSAFE = bytes.maketrans(b"+/", b"-_")


class MissingCanonicalIdentity(ValueError):
    """A row reached the Spark path without canonical identity bytes (an edge bug, not user data)."""


def encode_pseudonyms(digests: list[bytes], version: int) -> pa.StringArray:
    """Arrow strings ``v<version>:<43 base64url chars>`` for 32-byte digests, without a Python
    object per record: one base64 call over all digests, each padded to 33 bytes (the first 43
    characters of the 44 that 33 bytes encode to are those of the 32-byte digest), then a numpy
    reshape that puts the version prefix in front of each."""
    import numpy as np
    import pyarrow as pa

    prefix = np.frombuffer(f"v{version}:".encode("ascii"), dtype=np.uint8)
    width = len(prefix) + PSEUDONYM_LENGTH
    encoded = binascii.b2a_base64(b"\0".join(digests) + b"\0", newline=False) if digests else b""
    chars = np.frombuffer(encoded, dtype=np.uint8).reshape(-1, PSEUDONYM_LENGTH + 1)
    out = np.empty((len(digests), width), dtype=np.uint8)
    out[:, : len(prefix)] = prefix
    out[:, len(prefix) :] = chars[:, :PSEUDONYM_LENGTH]
    data = pa.py_buffer(out.tobytes().translate(_URLSAFE))
    offsets = pa.py_buffer(np.arange(0, (len(digests) + 1) * width, width, dtype=np.int32).tobytes())
    return pa.Array.from_buffers(pa.string(), len(digests), [None, offsets, data])


def _hmac_batches(
    batches: Iterator[pa.RecordBatch], key: Broadcast, version: int, canonical_col: str, out_col: str
) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: one pre-keyed HMAC per batch, one copy per record, vectorised encoding."""
    import pyarrow as pa
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives import hmac as crypto_hmac

    template = crypto_hmac.HMAC(key.value, hashes.SHA256())
    copy = template.copy
    for batch in batches:
        canonicals = batch.column(canonical_col)
        if canonicals.null_count:
            raise MissingCanonicalIdentity(f"{canonicals.null_count} row(s) without canonical identity bytes")
        digests = []
        append = digests.append
        for value in canonicals.to_pylist():
            mac = copy()
            mac.update(value)
            append(mac.finalize())
        keep = [name for name in batch.schema.names if name != canonical_col]
        arrays = [batch.column(name) for name in keep] + [encode_pseudonyms(digests, version)]
        yield pa.RecordBatch.from_arrays(arrays, names=[*keep, out_col])


class SparkPseudonymiser:
    """Pseudonymises a DataFrame column of canonical identity bytes, on the executors."""

    def __init__(self, spark: SparkSession, key_store: KeyStore, *, version: int | None = None) -> None:
        key = key_store.current("pseudonym") if version is None else key_store.get("pseudonym", version)
        if key.status == "retired":
            raise KeyStoreError(f"pseudonym key v{key.version} is retired: it makes no more pseudonyms")
        self._spark = spark
        self._version = key.version
        self._broadcast: Broadcast | None = spark.sparkContext.broadcast(key.material)

    def __repr__(self) -> str:
        return f"SparkPseudonymiser(version={self._version})"

    @property
    def version(self) -> int:
        return self._version

    def apply(self, df: DataFrame, *, canonical_col: str = "canonical", out_col: str = "pseudonym") -> DataFrame:
        """`df` with `canonical_col` (binary) replaced by `out_col` (the pseudonym string).

        The canonical bytes are identity data: they are dropped in the same step, so nothing
        downstream of this DataFrame can write them to the lake.
        """
        from pyspark.sql.types import BinaryType, StringType, StructField, StructType

        if self._broadcast is None:
            raise KeyStoreError("this SparkPseudonymiser is closed: its key was destroyed")
        field = df.schema[canonical_col]
        if not isinstance(field.dataType, BinaryType):
            raise TypeError(f"column {canonical_col!r} must be binary (canonical identity bytes)")
        fields = [f for f in df.schema.fields if f.name != canonical_col]
        schema = StructType([*fields, StructField(out_col, StringType(), nullable=False)])
        key, version = self._broadcast, self._version

        def hmac_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            return _hmac_batches(batches, key, version, canonical_col, out_col)

        return df.mapInArrow(hmac_batches, schema)

    def close(self) -> None:
        """Destroy the broadcast key on the driver and every executor."""
        if self._broadcast is not None:
            self._broadcast.destroy()
            self._broadcast = None

    def __enter__(self) -> SparkPseudonymiser:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
