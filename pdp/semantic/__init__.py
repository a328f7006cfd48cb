"""Terminologies (code systems, concept sets) and free-text semantics.

Public surface: :func:`validate_code` and :data:`CODE_SYSTEMS`, the syntax checks the edge
applies to every incoming code.
"""

from __future__ import annotations

from pdp.semantic.codes import CODE_SYSTEMS, validate_code

__all__ = ["CODE_SYSTEMS", "validate_code"]
