"""The tamper-evident audit trail: hash-chained entries, an RFC 9162 Merkle tree, signed tree heads.

Every authorisation decision, re-identification, opposition, erasure, ethics draw, key
operation and policy change is appended here (who, when, action, pseudonyms or counts — never
an identity —, purpose, decision, rule). Entries are chained by hash and form the leaves of a
Certificate-Transparency tree; ``checkpoint`` signs the head with an Ed25519 key kept in the
key store and exports it for an outside witness; ``verify`` recomputes everything and names
the first bad index. See the modules: ``vocabulary`` (actions, decisions), ``entry``
(fields, checks, canonical bytes), ``merkle`` (RFC 9162), ``store`` (serialised appends),
``signing`` (the key), ``checkpoint`` (signed heads), ``verify``, ``review`` (query,
transparency), ``sink`` (the adapter for ``reidentify``), ``recorders`` (the authoriser's ``on_decision`` and
``on_reload`` hooks), ``log`` (the facade).

Example::

    from pdp.governance.audit import AuditLog
    log = AuditLog.from_settings()
    log.append(actor="svc:dmp-api", actor_role="dmp", action="opposition_submit", decision="done",
               data_ref=["v1:AbC…"], purpose="opposition_management")
    log.checkpoint(out=Path("witness/audit-head.json"))
    report = log.verify()
    report.ok, report.line()
"""

from pdp.governance.audit.checkpoint import CheckpointFileError, SignedTreeHead
from pdp.governance.audit.entry import AuditEntry, AuditEntryError
from pdp.governance.audit.log import AuditIntegrityError, AuditLog, audit_engine
from pdp.governance.audit.merkle import (
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    merkle_root,
    verify_consistency,
    verify_inclusion,
)
from pdp.governance.audit.recorders import AuditDecisionRecorder, PolicyChangeRecorder
from pdp.governance.audit.review import TransparencyItem, query_entries, transparency_record
from pdp.governance.audit.signing import AuditSigningKeys
from pdp.governance.audit.sink import AuditLogSink
from pdp.governance.audit.store import AuditRecord
from pdp.governance.audit.tables import create_audit_tables
from pdp.governance.audit.verify import VerificationReport, verify_log
from pdp.governance.audit.vocabulary import AuditAction, AuditDecision

__all__ = [
    "AuditAction",
    "AuditDecision",
    "AuditDecisionRecorder",
    "AuditEntry",
    "AuditEntryError",
    "AuditIntegrityError",
    "AuditLog",
    "AuditLogSink",
    "AuditRecord",
    "AuditSigningKeys",
    "CheckpointFileError",
    "PolicyChangeRecorder",
    "SignedTreeHead",
    "TransparencyItem",
    "VerificationReport",
    "audit_engine",
    "consistency_proof",
    "create_audit_tables",
    "inclusion_proof",
    "leaf_hash",
    "merkle_root",
    "query_entries",
    "transparency_record",
    "verify_consistency",
    "verify_inclusion",
    "verify_log",
]
