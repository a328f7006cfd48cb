"""A master key that never leaves a PKCS#11 token (an HSM): :class:`Pkcs11MasterKey`.

Why: with the local master key (:class:`~pdp.pseudonym.kms.LocalMasterKey`), whoever reads
the edge machine's environment or key file can open every data key. Here the master key is an
AES-256 secret key generated *inside* the token, marked ``CKA_SENSITIVE`` and not
``CKA_EXTRACTABLE``: the token encrypts and decrypts the data keys on request, and no call of
PKCS#11 returns its value. Selected by ``PDP_KMS=pkcs11`` (:meth:`KeyStore.from_settings
<pdp.pseudonym.keys.KeyStore.from_settings>`); created once by ``pdp keys init --create-hsm-key``.

Construction: CKM_AES_GCM computed by the token (``C_Encrypt``/``C_Decrypt``), a random 96-bit
nonce per wrap, a 128-bit tag, and the key store's associated data (format + purpose +
version) passed as GCM's AAD. Wrapped form = nonce ‖ ciphertext ‖ tag (12 + 32 + 16 bytes for a
32-byte data key): the same layout as the local key, authenticated the same way, so a renamed
or altered key file fails under either. Why GCM and not the token's key wrap
(``C_WrapKey`` with CKM_AES_KEY_WRAP_PAD): key wrap binds no associated data, so it would need a
second authenticated construction (an HMAC under a second token key over wrapped ‖ aad) and two
token objects; GCM binds the AAD in one call. SoftHSM2 offers it, as do most current HSMs (check
the vendor's mechanism list, e.g. ``pkcs11-tool --module LIB --list-mechanisms``). A token
without CKM_AES_GCM is refused with one line; there is deliberately no weaker fallback. (A token
in a strict FIPS mode that insists on generating GCM nonces itself is not supported yet.)

Sessions: each wrap/unwrap opens a session, logs in, finds the key, runs one operation, then
logs out and closes (~5 ms on SoftHSM2), under one process-wide lock — PKCS#11 login is per
application, so two long-lived logged-in sessions of one process would log each other out
(another library of the same process keeping the token logged in makes our login fail with
``UserAlreadyLoggedIn``, reported as one line).
The PIN is kept in a private attribute for those logins; it is never in a repr, an exception
or a log line.

Errors: a bad configuration (module missing or not a PKCS#11 library, token not found, wrong
PIN, key label missing or ambiguous, key extractable) is a :class:`~pdp.pseudonym.kms.KeyStoreError`
with one line naming what is wrong; bytes or AAD that do not authenticate raise
:class:`~pdp.pseudonym.kms.UnwrapError` (SoftHSM2 reports a failed GCM tag as
``CKR_GENERAL_ERROR``, others as ``CKR_ENCRYPTED_DATA_INVALID``: both mean "does not open").

Example (SoftHSM2: ``bash infra/setup/softhsm.sh`` installs it and prints the module path)::

    kek = Pkcs11MasterKey.open(module=Path("/usr/lib/softhsm/libsofthsm2.so"), token="pdp",
                               key_label="pdp-master", pin=pin, create=True)
    kek.kek_id                                   # 'pkcs11:pdp/pdp-master'
    wrapped = kek.wrap(os.urandom(32), aad=b"pseudonym/1")
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pdp.pseudonym.kms import KeyStoreError, MasterKeyError, UnwrapError

if TYPE_CHECKING:
    from pdp.config import Settings

__all__ = ["Pkcs11MasterKey", "create_pkcs11_master_key"]

_NONCE_BYTES = 12
_TAG_BITS = 128
_LOCK = threading.Lock()  # one PKCS#11 login at a time in this process (login is per application)


def _pkcs11() -> Any:
    try:
        import pkcs11
    except ImportError:  # pragma: no cover - a dependency of the package
        raise MasterKeyError("PDP_KMS=pkcs11 needs the python-pkcs11 package: pip install python-pkcs11") from None
    return pkcs11


def _one_line(exc: BaseException) -> str:
    """The PKCS#11 error's class name and first line (python-pkcs11 never puts a PIN in its messages)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


class Pkcs11MasterKey:
    """The master key of the key store, held by a PKCS#11 token (see the module docstring).

    Construct it with :meth:`open` (or :meth:`from_settings`): it loads the module, logs in and
    checks that the key exists, is an AES key and cannot be extracted, before any key file is read.
    """

    def __init__(self, *, lib: Any, token: Any, token_label: str, key_label: str, pin: str) -> None:
        self._lib = lib
        self._token = token
        self._token_label = token_label
        self._key_label = key_label
        self.__pin = pin
        self.created = False  # True when :meth:`open` generated the key (``create=True`` and it was absent)

    def __repr__(self) -> str:
        return f"Pkcs11MasterKey(kek_id={self.kek_id!r})"

    __str__ = __repr__

    @property
    def kek_id(self) -> str:
        return f"pkcs11:{self._token_label}/{self._key_label}"

    # --- construction ---------------------------------------------------------------------

    @classmethod
    def open(
        cls, *, module: Path, token: str, key_label: str, pin: str, create: bool = False
    ) -> Pkcs11MasterKey:
        """Load ``module``, find ``token``, log in with ``pin``, find (or, with ``create``, make) the key."""
        pkcs11 = _pkcs11()
        if not token or not key_label:
            raise MasterKeyError("PDP_KMS=pkcs11 needs PDP_PKCS11_TOKEN and PDP_PKCS11_KEY_LABEL")
        module = Path(module)
        if not module.is_file():
            raise MasterKeyError(f"PKCS#11 module {module} does not exist (PDP_PKCS11_MODULE)")
        try:
            lib = pkcs11.lib(str(module))
        except pkcs11.PKCS11Error as exc:
            raise MasterKeyError(f"PKCS#11 module {module} cannot be loaded ({_one_line(exc)})") from None
        try:
            found = lib.get_token(token_label=token)
        except pkcs11.NoSuchToken:
            raise MasterKeyError(f"PKCS#11 token {token!r} not found in {module} (PDP_PKCS11_TOKEN)") from None
        except pkcs11.MultipleTokensReturned:
            raise MasterKeyError(
                f"several PKCS#11 tokens are labelled {token!r} in {module}: labels must be unique"
            ) from None
        except pkcs11.PKCS11Error as exc:
            raise MasterKeyError(f"PKCS#11 token {token!r}: {_one_line(exc)}") from None
        kek = cls(lib=lib, token=found, token_label=token, key_label=key_label, pin=pin)
        if pkcs11.Mechanism.AES_GCM not in set(found.slot.get_mechanisms()):
            raise MasterKeyError(f"PKCS#11 token {token!r} does not offer CKM_AES_GCM: it cannot hold the master key")
        with kek._session() as session:
            key = kek._find_key(session, missing_ok=create)
            if key is None:
                session.generate_key(
                    pkcs11.KeyType.AES,
                    256,
                    label=key_label,
                    store=True,
                    template={
                        pkcs11.Attribute.TOKEN: True,
                        pkcs11.Attribute.PRIVATE: True,
                        pkcs11.Attribute.SENSITIVE: True,
                        pkcs11.Attribute.EXTRACTABLE: False,
                        pkcs11.Attribute.ENCRYPT: True,
                        pkcs11.Attribute.DECRYPT: True,
                        pkcs11.Attribute.WRAP: False,
                        pkcs11.Attribute.UNWRAP: False,
                        pkcs11.Attribute.SIGN: False,
                        pkcs11.Attribute.VERIFY: False,
                        pkcs11.Attribute.DERIVE: False,
                    },
                )
                key = kek._find_key(session, missing_ok=False)
                kek.created = True
            if key[pkcs11.Attribute.EXTRACTABLE] or not key[pkcs11.Attribute.SENSITIVE]:
                raise MasterKeyError(
                    f"PKCS#11 key {key_label!r} in token {token!r} can be extracted: "
                    "the master key must be sensitive and non-extractable "
                    "(create it with `pdp keys init --create-hsm-key`)"
                )
        return kek

    @classmethod
    def from_settings(cls, settings: Settings, *, create: bool = False) -> Pkcs11MasterKey:
        """The token's key named by PDP_PKCS11_MODULE / _TOKEN / _KEY_LABEL, PIN from PDP_PKCS11_PIN or _PIN_FILE."""
        if settings.master_key is not None or settings.master_key_file is not None:
            raise MasterKeyError("PDP_KMS=pkcs11 but PDP_MASTER_KEY or PDP_MASTER_KEY_FILE is set: unset them")
        if settings.pkcs11_module is None:
            raise MasterKeyError("PDP_KMS=pkcs11 needs PDP_PKCS11_MODULE (the HSM's PKCS#11 library)")
        if not settings.pkcs11_token:
            raise MasterKeyError("PDP_KMS=pkcs11 needs PDP_PKCS11_TOKEN (the token label)")
        return cls.open(
            module=settings.pkcs11_module,
            token=settings.pkcs11_token,
            key_label=settings.pkcs11_key_label,
            pin=_pin(settings),
            create=create,
        )

    # --- the service ----------------------------------------------------------------------

    def wrap(self, material: bytes, *, aad: bytes) -> bytes:
        pkcs11 = _pkcs11()
        nonce = os.urandom(_NONCE_BYTES)
        params = pkcs11.GCMParams(nonce, aad, _TAG_BITS)
        with self._session() as session:
            key = self._find_key(session, missing_ok=False)
            try:
                sealed = key.encrypt(material, mechanism=pkcs11.Mechanism.AES_GCM, mechanism_param=params)
            except pkcs11.PKCS11Error as exc:
                raise KeyStoreError(f"{self.kek_id}: wrapping failed ({_one_line(exc)})") from None
        return nonce + bytes(sealed)

    def unwrap(self, wrapped: bytes, *, aad: bytes) -> bytes:
        pkcs11 = _pkcs11()
        if len(wrapped) <= _NONCE_BYTES + _TAG_BITS // 8:
            raise UnwrapError("wrapped key is truncated")
        params = pkcs11.GCMParams(wrapped[:_NONCE_BYTES], aad, _TAG_BITS)
        with self._session() as session:
            key = self._find_key(session, missing_ok=False)
            try:
                return bytes(
                    key.decrypt(wrapped[_NONCE_BYTES:], mechanism=pkcs11.Mechanism.AES_GCM, mechanism_param=params)
                )
            except (pkcs11.GeneralError, pkcs11.EncryptedDataInvalid, pkcs11.EncryptedDataLenRange):
                raise UnwrapError("master key does not open the key store") from None
            except pkcs11.PKCS11Error as exc:
                raise KeyStoreError(f"{self.kek_id}: unwrapping failed ({_one_line(exc)})") from None

    # --- internals ------------------------------------------------------------------------

    @contextmanager
    def _session(self) -> Iterator[Any]:
        """A logged-in session for one operation (logged out and closed after it)."""
        pkcs11 = _pkcs11()
        with _LOCK:
            try:
                session = self._token.open(user_pin=self.__pin, rw=True)
            except pkcs11.PinIncorrect:
                raise MasterKeyError(
                    f"PKCS#11 token {self._token_label!r}: wrong user PIN (PDP_PKCS11_PIN or PDP_PKCS11_PIN_FILE)"
                ) from None
            except pkcs11.PinLocked:
                raise MasterKeyError(f"PKCS#11 token {self._token_label!r}: the user PIN is locked") from None
            except pkcs11.PKCS11Error as exc:
                raise MasterKeyError(f"PKCS#11 token {self._token_label!r}: login failed ({_one_line(exc)})") from None
            try:
                yield session
            finally:
                with suppress(pkcs11.PKCS11Error):  # the operation's own outcome is what the caller must see
                    session.close()

    def _find_key(self, session: Any, *, missing_ok: bool) -> Any:
        pkcs11 = _pkcs11()
        try:
            return session.get_key(
                object_class=pkcs11.ObjectClass.SECRET_KEY, key_type=pkcs11.KeyType.AES, label=self._key_label
            )
        except pkcs11.NoSuchKey:
            if missing_ok:
                return None
            raise MasterKeyError(
                f"PKCS#11 token {self._token_label!r} has no AES key labelled {self._key_label!r} "
                "(PDP_PKCS11_KEY_LABEL; create it once with `pdp keys init --create-hsm-key`)"
            ) from None
        except pkcs11.MultipleObjectsReturned:
            raise MasterKeyError(
                f"PKCS#11 token {self._token_label!r} has several keys labelled {self._key_label!r}: "
                "labels must be unique"
            ) from None


def _pin(settings: Settings) -> str:
    """The user PIN: exactly one of PDP_PKCS11_PIN, PDP_PKCS11_PIN_FILE (a 0600 file; trailing newline ignored)."""
    inline = settings.pkcs11_pin.get_secret_value() if settings.pkcs11_pin is not None else None
    if inline is not None and settings.pkcs11_pin_file is not None:
        raise MasterKeyError("both PDP_PKCS11_PIN and PDP_PKCS11_PIN_FILE are set: keep only one")
    if inline:
        return inline
    path = settings.pkcs11_pin_file
    if path is None:
        raise MasterKeyError("PDP_KMS=pkcs11 needs the token's user PIN: set PDP_PKCS11_PIN_FILE or PDP_PKCS11_PIN")
    try:
        info = Path(path).stat()
        if not stat.S_ISREG(info.st_mode):
            raise MasterKeyError(f"PIN file {path} is not a regular file")
        if info.st_mode & 0o077:
            raise MasterKeyError(f"PIN file {path} is accessible to other users: chmod 600 it")
        text = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
    except FileNotFoundError:
        raise MasterKeyError(f"PIN file {path} does not exist") from None
    except (PermissionError, UnicodeDecodeError):
        raise MasterKeyError(f"PIN file {path} is not readable") from None
    if not text:
        raise MasterKeyError(f"PIN file {path} is empty")
    return text


def create_pkcs11_master_key(settings: Settings) -> Pkcs11MasterKey:
    """Create the token's master key (AES-256, sensitive, non-extractable) if absent; the service either way.

    ``.created`` on the result says whether it was generated now. Idempotent: an existing key of
    that label is reused, never replaced (replacing it would make every key file unreadable).
    """
    return Pkcs11MasterKey.from_settings(settings, create=True)
