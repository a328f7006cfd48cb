"""How a key reaches a Spark executor: through the key store, never in a closure or a broadcast.

Why: whatever a task closure or a broadcast variable carries is serialised, shipped over the
cluster's network and kept in the executors' block managers; a master key, an HSM PIN or a
pseudonym key in there is a key in clear on the wire and on disk. So a job ships its settings
with every secret value withheld (:func:`shipped_settings`), and each executor opens the key
store itself through the same interface as any pdp process (:meth:`KeyStore.from_settings`:
a key file the nodes can read, the PKCS#11 token, a KMS, or the value in the executor's own
environment), restoring the withheld values from ``PDP_<NAME>`` (:func:`executor_settings`).
A missing one stops the job with one line naming the variable, never a value.

Used by the edge's Spark tasks (:mod:`pdp.ingest.spark_tasks`) and the Spark linkage
(:mod:`pdp.pseudonym.linkage_spark`).

>>> from pdp.config import Settings
>>> shipped, withheld = shipped_settings(Settings(master_key="x" * 44))
>>> withheld, shipped.master_key is None
(('master_key',), True)
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from pdp.config import Settings
    from pdp.pseudonym.pseudonymise import Pseudonymiser

__all__ = [
    "SECRET_SETTINGS", "ExecutorSecretMissing", "executor_pseudonymiser", "executor_settings", "key_check",
    "shipped_settings",
]

SECRET_SETTINGS = ("master_key", "pkcs11_pin", "db_url", "audit_db_url")
"""Settings never shipped to an executor in a closure; the executor reads them from its own
environment (``PDP_<NAME>``) when the batch needs them. A database URL is withheld only when
it holds a password."""


class ExecutorSecretMissing(RuntimeError):
    """An executor lacks a secret the batch needs (the message names the variable, never a value)."""


def _has_password(url: str | None) -> bool:
    return bool(url) and urlsplit(url or "").password is not None


def shipped_settings(settings: Settings) -> tuple[Settings, tuple[str, ...]]:
    """(settings without their secret values, the names of the fields withheld) for a closure."""
    withheld = tuple(
        name for name in SECRET_SETTINGS
        if (_has_password(getattr(settings, name)) if name.endswith("db_url") else getattr(settings, name) is not None)
    )
    blank = {name: None for name in withheld}
    if "db_url" in withheld:
        blank["db_url"] = "sqlite://"  # never opened: executor_settings restores it from the environment
    return settings.model_copy(update=blank), withheld


def executor_settings(shipped: Settings, withheld: Iterable[str], environ: dict[str, str] | None = None) -> Settings:
    """The shipped settings with each withheld secret read from this process's environment."""
    from pydantic import SecretStr

    env = os.environ if environ is None else environ
    found: dict[str, object] = {}
    for name in withheld:
        variable = f"PDP_{name.upper()}"
        value = env.get(variable)
        if not value:
            raise ExecutorSecretMissing(
                f"the Spark executors have no {variable}: give it to every node (or name a file the nodes "
                "can read, e.g. PDP_MASTER_KEY_FILE / PDP_PKCS11_PIN_FILE), or ingest with PDP_EDGE_ENGINE=processes")
        found[name] = SecretStr(value) if name in ("master_key", "pkcs11_pin") else value
    return shipped.model_copy(update=found)


def key_check(pseudonymiser: Pseudonymiser) -> str:
    """The pseudonym of a fixed non-identity under the pinned key: tells two keys apart (a key check
    value) without revealing either, and names no person."""
    from pdp.pseudonym.normalise import CANONICAL_FORMAT

    return pseudonymiser.pseudonym_of_bytes(CANONICAL_FORMAT.encode("ascii") + b"\x1fpdp executor key check")


def executor_pseudonymiser(shipped: Settings, withheld: Iterable[str], version: int, check: str) -> Pseudonymiser:
    """The pseudonymiser of key version `version`, opened on this executor from its key store; `check`
    is the driver's :func:`key_check`: settings naming another key store (whose key would give other
    pseudonyms, silently) stop the job instead."""
    from pdp.pseudonym.keys import KeyStore
    from pdp.pseudonym.pseudonymise import Pseudonymiser

    pseudonymiser = Pseudonymiser(KeyStore.from_settings(executor_settings(shipped, withheld)))
    if pseudonymiser.version != version:
        raise RuntimeError(f"the executor's current pseudonym key is v{pseudonymiser.version}, the job's v{version}: "
                           "a rotation ran meanwhile; run the job again")
    if key_check(pseudonymiser) != check:
        raise RuntimeError("the executor's pseudonym key is not the job's: the settings shipped name another key "
                           "store than the one the driver's pseudonymiser reads")
    return pseudonymiser
