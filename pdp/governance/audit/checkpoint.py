"""Signed tree heads: the log's size and root at a moment, signed, kept, and exported for a witness.

Why: the hash chain and the tree show that entries were not changed *relative to each other*;
someone with write access to the database could still rewrite the whole history and
recompute every hash. A signed tree head fixes the root at a size with a key the database
does not hold; a witness outside (the ethics committee, the DPO, a second site) keeps the
exported file, and any later rewrite of an entry before that size no longer matches it.

The signed message is ``b"pdp-audit-tree-head/1\\n"`` followed by the canonical JSON (see
:mod:`pdp.governance.audit.entry`) of ``{"root_hash", "timestamp", "tree_size"}``: a domain
prefix so the signature can never be replayed as another kind of message. The export is one
JSON object::

    {"format": "pdp-audit-checkpoint/1", "tree_size": 42, "root_hash": "<hex>",
     "timestamp": "2026-12-03T17:00:00.000000Z", "key_id": "ed25519:…",
     "public_key": "<base64 raw 32 bytes>", "signature": "<base64 64 bytes>"}

Example::

    head = SignedTreeHead.sign(size=42, root=root, signer=signer)
    head.check_signature(signer.public_key)      # True
    head.export(Path("witness/audit-42.json"))
    SignedTreeHead.load(Path("witness/audit-42.json")) == head
"""

from __future__ import annotations

import base64
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pdp.governance.audit.entry import canonical_json, format_at, utc_now
from pdp.governance.audit.signing import AuditSigner, key_id_of, public_key_from_text, public_key_text

__all__ = ["CHECKPOINT_FORMAT", "CheckpointFileError", "SignedTreeHead"]

CHECKPOINT_FORMAT = "pdp-audit-checkpoint/1"
_DOMAIN = b"pdp-audit-tree-head/1\n"
_HEX64 = re.compile(r"[0-9a-f]{64}")


class CheckpointFileError(ValueError):
    """An exported checkpoint file is unreadable or malformed (one line)."""


@dataclass(frozen=True, slots=True)
class SignedTreeHead:
    """One signed tree head (hex root, canonical UTC timestamp, base64 key and signature)."""

    tree_size: int
    root_hash: str
    timestamp: str
    key_id: str
    public_key: str
    signature: str

    @staticmethod
    def message(tree_size: int, root_hash: str, timestamp: str) -> bytes:
        """The exact bytes signed."""
        body = canonical_json({"root_hash": root_hash, "timestamp": timestamp, "tree_size": tree_size})
        return _DOMAIN + body.encode("utf-8")

    @classmethod
    def sign(cls, *, size: int, root: bytes, signer: AuditSigner) -> SignedTreeHead:
        """Sign the head of size ``size`` and root ``root`` now."""
        timestamp = format_at(utc_now())
        signature = signer.sign(cls.message(size, root.hex(), timestamp))
        return cls(
            tree_size=size,
            root_hash=root.hex(),
            timestamp=timestamp,
            key_id=signer.key_id,
            public_key=public_key_text(signer.public_key),
            signature=base64.b64encode(signature).decode("ascii"),
        )

    def check_signature(self, key: Ed25519PublicKey) -> bool:
        """Whether the signature is valid under ``key`` (which must be the one named by ``key_id``)."""
        if key_id_of(key) != self.key_id:
            return False
        try:
            signature = base64.b64decode(self.signature, validate=True)
            key.verify(signature, self.message(self.tree_size, self.root_hash, self.timestamp))
        except (InvalidSignature, ValueError):
            return False
        return True

    def embedded_key(self) -> Ed25519PublicKey | None:
        """The public key carried by the head, if well formed and matching ``key_id``."""
        try:
            key = public_key_from_text(self.public_key)
        except ValueError:
            return None
        return key if key_id_of(key) == self.key_id else None

    def to_json(self) -> dict[str, Any]:
        return {"format": CHECKPOINT_FORMAT, **asdict(self)}

    def export(self, path: Path) -> Path:
        """Write the head as a JSON file for a witness (refuses to overwrite an existing file)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = (json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n").encode("utf-8")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            raise CheckpointFileError(f"checkpoint file {path} already exists: refusing to overwrite it") from None
        try:
            os.write(fd, payload)
            os.fsync(fd)
        finally:
            os.close(fd)
        return path

    @classmethod
    def from_json(cls, data: Any, *, origin: str = "checkpoint") -> SignedTreeHead:
        """Parse an exported head; :class:`CheckpointFileError` on any malformed field."""
        fields = ("tree_size", "root_hash", "timestamp", "key_id", "public_key", "signature")
        if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointFileError(f"{origin} is not a {CHECKPOINT_FORMAT} file")
        if set(data) != {"format", *fields}:
            raise CheckpointFileError(f"{origin} has missing or unknown fields")
        size = data["tree_size"]
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise CheckpointFileError(f"{origin}: tree_size is not a non-negative integer")
        if not isinstance(data["root_hash"], str) or not _HEX64.fullmatch(data["root_hash"]):
            raise CheckpointFileError(f"{origin}: root_hash is not 64 lowercase hex characters")
        if any(not isinstance(data[f], str) for f in fields[2:]):
            raise CheckpointFileError(f"{origin}: timestamp, key_id, public_key and signature must be strings")
        return cls(**{f: data[f] for f in fields})

    @classmethod
    def load(cls, path: Path) -> SignedTreeHead:
        """Read an exported head from ``path``."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CheckpointFileError(f"checkpoint file {path} does not exist") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            raise CheckpointFileError(f"checkpoint file {path} is not readable JSON") from None
        return cls.from_json(data, origin=f"checkpoint file {path}")
