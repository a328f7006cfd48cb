"""NIR (French social security number) in free text, spaced or not, Corsica included.

Why the key only raises the score: in a letter, a NIR-shaped number with a wrong key is a
mistyped NIR, still the patient's identifier, so it is redacted too (score 0.6 instead of 0.95);
a 13-character NIR without its key is redacted as well. The key check is the edge's own
(:func:`pdp.pseudonym.parse_nir`, 2A read as 19 and 2B as 18).

Example::

    >>> [(r.entity_type, round(r.score, 2)) for r in FrNirRecognizer().analyze("NIR : 1 80 01 75 123 456 78", [])]
    [('NIR', 0.6)]
"""

from __future__ import annotations

import re

from pdp.pseudonym import NirInvalid, parse_nir
from pdp.semantic.deid.recognizers.base import FrRecognizer, Rule, compile_rules, register

_S = r"(?:[ .\-\u00a0]|[ \t]*\n[ \t]*)?"  # a separator, or a line break (a hard-wrapped letter)
_BODY = (
    rf"[1-478]{_S}\d{{2}}{_S}(?:0[1-9]|1[0-2]|[2-9]\d){_S}(?:\d{{2}}|2[ABab]){_S}\d{{3}}{_S}\d{{3}}"
)
_RULES = compile_rules(
    ("nir_15", rf"(?<![\w]){_BODY}{_S}\d{{2}}(?![\w])", "NIR", 0.6, 0),
    ("nir_13", rf"(?<![\w]){_BODY}(?![\w]|{_S}\d)", "NIR", 0.5, 0),
)


@register
class FrNirRecognizer(FrRecognizer):
    """NIR / INS matricule: 15 characters (or 13 without the key), separators allowed."""

    NAME = "fr_nir"
    ENTITIES = ("NIR",)

    def rules(self) -> tuple[Rule, ...]:
        return _RULES

    def validate(self, rule: Rule, match: re.Match[str], text: str) -> float | None:
        if rule.name == "nir_15" and not isinstance(parse_nir(match.group(0)), NirInvalid):
            return 0.95
        return rule.score
