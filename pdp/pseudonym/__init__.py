"""The pseudonymisation edge: identity normalisation, keyed pseudonyms, versioned keys.

Every nominative record passes through here; only a keyed pseudonym goes on to the lake::

    from pdp.pseudonym import KeyStore, Pseudonymiser, RawIdentity, Rejection
    from pdp.pseudonym.normalise import normalise

    pseudonymiser = Pseudonymiser(KeyStore.from_settings())
    result = normalise(RawIdentity(birth_name=..., first_names=..., sex=..., birth_date=..., nir=...))
    if isinstance(result, Rejection):
        quarantine(result.reason_code, result.field)     # never the values
    else:
        pseudonym = pseudonymiser.pseudonym(result)      # 'v1:' + 43 base64url characters

``normalise`` (the function) is imported from its module, not from the package: the package
attribute ``pdp.pseudonym.normalise`` is the module, and binding the function over it would
break ``import pdp.pseudonym.normalise`` and monkeypatching by dotted path.

Names load lazily (``cryptography`` and pydantic are only imported when a key name is used),
so importing the package to normalise identities stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pdp.pseudonym.hsm import Pkcs11MasterKey
    from pdp.pseudonym.keys import DataKey, KeyInfo, KeyStore, KeyStoreError
    from pdp.pseudonym.kms import KeyEncryptionService, LocalMasterKey
    from pdp.pseudonym.nir import Nir, NirInvalid, parse_nir
    from pdp.pseudonym.normalise import CanonicalIdentity, RawIdentity, ReasonCode, Rejection
    from pdp.pseudonym.pseudonymise import Pseudonymiser

__all__ = [
    "CanonicalIdentity",
    "DataKey",
    "KeyEncryptionService",
    "KeyInfo",
    "KeyStore",
    "KeyStoreError",
    "LocalMasterKey",
    "Nir",
    "NirInvalid",
    "Pkcs11MasterKey",
    "Pseudonymiser",
    "RawIdentity",
    "ReasonCode",
    "Rejection",
    "parse_nir",
]

_HOME = {
    "CanonicalIdentity": "normalise",
    "RawIdentity": "normalise",
    "ReasonCode": "normalise",
    "Rejection": "normalise",
    "Nir": "nir",
    "NirInvalid": "nir",
    "parse_nir": "nir",
    "DataKey": "keys",
    "KeyInfo": "keys",
    "KeyStore": "keys",
    "KeyStoreError": "keys",
    "KeyEncryptionService": "kms",
    "LocalMasterKey": "kms",
    "Pkcs11MasterKey": "hsm",
    "Pseudonymiser": "pseudonymise",
}


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
