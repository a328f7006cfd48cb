"""The lake's exceptions: one base class so the CLI can turn any of them into a one-line error.

Why typed errors: callers (ingest, jobs, the CLI) must tell a user mistake (a bad catalog file,
a DataFrame that does not fit its table, an unsafe maintenance request) from an engine failure,
and print the former without a traceback.
"""

from __future__ import annotations


class LakeError(Exception):
    """Base of every error raised on purpose by `pdp.lake`; its message is one line."""


class CatalogError(LakeError):
    """A table definition file is missing, unreadable or invalid; the process must stop."""


class TableNotFoundError(LakeError):
    """A table is not in the catalog, or not created yet at its path."""


class SchemaMismatchError(LakeError):
    """Data (or an existing table) does not match the catalog's schema; nothing is merged silently."""


class UnsafeOperationError(LakeError):
    """A write or maintenance request that would lose data or history without an explicit choice."""
