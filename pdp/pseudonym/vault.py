"""The identity vault: pseudonym → identity traits, GP and contact, in the governance store.

Why a vault: the lake holds pseudonyms only, yet care coordination must, for an authorised
purpose, reach the person behind a pseudonym (call the patient, tell the GP). The identity is
therefore kept apart from the lake, in the governance store, in two parts with two keys:

- **Sealed observations** (``identity_vault_seal``, append-only): each record the edge sees is
  sealed to the public half of the ``seal`` key pair (:mod:`pdp.pseudonym.sealing`; associated
  data = a random sealing id; a ``bind`` tag under the ``vault`` key ties the box to its
  pseudonym, so a box moved to another pseudonym is refused, and renaming a person re-binds
  boxes without opening them). The edge cannot open what it sealed: only :meth:`get_many`
  (re-identification) and :meth:`reseal` (seal-key rotation) use the private key; writers open
  the vault through :class:`EdgeKeys`, which refuses it.
- **The linkage view** (``identity_vault``): per pseudonym, only :data:`LINKAGE_TRAITS` (what
  linkage compares and key rotation re-keys), AES-256-GCM under the current ``vault`` data key,
  a key distinct from the pseudonymisation key; one random 96-bit nonce per encryption; the
  associated data is the pseudonym, so a ciphertext copied onto another row fails.
- Plaintexts are padded to a multiple of 128 bytes, so a ciphertext's length does not tell a
  short name from a long one. Rows hold pseudonyms, key versions, nonces or ephemeral keys,
  ciphertexts, counts and timestamps: the database file holds no plaintext identity (a test greps it).

Merge rule (applied to the linkage view at each upsert, and to the sealed observations, in
arrival order, at re-identification): field by field. A field missing from the incoming record never erases
the stored value (erasure is :meth:`IdentityVault.delete`). A present field replaces the stored
one unless the stored value was observed strictly later than the incoming record
(``VaultRecord.observed_at``; a record without a date ranks as the oldest observation, and
among equal dates the last write wins). Observation dates are kept per field inside the
ciphertext, so a newer address does not let an older record's phone number overwrite a newer
one. ``source_count`` counts the source records merged into the row.

Re-identification goes through :func:`pdp.pseudonym.reidentify.reidentify`, which checks actor,
purpose, policy and opposition and records the call; :meth:`IdentityVault.get_many` is the
internal read it uses. The list of every decrypting path, and why, is in the README ("Ways
into the vault") and enforced by ``tests/governance/test_vault_access_paths.py``.

Blocking index (``identity_vault_blocking``): beside each row, the keyed hashes of its
linkage blocking keys (:mod:`pdp.pseudonym.blocking`), kept in step by every write (upsert,
rekey, repseudonymise, delete), so :meth:`IdentityVault.linkable` decrypts only the persons a
batch could be linked to instead of the whole vault. Rows written before the index existed
are indexed on the first :meth:`~IdentityVault.linkable` call. Cost, measured (2 shared cores,
20 000 new persons, SQLite, CPU time): inserts 29 700 → 9 500 records/s (normalising the traits,
eight keyed hashes and index rows per person); an update that leaves the linkage traits alone
writes no index row.

Nothing here logs or raises with an identity value: messages name pseudonyms and counts only.

Re-identification's cache (``identity_vault_merged``, under the ``serving`` key the edge never
holds): :meth:`get_many` folds a person's boxes once and writes the fold back, so a worklist
read is one AES-GCM decryption per person, not one X25519 exchange per box; :meth:`compact`
folds everything new ahead of serving.

Measured: ``pdp bench vault`` (write, merge, cold and warm re-identification, and sealing
against AES-GCM); the last figures and the load they were taken at are in the README ("Ways
into the vault").

Example::

    vault = IdentityVault(make_engine(), KeyStore.from_settings())
    vault.upsert("P1…", VaultRecord(birth_name="MARTIN", gp_rpps="10001234567"))
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from itertools import islice
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    Engine,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    and_,
    bindparam,
    delete,
    exists,
    func,
    select,
    update,
)

from pdp.governance.db import bulk_insert, create_all, make_engine, metadata
from pdp.pseudonym.normalise import INSEE_CODE, RPPS_NUMBER, compact_code

if TYPE_CHECKING:
    from pdp.config import Settings
    from pdp.pseudonym.blocking import BlockHasher
    from pdp.pseudonym.name_tokens import NameTokenHasher
    from pdp.pseudonym.normalise import CanonicalIdentity
    from pdp.pseudonym.sealing import Opener

__all__ = [
    "LINKAGE_TRAITS",
    "SEAL_KEY_PURPOSE",
    "VAULT_KEY_PURPOSE",
    "EdgeKeys",
    "IdentityVault",
    "PreparedWrite",
    "UpsertResult",
    "VaultError",
    "VaultRecord",
    "check_pseudonym",
    "linkage_blocks",
    "prepare_writes",
]

logger = logging.getLogger(__name__)

VAULT_KEY_PURPOSE = "vault"
_NONCE_BYTES = 12
_KEY_BYTES = 32
_PAD_TO = 128
_ENVELOPE_FORMAT = 1
_AAD_PREFIX = b"pdp/identity_vault/v1\x00"
_DEFAULT_BATCH = 500
_KNOWN_CHUNK = 20_000  # known persons opened per round by known_chunks

# A pseudonym is an opaque token: letters, digits and `_ . : -`, 16 to 128 characters, not all
# digits. The check keeps a NIR, a phone number, an e-mail or a name from being used as a
# primary key by mistake, which would put it in clear in the database.
_PSEUDONYM_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{15,127}")

identity_vault = Table(
    "identity_vault",
    metadata,
    Column("pseudonym", String(128), primary_key=True),
    Column("key_version", Integer, nullable=False),
    Column("nonce", LargeBinary(_NONCE_BYTES), nullable=False),
    Column("ciphertext", LargeBinary, nullable=False),
    Column("source_count", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_identity_vault_key_version", "key_version"),
)

# Append-only identity observations, each sealed by the edge to the ``seal`` public key
# (:mod:`pdp.pseudonym.sealing`): the edge writes them and cannot read them back; only
# re-identification (``get_many``) holds the private key and merges them. The box's associated
# data is its random sealing id; ``bind`` (HMAC of sealing id and pseudonym under a key derived
# from the ``vault`` key) ties the box to its pseudonym, so renaming a person (linkage, key
# rotation) re-binds rows without opening them, and a row moved to another pseudonym is refused.
_BoxId = BigInteger().with_variant(Integer(), "sqlite")  # 64-bit; SQLite's rowid already is

identity_vault_seal = Table(
    "identity_vault_seal",
    metadata,
    Column("id", _BoxId, primary_key=True, autoincrement=True),  # arrival order: the merge order
    Column("sealing_id", String(32), nullable=False, unique=True),
    Column("pseudonym", String(128), nullable=False),
    Column("bind", String(64), nullable=False),
    Column("bind_version", Integer, nullable=False),  # vault key version of the bind
    Column("key_version", Integer, nullable=False),  # seal key version of the box
    Column("enc", LargeBinary(32), nullable=False),  # the sealer's ephemeral public key
    Column("ciphertext", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_identity_vault_seal_pseudonym", "pseudonym"),
)

# Re-identification's cache of merged identities, under the ``serving`` key (which the edge
# never holds): the fold of a person's boxes up to ``through_id``, so a worklist of 1 500
# persons costs AES-GCM reads, not 1 500 X25519 exchanges. Derived data: renaming or erasing
# a person drops the row, and the next re-identification folds the boxes again.
identity_vault_merged = Table(
    "identity_vault_merged",
    metadata,
    Column("pseudonym", String(128), primary_key=True),
    Column("key_version", Integer, nullable=False),
    Column("nonce", LargeBinary(_NONCE_BYTES), nullable=False),
    Column("ciphertext", LargeBinary, nullable=False),
    Column("through_id", _BoxId, nullable=False),  # the last box folded in
    Column("boxes", Integer, nullable=False),  # how many boxes the fold holds: checked before a write-back
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

identity_vault_blocking = Table(
    "identity_vault_blocking",
    metadata,
    Column("pseudonym", String(128), primary_key=True),
    Column("block", String(32), primary_key=True),  # keyed hash (see pdp.pseudonym.blocking), or _INDEXED
    Column("key_version", Integer, nullable=False),
    Index("ix_identity_vault_blocking_block", "block"),
)
# One per indexed row, so rows written before the index existed are found; "*3": blocking keys,
# name tokens, and the row is a linkage view whose full record is sealed (rows marked "*" or
# "*2" by earlier code hold the full record under the vault key: they are upgraded).
_INDEXED = "*3"

# Keyed by a holder id, HMAC(pseudonym) under a key derived from the ``opposition`` key, not by
# the pseudonym: the scanner (which holds the ``nametoken`` key only) can group a person's
# tokens but cannot tie a dictionary of hashed names to a pseudonym.
identity_vault_name_tokens = Table(
    "identity_vault_name_token",
    metadata,
    Column("holder", String(32), primary_key=True),
    Column("kind", String(8), primary_key=True),  # surname | exact | first | address | anchor
    Column("token", String(32), primary_key=True),  # keyed hash (pdp.pseudonym.name_tokens)
    Column("size", Integer, nullable=False),  # tokens in the phrase
)
NAME_TOKEN_PURPOSE = "nametoken"
SEAL_KEY_PURPOSE = "seal"
SERVING_KEY_PURPOSE = "serving"
_MERGED_AAD_PREFIX = b"pdp/identity_vault_merged/v1\x00"

# What the linkage view (``identity_vault``, under the symmetric ``vault`` key the edge holds)
# keeps of a person: what linkage compares and what key rotation re-keys. Address, phone,
# e-mail and GP are only in the sealed observations.
LINKAGE_TRAITS: tuple[str, ...] = (
    "birth_name", "used_name", "first_names", "sex", "birth_date", "birth_place", "nir", "canonical")
_SEAL_AAD_PREFIX = b"pdp/identity_vault_seal/v1\x00"
_BIND_PREFIX = b"pdp/identity_vault_seal/bind/v1\x00"


class VaultError(Exception):
    """A vault operation failed; the message names pseudonyms and counts, never identity values."""


def check_pseudonym(value: object) -> str:
    """``value`` if it has the shape of a pseudonym, else :class:`VaultError` (value not echoed)."""
    if not isinstance(value, str) or not _PSEUDONYM_RE.fullmatch(value) or value.isdigit():
        raise VaultError("identity vault: malformed pseudonym refused (value not shown)")
    return value


class _DataKey(Protocol):
    version: int
    material: bytes


class KeySource(Protocol):
    """The part of :class:`pdp.pseudonym.keys.KeyStore` the vault uses."""

    def current(self, purpose: str) -> _DataKey: ...

    def get(self, purpose: str, version: int) -> _DataKey: ...


_SEX_ALIASES = {"M": "M", "H": "M", "1": "M", "F": "F", "2": "F", "U": "U", "I": "U", "9": "U", "0": "U"}


class VaultRecord(BaseModel):
    """Identity traits, GP and contact of one person, as the edge normalised them.

    Every field is optional (sources know different things), but a record must carry at least
    one trait. ``observed_at`` is when the source saw these values; it drives the merge rule.
    ``repr``/``str`` show field names only, so a record printed in a log or a failing test
    shows no identity value; validation errors hide their input for the same reason.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True, hide_input_in_errors=True)

    birth_name: str | None = Field(None, max_length=200)
    used_name: str | None = Field(None, max_length=200)
    first_names: tuple[str, ...] | None = None
    sex: Literal["M", "F", "U"] | None = None
    birth_date: date | None = None
    birth_place: str | None = Field(None, max_length=120, description="INSEE commune or country code, or a name.")
    nir: str | None = Field(None, pattern=r"^[12378][0-9]{4}(?:[0-9]{2}|2[AB])[0-9]{6}(?:[0-9]{2})?$")
    gp_rpps: str | None = Field(
        None, pattern=f"^{RPPS_NUMBER.pattern}$", description="RPPS number of the GP (médecin traitant)."
    )
    address_line: str | None = Field(None, max_length=300)
    postcode: str | None = Field(None, pattern=r"^[0-9]{5}$")
    commune_code: str | None = Field(None, pattern=f"^{INSEE_CODE.pattern}$")
    phone: str | None = Field(None, max_length=32)
    email: str | None = Field(None, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")
    observed_at: date | None = Field(None, description="When the source observed these values (merge order).")
    canonical: str | None = Field(
        None,
        max_length=400,
        description="Base64 of the canonical identity bytes that made the pseudonym: what key rotation re-keys."
        " Set once, never replaced by a later record (a record linked to this person by probabilistic"
        " matching has other canonical bytes).",
    )

    TRAITS: ClassVar[tuple[str, ...]] = (
        "birth_name",
        "used_name",
        "first_names",
        "sex",
        "birth_date",
        "birth_place",
        "nir",
        "gp_rpps",
        "address_line",
        "postcode",
        "commune_code",
        "phone",
        "email",
        "canonical",
    )

    @field_validator("*", mode="before")
    @classmethod
    def _blank_is_missing(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("first_names", mode="before")
    @classmethod
    def _first_names(cls, value: Any) -> Any:
        if isinstance(value, str):
            return (value,)
        if isinstance(value, list | tuple):
            names = tuple(str(name).strip() for name in value if str(name).strip())
            return names or None
        return value

    @field_validator("sex", mode="before")
    @classmethod
    def _sex(cls, value: Any) -> Any:
        if isinstance(value, str | int):
            return _SEX_ALIASES.get(str(value).strip().upper(), value)
        return value

    @field_validator("nir", "postcode", "commune_code", "gp_rpps", mode="before")
    @classmethod
    def _compact_code(cls, value: Any) -> Any:
        if isinstance(value, str):
            return compact_code(value)
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> VaultRecord:
        if not self.present_traits():
            raise ValueError("a vault record must carry at least one identity, GP or contact trait")
        return self

    def present_traits(self) -> tuple[str, ...]:
        """Names of the traits this record carries (for messages: names, never values)."""
        return tuple(name for name in self.TRAITS if getattr(self, name) is not None)

    def __repr__(self) -> str:
        return f"VaultRecord(<redacted: {', '.join(self.present_traits())}>)"

    def __str__(self) -> str:
        return self.__repr__()

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        return iter(())

    def __rich_repr__(self) -> Iterator[Any]:
        yield f"<redacted: {', '.join(self.present_traits())}>"


@dataclass(frozen=True)
class UpsertResult:
    """What an upsert did: distinct pseudonyms given a new row, and existing rows merged into; of the new
    rows, those copied in as prepared elsewhere (:meth:`IdentityVault.write_prepared`)."""

    inserted: int = 0
    updated: int = 0
    prepared: int = 0


@dataclass
class _Stored:
    """A decrypted row: trait values and, per trait, the date it was observed (ISO or None)."""

    values: dict[str, Any] = field(default_factory=dict)
    observed: dict[str, str | None] = field(default_factory=dict)

    def merge(self, record: VaultRecord, traits: tuple[str, ...] = VaultRecord.TRAITS) -> None:
        incoming = record.model_dump(mode="json", exclude_none=True)
        incoming_date = record.observed_at.isoformat() if record.observed_at else None
        for name in traits:
            if name not in incoming:
                continue
            if name == "canonical" and name in self.values:
                continue  # the identity that made the pseudonym never changes (see VaultRecord.canonical)
            if name not in self.values or _rank(incoming_date) >= _rank(self.observed.get(name)):
                self.values[name] = incoming[name]
                self.observed[name] = incoming_date

    def linkage_only(self) -> _Stored:
        """The linkage view's part of this state."""
        keep = [n for n in LINKAGE_TRAITS if n in self.values]
        return _Stored(values={n: self.values[n] for n in keep}, observed={n: self.observed.get(n) for n in keep})

    def to_record(self) -> VaultRecord:
        dates = [d for d in self.observed.values() if d]
        return VaultRecord.model_validate({**self.values, "observed_at": max(dates) if dates else None})

    def to_plaintext(self) -> bytes:
        body = json.dumps(
            {"format": _ENVELOPE_FORMAT, "values": self.values, "observed": self.observed},
            ensure_ascii=False,
            separators=(",", ":"),
            sort_keys=True,
        ).encode("utf-8")
        return body + b" " * (-len(body) % _PAD_TO)

    @classmethod
    def from_plaintext(cls, plaintext: bytes) -> _Stored:
        envelope = json.loads(plaintext.decode("utf-8"))
        if envelope.get("format") != _ENVELOPE_FORMAT:
            raise ValueError("unknown vault envelope format")
        return cls(values=dict(envelope["values"]), observed=dict(envelope["observed"]))


def _rank(iso_date: str | None) -> str:
    return iso_date or ""


def _now() -> datetime:
    return datetime.now(UTC)


def _aad(pseudonym: str) -> bytes:
    return _AAD_PREFIX + pseudonym.encode("ascii")


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class _Keys:
    """Data keys of the vault purpose, cached for one operation only (a rotation is seen next call)."""

    def __init__(self, source: KeySource) -> None:
        self._source = source
        self._by_version: dict[int, AESGCM] = {}
        self._current: tuple[int, AESGCM] | None = None
        self._hashers: dict[int, BlockHasher] = {}
        self._names: NameTokenHasher | None = None
        self._holder_key: bytes | None = None
        self._holder_version = 0
        self._names_version = 0
        self._sealing: tuple[int, bytes] | None = None
        self._openings: dict[int, Opener] = {}
        self._servings: dict[int, AESGCM] = {}
        self._serving_current: int | None = None
        self._binders: dict[int, bytes] = {}

    def current(self) -> tuple[int, AESGCM]:
        if self._current is None:
            key = self._source.current(VAULT_KEY_PURPOSE)
            self._current = (key.version, self._cipher(key))
            self._by_version[key.version] = self._current[1]
        return self._current

    def version(self, version: int) -> AESGCM:
        if version not in self._by_version:
            self._by_version[version] = self._cipher(self._source.get(VAULT_KEY_PURPOSE, version))
        return self._by_version[version]

    def hasher(self, version: int) -> BlockHasher:
        from pdp.pseudonym.blocking import BlockHasher

        if version not in self._hashers:
            self._hashers[version] = BlockHasher(self._source.get(VAULT_KEY_PURPOSE, version).material)
        return self._hashers[version]

    def holder(self, pseudonym: str) -> str:
        """The name-token rows' holder id of a pseudonym (see ``identity_vault_name_tokens``)."""
        return hmac.new(self._holder_secret(), pseudonym.encode("utf-8"), hashlib.sha256).hexdigest()[:32]

    def _holder_secret(self) -> bytes:
        if self._holder_key is None:
            from cryptography.hazmat.primitives import hashes
            from cryptography.hazmat.primitives.kdf.hkdf import HKDF

            key = _current_key(self._source, "opposition")
            self._holder_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                                    info=b"pdp/identity_vault/name-token-holder/v1").derive(key.material)
            self._holder_version = key.version
        return self._holder_key

    def names(self) -> NameTokenHasher:
        if self._names is None:
            from pdp.pseudonym.name_tokens import NameTokenHasher

            key = _current_key(self._source, NAME_TOKEN_PURPOSE)
            self._names, self._names_version = NameTokenHasher(key.material), key.version
        return self._names

    def versions(self) -> tuple[int, int, int, int]:
        """The versions of the keys a write is made under: ``vault``, ``seal``, ``nametoken`` and the
        name-token holders' (``opposition``). A write prepared under others is made again."""
        self.names()
        self._holder_secret()
        return self.current()[0], self.sealing()[0], self._names_version, self._holder_version

    def sealing(self) -> tuple[int, bytes]:
        """``(version, raw public key)`` of the current ``seal`` key: all sealing needs.

        Through :meth:`KeyStore.public` (attested, the private key stays wrapped). A store made
        before the seal key gets one here, once (``ensure``).
        """
        if self._sealing is None:
            from pdp.pseudonym.kms import KeyStoreError

            public = getattr(self._source, "public", None)
            if not callable(public):  # a bare key source (tests): derive it from the private key
                key = self._source.current(SEAL_KEY_PURPOSE)
                self._sealing = (key.version, _public_of(key.material))
                return self._sealing
            try:
                found = public(SEAL_KEY_PURPOSE)
            except KeyStoreError:
                ensure = getattr(self._source, "ensure", None)
                if not callable(ensure):
                    raise
                ensure(SEAL_KEY_PURPOSE)
                found = public(SEAL_KEY_PURPOSE)
            self._sealing = (found.version, found.raw)
        return self._sealing

    def opening(self, version: int) -> Opener:
        """The private ``seal`` key of `version`: re-identification and seal-key rotation only."""
        if version not in self._openings:
            from pdp.pseudonym.sealing import Opener

            self._openings[version] = Opener(self._source.get(SEAL_KEY_PURPOSE, version).material)
        return self._openings[version]

    def serving(self, version: int | None = None) -> tuple[int, AESGCM]:
        """The ``serving`` key (current, or of `version`): re-identification's merged cache."""
        if version is None:
            if self._serving_current is None:
                ensure = getattr(self._source, "ensure", None)
                key = ensure(SERVING_KEY_PURPOSE) if callable(ensure) else self._source.current(SERVING_KEY_PURPOSE)
                self._servings[key.version] = self._cipher(key)
                self._serving_current = key.version
            return self._serving_current, self._servings[self._serving_current]
        if version not in self._servings:
            self._servings[version] = self._cipher(self._source.get(SERVING_KEY_PURPOSE, version))
        return version, self._servings[version]

    def bind(self, version: int, sealing_id: str, pseudonym: str) -> str:
        """The tag tying a sealed box to its pseudonym, under vault key `version`."""
        if version not in self._binders:
            from cryptography.hazmat.primitives import hashes
            from cryptography.hazmat.primitives.kdf.hkdf import HKDF

            material = self._source.get(VAULT_KEY_PURPOSE, version).material
            self._binders[version] = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                                          info=b"pdp/identity_vault/seal-binding/v1").derive(material)
        message = _BIND_PREFIX + sealing_id.encode("ascii") + b"\x00" + pseudonym.encode("ascii")
        return hmac.new(self._binders[version], message, hashlib.sha256).hexdigest()

    @staticmethod
    def _cipher(key: _DataKey) -> AESGCM:
        if len(key.material) != _KEY_BYTES:
            raise VaultError(f"identity vault: vault data key v{key.version} is not 256 bits")
        return AESGCM(key.material)


# Keys of the serving side: the seal's private key, re-identification's cache key, the PSI secret.
_NOT_THE_EDGES = (SEAL_KEY_PURPOSE, SERVING_KEY_PURPOSE, "psi")


class EdgeKeys:
    """The key store as the edge sees it: every key except the private half of ``seal``.

    Why: the edge seals identities and must not be able to open them. Processes that only
    write the vault (ingestion, the lab feed, linkage, opposition look-ups, key rotation of the
    pseudonyms) open it with ``IdentityVault(engine, EdgeKeys(store))``: asking it for the
    private seal key raises, so a code path that would read whole identities outside
    re-identification fails loudly instead of quietly working.
    """

    def __init__(self, store: Any) -> None:
        self._store = store

    def __repr__(self) -> str:
        return f"EdgeKeys({self._store!r})"

    def _refuse(self, purpose: str) -> None:
        if purpose in _NOT_THE_EDGES:
            raise VaultError("identity vault: the edge seals identities and cannot open them (no private seal key)")

    def current(self, purpose: str) -> Any:
        self._refuse(purpose)
        return self._store.current(purpose)

    def get(self, purpose: str, version: int) -> Any:
        self._refuse(purpose)
        return self._store.get(purpose, version)

    def ensure(self, purpose: str) -> Any:
        if purpose in _NOT_THE_EDGES:  # a store made before them: create, unwrap nothing
            self._store.create_missing(purpose)
            return None
        return self._store.ensure(purpose)

    def public(self, purpose: str, version: int | None = None) -> Any:
        return self._store.public(purpose, version)


class IdentityVault:
    """Encrypted identities keyed by pseudonym, in the governance store.

    ``engine`` is a governance-store engine on which :func:`pdp.governance.db.create_all` has
    been run; ``key_store`` provides the ``"vault"`` data keys (current and by version).
    """

    def __init__(self, engine: Engine, key_store: KeySource, *, batch_size: int = _DEFAULT_BATCH) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self._engine = engine
        self._key_store = key_store
        self._batch_size = batch_size
        # rows of older code are upgraded once; after that no call pays the anti-join (a rolling
        # deploy with older writers still running is not supported)
        self._upgraded = False

    @classmethod
    def from_settings(cls, settings: Settings | None = None, *, edge: bool = False) -> IdentityVault:
        """The vault on the configured governance store and key store (tables created if missing).

        ``edge=True``: through :class:`EdgeKeys`, for processes that seal and never open.
        """
        from pdp.pseudonym.keys import KeyStore

        engine = make_engine(settings=settings)
        create_all(engine)
        store = KeyStore.from_settings(settings)
        return cls(engine, EdgeKeys(store) if edge else store)

    # -- writes ---------------------------------------------------------------------------------

    def upsert(self, pseudonym: str, record: VaultRecord) -> UpsertResult:
        """Insert or merge one record (merge rule in the module docstring)."""
        return self.upsert_many([(pseudonym, record)])

    def upsert_many(self, items: Mapping[str, VaultRecord] | Iterable[tuple[str, VaultRecord]]) -> UpsertResult:
        """Insert or merge many records in one transaction: all are written, or none.

        A pseudonym may appear several times; its records merge in the order given.
        """
        pairs = list(items.items() if isinstance(items, Mapping) else items)
        for pseudonym, record in pairs:
            check_pseudonym(pseudonym)
            if not isinstance(record, VaultRecord):
                raise VaultError(f"identity vault: record for {pseudonym} is not a VaultRecord")
        keys = _Keys(self._key_store)
        with self._engine.begin() as conn:
            _lock_for_write(conn)
            self._upgrade(conn, keys)
            result = self._merge_in(conn, pairs, keys)
        logger.info("identity vault: %d inserted, %d merged", result.inserted, result.updated)
        return result

    def write_versions(self) -> tuple[int, int, int, int]:
        """The versions of the keys a write is made under now (see :class:`PreparedWrite`), creating here
        any the key store predates: call it before writes are prepared elsewhere, so that no two
        executors create one each."""
        return _Keys(self._key_store).versions()

    def write_prepared(
        self, items: Sequence[PreparedWrite], records: Callable[[list[str]], Mapping[str, VaultRecord]]
    ) -> UpsertResult:
        """Write observations prepared where their identities are (:func:`prepare_writes`), in one transaction.

        A person new to the vault goes in as prepared: its sealed observation, linkage view,
        blocking keys and name tokens, computed elsewhere, are only copied here (no sealing, no
        hashing on this one writer). A person the vault holds already (its linkage view must be
        merged), or one prepared under keys rotated since, is merged as :meth:`upsert_many` merges
        it, from its record: `records` gives those by pseudonym. Each person once in `items`.
        """
        wanted = [item.pseudonym for item in items]
        for pseudonym in wanted:
            check_pseudonym(pseudonym)
        if len(set(wanted)) != len(wanted):
            raise VaultError("identity vault: a prepared write names a pseudonym twice")
        keys = _Keys(self._key_store)
        versions = keys.versions()
        with self._engine.begin() as conn:
            _lock_for_write(conn)
            self._upgrade(conn, keys)
            held = _present(conn, wanted)
            fresh = [i for i in items if i.versions == versions and i.pseudonym not in held]
            others = [i.pseudonym for i in items if i.versions != versions or i.pseudonym in held]
            now = _now()
            for part in _chunks(fresh, 4 * _DEFAULT_BATCH):  # a person has a dozen index rows: bounded memory
                bulk_insert(conn, identity_vault_seal, [{**i.seal, "created_at": now} for i in part])
                _insert_missing_tokens(conn, {(h, k, t): n for i in part for h, k, t, n in i.tokens})
                bulk_insert(conn, identity_vault, [
                    {"pseudonym": i.pseudonym, "key_version": versions[0], "nonce": i.nonce,
                     "ciphertext": i.ciphertext, "source_count": 1, "created_at": now, "updated_at": now}
                    for i in part])
                bulk_insert(conn, identity_vault_blocking,
                            [row for i in part for row in _blocking_rows(i.pseudonym, i.blocks, versions[0])])
            merged = UpsertResult()
            if others:
                found = records(others)
                merged = self._merge_in(conn, [(p, found[p]) for p in others], keys)
        result = UpsertResult(inserted=len(fresh) + merged.inserted, updated=merged.updated, prepared=len(fresh))
        logger.info("identity vault: %d inserted (%d as prepared), %d merged", result.inserted, len(fresh),
                    result.updated)
        return result

    def _merge_in(self, conn: Connection, pairs: Sequence[tuple[str, VaultRecord]], keys: _Keys) -> UpsertResult:
        """Merge `pairs` into the vault in `conn`'s transaction (the caller holds the write lock)."""
        inserted: set[str] = set()
        updated: set[str] = set()
        for chunk in _chunks(pairs, self._batch_size):
            wanted = list(dict.fromkeys(p for p, _ in chunk))
            existing = self._read(conn, wanted, keys)
            traits_before = {p: _linkage_traits(state) for p, (state, _count) in existing.items()}
            merged: dict[str, _Stored] = {}
            counts: dict[str, int] = {}
            for pseudonym, record in chunk:
                state = merged.get(pseudonym)
                if state is None:
                    state = existing[pseudonym][0] if pseudonym in existing else _Stored()
                    merged[pseudonym] = state
                state.merge(record, LINKAGE_TRAITS)
                counts[pseudonym] = counts.get(pseudonym, 0) + 1
            self._append_sealed(conn, [(p, r.model_dump_json(exclude_none=True).encode("utf-8"))
                                       for p, r in chunk], keys)
            _add_name_tokens(conn, [(p, r) for p, r in chunk if r.address_line], keys)
            version, cipher = keys.current()
            now = _now()
            new_rows, changed_rows = [], []
            for pseudonym, state in merged.items():
                nonce, ciphertext = self._seal(cipher, pseudonym, state)
                row = {"key_version": version, "nonce": nonce, "ciphertext": ciphertext, "updated_at": now}
                if pseudonym in existing:
                    row.update(b_pseudonym=pseudonym, source_count=existing[pseudonym][1] + counts[pseudonym])
                    changed_rows.append(row)
                else:
                    row.update(pseudonym=pseudonym, source_count=counts[pseudonym], created_at=now)
                    new_rows.append(row)
            if new_rows:
                bulk_insert(conn, identity_vault, new_rows)
            if changed_rows:
                conn.execute(_UPDATE_BY_PSEUDONYM, changed_rows)
            # blocking keys change only with the linkage traits: a new phone number re-indexes nothing
            changed = {p: s for p, s in merged.items() if traits_before.get(p) != _linkage_traits(s)}
            _reindex(conn, {p: s for p, s in changed.items() if p in existing}, version, keys)
            _reindex(conn, {p: s for p, s in changed.items() if p not in existing}, version, keys, fresh=True)
            inserted.update(row["pseudonym"] for row in new_rows)
            updated.update(row["b_pseudonym"] for row in changed_rows)
        return UpsertResult(inserted=len(inserted), updated=len(updated - inserted))

    def rekey(self) -> int:
        """Re-encrypt every row not under the current vault key version; returns rows re-encrypted.

        Run after rotating the ``"vault"`` key, before retiring the old version. Each batch
        commits on its own: every row names its key version, so an interrupted rekey leaves a
        readable vault and running it again finishes the job.
        """
        keys = _Keys(self._key_store)
        version, cipher = keys.current()
        done = 0
        while True:
            with self._engine.begin() as conn:
                _lock_for_write(conn)
                pseudonyms = list(
                    conn.scalars(
                        select(identity_vault.c.pseudonym)
                        .where(identity_vault.c.key_version != version)
                        .order_by(identity_vault.c.pseudonym)
                        .limit(self._batch_size)
                    )
                )
                if not pseudonyms:
                    break
                existing = self._read(conn, pseudonyms, keys)
                _reindex(conn, {p: state for p, (state, _count) in existing.items()}, version, keys)
                now = _now()
                rows = []
                for pseudonym, (state, _count) in existing.items():
                    nonce, ciphertext = self._seal(cipher, pseudonym, state)
                    rows.append(
                        {
                            "b_pseudonym": pseudonym,
                            "key_version": version,
                            "nonce": nonce,
                            "ciphertext": ciphertext,
                            "updated_at": now,
                        }
                    )
                conn.execute(_REKEY_BY_PSEUDONYM, rows)
                done += len(rows)
        rebound = self._rebind(keys, version)
        logger.info("identity vault: %d rows re-encrypted under vault key v%d, %d sealed rows re-bound",
                    done, version, rebound)
        return done

    def _rebind(self, keys: _Keys, version: int) -> int:
        """Re-bind every sealed box not bound under vault key `version` (no box is opened)."""
        s = identity_vault_seal
        done = 0
        while True:
            with self._engine.begin() as conn:
                _lock_for_write(conn)
                rows = conn.execute(
                    select(s.c.id, s.c.sealing_id, s.c.pseudonym, s.c.bind_version, s.c.bind)
                    .where(s.c.bind_version != version).order_by(s.c.id).limit(self._batch_size)
                ).all()
                if not rows:
                    return done
                for _row_id, sealing_id, pseudonym, old_version, bind in rows:
                    if not hmac.compare_digest(bind, keys.bind(int(old_version), sealing_id, pseudonym)):
                        raise VaultError(f"identity vault: a sealed record of {pseudonym} failed authentication")
                conn.execute(_REBIND_BY_ID, [
                    {"b_id": row_id, "pseudonym": pseudonym, "bind_version": version,
                     "bind": keys.bind(version, sealing_id, pseudonym)}
                    for row_id, sealing_id, pseudonym, _v, _b in rows])
                done += len(rows)

    def reseal(self) -> int:
        """Re-seal every box not under the current ``seal`` key version; returns boxes re-sealed.

        Run after rotating the ``seal`` key, before retiring the old version. One of the listed
        ways into the vault (README): it opens each box with the old private key to seal it to
        the new public key, in the same process, without the content leaving it.
        """
        from pdp.pseudonym.sealing import seal

        s = identity_vault_seal
        keys = _Keys(self._key_store)
        version, public = keys.sealing()
        done = 0
        while True:
            with self._engine.begin() as conn:
                _lock_for_write(conn)
                rows = conn.execute(
                    select(s.c.id, s.c.sealing_id, s.c.pseudonym, s.c.bind_version, s.c.bind, s.c.key_version,
                           s.c.enc, s.c.ciphertext)
                    .where(s.c.key_version != version).order_by(s.c.id).limit(self._batch_size)
                ).all()
                if not rows:
                    break
                updates = []
                for row in rows:
                    plaintext = self._open(row, keys)
                    enc, ciphertext = seal(public, plaintext, aad=_SEAL_AAD_PREFIX + row.sealing_id.encode("ascii"))
                    updates.append({"b_id": row.id, "key_version": version, "enc": enc, "ciphertext": ciphertext})
                conn.execute(_RESEAL_BY_ID, updates)
                done += len(updates)
        logger.info("identity vault: %d sealed rows re-sealed under seal key v%d", done, version)
        return done

    def repseudonymise(self, mapping: Mapping[str, str]) -> int:
        """Rename pseudonyms old → new, atomically, keeping each record; returns rows renamed.

        Used by ``pdp keys rotate`` after a pseudonymisation-key rotation. The associated data
        binds each ciphertext to its pseudonym, so every renamed row is re-encrypted (under the
        current vault key). Old pseudonyms absent from the vault are ignored. If a new pseudonym
        already has a row that is not itself being renamed, the two records merge (same person,
        already seen under the new key). Two old pseudonyms may not map to one new one. One
        transaction: a failure anywhere leaves the vault as it was.
        """
        pairs = [(check_pseudonym(old), check_pseudonym(new)) for old, new in mapping.items() if old != new]
        targets = [new for _, new in pairs]
        if len(set(targets)) != len(targets):
            raise VaultError("identity vault: repseudonymise mapping sends two pseudonyms to one")
        renamed = 0
        keys = _Keys(self._key_store)
        with self._engine.begin() as conn:
            _lock_for_write(conn)
            self._upgrade(conn, keys)
            moving: dict[str, tuple[str, _Stored, int]] = {}
            for chunk in _chunks(pairs, self._batch_size):
                found = self._read(conn, [old for old, _ in chunk], keys)
                for old, new in chunk:
                    if old in found:
                        moving[old] = (new, *found[old])
            sources = set(moving)
            stay_targets = [new for new, _, _ in moving.values() if new not in sources]
            resident: dict[str, tuple[_Stored, int]] = {}
            for chunk in _chunks(stay_targets, self._batch_size):
                resident.update(self._read(conn, list(chunk), keys))
            self._move_sealed(conn, {old: new for old, (new, _state, _count) in moving.items()}, keys)
            for chunk in _chunks([*moving, *(new for new, _s, _c in moving.values())], self._batch_size):
                conn.execute(delete(identity_vault_merged).where(identity_vault_merged.c.pseudonym.in_(list(chunk))))
            for chunk in _chunks(list(moving), self._batch_size):
                conn.execute(delete(identity_vault).where(identity_vault.c.pseudonym.in_(chunk)))
                _unindex(conn, chunk, keys, tokens=False)
            version, cipher = keys.current()
            now = _now()
            new_rows = []
            renamed_states: dict[str, _Stored] = {}
            for new, state, count in moving.values():
                if new in resident:
                    kept, kept_count = resident.pop(new)
                    state = _merge_states(state, kept)
                    count += kept_count
                    conn.execute(delete(identity_vault).where(identity_vault.c.pseudonym == new))
                renamed_states[new] = state
                nonce, ciphertext = self._seal(cipher, new, state)
                new_rows.append(
                    {
                        "pseudonym": new,
                        "key_version": version,
                        "nonce": nonce,
                        "ciphertext": ciphertext,
                        "source_count": count,
                        "created_at": now,
                        "updated_at": now,
                    }
                )
            for chunk in _chunks(new_rows, self._batch_size):
                bulk_insert(conn, identity_vault, chunk)
            _reindex(conn, renamed_states, version, keys)
            renamed = len(new_rows)
        logger.info("identity vault: %d pseudonyms renamed", renamed)
        return renamed

    def delete(self, pseudonyms: Iterable[str]) -> int:
        """Erase the records of ``pseudonyms`` (right to erasure); returns rows deleted."""
        wanted = list(dict.fromkeys(check_pseudonym(p) for p in pseudonyms))
        keys = _Keys(self._key_store)
        deleted = 0
        with self._engine.begin() as conn:
            _lock_for_write(conn)  # an upsert in flight must not commit boxes after the erasure
            for chunk in _chunks(wanted, self._batch_size):
                result = conn.execute(delete(identity_vault).where(identity_vault.c.pseudonym.in_(chunk)))
                conn.execute(delete(identity_vault_seal).where(identity_vault_seal.c.pseudonym.in_(chunk)))
                conn.execute(delete(identity_vault_merged).where(identity_vault_merged.c.pseudonym.in_(chunk)))
                deleted += result.rowcount
                _unindex(conn, chunk, keys)
        logger.info("identity vault: %d records erased", deleted)
        return deleted

    # -- reads ----------------------------------------------------------------------------------

    def get_many(self, pseudonyms: Iterable[str]) -> dict[str, VaultRecord]:
        """The whole identities of ``pseudonyms`` (absent ones are left out).

        Internal: the one read of whole identities, with the ``serving`` and ``seal`` private
        keys; callers outside the re-identification path must not use it: go through
        :func:`pdp.pseudonym.reidentify.reidentify`, which checks and records the access.
        Each person is their merged cache row, if it still covers exactly the boxes it says it
        folded, followed by the boxes after it, in arrival order, with the upsert rule (module
        docstring); otherwise every box is opened again. New folds are written back, so the
        next read of that person is one AES-GCM decryption.
        """
        wanted = list(dict.fromkeys(check_pseudonym(p) for p in pseudonyms))
        keys = _Keys(self._key_store)
        self._upgrade_if_needed(keys)
        states: dict[str, _Stored] = {}
        folds: dict[str, tuple[_Stored, int, int]] = {}  # pseudonym → (state, last box id, boxes)
        with self._engine.connect() as conn:
            if conn.dialect.name == "postgresql":  # the three reads below see one snapshot
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            for chunk in _chunks(wanted, self._batch_size):
                cached: dict[str, tuple[_Stored, int, int]] = {}
                for row in _select_in(conn, _MERGED_SQL, chunk):
                    state = self._open_merged(row, keys)
                    if state is not None:
                        cached[row.pseudonym] = (state, int(row.through_id), int(row.boxes))
                ids: dict[str, list[int]] = {}
                for box_id, pseudonym in _select_in(conn, _BOX_IDS_SQL, chunk):
                    ids.setdefault(pseudonym, []).append(int(box_id))
                needed: list[int] = []
                for pseudonym, box_ids in ids.items():
                    state, through, boxes = cached.get(pseudonym, (None, 0, 0))
                    if state is None or sum(1 for i in box_ids if i <= through) != boxes:
                        state, through = _Stored(), 0  # no cache, or a stale one: fold every box
                    states[pseudonym] = state
                    newer = [i for i in box_ids if i > through]
                    needed.extend(newer)
                    if newer:
                        folds[pseudonym] = (state, max(box_ids), len(box_ids))
                for id_chunk in _chunks(sorted(needed), self._batch_size):
                    for row in _select_in(conn, _BOXES_BY_ID_SQL, list(id_chunk)):
                        states[row.pseudonym].merge(_observation(self._open(row, keys), row.pseudonym))
        out: dict[str, VaultRecord] = {}
        for pseudonym, state in states.items():
            try:
                out[pseudonym] = state.to_record()
            except ValidationError:
                raise VaultError(f"identity vault: record for {pseudonym} no longer validates") from None
        if folds:
            self._write_merged(folds, keys)
        return {p: out[p] for p in wanted if p in out}

    def compact(self) -> int:
        """Fold every person's new boxes into the merged cache; returns persons folded.

        Serving side (holds the private keys): run before serving, so that the first worklist
        of the day does not pay the X25519 exchanges of the night's ingestion, and after a
        ``serving`` key rotation (rows under an older version are folded again).
        """
        s, m = identity_vault_seal, identity_vault_merged
        version, _cipher = _Keys(self._key_store).serving()
        with self._engine.connect() as conn:
            pending = list(conn.scalars(
                select(s.c.pseudonym).distinct().select_from(s.outerjoin(m, m.c.pseudonym == s.c.pseudonym))
                .where((m.c.pseudonym.is_(None)) | (s.c.id > m.c.through_id) | (m.c.key_version != version))
                .order_by(s.c.pseudonym)))
        for chunk in _chunks(pending, 5_000):
            self.get_many(chunk)
        logger.info("identity vault: %d persons folded into the merged cache", len(pending))
        return len(pending)

    def _open_merged(self, row: Any, keys: _Keys) -> _Stored | None:
        """A merged cache row, or None if it is under a serving key version no longer current."""
        version, cipher = keys.serving()
        if int(row.key_version) != version:
            return None  # a serving-key rotation: fold again from the boxes, under the new key
        try:
            plaintext = cipher.decrypt(bytes(row.nonce), bytes(row.ciphertext),
                                       _merged_aad(row.pseudonym, int(row.through_id)))
            return _Stored.from_plaintext(plaintext)
        except InvalidTag:
            raise VaultError(
                f"identity vault: merged record of {row.pseudonym} failed authentication (tampered or moved)"
            ) from None
        except (ValueError, KeyError, TypeError):
            raise VaultError(f"identity vault: merged record of {row.pseudonym} has an unreadable envelope") from None

    def _write_merged(self, folds: Mapping[str, tuple[_Stored, int, int]], keys: _Keys) -> None:
        """Write folds back, each only if the boxes up to its last id are still the ones it folded.

        A rename that moved older boxes in, or an erasure followed by new boxes, since the read
        changes that count: the fold is dropped and the next read folds again.
        """
        version, cipher = keys.serving()
        now = _now()
        rows = []
        for pseudonym, (state, through, boxes) in folds.items():
            nonce = os.urandom(_NONCE_BYTES)
            ciphertext = cipher.encrypt(nonce, state.to_plaintext(), _merged_aad(pseudonym, through))
            rows.append({"pseudonym": pseudonym, "key_version": version, "nonce": nonce, "ciphertext": ciphertext,
                         "through_id": through, "boxes": boxes, "updated_at": now})
        m = identity_vault_merged
        with self._engine.begin() as conn:
            _lock_for_write(conn)
            for chunk in _chunks(rows, self._batch_size):
                names = [r["pseudonym"] for r in chunk]
                ids: dict[str, list[int]] = {}
                for box_id, pseudonym in _select_in(conn, _BOX_IDS_SQL, names):
                    ids.setdefault(pseudonym, []).append(int(box_id))
                keep = [r for r in chunk
                        if sum(1 for i in ids.get(r["pseudonym"], ()) if i <= r["through_id"]) == r["boxes"]]
                conn.execute(delete(m).where(m.c.pseudonym.in_(names)))
                if keep:
                    bulk_insert(conn, m, keep)

    def linkage_view(self, pseudonyms: Iterable[str]) -> dict[str, VaultRecord]:
        """The linkage traits (:data:`LINKAGE_TRAITS`) of ``pseudonyms``, under the ``vault`` key.

        What the edge may read: names, sex, birth date and place, NIR and the canonical bytes
        that made the pseudonym (key rotation re-keys from them); never address, phone, e-mail
        or GP, which are only sealed. Persons without any linkage trait are left out.
        """
        wanted = list(dict.fromkeys(check_pseudonym(p) for p in pseudonyms))
        keys = _Keys(self._key_store)
        self._upgrade_if_needed(keys)
        out: dict[str, VaultRecord] = {}
        with self._engine.connect() as conn:
            for chunk in _chunks(wanted, self._batch_size):
                for pseudonym, (state, _count) in self._read(conn, list(chunk), keys).items():
                    if state.values:
                        try:
                            out[pseudonym] = state.to_record()
                        except ValidationError:
                            raise VaultError(f"identity vault: record for {pseudonym} no longer validates") from None
        return {p: out[p] for p in wanted if p in out}

    def linkable(self, canonicals: Iterable[CanonicalIdentity]) -> list[tuple[str, CanonicalIdentity]]:
        """Known persons ``(pseudonym, canonical identity)`` sharing a blocking key with `canonicals`.

        What cross-batch linkage needs (:func:`pdp.pseudonym.linkage.link`'s ``known``): only
        these rows of the linkage view are decrypted. Rows written by older code are upgraded
        (indexed, their full record sealed) first. Internal to the edge.
        """
        canonicals = list(canonicals)
        versions = self.blocking_versions()
        if not canonicals:
            return []
        return self.known_by_blocks(linkage_blocks(self._key_store, versions, canonicals))

    def blocking_versions(self) -> list[int]:
        """The vault key versions its blocking index holds keys under (rows of older code upgraded
        first): a batch's identities are hashed under each (:func:`linkage_blocks`)."""
        keys = _Keys(self._key_store)
        with self._engine.begin() as conn:
            _lock_for_write(conn)
            self._upgrade(conn, keys)
        with self._engine.connect() as conn:
            return sorted(int(v) for v in conn.scalars(select(identity_vault_blocking.c.key_version).distinct()))

    def known_by_blocks(self, blocks: Iterable[tuple[int, str]]) -> list[tuple[str, CanonicalIdentity]]:
        """Known persons holding any of `blocks` ((key version, blocking key), hashed by
        :func:`linkage_blocks`): :meth:`linkable` for identities hashed elsewhere."""
        return [person for chunk in self.known_chunks(blocks) for person in chunk]

    def known_chunks(self, blocks: Iterable[tuple[int, str]]) -> Iterator[list[tuple[str, CanonicalIdentity]]]:
        """:meth:`known_by_blocks` a chunk at a time, in pseudonym order: `blocks` (possibly hashed on
        Spark's executors and streamed) are read a chunk at a time, and only the matching persons'
        pseudonyms are held while the blocks are looked up."""
        found: set[str] = set()
        b = identity_vault_blocking.c
        iterator = iter(blocks)
        while chunk := list(islice(iterator, self._batch_size)):  # no transaction held while `blocks` computes
            by_version: dict[int, set[str]] = defaultdict(set)
            for version, block in chunk:
                by_version[int(version)].add(block)
            with self._engine.connect() as conn:
                for version, wanted in sorted(by_version.items()):
                    found.update(conn.scalars(select(b.pseudonym).where(b.key_version == version,
                                                                        b.block.in_(sorted(wanted)))))
        for names in _chunks(sorted(found), _KNOWN_CHUNK):
            out = []
            for pseudonym, record in self.linkage_view(names).items():
                canonical = record_canonical(record)
                if canonical is not None:
                    out.append((pseudonym, canonical))
            yield out

    def _upgrade_if_needed(self, keys: _Keys) -> None:
        if self._upgraded:
            return
        with self._engine.connect() as conn:
            if conn.execute(_missing_query().limit(1)).first() is None:
                self._upgraded = True
                return
        with self._engine.begin() as conn:
            _lock_for_write(conn)
            self._upgrade(conn, keys)

    def _upgrade(self, conn: Connection, keys: _Keys) -> int:
        """Bring rows written by older code up to date: blocking index, name tokens, sealed record.

        Rows from before the seal split hold the whole record under the ``vault`` key: it is
        sealed as one observation and the row is cut down to the linkage view.
        """
        if self._upgraded:
            return 0
        missing = list(conn.scalars(_missing_query()))
        version, cipher = keys.current()
        now = _now()
        for chunk in _chunks(missing, self._batch_size):
            states = {p: state for p, (state, _count) in self._read(conn, list(chunk), keys).items()}
            # every row older code wrote holds the record as it knew it (whole, or linkage traits
            # only): seal it, one box per observation date so the per-field merge rule survives
            legacy = {p: st for p, st in states.items() if st.values}
            observations = []
            for pseudonym, state in legacy.items():
                for record in _records_by_date(state):
                    observations.append((pseudonym, record.model_dump_json(exclude_none=True).encode("utf-8")))
                    if record.address_line:
                        _add_name_tokens(conn, [(pseudonym, record)], keys)
            self._append_sealed(conn, observations, keys)
            rows = []
            for pseudonym in legacy:
                nonce, ciphertext = self._seal(cipher, pseudonym, legacy[pseudonym].linkage_only())
                rows.append({"b_pseudonym": pseudonym, "key_version": version, "nonce": nonce,
                             "ciphertext": ciphertext, "updated_at": now})
            if rows:
                conn.execute(_REKEY_BY_PSEUDONYM, rows)
            _reindex(conn, {p: st.linkage_only() for p, st in states.items()}, version, keys)
        if missing:
            logger.info("identity vault: %d rows upgraded (indexed, full records sealed)", len(missing))
        self._upgraded = True
        return len(missing)

    def _append_sealed(self, conn: Connection, observations: Sequence[tuple[str, bytes]], keys: _Keys) -> None:
        """Seal each ``(pseudonym, record JSON)`` to the ``seal`` public key and append it."""
        if not observations:
            return
        now = _now()
        rows = [{**_sealed_row(keys, pseudonym, plaintext), "created_at": now} for pseudonym, plaintext in observations]
        for chunk in _chunks(rows, 4 * _DEFAULT_BATCH):
            bulk_insert(conn, identity_vault_seal, chunk)

    def _move_sealed(self, conn: Connection, mapping: Mapping[str, str], keys: _Keys) -> None:
        """Re-bind the sealed rows of each old pseudonym to its new one (no box is opened)."""
        s = identity_vault_seal
        bind_version, _cipher = keys.current()
        updates = []
        for chunk in _chunks(list(mapping), self._batch_size):
            rows = conn.execute(select(s.c.id, s.c.sealing_id, s.c.pseudonym, s.c.bind_version, s.c.bind)
                                .where(s.c.pseudonym.in_(list(chunk))))
            for row_id, sealing_id, old, version, bind in rows:
                if not hmac.compare_digest(bind, keys.bind(int(version), sealing_id, old)):
                    raise VaultError(f"identity vault: a sealed record of {old} failed authentication")
                new = mapping[old]
                updates.append({"b_id": row_id, "pseudonym": new, "bind_version": bind_version,
                                "bind": keys.bind(bind_version, sealing_id, new)})
        for chunk in _chunks(updates, 4 * _DEFAULT_BATCH):
            conn.execute(_REBIND_BY_ID, list(chunk))
        _move_name_tokens(conn, mapping, keys)

    @staticmethod
    def _open(row: Any, keys: _Keys) -> bytes:
        from pdp.pseudonym.sealing import SealError

        if not hmac.compare_digest(row.bind, keys.bind(int(row.bind_version), row.sealing_id, row.pseudonym)):
            raise VaultError(f"identity vault: a sealed record of {row.pseudonym} failed authentication (moved?)")
        try:
            return keys.opening(int(row.key_version)).open(bytes(row.enc), bytes(row.ciphertext),
                                                           aad=_SEAL_AAD_PREFIX + row.sealing_id.encode("ascii"))
        except SealError:
            raise VaultError(
                f"identity vault: a sealed record of {row.pseudonym} failed authentication (tampered or wrong key)"
            ) from None

    def name_token_index(self) -> tuple[NameTokenHasher, list[tuple[str, str, str, int]]]:
        """The name-token hasher and every index row ``(holder, kind, token, size)``, by holder.

        What the leak scanner reads instead of decrypting identities: keyed hashes only, under
        the ``nametoken`` key (see :mod:`pdp.pseudonym.name_tokens`), grouped by a holder id that
        does not reveal the pseudonym. Raises if the store has no ``nametoken`` key (nothing indexed).
        """
        from pdp.pseudonym.name_tokens import NameTokenHasher

        hasher = NameTokenHasher(self._key_store.current(NAME_TOKEN_PURPOSE).material)
        t = identity_vault_name_tokens.c
        with self._engine.connect() as conn:
            rows = conn.execute(select(t.holder, t.kind, t.token, t.size).order_by(t.holder, t.kind, t.token))
            return hasher, [(h, k, tok, int(n)) for h, k, tok, n in rows]

    @property
    def engine(self) -> Engine:
        """The governance store engine this vault writes to."""
        return self._engine

    def pseudonyms(self, *, prefix: str = "") -> list[str]:
        """Every pseudonym in the vault starting with `prefix` (e.g. ``"v1:"``), sorted. Not nominative."""
        query = select(identity_vault.c.pseudonym).order_by(identity_vault.c.pseudonym)
        if prefix:
            query = query.where(identity_vault.c.pseudonym.startswith(prefix, autoescape=True))
        with self._engine.connect() as conn:
            return [row[0] for row in conn.execute(query)]

    def pseudonym_page(self, *, prefix: str = "", after: str = "", limit: int) -> list[str]:
        """Up to `limit` pseudonyms starting with `prefix` that sort after `after`, in order. Not nominative.

        Keyset paging for jobs that walk the whole vault (key rotation) with memory bounded by
        the page, not by the number of persons.
        """
        query = select(identity_vault.c.pseudonym).order_by(identity_vault.c.pseudonym).limit(limit)
        if prefix:
            query = query.where(identity_vault.c.pseudonym.startswith(prefix, autoescape=True))
        if after:
            query = query.where(identity_vault.c.pseudonym > after)
        with self._engine.connect() as conn:
            return [row[0] for row in conn.execute(query)]

    def contains(self, pseudonyms: Iterable[str]) -> set[str]:
        """Which of `pseudonyms` have a record (reads the primary key only, decrypts nothing)."""
        wanted = list(dict.fromkeys(pseudonyms))
        found: set[str] = set()
        with self._engine.connect() as conn:
            for chunk in _chunks(wanted, self._batch_size):
                query = select(identity_vault.c.pseudonym).where(identity_vault.c.pseudonym.in_(list(chunk)))
                found.update(conn.scalars(query))
        return found

    def count(self) -> int:
        """Number of records in the vault."""
        with self._engine.connect() as conn:
            return int(conn.scalar(select(func.count()).select_from(identity_vault)) or 0)

    def key_versions(self) -> dict[int, int]:
        """Rows per vault key version: a version absent here can be retired."""
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(identity_vault.c.key_version, func.count()).group_by(identity_vault.c.key_version)
            )
            return {int(version): int(n) for version, n in rows}

    # -- internals ------------------------------------------------------------------------------

    def _read(self, conn: Connection, pseudonyms: Sequence[str], keys: _Keys) -> dict[str, tuple[_Stored, int]]:
        if not pseudonyms:
            return {}
        query = select(
            identity_vault.c.pseudonym,
            identity_vault.c.key_version,
            identity_vault.c.nonce,
            identity_vault.c.ciphertext,
            identity_vault.c.source_count,
        ).where(identity_vault.c.pseudonym.in_(pseudonyms))
        found: dict[str, tuple[_Stored, int]] = {}
        for pseudonym, version, nonce, ciphertext, source_count in conn.execute(query):
            cipher = keys.version(int(version))
            try:
                plaintext = cipher.decrypt(bytes(nonce), bytes(ciphertext), _aad(pseudonym))
                state = _Stored.from_plaintext(plaintext)
            except InvalidTag as exc:
                raise VaultError(
                    f"identity vault: record for {pseudonym} failed authentication (tampered, moved or wrong key)"
                ) from exc
            except (ValueError, KeyError, TypeError):
                raise VaultError(f"identity vault: record for {pseudonym} has an unreadable envelope") from None
            found[pseudonym] = (state, int(source_count))
        return found

    @staticmethod
    def _seal(cipher: AESGCM, pseudonym: str, state: _Stored) -> tuple[bytes, bytes]:
        nonce = os.urandom(_NONCE_BYTES)
        return nonce, cipher.encrypt(nonce, state.to_plaintext(), _aad(pseudonym))


def _lock_for_write(conn: Connection) -> None:
    """Serialise vault writers, so two merges of one pseudonym never lose an update.

    SQLite already does (every transaction starts with BEGIN IMMEDIATE, see
    :mod:`pdp.governance.db`). On PostgreSQL, row locks cannot cover a pseudonym that has no
    row yet, so writers take a table lock that excludes other writers but not readers.
    """
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("LOCK TABLE identity_vault IN SHARE ROW EXCLUSIVE MODE")


def _sealed_row(keys: _Keys, pseudonym: str, plaintext: bytes) -> dict[str, Any]:
    """An observation's ``identity_vault_seal`` row (but its arrival time): sealed to the current ``seal``
    public key, bound to its pseudonym under the current ``vault`` key."""
    from pdp.pseudonym.sealing import seal

    seal_version, public = keys.sealing()
    bind_version, _cipher = keys.current()
    sealing_id = os.urandom(16).hex()
    padded = plaintext + b" " * (-len(plaintext) % _PAD_TO)
    enc, ciphertext = seal(public, padded, aad=_SEAL_AAD_PREFIX + sealing_id.encode("ascii"))
    return {"sealing_id": sealing_id, "pseudonym": pseudonym, "bind_version": bind_version,
            "bind": keys.bind(bind_version, sealing_id, pseudonym), "key_version": seal_version,
            "enc": enc, "ciphertext": ciphertext}


def _present(conn: Connection, pseudonyms: Sequence[str]) -> set[str]:
    """Those of `pseudonyms` the linkage view holds (an index look-up: nothing decrypted)."""
    found: set[str] = set()
    for chunk in _chunks(list(pseudonyms), _DEFAULT_BATCH):
        found.update(p for (p,) in _select_in(conn, "SELECT pseudonym FROM identity_vault WHERE pseudonym IN ({})",
                                              list(chunk)))
    return found


@dataclass(frozen=True, slots=True)
class PreparedWrite:
    """One person's observation made ready for the vault where its identity is (:func:`prepare_writes`).

    Everything a write computes that does not depend on what the vault holds: the sealed
    observation's row and, should the person be new to the vault, its linkage view (encrypted),
    blocking keys and name tokens. Ciphertexts, keyed hashes and key versions only: nothing in it
    reads as an identity without the keys. :meth:`IdentityVault.write_prepared` copies it in.
    """

    pseudonym: str
    versions: tuple[int, int, int, int]  # the keys it was made under (_Keys.versions)
    seal: dict[str, Any]  # its identity_vault_seal row, but the arrival time
    nonce: bytes  # its linkage view, as a new vault row
    ciphertext: bytes
    blocks: tuple[str, ...]  # its blocking keys under the vault key versions[0]
    tokens: tuple[tuple[str, str, str, int], ...]  # its name tokens: (holder, kind, token, size)


def prepare_writes(source: KeySource, pairs: Iterable[tuple[str, VaultRecord]]) -> Iterator[PreparedWrite]:
    """Each ``(pseudonym, record)`` made ready for :meth:`IdentityVault.write_prepared`: what the vault's one
    writer would otherwise compute (sealing, keyed hashes), done where the identities are, in
    parallel (a Spark executor of the edge, through :class:`EdgeKeys`). The rows are those
    :meth:`IdentityVault.upsert_many` writes for a person new to the vault."""
    keys = _Keys(source)
    versions = keys.versions()
    version, cipher = keys.current()
    hasher, names = keys.hasher(version), keys.names()
    for pseudonym, record in pairs:
        check_pseudonym(pseudonym)
        state = _Stored()
        state.merge(record, LINKAGE_TRAITS)
        nonce, ciphertext = IdentityVault._seal(cipher, pseudonym, state)
        holder = keys.holder(pseudonym)
        seen = [state.values]  # the linkage view's tokens (_reindex), and the address's (_merge_in)
        if record.address_line:
            seen.append(record.model_dump(mode="json", exclude_none=True))
        tokens = {(r["holder"], r["kind"], r["token"]): r["size"]
                  for values in seen for r in _name_token_rows(holder, values, names)}
        yield PreparedWrite(
            pseudonym=pseudonym, versions=versions,
            seal=_sealed_row(keys, pseudonym, record.model_dump_json(exclude_none=True).encode("utf-8")),
            nonce=nonce, ciphertext=ciphertext, blocks=tuple(_state_blocks(hasher, state)),
            tokens=tuple((h, k, t, n) for (h, k, t), n in sorted(tokens.items())))


def linkage_blocks(source: KeySource, versions: Iterable[int], canonicals: Iterable[CanonicalIdentity]
                   ) -> Iterator[tuple[int, str]]:
    """The blocking keys ((vault key version, keyed hash)) of `canonicals` under each of `versions`:
    what :meth:`IdentityVault.known_by_blocks` looks up. Runs where the identities are (the edge's
    process, or a Spark executor that opened its own key store); the keys themselves stay here."""
    canonicals = list(canonicals)
    keys = _Keys(source)
    for version in versions:
        for block in sorted(keys.hasher(int(version)).blocks(canonicals)):
            yield int(version), block


def record_canonical(record: VaultRecord) -> CanonicalIdentity | None:
    """The canonical identity of a vault record's traits (None if they no longer normalise)."""
    from pdp.pseudonym.normalise import CanonicalIdentity, RawIdentity, normalise

    canonical = normalise(
        RawIdentity(
            birth_name=record.birth_name,
            used_name=record.used_name,
            first_names=list(record.first_names or ()),
            sex=record.sex,
            birth_date=record.birth_date,
            birth_place=record.birth_place,
            nir=record.nir,
        )
    )
    return canonical if isinstance(canonical, CanonicalIdentity) else None


def _unindex(conn: Connection, pseudonyms: Sequence[str], keys: _Keys, *, tokens: bool = True) -> None:
    """Drop the blocking rows of `pseudonyms`, and their name tokens unless ``tokens=False``."""
    conn.execute(delete(identity_vault_blocking).where(identity_vault_blocking.c.pseudonym.in_(list(pseudonyms))))
    if tokens:
        holders = [keys.holder(p) for p in pseudonyms]
        conn.execute(delete(identity_vault_name_tokens).where(identity_vault_name_tokens.c.holder.in_(holders)))


# Re-identification's two reads, as driver SQL: SQLAlchemy's expanding IN renders each of a
# batch's values at every call (about 20 µs a value, measured with cProfile on a 1 500-person
# worklist: two thirds of the read), a plain placeholder list costs nothing.
_MERGED_SQL = ("SELECT pseudonym, key_version, nonce, ciphertext, through_id, boxes FROM identity_vault_merged "
               "WHERE pseudonym IN ({})")
_BOX_IDS_SQL = "SELECT id, pseudonym FROM identity_vault_seal WHERE pseudonym IN ({}) ORDER BY id"
_BOXES_BY_ID_SQL = (
    "SELECT id, sealing_id, pseudonym, bind_version, bind, key_version, enc, ciphertext "
    "FROM identity_vault_seal WHERE id IN ({}) ORDER BY id"
)


def _select_in(conn: Connection, sql: str, values: Sequence[str] | Sequence[int]) -> Any:
    """Rows of `sql` with its ``IN ({})`` filled with one driver placeholder per value."""
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    return conn.exec_driver_sql(sql.format(", ".join([mark] * len(values))), tuple(values))


def _records_by_date(state: _Stored) -> list[VaultRecord]:
    """A stored state as one record per observation date, oldest first (undated first)."""
    by_date: dict[str, dict[str, Any]] = {}
    for name, value in state.values.items():
        by_date.setdefault(state.observed.get(name) or "", {})[name] = value
    out = []
    for when in sorted(by_date):
        try:
            out.append(VaultRecord.model_validate({**by_date[when], "observed_at": when or None}))
        except ValidationError:
            raise VaultError("identity vault: a record written by older code no longer validates") from None
    return out


def _merged_aad(pseudonym: str, through: int) -> bytes:
    return _MERGED_AAD_PREFIX + pseudonym.encode("ascii") + b"\x00" + str(through).encode("ascii")


def _public_of(private: bytes) -> bytes:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    return X25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()


def _observation(plaintext: bytes, pseudonym: str) -> VaultRecord:
    try:
        return VaultRecord.model_validate_json(plaintext.rstrip(b" "))
    except (ValidationError, ValueError):
        raise VaultError(f"identity vault: a sealed record of {pseudonym} has an unreadable envelope") from None


def _missing_query() -> Any:
    """Linkage-view rows without the current index marker (written by older code)."""
    b = identity_vault_blocking
    return (
        select(identity_vault.c.pseudonym)
        .where(~exists().where(and_(b.c.pseudonym == identity_vault.c.pseudonym, b.c.block == _INDEXED)))
        .order_by(identity_vault.c.pseudonym)
    )


def _add_name_tokens(conn: Connection, items: Sequence[tuple[str, VaultRecord | _Stored]], keys: _Keys) -> None:
    """Add the name tokens of each ``(pseudonym, record or state)`` its holder lacks.

    Additive: the index keeps every name and address a person was seen with (a leak of an old
    address is still a leak), until the person is erased or renamed.
    """
    if not items:
        return
    names = keys.names()
    wanted: dict[tuple[str, str, str], int] = {}
    for pseudonym, item in items:
        values = item.values if isinstance(item, _Stored) else item.model_dump(mode="json", exclude_none=True)
        for row in _name_token_rows(keys.holder(pseudonym), values, names):
            wanted[(row["holder"], row["kind"], row["token"])] = row["size"]
    _insert_missing_tokens(conn, wanted)


def _insert_missing_tokens(conn: Connection, wanted: Mapping[tuple[str, str, str], int]) -> None:
    t = identity_vault_name_tokens.c
    holders = sorted({h for h, _k, _t in wanted})
    present: set[tuple[str, str, str]] = set()
    for chunk in _chunks(holders, _DEFAULT_BATCH):
        present.update((h, k, tok) for h, k, tok in conn.execute(
            select(t.holder, t.kind, t.token).where(t.holder.in_(list(chunk)))))
    rows = [{"holder": h, "kind": k, "token": tok, "size": n}
            for (h, k, tok), n in sorted(wanted.items()) if (h, k, tok) not in present]
    for chunk in _chunks(rows, 4 * _DEFAULT_BATCH):
        bulk_insert(conn, identity_vault_name_tokens, chunk)


def _move_name_tokens(conn: Connection, mapping: Mapping[str, str], keys: _Keys) -> None:
    """Give the name tokens of each old pseudonym to its new one (holders are keyed hashes)."""
    t = identity_vault_name_tokens.c
    old_holders = {keys.holder(old): keys.holder(new) for old, new in mapping.items()}
    moving: dict[tuple[str, str, str], int] = {}
    for chunk in _chunks(sorted(old_holders), _DEFAULT_BATCH):
        for holder, kind, token, size in conn.execute(
                select(t.holder, t.kind, t.token, t.size).where(t.holder.in_(list(chunk)))):
            moving[(old_holders[holder], kind, token)] = int(size)
        conn.execute(delete(identity_vault_name_tokens).where(t.holder.in_(list(chunk))))
    _insert_missing_tokens(conn, moving)


# The values the blocking keys and the name tokens derive from (a row's other fields move nothing).
_INDEXED_TRAITS = ("birth_name", "used_name", "first_names", "sex", "birth_date", "birth_place", "nir",
                   "address_line")


def _linkage_traits(state: _Stored) -> tuple[Any, ...]:
    """The values the blocking keys and name tokens derive from (a new phone number re-indexes nothing)."""
    return tuple(state.values.get(name) for name in _INDEXED_TRAITS)


def _current_key(source: KeySource, purpose: str) -> _DataKey:
    """The current key of `purpose`, created first when the store predates it (a store that can)."""
    ensure = getattr(source, "ensure", None)
    return ensure(purpose) if callable(ensure) else source.current(purpose)


def _name_token_rows(holder: str, values: Mapping[str, Any], hasher: NameTokenHasher) -> list[dict[str, Any]]:
    from pdp.pseudonym.name_tokens import person_phrases

    surnames = [n for n in (values.get("birth_name"), values.get("used_name")) if n]
    rows = {
        (kind, hasher.hash(phrase)): size
        for kind, size, phrase in person_phrases(
            surnames=surnames, first_names=list(values.get("first_names") or ()), address=values.get("address_line"))
    }
    return [{"holder": holder, "kind": k, "token": t, "size": n} for (k, t), n in sorted(rows.items())]


def _reindex(
    conn: Connection, states: Mapping[str, _Stored], version: int, keys: _Keys, *, fresh: bool = False
) -> None:
    """Replace the blocking rows of `states`' pseudonyms with their keys under vault key `version`,
    and add the name tokens of their linkage traits.

    `fresh`: the pseudonyms have no row yet (new vault rows): nothing to delete first.
    """
    if not states:
        return
    hasher = keys.hasher(version)
    rows = [row for pseudonym, state in states.items()
            for row in _blocking_rows(pseudonym, _state_blocks(hasher, state), version)]
    if not fresh:
        for chunk in _chunks(list(states), _DEFAULT_BATCH):
            _unindex(conn, chunk, keys, tokens=False)
    for chunk in _chunks(rows, 4 * _DEFAULT_BATCH):
        bulk_insert(conn, identity_vault_blocking, chunk)
    _add_name_tokens(conn, list(states.items()), keys)


def _state_blocks(hasher: BlockHasher, state: _Stored) -> list[str]:
    """The blocking keys of a linkage view (none without a canonical identity)."""
    try:
        canonical = record_canonical(state.to_record())
    except ValidationError:
        canonical = None
    return sorted(hasher.blocks([canonical])) if canonical is not None else []


def _blocking_rows(pseudonym: str, blocks: Iterable[str], version: int) -> list[dict[str, Any]]:
    """A person's ``identity_vault_blocking`` rows: the index marker, then its blocking keys."""
    return [{"pseudonym": pseudonym, "block": block, "key_version": version} for block in (_INDEXED, *blocks)]


def _merge_states(moved: _Stored, resident: _Stored) -> _Stored:
    """Field-wise merge of two stored states with the upsert rule (later observation wins)."""
    out = _Stored(values=dict(resident.values), observed=dict(resident.observed))
    for name, value in moved.values.items():
        if name not in out.values or _rank(moved.observed.get(name)) >= _rank(out.observed.get(name)):
            out.values[name] = value
            out.observed[name] = moved.observed.get(name)
    return out


_UPDATE_BY_PSEUDONYM = (
    update(identity_vault)
    .where(identity_vault.c.pseudonym == bindparam("b_pseudonym"))
    .values(
        key_version=bindparam("key_version"),
        nonce=bindparam("nonce"),
        ciphertext=bindparam("ciphertext"),
        source_count=bindparam("source_count"),
        updated_at=bindparam("updated_at"),
    )
)

_REBIND_BY_ID = (
    update(identity_vault_seal)
    .where(identity_vault_seal.c.id == bindparam("b_id"))
    .values(pseudonym=bindparam("pseudonym"), bind=bindparam("bind"), bind_version=bindparam("bind_version"))
)

_RESEAL_BY_ID = (
    update(identity_vault_seal)
    .where(identity_vault_seal.c.id == bindparam("b_id"))
    .values(key_version=bindparam("key_version"), enc=bindparam("enc"), ciphertext=bindparam("ciphertext"))
)

_REKEY_BY_PSEUDONYM = (
    update(identity_vault)
    .where(identity_vault.c.pseudonym == bindparam("b_pseudonym"))
    .values(
        key_version=bindparam("key_version"),
        nonce=bindparam("nonce"),
        ciphertext=bindparam("ciphertext"),
        updated_at=bindparam("updated_at"),
    )
)
