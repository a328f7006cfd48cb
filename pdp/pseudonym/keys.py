"""Versioned data keys, envelope-encrypted under a master key: the key store.

Why versioned keys: a pseudonym is only as secret as its key; when a key must change (a
suspected leak, a scheduled rotation), every pseudonym changes with it, and the lake must be
re-pseudonymised without losing linkage. Versions let old and new keys coexist while that
happens, and every pseudonym carries the version that made it (``v2:...``).

Independent key series, one per purpose: ``"pseudonym"`` (HMAC keys of the pseudonyms),
``"vault"`` (AES-GCM keys of the identity vault), ``"record"`` (keyed hashes that recognise a
record already ingested) and ``"nametoken"`` (keyed hashes of the vault's name tokens, the only
key the leak scanner needs: :mod:`pdp.pseudonym.name_tokens`) and ``"opposition"`` (keyed hashes of
an opposed person's canonical identities, stable across pseudonym-key rotations, so an opposition
outlives them) and ``"seal"`` (an X25519 key pair: the edge seals identity observations to its
public key, only re-identification opens them with the private key: :mod:`pdp.pseudonym.sealing`)
and ``"serving"`` (AES-GCM key of re-identification's cache of merged identities, which only
the serving side holds) and ``"psi"`` (the secret the PSI servers' keys are derived from, one per
registry version: :mod:`pdp.pseudonym.psi`; serving side only).
Holding one never opens another.

Public keys: a ``seal`` file also carries its public key and an *attestation* (the public key
wrapped by the master key, associated data = format + purpose + version + ``public``).
:meth:`KeyStore.public` checks the attestation and returns the public key without unwrapping
the private one, and opening the store checks a ``seal`` file through its attestation too: a
process that only seals (the edge) never has the private key in memory.

Life cycle of a version (status is reported, never chosen by the caller)::

    current   the newest active version: the one new pseudonyms / vault records use
    previous  an older active version: still readable, to verify old pseudonyms and to
              re-pseudonymise (or re-encrypt) what it made, until it is retired
    retired   no longer used to produce anything; still returned by ``get`` so that vault
              records not yet re-encrypted stay readable (the pseudonymiser refuses it)

Rotation adds version N+1, which becomes current; version N becomes previous *by
derivation* (current = highest active version), so a rotation is one atomic file creation
and a crash can never leave two current keys nor none. Retiring rewrites one file. The
current version cannot be retired (rotate first). Destroying a retired version (deleting its
file) is deliberately not an operation here: it makes the old vault records unreadable, and
is a governance decision made after re-encryption.

On disk: one JSON file per version, ``<purpose>-v<N>.json`` in ``settings.key_store``
(directory 0700, files 0600, written to a temporary file then linked/replaced atomically),
holding the data key wrapped by the master key (AES-256-GCM, random 96-bit nonce, associated
data = format + purpose + version, so a file renamed to another version fails), its
``created_at``, ``status`` (``active``/``retired``) and ``retired_at``. No raw key byte is
ever written. Opening the store unwraps every file: a wrong master key, or an altered file,
fails there with ``KeyStoreError("master key does not open the key store")`` before
anything can be written.

Example::

    store = KeyStore.from_settings()       # fails closed without a (right) master key
    store.init()                           # pseudonym v1, vault v1
    key = store.current("pseudonym")       # DataKey(purpose='pseudonym', version=1, status='current', ...)
    store.rotate("pseudonym")              # v2 current, v1 previous
    store.retire("pseudonym", 1)           # after re-pseudonymisation
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import stat
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

from pydantic import BaseModel, ConfigDict, ValidationError

from pdp.pseudonym.kms import (
    KeyEncryptionService,
    KeyStoreError,
    MasterKey,
    MasterKeyError,
    UnwrapError,
    master_key_from_settings,
)

if TYPE_CHECKING:
    from pdp.config import Settings

__all__ = [
    "DataKey",
    "KeyInfo",
    "KeyStatus",
    "KeyStore",
    "KeyStoreError",
    "MasterKey",
    "MasterKeyError",
    "PublicKey",
    "Purpose",
    "keys_init",
    "keys_rotate",
    "keys_status",
]

Purpose = Literal["pseudonym", "vault", "record", "nametoken", "opposition", "seal", "serving", "psi"]
KeyStatus = Literal["current", "previous", "retired"]
PURPOSES: tuple[Purpose, ...] = get_args(Purpose)
_ORIGINAL_PURPOSES: tuple[Purpose, ...] = ("pseudonym", "vault")
DATA_KEY_BYTES = 32
_FORMAT = "pdp-key/1"
# Purposes whose material is an X25519 private key with a published public key.
_KEY_PAIRS: tuple[Purpose, ...] = ("seal",)
# Keys only the serving side (re-identification) uses: opening the store does not unwrap them.
_SERVING_SIDE: tuple[Purpose, ...] = ("seal", "serving", "psi")
_FILE_NAME = re.compile(r"(?P<purpose>[a-z]+)-v(?P<version>[1-9][0-9]{0,8})\.json")


@dataclass(frozen=True, slots=True)
class DataKey:
    """One version of a data key. ``material`` (32 bytes) never appears in repr or str."""

    purpose: Purpose
    version: int
    material: bytes = field(repr=False)
    status: KeyStatus

    def __repr__(self) -> str:
        return f"DataKey(purpose={self.purpose!r}, version={self.version}, status={self.status!r}, material=<hidden>)"

    __str__ = __repr__


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What ``pdp keys status`` shows of a version: everything but the material."""

    purpose: Purpose
    version: int
    status: KeyStatus
    created_at: datetime
    retired_at: datetime | None = None


class _KeyRecord(BaseModel):
    """The JSON of one key file (unknown fields refused: a file we do not understand is an error)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["pdp-key/1"]
    purpose: Purpose
    version: int
    status: Literal["active", "retired"]
    created_at: datetime
    retired_at: datetime | None = None
    kek: str
    wrapped: str
    public_key: str | None = None  # key pairs only: raw X25519 public key, base64
    attest: str | None = None  # key pairs only: the public key wrapped by the master key


@dataclass(frozen=True, slots=True)
class PublicKey:
    """The public half of a key pair version (raw 32 bytes): safe to hand to any process."""

    purpose: Purpose
    version: int
    raw: bytes


def _aad(purpose: str, version: int) -> bytes:
    return f"{_FORMAT}\x1f{purpose}\x1f{version}".encode("ascii")


def _public_aad(purpose: str, version: int) -> bytes:
    return _aad(purpose, version) + b"\x1fpublic"


def _check_purpose(purpose: str) -> Purpose:
    if purpose not in PURPOSES:
        raise KeyStoreError(f"unknown key purpose {purpose!r}: expected one of {', '.join(PURPOSES)}")
    return purpose  # type: ignore[return-value]


class KeyStore:
    """Versioned, envelope-encrypted data keys in one directory (see the module docstring).

    ``master_key`` is any :class:`~pdp.pseudonym.kms.KeyEncryptionService`: the local key by
    default (:meth:`from_settings`), a KMS client in production. Construction verifies that the
    master key opens every existing key file, and raises :class:`KeyStoreError` otherwise.
    """

    def __init__(self, directory: Path, master_key: KeyEncryptionService) -> None:
        self._dir = Path(directory)
        self._kek = master_key
        for record in self._records():
            if record.purpose in _KEY_PAIRS:
                self._public(record)  # checked through the attestation: the private key stays wrapped
            elif record.purpose not in _SERVING_SIDE:  # checked when used, never unwrapped by the edge
                self._unwrap(record)

    def __repr__(self) -> str:
        return f"KeyStore(directory={str(self._dir)!r}, master_key={self._kek.kek_id!r})"

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> KeyStore:
        """The key store of the settings, opened with the master key ``PDP_KMS`` selects.

        ``local`` (default): PDP_MASTER_KEY or PDP_MASTER_KEY_FILE. ``pkcs11``: the non-extractable
        key ``PDP_PKCS11_KEY_LABEL`` of token ``PDP_PKCS11_TOKEN`` (:mod:`pdp.pseudonym.hsm`).
        Fails closed: no master key, a malformed one, both PDP_MASTER_KEY and
        PDP_MASTER_KEY_FILE, an unreachable or misconfigured token, a key that does not open the
        existing files, or files wrapped by another master key → KeyStoreError.
        """
        if settings is None:
            from pdp.config import get_settings

            settings = get_settings()
        return cls(Path(settings.key_store), master_key_from_settings(settings))

    @property
    def directory(self) -> Path:
        return self._dir

    # --- operations -----------------------------------------------------------------------

    def init(self) -> None:
        """Create version 1 of each purpose; refuses a store that already holds any key."""
        existing = self._records()
        if existing:
            purposes = {r.purpose for r in existing}
            if purposes == set(PURPOSES) or "pseudonym" in purposes:  # newer purposes come through `ensure`
                raise KeyStoreError(f"key store {self._dir} is already initialised")
            raise KeyStoreError(
                f"key store {self._dir} is partly initialised (an interrupted init?): "
                "no key of it can have been used; remove the directory and run init again"
            )
        for purpose in PURPOSES:
            self._create(purpose, 1)

    def ensure(self, purpose: Purpose) -> DataKey:
        """The current key of `purpose`, creating version 1 if this store predates the purpose.

        Why: purposes are added over time (``record``, the keyed hash that recognises a record
        already ingested, came after ``pseudonym`` and ``vault``); a store initialised before
        must not need to be rebuilt, which would lose every pseudonym.
        """
        purpose = _check_purpose(purpose)
        if not any(r.purpose == purpose for r in self._records()):
            if not self._records():
                raise KeyStoreError(f"key store {self._dir} is not initialised: run `pdp keys init`")
            self._create(purpose, 1)
        return self.current(purpose)

    def create_missing(self, purpose: Purpose) -> int:
        """Create version 1 of `purpose` if this store predates it, without unwrapping anything.

        What the edge calls for the serving-side keys (``seal``, ``serving``) on a store made
        before them: the key exists afterwards, and the edge never held its material.
        Returns the current version.
        """
        purpose = _check_purpose(purpose)
        if not any(r.purpose == purpose for r in self._records()):
            if not self._records():
                raise KeyStoreError(f"key store {self._dir} is not initialised: run `pdp keys init`")
            self._create(purpose, 1)
        return [r for r in self._series(purpose) if r.status == "active"][-1].version

    def current(self, purpose: Purpose) -> DataKey:
        """The version new pseudonyms / vault records must use."""
        records = self._series(_check_purpose(purpose))
        active = [r for r in records if r.status == "active"]
        return self._data_key(active[-1], "current")

    def get(self, purpose: Purpose, version: int) -> DataKey:
        """Any version, retired ones included (old vault records stay readable until re-encrypted)."""
        records = self._series(_check_purpose(purpose))
        for record in records:
            if record.version == version:
                return self._data_key(record, self._status(record, records))
        raise KeyStoreError(f"no {purpose} key version {version} in {self._dir}")

    def public(self, purpose: Purpose, version: int | None = None) -> PublicKey:
        """The public key of a key-pair purpose (current version by default), attestation checked.

        Never unwraps the private key: what the edge calls to seal.
        """
        purpose = _check_purpose(purpose)
        if purpose not in _KEY_PAIRS:
            raise KeyStoreError(f"{purpose} keys are symmetric: they have no public key")
        records = self._series(purpose)
        if version is None:
            active = [r for r in records if r.status == "active"]
            record = active[-1]
        else:
            found = [r for r in records if r.version == version]
            if not found:
                raise KeyStoreError(f"no {purpose} key version {version} in {self._dir}")
            record = found[0]
        return PublicKey(purpose, record.version, self._public(record))

    def rotate(self, purpose: Purpose) -> DataKey:
        """Add a new version, which becomes current; the former current becomes previous."""
        records = self._series(_check_purpose(purpose))
        new = self._create(purpose, records[-1].version + 1)
        return self._data_key(new, "current")

    def retire(self, purpose: Purpose, version: int) -> None:
        """Stop using a previous version (after re-pseudonymisation); retiring twice is a no-op."""
        records = self._series(_check_purpose(purpose))
        record = next((r for r in records if r.version == version), None)
        if record is None:
            raise KeyStoreError(f"no {purpose} key version {version} in {self._dir}")
        if self._status(record, records) == "current":
            raise KeyStoreError(f"{purpose} v{version} is the current key: rotate before retiring it")
        if record.status == "retired":
            return
        self._unwrap(record)  # the master key must open what it rewrites
        retired = record.model_copy(update={"status": "retired", "retired_at": datetime.now(UTC)})
        self._write(retired, replace=True)

    def status(self) -> list[KeyInfo]:
        """Every version of every purpose (purpose, then version order); never the material."""
        out: list[KeyInfo] = []
        records = self._records()
        if records:
            for purpose in PURPOSES:
                series = self._series(purpose, records)
                out.extend(
                    KeyInfo(r.purpose, r.version, self._status(r, series), r.created_at, r.retired_at) for r in series
                )
        return out

    # --- internals ------------------------------------------------------------------------

    def _check_directory(self) -> bool:
        """False if the directory does not exist yet; refuses one other users can access."""
        try:
            info = self._dir.stat()
        except FileNotFoundError:
            return False
        if not stat.S_ISDIR(info.st_mode):
            raise KeyStoreError(f"key store {self._dir} is not a directory")
        if info.st_mode & 0o077:
            raise KeyStoreError(f"key store {self._dir} is accessible to other users: chmod 700 it")
        return True

    def _records(self) -> list[_KeyRecord]:
        """Every key file, parsed (not unwrapped), sorted by purpose then version."""
        if not self._check_directory():
            return []
        records: list[_KeyRecord] = []
        for path in self._dir.iterdir():
            match = _FILE_NAME.fullmatch(path.name)
            if match is None:
                continue  # temporary files of an interrupted write, or anything else: not keys
            try:
                record = _KeyRecord.model_validate_json(path.read_bytes())
            except (ValidationError, ValueError):
                raise KeyStoreError(f"key file {path.name} is malformed") from None
            except OSError:
                raise KeyStoreError(f"key file {path.name} is not readable") from None
            if record.purpose != match["purpose"] or record.version != int(match["version"]):
                raise KeyStoreError(f"key file {path.name} does not hold the key its name says")
            records.append(record)
        return sorted(records, key=lambda r: (PURPOSES.index(r.purpose), r.version))

    def _series(self, purpose: Purpose, records: list[_KeyRecord] | None = None) -> list[_KeyRecord]:
        """The versions of one purpose, checked: initialised, contiguous, newest active."""
        records = self._records() if records is None else records
        if not records:
            raise KeyStoreError(f"key store {self._dir} is not initialised: run `pdp keys init`")
        missing = set(PURPOSES) - {r.purpose for r in records}
        # A purpose added after the store was made (record, nametoken) is created by `ensure`;
        # only the original ones, or the one asked for, make the store incomplete.
        if missing & set(_ORIGINAL_PURPOSES) or purpose in missing:
            raise KeyStoreError(f"key store {self._dir} has no {sorted(missing)[0]} key: it is incomplete")
        series = [r for r in records if r.purpose == purpose]
        if [r.version for r in series] != list(range(1, len(series) + 1)):
            raise KeyStoreError(f"key store {self._dir}: {purpose} key versions are not contiguous from 1")
        if series[-1].status != "active":
            raise KeyStoreError(f"key store {self._dir}: the newest {purpose} key is retired")
        return series

    @staticmethod
    def _status(record: _KeyRecord, series: list[_KeyRecord]) -> KeyStatus:
        if record.status == "retired":
            return "retired"
        return "current" if record.version == series[-1].version else "previous"

    def _unwrap(self, record: _KeyRecord) -> bytes:
        if record.kek != self._kek.kek_id:
            raise KeyStoreError(
                f"key file {record.purpose}-v{record.version} was wrapped by {record.kek!r}, "
                f"not by the configured master key {self._kek.kek_id!r}"
            )
        try:
            wrapped = base64.b64decode(record.wrapped, validate=True)
        except ValueError:
            raise KeyStoreError(f"key file {record.purpose}-v{record.version} is malformed") from None
        try:
            material = self._kek.unwrap(wrapped, aad=_aad(record.purpose, record.version))
        except UnwrapError:
            raise KeyStoreError("master key does not open the key store") from None
        if len(material) != DATA_KEY_BYTES:
            raise KeyStoreError(f"key {record.purpose}-v{record.version} is not {DATA_KEY_BYTES} bytes")
        return material

    def _public(self, record: _KeyRecord) -> bytes:
        name = f"{record.purpose}-v{record.version}"
        if record.public_key is None or record.attest is None:
            raise KeyStoreError(f"key file {name} has no attested public key")
        try:
            raw = base64.b64decode(record.public_key, validate=True)
            attest = base64.b64decode(record.attest, validate=True)
        except ValueError:
            raise KeyStoreError(f"key file {name} is malformed") from None
        if record.kek != self._kek.kek_id:
            raise KeyStoreError(f"key file {name} was wrapped by {record.kek!r}, not by the configured master key")
        try:
            attested = self._kek.unwrap(attest, aad=_public_aad(record.purpose, record.version))
        except UnwrapError:
            raise KeyStoreError("master key does not open the key store") from None
        if attested != raw or len(raw) != DATA_KEY_BYTES:
            raise KeyStoreError(f"key file {name}: its public key does not match its attestation")
        return raw

    def _data_key(self, record: _KeyRecord, status: KeyStatus) -> DataKey:
        return DataKey(record.purpose, record.version, self._unwrap(record), status)

    def _create(self, purpose: Purpose, version: int) -> _KeyRecord:
        material = secrets.token_bytes(DATA_KEY_BYTES)
        wrapped = self._kek.wrap(material, aad=_aad(purpose, version))
        public: dict[str, str] = {}
        if purpose in _KEY_PAIRS:
            from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
            from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

            raw = X25519PrivateKey.from_private_bytes(material).public_key().public_bytes(
                Encoding.Raw, PublicFormat.Raw)
            public = {
                "public_key": base64.b64encode(raw).decode("ascii"),
                "attest": base64.b64encode(self._kek.wrap(raw, aad=_public_aad(purpose, version))).decode("ascii"),
            }
        record = _KeyRecord(
            format=_FORMAT,
            purpose=purpose,
            version=version,
            status="active",
            created_at=datetime.now(UTC),
            kek=self._kek.kek_id,
            wrapped=base64.b64encode(wrapped).decode("ascii"),
            **public,
        )
        self._write(record, replace=False)
        return record

    def _write(self, record: _KeyRecord, *, replace: bool) -> None:
        """Write atomically: temp file (0600, fsync), then link (new: never overwrites) or replace."""
        if not self._check_directory():
            self._dir.mkdir(parents=True, mode=0o700, exist_ok=True)
            os.chmod(self._dir, 0o700)  # mkdir's mode is filtered by the umask
        final = self._dir / f"{record.purpose}-v{record.version}.json"
        tmp = self._dir / f".{final.name}.{secrets.token_hex(8)}.tmp"
        payload = json.dumps(record.model_dump(mode="json"), indent=2).encode("utf-8") + b"\n"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            try:
                os.write(fd, payload)
                os.fsync(fd)
            finally:
                os.close(fd)
            if replace:
                os.replace(tmp, final)
            else:
                try:
                    os.link(tmp, final)
                except FileExistsError:
                    raise KeyStoreError(
                        f"{record.purpose} key v{record.version} already exists (a concurrent rotation?)"
                    ) from None
        finally:
            tmp.unlink(missing_ok=True)
        dir_fd = os.open(self._dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


# --- command helpers (the `pdp keys` Typer commands call these) ----------------------------


def keys_init(settings: Settings | None = None) -> str:
    """`pdp keys init`: create the first version of every purpose; returns a one-line summary."""
    store = KeyStore.from_settings(settings)
    store.init()
    versions = ", ".join(f"{info.purpose} v{info.version}" for info in store.status())
    return f"key store initialised in {store.directory}: {versions}"


def keys_status(settings: Settings | None = None) -> list[KeyInfo]:
    """`pdp keys status`: every version with its status and dates (opens the store: checks the master key)."""
    return KeyStore.from_settings(settings).status()


def keys_rotate(settings: Settings | None, purpose: str) -> DataKey:
    """`pdp keys rotate`: a new current version of ``purpose`` (re-pseudonymising the lake is the caller's)."""
    return KeyStore.from_settings(settings).rotate(_check_purpose(purpose))
