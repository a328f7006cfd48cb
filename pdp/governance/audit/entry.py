"""One audit entry: its fields, the checks that keep identities out, and its canonical bytes.

Why a canonical form: the hash chain and the Merkle tree hash *bytes*; if two programs (the
writer today, a verifier in ten years) serialised an entry differently, a sound log would look
tampered. The canonical form is defined here and nowhere else: a JSON object with sorted keys,
no whitespace, UTF-8 (non-ASCII kept as is), timestamps as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``
(UTC, microseconds), hashes as lowercase hex. ``prev_hash`` is part of the object, so each
entry's hash covers its predecessor's (the chain), and the entry hash is the RFC 9162 leaf hash
of those bytes (so the chain and the Merkle tree share their leaves).

Why the checks: the audit log outlives the data it audits and is read by people who must not
see identities (ethics reviewers, a citizen's transparency record). A data reference holds
pseudonyms or labels/counts only; anything shaped like a NIR (13 or 15 digits, spaces or dots
allowed between them), an e-mail address, or a value with whitespace is refused, and so is a
``details`` key that names an identity trait. Refusals never echo the value.

Example::

    entry = AuditEntry.build(index=0, at=utc_now(), actor="coordinator-42", actor_role="professional",
                             action=AuditAction.REIDENTIFICATION, data_ref=("v1:AbC...",),
                             purpose="care_coordination", decision=AuditDecision.ALLOWED,
                             rule="p, professional, ...", details={"released": 1}, prev_hash=GENESIS_HASH)
    entry.entry_hash == leaf_hash(entry.canonical_bytes())
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pdp.governance.audit.merkle import leaf_hash
from pdp.governance.audit.vocabulary import AuditAction, AuditDecision

__all__ = [
    "GENESIS_HASH",
    "AuditEntry",
    "AuditEntryError",
    "canonical_json",
    "format_at",
    "is_pseudonym",
    "utc_now",
]

GENESIS_HASH = "0" * 64
"""``prev_hash`` of entry 0: no predecessor."""

MAX_DATA_REFS = 10_000
MAX_REF_CHARS = 200
MAX_RULE_CHARS = 500
MAX_DETAILS_BYTES = 64 * 1024

_ACTOR_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@|\-]{0,199}")  # as a token subject (Principal.sub)
_ROLE_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")
_PURPOSE_RE = re.compile(r"[a-z][a-z0-9_]{0,63}|<undeclared>")
_REF_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/=+\-]{0,199}")
_PSEUDONYM_RE = re.compile(r"v[1-9][0-9]{0,8}:[A-Za-z0-9_\-]{43}")
# 13 or more digits, optionally separated by single spaces, dots or hyphens: a NIR (13), a NIR
# with its key (15), or longer. No count, index or date of the log has 13 digits. The run must
# not be glued to letters: hex hashes (roots, keys) hold 13-digit runs by chance (~10 % of them).
_NIR_SHAPE_RE = re.compile(r"(?<![0-9A-Za-z])[0-9](?:[ .\-]?[0-9]){12,}(?![0-9A-Za-z])")
# The Corsican NIR: department 2A/2B in place of two digits.
_NIR_CORSICA_RE = re.compile(
    r"(?<![0-9A-Za-z])[12][ .]?[0-9]{2}[ .]?[0-9]{2}[ .]?2[ABab][ .]?[0-9]{3}[ .]?[0-9]{3}"
    r"(?:[ .]?[0-9]{2})?(?![0-9A-Za-z])"
)
_EMAIL_RE = re.compile(r"[^\s@]+@[^\s@]+\.[A-Za-z]{2,}")
_IDENTITY_KEYS = frozenset(
    [
        "nir",
        "ins",
        "nss",
        "name",
        "names",
        "first_name",
        "firstname",
        "given_name",
        "last_name",
        "lastname",
        "family_name",
        "surname",
        "birth_name",
        "birth_date",
        "birthdate",
        "date_of_birth",
        "address",
        "street",
        "phone",
        "telephone",
        "mobile",
        "email",
        "e_mail",
        "identity",
    ]
)
_HEX64_RE = re.compile(r"[0-9a-f]{64}")


class AuditEntryError(ValueError):
    """An entry was refused (one line; the offending value is never echoed)."""


def utc_now() -> datetime:
    """The current time in UTC (what ``at`` is)."""
    return datetime.now(UTC)


def format_at(at: datetime) -> str:
    """``at`` in the canonical form: UTC, microseconds, ``Z`` (sortable as text)."""
    if at.tzinfo is None:
        raise AuditEntryError("audit entry: 'at' must be timezone-aware")
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_json(value: Any) -> str:
    """The one JSON form hashed and signed: sorted keys, no spaces, non-ASCII kept, no NaN."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def is_pseudonym(value: str) -> bool:
    """Whether ``value`` has the shape of a pseudonym (``v<N>:`` + 43 base64url characters)."""
    return bool(_PSEUDONYM_RE.fullmatch(value))


def _looks_like_email(text: str) -> bool:
    # The "@" test first: the pattern's search backtracks over every start of an @-less string
    # (~5 µs on a pseudonym: most of an audited 1 500-pseudonym re-identification's checks).
    return "@" in text and bool(_EMAIL_RE.search(text))


#: An audit signing key's id (``ed25519:`` + 16 hex characters of a hash, see signing.py): one in
#: 1 850 is all digits by chance, which the NIR shape would refuse, making that key unusable.
_KEY_ID_RE = re.compile(r"ed25519:[0-9a-f]{16}")


def _looks_identifying(text: str) -> bool:
    if _KEY_ID_RE.fullmatch(text):
        return False
    return bool(_NIR_SHAPE_RE.search(text) or _NIR_CORSICA_RE.search(text) or _looks_like_email(text))


def _check_text(name: str, value: str, pattern: re.Pattern[str], *, email_ok: bool = False) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise AuditEntryError(f"audit entry: {name} is malformed (value not shown)")
    if _NIR_SHAPE_RE.search(value) or _NIR_CORSICA_RE.search(value) or (not email_ok and _looks_like_email(value)):
        raise AuditEntryError(f"audit entry: {name} looks like a direct identifier (value not shown)")
    return value


def _check_data_ref(refs: Iterable[str]) -> tuple[str, ...]:
    if isinstance(refs, str | bytes):
        raise AuditEntryError("audit entry: data_ref must be a collection of references, not one string")
    out = tuple(refs)
    if len(out) > MAX_DATA_REFS:
        raise AuditEntryError(f"audit entry: data_ref holds more than {MAX_DATA_REFS} references")
    for position, ref in enumerate(out):
        if not isinstance(ref, str) or not _REF_RE.fullmatch(ref):
            raise AuditEntryError(
                f"audit entry: data_ref[{position}] is not a pseudonym or a label "
                f"(no whitespace, at most {MAX_REF_CHARS} characters; value not shown)"
            )
        if _looks_identifying(ref):
            raise AuditEntryError(f"audit entry: data_ref[{position}] looks like a direct identifier (value not shown)")
    return out


def _check_details(details: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(details, Mapping):
        raise AuditEntryError("audit entry: details must be a mapping")

    def walk(value: Any, where: str) -> Any:
        if isinstance(value, Mapping):
            out: dict[str, Any] = {}
            for key, item in value.items():
                if not isinstance(key, str):
                    raise AuditEntryError(f"audit entry: details key under {where} is not a string")
                if key.lower().replace("-", "_") in _IDENTITY_KEYS:
                    raise AuditEntryError(f"audit entry: details key {where}.{key} names an identity trait")
                out[key] = walk(item, f"{where}.{key}")
            return out
        if isinstance(value, list | tuple):
            return [walk(item, f"{where}[]") for item in value]
        if isinstance(value, str):
            if _looks_identifying(value):
                raise AuditEntryError(f"audit entry: details {where} looks like a direct identifier (value not shown)")
            return value
        if isinstance(value, float) and not math.isfinite(value):
            raise AuditEntryError(f"audit entry: details {where} is not a finite number")
        if value is None or isinstance(value, bool | int | float):
            return value
        raise AuditEntryError(f"audit entry: details {where} is a {type(value).__name__}, not a JSON value")

    checked = walk(details, "details")
    if len(canonical_json(checked).encode("utf-8")) > MAX_DETAILS_BYTES:
        raise AuditEntryError(f"audit entry: details exceed {MAX_DETAILS_BYTES} bytes")
    return checked


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One entry of the log, as stored and as hashed (``entry_hash`` is derived, never given)."""

    index: int
    at: str
    actor: str
    actor_role: str
    action: AuditAction
    data_ref: tuple[str, ...]
    purpose: str | None
    decision: AuditDecision
    rule: str
    details: dict[str, Any] = field(hash=False)
    prev_hash: str

    @classmethod
    def build(
        cls,
        *,
        index: int,
        at: datetime | str,
        actor: str,
        actor_role: str,
        action: AuditAction | str,
        data_ref: Iterable[str] = (),
        purpose: str | None = None,
        decision: AuditDecision | str,
        rule: str = "",
        details: Mapping[str, Any] | None = None,
        prev_hash: str,
    ) -> AuditEntry:
        """A checked entry; :class:`AuditEntryError` (value never echoed) on anything refused."""
        if not isinstance(index, int) or index < 0:
            raise AuditEntryError("audit entry: index must be a non-negative integer")
        try:
            action = AuditAction(action)
        except ValueError:
            raise AuditEntryError(f"audit entry: unknown action (expected one of {', '.join(AuditAction)})") from None
        try:
            decision = AuditDecision(decision)
        except ValueError:
            raise AuditEntryError(
                f"audit entry: unknown decision (expected one of {', '.join(AuditDecision)})"
            ) from None
        if not isinstance(rule, str) or len(rule) > MAX_RULE_CHARS or "\n" in rule or "\r" in rule:
            raise AuditEntryError(f"audit entry: rule must be one line of at most {MAX_RULE_CHARS} characters")
        if _looks_identifying(rule):
            raise AuditEntryError("audit entry: rule looks like it holds a direct identifier (value not shown)")
        if not isinstance(prev_hash, str) or not _HEX64_RE.fullmatch(prev_hash):
            raise AuditEntryError("audit entry: prev_hash must be 64 lowercase hex characters")
        return cls(
            index=index,
            at=at if isinstance(at, str) else format_at(at),
            # The actor is a staff or service principal (its login may be an e-mail: accountability
            # needs it); a NIR-shaped actor is still refused. Citizens act through services.
            actor=_check_text("actor", actor, _ACTOR_RE, email_ok=True),
            actor_role=_check_text("actor_role", actor_role, _ROLE_RE),
            action=action,
            data_ref=_check_data_ref(data_ref),
            purpose=None if purpose is None else _check_text("purpose", purpose, _PURPOSE_RE),
            decision=decision,
            rule=rule,
            details=_check_details(details or {}),
            prev_hash=prev_hash,
        )

    def as_dict(self) -> dict[str, Any]:
        """The entry as the canonical object (what is hashed)."""
        return {
            "index": self.index,
            "at": self.at,
            "actor": self.actor,
            "actor_role": self.actor_role,
            "action": str(self.action),
            "data_ref": list(self.data_ref),
            "purpose": self.purpose,
            "decision": str(self.decision),
            "rule": self.rule,
            "details": self.details,
            "prev_hash": self.prev_hash,
        }

    def canonical_bytes(self) -> bytes:
        """The bytes hashed into the chain and the Merkle tree (see the module docstring)."""
        return canonical_json(self.as_dict()).encode("utf-8")

    @property
    def entry_hash(self) -> str:
        """RFC 9162 leaf hash of :meth:`canonical_bytes`, hex."""
        return leaf_hash(self.canonical_bytes()).hex()

    def subjects(self) -> tuple[str, ...]:
        """The pseudonyms among the data references (what a transparency record looks up)."""
        return tuple(dict.fromkeys(ref for ref in self.data_ref if is_pseudonym(ref)))
