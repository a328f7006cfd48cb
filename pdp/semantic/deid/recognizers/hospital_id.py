"""Hospital identifiers: IPP (permanent patient id), NDA (stay/visit number), "N° de séjour".

Example::

    >>> t = "IPP : 000123456 - NDA 2301234567 - N° de séjour : S23-004512"
    >>> [t[r.start:r.end] for r in FrHospitalIdRecognizer().analyze(t, [])]
    ['000123456', '2301234567', 'S23-004512']
"""

from __future__ import annotations

from pdp.semantic.deid.recognizers.base import FrRecognizer, Rule, compile_rules, register

_LABEL = (
    r"(?i:(?<![\w])(?:IPP|NIP|NDA|IEP|N°[ \t]*(?:IPP|NDA|patient|dossier|s[ée]jour|venue|admission|d'admission|"
    r"de[ \t]+(?:s[ée]jour|dossier|venue|passage))|num[ée]ro[ \t]+(?:de[ \t]+|d')?(?:s[ée]jour|dossier|venue|"
    r"patient|admission|IPP|NDA)|(?:s[ée]jour|dossier|venue|admission)[ \t]+n°|identifiant[ \t]+patient))"
    r"[ \t]*(?:n°)?[ \t]*[:#]?[ \t]*"
)
_ID = r"(?P<id>(?=[A-Z0-9\-/]*\d)[A-Z0-9](?:[A-Z0-9\-/]{2,23})(?<![\-/]))(?![\w])"
_RULES = compile_rules(("hospital_id", _LABEL + _ID, "ID_HOPITAL", 0.85, "id"))


@register
class FrHospitalIdRecognizer(FrRecognizer):
    """An identifier after its label: IPP, NDA, N° de séjour / dossier / venue."""

    NAME = "fr_hospital_id"
    ENTITIES = ("ID_HOPITAL",)

    def rules(self) -> tuple[Rule, ...]:
        return _RULES
