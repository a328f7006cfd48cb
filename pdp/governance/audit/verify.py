"""Verifying the audit log: every entry, the chain, and every signed tree head against the tree.

What is checked, in one pass over the log in index order:

1. indices are 0, 1, 2, … with no gap (a removed entry, or one moved elsewhere);
2. each entry's stored JSON is readable, and its recomputed hash (RFC 9162 leaf hash of its
   canonical bytes) equals the stored ``entry_hash`` (an altered entry);
3. each ``prev_hash`` equals the previous entry's hash (an inserted, removed or reordered entry);
4. the head row (``audit_head``, moved forward by every append) counts exactly the entries
   found and names the last one's hash (a removed tail, or rows added behind the appender's back);
5. every signed tree head — those in ``audit_checkpoint`` and those a witness passes in —
   is signed by a trusted key, its size is not beyond the log (a truncated log), the
   recomputed root at its size equals the signed root (a history rewritten with every hash
   recomputed: only a head signed before the rewrite can see it), and the RFC 9162
   consistency proof from its size to the current size verifies against both roots.

The first failure stops the check and is reported as a bad index and a one-line reason. For
an entry check, the index is that entry's; for a head that no longer matches, it is the first
index no earlier matching head vouches for (the rewrite is somewhere from there to the
head's size).

Cost: one streamed read of the log, one SHA-256 per entry and per tree node; ~30 000
entries/s on the development machine (SQLite, 2 shared cores), memory ~100 bytes per entry
(the leaf hashes, kept for the consistency proofs).

Example::

    report = verify_log(engine, trusted_keys=AuditSigningKeys.from_settings().public_keys())
    if not report.ok:
        print(report.line())        # "audit log: bad entry 17: content does not match its hash (altered)"
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Connection, Engine, select

from pdp.governance.audit.checkpoint import SignedTreeHead
from pdp.governance.audit.entry import GENESIS_HASH
from pdp.governance.audit.merkle import EMPTY_ROOT, MerkleAccumulator, consistency_proof, verify_consistency
from pdp.governance.audit.store import iter_entries, row_to_entry
from pdp.governance.audit.tables import audit_checkpoint, audit_head

__all__ = ["ScannedLog", "VerificationReport", "scan_log", "stored_checkpoints", "verify_log"]


@dataclass(frozen=True, slots=True)
class VerificationReport:
    """The outcome of :func:`verify_log`."""

    ok: bool
    size: int
    root_hash: str
    checkpoints_checked: int
    first_bad_index: int | None = None
    reason: str = ""

    def line(self) -> str:
        """One line for a terminal or a log."""
        if self.ok:
            return (
                f"audit log verified: {self.size} entries, root {self.root_hash[:16]}…, "
                f"{self.checkpoints_checked} signed tree head(s) consistent"
            )
        return f"audit log: bad entry {self.first_bad_index}: {self.reason}"


@dataclass(slots=True)
class ScannedLog:
    """What one pass over the entries found: the verified prefix and the first failure, if any."""

    leaves: list[bytes]
    roots: dict[int, bytes]
    bad_index: int | None = None
    reason: str = ""

    @property
    def size(self) -> int:
        return len(self.leaves)


def scan_log(conn: Connection, *, root_sizes: Iterable[int] = ()) -> ScannedLog:
    """Recompute every entry hash and the chain; keep leaf hashes and the roots at ``root_sizes``."""
    wanted = set(root_sizes)
    acc = MerkleAccumulator()
    scanned = ScannedLog(leaves=[], roots={0: EMPTY_ROOT})
    prev = GENESIS_HASH
    for row in iter_entries(conn):
        expected = acc.size
        if int(row.idx) != expected:
            scanned.bad_index, scanned.reason = (
                expected,
                f"entry {expected} is missing (the next stored index is {int(row.idx)}): removed or moved",
            )
            return scanned
        try:
            entry = row_to_entry(row)
            computed = entry.entry_hash
        except (ValueError, TypeError):
            scanned.bad_index, scanned.reason = expected, "stored entry is unreadable (altered)"
            return scanned
        if entry.prev_hash != prev:
            scanned.bad_index, scanned.reason = (
                expected,
                "prev_hash is not the previous entry's hash (an entry inserted, removed or reordered)",
            )
            return scanned
        if computed != row.entry_hash:
            scanned.bad_index, scanned.reason = expected, "content does not match its hash (altered)"
            return scanned
        leaf = bytes.fromhex(computed)
        acc.append(leaf)
        scanned.leaves.append(leaf)
        prev = computed
        if acc.size in wanted:
            scanned.roots[acc.size] = acc.root()
    scanned.roots[acc.size] = acc.root()
    return scanned


def stored_checkpoints(conn: Connection) -> list[SignedTreeHead]:
    """The signed tree heads kept in ``audit_checkpoint``, oldest first."""
    rows = conn.execute(select(audit_checkpoint).order_by(audit_checkpoint.c.id)).mappings()
    return [
        SignedTreeHead(
            tree_size=int(r["tree_size"]),
            root_hash=r["root_hash"],
            timestamp=r["timestamp"],
            key_id=r["key_id"],
            public_key=r["public_key"],
            signature=r["signature"],
        )
        for r in rows
    ]


def verify_log(
    target: Engine | Connection,
    *,
    trusted_keys: Mapping[str, Ed25519PublicKey],
    checkpoints: Iterable[SignedTreeHead] = (),
) -> VerificationReport:
    """Check the whole log and every stored or given signed tree head (see the module docstring).

    ``trusted_keys`` (key id → public key) are the keys a head may be signed with: the audit
    signing keys of the key store, and/or the keys a witness kept. A head signed by any other
    key fails, even if its signature is valid under the key it carries.
    """
    if isinstance(target, Engine):
        with target.connect() as conn:
            return verify_log(conn, trusted_keys=trusted_keys, checkpoints=checkpoints)
    conn = target
    heads = [*stored_checkpoints(conn), *checkpoints]
    scanned = scan_log(conn, root_sizes={h.tree_size for h in heads})
    if scanned.bad_index is not None:
        return VerificationReport(
            ok=False,
            size=scanned.size,
            root_hash="",
            checkpoints_checked=0,
            first_bad_index=scanned.bad_index,
            reason=scanned.reason,
        )
    size = scanned.size
    root = scanned.roots[size]
    recorded = conn.execute(select(audit_head.c.size, audit_head.c.last_hash).where(audit_head.c.id == 1)).first()
    last_hash = scanned.leaves[-1].hex() if scanned.leaves else GENESIS_HASH
    if (recorded is None and size) or (
        recorded is not None and (recorded.size, recorded.last_hash) != (size, last_hash)
    ):
        recorded_size = 0 if recorded is None else int(recorded.size)
        if recorded_size > size:
            reason = (
                f"the head counts {recorded_size} entries but the log holds {size}: entries from {size} on were removed"
            )
        elif recorded_size < size:
            reason = (
                f"the head counts {recorded_size} entries but the log holds {size}: entries were added behind its back"
            )
        else:
            reason = "the head's last hash is not the last entry's: the last entry was replaced"
        return VerificationReport(
            ok=False,
            size=size,
            root_hash=root.hex(),
            checkpoints_checked=0,
            first_bad_index=min(recorded_size, size) if recorded_size != size else max(size - 1, 0),
            reason=reason,
        )
    vouched = 0  # every index below this is covered by a head that matched
    matched: list[SignedTreeHead] = []
    for number, h in enumerate(sorted(heads, key=lambda h: (h.tree_size, h.timestamp)), start=1):
        label = f"signed tree head of size {h.tree_size} ({h.timestamp})"
        failure, bad = "", min(vouched, size)
        key = trusted_keys.get(h.key_id)
        if key is None:
            failure = f"{label} is signed by {h.key_id}, which is not a trusted audit key"
        elif not h.check_signature(key):
            failure = f"{label} has an invalid signature (the head was altered)"
        elif h.tree_size > size:
            failure, bad = f"{label} is beyond the log's {size} entries: entries from {size} on were removed", size
        elif scanned.roots[h.tree_size].hex() != h.root_hash:
            failure = (
                f"{label} does not match the recomputed root: entries before {h.tree_size} were rewritten "
                "(every hash recomputed)"
            )
        else:
            proof = consistency_proof(scanned.leaves, h.tree_size, size)
            if not verify_consistency(h.tree_size, size, bytes.fromhex(h.root_hash), root, proof):
                failure = f"{label} is not consistent with the current tree"
        if failure:
            return VerificationReport(
                ok=False,
                size=size,
                root_hash=root.hex(),
                checkpoints_checked=number - 1,
                first_bad_index=bad,
                reason=failure,
            )
        vouched = max(vouched, h.tree_size)
        matched.append(h)
    return VerificationReport(ok=True, size=size, root_hash=root.hex(), checkpoints_checked=len(matched))
