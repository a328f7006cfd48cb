"""French phone numbers: 0X XX XX XX XX with spaces, dots or hyphens, and +33 / 0033 forms.

Example::

    >>> [r.entity_type for r in FrPhoneRecognizer().analyze("joignable au 06.12.34.56.78", [])]
    ['TEL']
"""

from __future__ import annotations

from pdp.semantic.deid.recognizers.base import FrRecognizer, Rule, compile_rules, register

_S = r"(?:[ .\-\u00a0]|[ \t]*\n[ \t]*)?"  # a separator, or a line break (a hard-wrapped letter)
_RULES = compile_rules(
    ("fr_national", rf"(?<![\w+])0[1-9](?:{_S}\d{{2}}){{4}}(?![\w])", "TEL", 0.7, 0),
    (
        "fr_international",
        rf"(?<![\w+])(?:\+|00){_S}33{_S}(?:\(0\){_S})?[1-9](?:{_S}\d{{2}}){{4}}(?![\w])",
        "TEL",
        0.8,
        0,
    ),
)


@register
class FrPhoneRecognizer(FrRecognizer):
    """A French landline or mobile number (ten digits, or +33 and nine)."""

    NAME = "fr_phone"
    ENTITIES = ("TEL",)

    def rules(self) -> tuple[Rule, ...]:
        return _RULES
