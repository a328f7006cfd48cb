"""E-mail addresses (no network look-up of the domain, unlike Presidio's own recognizer).

Example::

    >>> [r.entity_type for r in FrEmailRecognizer().analyze("Courriel : j.martin@laposte.net", [])]
    ['EMAIL']
"""

from __future__ import annotations

from pdp.semantic.deid.recognizers.base import FrRecognizer, Rule, compile_rules, register

_RULES = compile_rules(
    ("email", r"(?<![\w.+\-])[\w.+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}(?![\w])", "EMAIL", 0.9, 0),
)


@register
class FrEmailRecognizer(FrRecognizer):
    """local@domain.tld."""

    NAME = "fr_email"
    ENTITIES = ("EMAIL",)

    def rules(self) -> tuple[Rule, ...]:
        return _RULES
