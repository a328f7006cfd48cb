"""Sealed boxes: anyone with the public key can seal, only the private key opens.

Why: the edge must store every identity it sees, yet an edge process is the most exposed part
of the platform (it parses what strangers send). With a symmetric vault key, whoever holds the
edge can also read every identity the vault holds. Sealing to a public key splits the two: the
edge seals each identity observation to the ``seal`` public key
(:meth:`pdp.pseudonym.keys.KeyStore.public`) and keeps no means to open it; the private key is
unwrapped only by re-identification (:func:`pdp.pseudonym.reidentify.reidentify`, through
:meth:`pdp.pseudonym.vault.IdentityVault.get_many`) and by the seal-key rotation.

Construction, as HPKE base mode (RFC 9180) with DHKEM(X25519, HKDF-SHA256) and AES-256-GCM,
written out with the primitives of ``cryptography``: a fresh ephemeral X25519 key per box; the
shared secret and both public keys go through HKDF-SHA256 into a one-use AES-256-GCM key and
nonce; the associated data is bound by the caller (the vault binds a random sealing id, so a
box copied onto another row fails to open). ``enc`` (the ephemeral public key, 32 bytes) is
stored beside the ciphertext.

Example::

    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    private = X25519PrivateKey.generate()
    public = private.public_key().public_bytes_raw()
    enc, box = seal(public, b"plaintext", aad=b"id-1")
    assert open_box(private.private_bytes_raw(), enc, box, aad=b"id-1") == b"plaintext"

Cost: sealing is one X25519 key generation and one exchange, opening one exchange (with an
:class:`Opener` parsed once per key version); ``pdp bench vault`` prints both against AES-GCM.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["Opener", "SealError", "open_box", "seal"]

_INFO = b"pdp/seal/v1 x25519-hkdf-sha256-aes256gcm"
_KEY_BYTES = 32
_NONCE_BYTES = 12


class SealError(Exception):
    """A box failed to open (tampered, moved, or sealed to another key); no content is ever shown."""


def _key_and_nonce(shared: bytes, enc: bytes, recipient: bytes) -> tuple[AESGCM, bytes]:
    okm = HKDF(algorithm=hashes.SHA256(), length=_KEY_BYTES + _NONCE_BYTES, salt=None,
               info=_INFO + enc + recipient).derive(shared)
    return AESGCM(okm[:_KEY_BYTES]), okm[_KEY_BYTES:]


def seal(public_key: bytes, plaintext: bytes, *, aad: bytes) -> tuple[bytes, bytes]:
    """``(enc, ciphertext)``: `plaintext` sealed to the raw X25519 `public_key`, bound to `aad`."""
    recipient = X25519PublicKey.from_public_bytes(public_key)
    ephemeral = X25519PrivateKey.generate()
    enc = ephemeral.public_key().public_bytes_raw()
    cipher, nonce = _key_and_nonce(ephemeral.exchange(recipient), enc, public_key)
    return enc, cipher.encrypt(nonce, plaintext, aad)


class Opener:
    """The private key of one version, parsed once: opening many boxes costs one exchange each."""

    def __init__(self, private_key: bytes) -> None:
        self._private = X25519PrivateKey.from_private_bytes(private_key)
        self._recipient = self._private.public_key().public_bytes_raw()

    def __repr__(self) -> str:
        return "Opener(<private key hidden>)"

    def open(self, enc: bytes, ciphertext: bytes, *, aad: bytes) -> bytes:
        """The plaintext of a box sealed to this key's public half; :class:`SealError` otherwise."""
        try:
            shared = self._private.exchange(X25519PublicKey.from_public_bytes(enc))
            cipher, nonce = _key_and_nonce(shared, enc, self._recipient)
            return cipher.decrypt(nonce, ciphertext, aad)
        except (InvalidTag, ValueError):
            raise SealError("sealed box failed to open (tampered, moved or sealed to another key)") from None


def open_box(private_key: bytes, enc: bytes, ciphertext: bytes, *, aad: bytes) -> bytes:
    """The plaintext of a box sealed to the public half of `private_key`; :class:`SealError` otherwise."""
    return Opener(private_key).open(enc, ciphertext, aad=aad)
