"""Clinical facts in French free text, with their qualifiers (negated, hypothesis, family, history).

Public surface: :func:`extract_facts` (one text → :class:`Fact` list), :func:`lexicon` and
:func:`qualifiers` (the validated definition files), :class:`FactsDefinitionError`.
"""

from __future__ import annotations

from pdp.semantic.facts.definitions import FactsDefinitionError, lexicon, qualifiers
from pdp.semantic.facts.extract import Assertion, Fact, extract_facts

__all__ = ["Assertion", "Fact", "FactsDefinitionError", "extract_facts", "lexicon", "qualifiers"]
