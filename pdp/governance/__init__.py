"""Governance: the governance store (SQL), and later authorisation, audit log and opposition registry."""

from pdp.governance.db import GovernanceDbError, create_all, make_engine, metadata, session_factory

__all__ = ["GovernanceDbError", "create_all", "make_engine", "metadata", "session_factory"]
