"""The audit log's Ed25519 signing key, kept in the key store, wrapped by the master key.

Why here and how: signed tree heads are only worth something if the signing key cannot be
read from the database the log lives in. The key is stored like every data key of the
platform (see :mod:`pdp.pseudonym.keys`): a file in the key store directory
(``audit-signing-v<N>.json``, 0600, written atomically), holding the 32-byte Ed25519 seed
wrapped by the :class:`~pdp.pseudonym.kms.KeyEncryptionService` (the local master key, or a
KMS in production). The associated data binds the format, the version *and the public key*,
so a file whose public key was swapped fails to unwrap instead of vouching for a forged key.
The file name does not match the data keys' pattern, so the key store ignores it (and this
module needs no change there). No private byte is ever in a repr, a log line or an error.

Versions: ``ensure()`` creates version 1 on first use; ``rotate()`` adds a new version which
signs from then on; old versions stay, so old checkpoints keep verifying. A key is named by
its ``key_id`` = ``ed25519:`` + the first 16 hex characters of SHA-256(raw public key).

Example::

    keys = AuditSigningKeys.from_settings()
    signer = keys.ensure()                       # AuditSigner(key_id='ed25519:…')
    signature = signer.sign(b"message")
    keys.public_keys()[signer.key_id].verify(signature, b"message")
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import secrets
import stat
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pydantic import BaseModel, ConfigDict, ValidationError

from pdp.pseudonym.kms import KeyEncryptionService, KeyStoreError, UnwrapError, master_key_from_settings

if TYPE_CHECKING:
    from pdp.config import Settings

__all__ = [
    "PUBLIC_KEYS_FORMAT",
    "AuditSigner",
    "AuditSigningKeys",
    "key_id_of",
    "load_public_keys",
    "public_key_from_text",
    "public_key_text",
]

_FORMAT = "pdp-audit-signing-key/1"
PUBLIC_KEYS_FORMAT = "pdp-audit-public-keys/1"
_FILE_RE = re.compile(r"audit-signing-v(?P<version>[1-9][0-9]{0,8})\.json")


def public_key_text(key: Ed25519PublicKey) -> str:
    """The raw 32-byte public key, standard base64 (what checkpoints and exports carry)."""
    return base64.b64encode(key.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode("ascii")


def public_key_from_text(text: str) -> Ed25519PublicKey:
    """Inverse of :func:`public_key_text`; ``ValueError`` on anything else."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (ValueError, TypeError):
        raise ValueError("public key is not base64") from None
    if len(raw) != 32:
        raise ValueError("public key is not 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


def key_id_of(key: Ed25519PublicKey) -> str:
    """``ed25519:`` + 16 hex characters of SHA-256 of the raw public key."""
    return "ed25519:" + hashlib.sha256(key.public_bytes(Encoding.Raw, PublicFormat.Raw)).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class AuditSigner:
    """One version of the signing key, unwrapped in memory; repr shows only its id."""

    version: int
    key_id: str
    public_key: Ed25519PublicKey = field(repr=False)
    _private: Ed25519PrivateKey = field(repr=False)

    def sign(self, message: bytes) -> bytes:
        """An Ed25519 signature (64 bytes) of ``message``."""
        return self._private.sign(message)


class _SigningKeyFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format: str
    version: int
    created_at: datetime
    kek: str
    public_key: str
    wrapped: str


def _aad(version: int, public_key: str) -> bytes:
    return f"{_FORMAT}\x1f{version}\x1f{public_key}".encode("ascii")


class AuditSigningKeys:
    """The versioned signing keys in ``directory`` (the key store), under ``master_key``."""

    def __init__(self, directory: Path, master_key: KeyEncryptionService) -> None:
        self._dir = Path(directory)
        self._kek = master_key

    def __repr__(self) -> str:
        return f"AuditSigningKeys(directory={str(self._dir)!r}, master_key={self._kek.kek_id!r})"

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> AuditSigningKeys:
        """The signing keys of the settings' key store, under the master key PDP_KMS names (fails closed)."""
        if settings is None:
            from pdp.config import get_settings

            settings = get_settings()
        return cls(Path(settings.key_store), master_key_from_settings(settings))

    def ensure(self) -> AuditSigner:
        """The current signer, creating version 1 if there is none yet."""
        signers = self._load()
        if not signers:
            self._create(1)
            signers = self._load()
        return signers[-1]

    def current(self) -> AuditSigner:
        """The current signer; :class:`KeyStoreError` if none was created."""
        signers = self._load()
        if not signers:
            raise KeyStoreError(f"no audit signing key in {self._dir}: run `pdp audit checkpoint` once")
        return signers[-1]

    def rotate(self) -> AuditSigner:
        """A new version, which signs from now on (old ones stay to verify old checkpoints)."""
        signers = self._load()
        self._create(signers[-1].version + 1 if signers else 1)
        return self._load()[-1]

    def public_keys(self) -> dict[str, Ed25519PublicKey]:
        """Every version's public key by key id (each file authenticated by the master key)."""
        return {s.key_id: s.public_key for s in self._load()}

    def public_keys_document(self) -> dict[str, object]:
        """The public keys as a JSON document a witness or reviewer keeps to verify without the master key."""
        return {"format": PUBLIC_KEYS_FORMAT, "keys": {k: public_key_text(v) for k, v in self.public_keys().items()}}

    # --- internals ------------------------------------------------------------------------

    def _exists(self) -> bool:
        try:
            info = self._dir.stat()
        except FileNotFoundError:
            return False
        if not stat.S_ISDIR(info.st_mode):
            raise KeyStoreError(f"key store {self._dir} is not a directory")
        if info.st_mode & 0o077:
            raise KeyStoreError(f"key store {self._dir} is accessible to other users: chmod 700 it")
        return True

    def _load(self) -> list[AuditSigner]:
        if not self._exists():
            return []
        signers: list[AuditSigner] = []
        for path in self._dir.iterdir():
            match = _FILE_RE.fullmatch(path.name)
            if match is None:
                continue
            try:
                record = _SigningKeyFile.model_validate_json(path.read_bytes())
            except (ValidationError, ValueError):
                raise KeyStoreError(f"key file {path.name} is malformed") from None
            except OSError:
                raise KeyStoreError(f"key file {path.name} is not readable") from None
            if record.format != _FORMAT or record.version != int(match["version"]):
                raise KeyStoreError(f"key file {path.name} does not hold the key its name says")
            signers.append(self._unwrap(record, path.name))
        signers.sort(key=lambda s: s.version)
        if [s.version for s in signers] != list(range(1, len(signers) + 1)):
            raise KeyStoreError(f"key store {self._dir}: audit signing key versions are not contiguous from 1")
        return signers

    def _unwrap(self, record: _SigningKeyFile, name: str) -> AuditSigner:
        if record.kek != self._kek.kek_id:
            raise KeyStoreError(f"key file {name} was wrapped by {record.kek!r}, not by {self._kek.kek_id!r}")
        try:
            wrapped = base64.b64decode(record.wrapped, validate=True)
            seed = self._kek.unwrap(wrapped, aad=_aad(record.version, record.public_key))
        except UnwrapError:
            raise KeyStoreError("master key does not open the audit signing key (wrong key or altered file)") from None
        except ValueError:
            raise KeyStoreError(f"key file {name} is malformed") from None
        if len(seed) != 32:
            raise KeyStoreError(f"key file {name} does not hold a 32-byte Ed25519 seed")
        private = Ed25519PrivateKey.from_private_bytes(seed)
        public = private.public_key()
        if public_key_text(public) != record.public_key:
            raise KeyStoreError(f"key file {name}: its public key does not match its private key")
        return AuditSigner(record.version, key_id_of(public), public, private)

    def _create(self, version: int) -> None:
        seed = secrets.token_bytes(32)
        public = public_key_text(Ed25519PrivateKey.from_private_bytes(seed).public_key())
        record = _SigningKeyFile(
            format=_FORMAT,
            version=version,
            created_at=datetime.now(UTC),
            kek=self._kek.kek_id,
            public_key=public,
            wrapped=base64.b64encode(self._kek.wrap(seed, aad=_aad(version, public))).decode("ascii"),
        )
        if not self._exists():
            self._dir.mkdir(parents=True, mode=0o700, exist_ok=True)
            os.chmod(self._dir, 0o700)
        final = self._dir / f"audit-signing-v{version}.json"
        tmp = self._dir / f".{final.name}.{secrets.token_hex(8)}.tmp"
        payload = json.dumps(record.model_dump(mode="json"), indent=2).encode("utf-8") + b"\n"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            try:
                os.write(fd, payload)
                os.fsync(fd)
            finally:
                os.close(fd)
            with contextlib.suppress(FileExistsError):
                os.link(tmp, final)  # never overwrites: a concurrent creation loses cleanly
        finally:
            tmp.unlink(missing_ok=True)


def load_public_keys(path: Path) -> dict[str, Ed25519PublicKey]:
    """Read a :meth:`AuditSigningKeys.public_keys_document` file; ``ValueError`` (one line) if malformed.

    Each key must hash to its key id, so an edited file cannot rename a key.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError(f"public keys file {path} is not readable JSON") from None
    if not isinstance(data, dict) or data.get("format") != PUBLIC_KEYS_FORMAT or not isinstance(data.get("keys"), dict):
        raise ValueError(f"public keys file {path} is not a {PUBLIC_KEYS_FORMAT} file")
    keys: dict[str, Ed25519PublicKey] = {}
    for key_id, text in data["keys"].items():
        key = public_key_from_text(text) if isinstance(text, str) else None
        if key is None or key_id_of(key) != key_id:
            raise ValueError(f"public keys file {path}: key {key_id!r} does not match its id")
        keys[key_id] = key
    return keys
