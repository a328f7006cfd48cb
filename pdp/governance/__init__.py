"""Governance: the governance store (SQL), and later authorisation, audit log and opposition registry."""

from pdp.governance.db import GovernanceDbError, bulk_insert, create_all, make_engine, metadata, session_factory

__all__ = ["GovernanceDbError", "bulk_insert", "create_all", "make_engine", "metadata", "session_factory"]
