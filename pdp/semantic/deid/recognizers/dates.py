"""Dates of birth, numeric or written out, found by their context ("né le", "DDN :").

Why by context: a report is full of dates (visits, results, onsets) that are not identifiers
and must stay for the clinical facts. Only a date introduced as a birth date is redacted
here; the patient's own birth date is also found anywhere by the identity recognizer.

Example::

    >>> t = "Mme X, née le 3 février 1948, DDN : 03/02/1948"
    >>> [t[r.start:r.end] for r in FrBirthDateRecognizer().analyze(t, [])]
    ['3 février 1948', '03/02/1948']
"""

from __future__ import annotations

from pdp.semantic.deid.recognizers.base import FrRecognizer, Rule, compile_rules, register

MONTHS = (
    r"janvier|janv\.?|f[ée]vrier|f[ée]vr?\.?|mars|avril|avr\.?|mai|juin|juillet|juil\.?|ao[uû]t|"
    r"septembre|sept?\.?|octobre|oct\.?|novembre|nov\.?|d[ée]cembre|d[ée]c\.?"
)
_NUMERIC = r"(?:0?[1-9]|[12]\d|3[01])[ \t]*[/.\-][ \t]*(?:0?[1-9]|1[0-2])[ \t]*[/.\-][ \t]*(?:\d{4}|\d{2})(?!\d)"
_WRITTEN = rf"(?:1er|0?[1-9]|[12]\d|3[01])[ \t]+(?:{MONTHS})[ \t]+\d{{4}}(?!\d)"
_ISO = r"(?:18|19|20)\d{2}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])(?!\d)"
_CONTEXT = (
    r"(?i:(?<![\w])(?:n[ée]e?|n[ée]\(e\)|DDN|D\.D\.N\.?|date[ \t]+de[ \t]+naissance|naissance)"
    r"(?:[ \t]*:[ \t]*|[ \t]+le[ \t]+|[ \t]+))"
)
_RULES = compile_rules(
    ("birth_date", rf"{_CONTEXT}(?P<date>(?i:{_WRITTEN})|{_NUMERIC}|{_ISO})", "DATE_NAISSANCE", 0.9, "date"),
)


@register
class FrBirthDateRecognizer(FrRecognizer):
    """A date after "né(e) le", "DDN", "date de naissance"."""

    NAME = "fr_birth_date"
    ENTITIES = ("DATE_NAISSANCE",)

    def rules(self) -> tuple[Rule, ...]:
        return _RULES
