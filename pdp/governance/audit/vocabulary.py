"""The audit trail's fixed vocabulary: what can be recorded, and how it ended.

Why one place: an ethics reviewer filters the log by action and decision; a free-text action
("reidentify", "re-identification", "reid") would split one kind of event into several and
hide it from the filter. Every writer picks from these enums; the store refuses anything else.

Example::

    AuditAction("reidentification")   # AuditAction.REIDENTIFICATION
    AuditDecision.DENIED.value         # "denied"
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["AuditAction", "AuditDecision"]


class AuditAction(StrEnum):
    """What happened. Add a member here (never reuse one) when a new kind of event appears."""

    AUTHORISATION_DECISION = "authorisation_decision"
    """A policy decision (allowed or denied) on a principal × domain × object × action × purpose."""
    REIDENTIFICATION = "reidentification"
    """A call of ``reidentify``: pseudonyms asked, pseudonyms released (details), why."""
    OPPOSITION_SUBMIT = "opposition_submit"
    OPPOSITION_WITHDRAW = "opposition_withdraw"
    OPPOSITION_APPLY = "opposition_apply"
    """The propagation job of oppositions into the lake (``pdp oppose apply``)."""
    ERASURE = "erasure"
    """The proof of an erasure: tables, versions before/after, rows and files removed."""
    RETENTION_OVERRIDE = "retention_override"
    """A purge that bypassed Delta's retention check, with its reason."""
    ETHICS_SAMPLING = "ethics_sampling"
    """An ethics committee's draw: seed, parameters, pseudonyms drawn."""
    KEY_OPERATION = "key_operation"
    """Key initialisation, rotation, retirement (never key material)."""
    LINKAGE_TRAINING = "linkage_training"
    """A linkage model trained and made current (``pdp linkage train``): its version, what it was trained on (a
    seeded sample of the vault's linkage view — a read of identities — or a batch of source files), sizes; never an
    identity."""
    POLICY_CHANGE = "policy_change"
    """A change of the authorisation policy or of the purposes catalog."""
    CHECKPOINT = "checkpoint"
    """A signed tree head was taken (its size and root in the details)."""
    PSI_QUERY = "psi_query"
    """A partner's private set intersection exchange (setup download, request, reported result): partner,
    registry, version, mode and sizes; never an item."""
    DATA_ACCESS = "data_access"
    """A read of patient-level data through the API that no other entry covers (a contextual call, a
    citizen's pathway): who, which route, which pseudonyms, allowed or denied (the BOLA case)."""


class AuditDecision(StrEnum):
    """How the recorded event ended."""

    ALLOWED = "allowed"
    DENIED = "denied"
    FAILED = "failed"
    DONE = "done"
    """An operation that is not a decision (an erasure, a checkpoint) and that completed."""
