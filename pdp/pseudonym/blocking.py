"""Keyed blocking keys: which known persons a batch could link to, without decrypting the vault.

Why: cross-batch linkage compares a batch's identities with the persons already in the
identity vault. Decrypting every vault row at every ingest grows with the territory (300 000
persons read for a lab file of ten patients, every few seconds on the real-time feed). A known
person can only be linked to a batch identity that shares one of the linkage's blocking keys
with it (the candidate pairs of :mod:`pdp.pseudonym.linkage_model` and the deterministic rules
of :mod:`pdp.pseudonym.linkage_rules` all need one of them equal), so the vault keeps, beside
each record, the keyed hashes of its blocking keys; an ingest hashes its batch's keys and reads
only the records that share one.

The keys (a superset of what the linkage blocks on; one more candidate costs a decryption,
one fewer could cost a link):

- the birth date (also covers the traits key and the NIR canonical's date);
- each name (birth name, used name: both ways of "l.birth_name = r.used_name") with the birth year;
- the birth name with the first first-name token;
- the first token with the birth name's Soundex and the birth year;
- each NIR body (own or insured, 13 characters).

Keyed: HMAC-SHA256 under a key derived (HKDF) from the vault data key of the row's version,
truncated to 128 bits. Without the vault key, an index row tells nothing of the value (no
dictionary attack on birth dates); it does tell which vault rows share a key, as any blocking
index must. Values never leave this module unhashed; nothing here logs.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from pdp.pseudonym.normalise import CanonicalIdentity

__all__ = ["BlockHasher", "blocking_values"]

_INFO = b"pdp/identity_vault/blocking/v1"
_SEP = "\x1f"


def blocking_values(canonical: CanonicalIdentity) -> set[str]:
    """The blocking keys of one identity, in clear (hash them with :class:`BlockHasher` at once)."""
    from pdp.pseudonym.linkage_model import soundex

    year = str(canonical.birth_date.year)
    first = canonical.first_name_first_token
    out = {_SEP.join(("d", canonical.birth_date.isoformat()))}
    names = {canonical.birth_name_compact}
    if canonical.used_name:
        names.add(canonical.used_name.replace(" ", ""))
    out.update(_SEP.join(("ny", name, year)) for name in names if name)
    out.add(_SEP.join(("nf", canonical.birth_name_compact, first)))
    out.add(_SEP.join(("fs", first, soundex(canonical.birth_name_compact), year)))
    out.update(_SEP.join(("n", nir[:13])) for nir in (canonical.nir, canonical.insured_nir) if nir)
    return out


class BlockHasher:
    """Keyed hashes of blocking keys under one vault data key (one version)."""

    def __init__(self, vault_key_material: bytes) -> None:
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(vault_key_material)
        self._mac = crypto_hmac.HMAC(key, hashes.SHA256())

    def hash(self, value: str) -> str:
        mac = self._mac.copy()
        mac.update(value.encode("utf-8"))
        return base64.urlsafe_b64encode(mac.finalize()[:16]).decode("ascii").rstrip("=")

    def blocks(self, canonicals: Iterable[CanonicalIdentity]) -> set[str]:
        return {self.hash(value) for canonical in canonicals for value in blocking_values(canonical)}
