"""The master key: what wraps (envelope-encrypts) the data keys of the key store.

Why an interface: the data keys (pseudonym HMAC keys, vault encryption keys) sit on disk,
wrapped; whoever holds the master key can open them. By default the master key is local (an
env var or a key file: embedded, like the rest of the platform); in production it should live
in a key-management service that never releases it — Vault/OpenBao transit, a cloud KMS —
which only wraps and unwraps on request. :class:`KeyEncryptionService` is that contract; the
key store speaks only to it, so moving to a KMS is a different object passed to
``KeyStore(directory, master_key=...)``, not a code change in the store. ``PDP_KMS`` chooses
it in ``KeyStore.from_settings``: ``local`` (this module's :class:`LocalMasterKey`) or
``pkcs11`` (:class:`~pdp.pseudonym.hsm.Pkcs11MasterKey`: a non-extractable key in an HSM that
wraps and unwraps inside the token).

A service implementation must: authenticate what it unwraps (raise :class:`UnwrapError`
when the wrapped bytes or the associated data do not match — a wrong key must fail, never
return garbage), bind the associated data, and never put key material in an exception or a
repr. ``kek_id`` names the service and key (e.g. ``"vault-transit:pdp-master"``) and is
stored next to each wrapped key, so a store wrapped by one service is not silently read with
another.

Local master key: AES-256-GCM with a random 96-bit nonce per wrap; wrapped form = nonce ‖
ciphertext ‖ tag (12 + 32 + 16 bytes for a 32-byte data key).

Example::

    key = LocalMasterKey.from_settings(get_settings())   # PDP_MASTER_KEY or PDP_MASTER_KEY_FILE
    wrapped = key.wrap(os.urandom(32), aad=b"pseudonym/1")
"""

from __future__ import annotations

import base64
import binascii
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

if TYPE_CHECKING:
    from pdp.config import Settings

__all__ = [
    "KeyEncryptionService",
    "KeyStoreError",
    "LocalMasterKey",
    "MasterKey",
    "MasterKeyError",
    "UnwrapError",
    "create_master_key_file",
    "master_key_from_settings",
]

MASTER_KEY_BYTES = 32
_NONCE_BYTES = 12
_MIN_DISTINCT_BYTES = 8  # 32 random bytes have ~30 distinct values; fewer than 8 means a placeholder


class KeyStoreError(Exception):
    """A key operation failed; the message is one line and never contains key material."""


class MasterKeyError(KeyStoreError):
    """The master key is missing, malformed, ambiguous or unsafely stored."""


class UnwrapError(KeyStoreError):
    """Wrapped bytes did not authenticate under the master key (wrong key or altered file)."""


@runtime_checkable
class KeyEncryptionService(Protocol):
    """Wraps and unwraps data keys under a master key it keeps (local, Vault transit, cloud KMS)."""

    @property
    def kek_id(self) -> str:
        """Names the service and key; stored beside each wrapped key."""
        ...

    def wrap(self, material: bytes, *, aad: bytes) -> bytes:
        """Encrypt and authenticate ``material`` bound to ``aad``."""
        ...

    def unwrap(self, wrapped: bytes, *, aad: bytes) -> bytes:
        """The material, or :class:`UnwrapError` if ``wrapped``/``aad`` do not authenticate."""
        ...


MasterKey = KeyEncryptionService
"""The name the key store uses for whatever holds the master key."""


class LocalMasterKey:
    """A master key held in this process, from ``PDP_MASTER_KEY`` or ``PDP_MASTER_KEY_FILE``.

    Only the AES-GCM object is kept (not the raw bytes as an attribute), and ``repr`` says
    where the key came from, never what it is.
    """

    kek_id = "local:aes-256-gcm"

    def __init__(self, material: bytes, *, origin: str) -> None:
        if len(material) != MASTER_KEY_BYTES:
            raise MasterKeyError(f"master key from {origin} must be {MASTER_KEY_BYTES} bytes (base64 of 32 bytes)")
        if len(set(material)) < _MIN_DISTINCT_BYTES:
            raise MasterKeyError(f"master key from {origin} is not random (a placeholder?): generate a new one")
        self._aead = AESGCM(material)
        self._origin = origin

    def __repr__(self) -> str:
        return f"LocalMasterKey(origin={self._origin!r})"

    @classmethod
    def from_base64(cls, text: str, *, origin: str) -> LocalMasterKey:
        """Decode standard or URL-safe base64 (whitespace ignored); errors never echo the text."""
        compact = "".join(text.split())
        try:
            if "-" in compact or "_" in compact:
                material = base64.urlsafe_b64decode(compact.encode("ascii"))
            else:
                material = base64.b64decode(compact.encode("ascii"), validate=True)
        except (binascii.Error, ValueError, UnicodeEncodeError):
            raise MasterKeyError(f"master key from {origin} is not valid base64") from None
        return cls(material, origin=origin)

    @classmethod
    def from_file(cls, path: Path) -> LocalMasterKey:
        """Read a key file: 32 raw bytes, or base64 text of 32 bytes.

        Refuses a file other users can read or write (like ssh): a readable master key file
        makes the whole key store readable.
        """
        origin = f"file {path}"
        try:
            info = path.stat()
            if not stat.S_ISREG(info.st_mode):
                raise MasterKeyError(f"master key {origin} is not a regular file")
            if info.st_mode & 0o077:
                raise MasterKeyError(f"master key {origin} is accessible to other users: chmod 600 it")
            data = path.read_bytes()
        except FileNotFoundError:
            raise MasterKeyError(f"master key {origin} does not exist") from None
        except PermissionError:
            raise MasterKeyError(f"master key {origin} is not readable") from None
        if len(data) == MASTER_KEY_BYTES:
            return cls(data, origin=origin)
        try:
            text = data.decode("ascii")
        except UnicodeDecodeError:
            raise MasterKeyError(f"master key {origin} is neither 32 raw bytes nor base64 text") from None
        return cls.from_base64(text, origin=origin)

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalMasterKey:
        """The master key named by the settings: exactly one of PDP_MASTER_KEY, PDP_MASTER_KEY_FILE."""
        inline = settings.master_key.get_secret_value() if settings.master_key is not None else None
        if inline is not None and not inline.strip():
            inline = None
        if inline is not None and settings.master_key_file is not None:
            raise MasterKeyError("both PDP_MASTER_KEY and PDP_MASTER_KEY_FILE are set: keep only one")
        if inline is not None:
            return cls.from_base64(inline, origin="PDP_MASTER_KEY")
        if settings.master_key_file is not None:
            return cls.from_file(Path(settings.master_key_file))
        raise MasterKeyError("no master key: set PDP_MASTER_KEY (base64 of 32 random bytes) or PDP_MASTER_KEY_FILE")

    def wrap(self, material: bytes, *, aad: bytes) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, material, aad)

    def unwrap(self, wrapped: bytes, *, aad: bytes) -> bytes:
        if len(wrapped) <= _NONCE_BYTES + 16:
            raise UnwrapError("wrapped key is truncated")
        try:
            return self._aead.decrypt(wrapped[:_NONCE_BYTES], wrapped[_NONCE_BYTES:], aad)
        except InvalidTag:
            raise UnwrapError("master key does not open the key store") from None


def master_key_from_settings(settings: Settings) -> KeyEncryptionService:
    """The master key ``PDP_KMS`` names: the local key, or the PKCS#11 token's key (fails closed).

    The one place a service is chosen: the key store and the audit signing keys both open theirs here.
    """
    if settings.kms == "pkcs11":
        from pdp.pseudonym.hsm import Pkcs11MasterKey

        return Pkcs11MasterKey.from_settings(settings)
    return LocalMasterKey.from_settings(settings)


def create_master_key_file(path: Path) -> Path:
    """Write a new random master key (base64 text, mode 0600) to ``path``; refuses to overwrite.

    For development and the demo. In production, generate the key where it will live (a
    secret manager, a KMS) and point PDP_MASTER_KEY_FILE at it, or use a KMS service.
    Losing this file makes every key, hence every pseudonym linkage and the vault, unreadable.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    text = base64.b64encode(os.urandom(MASTER_KEY_BYTES)) + b"\n"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise MasterKeyError(f"master key file {path} already exists: refusing to overwrite it") from None
    try:
        os.write(fd, text)
        os.fsync(fd)
    finally:
        os.close(fd)
    return path
