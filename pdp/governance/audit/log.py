"""``AuditLog``: the one object callers use to write, sign, verify and read the audit trail.

Why a facade: writers (the policy layer, ``reidentify``, the opposition job, the ethics draw,
key rotation) only need ``append``; the CLI and the API need ``checkpoint``, ``verify``,
``query`` and ``transparency``. One object bound to one engine and one set of signing keys
keeps them from reaching into the tables or the key files.

Example::

    log = AuditLog.from_settings()                       # PDP_AUDIT_DB_URL, else PDP_DB_URL
    log.append(actor="svc:siop-api", actor_role="siop_platform",
               action="authorisation_decision", decision="denied",
               purpose="care_coordination", rule="deny by default",
               details={"domain": "douaisis", "object": "worklist", "act": "read"})
    head = log.checkpoint(out=Path("witness/audit.json"))
    assert log.verify(checkpoints=[head]).ok
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Connection, Engine, insert, select

from pdp.governance.audit.checkpoint import SignedTreeHead
from pdp.governance.audit.entry import AuditEntry
from pdp.governance.audit.merkle import consistency_proof as _consistency_proof
from pdp.governance.audit.merkle import inclusion_proof as _inclusion_proof
from pdp.governance.audit.review import TransparencyItem, query_entries, transparency_record
from pdp.governance.audit.signing import AuditSigningKeys
from pdp.governance.audit.store import AuditRecord, append_entry, count_entries, head
from pdp.governance.audit.tables import audit_checkpoint, audit_log, create_audit_tables
from pdp.governance.audit.verify import VerificationReport, scan_log, verify_log
from pdp.governance.audit.vocabulary import AuditAction, AuditDecision

if TYPE_CHECKING:
    from pdp.config import Settings

__all__ = ["AuditIntegrityError", "AuditLog", "audit_engine"]


class AuditIntegrityError(Exception):
    """The log does not verify, so it is not signed (one line, the first bad index named)."""


def audit_engine(settings: Settings | None = None) -> Engine:
    """An engine on the audit store: ``PDP_AUDIT_DB_URL``, else the governance store ``PDP_DB_URL``."""
    from pdp.config import get_settings
    from pdp.governance.db import make_engine

    settings = settings or get_settings()
    return make_engine(settings.audit_db_url or settings.db_url)


class AuditLog:
    """The audit trail on ``engine``; ``signing_keys`` sign and vouch for tree heads.

    Without ``signing_keys``, appending, querying and proofs work; ``checkpoint`` and
    ``verify`` (of signed heads) need them, or explicit ``trusted_keys``.
    """

    def __init__(self, engine: Engine, *, signing_keys: AuditSigningKeys | None = None) -> None:
        self.engine = engine
        self._keys = signing_keys

    def __repr__(self) -> str:
        return f"AuditLog(engine={self.engine.url.render_as_string(hide_password=True)!r})"

    @classmethod
    def from_settings(cls, settings: Settings | None = None, *, with_keys: bool = True) -> AuditLog:
        """The log of the settings (tables created if missing); signing keys from the key store."""
        engine = audit_engine(settings)
        create_audit_tables(engine)
        return cls(engine, signing_keys=AuditSigningKeys.from_settings(settings) if with_keys else None)

    # --- writing --------------------------------------------------------------------------

    def append(
        self,
        *,
        actor: str,
        actor_role: str,
        action: AuditAction | str,
        decision: AuditDecision | str,
        data_ref: Iterable[str] = (),
        purpose: str | None = None,
        rule: str = "",
        details: Mapping[str, Any] | None = None,
        connection: Connection | None = None,
    ) -> AuditEntry:
        """Append one entry (see :class:`~pdp.governance.audit.store.AuditRecord` for the fields).

        Raises :class:`~pdp.governance.audit.entry.AuditEntryError` for a refused entry (an
        identity in it, an unknown action...) and the database's error if it cannot be
        written; pass ``connection`` to commit the entry with the caller's own transaction.
        """
        record = AuditRecord(
            actor=actor,
            actor_role=actor_role,
            action=action,
            decision=decision,
            data_ref=tuple(data_ref),
            purpose=purpose,
            rule=rule,
            details=dict(details or {}),
        )
        return self.record(record, connection=connection)

    def record(self, record: AuditRecord, *, connection: Connection | None = None) -> AuditEntry:
        """Append a prepared :class:`AuditRecord`."""
        return append_entry(connection if connection is not None else self.engine, record)

    # --- signing and verifying ------------------------------------------------------------

    def _signing_keys(self) -> AuditSigningKeys:
        if self._keys is None:
            from pdp.pseudonym.kms import KeyStoreError

            raise KeyStoreError("audit log opened without signing keys: cannot sign or vouch for tree heads")
        return self._keys

    def checkpoint(
        self, *, out: Path | None = None, actor: str = "pdp-audit", actor_role: str = "system"
    ) -> SignedTreeHead:
        """Verify the log, sign its head, store it, record a ``checkpoint`` entry, export it to ``out``.

        Refuses (:class:`AuditIntegrityError`) to sign a log that does not verify: a signature
        must never bless a tampered history.
        """
        signer = self._signing_keys().ensure()
        report = self.verify()
        if not report.ok:
            raise AuditIntegrityError(f"not signed: {report.line()}")
        with self.engine.begin() as conn:
            # The append lock keeps the head still while it is hashed and signed.
            entry = append_entry(
                conn,
                AuditRecord(
                    actor=actor,
                    actor_role=actor_role,
                    action=AuditAction.CHECKPOINT,
                    decision=AuditDecision.DONE,
                    details={"verified_size": report.size, "verified_root": report.root_hash, "key_id": signer.key_id},
                ),
            )
            scanned = scan_log(conn, root_sizes={report.size})
            if scanned.bad_index is not None or scanned.roots[report.size].hex() != report.root_hash:
                raise AuditIntegrityError("not signed: the log changed while it was being checked")
            # The head signed includes the checkpoint entry itself: size = its index + 1.
            sth = SignedTreeHead.sign(size=entry.index + 1, root=scanned.roots[scanned.size], signer=signer)
            conn.execute(insert(audit_checkpoint).values(**{k: v for k, v in sth.to_json().items() if k != "format"}))
        if out is not None:
            sth.export(out)
        return sth

    def trusted_keys(self) -> dict[str, Ed25519PublicKey]:
        """The public keys of the key store's audit signing keys, by key id."""
        return self._signing_keys().public_keys()

    def verify(
        self,
        *,
        checkpoints: Iterable[SignedTreeHead | Path] = (),
        trusted_keys: Mapping[str, Ed25519PublicKey] | None = None,
    ) -> VerificationReport:
        """Recompute the log and check every stored and given head (files are loaded).

        Trusted keys: ``trusted_keys`` if given, else the key store's signing keys (none if this
        log was opened without them); plus, in both cases, the key each given checkpoint file
        carries — a witness trusts the key it kept with its head.
        """
        heads = [c if isinstance(c, SignedTreeHead) else SignedTreeHead.load(c) for c in checkpoints]
        keys: dict[str, Ed25519PublicKey] = dict(trusted_keys) if trusted_keys is not None else {}
        if trusted_keys is None and self._keys is not None:
            keys.update(self._keys.public_keys())
        for h in heads:
            key = h.embedded_key()
            if key is not None:
                keys.setdefault(h.key_id, key)
        return verify_log(self.engine, trusted_keys=keys, checkpoints=heads)

    # --- reading --------------------------------------------------------------------------

    def size(self) -> int:
        with self.engine.connect() as conn:
            return count_entries(conn)

    def head(self) -> tuple[int, str]:
        """(size, hash of the last entry)."""
        with self.engine.connect() as conn:
            return head(conn)

    def query(
        self,
        *,
        actor: str | None = None,
        purpose: str | None = None,
        decision: AuditDecision | str | None = None,
        action: AuditAction | str | None = None,
        since: date | datetime | None = None,
        until: date | datetime | None = None,
        limit: int | None = None,
    ) -> list[AuditEntry]:
        """Filtered review, in index order (see :func:`~pdp.governance.audit.review.query_entries`)."""
        return query_entries(
            self.engine,
            actor=actor,
            purpose=purpose,
            decision=decision,
            action=action,
            since=since,
            until=until,
            limit=limit,
        )

    def transparency(self, pseudonym: str) -> list[TransparencyItem]:
        """Which uses were made of this person's data (roles and purposes, never actor ids)."""
        return transparency_record(self.engine, pseudonym)

    def _leaves(self, size: int | None) -> list[bytes]:
        with self.engine.connect() as conn:
            query = select(audit_log.c.entry_hash).order_by(audit_log.c.idx)
            if size is not None:
                query = query.limit(size)
            return [bytes.fromhex(h) for h in conn.execute(query).scalars()]

    def inclusion_proof(self, index: int, tree_size: int | None = None) -> list[str]:
        """RFC 9162 inclusion proof (hex) of entry ``index`` in the tree of ``tree_size`` entries (default: all)."""
        leaves = self._leaves(tree_size)
        return [h.hex() for h in _inclusion_proof(leaves, index, tree_size if tree_size is not None else len(leaves))]

    def consistency_proof(self, first: int, second: int | None = None) -> list[str]:
        """RFC 9162 consistency proof (hex) from the tree of ``first`` entries to that of ``second`` (default: all)."""
        leaves = self._leaves(second)
        return [h.hex() for h in _consistency_proof(leaves, first, second if second is not None else len(leaves))]
