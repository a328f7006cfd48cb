"""Pagination cursors: opaque, signed, and bound to the territory, the resource and the filters.

Why signed: a cursor comes back from the client. Unsigned, a SIOP of one territory could edit
it to page through another territory's worklist (the BOLA case), or change the filters behind
the server's back. The cursor is ``base64url(json) . base64url(HMAC-SHA-256)`` under a key kept
in ``<var>/api/cursor.key`` (created once, mode 0600, shared by the workers of one host); a
cursor whose signature, territory, resource or filters do not match the request is refused.
It holds an offset, never a pseudonym.

>>> signer = CursorSigner(b"k" * 32)
>>> c = signer.issue(territory="douaisis", resource="worklist", filters="f", offset=50)
>>> signer.read(c, territory="douaisis", resource="worklist", filters="f")
50
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from pathlib import Path

__all__ = ["CursorError", "CursorSigner", "filters_digest"]


class CursorError(ValueError):
    """A cursor that is malformed, forged, or issued for another request (one line)."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def filters_digest(**filters: object) -> str:
    """A short digest of the request's filters (a cursor is valid for these filters only)."""
    canonical = json.dumps({k: v for k, v in sorted(filters.items())}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class CursorSigner:
    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("cursor key must be at least 32 bytes")
        self._key = key

    @classmethod
    def from_var(cls, var_dir: Path) -> CursorSigner:
        """The host's cursor key under ``var/api/cursor.key`` (created on first use)."""
        path = Path(var_dir) / "api" / "cursor.key"
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return cls(path.read_bytes())
        with os.fdopen(fd, "wb") as f:
            key = os.urandom(32)
            f.write(key)
        return cls(key)

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._key, body, hashlib.sha256).digest()

    def issue(self, *, territory: str, resource: str, filters: str, offset: int,
              marks: dict[str, int] | None = None) -> str:
        """A signed cursor; ``marks`` are further positions it carries (e.g. one Delta version per table)."""
        data: dict[str, object] = {"t": territory, "r": resource, "f": filters, "o": offset}
        if marks:
            data["m"] = dict(sorted(marks.items()))
        body = json.dumps(data, separators=(",", ":")).encode()
        return f"{_b64(body)}.{_b64(self._mac(body))}"

    def read(self, cursor: str, *, territory: str, resource: str, filters: str) -> int:
        """The offset of a cursor issued for exactly this territory, resource and filters."""
        return self.read_marks(cursor, territory=territory, resource=resource, filters=filters)[0]

    def read_marks(self, cursor: str, *, territory: str, resource: str, filters: str) -> tuple[int, dict[str, int]]:
        """The offset and the marks of a cursor issued for exactly this territory, resource and filters."""
        try:
            body_part, mac_part = cursor.split(".")
            body, mac = _unb64(body_part), _unb64(mac_part)
        except ValueError:
            raise CursorError("malformed cursor") from None
        if not hmac.compare_digest(mac, self._mac(body)):
            raise CursorError("cursor signature does not verify")
        try:
            data = json.loads(body)
            offset = int(data["o"])
        except (ValueError, KeyError, TypeError):
            raise CursorError("malformed cursor") from None
        if data.get("t") != territory:
            raise CursorError("cursor was issued for another territory")
        if data.get("r") != resource or data.get("f") != filters:
            raise CursorError("cursor was issued for another resource or other filters")
        marks = data.get("m", {})
        if offset < 0 or not isinstance(marks, dict) or not all(
                isinstance(k, str) and isinstance(v, int) and v >= -1 for k, v in marks.items()):
            raise CursorError("malformed cursor")
        return offset, marks
