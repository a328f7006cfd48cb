"""Duplicate detection within a batch at 8 bytes per record.

Why not a Python set of record ids: a batch can hold tens of millions of records (a year of
pharmacy deliveries for a territory), and a set of strings costs ~100 bytes each. A record is
reduced to a 64-bit fingerprint (BLAKE2b of its sender id and raw bytes, or of its bytes when it
has no id) kept in an open-addressing table of unsigned 64-bit integers (``array('Q')``, at most
half full): 16-32 bytes per record, no per-entry object. Two different records share a
fingerprint with probability ~n²/2^65 (3·10⁻⁴ for 10⁸ records); the cost of such a collision
is one good record quarantined as DUPLICATE_RECORD, visible and recoverable, never lost.

Unkeyed, a fingerprint is kept in memory during one batch only and never stored: a hash of a
record's bytes lets whoever guesses them confirm a record (a person's NIR, a drug, a date). A
batch that stages its duplicate check on disk (:mod:`pdp.ingest.staged_duplicates`) keys its
sets (``FingerprintSet(key=...)``: keyed BLAKE2b, the key derived for the batch from the key
store), so what it stages confirms nothing without the key. The edge's keyed record hash is
what goes to the lake's ops tables.

Example::

    >>> seen = FingerprintSet()
    >>> seen.add(fingerprint("S1-1-2", b"...")), seen.add(fingerprint("S1-1-2", b"..."))
    (True, False)
    >>> seen.add(fingerprint("S1-1-2", b"corrected")), len(seen)
    (True, 2)
    >>> keyed = FingerprintSet(key=bytes(32))
    >>> keyed.add_record("S1-1-2", b"..."), keyed.add_record("S1-1-2", b"...")
    (True, False)
"""

from __future__ import annotations

from array import array
from hashlib import blake2b

__all__ = ["FingerprintSet", "fingerprint"]


def fingerprint(record_id: str | None, raw: bytes, key: bytes | None = None) -> int:
    """64-bit fingerprint of a record: its sender id and its bytes, or its bytes alone (keyed BLAKE2b
    under `key`, up to 64 bytes, when given).

    The id with the bytes, not the id alone: the same sender record sent again *with other
    bytes* is a new version (a correction, a cumulative resend), which replaces the earlier one
    (:mod:`pdp.ingest.versions`), not a duplicate.
    """
    data = b"id\x00" + record_id.encode("utf-8", "surrogatepass") + b"\x00" + raw if record_id else b"raw\x00" + raw
    digest = blake2b(data, digest_size=8) if key is None else blake2b(data, digest_size=8, key=key)
    return int.from_bytes(digest.digest(), "little") or 1  # 0 marks an empty slot


class FingerprintSet:
    """A set of non-zero 64-bit integers; linear probing, doubled at half load.

    `key`: the key its records are fingerprinted under (:meth:`add_record`); None: unkeyed.
    """

    __slots__ = ("_key", "_mask", "_size", "_table")

    def __init__(self, capacity: int = 1024, key: bytes | None = None) -> None:
        if key is not None and not key:
            raise ValueError("a fingerprint key must not be empty (None: unkeyed)")
        size = 1 << max(4, (capacity * 2 - 1).bit_length())
        self._table = array("Q", [0]) * size  # no temporary bytes object
        self._mask = size - 1
        self._size = 0
        self._key = key

    def __repr__(self) -> str:
        return f"FingerprintSet({self._size} fingerprints, {'keyed' if self._key else 'unkeyed'})"

    def add_record(self, record_id: str | None, raw: bytes) -> bool:
        """Insert a record's fingerprint (under the set's key); False when it was already there."""
        return self.add(fingerprint(record_id, raw, self._key))

    def __len__(self) -> int:
        return self._size

    def __contains__(self, value: object) -> bool:
        if not isinstance(value, int) or value == 0:
            return False
        table, mask = self._table, self._mask
        slot = value & mask
        while True:
            current = table[slot]
            if current == 0:
                return False
            if current == value:
                return True
            slot = (slot + 1) & mask

    def values(self) -> array:
        """The fingerprints held, packed (8 bytes each): what a worker process hands back."""
        return array("Q", (value for value in self._table if value))

    def add(self, value: int) -> bool:
        """Insert `value`; False when it was already there."""
        table, mask = self._table, self._mask
        slot = value & mask
        while True:
            current = table[slot]
            if current == 0:
                table[slot] = value
                self._size += 1
                if self._size * 2 > mask:
                    self._grow()
                return True
            if current == value:
                return False
            slot = (slot + 1) & mask

    def _grow(self) -> None:
        old = self._table
        self._table = array("Q", [0]) * (2 * len(old))
        self._mask = len(self._table) - 1
        table, mask = self._table, self._mask
        for value in old:
            if value:
                slot = value & mask
                while table[slot]:
                    slot = (slot + 1) & mask
                table[slot] = value
